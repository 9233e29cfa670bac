"""Scheduler: interval jobs, no overlap (a still-running poll makes the next one a counted skip), start delay known."""

import threading

from exporter.scheduler import PollScheduler, delay_since, scheduled_time

from fakeapi import wait_until


def test_a_poll_still_running_when_the_next_is_due_is_skipped_and_reported():
    release = threading.Event()
    runs: list[str] = []
    skips: list[tuple[str, str]] = []
    scheduler = PollScheduler(on_skip=lambda name, why: skips.append((name, why)))

    def poll(name: str) -> None:
        runs.append(name)
        release.wait(10)

    scheduler.add("slow", poll, interval=0.1, jitter=0, misfire_grace=None)
    scheduler.start()
    try:
        wait_until(lambda: len(skips) >= 2, timeout=5)
    finally:
        release.set()
        scheduler.shutdown()
    assert runs == ["slow"]
    assert skips[0] == ("slow", "previous poll still running")


def test_a_job_knows_when_it_was_scheduled_to_start():
    seen = []
    done = threading.Event()
    scheduler = PollScheduler(on_skip=lambda n, w: None)

    def poll(name: str) -> None:
        seen.append(scheduled_time())
        done.set()

    scheduler.add("t", poll, interval=60, jitter=0, misfire_grace=None)
    scheduler.start()
    try:
        assert done.wait(5)
    finally:
        scheduler.shutdown()
    assert seen[0] is not None
    assert scheduler.running is False


def test_removing_a_job_stops_its_polls_and_next_run_reports_none():
    scheduler = PollScheduler(on_skip=lambda n, w: None)
    scheduler.add("t", lambda name: None, interval=60, jitter=0, misfire_grace=None)
    assert scheduler.next_run("t") is not None
    scheduler.remove("t")
    assert scheduler.next_run("t") is None
    scheduler.remove("t")


def test_delay_is_never_negative():
    from datetime import datetime, timedelta, timezone

    now = datetime.now(timezone.utc)
    assert delay_since(now + timedelta(seconds=1), now) == 0.0
    assert delay_since(now - timedelta(seconds=2), now) == 2.0
    assert delay_since(None, now) == 0.0


def test_each_poll_runs_on_its_own_daemon_thread_so_hanging_jobs_never_delay_another():
    release = threading.Event()
    hanging_threads: list[threading.Thread] = []
    quick_runs: list[threading.Thread] = []
    scheduler = PollScheduler(on_skip=lambda n, w: None)

    def hang(name: str) -> None:
        hanging_threads.append(threading.current_thread())
        release.wait(10)

    for index in range(100):
        scheduler.add(f"hang{index}", hang, interval=60, jitter=0, misfire_grace=None)
    scheduler.add("quick", lambda name: quick_runs.append(threading.current_thread()), interval=0.2, jitter=0, misfire_grace=None)
    scheduler.start()
    try:
        wait_until(lambda: len(hanging_threads) == 100 and len(quick_runs) >= 3, timeout=5)
    finally:
        release.set()
        scheduler.shutdown()
    assert all(thread.daemon for thread in hanging_threads + quick_runs)
    assert len({id(thread) for thread in hanging_threads}) == 100
