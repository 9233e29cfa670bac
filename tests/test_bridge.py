"""Bridge and poller: polls publish snapshots, failures are counted by reason, stale data goes, other targets stay."""

import threading

import requests
from prometheus_client.parser import text_string_to_metric_families

from fakeapi import Reply, wait_until


def pods_config(api, name="pods", stale_after="", interval="10s", extra=""):
    return f"""
targets:
  - name: {name}
    url: {api.url('/' + name)}
    interval: {interval}
    timeout: 2s
    retries: {{attempts: 1}}
{stale_after}{extra}
    mappings:
      - each: items
        level: pod
        labels: {{namespace: ns, pod: name}}
        metrics:
          - {{name: pod_cpu_usage_cores, help: CPU., value: cpu, convert: quantity}}
"""


def pods(*names):
    return {"items": [{"ns": "inference", "name": n, "cpu": "500m"} for n in names]}


def scrape(url):
    response = requests.get(url + "/metrics", timeout=5)
    assert response.status_code == 200
    return response.text


def sample_value(text, name, **labels):
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


def pods_served(text):
    return sorted(
        s.labels["pod"] for f in text_string_to_metric_families(text) for s in f.samples if s.name == "pod_cpu_usage_cores"
    )


def test_a_successful_poll_publishes_its_series_and_counts_the_success(api, run_bridge):
    api.routes["/pods"] = Reply(pods("a", "b"))
    running = run_bridge(pods_config(api), schedule=False)
    assert running.bridge.poll_now("pods") is True
    text = scrape(running.url)
    assert pods_served(text) == ["a", "b"]
    assert sample_value(text, "pod_cpu_usage_cores", pod="a", level="pod", target="pods", namespace="inference") == 0.5
    assert sample_value(text, "metrics_bridge_poll_success_total", target="pods") == 1
    assert sample_value(text, "metrics_bridge_target_up", target="pods") == 1
    assert sample_value(text, "metrics_bridge_series", target="pods") == 2
    assert sample_value(text, "metrics_bridge_poll_duration_seconds_count", target="pods") == 1
    assert sample_value(text, "metrics_bridge_last_success_timestamp_seconds", target="pods") > 1.7e9


def test_failure_counters_exist_at_zero_for_every_reason_before_any_failure(api, run_bridge):
    running = run_bridge(pods_config(api), schedule=False)
    text = scrape(running.url)
    for reason in ("timeout", "connection", "http_status", "invalid_json", "mapping", "too_large"):
        assert sample_value(text, "metrics_bridge_poll_failures_total", target="pods", reason=reason) == 0
    assert sample_value(text, "metrics_bridge_poll_skipped_total", target="pods") == 0
    assert sample_value(text, "metrics_bridge_duplicate_series_total", target="pods") == 0
    assert sample_value(text, "metrics_bridge_build_info") == 1


def test_a_pod_that_vanishes_from_the_api_vanishes_at_the_next_poll(api, run_bridge):
    api.routes["/pods"] = Reply(pods("a", "b", "c"))
    running = run_bridge(pods_config(api), schedule=False)
    running.bridge.poll_now("pods")
    api.routes["/pods"] = Reply(pods("a", "c", "d"))
    running.bridge.poll_now("pods")
    assert pods_served(scrape(running.url)) == ["a", "c", "d"]


def test_a_failed_poll_serves_the_last_snapshot_then_drops_it_after_stale_after(api, run_bridge):
    api.routes["/pods"] = Reply(pods("a"))
    running = run_bridge(pods_config(api, stale_after="    stale_after: 0.3s\n", interval="1s", extra="    timeout: 0.2s\n").replace("    timeout: 2s\n", ""), schedule=False)
    bridge = running.bridge
    bridge.poll_now("pods")
    api.routes["/pods"] = Reply(status=500)
    assert bridge.poll_now("pods") is False
    text = scrape(running.url)
    assert pods_served(text) == ["a"]
    assert sample_value(text, "metrics_bridge_target_up", target="pods") == 0
    assert sample_value(text, "metrics_bridge_poll_failures_total", target="pods", reason="http_status") == 1
    wait_until(lambda: pods_served(scrape(running.url)) == [], timeout=5)
    bridge.poll_now("pods")
    assert "pods" not in bridge.store.current()
    assert sample_value(scrape(running.url), "metrics_bridge_series", target="pods") == 0
    api.routes["/pods"] = Reply(pods("a"))
    assert bridge.poll_now("pods") is True
    assert pods_served(scrape(running.url)) == ["a"]


def test_one_bad_target_fails_alone_and_the_others_keep_being_served(api, run_bridge):
    api.routes["/good"] = Reply(pods("g"))
    api.routes["/bad"] = Reply(b"<html>maintenance</html>", headers={"Content-Type": "text/html"})
    config = pods_config(api, "good") + pods_config(api, "bad").split("targets:\n")[1]
    running = run_bridge(config, schedule=False)
    assert running.bridge.poll_now("good") and not running.bridge.poll_now("bad")
    text = scrape(running.url)
    assert pods_served(text) == ["g"]
    assert sample_value(text, "metrics_bridge_poll_failures_total", target="bad", reason="invalid_json") == 1
    assert sample_value(text, "metrics_bridge_target_up", target="good") == 1
    status = running.bridge.pollers["bad"].status
    assert status.last_outcome == "failure (invalid_json)" and "text/html" in status.last_error


def test_a_mapping_error_is_counted_with_reason_mapping(api, run_bridge):
    api.routes["/pods"] = Reply({"items": [{"ns": "x", "name": "a", "cpu": {"not": "a quantity"}}]})
    running = run_bridge(pods_config(api), schedule=False)
    assert running.bridge.poll_now("pods") is False
    assert sample_value(scrape(running.url), "metrics_bridge_poll_failures_total", target="pods", reason="mapping") == 1


def test_duplicate_series_are_counted_and_the_scrape_stays_valid(api, run_bridge):
    api.routes["/pods"] = Reply({"items": [{"ns": "x", "name": "a", "cpu": "1"}, {"ns": "x", "name": "a", "cpu": "2"}]})
    running = run_bridge(pods_config(api), schedule=False)
    running.bridge.poll_now("pods")
    text = scrape(running.url)
    assert sample_value(text, "pod_cpu_usage_cores", pod="a") == 2
    assert sample_value(text, "metrics_bridge_duplicate_series_total", target="pods") == 1


def test_readyz_waits_for_every_first_poll_and_healthz_reports_the_scheduler(api, run_bridge):
    api.routes["/pods"] = Reply(pods("a"))
    running = run_bridge(pods_config(api), schedule=False)
    not_ready = requests.get(running.url + "/readyz", timeout=5)
    assert (not_ready.status_code, not_ready.text) == (503, "waiting for first poll of: pods\n")
    assert requests.get(running.url + "/healthz", timeout=5).status_code == 200
    running.bridge.poll_now("pods")
    assert requests.get(running.url + "/readyz", timeout=5).status_code == 200


def test_scheduled_polls_start_at_once_and_repeat(api, run_bridge):
    api.routes["/pods"] = Reply(pods("a"))
    running = run_bridge(pods_config(api, interval="0.2s", extra="    timeout: 0.2s\n").replace("    timeout: 2s\n", ""))
    wait_until(lambda: running.bridge.pollers["pods"].status.polls >= 3, timeout=5)
    assert len(api.requests) >= 3


def test_a_hanging_target_never_delays_another(api, run_bridge):
    api.routes["/slow"] = Reply(pods("s"), delay=30)
    api.routes["/fast"] = Reply(pods("f"))
    config = pods_config(api, "slow", interval="3s") + pods_config(api, "fast", interval="0.2s", extra="    timeout: 0.2s\n").split("targets:\n")[1].replace("    timeout: 2s\n", "")
    running = run_bridge(config)
    fast = running.bridge.pollers["fast"]
    wait_until(lambda: fast.status.polls >= 5, timeout=4)
    assert running.bridge.pollers["slow"].status.last_outcome in ("running", "failure (timeout)")
    assert fast.status.last_outcome == "success"


def test_concurrent_scrapes_during_polls_always_see_a_whole_exposition(api, run_bridge):
    api.routes["/pods"] = lambda request: Reply(pods(*[f"p{i}" for i in range(len(api.requests) % 7 + 50)]))
    # stale_after far above the interval: on a loaded machine a 0.1 s poll may time out, which must not empty /metrics.
    config = pods_config(api, interval="0.1s", stale_after="    stale_after: 60s\n", extra="    timeout: 0.1s\n")
    running = run_bridge(config.replace("    timeout: 2s\n", ""))
    wait_until(lambda: running.bridge.pollers["pods"].status.polls >= 1)
    errors: list[str] = []

    def scraper():
        for _ in range(15):
            try:
                text = scrape(running.url)
                served = pods_served(text)
                if not 50 <= len(served) <= 56 or sample_value(text, "metrics_bridge_build_info") != 1:
                    errors.append(f"partial exposition: {len(served)} pods")
            except Exception as exc:  # collected and asserted below
                errors.append(repr(exc))

    threads = [threading.Thread(target=scraper) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_stop_waits_for_the_poll_in_flight(api, run_bridge):
    api.routes["/pods"] = Reply(pods("a"), delay=0.5)
    running = run_bridge(pods_config(api))
    poller = running.bridge.pollers["pods"]
    wait_until(lambda: poller.status.last_outcome == "running")
    assert running.bridge.stop(grace=5) is True
    assert poller.status.last_outcome == "success"


def test_three_shards_poll_each_of_thirty_targets_exactly_once(api):
    from exporter.bridge import Bridge
    from exporter.config import parse_config

    config = parse_config("targets:\n" + "".join(pods_config(api, f"t{i:02d}").split("targets:\n")[1] for i in range(30)))
    owned = []
    for shard in range(3):
        bridge = Bridge(config, shard=shard, total_shards=3, process_metrics=False)
        bridge.start(schedule=False)
        owned.append(set(bridge.pollers))
        assert sample_value(bridge_text(bridge), "metrics_bridge_shard_info", shard=str(shard), total_shards="3") == 1
        bridge.stop(0)
    assert sorted(name for names in owned for name in names) == sorted(t.name for t in config.targets)
    assert all(4 <= len(names) <= 16 for names in owned)


def test_the_shard_of_a_target_is_a_fixed_function_of_its_name():
    from exporter.bridge import shard_of

    # sha256-based: the same on every replica, restart and Python version (a golden list, not hash()).
    assert [shard_of(name, 3) for name in ("pods", "services", "containers", "t00", "t01")] == [1, 2, 0, 0, 0]
    assert [shard_of(name, 7) for name in ("pods", "services", "containers", "t00", "t01")] == [3, 2, 0, 0, 5]


def bridge_text(bridge):
    from prometheus_client import generate_latest

    return generate_latest(bridge.metrics.registry).decode()
