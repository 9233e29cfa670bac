"""Discovery fan-out: one request per listed item, item labels, failures counted per item, bounded and on time."""

import os
import threading
import time
from pathlib import Path

import orjson
import pytest
import requests

from exporter.collector import render_exposition
from exporter.config import ConfigError, parse_config

from fakeapi import Reply
from test_bridge import sample_value, scrape

TESTDATA = Path(__file__).parent / "testdata"


def services_config(api, extra="", discovery_extra="", timeout="2s"):
    return f"""
targets:
  - name: svc
    url: {api.url('/services')}/{{{{ item.name }}}}/metrics
    interval: 30s
    timeout: {timeout}
    retries: {{attempts: 1}}
{extra}
    discovery:
      url: {api.url('/services')}
      each: services
      labels: {{service: name}}
{discovery_extra}
    mappings:
      - level: service
        metrics:
          - {{name: service_requests_per_second, help: Requests per second., value: rps}}
"""


def serve_services(api, names, failing=()):
    api.routes["/services"] = Reply({"services": [{"name": n} for n in names]})
    for index, name in enumerate(names):
        api.routes[f"/services/{name}/metrics"] = Reply({"error": "boom"}, 500) if name in failing else Reply({"rps": index + 1})


def exposition(running, name="svc"):
    return b"".join(render_exposition({name: running.bridge.store.current()[name]})).decode()


HEADER = "# HELP service_requests_per_second Requests per second.\n# TYPE service_requests_per_second gauge\n"


def test_each_listed_item_gets_one_request_and_its_label(api, run_bridge):
    serve_services(api, ["a", "b", "c"])
    running = run_bridge(services_config(api), schedule=False)
    assert running.bridge.poll_now("svc") is True
    assert sorted(r.path for r in api.requests) == ["/services", "/services/a/metrics", "/services/b/metrics", "/services/c/metrics"]
    assert exposition(running) == HEADER + (
        'service_requests_per_second{level="service",target="svc",service="a"} 1\n'
        'service_requests_per_second{level="service",target="svc",service="b"} 2\n'
        'service_requests_per_second{level="service",target="svc",service="c"} 3\n'
    )
    assert sample_value(scrape(running.url), "metrics_bridge_discovered_items", target="svc") == 3


def test_an_item_that_disappears_from_the_list_loses_its_series_at_once(api, run_bridge):
    serve_services(api, ["a", "b", "c"])
    running = run_bridge(services_config(api), schedule=False)
    assert running.bridge.poll_now("svc") is True
    serve_services(api, ["a", "c"])
    assert running.bridge.poll_now("svc") is True
    assert exposition(running) == HEADER + (
        'service_requests_per_second{level="service",target="svc",service="a"} 1\n'
        'service_requests_per_second{level="service",target="svc",service="c"} 2\n'
    )
    assert sample_value(scrape(running.url), "metrics_bridge_discovered_items", target="svc") == 2


def test_one_failing_item_is_counted_and_the_others_are_served(api, run_bridge, caplog):
    serve_services(api, ["a", "b", "c"], failing=["b"])
    running = run_bridge(services_config(api), schedule=False)
    assert running.bridge.poll_now("svc") is True
    assert exposition(running) == HEADER + (
        'service_requests_per_second{level="service",target="svc",service="a"} 1\n'
        'service_requests_per_second{level="service",target="svc",service="c"} 3\n'
    )
    text = scrape(running.url)
    assert sample_value(text, "metrics_bridge_discovery_item_failures_total", target="svc", reason="http_status") == 1
    assert sample_value(text, "metrics_bridge_discovery_item_failures_total", target="svc", reason="timeout") == 0
    assert sample_value(text, "metrics_bridge_target_up", target="svc") == 1
    assert sample_value(text, "metrics_bridge_series", target="svc") == 2
    assert "discovered item 1 (service='b') of svc failed: reason=http_status: HTTP 500 Internal Server Error" in caplog.text


def test_when_every_item_fails_the_poll_fails_with_the_first_items_reason(api, run_bridge):
    serve_services(api, ["a", "b"], failing=["a", "b"])
    running = run_bridge(services_config(api), schedule=False)
    assert running.bridge.poll_now("svc") is False
    status = running.bridge.pollers["svc"].status
    assert status.last_outcome == "failure (http_status)"
    assert status.last_error == "all 2 discovered items failed; item 0: HTTP 500 Internal Server Error"
    text = scrape(running.url)
    assert sample_value(text, "metrics_bridge_discovery_item_failures_total", target="svc", reason="http_status") == 2
    assert sample_value(text, "metrics_bridge_poll_failures_total", target="svc", reason="http_status") == 1


def test_an_empty_list_is_a_successful_poll_with_no_series(api, run_bridge):
    serve_services(api, [])
    running = run_bridge(services_config(api), schedule=False)
    assert running.bridge.poll_now("svc") is True
    assert exposition(running) == ""
    assert [r.path for r in api.requests] == ["/services"]


def test_a_failed_list_fetch_fails_the_poll_with_its_own_reason(api, run_bridge):
    api.routes["/services"] = Reply(b"<html>", 200)
    running = run_bridge(services_config(api), schedule=False)
    assert running.bridge.poll_now("svc") is False
    status = running.bridge.pollers["svc"].status
    assert status.last_outcome == "failure (invalid_json)"
    assert status.last_error.startswith("discovery list: response is not valid JSON")


def test_more_items_than_max_items_fails_the_poll_as_too_large_without_fetching_any(api, run_bridge):
    serve_services(api, ["a", "b", "c"])
    running = run_bridge(services_config(api, discovery_extra="      max_items: 2"), schedule=False)
    assert running.bridge.poll_now("svc") is False
    status = running.bridge.pollers["svc"].status
    assert (status.last_outcome, status.last_error) == ("failure (too_large)", "discovery found 3 items, more than max_items (2)")
    assert [r.path for r in api.requests] == ["/services"]
    assert sample_value(scrape(running.url), "metrics_bridge_discovered_items", target="svc") == 3


def test_the_list_is_paginated_like_any_request(api, run_bridge):
    def pages(request):
        if request.query.get("token") == "p2":
            return Reply({"services": [{"name": "c"}]})
        return Reply({"services": [{"name": "a"}, {"name": "b"}], "next": "p2"})

    serve_services(api, ["a", "b", "c"])
    api.routes["/services"] = pages
    extra = "      pagination: {type: next_token, next_token_path: next, token_param: token}"
    running = run_bridge(services_config(api, discovery_extra=extra), schedule=False)
    assert running.bridge.poll_now("svc") is True
    assert running.bridge.pollers["svc"].status.series == 3


def test_item_fields_fill_params_headers_and_the_body(api, run_bridge):
    seen = []
    api.routes["/services"] = Reply({"services": [{"name": "a", "id": 7, "region": "cn-hz"}]})
    api.routes["/query"] = lambda request: seen.append(request) or Reply({"rps": 5})
    config = f"""
targets:
  - name: svc
    url: {api.url('/query')}
    method: POST
    params: {{ServiceName: "{{{{ item.name }}}}"}}
    headers: {{X-Region: "{{{{ item.region }}}}"}}
    body: {{service: {{id: "{{{{ item.id }}}}", name: "svc-{{{{ item.name }}}}"}}}}
    retries: {{attempts: 1}}
    discovery:
      url: {api.url('/services')}
      each: services
      labels: {{service: name, region: {{path: region, regex: "^cn-(.*)$"}}}}
    mappings:
      - level: service
        metrics: [{{name: service_requests_per_second, value: rps}}]
"""
    running = run_bridge(config, schedule=False)
    assert running.bridge.poll_now("svc") is True
    (request,) = seen
    assert request.query == {"ServiceName": "a"}
    assert request.headers["x-region"] == "cn-hz"
    assert orjson.loads(request.body) == {"service": {"id": 7, "name": "svc-a"}}
    assert exposition(running) == (
        "# HELP service_requests_per_second service_requests_per_second\n# TYPE service_requests_per_second gauge\n"
        'service_requests_per_second{level="service",target="svc",service="a",region="hz"} 5\n'
    )


def test_an_item_without_a_field_its_template_needs_fails_alone_as_mapping(api, run_bridge):
    api.routes["/services"] = Reply({"services": [{"name": "a"}, {"nom": "b"}]})
    api.routes["/services/a/metrics"] = Reply({"rps": 1})
    running = run_bridge(services_config(api), schedule=False)
    assert running.bridge.poll_now("svc") is True
    assert sample_value(scrape(running.url), "metrics_bridge_discovery_item_failures_total", target="svc", reason="mapping") == 1


class Gate:
    """Holds each item request until `limit` are in flight at once (or all have arrived); records the most seen."""

    def __init__(self, limit, total):
        self.limit, self.total = limit, total
        self.cond = threading.Condition()
        self.in_flight = self.arrived = self.most = 0

    def __call__(self, request):
        with self.cond:
            self.in_flight += 1
            self.arrived += 1
            self.most = max(self.most, self.in_flight)
            self.cond.notify_all()
            self.cond.wait_for(lambda: self.in_flight >= self.limit or self.arrived >= self.total, timeout=5)
            self.in_flight -= 1
        return Reply({"rps": 1})


def test_no_more_than_concurrency_items_are_fetched_at_once(api, run_bridge):
    names = [f"s{i}" for i in range(9)]
    serve_services(api, names)
    gate = Gate(limit=3, total=9)
    for name in names:
        api.routes[f"/services/{name}/metrics"] = gate
    running = run_bridge(services_config(api, discovery_extra="      concurrency: 3", timeout="8s"), schedule=False)
    assert running.bridge.poll_now("svc") is True
    assert gate.most == 3
    assert gate.arrived == 9


def test_a_hanging_item_costs_only_itself_and_the_poll_ends_at_the_deadline(api, run_bridge):
    serve_services(api, ["a", "b", "c"])
    api.routes["/services/b/metrics"] = Reply({"rps": 2}, delay=30)
    running = run_bridge(services_config(api, timeout="1s"), schedule=False)
    started = time.monotonic()
    assert running.bridge.poll_now("svc") is True
    assert time.monotonic() - started < 1 + 1.0
    assert [t.name for t in threading.enumerate() if t.name.startswith("discovery-")] == []
    assert exposition(running) == HEADER + (
        'service_requests_per_second{level="service",target="svc",service="a"} 1\n'
        'service_requests_per_second{level="service",target="svc",service="c"} 3\n'
    )
    assert sample_value(scrape(running.url), "metrics_bridge_discovery_item_failures_total", target="svc", reason="timeout") == 1


def test_items_not_started_by_the_deadline_fail_as_timeout(api, run_bridge):
    serve_services(api, ["a", "b", "c"])
    api.routes["/services/a/metrics"] = Reply({"rps": 1}, delay=30)
    running = run_bridge(services_config(api, discovery_extra="      concurrency: 1", timeout="1s"), schedule=False)
    assert running.bridge.poll_now("svc") is False
    status = running.bridge.pollers["svc"].status
    assert status.last_outcome == "failure (timeout)"
    assert [r.path for r in api.requests] == ["/services", "/services/a/metrics"]
    assert sample_value(scrape(running.url), "metrics_bridge_discovery_item_failures_total", target="svc", reason="timeout") == 3


def test_item_self_metrics_exist_at_zero_for_discovery_targets_only_and_go_with_the_target(api, run_bridge, tmp_path):
    serve_services(api, ["a"])
    plain = f"""
  - name: plain
    url: {api.url('/services/a/metrics')}
    mappings: [{{level: service, metrics: [{{name: service_requests_per_second, help: Requests per second., value: rps}}]}}]
"""
    config = tmp_path / "c.yaml"
    config.write_text(services_config(api) + plain)
    running = run_bridge(config.read_text(), schedule=False)
    text = scrape(running.url)
    assert sample_value(text, "metrics_bridge_discovered_items", target="svc") == 0
    assert sample_value(text, "metrics_bridge_discovery_item_failures_total", target="svc", reason="internal") == 0
    assert sample_value(text, "metrics_bridge_discovered_items", target="plain") is None
    config.write_text("targets:" + plain)
    assert running.bridge.reload_from_file(str(config)) == (True, [])
    text = scrape(running.url)
    assert sample_value(text, "metrics_bridge_discovered_items", target="svc") is None
    assert sample_value(text, "metrics_bridge_discovery_item_failures_total", target="svc") is None
    assert sample_value(text, "metrics_bridge_poll_success_total", target="plain") == 0


def problems(yaml_text):
    with pytest.raises(ConfigError) as caught:
        parse_config(yaml_text)
    return caught.value.problems


def test_discovery_config_errors_name_their_key_paths():
    assert problems("""
targets:
  - name: t
    url: http://127.0.0.1:9/{{ item.name }}
    labels: {service: x}
    discovery:
      url: http://127.0.0.1:9/list/{{ item.name }}
      each: "services[?"
      labels: {service: name, pod: {key: true}}
      concurrency: 0
    mappings: [{level: service, metrics: [{name: m, value: v}]}]
""") == [
        "targets[0].discovery.each: "
        + problems_of_path("services[?"),
        "targets[0].discovery.labels.pod: key: true needs a map key, and a discovered item has none (use a path)",
        "targets[0].discovery.concurrency: must be greater than or equal to 1",
        "targets[0].discovery.labels.service: label 'service' is already set at labels.service",  # all at once
    ]
    assert problems("""
targets:
  - name: t
    url: http://127.0.0.1:9/{{ item.name }}
    labels: {service: x}
    discovery:
      url: http://127.0.0.1:9/list/{{ item.name }}
      each: services
      labels: {service: name}
    mappings: [{level: service, metrics: [{name: m, value: v}]}]
""") == [
        "targets[0].discovery.url: template: 'item' is undefined (item.* exists only in the requests of a target with discovery:)",
        "targets[0].discovery.labels.service: label 'service' is already set at labels.service",
    ]


def problems_of_path(path):
    from exporter.paths import PathError, compile_path

    try:
        compile_path(path)
    except PathError as exc:
        return str(exc)
    raise AssertionError(f"{path!r} compiles")


TORCHSERVE = TESTDATA / "recipes" / "torchserve-models"


def test_the_torchserve_worked_example_lists_models_then_describes_each(api, run_bridge):
    """The configuration in docs/configuration.md, "Worked example: TorchServe", against TorchServe's documented shapes."""
    doc = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    example = doc.split("<!-- torchserve-discovery -->\n```yaml\n", 1)[1].split("```", 1)[0]
    api.routes["/models"] = lambda request: Reply(
        {"models": [{"modelName": "llama2-7b-chat", "modelUrl": "llama2-7b-chat.mar"}], "nextPageToken": "1"}
        if "next_page_token" not in request.query
        else {"models": [{"modelName": "resnet-18", "modelUrl": "resnet-18.mar"}]}
    )
    for model in ("llama2-7b-chat", "resnet-18"):
        api.routes[f"/models/{model}"] = Reply((TORCHSERVE / f"{model}.json").read_bytes())
    running = run_bridge(example.replace("http://torchserve.inference.svc:8081", api.url("").rstrip("/")), schedule=False)
    assert running.bridge.poll_now("torchserve") is True
    assert [(r.path, r.query) for r in api.requests[:2]] == [
        ("/models", {"limit": "100"}),
        ("/models", {"limit": "100", "next_page_token": "1"}),
    ]
    assert sorted(r.path for r in api.requests[2:]) == ["/models/llama2-7b-chat", "/models/resnet-18"]
    golden = TESTDATA / "discovery" / "torchserve.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(exposition(running, "torchserve"))
    assert exposition(running, "torchserve") == golden.read_text()


def test_an_item_whose_body_the_api_marks_as_an_error_fails_alone_as_api_error(api, run_bridge):
    serve_services(api, ["a", "b"])
    api.routes["/services/b/metrics"] = Reply({"status": "error", "msg": "quota exceeded"})
    running = run_bridge(services_config(api, extra="    api_error: {when: \"status == 'error'\", message: msg}"), schedule=False)
    assert running.bridge.poll_now("svc") is True
    assert running.bridge.pollers["svc"].status.series == 1
    assert sample_value(scrape(running.url), "metrics_bridge_discovery_item_failures_total", target="svc", reason="api_error") == 1
