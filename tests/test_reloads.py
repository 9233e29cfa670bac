"""Coalesced reloads: many callers, one reload at a time, spaced, each caller seeing a reload that began after it asked."""

import threading
import time

from exporter.reloads import CoalescedReload

from fakeapi import wait_until


def test_twenty_concurrent_requests_share_at_most_two_reloads():
    runs: list[float] = []
    gate = threading.Event()

    def reload():
        runs.append(time.monotonic())
        gate.wait(5)
        return True, []

    reloads = CoalescedReload(reload, spacing=0)
    first = threading.Thread(target=reloads.request)
    first.start()
    wait_until(lambda: runs)
    results: list[tuple[bool, list[str]]] = []
    waiters = [threading.Thread(target=lambda: results.append(reloads.request())) for _ in range(19)]
    for thread in waiters:
        thread.start()
    wait_until(lambda: len(reloads._cond._waiters) == 19)  # all queued behind the running reload
    gate.set()
    first.join(5)
    for thread in waiters:
        thread.join(5)
    assert len(runs) == 2  # the running one, and one more for everyone who asked while it ran
    assert results == [(True, [])] * 19


def test_a_caller_gets_the_outcome_of_a_reload_that_started_after_it_asked():
    state = {"file": "bad"}
    reloads = CoalescedReload(lambda: (state["file"] == "good", [] if state["file"] == "good" else ["bad file"]), spacing=0)
    assert reloads.request() == (False, ["bad file"])
    state["file"] = "good"
    assert reloads.request() == (True, [])
    assert reloads.count == 2


def test_reloads_start_at_least_the_spacing_apart():
    starts: list[float] = []
    reloads = CoalescedReload(lambda: (starts.append(time.monotonic()), (True, []))[1], spacing=0.2)
    for _ in range(3):
        reloads.request()
    assert len(starts) == 3
    assert all(b - a >= 0.2 for a, b in zip(starts, starts[1:]))
