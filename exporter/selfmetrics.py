"""Self-metrics: the bridge's own counters, gauges and histograms — the alerting contract.

Children are pre-created per target (and per target and reason), so every series exists at 0 from start-up::

    metrics_bridge_poll_success_total{target="pods"} 12
    metrics_bridge_poll_failures_total{reason="timeout",target="pods"} 0
    metrics_bridge_target_up{target="pods"} 1
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from . import __version__
from .client import REASONS
from .families import register_standard_collectors
from .largepolls import LargePollGate

__all__ = ["SelfMetrics", "DURATION_BUCKETS", "DROP_REASONS"]

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
DELAY_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
DROP_REASONS = ("missing_value", "bad_value", "invalid_counter")
FAILURE_REASONS = REASONS + ("internal",)

disable_created_metrics()


class SelfMetrics:
    """Every self-metric, registered in one registry (a fresh one per bridge, so tests never share state)."""

    def __init__(self, registry: CollectorRegistry | None = None, process: bool = True) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        p = "metrics_bridge_"
        self.poll_success = Counter(p + "poll_success", "Polls that fetched, mapped and published.", ["target"], registry=r)
        self.poll_failures = Counter(p + "poll_failures", "Polls that failed, by reason.", ["target", "reason"], registry=r)
        self.poll_duration = Histogram(
            p + "poll_duration_seconds", "Time from the start of a poll's fetch to its publish.", ["target"],
            buckets=DURATION_BUCKETS, registry=r,
        )
        self.poll_start_delay = Histogram(
            p + "poll_start_delay_seconds", "How late each poll started against its schedule.", ["target"],
            buckets=DELAY_BUCKETS, registry=r,
        )
        self.last_success = Gauge(
            p + "last_success_timestamp_seconds", "Unix time of the target's last successful poll.", ["target"], registry=r
        )
        self.target_up = Gauge(p + "target_up", "1 if the target's last poll succeeded, else 0.", ["target"], registry=r)
        self.series = Gauge(p + "series", "Bridged series currently served for the target.", ["target"], registry=r)
        self.poll_skipped = Counter(
            p + "poll_skipped", "Scheduled polls not run: the previous one was still running, or the run misfired.",
            ["target"], registry=r,
        )
        self.duplicate_series = Counter(
            p + "duplicate_series", "Samples that repeated a series already seen in the same poll (the last is kept).",
            ["target"], registry=r,
        )
        self.samples_dropped = Counter(
            p + "samples_dropped", "Samples left out of a poll: a missing value, a bad one with skip_bad_values, a negative or NaN counter.",
            ["target", "reason"], registry=r,
        )
        self.api_clock_skew = Gauge(
            p + "api_clock_skew_seconds", "The API's Date header minus the local clock at the response.", ["target"],
            registry=r,
        )
        self.discovered_items = Gauge(
            p + "discovered_items", "Items in the target's last discovery list (targets with discovery only).", ["target"],
            registry=r,
        )
        self.discovery_item_failures = Counter(
            p + "discovery_item_failures", "Discovered items that gave no samples in a poll, by reason.",
            ["target", "reason"], registry=r,
        )
        self.reload_successful = Gauge(
            p + "config_last_reload_successful", "1 if the last configuration reload succeeded, else 0.", registry=r
        )
        self.reload_timestamp = Gauge(
            p + "config_last_reload_success_timestamp_seconds", "Unix time of the last successful configuration load.",
            registry=r,
        )
        self.large_poll_wait = Counter(
            p + "large_poll_wait_seconds", "Seconds the target's polls waited for a large-poll slot before parsing.",
            ["target"], registry=r,
        )
        self.large_polls_running = Gauge(
            p + "large_polls_running", "Polls holding a large-poll slot (parsing, mapping or rendering a large response).",
            registry=r,
        )
        self.large_polls_waiting = Gauge(
            p + "large_polls_waiting", "Polls with a large response waiting for a slot (scheduler.large_poll_concurrency).",
            registry=r,
        )
        self.build_info = Gauge(p + "build_info", "metrics-bridge build information.", ["version"], registry=r)
        self.build_info.labels(__version__).set(1)
        self.shard_info = Gauge(p + "shard_info", "This replica's shard.", ["shard", "total_shards"], registry=r)
        if process:
            register_standard_collectors(r)

    def add_target(self, target: str) -> None:
        """Create every per-target child at 0, so the series exist before the first poll."""
        self.poll_success.labels(target)
        for reason in FAILURE_REASONS:
            self.poll_failures.labels(target, reason)
        self.poll_duration.labels(target)
        self.poll_start_delay.labels(target)
        self.last_success.labels(target)
        self.target_up.labels(target).set(0)
        self.series.labels(target).set(0)
        self.poll_skipped.labels(target)
        self.duplicate_series.labels(target)
        self.large_poll_wait.labels(target)
        for reason in DROP_REASONS:
            self.samples_dropped.labels(target, reason)

    def watch_gate(self, gate: "LargePollGate") -> None:
        """Read the large-poll gate's counts at each scrape."""
        self.large_polls_running.set_function(lambda: gate.running)
        self.large_polls_waiting.set_function(lambda: gate.waiting)

    def add_discovery(self, target: str) -> None:
        """Create a discovery target's item series at 0."""
        self.discovered_items.labels(target).set(0)
        for reason in FAILURE_REASONS:
            self.discovery_item_failures.labels(target, reason)

    def remove_discovery(self, target: str) -> None:
        """Remove the item series of a target that has (no longer) a discovery block."""
        try:
            self.discovered_items.remove(target)
        except KeyError:
            pass
        for reason in FAILURE_REASONS:
            try:
                self.discovery_item_failures.remove(target, reason)
            except KeyError:
                pass

    def remove_target(self, target: str) -> None:
        """Remove every per-target child of a target that is no longer configured."""
        self.remove_discovery(target)
        for metric in (
            self.poll_success, self.poll_duration, self.poll_start_delay, self.last_success, self.target_up,
            self.series, self.poll_skipped, self.duplicate_series, self.api_clock_skew, self.large_poll_wait,
        ):
            try:
                metric.remove(target)
            except KeyError:
                pass
        for metric, reasons in ((self.poll_failures, FAILURE_REASONS), (self.samples_dropped, DROP_REASONS)):
            for reason in reasons:
                try:
                    metric.remove(target, reason)
                except KeyError:
                    pass
