"""One poll of one target: fetch → map → publish, timed and counted, and its outcome kept for the status page."""

from __future__ import annotations

import logging
import threading
import time
import traceback
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Optional

from .client import FetchError, FetchResult, Redactor, TargetClient
from .config import Target
from .discovery import Discovery, DiscoveryFailed, DiscoveryOutcome
from .explain import EmptyMappingWatch
from .exposition import FamilyHeader
from .history import PollHistory
from .largepolls import LargePollGate, PollTicket
from .mapping import Mapper, MappingError, MapResult
from .request import RequestTemplate
from .scheduler import delay_since, scheduled_time
from .selfmetrics import SelfMetrics
from .store import Snapshot, SnapshotStore
from .templating import TemplateFailure, WindowTracker, poll_context
from .verdict import ApiError, verdict_for

__all__ = ["Poller", "PollStatus", "describe_failure"]

log = logging.getLogger("exporter.poll")


def describe_failure(error: BaseException, redactor: Redactor) -> tuple[str, str]:
    """A failed poll's reason and message, redacted: the one place an error becomes text anyone sees."""
    if isinstance(error, FetchError):
        reason, text = error.reason, str(error)
    elif isinstance(error, MappingError):  # mapping, or too_large / timeout when the mapping was cut short
        reason, text = getattr(error, "reason", "mapping"), str(error)
    elif isinstance(error, ApiError):
        reason, text = "api_error", str(error)
    else:
        reason, text = "internal", f"{type(error).__name__}: {error}"
    return reason, redactor.redact(text)


@dataclass(frozen=True)
class PollStatus:
    """What the last poll of a target did, for the status page (error messages are already redacted)."""

    polls: int = 0
    last_start: Optional[float] = None
    last_duration: Optional[float] = None
    last_outcome: str = "pending"
    last_error: str = ""
    last_success: Optional[float] = None
    series: int = 0


class Poller:
    """Everything needed to poll one target, compiled once per configuration."""

    def __init__(
        self, target: Target, store: SnapshotStore, metrics: SelfMetrics, stop: threading.Event,
        gate: Optional[LargePollGate] = None,
    ) -> None:
        self.target = target
        self.gate = gate if gate is not None else LargePollGate(0)  # the bridge's, shared by its pollers; else no limit
        self.store = store
        self.metrics = metrics
        self.client = TargetClient(target, stop=stop)
        self.mapper = Mapper(target)
        self.verdict = verdict_for(target.api_error)
        self.request = RequestTemplate(target)
        self.window = WindowTracker(*target.window_lengths)
        self.discovery = Discovery(target, self.client, self.mapper, self.verdict) if target.discovery is not None else None
        self.headers = self.family_headers(target)
        self.empty_watch = EmptyMappingWatch(target)
        self.status = PollStatus()
        self.history = PollHistory()
        self.settled = self.status  # the status as the last finished poll left it (no "running")
        self.stop = stop
        self._outcome = threading.Lock()
        self.retired = False
        self.attempted = threading.Event()

    @staticmethod
    def family_headers(target: Target) -> dict[str, FamilyHeader]:
        """The pre-rendered header of every metric a target's mappings produce."""
        return {m.name: FamilyHeader.build(m.name, m.type, m.help) for mapping in target.mappings for m in mapping.metrics}

    def publish(self, snapshot: Snapshot) -> None:
        """Make a snapshot visible."""
        self.store.publish(snapshot)

    def install_metrics(self) -> None:
        """Create (or, for a target that lost its discovery block, remove) the discovery self-metrics at 0."""
        if self.discovery is not None:
            self.metrics.add_discovery(self.target.name)
        else:
            self.metrics.remove_discovery(self.target.name)

    def retire(self) -> None:
        """From now on write nothing: no snapshot, no self-metric, no status (waits for an outcome being recorded)."""
        with self._outcome:
            self.retired = True

    def adopt(self, old: "Poller") -> None:
        """Carry on from a retired poller of the same target: its status, history, readiness and what it serves."""
        self.status = self.settled = old.settled
        self.history = old.history
        self.window.last_end = old.window.last_end  # a reload neither re-asks nor skips any time
        if old.attempted.is_set():
            self.attempted.set()

    def poll(self) -> bool:
        """Poll once; return whether it succeeded. Never raises: every failure is counted with its reason."""
        name = self.target.name
        metrics = self.metrics
        started = time.monotonic()
        started_wall = time.time()
        start_delay = delay_since(scheduled_time(), datetime.now(timezone.utc))
        self.status = replace(self.settled, last_start=started_wall, last_outcome="running")
        now = datetime.fromtimestamp(started_wall, timezone.utc)
        window = self.window.next(now)
        reason = message = ""
        skew: Optional[float] = None
        items: Optional[DiscoveryOutcome] = None
        deadline = started + self.target.timeout
        ticket = self.gate.ticket(deadline, metrics.large_poll_wait.labels(name).inc)
        try:
            fetched, result, items = self._collect(poll_context(now, window), deadline, ticket)
            if fetched.api_date is not None:
                skew = fetched.api_date - fetched.received_at
            vanished = self.empty_watch.after_poll(result, fetched.documents)
            if vanished:
                log.warning("%s", self.client.redactor.redact(vanished))
            pages = len(fetched.documents)
            fetched.documents.clear()  # the parsed response is not needed to render: free it before, not after
            snapshot = Snapshot.build(name, result, self.headers, self.target.effective_stale_after, consume=True)
        except DiscoveryFailed as error:
            items = error.outcome
            reason, message = describe_failure(error, self.client.redactor)
        except Exception as error:  # a bug must cost one poll, not the job
            reason, message = describe_failure(error, self.client.redactor)
            if reason == "internal":
                log.debug("poll of %s raised: %s", name, self.client.redactor.redact(traceback.format_exc()))
        finally:
            # Rendered, or failed: the parsed documents are gone either way. What the label memos learnt joins them
            # now, before another large poll may parse (labelmemo.py).
            try:
                (self.discovery or self.mapper).settle()
            finally:
                ticket.release()
        duration = time.monotonic() - started
        with self._outcome:
            if self.retired:  # removed or changed by a reload mid-poll: writing now would resurrect or overwrite
                if not self.stop.is_set():
                    log.debug("poll of %s ended after a reload retired it; outcome discarded", name)
                return False
            metrics.poll_start_delay.labels(name).observe(start_delay)
            metrics.poll_duration.labels(name).observe(duration)
            if skew is not None:
                metrics.api_clock_skew.labels(name).set(skew)
            if items is not None:
                self._count_items(items)
            if reason:
                self._failed(reason, message, started_wall, duration)
            else:
                self.publish(snapshot)
                self.window.advance(window)  # only a successful poll moves the window on
                self._succeeded(result, snapshot, started_wall, duration, fetched.bytes, pages)
            self.settled = self.status
            self.attempted.set()
        return not reason

    def _collect(
        self, context: dict, deadline: float, ticket: Optional[PollTicket] = None  # type: ignore[type-arg]
    ) -> tuple[FetchResult, MapResult, Optional[DiscoveryOutcome]]:
        """Fetch and map this poll's documents: the target's request, or one per discovered item."""
        if self.discovery is not None:
            outcome = self.discovery.run(context, deadline, ticket)
            return outcome.fetched, outcome.result, outcome
        try:
            request = self.request.render(context)
        except TemplateFailure as exc:
            raise FetchError("mapping", self.client.redactor.redact(f"request template: {exc}")) from None
        fetched = self.client.fetch(request=request, deadline=deadline, ticket=ticket)
        result = self.mapper.new_result()
        for document in fetched.documents:
            if self.verdict is not None:
                self.verdict.check(document)
            self.mapper.map(document, result, deadline)  # mapping honours the fetch's deadline too
        return fetched, result, None

    def _count_items(self, outcome: DiscoveryOutcome) -> None:
        """Record how many items the list held and which of them failed (each failure logged)."""
        name = self.target.name
        self.metrics.discovered_items.labels(name).set(outcome.items)
        for failure in outcome.failures:
            self.metrics.discovery_item_failures.labels(name, failure.reason).inc()
            shown = ",".join(f"{k}={v!r}" for k, v in failure.labels.items())
            log.warning(
                "discovered item %d%s of %s failed: reason=%s: %s",
                failure.index, f" ({self.client.redactor.redact(shown)})" if shown else "", name, failure.reason,
                failure.message,
            )

    def _succeeded(self, result, snapshot: Snapshot, started: float, duration: float, size: int, pages: int) -> None:  # type: ignore[no-untyped-def]
        name = self.target.name
        m = self.metrics
        m.poll_success.labels(name).inc()
        m.target_up.labels(name).set(1)
        m.last_success.labels(name).set(started + duration)
        m.series.labels(name).set(snapshot.series)
        if result.duplicates:
            m.duplicate_series.labels(name).inc(result.duplicates)
        if result.missing_values:
            m.samples_dropped.labels(name, "missing_value").inc(result.missing_values)
        if result.bad_values:
            m.samples_dropped.labels(name, "bad_value").inc(result.bad_values)
        if result.invalid_counters:
            m.samples_dropped.labels(name, "invalid_counter").inc(result.invalid_counters)
        self.status = PollStatus(
            polls=self.status.polls + 1, last_start=started, last_duration=duration, last_outcome="success",
            last_success=started + duration, series=snapshot.series,
        )
        self.history.record(started, duration, None, snapshot.series)
        log.debug(
            "poll of %s succeeded in %.3fs: %d series from %d bytes in %d page(s)%s",
            name, duration, snapshot.series, size, pages,
            f", {result.duplicates} duplicate sample(s) replaced" if result.duplicates else "",
        )

    def _failed(self, reason: str, message: str, started: float, duration: float) -> None:
        name = self.target.name
        m = self.metrics
        m.poll_failures.labels(name, reason).inc()
        m.target_up.labels(name).set(0)
        snapshot = self.store.current().get(name)
        dropped = snapshot is not None and snapshot.is_stale(time.monotonic()) and self.store.drop(name)
        if dropped or snapshot is None:
            m.series.labels(name).set(0)
        self.status = replace(
            self.status, polls=self.status.polls + 1, last_start=started, last_duration=duration,
            last_outcome=f"failure ({reason})", last_error=message,
            series=0 if dropped or snapshot is None else self.status.series,
        )
        self.history.record(started, duration, reason, self.status.series)
        log.warning(
            "poll of %s failed: reason=%s: %s%s", name, reason, message,
            "; stale snapshot dropped" if dropped else "",
        )
