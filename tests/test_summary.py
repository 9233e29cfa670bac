"""Summary: one INFO line every period with the targets up and failing (and why) and the series served."""

import logging

from exporter.summary import PeriodicSummary, summarise

from fakeapi import Reply, wait_until
from test_bridge import pods, pods_config


def two_targets(api):
    return pods_config(api, name="pods") + pods_config(api, name="broken").split("targets:\n", 1)[1]


def test_the_summary_counts_targets_up_failing_and_pending_with_the_reasons(api, run_bridge):
    api.routes["/pods"] = Reply(pods("a", "b"))
    api.routes["/broken"] = Reply({"error": "down"}, status=503)
    running = run_bridge(two_targets(api), schedule=False)
    line, _ = summarise(running.bridge)
    assert line == "summary: 2 target(s): 0 up, 0 failing, 2 pending; 0 series served; 0 poll(s) since the last summary"
    running.bridge.poll_now("pods")
    running.bridge.poll_now("broken")
    line, polls = summarise(running.bridge)
    assert line == (
        "summary: 2 target(s): 1 up, 1 failing, 0 pending; 2 series served; 2 poll(s) since the last summary; "
        "failing: broken (http_status: HTTP 503 Service Unavailable)"
    )
    running.bridge.poll_now("pods")
    assert summarise(running.bridge, polls)[0].split("; ")[2] == "1 poll(s) since the last summary"


def test_the_summary_is_logged_every_period(api, run_bridge, caplog):
    api.routes["/pods"] = Reply(pods("a"))
    caplog.set_level(logging.INFO, logger="exporter")
    running = run_bridge(pods_config(api), schedule=False)
    running.bridge.poll_now("pods")
    summary = PeriodicSummary(running.bridge, 0.05).start()
    try:
        lines = lambda: [r for r in caplog.records if r.getMessage().startswith("summary: ")]  # noqa: E731
        wait_until(lambda: len(lines()) >= 2)
    finally:
        summary.stop()
    first = lines()[0]
    assert first.levelno == logging.INFO
    assert first.getMessage() == "summary: 1 target(s): 1 up, 0 failing, 0 pending; 1 series served; 1 poll(s) since the last summary"


def test_run_starts_the_summary_with_the_configured_interval_and_stops_it(api, run_bridge, caplog):
    api.routes["/pods"] = Reply(pods("a"))
    caplog.set_level(logging.INFO, logger="exporter")
    running = run_bridge(pods_config(api), summary_interval=0.05)
    wait_until(lambda: any(r.getMessage().startswith("summary: 1 target(s): 1 up") for r in caplog.records))
    running.bridge.stop(grace=1.0)
    assert running.bridge._summary is not None and running.bridge._summary._stop.is_set()
