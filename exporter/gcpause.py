"""Pausing Python's cyclic garbage collector while a large JSON document is parsed.

A parsed document is a tree of dicts and lists: it holds no reference cycle, so the collector can never free any of
it, yet every 700 containers the parser creates trigger a collection, and the older generations' collections walk
the whole tree built so far. Measured on an 8 MB response (200k series): `orjson.loads` takes 130 ms with the
collector running and 52 ms with it paused. The pause is process-wide (the collector has no other switch), so it is
held only while a parse is running, counted across threads: it ends when the last parse in flight ends, and a
collector that was already disabled by someone else stays disabled.

Re-enabling it is not enough on its own: the parse leaves every container it made counted in the youngest
generation, so the first allocation after the pause starts a collection over the whole document (25 ms for the 200k
demo's pods response, 30 ms a poll, 8 % of its time; measured with `gc.callbacks`), and the document is walked again
by each older generation it is promoted into while it is mapped. So the pause ends by moving what it made straight
into the oldest generation (`gc.freeze()` then `gc.unfreeze()`: two list splices, and freezing resets the young
count), where only a full collection looks at it; the promotion adds nothing to the count that starts a full one.
A process that froze objects itself (`gc.get_freeze_count()`) keeps them frozen: the move is skipped.
"""

from __future__ import annotations

import gc
import threading
from contextlib import contextmanager
from typing import Iterator

__all__ = ["PAUSE_ABOVE_BYTES", "paused_collection", "promote_young"]

PAUSE_ABOVE_BYTES = 1 << 20  # below this a parse triggers a collection or two at most: not worth touching a global

_lock = threading.Lock()
_holders = 0
_was_enabled = False


@contextmanager
def paused_collection() -> Iterator[None]:
    """Disable the cyclic collector for the duration, then restore it once no other thread holds a pause."""
    global _holders, _was_enabled
    with _lock:
        if _holders == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            promote_young()  # before enabling: the next allocation would start a collection over the document
            if _holders == 0 and _was_enabled:
                gc.enable()


def promote_young() -> bool:
    """Move every tracked object into the oldest generation without collecting; False if something else froze objects."""
    if gc.get_freeze_count():
        return False
    gc.freeze()
    gc.unfreeze()
    return True
