"""The periodic INFO summary: targets up and failing (with their reasons) and the series served, every few minutes.

Per-poll success lines are at debug, so without this an INFO log says nothing while all is well, and a failing target
shows only as its own warnings. One line per period says what the bridge is doing.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from .bridge import Bridge

__all__ = ["summarise", "PeriodicSummary"]

log = logging.getLogger("exporter")
_ERROR_CHARS = 160  # of each failing target's last error, in the line


def summarise(bridge: "Bridge", polls_before: Optional[dict[str, int]] = None) -> tuple[str, dict[str, int]]:
    """The summary line for the bridge's targets now, and each target's poll count (the next call's `polls_before`)."""
    pollers = bridge.pollers
    up, pending, failing = [], [], []
    polls: dict[str, int] = {}
    for name, poller in pollers.items():
        status = poller.status
        polls[name] = status.polls
        if status.polls == 0:
            pending.append(name)
        elif status.last_outcome.startswith("failure") or (status.last_outcome == "running" and status.last_error):
            failing.append((name, status.last_outcome, status.last_error))
        else:
            up.append(name)
    series = sum(snapshot.series for snapshot in bridge.store.current().values())
    made = sum(count - (polls_before or {}).get(name, 0) for name, count in polls.items())
    line = (
        f"summary: {len(pollers)} target(s): {len(up)} up, {len(failing)} failing, {len(pending)} pending; "
        f"{series} series served; {made} poll(s) since the last summary"
    )
    if failing:
        details = []
        for name, outcome, error in failing:
            reason = outcome.removeprefix("failure (").removesuffix(")") if outcome.startswith("failure") else "failing"
            text = error if len(error) <= _ERROR_CHARS else error[: _ERROR_CHARS - 1] + "…"
            details.append(f"{name} ({reason}: {text})")
        line += "; failing: " + ", ".join(details)
    return line, polls


class PeriodicSummary:
    """Logs `summarise(bridge)` at INFO every `interval` seconds on a daemon thread until stopped."""

    def __init__(self, bridge: "Bridge", interval: float) -> None:
        self.bridge = bridge
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="summary", daemon=True)
        self._polls: dict[str, int] = {}

    def start(self) -> "PeriodicSummary":
        """Begin; the first line comes one interval from now."""
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            line, self._polls = summarise(self.bridge, self._polls)
            log.info("%s", line)

    def stop(self) -> None:
        """Stop logging (returns at once; the thread ends at its next wake-up or now, if it is waiting)."""
        self._stop.set()
