"""Recipes: every examples/recipes/*.yaml passes `metrics-bridge check`, and its fixture, served by a loopback API,
maps to the exact golden exposition in tests/testdata/recipes/<recipe>/expected.txt (UPDATE_GOLDEN=1 rewrites it)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlsplit

import orjson
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from exporter.collector import render_exposition
from exporter.config import Config, parse_config
from exporter.paths import compile_path
from exporter.poller import Poller
from exporter.selfmetrics import SelfMetrics
from exporter.store import SnapshotStore

from conftest import require_module, require_tool
from fakeapi import FakeAPI, Reply, Request
from signatures import Received, Verdict, verify_alibaba_rpc, verify_alibaba_v3, verify_baidu, verify_volcengine

ROOT = Path(__file__).parent.parent
RECIPES = ROOT / "examples" / "recipes"
DOCS = ROOT / "docs" / "recipes"
FIXTURES = Path(__file__).parent / "testdata" / "recipes"
TOKEN = "recipe-test-token"
ACCESS_KEY, SECRET_KEY = "recipe-test-access-key", "recipe-test-secret-key"
WINDOW, SLACK = timedelta(minutes=5), timedelta(seconds=90)  # the recipes' window; how far from now its end may be

Route = Callable[[Request], Reply]


@dataclass
class Scenario:
    """How to serve one recipe's fixtures: environment (with {api}, {token_file}, {ca_file} filled in) and routes."""

    recipe: str
    env: dict[str, str]
    routes: Callable[[Config, Path], dict[str, Route]]
    authenticated: bool = True
    requests: Optional[Callable[[list[Request]], None]] = None
    bad_values: Optional[dict[str, int]] = None  # samples each target drops under skip_bad_values; none elsewhere
    method: str = "GET"
    sdk: Optional[str] = None  # the official SDK the loopback API verifies the recipe's signature with
    api_error: Optional[str] = None  # the message of the API's error.json, which fails a poll even with HTTP 200


def _file_route(path: Path) -> Route:
    body = path.read_bytes()
    return lambda request: Reply(body)


def serve_paths(table: dict[str, str]) -> Callable[[Config, Path], dict[str, Route]]:
    """Serve each URL path from the named fixture file."""

    def routes(config: Config, fixtures: Path) -> dict[str, Route]:
        return {path: _file_route(fixtures / name) for path, name in table.items()}

    return routes


def serve_by_target_query(path: str, param: str) -> Callable[[Config, Path], dict[str, Route]]:
    """Serve `<target name>.json` to the request whose `param` equals that target's configured `param`."""

    def routes(config: Config, fixtures: Path) -> dict[str, Route]:
        bodies = {str(t.params[param]): (fixtures / f"{t.name}.json").read_bytes() for t in config.targets}

        def route(request: Request) -> Reply:
            body = bodies.get(request.query.get(param, ""))
            return Reply(body) if body is not None else Reply({"status": "error", "error": "unknown query"}, 400)

        return {path: route}

    return routes


def cms_requests(requests: list[Request]) -> None:
    """Three signed DescribeMetricLast pages, each asking for the next with the token the previous page returned."""
    tokens = [r.query.get("NextToken") for r in requests]
    assert len(requests) == 3
    assert tokens[0] is None and all(tokens[1:])
    assert {r.headers.get("x-acs-action") for r in requests} == {"DescribeMetricLast"}
    assert all(verify_cms_signature(Received.of(r)) for r in requests)



# ------------------------------------------------------------------ signed, windowed cloud APIs (Alibaba, Huawei)

ALIBABA_AK = "LTAI5tRecipeTestAccessKey"  # the secret is TOKEN, in the file at {token_file}


def verify_cms_signature(received: Received) -> Verdict:
    """The RPC signature when the query carries one, else V3, each recomputed by Alibaba's SDK."""
    if any(key == "Signature" for key, _ in received.pairs()):
        return verify_alibaba_rpc(received, ALIBABA_AK, TOKEN)
    return verify_alibaba_v3(received, ALIBABA_AK, TOKEN)


def serve_cms_metrics(pages: dict[str, list[str]]) -> Callable[[Config, Path], dict[str, Route]]:
    """CloudMonitor at `/`: verify the signature, then serve each MetricName's pages by NextToken."""

    def routes(config: Config, fixtures: Path) -> dict[str, Route]:
        token_of = compile_path("NextToken")
        by_key: dict[tuple[str, Optional[str]], bytes] = {}
        for metric, names in pages.items():
            bodies = [(fixtures / name).read_bytes() for name in names]
            by_key[(metric, None)] = bodies[0]
            for previous, body in zip(bodies, bodies[1:]):
                by_key[(metric, token_of(orjson.loads(previous)))] = body

        def route(request: Request) -> Reply:
            received = Received.of(request)
            if not verify_cms_signature(received):
                return Reply({"RequestId": "4F6E2C1A-0000-4000-8000-000000000403", "Code": "SignatureDoesNotMatch",
                              "Message": "Specified signature is not matched with our calculation."}, 400)
            body = by_key.get((request.query.get("MetricName", ""), request.query.get("NextToken")))
            return Reply(body) if body is not None else Reply({"Code": "ResourceNotFound", "Success": False}, 404)

        return {"/": route}

    return routes


def window_verdict(start: Optional[datetime], end: Optional[datetime], now: Optional[datetime] = None) -> Verdict:
    """What the signed recipes promise their cloud monitor: a five-minute window ending about now."""
    if start is None or end is None:
        return Verdict(False, "no query window")
    now = now or datetime.now(timezone.utc)
    if abs(now - end) > SLACK:
        return Verdict(False, f"stale window: it ends {now - end} away from now")
    if end - start != WINDOW:
        return Verdict(False, f"a window of {end - start}, not {WINDOW}")
    return Verdict(True)


def _rfc3339(text: Optional[str]) -> Optional[datetime]:
    try:
        return datetime.strptime(text or "", "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def _epoch(value: object) -> Optional[datetime]:
    return datetime.fromtimestamp(value, timezone.utc) if isinstance(value, int) and not isinstance(value, bool) else None


def verified(verify: Callable[[Received], Verdict], reply_of: Callable[[Request], Reply]) -> Route:
    """A route answering `reply_of(request)` to a request `verify` accepts, and 403 with the reason to any other."""

    def route(request: Request) -> Reply:
        verdict = verify(Received.of(request))
        route.verdicts.append(verdict)  # type: ignore[attr-defined]
        return reply_of(request) if verdict else Reply({"code": "AccessDenied", "message": verdict.reason}, 403)

    route.verdicts = []  # type: ignore[attr-defined]
    return route


def verify_bcm_request(received: Received) -> Verdict:
    """Baidu Cloud Monitor: a bce-auth-v1 signature the official SDK accepts, and the window in the query."""
    signed = verify_baidu(received, ACCESS_KEY, SECRET_KEY)
    query = dict(received.pairs())
    return signed and window_verdict(_rfc3339(query.get("startTime")), _rfc3339(query.get("endTime")))


def serve_bcm(config: Config, fixtures: Path) -> dict[str, Route]:
    """One BCM metricdata path per target (the metric is the last path segment), each answering `<target>.json`."""
    routes: dict[str, Route] = {}
    for target in config.targets:
        body = (fixtures / f"{target.name}.json").read_bytes()
        routes[urlsplit(str(target.url)).path] = verified(verify_bcm_request, lambda request, body=body: Reply(body))
    return routes


def verify_volc_observe_request(received: Received) -> Verdict:
    """Volcengine Cloud Monitor: an HMAC-SHA256 signature the official SDK accepts, and epoch seconds in the body."""
    signed = verify_volcengine(received, ACCESS_KEY, SECRET_KEY, "cn-beijing", "Volc_Observe")
    if not signed:
        return signed
    body = orjson.loads(received.body or b"{}")
    return window_verdict(_epoch(body.get("StartTime")), _epoch(body.get("EndTime")))


def serve_volc_observe(config: Config, fixtures: Path) -> dict[str, Route]:
    """`POST /?Action=GetMetricData`, answering `<target>.json` of the target whose `MetricName` the body asks for."""
    bodies = {str(t.body["MetricName"]): (fixtures / f"{t.name}.json").read_bytes() for t in config.targets}  # type: ignore[index]
    error = (fixtures / "error.json").read_bytes()

    def reply(request: Request) -> Reply:
        return Reply(bodies.get(str(orjson.loads(request.body).get("MetricName")), error))

    return {"/": verified(verify_volc_observe_request, reply)}


VERIFIERS = {"baidu-qianfan": verify_bcm_request, "volcengine-ml-platform": verify_volc_observe_request}


def signed_requests(action: Optional[str]) -> Callable[[list[Request]], None]:
    """Every request was signed (and accepted: the poll succeeded); RPC-style APIs name the action in the query."""

    def check(requests: list[Request]) -> None:
        for request in requests:
            assert request.headers.get("authorization", "").split(" ")[0].split("/")[0] in ("bce-auth-v1", "HMAC-SHA256")
            if action:
                assert request.query.get("Action") == action

    return check


SCENARIOS = [
    Scenario(
        "kubernetes-metrics-api",
        {"KUBERNETES_API_URL": "{api}", "KUBERNETES_TOKEN_FILE": "{token_file}", "KUBERNETES_CA_FILE": "{ca_file}"},
        serve_paths({"/apis/metrics.k8s.io/v1beta1/pods": "pods.json", "/apis/metrics.k8s.io/v1beta1/nodes": "nodes.json"}),
    ),
    Scenario(
        "kubelet-summary",
        {
            "KUBERNETES_API_URL": "{api}", "KUBERNETES_TOKEN_FILE": "{token_file}", "KUBERNETES_CA_FILE": "{ca_file}",
            "NODE_NAME": "gpu-node-a",
        },
        serve_paths({"/api/v1/nodes/gpu-node-a/proxy/stats/summary": "summary.json"}),
    ),
    Scenario(
        "triton-model-stats",
        {"TRITON_URL": "{api}"},
        serve_paths({"/v2/models/stats": "stats.json"}),
        authenticated=False,
    ),
    Scenario(
        "prometheus-query",
        {"PROMETHEUS_URL": "{api}", "PROMETHEUS_TOKEN_FILE": "{token_file}"},
        serve_by_target_query("/api/v1/query", "query"),
    ),
    Scenario(
        "alibaba-cms-metric-list",
        {
            "CMS_ENDPOINT": "{api}", "CMS_PAGE_SIZE": "4", "ALIBABA_CLOUD_ACCESS_KEY_ID": ALIBABA_AK,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET_FILE": "{token_file}",
        },
        serve_cms_metrics({"CPUUtilization": ["page-1.json", "page-2.json", "page-3.json"]}),
        authenticated=False,
        requests=cms_requests,
    ),
    Scenario(
        "baidu-qianfan",
        {
            "BCM_ENDPOINT": "{api}", "BCE_ACCESS_KEY_ID": "{access_key}", "BCE_SECRET_ACCESS_KEY_FILE": "{secret_file}",
            "BCE_USER_ID": "a0d04d7c202140cb80155ff7b6752ce4", "QIANFAN_APP_ID": "115830207",
            "QIANFAN_SERVICE_URI": "/chat/ernie-speed-128k",
        },
        serve_bcm,
        authenticated=False,
        requests=signed_requests(None),
        sdk="baidubce",
        api_error="startTime must be earlier than endTime",
    ),
    Scenario(
        "volcengine-ml-platform",
        {
            "VOLC_OBSERVE_ENDPOINT": "{api}", "VOLC_ACCESSKEY": "{access_key}", "VOLC_SECRETKEY_FILE": "{secret_file}",
            "VOLC_REGION": "cn-beijing", "VOLC_MLP_INSTANCE_1": "s-20260301103527-7xk2p",
            "VOLC_MLP_INSTANCE_2": "s-20260301103527-9qmz4", "VOLC_MLP_INSTANCE_3": "s-20260228091204-b8t6w",
        },
        serve_volc_observe,
        authenticated=False,
        requests=signed_requests("GetMetricData"),
        method="POST",
        sdk="volcengine",
        api_error="StartTime must be less than EndTime",
    ),
    Scenario(
        "torchserve-models",
        {"TORCHSERVE_MANAGEMENT_URL": "{api}", "TORCHSERVE_KEY_FILE": "{token_file}"},
        serve_paths({"/models/llama2-7b-chat/all": "llama2-7b-chat.json", "/models/resnet-18/all": "resnet-18.json"}),
        bad_values={"torchserve-llama2-7b-chat": 3},  # worker 9003: "failed to obtained gpu usage"
    ),
]
BY_NAME = {s.recipe: s for s in SCENARIOS}


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPES.glob("*.yaml"))


def environment(scenario: Scenario, api_url: str, tmp_path: Path) -> dict[str, str]:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    ca_file = tmp_path / "ca.crt"
    ca_file.write_text("-----BEGIN CERTIFICATE-----\nnot used over plain http\n-----END CERTIFICATE-----\n")
    secret_file = tmp_path / "secret-key"
    if not secret_file.exists():
        secret_file.write_text(SECRET_KEY + "\n")
    fill = {"api": api_url, "token_file": str(token_file), "ca_file": str(ca_file), "secret_file": str(secret_file),
            "access_key": ACCESS_KEY}
    return {k: v.format(**fill) for k, v in scenario.env.items()}


def assert_golden(path: Path, actual: str) -> None:
    """Fail unless `actual` equals the golden file exactly; UPDATE_GOLDEN=1 rewrites it (review the diff)."""
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(actual, encoding="utf-8")
    assert path.exists(), f"{path} is missing (UPDATE_GOLDEN=1 writes it)"
    expected = path.read_text(encoding="utf-8")
    assert actual == expected, f"exposition differs from {path} (UPDATE_GOLDEN=1 rewrites it)"


def load_recipe(scenario: Scenario, api: FakeAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    """The recipe, unchanged, with the environment pointing it at the fake API, whose routes serve the fixtures."""
    if scenario.sdk:
        require_module(scenario.sdk)
    for name, value in environment(scenario, api.url("").rstrip("/"), tmp_path).items():
        monkeypatch.setenv(name, value)
    config = parse_config((RECIPES / f"{scenario.recipe}.yaml").read_text(), scenario.recipe)
    api.routes.update(scenario.routes(config, FIXTURES / scenario.recipe))
    return config


def poll_recipe(scenario: Scenario, api: FakeAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Load the recipe with the fake API's URL, poll every target once, and return the rendered exposition."""
    config = load_recipe(scenario, api, tmp_path, monkeypatch)
    store = SnapshotStore()
    metrics = SelfMetrics(CollectorRegistry(), process=False)
    for target in config.targets:
        poller = Poller(target, store, metrics, threading.Event())
        try:
            assert poller.poll(), f"{target.name}: {poller.status.last_outcome}: {poller.status.last_error}"
        finally:
            poller.client.close()
        counted = metrics.registry.get_sample_value
        assert not counted("metrics_bridge_duplicate_series_total", {"target": target.name})
        dropped = counted("metrics_bridge_samples_dropped_total", {"target": target.name, "reason": "bad_value"}) or 0
        assert dropped == (scenario.bad_values or {}).get(target.name, 0), f"{target.name}: {dropped} bad value(s)"
    return b"".join(render_exposition(store.current())).decode()


def test_every_recipe_has_a_scenario_a_fixture_directory_and_a_docs_page():
    names = recipe_names()
    assert len(names) >= 6
    index = (DOCS / "README.md").read_text()
    for name in names:
        assert name in BY_NAME, f"{name}.yaml has no scenario in tests/test_recipes.py"
        assert (FIXTURES / name / "expected.txt").exists() or os.environ.get("UPDATE_GOLDEN") == "1"
        assert (DOCS / f"{name}.md").exists(), f"docs/recipes/{name}.md is missing"
        assert f"({name}.md)" in index, f"docs/recipes/README.md does not link {name}.md"


@pytest.mark.parametrize("name", recipe_names())
def test_the_recipe_maps_its_fixture_to_the_golden_exposition(name, api, tmp_path, monkeypatch):
    scenario = BY_NAME[name]
    text = poll_recipe(scenario, api, tmp_path, monkeypatch)
    assert_golden(FIXTURES / name / "expected.txt", text)
    assert api.requests, "the recipe never called the fake API"
    for request in api.requests:
        assert request.method == scenario.method
        if scenario.authenticated:
            assert request.headers.get("authorization") == f"Bearer {TOKEN}"
    if scenario.requests is not None:
        scenario.requests(api.requests)


@pytest.mark.parametrize("name", recipe_names())
def test_the_golden_exposition_is_valid_prometheus_text_with_a_level_on_every_series(name):
    text = (FIXTURES / name / "expected.txt").read_text()
    families = list(text_string_to_metric_families(text))
    assert families
    for family in families:
        assert not family.name.startswith("metrics_bridge_")
        for sample in family.samples:
            level = sample.labels["level"]
            if level in ("pod", "container"):
                assert sample.labels["pod"]
            if level == "container":
                assert sample.labels["container"]


@pytest.mark.parametrize("name", recipe_names())
def test_promtool_finds_no_naming_problem_in_the_golden_exposition(name):
    promtool = require_tool("promtool")
    text = (FIXTURES / name / "expected.txt").read_bytes()
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
    assert checked.stdout.decode().strip() == "" and checked.stderr.decode().strip() == ""


@pytest.mark.parametrize("name", recipe_names())
def test_metrics_bridge_check_accepts_the_recipe(name, tmp_path):
    scenario = BY_NAME[name]
    env = {**os.environ, **environment(scenario, "http://127.0.0.1:9", tmp_path)}
    checked = subprocess.run(
        [sys.executable, "-m", "exporter", "check", "--config", str(RECIPES / f"{name}.yaml")],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=60,
    )
    assert checked.returncode == 0, checked.stderr
    assert "OK" in checked.stdout


SIGNED = sorted(s.recipe for s in SCENARIOS if s.sdk)


def golden_of_target(text: str, target: str) -> str:
    """The lines of a golden exposition that belong to one target: its samples and their families' headers."""
    out: list[str] = []
    headers: list[str] = []
    for line in text.splitlines(keepends=True):
        if line.startswith("# HELP"):
            headers = [line]
        elif line.startswith("# TYPE"):
            headers.append(line)
        elif f'target="{target}"' in line:
            out.extend(headers)
            headers = []
            out.append(line)
    return "".join(out)


@pytest.mark.parametrize("name", SIGNED)
def test_metrics_bridge_try_prints_each_targets_part_of_the_golden_exposition(name, tmp_path):
    scenario = BY_NAME[name]
    env = {**os.environ, **environment(scenario, "http://127.0.0.1:9", tmp_path)}
    golden = (FIXTURES / name / "expected.txt").read_text()
    for target in targets_of(name):
        tried = subprocess.run(
            [sys.executable, "-m", "exporter", "try", "--config", str(RECIPES / f"{name}.yaml"), "--target", target,
             "--input", str(FIXTURES / name / f"{target}.json")],
            capture_output=True, text=True, env=env, cwd=ROOT, timeout=60,
        )
        assert tried.returncode == 0, tried.stderr
        assert tried.stdout == golden_of_target(golden, target) != ""


def targets_of(name: str) -> list[str]:
    """The target names of a recipe, read as YAML (they never depend on the environment)."""
    import yaml

    return [t["name"] for t in yaml.safe_load((RECIPES / f"{name}.yaml").read_text())["targets"]]


@pytest.mark.parametrize("name", SIGNED)
def test_a_signed_recipe_with_a_wrong_secret_fails_every_poll_with_its_reason_counted(name, api, tmp_path, monkeypatch):
    (tmp_path / "secret-key").write_text("not-the-secret-key\n")
    config = load_recipe(BY_NAME[name], api, tmp_path, monkeypatch)
    metrics = SelfMetrics(CollectorRegistry(), process=False)
    for target in config.targets:
        poller = Poller(target, SnapshotStore(), metrics, threading.Event())
        try:
            assert not poller.poll()
        finally:
            poller.client.close()
        counted = metrics.registry.get_sample_value
        assert counted("metrics_bridge_poll_failures_total", {"target": target.name, "reason": "http_status"}) == 1
        assert "not-the-secret-key" not in (poller.status.last_error or "")
    verdicts = [v for route in api.routes.values() for v in getattr(route, "verdicts", [])]
    assert verdicts and {v.reason for v in verdicts} == {"signature mismatch"}


@pytest.mark.parametrize("name", SIGNED)
def test_the_window_a_signed_recipe_sends_is_about_now_and_a_replay_of_it_is_stale(name, api, tmp_path, monkeypatch):
    poll_recipe(BY_NAME[name], api, tmp_path, monkeypatch)
    verify = VERIFIERS[name]
    for request in api.requests:
        received = Received.of(request)
        assert verify(received)
        later = datetime.now(timezone.utc) + timedelta(minutes=10)
        if request.method == "GET":
            query = dict(received.pairs())
            window = _rfc3339(query["startTime"]), _rfc3339(query["endTime"])
        else:
            body = orjson.loads(received.body)
            window = _epoch(body["StartTime"]), _epoch(body["EndTime"])
        assert window_verdict(*window).ok
        assert window_verdict(*window, now=later).reason.startswith("stale window")


@pytest.mark.parametrize("name", sorted(s.recipe for s in SCENARIOS if s.api_error))
def test_an_error_in_a_200_body_fails_every_poll_as_api_error_with_the_apis_message(name, api, tmp_path, monkeypatch):
    scenario = BY_NAME[name]
    config = load_recipe(scenario, api, tmp_path, monkeypatch)
    error = (FIXTURES / name / "error.json").read_bytes()
    for path in list(api.routes):
        api.routes[path] = verified(VERIFIERS[name], lambda request: Reply(error))  # signed, in the window, HTTP 200
    metrics = SelfMetrics(CollectorRegistry(), process=False)
    for target in config.targets:
        poller = Poller(target, SnapshotStore(), metrics, threading.Event())
        try:
            assert not poller.poll()
        finally:
            poller.client.close()
        counted = metrics.registry.get_sample_value
        assert counted("metrics_bridge_poll_failures_total", {"target": target.name, "reason": "api_error"}) == 1
        assert poller.status.last_error == f"the API reported an error: {scenario.api_error}"
    assert len(api.requests) == len(config.targets)
