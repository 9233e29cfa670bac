"""Poll history: each target's recent polls (outcome, duration, series) and its running totals, for the status page.

The numbers are kept in arrays made once, not as objects made per poll: a poll's record is made right after its
document and samples are freed, and its small objects (a record, two floats, an int) would land in the arenas they
left and keep them resident, HISTORY_LENGTH polls' worth of them per target (see `memory.py`).
"""

from __future__ import annotations

import threading
from array import array
from dataclasses import dataclass
from typing import Optional

__all__ = ["PollRecord", "PollHistory", "HISTORY_LENGTH"]

HISTORY_LENGTH = 60  # polls kept per target: an hour at a one-minute interval, 15 minutes at 15 s


@dataclass(frozen=True)
class PollRecord:
    """One finished poll: when it started (Unix time), how long it took, its outcome and what it published."""

    start: float
    duration: float
    reason: Optional[str]  # None for a success
    series: int


class PollHistory:
    """The last HISTORY_LENGTH polls of one target and the counts since it was configured; safe across threads."""

    def __init__(self, length: int = HISTORY_LENGTH) -> None:
        self._length = length
        self._times = array("d", bytes(16 * length))  # start and duration of each kept poll, in a ring
        self._series = array("q", bytes(8 * length))
        self._reasons: list[Optional[str]] = [None] * length  # failure reasons are the code's own constant strings
        self._counts = array("q", bytes(24))  # polls kept, successes, failures
        self._next = 0
        self._lock = threading.Lock()

    @property
    def successes(self) -> int:
        """Successful polls since the target was configured."""
        return self._counts[1]

    @property
    def failures(self) -> int:
        """Failed polls since the target was configured."""
        return self._counts[2]

    def record(self, start: float, duration: float, reason: Optional[str], series: int) -> None:
        """Add a finished poll (`reason` None for a success)."""
        with self._lock:
            at = self._next
            self._times[2 * at] = start
            self._times[2 * at + 1] = duration
            self._series[at] = series
            self._reasons[at] = reason
            self._next = (at + 1) % self._length
            counts = self._counts
            counts[0] = min(counts[0] + 1, self._length)
            counts[1 if reason is None else 2] += 1

    def records(self) -> list[PollRecord]:
        """The kept polls, oldest first."""
        with self._lock:
            kept, length = self._counts[0], self._length
            first = (self._next - kept) % length
            slots = [(first + i) % length for i in range(kept)]
            return [PollRecord(self._times[2 * i], self._times[2 * i + 1], self._reasons[i], self._series[i]) for i in slots]
