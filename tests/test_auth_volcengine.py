"""Volcengine HMAC-SHA256: the canonical request of the provider's published example, agreement with the official SDK
(`volcengine`) on what a loopback server received, and rejection of a wrong secret, a changed body, a wrong scope
and a stale `X-Date`."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

import pytest
import requests

from exporter.auth import Auth, auth_secrets
from exporter.auth.volcengine import VolcengineAuth, VolcengineSigner, canonical_request
from exporter.client import FetchError, TargetClient
from exporter.config import ConfigError, parse_config

from conftest import require_module
from fakeapi import Reply
from signatures import Received, VerifyingRoute, verify_volcengine

AK, SK = "AKLTExampleVolcengineKey", "volc-secret-5a9f"
REGION, SERVICE = "cn-beijing", "ml_platform"
NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
REQUESTS = [
    ("GET", {"Action": "GetMetricData", "Version": "2018-01-01", "Namespace": "VCM_MLP", "Dimensions": "a b/c", "Note": "x+y*~é", "Empty": ""}, None),
    ("POST", {"Action": "GetMetricData", "Version": "2018-01-01"}, {"Namespace": "VCM_MLP", "MetricName": "GpuUtil", "Period": "60s"}),
]


@pytest.fixture(autouse=True)
def sdk():
    """The official SDK is a test-only dependency (the `test` extra)."""
    require_module("volcengine")


def volcengine(**extra) -> VolcengineAuth:
    return VolcengineAuth(access_key_id=AK, secret_access_key=extra.pop("secret_access_key", SK),
                          region=extra.pop("region", REGION), service=SERVICE, **extra)


def send(api, signer, method, params, body, path="/") -> Received:
    api.routes[path] = Reply({"Result": {}})
    requests.request(method, api.url(path), params=params, json=body, auth=signer, timeout=10)
    return Received.of(api.requests[-1])


def test_the_canonical_request_reproduces_the_published_example():
    """BytePlus (Volcengine's international edition, same OpenAPI signature) `Example`: ListUsers at 20201230T081805Z;
    the page publishes the hash of the canonical request, 4809ff4a…"""
    config = VolcengineAuth(access_key_id="AK", secret_access_key="SK", region="ap-singapore-1", service="iam")
    signer = VolcengineSigner(config, clock=lambda: datetime(2020, 12, 30, 8, 18, 5, tzinfo=timezone.utc))
    request = requests.Request(
        "GET", "https://iam.byteplusapi.com/?Action=ListUsers&Version=2018-01-01&Limit=10&Offset=0",
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}, auth=signer,
    ).prepare()
    canonical, signed = canonical_request(request)
    assert signed == "content-type;host;x-content-sha256;x-date"
    assert canonical.splitlines()[:3] == ["GET", "/", "Action=ListUsers&Limit=10&Offset=0&Version=2018-01-01"]
    assert hashlib.sha256(canonical.encode()).hexdigest() == "4809ff4a3260bb6714f750191275cfcf0c16466951fcfd99187e69644b6ae020"
    assert request.headers["Authorization"].startswith(
        "HMAC-SHA256 Credential=AK/20201230/ap-singapore-1/iam/request, SignedHeaders=content-type;host;x-content-sha256;x-date, Signature="
    )


@pytest.mark.parametrize("method, params, body", REQUESTS, ids=["get-with-encoded-query", "post-with-json-body"])
def test_signatures_agree_with_the_official_sdk(api, method, params, body):
    received = send(api, VolcengineSigner(volcengine(session_token="sts-volc-1")), method, params, body, path="/a%20b:c")
    assert received.header("x-security-token") == "sts-volc-1"
    assert verify_volcengine(received, AK, SK, REGION, SERVICE).ok


def test_a_wrong_secret_or_scope_is_rejected(api):
    wrong_secret = send(api, VolcengineSigner(volcengine(secret_access_key="not-the-secret")), "GET", {"a": "1"}, None)
    assert verify_volcengine(wrong_secret, AK, SK, REGION, SERVICE).reason == "signature mismatch"
    assert verify_volcengine(wrong_secret, AK, "not-the-secret", REGION, SERVICE).ok
    wrong_region = send(api, VolcengineSigner(volcengine(region="cn-shanghai")), "GET", {"a": "1"}, None)
    assert verify_volcengine(wrong_region, AK, SK, REGION, SERVICE).reason == "signed for cn-shanghai/ml_platform, not cn-beijing/ml_platform"


def test_a_changed_body_or_query_is_rejected(api):
    received = send(api, VolcengineSigner(volcengine()), "POST", {"Action": "GetMetricData"}, {"Period": "60s"})
    assert verify_volcengine(received, AK, SK, REGION, SERVICE).ok
    tampered = Received(received.method, received.path, received.query, received.headers, b'{"Period":"1s"}')
    assert verify_volcengine(tampered, AK, SK, REGION, SERVICE).reason == "x-content-sha256 does not match the body"
    requery = Received(received.method, received.path, "Action=ListUsers", received.headers, received.body)
    assert verify_volcengine(requery, AK, SK, REGION, SERVICE).reason == "signature mismatch"


def test_a_request_older_than_the_window_is_rejected(api):
    received = send(api, VolcengineSigner(volcengine(), clock=lambda: NOW), "GET", {"a": "1"}, None)
    assert received.header("x-date") == "20260304T050607Z"
    assert verify_volcengine(received, AK, SK, REGION, SERVICE, now=NOW + timedelta(minutes=4)).ok
    assert verify_volcengine(received, AK, SK, REGION, SERVICE, now=NOW + timedelta(minutes=6)).reason.startswith("stale request")


def test_a_target_client_is_accepted_by_a_verifying_server_and_follows_a_rotated_secret(api, tmp_path):
    secret = tmp_path / "sk"
    secret.write_text(SK + "\n")
    expected = {"secret": SK}
    route = VerifyingRoute(lambda r: verify_volcengine(r, AK, expected["secret"], REGION, SERVICE), Reply({"Result": {"Data": 1}}))
    api.routes["/"] = route
    target = parse_config(f"""
targets:
  - name: volc
    url: {api.url('/')}
    method: POST
    params: {{Action: GetMetricData, Version: "2018-01-01"}}
    body: {{Namespace: VCM_MLP, MetricName: GpuUtil}}
    retries: {{attempts: 1}}
    auth: {{volcengine: {{access_key_id: {AK}, secret_access_key_file: {secret}, region: {REGION}, service: {SERVICE}}}}}
    mappings:
      - level: service
        metrics: [{{name: m, value: Result.Data}}]
""").targets[0]
    client = TargetClient(target)
    assert client.fetch().documents == [{"Result": {"Data": 1}}]
    secret.write_text("rotated")
    expected["secret"] = "rotated"
    client.fetch()
    expected["secret"] = SK
    with pytest.raises(FetchError) as caught:
        client.fetch()
    assert (caught.value.reason, caught.value.status) == ("http_status", 403)
    assert [bool(v) for v in route.verdicts] == [True, True, False]


def test_the_secrets_are_known_to_the_redactor():
    assert sorted(auth_secrets(Auth(volcengine=volcengine(session_token="sts-volc-2")))) == sorted([SK, "sts-volc-2", AK])


@pytest.mark.parametrize("block, problem", [
    ("{access_key_id: K, secret_access_key: s, service: x}", "targets[0].auth.volcengine.region: required key missing"),
    ("{access_key_id: K, region: r, service: x}", "targets[0].auth.volcengine: set secret_access_key or secret_access_key_file"),
])
def test_a_bad_volcengine_block_is_a_config_error_with_its_key_path(block, problem):
    with pytest.raises(ConfigError) as caught:
        parse_config(f"targets: [{{name: t, url: 'http://127.0.0.1:1/', auth: {{volcengine: {block}}}, mappings: [{{level: service, metrics: [{{name: m, value: v}}]}}]}}]")
    assert caught.value.problems == [problem]
