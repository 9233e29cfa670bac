"""Coalesced reloads: however many ask at once, at most one reload runs, and reloads start `spacing` seconds apart."""

from __future__ import annotations

import threading
import time
from typing import Callable

__all__ = ["CoalescedReload"]

Result = tuple[bool, list[str]]


class CoalescedReload:
    """Runs `reload` for callers of `request()`, sharing one run among every caller that waits for it.

    A caller gets the result of a reload that started after it asked (so it sees the file as it was when it asked).
    Callers arriving while a reload runs, or during the spacing after one, all share the next one.
    """

    def __init__(self, reload: Callable[[], Result], spacing: float = 1.0) -> None:
        self._reload = reload
        self.spacing = spacing
        self._cond = threading.Condition()
        self._started = 0  # reloads started so far
        self._finished = 0  # reloads finished so far
        self._claimed = False  # a caller is waiting out the spacing or running the reload
        self._last_end = float("-inf")
        self._result: Result = (False, ["no reload ran"])

    def request(self) -> Result:
        """Reload (or join the reload about to start) and return its outcome."""
        with self._cond:
            wanted = self._started + 1
            while self._finished < wanted:
                if self._claimed:
                    self._cond.wait()
                    continue
                self._claimed = True
                try:
                    while (delay := self._last_end + self.spacing - time.monotonic()) > 0:
                        self._cond.wait(delay)
                    self._started += 1
                    self._cond.release()
                    try:
                        result = self._reload()
                    finally:
                        self._cond.acquire()
                    self._result = result
                finally:
                    self._finished = self._started
                    self._last_end = time.monotonic()
                    self._claimed = False
                    self._cond.notify_all()
            return self._result

    @property
    def count(self) -> int:
        """How many reloads have run."""
        return self._finished
