"""How many polls at once may hold a large parsed response: a gate with slots, and each poll's ticket to it.

A response's parsed document costs 10-20 times its bytes in Python objects (the 8 MB demo response at 200k series:
about 100 MB until it is mapped and rendered), and several large targets due at the same moment would hold them all
at once. Their parsing and mapping share one GIL, so running them side by side finishes none of them sooner; it only
adds their peaks together. So a poll whose response is at least `scheduler.large_poll_bytes` takes one of
`scheduler.large_poll_concurrency` slots before it parses it, and gives the slot back when the poll ends. Requests are
not held: the body is fetched (and capped by `max_response_bytes`) before the slot is asked for, so a slow API never
keeps a slot. A poll waits for its slot in turn (first come, first served) inside its own `timeout`; one that is still
waiting when its timeout ends fails with reason `timeout`, saying so.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable, Optional

__all__ = ["LargePollGate", "PollTicket", "SlotTimeout", "DEFAULT_SLOTS", "DEFAULT_BYTES"]

DEFAULT_SLOTS = 1
DEFAULT_BYTES = 1 << 20  # 1 MiB: ~25k series of the demo's shape, 10-20 MB of parsed objects


class SlotTimeout(Exception):
    """The poll's deadline came before a slot did."""


class LargePollGate:
    """At most `slots` polls at once past the first large response (0: no limit); waiters are served in order."""

    def __init__(self, slots: int = DEFAULT_SLOTS, threshold: int = DEFAULT_BYTES) -> None:
        self._lock = threading.Lock()
        self._slots = slots
        self.threshold = threshold
        self._running = 0
        self._waiting: deque[threading.Event] = deque()
        self._open = False  # after close(): every poll goes through at once

    def configure(self, slots: int, threshold: int) -> None:
        """Apply new limits (a reload); polls already through keep their slots, waiters get any freed."""
        with self._lock:
            self._slots = slots
            self.threshold = threshold
            self._grant()

    @property
    def slots(self) -> int:
        """How many polls may be past a large response at once (0: no limit)."""
        return self._slots

    @property
    def running(self) -> int:
        """Polls holding a slot now."""
        return self._running

    @property
    def waiting(self) -> int:
        """Polls waiting for a slot now."""
        return len(self._waiting)

    def _free(self) -> bool:
        return self._open or self._slots == 0 or self._running < self._slots

    def _grant(self) -> None:
        """Hand free slots to the longest-waiting polls (the lock is held)."""
        while self._waiting and self._free():
            self._running += 1
            self._waiting.popleft().set()

    def acquire(self, deadline: float) -> float:
        """Take a slot, waiting in turn until `deadline` (a `time.monotonic()` value); return the seconds waited.

        Raise SlotTimeout if the deadline comes first.
        """
        with self._lock:
            if not self._waiting and self._free():
                self._running += 1
                return 0.0
            granted = threading.Event()
            self._waiting.append(granted)
        started = time.monotonic()
        if not granted.wait(max(0.0, deadline - started)):
            with self._lock:
                if not granted.is_set():  # not granted between the timeout and the lock
                    self._waiting.remove(granted)
                    raise SlotTimeout(time.monotonic() - started)
        return time.monotonic() - started

    def release(self) -> None:
        """Give a slot back."""
        with self._lock:
            self._running -= 1
            self._grant()

    def close(self) -> None:
        """Let every waiting and future poll through (shutting down: nobody should wait for a slot any more)."""
        with self._lock:
            self._open = True
            self._grant()

    def ticket(self, deadline: float, on_wait: Optional[Callable[[float], None]] = None) -> "PollTicket":
        """A ticket for one poll that must be done by `deadline`; `on_wait` is told the seconds it waited."""
        return PollTicket(self, deadline, on_wait)


class PollTicket:
    """One poll's claim on the gate: taken at the first large response the poll parses, given back when it ends.

    A poll of several pages or discovered items takes one slot at most, whichever of its threads comes first.
    """

    def __init__(self, gate: LargePollGate, deadline: float, on_wait: Optional[Callable[[float], None]] = None) -> None:
        self.gate = gate
        self.deadline = deadline
        self.on_wait = on_wait
        self.held = False
        self.waited = 0.0
        self._lock = threading.Lock()

    def admit(self, size: int) -> None:
        """Before parsing a response of `size` bytes: take a slot if it is large and the poll has none yet.

        Raise SlotTimeout if the poll's deadline comes first.
        """
        if self.held or size < self.gate.threshold:
            return
        if not self._lock.acquire(timeout=max(0.0, self.deadline - time.monotonic())):  # another thread of this poll waits
            raise SlotTimeout(0.0)
        try:
            if self.held:
                return
            try:
                waited = self.gate.acquire(self.deadline)
            except SlotTimeout as timeout:
                self._waited(timeout.args[0])
                raise
            self.held = True
            self._waited(waited)
        finally:
            self._lock.release()

    def _waited(self, seconds: float) -> None:
        self.waited += seconds
        if self.on_wait is not None and seconds > 0:
            self.on_wait(seconds)

    def release(self) -> None:
        """The poll has ended (its documents are freed): give the slot back, if it took one."""
        with self._lock:
            if self.held:
                self.held = False
                self.gate.release()

    def __enter__(self) -> "PollTicket":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
