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
