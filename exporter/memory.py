"""Returning memory to the system: glibc's arena cap and malloc_trim, where the C library is glibc (a no-op elsewhere).

A poll of 200k series parses an 8 MB response into ~100 MB of Python objects and frees them a moment later; glibc
keeps the freed pages in its arenas (one per thread that ever allocated, up to 8 per core), so the RSS after a few
polls stays at the peak. Capping the arenas at two and trimming after a large publish gives those pages back
(measured in bench/: see the memory rows of bench/RESULTS.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from typing import Optional

__all__ = ["limit_arenas", "trim"]

log = logging.getLogger(__name__)
_M_ARENA_MAX = -8  # mallopt parameter number from glibc's malloc.h


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


def trim() -> bool:
    """Give free heap pages back to the system (glibc's malloc_trim(0)); return whether any were released."""
    if _LIBC is None:
        return False
    return bool(_LIBC.malloc_trim(0))
