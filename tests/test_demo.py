"""Demo API: a realistic, evolving inference platform behind a real HTTP server, with injectable faults."""

import orjson
import requests

from exporter.demo import DemoPlatform, DemoServer


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


def test_service_figures_use_the_awkward_encodings_real_apis_use():
    document = orjson.loads(DemoPlatform(pods=8, clock=Clock(1_800_000_000.0)).body("model_inference"))
    chat = next(s for s in document["services"] if s["service"] == "chat")
    assert chat["latency"]["p50"].endswith("ms") and chat["latency"]["p99"].endswith("s")
    assert chat["error_rate"].endswith("%") and chat["status"] == "READY"
    assert isinstance(chat["tokens_per_second"], str)


def test_pods_have_two_containers_and_the_container_list_packs_ids():
    platform = DemoPlatform(pods=5, clock=Clock(1_800_000_000.0))
    pods = orjson.loads(platform.body("pod"))["items"]
    assert len(pods) == 5 and all(len(p["containers"]) == 2 for p in pods)
    assert pods[0]["usage"]["cpu"].endswith("m")
    containers = orjson.loads(platform.body("container"))["containers"]
    assert len(containers) == 10
    assert containers[0]["id"] == f"inference/{pods[0]['metadata']['name']}/model-server"


def test_pod_name_and_container_name_filter_the_answer():
    platform = DemoPlatform(pods=5, clock=Clock(1_800_000_000.0))
    name = platform.pod_names()[2]
    rows = orjson.loads(platform.body("container", pod_name=name, container_name="metrics-agent"))["containers"]
    assert [r["id"] for r in rows] == [f"inference/{name}/metrics-agent"]


def test_values_evolve_and_pods_churn_over_time():
    clock = Clock(1_800_000_000.0)
    platform = DemoPlatform(pods=40, churn_interval=60, churn_ratio=0.2, clock=clock)
    first_names, first_body = platform.pod_names(), platform.body("pod")
    clock.now += 300
    assert platform.body("pod") != first_body
    later = platform.pod_names()
    assert later != first_names and len(later) == 40


def test_the_server_answers_queries_and_injects_faults():
    server = DemoServer(DemoPlatform(pods=3)).start()
    try:
        assert requests.get(server.url, params={"metric_type": "pod"}, timeout=5).json()["kind"] == "PodMetricsList"
        assert requests.get(server.url, params={"metric_type": "bogus"}, timeout=5).status_code == 400
        base = server.url.rsplit("/api/", 1)[0]
        requests.post(base + "/-/faults", json={"mode": "status", "status": 503}, timeout=5)
        assert requests.get(server.url, timeout=5).status_code == 503
        requests.post(base + "/-/faults", json={"mode": "invalid_json"}, timeout=5)
        assert requests.get(server.url, timeout=5).headers["Content-Type"] == "text/html"
        requests.post(base + "/-/faults", json={"mode": "none"}, timeout=5)
        assert requests.get(server.url, timeout=5).status_code == 200
    finally:
        server.close()


def test_a_fault_with_a_window_fails_whole_polls_not_single_requests():
    import random

    from exporter.demo import Fault

    fault, rng = Fault(mode="status", ratio=0.5, window=3.0), random.Random(7)
    polls = []
    for poll in range(40):
        start = poll * 5.0  # a poll every 5 s; its retries follow within the window
        answers = {fault.applies("pod", rng, now=start + retry) for retry in (0.0, 0.5, 1.5)}
        assert len(answers) == 1, f"poll {poll}: retries got different answers"
        polls.append(answers.pop())
    assert 5 < sum(polls) < 35  # some polls fail as a whole, some succeed as a whole


def test_the_demo_command_with_a_fail_ratio_makes_polls_fail(tmp_path):
    import subprocess
    import sys
    import time

    log = tmp_path / "demo.log"
    demo = subprocess.Popen(
        [sys.executable, "-m", "exporter", "demo", "--listen", "127.0.0.1:0",
         "--fail-ratio", "1", "--interval", "0.5", "--pods", "2", "--log-file", str(log)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "reason=http_status" not in (log.read_text() if log.exists() else ""):
            time.sleep(0.05)
        assert "reason=http_status" in log.read_text()
    finally:
        demo.terminate()
        _, err = demo.communicate(timeout=15)
    assert "100% of polls failing" in err
    assert "metrics-bridge try --config" in err and "--target pods" in err
    assert "dashboards:" in err and "status:" in err
