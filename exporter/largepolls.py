"""How many polls at once may hold a large parsed response: a gate with slots, and each poll's ticket to it.

A response's parsed document costs 10-20 times its bytes in Python objects (the 8 MB demo response at 200k series:
about 100 MB until it is mapped and rendered), and several large targets due at the same moment would hold them all
at once. Their parsing and mapping share one GIL, so running them side by side finishes none of them sooner; it only
adds their peaks together. So a poll whose responses come to `scheduler.large_poll_bytes` or more (one body, or the
pages or discovered items of one poll together, since it keeps all their documents until it maps them) takes one of
`scheduler.large_poll_concurrency` slots before it parses the response that crosses the line, and gives the slot back
when the poll ends. A body is fetched (and capped by `max_response_bytes`) before its slot is asked for, so a slow
API holds no slot while a poll's first large response is on the wire; the later pages and items of a poll that holds
one are fetched under it, as the documents before them are in memory. A poll waits for its slot in turn (first come,
first served) inside its own `timeout`; one that is still waiting when its timeout ends fails with reason `timeout`,
saying so. At shutdown the gate closes: waiting polls stop instead of parsing what nobody will serve.
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
    """The poll's deadline (or the shutdown) came before a slot did; `args[0]`: the seconds waited."""


class _Waiter:
    """One poll waiting for a slot: woken either with a slot (`granted`) or by the gate closing."""

    __slots__ = ("event", "granted")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.granted = False


class LargePollGate:
    """At most `slots` polls at once past a large response (0: no limit); waiters are served in order."""

    def __init__(self, slots: int = DEFAULT_SLOTS, threshold: int = DEFAULT_BYTES) -> None:
        self._lock = threading.Lock()
        self._slots = slots
        self.threshold = threshold
        self._running = 0
        self._waiting: deque[_Waiter] = deque()
        self.closed = False  # after close(): no poll gets a slot any more

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
        return not self.closed and (self._slots == 0 or self._running < self._slots)

    def _grant(self) -> None:
        """Hand free slots to the longest-waiting polls (the lock is held)."""
        while self._waiting and self._free():
            waiter = self._waiting.popleft()
            self._running += 1
            waiter.granted = True
            waiter.event.set()

    def acquire(self, deadline: float) -> float:
        """Take a slot, waiting in turn until `deadline` (a `time.monotonic()` value); return the seconds waited.

        Raise SlotTimeout if the deadline comes first, or the gate is closed.
        """
        started = time.monotonic()
        with self._lock:
            if self.closed:
                raise SlotTimeout(0.0)
            if not self._waiting and self._free():
                self._running += 1
                return 0.0
            waiter = _Waiter()
            self._waiting.append(waiter)
        waiter.event.wait(max(0.0, deadline - started))
        with self._lock:
            if waiter.granted:  # possibly between the timeout and the lock
                return time.monotonic() - started
            if waiter in self._waiting:
                self._waiting.remove(waiter)  # timed out (close() has emptied the queue itself)
        raise SlotTimeout(time.monotonic() - started)

    def release(self) -> None:
        """Give a slot back."""
        with self._lock:
            self._running -= 1
            self._grant()

    def close(self) -> None:
        """Shutting down: wake every waiting poll without a slot (it stops with SlotTimeout); grant none from now on."""
        with self._lock:
            self.closed = True
            waiting, self._waiting = list(self._waiting), deque()
        for waiter in waiting:
            waiter.event.set()

    def ticket(self, deadline: float, on_wait: Optional[Callable[[float], None]] = None) -> "PollTicket":
        """A ticket for one poll that must be done by `deadline`; `on_wait` is told the seconds it waited."""
        return PollTicket(self, deadline, on_wait)


class PollTicket:
    """One poll's claim on the gate: taken when the responses the poll has parsed come to the gate's threshold, given
    back when the poll ends.

    A poll of several pages or discovered items takes one slot at most, whichever of its threads crosses the line.
    """

    def __init__(self, gate: LargePollGate, deadline: float, on_wait: Optional[Callable[[float], None]] = None) -> None:
        self.gate = gate
        self.deadline = deadline
        self.on_wait = on_wait
        self.held = False
        self.waited = 0.0
        self.parsed = 0  # bytes of the responses this poll has parsed or is about to, all pages and items together
        self._lock = threading.Lock()

    def admit(self, size: int) -> None:
        """Before parsing a response of `size` bytes: take a slot if the poll's responses now come to the threshold
        and it has none yet. Raise SlotTimeout if the poll's deadline comes first.
        """
        started = time.monotonic()
        with self._lock:
            self.parsed += size
            if self.held or self.parsed < self.gate.threshold:
                return
        # Another thread of this poll may be waiting for the slot already: wait behind it, not beside it.
        if not self._lock.acquire(timeout=max(0.0, self.deadline - started)):
            if self.held:
                return
            raise SlotTimeout(time.monotonic() - started)
        try:
            if self.held:
                return
            try:
                waited = self.gate.acquire(self.deadline)
            except SlotTimeout as timeout:
                self._waited(timeout.args[0])
                raise SlotTimeout(time.monotonic() - started) from None  # this thread's whole wait, siblings' included
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
