"""Bridge and poller: polls publish snapshots, failures are counted by reason, stale data goes, other targets stay."""

import socket
import threading
import time

import requests
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import parse_config
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
    wait_until(lambda: running.bridge.pollers["pods"].status.last_outcome == "success")
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


def many_targets(api, names, interval, timeout):
    return "targets:\n" + "".join(
        pods_config(api, name, interval=interval).split("targets:\n")[1].replace("timeout: 2s", f"timeout: {timeout}")
        for name in names
    )


class HangingAPI:
    """A loopback server that accepts every connection, reads the request and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.sock.settimeout(0.05)
        self.held: list[socket.socket] = []
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}{path}"

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                continue

    def close(self) -> None:
        self.closed.set()
        self.thread.join()
        for conn in self.held:
            conn.close()
        self.sock.close()


def test_eighty_hanging_targets_never_starve_ten_healthy_ones(api, run_bridge):
    polled: dict[str, list[float]] = {f"ok{i}": [] for i in range(10)}
    for name in polled:
        api.routes["/" + name] = lambda request: (polled[request.path[1:]].append(time.monotonic()), Reply(pods("a")))[1]
    hanging_api = HangingAPI()
    hanging = [f"hang{i:02d}" for i in range(80)]
    config = many_targets(api, hanging, "2s", "2s")
    for name in hanging:
        config = config.replace(api.url("/" + name), hanging_api.url("/" + name))
    config += many_targets(api, polled, "1s", "1s").split("targets:\n")[1]
    try:
        running = run_bridge(config)  # parsing 90 targets may take a second on a loaded machine: not the bridge's time
        started = time.monotonic()
        wait_until(lambda: len(hanging_api.held) >= 80, timeout=5)
        wait_until(lambda: time.monotonic() - started > 4.5, timeout=6)
        running.bridge.stop(grace=0)
    finally:
        hanging_api.close()
    for name, times in polled.items():
        gaps = [later - earlier for earlier, later in zip([started, *times], times)]
        assert len(times) >= 3 and max(gaps) <= 2 * 1.0, (name, [round(g, 2) for g in gaps])


def test_a_reload_from_one_to_forty_targets_polls_all_forty(api, run_bridge):
    names = [f"t{i:02d}" for i in range(40)]
    for name in names:
        api.routes["/" + name] = Reply(pods("a"))
    running = run_bridge(many_targets(api, names[:1], "1s", "1s"))
    wait_until(lambda: running.bridge.pollers["t00"].status.polls >= 1)
    running.bridge.reload(parse_config(many_targets(api, names, "1s", "1s")))
    wait_until(lambda: all(running.bridge.pollers[name].status.polls >= 1 for name in names), timeout=2 * 1.0)


def held_route(api, path):
    """Route `path` to a reply that waits for the test: returns (entered, release, reply-holder)."""
    entered, release = threading.Event(), threading.Event()
    reply = [Reply(pods("a", "b"))]

    def answer(request):
        entered.set()
        release.wait(10)
        return reply[0]

    api.routes[path] = answer
    return entered, release, reply


def test_removing_a_target_during_its_poll_does_not_resurrect_its_self_metrics(api, run_bridge):
    api.routes["/other"] = Reply(pods("o"))
    running = run_bridge(pods_config(api) + pods_config(api, "other").split("targets:\n")[1], schedule=False)
    entered, release, _ = held_route(api, "/pods")
    poll = threading.Thread(target=running.bridge.poll_now, args=("pods",))
    poll.start()
    assert entered.wait(5)
    running.bridge.reload(parse_config(pods_config(api, "other")))
    release.set()
    poll.join(10)
    text = scrape(running.url)
    assert 'target="pods"' not in text
    assert pods_served(text) == []
    assert sample_value(text, "metrics_bridge_target_up", target="other") == 0


def test_changing_a_target_mid_poll_keeps_its_state_and_discards_the_old_outcome(api, run_bridge):
    api.routes["/pods"] = Reply(pods("a", "b"))
    running = run_bridge(pods_config(api), schedule=False)
    assert running.bridge.poll_now("pods") is True
    entered, release, reply = held_route(api, "/pods")
    reply[0] = Reply(status=500)
    poll = threading.Thread(target=running.bridge.poll_now, args=("pods",))
    poll.start()
    assert entered.wait(5)
    running.bridge.reload(parse_config(pods_config(api, interval="11s")))
    text = scrape(running.url)
    assert pods_served(text) == ["a", "b"]
    assert sample_value(text, "metrics_bridge_target_up", target="pods") == 1
    assert sample_value(text, "metrics_bridge_series", target="pods") == 2
    release.set()
    poll.join(10)
    text = scrape(running.url)
    assert sample_value(text, "metrics_bridge_target_up", target="pods") == 1
    assert sample_value(text, "metrics_bridge_series", target="pods") == 2
    assert sample_value(text, "metrics_bridge_poll_failures_total", target="pods", reason="http_status") == 0
    new = running.bridge.pollers["pods"]
    assert new.target.interval == 11 and new.status.last_outcome == "success" and new.status.polls == 1
    assert running.bridge.ready()
    api.routes["/pods"] = Reply(pods("c"))
    assert running.bridge.poll_now("pods") is True
    text = scrape(running.url)
    assert pods_served(text) == ["c"] and sample_value(text, "metrics_bridge_series", target="pods") == 1


def test_a_reload_with_an_invalid_port_is_rejected_and_the_status_page_stays_up(api, run_bridge, tmp_path):
    api.routes["/pods"] = Reply(pods("a"))
    running = run_bridge(pods_config(api), schedule=False)
    path = tmp_path / "config.yaml"
    path.write_text(pods_config(api) + pods_config(api, "broken").split("targets:\n")[1].replace(api.url("/broken"), "http://127.0.0.1:99999/ok"))
    ok, problems = running.bridge.reload_from_file(str(path))
    assert not ok and any(p.startswith("targets[1].url: ") and "99999" in p for p in problems)
    assert list(running.bridge.pollers) == ["pods"]
    assert requests.get(running.url + "/", timeout=5).status_code == 200
    assert sample_value(scrape(running.url), "metrics_bridge_config_last_reload_successful") == 0
