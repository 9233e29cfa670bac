"""Poll history: each target's recent polls (outcome, duration, series) and its running totals, for the status page."""

from __future__ import annotations

import threading
from collections import deque
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
        self._records: deque[PollRecord] = deque(maxlen=length)
        self._lock = threading.Lock()
        self.successes = 0
        self.failures = 0

    def record(self, start: float, duration: float, reason: Optional[str], series: int) -> None:
        """Add a finished poll (`reason` None for a success)."""
        with self._lock:
            self._records.append(PollRecord(start, duration, reason, series))
            if reason is None:
                self.successes += 1
            else:
                self.failures += 1

    def records(self) -> list[PollRecord]:
        """The kept polls, oldest first."""
        with self._lock:
            return list(self._records)
