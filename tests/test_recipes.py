"""Recipes: every examples/recipes/*.yaml passes `metrics-bridge check`, and its fixture, served by a loopback API,
maps to the exact golden exposition in tests/testdata/recipes/<recipe>/expected.txt (UPDATE_GOLDEN=1 rewrites it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

import orjson
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from exporter.cli import main as cli_main
from exporter.collector import render_exposition
from exporter.config import Config, parse_config
from exporter.paths import compile_path
from exporter.poller import Poller
from exporter.selfmetrics import SelfMetrics
from exporter.store import SnapshotStore

from conftest import require_module, require_tool
from fakeapi import FakeAPI, Reply, Request
from signatures import (
    ACCEPTED, OAuth2TokenServer, Received, Verdict, request_url, sigv4_fields, verify_alibaba_rpc, verify_alibaba_v3,
    verify_baidu, verify_huawei, verify_sigv4, verify_volcengine,
)

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
    method: Optional[str] = "GET"  # the method of every request; None: the `requests` check says
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


# ------------------------------------------------------------------ signed, windowed cloud APIs (Alibaba, Huawei)

ALIBABA_AK = "LTAI5tRecipeTestAccessKey"  # the secret is TOKEN, in the file at {token_file}
HUAWEI_AK = "HWRECIPETESTACCESSKEY01"
HUAWEI_PROJECT = "0a1b2c3d4e5f46a7b8c9d0e1f2a3b4c5"
CES_PATH = f"/V1.0/{HUAWEI_PROJECT}/batch-query-metric-data"
WINDOW_SLACK = timedelta(seconds=30)  # between the poll's `now` and the route's check, on a loaded machine
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class WindowCheck:
    """Whether a request asks for the time window the recipe should ask for at `now` (a clock tests may move)."""

    def __init__(self) -> None:
        self.now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)

    def cms(self, received: Received, window: Any) -> Verdict:
        """StartTime/EndTime: `YYYY-MM-DDThh:mm:ssZ`, the end `delay` behind now (a whole `align`), within max_lookback."""
        query = dict(received.pairs())
        start, end = (_rfc3339(query.get(key)) for key in ("StartTime", "EndTime"))
        if start is None or end is None:
            return Verdict(False, "StartTime and EndTime must be YYYY-MM-DDThh:mm:ssZ")
        latest = self.now() - timedelta(seconds=window.delay)
        earliest = latest - WINDOW_SLACK
        if window.align:
            step = timedelta(seconds=window.align)
            latest, earliest = (t - (t - EPOCH) % step for t in (latest, earliest))
            if (end - EPOCH) % step or (start - EPOCH) % step:
                return Verdict(False, f"the window is not aligned to {window.align:g}s")
        return self._check(start, end, earliest, latest, timedelta(seconds=window.max_lookback))

    def ces(self, body: dict[str, Any], length: timedelta) -> Verdict:
        """from/to: epoch-ms numbers, `to` about now, `from` exactly `length` before it."""
        start, end = body.get("from"), body.get("to")
        if not isinstance(start, int) or not isinstance(end, int):
            return Verdict(False, "from and to must be epoch milliseconds")
        now = self.now()
        verdict = self._check(_from_ms(start), _from_ms(end), now - WINDOW_SLACK, now, length)
        if verdict and end - start != length // timedelta(milliseconds=1):
            return Verdict(False, f"the window is {(end - start) / 1000:g}s long, not {length.total_seconds():g}s")
        return verdict

    @staticmethod
    def _check(start: datetime, end: datetime, earliest: datetime, latest: datetime, longest: timedelta) -> Verdict:
        if not earliest <= end <= latest + timedelta(seconds=1):
            return Verdict(False, f"stale window: it ends at {end:%H:%M:%S}, not between {earliest:%H:%M:%S} and {latest:%H:%M:%S}")
        if not start < end:
            return Verdict(False, "empty window: the start is not before the end")
        if end - start > longest:
            return Verdict(False, f"the window reaches back {end - start}, more than {longest}")
        return ACCEPTED


WINDOWS = WindowCheck()


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, timezone.utc)


def verify_cms_signature(received: Received) -> Verdict:
    """The RPC signature when the query carries one, else V3, each recomputed by Alibaba's SDK."""
    if any(key == "Signature" for key, _ in received.pairs()):
        return verify_alibaba_rpc(received, ALIBABA_AK, TOKEN)
    return verify_alibaba_v3(received, ALIBABA_AK, TOKEN)


def serve_cms_metrics(pages: dict[str, list[str]], windowed: bool = True) -> Callable[[Config, Path], dict[str, Route]]:
    """CloudMonitor at `/`: verify the signature (and the window), then serve each MetricName's pages by NextToken."""

    def routes(config: Config, fixtures: Path) -> dict[str, Route]:
        token_of = compile_path("NextToken")
        by_key: dict[tuple[str, Optional[str]], bytes] = {}
        for metric, names in pages.items():
            bodies = [(fixtures / name).read_bytes() for name in names]
            by_key[(metric, None)] = bodies[0]
            for previous, body in zip(bodies, bodies[1:]):
                by_key[(metric, token_of(orjson.loads(previous)))] = body
        window = config.targets[0].window

        def route(request: Request) -> Reply:
            received = Received.of(request)
            if not verify_cms_signature(received):
                return Reply({"RequestId": "4F6E2C1A-0000-4000-8000-000000000403", "Code": "SignatureDoesNotMatch",
                              "Message": "Specified signature is not matched with our calculation."}, 400)
            verdict = WINDOWS.cms(received, window) if windowed else ACCEPTED
            if not verdict:
                return Reply({"RequestId": "4F6E2C1A-0000-4000-8000-000000000400", "Code": "InvalidParameter",
                              "Message": f"StartTime/EndTime: {verdict.reason}"}, 400)
            body = by_key.get((request.query.get("MetricName", ""), request.query.get("NextToken")))
            return Reply(body) if body is not None else Reply({"Code": "ResourceNotFound", "Success": False}, 404)

        return {"/": route}

    return routes


def serve_ces_batch_query(fixture: str) -> Callable[[Config, Path], dict[str, Route]]:
    """Cloud Eye: verify the signature, the window and the metrics asked for, then serve the fixture."""

    def routes(config: Config, fixtures: Path) -> dict[str, Route]:
        body = (fixtures / fixture).read_bytes()
        served = [(m["namespace"], m["metric_name"], m["dimensions"]) for m in orjson.loads(body)["metrics"]]

        def route(request: Request) -> Reply:
            received = Received.of(request)
            if not verify_huawei(received, HUAWEI_AK, TOKEN):
                return Reply({"error_msg": "Incorrect IAM authentication information: verify aksk signature fail",
                              "error_code": "APIGW.0301", "request_id": "9c1f0e2d3b4a59687766554433221100"}, 401)
            asked = orjson.loads(request.body)
            verdict = WINDOWS.ces(asked, timedelta(minutes=5))
            if verdict and [(m["namespace"], m["metric_name"], m["dimensions"]) for m in asked.get("metrics", [])] != served:
                verdict = Verdict(False, "the metrics asked for are not the recipe's")
            if not verdict:
                return Reply({"error_code": "ces.0014", "error_msg": f"Some content in message body is not correct, error message: {verdict.reason}",
                              "request_id": "9c1f0e2d3b4a59687766554433221101"}, 400)
            return Reply(body)

        return {CES_PATH: route}

    return routes


def cms_signed_requests(requests: list[Request]) -> None:
    """One request per metric, two pages for the requests-per-second one, every one signed as CMS wants."""
    assert all(verify_cms_signature(Received.of(r)) for r in requests)
    by_metric: dict[str, list[Optional[str]]] = {}
    for r in requests:
        by_metric.setdefault(r.query["MetricName"], []).append(r.query.get("NextToken"))
    assert len(by_metric) == 6 and all(tokens[0] is None for tokens in by_metric.values())
    assert len(by_metric["QueryPerSecondTotal"]) == 2 and by_metric["QueryPerSecondTotal"][1]
    assert {r.headers.get("x-acs-action") for r in requests} == {"DescribeMetricList"}


def ces_signed_requests(requests: list[Request]) -> None:
    """One signed POST with the project header and a JSON body."""
    assert len(requests) == 1
    received = Received.of(requests[0])
    assert verify_huawei(received, HUAWEI_AK, TOKEN)
    assert received.header("x-project-id") == HUAWEI_PROJECT
    assert received.header("content-type") == "application/json"


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
        serve_cms_metrics({"CPUUtilization": ["page-1.json", "page-2.json", "page-3.json"]}, windowed=False),
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
    Scenario(
        "alibaba-pai-eas",
        {
            "CMS_ENDPOINT": "{api}", "CMS_PAGE_SIZE": "2", "ALIBABA_CLOUD_ACCESS_KEY_ID": ALIBABA_AK,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET_FILE": "{token_file}",
        },
        serve_cms_metrics({
            "QueryPerSecondTotal": ["qps-page-1.json", "qps-page-2.json"], "TP99ResponseTime": ["rt-p99.json"],
            "CPUConsumption": ["cpu.json"], "MemoryConsumption": ["memory.json"], "GPUUtilization": ["gpu.json"],
            "5xxResponseRatio": ["5xx-ratio.json"],
        }),
        authenticated=False,  # signed, not a token: the route verifies the signature and the window
        requests=cms_signed_requests,
    ),
    Scenario(
        "huawei-modelarts",
        {
            "CES_ENDPOINT": "{api}", "HUAWEICLOUD_PROJECT_ID": HUAWEI_PROJECT, "HUAWEICLOUD_ACCESS_KEY_ID": HUAWEI_AK,
            "HUAWEICLOUD_SECRET_ACCESS_KEY_FILE": "{token_file}",
            "MODELARTS_SERVICE_ID": "3a9f2c61-7d4e-4b58-9e0a-5c1b8d2f6e47",
            "MODELARTS_MODEL_ID": "b7e41d09-2c6a-4f83-a15e-90d3c7f2b864",
        },
        serve_ces_batch_query("batch-query.json"),
        authenticated=False,
        requests=ces_signed_requests,
        method="POST",
    ),
]
BY_NAME = {s.recipe: s for s in SCENARIOS}


# ---------------------------------------------------------------------------------------------------------------------
# Signed, windowed and discovered recipes: loopback APIs that verify what they are sent, and reject the rest
# ---------------------------------------------------------------------------------------------------------------------

AWS_KEYS = {"AKIAIOSFODNN7EXAMPLE": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}  # AWS's documented example key pair
AWS_REGION = "eu-west-1"
SAGEMAKER_ENDPOINT = "llama3-8b-chat"
AZURE_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
AZURE_CLIENT_ID = "0b1f9e52-3c7a-4d7e-9a55-5e1f0c2d3b4a"
AZURE_ENDPOINT_PATH = (
    "/subscriptions/6b3f1c2e-8d4a-4e7b-9f21-0c5d7e8a9b13/resourceGroups/rg-inference-prod/providers/"
    "Microsoft.MachineLearningServices/workspaces/mlw-inference-prod/onlineEndpoints/llama3-chat"
)
AZURE_METRICS = {"RequestsPerMinute", "RequestLatency", "RequestLatency_P50", "RequestLatency_P90", "RequestLatency_P95", "RequestLatency_P99"}


def whole_minutes_verdict(start: Optional[datetime], end: Optional[datetime], ahead: timedelta) -> Verdict:
    """window_verdict by a loopback clock `ahead` of the real one (a test moves it on to make a window stale), and the
    window on whole minutes, as the recipes align it."""
    if start is not None and end is not None and (start.second or end.second):
        return Verdict(False, f"the window {start:%H:%M:%S}-{end:%H:%M:%S} is not on whole minutes")
    return window_verdict(start, end, datetime.now(timezone.utc) + ahead)


def cloudwatch_routes(ahead: timedelta = timedelta(0)) -> Callable[[Config, Path], dict[str, Route]]:
    """CloudWatch's JSON protocol on loopback: the operation header, SigV4 re-signed by botocore (service `monitoring`,
    within 5 minutes), the queries the fixture answers, and the window; errors shaped as AWS's ({"__type", "message"})."""

    def routes(config: Config, fixtures: Path) -> dict[str, Route]:
        answer = (fixtures / "get-metric-data.json").read_bytes()
        ids = {r["Id"] for r in orjson.loads(answer)["MetricDataResults"]}

        def error(kind: str, message: str, status: int = 400) -> Reply:
            return Reply({"__type": kind, "message": message}, status, {"Content-Type": "application/x-amz-json-1.0"})

        def route(request: Request) -> Reply:
            if (request.method, request.headers.get("x-amz-target"), request.headers.get("content-type")) != (
                "POST", "GraniteServiceVersion20100801.GetMetricData", "application/x-amz-json-1.0"
            ):
                return error("com.amazon.coral.service#UnknownOperationException", "not a GetMetricData request")
            fields = sigv4_fields(request.headers)
            if fields is None or fields["access_key"] not in AWS_KEYS:
                return error("com.amazon.coral.service#UnrecognizedClientException", "The security token included in the request is invalid.")
            signed_at = datetime.strptime(request.headers.get("x-amz-date", ""), "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
            if abs(time.time() - signed_at.timestamp()) > 300:
                return error("com.amazon.coral.service#InvalidSignatureException", "Signature expired")
            if not verify_sigv4(request.method, request_url(request), request.headers, request.body, AWS_KEYS[fields["access_key"]], AWS_REGION, "monitoring"):
                return error(
                    "com.amazon.coral.service#InvalidSignatureException",
                    "The request signature we calculated does not match the signature you provided.",
                )
            body = orjson.loads(request.body)
            asked = {q["Id"] for q in body["MetricDataQueries"]}
            dimensions = {(d["Name"], d["Value"]) for q in body["MetricDataQueries"] for d in q["MetricStat"]["Metric"]["Dimensions"]}
            if asked != ids or dimensions != {("EndpointName", SAGEMAKER_ENDPOINT), ("VariantName", "AllTraffic")}:
                return error("com.amazonaws.cloudwatch#InvalidParameterValueException", f"unexpected queries {sorted(asked)} {sorted(dimensions)}")
            window = whole_minutes_verdict(_epoch(body.get("StartTime")), _epoch(body.get("EndTime")), ahead)
            if not window:  # stricter than CloudWatch, which would answer an old window with old points
                return error("com.amazonaws.cloudwatch#InvalidParameterValueException", f"loopback: {window.reason}")
            return Reply(answer, headers={"Content-Type": "application/x-amz-json-1.0"})

        return {"/": route}

    return routes


def azure_token_server() -> OAuth2TokenServer:
    """Microsoft Entra ID's token endpoint: OAuth2TokenServer's handler, served at the tenant's path by the same loopback
    server as the API (the recipe's AZURE_AUTHORITY_HOST and AZURE_MANAGEMENT_URL both point there)."""
    tokens = OAuth2TokenServer(AZURE_CLIENT_ID, TOKEN, expires_in=3599)
    tokens.api.httpd.server_close()  # its own socket is not used: its handler is mounted on the recipe's loopback API
    return tokens


def azure_routes(tokens: OAuth2TokenServer, ahead: timedelta = timedelta(0)) -> Callable[[Config, Path], dict[str, Route]]:
    """Azure Monitor Metrics - List on loopback: only tokens the token endpoint issued, the query the fixture answers,
    and the timespan; errors shaped as Azure's ({"error": {"code", "message"}}, {"code", "message"})."""

    def routes(config: Config, fixtures: Path) -> dict[str, Route]:
        answer = (fixtures / "metrics.json").read_bytes()

        def route(request: Request) -> Reply:
            if not tokens.accepts(request.headers.get("authorization", "")):
                return Reply({"error": {"code": "InvalidAuthenticationToken", "message": "The access token is invalid."}}, 401,
                             {"WWW-Authenticate": 'Bearer authorization_uri="https://login.microsoftonline.com/", error="invalid_token"'})
            query = request.query
            if (query.get("api-version"), query.get("aggregation"), query.get("interval"), query.get("$filter")) != (
                "2023-10-01", "Average", "PT1M", "deployment eq '*'"
            ) or set(query.get("metricnames", "").split(",")) != AZURE_METRICS:
                return Reply({"code": "BadRequest", "message": f"unexpected query {query}"}, 400)
            start, _, end = query.get("timespan", "").partition("/")
            window = whole_minutes_verdict(_rfc3339(start), _rfc3339(end), ahead)
            if not window:
                return Reply({"code": "BadRequest", "message": f"loopback: {window.reason}"}, 400)
            return Reply(answer)

        return {f"/{AZURE_TENANT}/oauth2/v2.0/token": tokens.api.routes["/token"], AZURE_ENDPOINT_PATH + "/providers/Microsoft.Insights/metrics": route}

    return routes


TORCHSERVE_MODELS = ["bert-base-ner", "llama2-7b-chat", "resnet-18"]


def torchserve_routes(config: Config, fixtures: Path) -> dict[str, Route]:
    """TorchServe's management API: GET /models in pages (`next_page_token`), GET /models/{name} for each model."""
    pages = {None: (fixtures / "models-page-1.json").read_bytes(), "2": (fixtures / "models-page-2.json").read_bytes()}

    def models(request: Request) -> Reply:
        page = pages.get(request.query.get("next_page_token"))
        if page is None or request.query.get("limit") != "2":
            return Reply({"code": 400, "type": "BadRequestException", "message": "Invalid next_page_token"}, 400)
        return Reply(page)

    routes: dict[str, Route] = {"/models": models}
    for name in TORCHSERVE_MODELS:
        routes[f"/models/{name}"] = _file_route(fixtures / f"describe-{name}.json")
    return routes


def torchserve_requests(requests: list[Request]) -> None:
    """Two list pages (the second asked for with the first's token), then one describe request per listed model."""
    listed = [r for r in requests if r.path == "/models"]
    assert [r.query.get("next_page_token") for r in listed] == [None, "2"]
    assert sorted(r.path for r in requests if r.path != "/models") == [f"/models/{name}" for name in TORCHSERVE_MODELS]


def azure_requests(requests: list[Request]) -> None:
    """One token request (a form POST to the tenant's endpoint), then one GET of the metrics with that token."""
    assert [(r.method, r.path) for r in requests] == [
        ("POST", f"/{AZURE_TENANT}/oauth2/v2.0/token"), ("GET", AZURE_ENDPOINT_PATH + "/providers/Microsoft.Insights/metrics"),
    ]
    assert requests[1].headers["authorization"].startswith("Bearer at-")


def cloudwatch_requests(requests: list[Request]) -> None:
    """One signed GetMetricData request (the route verified signature, queries and window)."""
    assert len(requests) == 1
    assert sigv4_fields(requests[0].headers)["service"] == "monitoring"  # type: ignore[index]


SCENARIOS += [
    Scenario(
        "aws-sagemaker-cloudwatch",
        {
            "CLOUDWATCH_ENDPOINT": "{api}", "AWS_REGION": AWS_REGION, "SAGEMAKER_ENDPOINT_NAME": SAGEMAKER_ENDPOINT,
            "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE", "AWS_SECRET_ACCESS_KEY": AWS_KEYS["AKIAIOSFODNN7EXAMPLE"],
        },
        cloudwatch_routes(),
        authenticated=False,  # signed, not bearer: the route verifies the signature with botocore
        method="POST",
        requests=cloudwatch_requests,
    ),
    Scenario(
        "azure-ml-online-endpoint",
        {
            "AZURE_MANAGEMENT_URL": "{api}", "AZURE_AUTHORITY_HOST": "{api}", "AZURE_TENANT_ID": AZURE_TENANT,
            "AZURE_CLIENT_ID": AZURE_CLIENT_ID, "AZURE_CLIENT_SECRET_FILE": "{token_file}",
            "AZURE_SUBSCRIPTION_ID": "6b3f1c2e-8d4a-4e7b-9f21-0c5d7e8a9b13", "AZURE_RESOURCE_GROUP": "rg-inference-prod",
            "AZURE_ML_WORKSPACE": "mlw-inference-prod", "AZURE_ML_ENDPOINT_NAME": "llama3-chat",
        },
        lambda config, fixtures: azure_routes(azure_token_server())(config, fixtures),
        authenticated=False,  # a token from the loopback token endpoint, which the route checks
        method=None,  # the token request is a POST, the metrics request a GET
        requests=azure_requests,
    ),
    Scenario(
        "torchserve-discovery",
        {"TORCHSERVE_MANAGEMENT_URL": "{api}", "TORCHSERVE_KEY_FILE": "{token_file}", "TORCHSERVE_PAGE_SIZE": "2"},
        torchserve_routes,
        requests=torchserve_requests,
        bad_values={"torchserve": 3},  # llama2-7b-chat's worker 9003: "failed to obtained gpu usage"
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
        if scenario.method is not None:
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


EXCERPT = "## Output (excerpt of `expected.txt`)"
EXCERPTED = [n for n in recipe_names() if (DOCS / f"{n}.md").exists() and EXCERPT in (DOCS / f"{n}.md").read_text()]


@pytest.mark.parametrize("name", EXCERPTED)
def test_every_line_a_recipe_page_shows_as_its_output_is_in_the_golden_exposition(name):
    shown = (DOCS / f"{name}.md").read_text().split(EXCERPT, 1)[1].split("```", 2)[1].strip().splitlines()
    golden = set((FIXTURES / name / "expected.txt").read_text().splitlines())
    assert shown and [line for line in shown if line not in golden] == []


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


def unset_recipe_variables(name: str, monkeypatch) -> None:
    """Unset every ${VAR} the recipe names, as on a CI machine without its secrets."""
    for variable in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", (RECIPES / f"{name}.yaml").read_text()):
        monkeypatch.delenv(variable, raising=False)


@pytest.mark.parametrize("name", recipe_names())
def test_check_syntax_only_accepts_the_recipe_without_its_secret_files_or_variables(name, monkeypatch, capsys):
    unset_recipe_variables(name, monkeypatch)
    assert cli_main(["check", "--syntax-only", "--config", str(RECIPES / f"{name}.yaml")]) == 0, capsys.readouterr().err
    assert "OK" in capsys.readouterr().out


def test_a_full_check_of_a_recipe_fails_without_its_secret_files_where_syntax_only_passes(monkeypatch, capsys):
    unset_recipe_variables("kubelet-summary", monkeypatch)
    path = str(RECIPES / "kubelet-summary.yaml")
    assert cli_main(["check", "--config", path]) == 1
    err = capsys.readouterr().err
    assert "targets[0].url: environment variable NODE_NAME is not set" in err
    assert "targets[0].auth.bearer_token_file: cannot read secret file '/var/run/secrets/kubernetes.io/serviceaccount/token'" in err
    assert cli_main(["check", "--syntax-only", "--config", path]) == 0


def test_try_with_a_saved_response_needs_no_secret(monkeypatch, capsys):
    unset_recipe_variables("kubernetes-metrics-api", monkeypatch)
    code = cli_main([
        "try", "--config", str(RECIPES / "kubernetes-metrics-api.yaml"), "--target", "k8s-pod-metrics",
        "--input", str(FIXTURES / "kubernetes-metrics-api" / "pods.json"),
    ])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert 'k8s_pod_cpu_usage_cores{level="pod",target="k8s-pod-metrics",namespace="inference",pod="chat-llama-7b-6c9f7d8b5-2xkqz"} 1.838694514\n' in out.out


# ---------------------------------------------------------------------------------------------------------------------
# The signed, windowed and discovered recipes, beyond the golden file
# ---------------------------------------------------------------------------------------------------------------------


def poll_once(scenario: Scenario, api: FakeAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
              routes: Callable[[Config, Path], dict[str, Route]], times: int = 1, **env: str) -> tuple[Poller, SelfMetrics, list[bool]]:
    """Load the recipe (environment plus `env`), serve `routes`, poll its one target `times` times; the poller stays open."""
    for name, value in {**environment(scenario, api.url("").rstrip("/"), tmp_path), **env}.items():
        monkeypatch.setenv(name, value)
    config = parse_config((RECIPES / f"{scenario.recipe}.yaml").read_text(), scenario.recipe)
    api.routes.update(routes(config, FIXTURES / scenario.recipe))
    metrics = SelfMetrics(CollectorRegistry(), process=False)
    poller = Poller(config.targets[0], SnapshotStore(), metrics, threading.Event())
    outcomes = [poller.poll() for _ in range(times)]
    return poller, metrics, outcomes


def failures(metrics: SelfMetrics, target: str, reason: str) -> float:
    """The poll failures counted for `target` with `reason`."""
    return metrics.registry.get_sample_value("metrics_bridge_poll_failures_total", {"target": target, "reason": reason}) or 0


def test_the_sagemaker_request_is_a_valid_get_metric_data_call_and_the_fixture_a_valid_answer(api, tmp_path, monkeypatch):
    """botocore's CloudWatch service model accepts the body the recipe sends and parses the recorded answer."""
    import botocore.session
    from botocore.parsers import create_parser
    from botocore.validate import ParamValidator

    poller, _, outcomes = poll_once(BY_NAME["aws-sagemaker-cloudwatch"], api, tmp_path, monkeypatch, cloudwatch_routes())
    poller.client.close()
    assert outcomes == [True]
    operation = botocore.session.get_session().get_service_model("cloudwatch").operation_model("GetMetricData")
    sent = orjson.loads(api.requests[0].body)
    report = ParamValidator().validate(sent, operation.input_shape)
    assert not report.has_errors(), report.generate_report()
    answer = (FIXTURES / "aws-sagemaker-cloudwatch" / "get-metric-data.json").read_bytes()
    parsed = create_parser("json").parse({"body": answer, "headers": {}, "status_code": 200}, operation.output_shape)
    results = parsed["MetricDataResults"]
    assert len(results) == len(sent["MetricDataQueries"]) and all(len(r["Timestamps"]) == len(r["Values"]) for r in results)


def test_a_wrong_aws_secret_key_fails_the_sagemaker_poll_with_cloudwatchs_message(api, tmp_path, monkeypatch):
    wrong = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYWRONGKEY"
    poller, metrics, outcomes = poll_once(
        BY_NAME["aws-sagemaker-cloudwatch"], api, tmp_path, monkeypatch, cloudwatch_routes(), AWS_SECRET_ACCESS_KEY=wrong,
    )
    poller.client.close()
    assert outcomes == [False]
    assert failures(metrics, poller.target.name, "api_error") == 1
    assert "does not match the signature you provided" in poller.status.last_error
    assert wrong not in poller.status.last_error


def test_a_stale_window_is_rejected_and_fails_the_sagemaker_poll(api, tmp_path, monkeypatch):
    poller, metrics, outcomes = poll_once(
        BY_NAME["aws-sagemaker-cloudwatch"], api, tmp_path, monkeypatch, cloudwatch_routes(ahead=timedelta(minutes=10)),
    )
    poller.client.close()
    assert outcomes == [False]
    assert failures(metrics, poller.target.name, "api_error") == 1
    assert "stale window" in poller.status.last_error


def test_one_azure_token_serves_every_poll_of_its_lifetime(api, tmp_path, monkeypatch):
    tokens = azure_token_server()
    poller, _, outcomes = poll_once(
        BY_NAME["azure-ml-online-endpoint"], api, tmp_path, monkeypatch, azure_routes(tokens), times=3,
    )
    poller.client.close()
    assert outcomes == [True, True, True]
    assert len(tokens.forms) == 1 and len(tokens.issued) == 1
    assert tokens.forms[0]["grant_type"] == "client_credentials"
    assert tokens.forms[0]["scope"] == "https://management.azure.com/.default"
    metric_requests = [r for r in api.requests if r.path.endswith("/providers/Microsoft.Insights/metrics")]
    assert len(metric_requests) == 3
    assert {r.headers["authorization"] for r in metric_requests} == {f"Bearer {tokens.issued[0].value}"}


def test_a_revoked_azure_token_fails_one_poll_with_azures_message_and_the_next_poll_gets_a_new_token(api, tmp_path, monkeypatch):
    tokens = azure_token_server()
    poller, metrics, outcomes = poll_once(
        BY_NAME["azure-ml-online-endpoint"], api, tmp_path, monkeypatch, azure_routes(tokens),
    )
    try:
        assert outcomes == [True]
        revoked = tokens.issued.pop()  # the API no longer accepts it, long before its expires_in
        assert not poller.poll()
        assert failures(metrics, poller.target.name, "api_error") == 1
        assert "The access token is invalid." in poller.status.last_error and revoked.value not in poller.status.last_error
        assert poller.poll()
    finally:
        poller.client.close()
    assert len(tokens.forms) == 2 and tokens.issued[0].value != revoked.value


def test_a_bad_azure_client_secret_fails_the_poll_with_reason_auth(api, tmp_path, monkeypatch):
    tokens = azure_token_server()
    secret = tmp_path / "wrong-secret"
    secret.write_text("not-the-client-secret\n")
    poller, metrics, outcomes = poll_once(
        BY_NAME["azure-ml-online-endpoint"], api, tmp_path, monkeypatch, azure_routes(tokens),
        AZURE_CLIENT_SECRET_FILE=str(secret),
    )
    poller.client.close()
    assert outcomes == [False]
    assert failures(metrics, poller.target.name, "auth") == 1
    assert "invalid_client" in poller.status.last_error and "not-the-client-secret" not in poller.status.last_error
    assert not tokens.issued
    assert not [r for r in api.requests if r.path.endswith("/metrics")], "no API request without a token"


def test_a_stale_timespan_is_rejected_and_fails_the_azure_poll(api, tmp_path, monkeypatch):
    tokens = azure_token_server()
    poller, metrics, outcomes = poll_once(
        BY_NAME["azure-ml-online-endpoint"], api, tmp_path, monkeypatch, azure_routes(tokens, ahead=timedelta(minutes=10)),
    )
    poller.client.close()
    assert outcomes == [False]
    assert failures(metrics, poller.target.name, "api_error") == 1
    assert "stale window" in poller.status.last_error


def test_a_torchserve_model_that_leaves_the_list_drops_its_series_at_once(api, tmp_path, monkeypatch):
    scenario = BY_NAME["torchserve-discovery"]
    poller, metrics, outcomes = poll_once(scenario, api, tmp_path, monkeypatch, torchserve_routes)
    assert outcomes == [True]
    assert 'model="llama2-7b-chat"' in b"".join(render_exposition(poller.store.current())).decode()
    first_page = orjson.loads((FIXTURES / scenario.recipe / "models-page-1.json").read_bytes())
    first_page["models"] = [m for m in first_page["models"] if m["modelName"] != "llama2-7b-chat"]
    listed = api.routes["/models"]
    api.routes["/models"] = lambda request: Reply(first_page) if "next_page_token" not in request.query else listed(request)  # type: ignore[operator]
    try:
        assert poller.poll()
    finally:
        poller.client.close()
    text = b"".join(render_exposition(poller.store.current())).decode()
    assert "llama2-7b-chat" not in text
    assert 'model="bert-base-ner"' in text and 'model="resnet-18"' in text
    assert metrics.registry.get_sample_value("metrics_bridge_discovered_items", {"target": "torchserve"}) == 2


@pytest.mark.parametrize(
    "recipe, fixture",
    [("aws-sagemaker-cloudwatch", "get-metric-data.json"), ("azure-ml-online-endpoint", "metrics.json")],
)
def test_metrics_bridge_try_prints_the_golden_exposition_of_a_single_request_recipe(recipe, fixture, tmp_path):
    scenario = BY_NAME[recipe]
    env = {**os.environ, **environment(scenario, "http://127.0.0.1:9", tmp_path)}
    target = {"aws-sagemaker-cloudwatch": f"sagemaker-{SAGEMAKER_ENDPOINT}", "azure-ml-online-endpoint": "azureml-llama3-chat"}[recipe]
    tried = subprocess.run(
        [sys.executable, "-m", "exporter", "try", "--config", str(RECIPES / f"{recipe}.yaml"), "--target", target,
         "--input", str(FIXTURES / recipe / fixture)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=60,
    )
    assert tried.returncode == 0, tried.stderr
    assert tried.stdout == (FIXTURES / recipe / "expected.txt").read_text()


# ------------------------------------------------------------------ the signed recipes refuse what the APIs refuse

CLOUD_MONITORS = ["alibaba-pai-eas", "huawei-modelarts"]  # signed, each with a window of its own


@pytest.fixture
def signed(api, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    """Load a signed recipe against its verifying loopback API (its secret file holds TOKEN): pollers and metrics."""
    opened: list[Poller] = []

    def load(name: str) -> tuple[list[Poller], SelfMetrics]:
        config = load_recipe(BY_NAME[name], api, tmp_path, monkeypatch)
        metrics = SelfMetrics(CollectorRegistry(), process=False)
        opened.extend(Poller(target, SnapshotStore(), metrics, threading.Event()) for target in config.targets)
        return opened, metrics

    yield load
    for poller in opened:
        poller.client.close()


class ShiftedTime:
    """Stands in for the poller's `time` module: wall time shifted by `offset`, monotonic time untouched."""

    def __init__(self, offset: timedelta) -> None:
        import time

        self.offset, self.monotonic, self._time = offset, time.monotonic, time.time

    def time(self) -> float:
        return self._time() + self.offset.total_seconds()


def signature_of(name: str, request: Request) -> Verdict:
    received = Received.of(request)
    return verify_cms_signature(received) if name == "alibaba-pai-eas" else verify_huawei(received, HUAWEI_AK, TOKEN)


@pytest.mark.parametrize("name, status", [("alibaba-pai-eas", 400), ("huawei-modelarts", 401)])
def test_a_wrong_secret_is_refused_by_the_verifier_and_the_poll_counted(name, status, signed, tmp_path):
    pollers, metrics = signed(name)
    (tmp_path / "token").write_text("not-the-secret\n")  # the secret file is re-read at each poll
    first = pollers[0]
    assert not first.poll()
    assert (first.status.last_outcome, first.status.last_error) == ("failure (http_status)", f"HTTP {status} {'Bad Request' if status == 400 else 'Unauthorized'}")
    assert failures(metrics, first.target.name, "http_status") == 1
    (tmp_path / "token").write_text(TOKEN + "\n")
    assert first.poll(), first.status.last_error


@pytest.mark.parametrize("name", CLOUD_MONITORS)
def test_a_stale_window_is_refused_by_the_verifier_and_the_poll_counted(name, signed, api, monkeypatch):
    import exporter.poller

    pollers, metrics = signed(name)
    monkeypatch.setattr(exporter.poller, "time", ShiftedTime(-timedelta(hours=1)))  # the poll's clock is an hour behind
    first = pollers[0]
    assert not first.poll()
    assert first.status.last_outcome == "failure (http_status)"
    assert failures(metrics, first.target.name, "http_status") == 1
    assert [bool(signature_of(name, r)) for r in api.requests] == [True]  # signed now, but asking for an old window


def test_each_cms_window_starts_where_the_last_successful_one_ended(signed, api, monkeypatch):
    import exporter.poller

    pollers, metrics = signed("alibaba-pai-eas")
    cpu = next(p for p in pollers if p.target.name == "eas-cpu")
    clock = ShiftedTime(-timedelta(minutes=3))
    monkeypatch.setattr(exporter.poller, "time", clock)
    monkeypatch.setattr(WINDOWS, "now", lambda: datetime.now(timezone.utc) + clock.offset)
    route = api.routes["/"]
    assert cpu.poll(), cpu.status.last_error  # three minutes ago: the first poll asks for one period (initial_length)
    api.routes["/"] = Reply({"RequestId": "5A0B", "Success": False, "Code": "Throttling.User",
                             "Message": "Request was denied due to user flow control."})
    clock.offset = -timedelta(minutes=2)
    assert not cpu.poll()  # one minute later the API refuses (in a 200 body): the window does not move on
    assert failures(metrics, "eas-cpu", "api_error") == 1
    assert "Request was denied due to user flow control." in cpu.status.last_error
    api.routes["/"] = route
    clock.offset = timedelta(0)
    assert cpu.poll(), cpu.status.last_error  # now: from the end of the last successful window, no gap
    windows = [(_rfc3339(r.query["StartTime"]), _rfc3339(r.query["EndTime"])) for r in api.requests]
    (first_start, first_end), retried, (last_start, last_end) = windows
    assert first_end - first_start == timedelta(minutes=1)
    assert retried[0] == first_end and last_start == first_end
    assert last_end - last_start == timedelta(minutes=3)


@pytest.mark.parametrize("name, target, body", [
    ("alibaba-pai-eas", "eas-requests", "error-period.json"),
    ("huawei-modelarts", "modelarts-service", "error-bad-metric.json"),
])
def test_an_error_in_a_200_body_fails_the_poll_as_api_error_with_the_apis_message(name, target, body, signed, api):
    pollers, metrics = signed(name)
    error = orjson.loads((FIXTURES / name / body).read_bytes())
    api.routes[CES_PATH if name == "huawei-modelarts" else "/"] = Reply(error)
    poller = next(p for p in pollers if p.target.name == target)
    assert not poller.poll()
    assert poller.status.last_outcome == "failure (api_error)"
    assert (error.get("Message") or error.get("error_msg")) in poller.status.last_error
    assert failures(metrics, target, "api_error") == 1


@pytest.mark.parametrize("signature", ["v3", "rpc"])
def test_cms_accepts_either_alibaba_signature_and_the_exposition_is_the_same(signature, signed, monkeypatch):
    monkeypatch.setenv("ALIBABA_CLOUD_SIGNATURE", signature)  # environment() does not set it: the recipe's default is v3
    pollers, _ = signed("alibaba-pai-eas")
    assert all(p.target.auth.alibaba.signature == signature for p in pollers)
    gpu = next(p for p in pollers if p.target.name == "eas-gpu-utilization")
    assert gpu.poll(), gpu.status.last_error


@pytest.mark.parametrize("name, target, fixture", [
    ("huawei-modelarts", "modelarts-service", "batch-query.json"),
    ("alibaba-pai-eas", "eas-response-time-p99", "rt-p99.json"),
    ("alibaba-pai-eas", "eas-cpu", "cpu.json"),
    ("alibaba-pai-eas", "eas-memory", "memory.json"),
    ("alibaba-pai-eas", "eas-gpu-utilization", "gpu.json"),
    ("alibaba-pai-eas", "eas-5xx-ratio", "5xx-ratio.json"),
])
def test_try_on_a_saved_response_prints_exactly_the_golden_exposition(name, target, fixture, tmp_path):
    env = {**os.environ, **environment(BY_NAME[name], "http://127.0.0.1:9", tmp_path)}
    tried = subprocess.run(
        [sys.executable, "-m", "exporter", "try", "--config", str(RECIPES / f"{name}.yaml"), "--target", target,
         "--input", str(FIXTURES / name / fixture)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=60,
    )
    assert tried.returncode == 0, tried.stderr
    assert tried.stdout == golden_of_target((FIXTURES / name / "expected.txt").read_text(), target) != ""
    if name == "huawei-modelarts":
        assert tried.stdout == (FIXTURES / name / "expected.txt").read_text()


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
