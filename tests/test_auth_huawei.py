"""Huawei Cloud SDK-HMAC-SHA256 (AK/SK): Huawei's published signing example, agreement with the official SDK
(`huaweicloudsdkcore`) on what a loopback server received, and rejection of a wrong secret, a changed body and a
stale `X-Sdk-Date`."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import requests

from exporter.auth import Auth, auth_secrets
from exporter.auth.huawei import HuaweiAuth, HuaweiSigner
from exporter.client import FetchError, TargetClient
from exporter.config import ConfigError, parse_config

from conftest import require_module
from fakeapi import Reply
from signatures import Received, VerifyingRoute, verify_huawei

AK, SK = "HWAKEXAMPLE0123456789", "huawei-secret-7b2e"
NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
REQUESTS = [
    ("GET", {"namespace": "SYS.ModelArts", "dim.0": "service_id,a b/c", "filter": "average", "note": "x+y*~é", "empty": ""}, None),
    ("POST", {}, {"metrics": [{"namespace": "SYS.ModelArts", "metric_name": "req_count"}], "period": "1", "filter": "sum"}),
]


@pytest.fixture(autouse=True)
def sdk():
    """The official SDK is a test-only dependency (the `test` extra)."""
    require_module("huaweicloudsdkcore")


def huawei(**extra) -> HuaweiAuth:
    return HuaweiAuth(access_key_id=AK, secret_access_key=extra.pop("secret_access_key", SK), **extra)


def send(api, signer, method, params, body, path="/v1/0a1b2c/metric-data") -> Received:
    api.routes[path] = Reply({"datapoints": []})
    requests.request(method, api.url(path), params=params, json=body, auth=signer, timeout=10)
    return Received.of(api.requests[-1])


def test_the_signature_reproduces_huaweis_published_example():
    """`API Request Signing Guide` (support.huaweicloud.com devg-apisign): the VPC query signed with the sample AK/SK."""
    signer = HuaweiSigner(HuaweiAuth(access_key_id="QTWAOYTTINDUT2QVKYUC", secret_access_key="MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc"),
                          clock=lambda: datetime(2019, 11, 15, 3, 36, 55, tzinfo=timezone.utc))
    request = requests.Request(
        "GET", "https://service.region.example.com/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs?limit=2&marker=13551d6b-755d-4757-b956-536f674975c0",
        headers={"Content-Type": "application/json"}, auth=signer,
    ).prepare()
    assert request.headers["X-Sdk-Date"] == "20191115T033655Z"
    assert request.headers["Authorization"] == (
        "SDK-HMAC-SHA256 Access=QTWAOYTTINDUT2QVKYUC, SignedHeaders=content-type;host;x-sdk-date, "
        "Signature=7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe"
    )


@pytest.mark.parametrize("method, params, body", REQUESTS, ids=["get-with-encoded-query", "post-with-json-body"])
def test_signatures_agree_with_the_official_sdk(api, method, params, body):
    received = send(api, HuaweiSigner(huawei(project_id="0a1b2c", security_token="sts-hw-1")), method, params, body, path="/v1/0a1b2c/a%20b:c")
    assert received.header("x-project-id") == "0a1b2c" and received.header("x-security-token") == "sts-hw-1"
    signed = "content-type;host;x-project-id;x-sdk-date;x-security-token" if body else "host;x-project-id;x-sdk-date;x-security-token"
    assert f"SignedHeaders={signed}," in received.header("authorization")
    assert verify_huawei(received, AK, SK).ok


def test_a_wrong_secret_is_rejected(api):
    received = send(api, HuaweiSigner(huawei(secret_access_key="not-the-secret")), "GET", {"a": "1"}, None)
    assert verify_huawei(received, AK, SK).reason == "signature mismatch"
    assert verify_huawei(received, AK, "not-the-secret").ok


def test_a_changed_body_or_query_is_rejected(api):
    received = send(api, HuaweiSigner(huawei()), "POST", {"limit": "10"}, {"period": "1"})
    assert verify_huawei(received, AK, SK).ok
    assert not verify_huawei(Received(received.method, received.path, received.query, received.headers, b'{"period":"300"}'), AK, SK)
    assert not verify_huawei(Received(received.method, received.path, "limit=11", received.headers, received.body), AK, SK)


def test_a_request_older_than_the_window_is_rejected(api):
    received = send(api, HuaweiSigner(huawei(), clock=lambda: NOW), "GET", {"a": "1"}, None)
    assert received.header("x-sdk-date") == "20260304T050607Z"
    assert verify_huawei(received, AK, SK, now=NOW + timedelta(minutes=4)).ok
    assert verify_huawei(received, AK, SK, now=NOW + timedelta(minutes=6)).reason.startswith("stale request")


def test_a_target_client_is_accepted_by_a_verifying_server_and_follows_a_rotated_secret(api, tmp_path):
    secret = tmp_path / "sk"
    secret.write_text(SK + "\n")
    expected = {"secret": SK}
    route = VerifyingRoute(lambda received: verify_huawei(received, AK, expected["secret"]), Reply({"datapoints": [{"average": 3}]}))
    api.routes["/V1.0/0a1b2c/batch-query-metric-data"] = route
    target = parse_config(f"""
targets:
  - name: ces
    url: {api.url('/V1.0/0a1b2c/batch-query-metric-data')}
    method: POST
    body: {{metrics: [{{namespace: SYS.ModelArts, metric_name: req_count_2xx}}], period: "1", filter: average}}
    retries: {{attempts: 1}}
    auth: {{huawei: {{access_key_id: {AK}, secret_access_key_file: {secret}, project_id: 0a1b2c}}}}
    mappings:
      - level: service
        metrics: [{{name: m, value: "datapoints[0].average"}}]
""").targets[0]
    client = TargetClient(target)
    assert client.fetch().documents == [{"datapoints": [{"average": 3}]}]
    secret.write_text("rotated")
    expected["secret"] = "rotated"
    client.fetch()
    expected["secret"] = SK
    with pytest.raises(FetchError) as caught:
        client.fetch()
    assert (caught.value.reason, caught.value.status) == ("http_status", 403)
    assert [bool(v) for v in route.verdicts] == [True, True, False]


def test_the_secrets_are_known_to_the_redactor():
    assert sorted(auth_secrets(Auth(huawei=huawei(security_token="sts-hw-2")))) == sorted([SK, "sts-hw-2", AK])


@pytest.mark.parametrize("block, problem", [
    ("{access_key_id: K, secret_access_key: s, region: x}", "targets[0].auth.huawei.region: unknown key (valid here: access_key_id, secret_access_key, secret_access_key_file, project_id, security_token, security_token_file)"),
    ("{access_key_id: K, secret_access_key: s, security_token: a, security_token_file: /etc/hostname}",
     "targets[0].auth.huawei: set security_token or security_token_file, not both"),
    ("{access_key_id: K, secret_access_key_file: /nonexistent/sk}",
     "targets[0].auth.huawei.secret_access_key_file: cannot read secret file '/nonexistent/sk': No such file or directory"),
])
def test_a_bad_huawei_block_is_a_config_error_with_its_key_path(block, problem):
    with pytest.raises(ConfigError) as caught:
        parse_config(f"targets: [{{name: t, url: 'http://127.0.0.1:1/', auth: {{huawei: {block}}}, mappings: [{{level: service, metrics: [{{name: m, value: v}}]}}]}}]")
    assert caught.value.problems == [problem]


def test_a_configured_host_header_is_the_host_that_is_signed(api):
    api.routes["/v1/p/metrics"] = Reply({})
    requests.get(api.url("/v1/p/metrics"), headers={"Host": "ces.cn-north-4.myhuaweicloud.com"}, auth=HuaweiSigner(huawei()), timeout=10)
    received = Received.of(api.requests[-1])
    assert received.header("host") == "ces.cn-north-4.myhuaweicloud.com"
    assert verify_huawei(received, AK, SK).ok
