"""Returning memory to the system: glibc's arena cap and malloc_trim, where the C library is glibc (a no-op elsewhere).

A poll of 200k series parses an 8 MB response into ~100 MB of Python objects and frees them a moment later; glibc
keeps the freed pages in its arenas (one per thread that ever allocated, up to 8 per core), so the RSS after a few
polls stays at the peak. Capping the arenas at two and trimming after a large publish gives those pages back
(measured in bench/: see the memory rows of bench/RESULTS.md). glibc also raises its mmap threshold each time a
large block is freed, up to 32 MB, after which a poll's big temporaries (the rendered text before it is encoded,
dict tables of 100k series) come from the heap and stay there; a fixed threshold keeps them in their own mappings,
returned when freed (at 200k series: 515 → 385 B of steady RSS per series).

CPython's own small-object heap (pymalloc: objects of up to 512 bytes, in 1 MiB arenas) gives an arena back only when
every object in it is freed. A poll's document and samples fill tens of arenas and are freed within the poll; an
object that outlives the poll but was made while they were in memory lands among them, and one such object keeps
its whole arena resident. So what a poll keeps is made once they are freed, or kept outside that heap meanwhile
(`fresh_int`, `labelmemo.py`, `exposition.DeflatedFamilies`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from typing import Optional

__all__ = ["limit_arenas", "fix_mmap_threshold", "trim", "fresh_int"]

log = logging.getLogger(__name__)
_M_ARENA_MAX = -8  # mallopt parameter numbers from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 * 1024  # glibc's initial value


def _libc() -> Optional[ctypes.CDLL]:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


_LIBC = _libc()


def limit_arenas(count: int = 2) -> bool:
    """Cap glibc's malloc arenas (what MALLOC_ARENA_MAX does), before threads start; return whether it applied."""
    if _LIBC is None:
        return False
    return bool(_LIBC.mallopt(_M_ARENA_MAX, count))


def fix_mmap_threshold(size: int = MMAP_THRESHOLD) -> bool:
    """Serve blocks of `size` bytes or more by their own mmap, always (MALLOC_MMAP_THRESHOLD_); return whether it applied."""
    if _LIBC is None:
        return False
    return bool(_LIBC.mallopt(_M_MMAP_THRESHOLD, size))


def trim() -> bool:
    """Give free heap pages back to the system (glibc's malloc_trim(0)); return whether any were released."""
    if _LIBC is None:
        return False
    return bool(_LIBC.malloc_trim(0))


def fresh_int(number: int) -> int:
    """An int equal to `number`, made now (CPython makes a new object for a sum past its small-int cache).

    For a count computed while a poll's document was in memory and kept after it: the copy sits where objects made
    now go, not in one of the document's arenas (see the module doc).
    """
    return number + 0
