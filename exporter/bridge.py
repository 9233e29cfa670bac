"""The bridge: a configuration's pollers, their schedule, the snapshot store and the self-metrics, wired together."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from typing import Optional

from prometheus_client import CollectorRegistry

from .client import Redactor
from .config import Config, ConfigError, Target, load_config
from .largepolls import LargePollGate
from .poller import Poller
from .scheduler import PollScheduler
from .selfmetrics import SelfMetrics
from .store import SnapshotStore
from .summary import PeriodicSummary

__all__ = ["Bridge", "shard_of"]

log = logging.getLogger("exporter")

# Seconds between the first polls of targets started together: 500 targets all due at one instant queue behind the
# pool and start late (measured in bench/: up to 228 of 500 more than 1 s late on a loaded 2-core machine).
FIRST_POLL_SPACING = 0.005


def _warn_deprecated(config: Config) -> None:
    if config.scheduler.max_workers is not None:
        log.warning(
            "scheduler.max_workers is deprecated and has no effect: each poll runs on its own thread, one per target at most"
        )


def _redacted(target: Target, error: Exception) -> str:
    """`Type: message` of an error, with the target's secrets masked."""
    text = f"{type(error).__name__}: {error}"
    try:
        return Redactor(target).redact(text)[:300]
    except Exception:  # the redactor itself cannot be built: say nothing that might hold a secret
        return type(error).__name__


def shard_of(target_name: str, total_shards: int) -> int:
    """The shard that polls a target: a stable hash of its name, the same on every replica and Python version."""
    digest = hashlib.sha256(target_name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % total_shards


class Bridge:
    """Polls the targets of one configuration (this replica's shard of them) and keeps their snapshots."""

    def __init__(
        self,
        config: Config,
        registry: Optional[CollectorRegistry] = None,
        shard: int = 0,
        total_shards: int = 1,
        process_metrics: bool = True,
        summary_interval: float = 0.0,
    ) -> None:
        if not 0 <= shard < total_shards:
            raise ValueError(f"shard {shard} is not in 0..{total_shards - 1}")
        self.shard = shard
        self.total_shards = total_shards
        self.store = SnapshotStore()
        self.metrics = SelfMetrics(registry, process=process_metrics)
        self.metrics.shard_info.labels(str(shard), str(total_shards)).set(1)
        self.gate = LargePollGate(config.scheduler.large_poll_concurrency, config.scheduler.large_poll_bytes)
        self.metrics.watch_gate(self.gate)
        self.stop_event = threading.Event()
        self._reload_lock = threading.Lock()
        self._idle = threading.Condition()
        self._in_flight = 0
        self.config = config
        self.pollers: dict[str, Poller] = {}  # replaced whole on change, so readers may iterate it freely
        self.scheduler = PollScheduler(self._skipped)
        self.started = False
        self._scheduling = True
        _warn_deprecated(config)
        self.summary_interval = summary_interval  # seconds between INFO summaries (0: none)
        self._summary: Optional[PeriodicSummary] = None

    def owns(self, target: Target) -> bool:
        """Whether this replica's shard polls the target."""
        return self.total_shards == 1 or shard_of(target.name, self.total_shards) == self.shard

    def start(self, schedule: bool = True) -> None:
        """Schedule every owned target, each with its first poll now (`schedule=False`: poll only via `poll_now`).

        Raise ConfigError, before anything starts, if a target cannot be set up.
        """
        owned = [target for target in self.config.targets if self.owns(target)]
        built = self._build_all(self.config, owned)
        self.metrics.reload_successful.set(1)
        self.metrics.reload_timestamp.set(time.time())
        self._scheduling = False
        for poller in built.values():
            self._install(poller)
        self._scheduling = schedule
        if schedule:
            for index, target in enumerate(owned):
                self._schedule(target, delay=min(index * FIRST_POLL_SPACING, target.interval / 2))
            self.scheduler.start()
            if self.summary_interval > 0:
                self._summary = PeriodicSummary(self, self.summary_interval).start()
        self.started = True
        log.info(
            "polling %d target(s)%s: %s", len(self.pollers),
            f" (shard {self.shard} of {self.total_shards})" if self.total_shards > 1 else "",
            ", ".join(f"{p.target.name}={p.client.redactor.url()} every {p.target.interval:g}s" for p in self.pollers.values())
            or "none",
        )

    def _build_all(self, config: Config, targets: list[Target]) -> dict[str, Poller]:
        """A poller for each target, or ConfigError naming every target that cannot be set up (nothing is changed)."""
        built: dict[str, Poller] = {}
        problems: list[str] = []
        for target in targets:
            try:
                built[target.name] = Poller(target, self.store, self.metrics, self.stop_event, self.gate)
            except Exception as error:  # a config that passed validation must still never take the process down
                index = config.targets.index(target)
                problems.append(f"targets[{index}]: target {target.name!r} cannot be set up: {_redacted(target, error)}")
        if problems:
            raise ConfigError("<config>", problems)
        return built

    def _install(self, poller: Poller, replaces: Optional[Poller] = None) -> None:
        """Make a poller the one serving its target; a poller it replaces is retired first and its state carried on."""
        name = poller.target.name
        if replaces is not None:
            replaces.retire()
            replaces.client.close()
            poller.adopt(replaces)
            served = self.store.current().get(name)
            self.metrics.series.labels(name).set(served.series if served is not None else 0)
        else:
            self.metrics.add_target(name)
        poller.install_metrics()
        self.pollers = {**self.pollers, name: poller}
        if self._scheduling:
            self._schedule(poller.target)

    def _schedule(self, target: Target, delay: float = 0.0) -> None:
        self.scheduler.add(
            target.name, self._run, target.interval, target.jitter, self.config.scheduler.misfire_grace_time, delay
        )

    def _remove(self, name: str) -> None:
        self.scheduler.remove(name)
        pollers = dict(self.pollers)
        poller = pollers.pop(name)
        poller.retire()  # after this its in-flight poll, if any, writes nothing: the series below stay gone
        self.pollers = pollers
        poller.client.close()
        self.store.drop(name)
        self.metrics.remove_target(name)

    def _run(self, name: str) -> None:
        poller = self.pollers.get(name)
        if poller is None or self.stop_event.is_set():
            return
        with self._idle:
            self._in_flight += 1
        try:
            poller.poll()
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def _skipped(self, name: str, why: str) -> None:
        if name in self.pollers:
            self.metrics.poll_skipped.labels(name).inc()
            log.warning("poll of %s skipped: %s", name, why)

    def poll_now(self, name: str) -> bool:
        """Poll one target immediately on the calling thread (for `try`, tests and embedding)."""
        return self.pollers[name].poll()

    def reload(self, config: Config) -> dict[str, list[str]]:
        """Apply a new, already validated configuration; unchanged targets keep their jobs and snapshots."""
        with self._reload_lock:
            return self._apply(config)

    def _apply(self, config: Config) -> dict[str, list[str]]:
        wanted = {t.name: t for t in config.targets if self.owns(t)}
        fresh = [t for name, t in wanted.items() if name not in self.pollers or self.pollers[name].target != t]
        built = self._build_all(config, fresh)
        changes: dict[str, list[str]] = {"added": [], "removed": [], "changed": [], "unchanged": []}
        for name in list(self.pollers):
            if name not in wanted:
                self._remove(name)
                changes["removed"].append(name)
        for name in wanted:
            current = self.pollers.get(name)
            if name not in built:
                changes["unchanged"].append(name)
                continue
            self._install(built[name], replaces=current)
            changes["changed" if current is not None else "added"].append(name)
        self.config = config
        self.gate.configure(config.scheduler.large_poll_concurrency, config.scheduler.large_poll_bytes)
        _warn_deprecated(config)
        self.metrics.reload_successful.set(1)
        self.metrics.reload_timestamp.set(time.time())
        log.info("configuration reloaded: %s", "; ".join(f"{k} {', '.join(v)}" for k, v in changes.items() if v and k != "unchanged") or "no changes")
        return changes

    def reload_from_file(self, path: str) -> tuple[bool, list[str]]:
        """Re-read a config file and apply it; a bad file changes nothing that runs. Return (ok, problems)."""
        try:
            self.reload(load_config(path))
        except ConfigError as error:
            if error.source == "<config>":
                error = ConfigError(path, error.problems)
            self.metrics.reload_successful.set(0)
            log.error("configuration reload rejected, keeping the running configuration: %s", error)
            return False, error.problems
        return True, []

    def ready(self) -> bool:
        """Whether every target has finished its first poll attempt."""
        return self.started and all(p.attempted.is_set() for p in self.pollers.values())

    def healthy(self) -> bool:
        """Whether the scheduler is running."""
        return self.started and (self.scheduler.running or not self._scheduling) and not self.stop_event.is_set()

    def stop(self, grace: float = 10.0) -> bool:
        """Stop scheduling, let in-flight polls finish for up to `grace` seconds; return whether they all did.

        Polls still running after the grace are abandoned: they are retired (they write and log nothing more) and
        their daemon threads do not hold the process at exit.
        """
        if self._summary is not None:
            self._summary.stop()
        self.scheduler.shutdown()
        with self._idle:
            finished = self._idle.wait_for(lambda: self._in_flight == 0, timeout=max(0.0, grace))
        self.stop_event.set()
        self.gate.close()  # a poll still waiting for a large-poll slot goes on and ends (retired) instead of waiting
        for poller in self.pollers.values():
            poller.retire()
            poller.client.close()
        return finished
