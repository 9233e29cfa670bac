"""Scheduler: one APScheduler interval job per target on a shared thread pool; it owns time and nothing else."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta, timezone
from typing import Callable, Optional

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobExecutionEvent, JobSubmissionEvent
from apscheduler.executors.base import run_job
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

__all__ = ["PollScheduler", "scheduled_time"]

log = logging.getLogger(__name__)
_current = threading.local()


def scheduled_time() -> Optional[datetime]:
    """Inside a job: the time the scheduler meant it to start (jitter included)."""
    return getattr(_current, "scheduled", None)


def _run_job_with_schedule(job, jobstore_alias, run_times, logger_name):  # type: ignore[no-untyped-def]
    _current.scheduled = run_times[-1]
    try:
        return run_job(job, jobstore_alias, run_times, logger_name)
    finally:
        _current.scheduled = None


class _ScheduleAwareExecutor(ThreadPoolExecutor):
    """APScheduler's thread pool, telling each job its scheduled time so start delay can be measured."""

    def _do_submit_job(self, job, run_times):  # type: ignore[no-untyped-def]
        def callback(future):  # type: ignore[no-untyped-def]
            exc = future.exception()
            if exc:
                self._run_job_error(job.id, exc, exc.__traceback__)
            else:
                self._run_job_success(job.id, future.result())

        future = self._pool.submit(_run_job_with_schedule, job, job._jobstore_alias, run_times, self._logger.name)
        future.add_done_callback(callback)


class PollScheduler:
    """Runs `poll(name)` for each target at its interval; a slow target only ever holds its own worker."""

    def __init__(self, max_workers: int, on_skip: Callable[[str, str], None]) -> None:
        self._scheduler = BackgroundScheduler(
            executors={"default": _ScheduleAwareExecutor(max_workers)},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=timezone.utc,
        )
        self._on_skip = on_skip
        self._scheduler.add_listener(self._skipped, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
        logging.getLogger("apscheduler").setLevel(logging.ERROR)

    def _skipped(self, event: JobExecutionEvent | JobSubmissionEvent) -> None:
        why = "previous poll still running" if event.code == EVENT_JOB_MAX_INSTANCES else "missed its start time"
        self._on_skip(event.job_id, why)

    def start(self) -> None:
        """Start the scheduler thread."""
        self._scheduler.start()

    @property
    def running(self) -> bool:
        """Whether the scheduler thread is alive."""
        return bool(self._scheduler.running)

    def add(
        self,
        name: str,
        poll: Callable[[str], None],
        interval: float,
        jitter: float,
        misfire_grace: Optional[float],
        delay: float = 0.0,
    ) -> None:
        """Schedule a target, its first poll after `delay` seconds; replace any job of the same name."""
        self._scheduler.add_job(
            poll,
            "interval",
            args=[name],
            id=name,
            name=name,
            seconds=interval,
            jitter=jitter or None,
            misfire_grace_time=max(1, round(misfire_grace if misfire_grace is not None else interval / 2)),
            next_run_time=datetime.now(timezone.utc) + timedelta(seconds=delay),
            replace_existing=True,
        )

    def remove(self, name: str) -> None:
        """Stop scheduling a target (an in-flight poll finishes)."""
        if self._scheduler.get_job(name) is not None:
            self._scheduler.remove_job(name)

    def next_run(self, name: str) -> Optional[datetime]:
        """When the target's next poll is due."""
        job = self._scheduler.get_job(name)
        return job.next_run_time if job is not None else None

    def shutdown(self) -> None:
        """Stop scheduling; in-flight polls are left to finish (the bridge waits for them)."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)


def delay_since(scheduled: Optional[datetime], now: datetime) -> float:
    """Seconds between a scheduled time and now, never negative."""
    if scheduled is None:
        return 0.0
    return max(0.0, (now - scheduled) / timedelta(seconds=1))
