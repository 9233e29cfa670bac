"""Alibaba Cloud signatures (V3 ACS3-HMAC-SHA256 and RPC HMAC-SHA1): Alibaba's published examples, agreement with the
official SDKs (`alibabacloud_openapi_util`, `aliyunsdkcore`) on what a loopback server received, and rejection of a
wrong secret, a changed body or query and a stale timestamp."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from exporter.auth import Auth, AuthFailure, auth_secrets, build_auth
from exporter.auth.alibaba import AlibabaAuth, AlibabaSigner
from exporter.client import FetchError, TargetClient
from exporter.config import ConfigError, parse_config

from conftest import require_module
from fakeapi import Reply
from signatures import Received, VerifyingRoute, verify_alibaba_rpc, verify_alibaba_v3

AK, SK = "LTAI5tExampleAccessKey", "alibaba-secret-0c1d"
NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
REQUESTS = [
    ("GET", {"Namespace": "acs_ecs_dashboard", "Dimensions": '[{"instanceId":"i-bp1 2"}]', "Period": "60", "Note": "a+b/c*~é", "Empty": ""}, None),
    ("POST", {"RegionId": "cn-hangzhou"}, {"Namespace": "acs_pai_eas", "MetricName": "qps", "Length": 1000}),
]


@pytest.fixture(autouse=True)
def sdk():
    """The official SDKs are test-only dependencies (the `test` extra)."""
    require_module("alibabacloud_openapi_util")
    require_module("aliyunsdkcore")


def alibaba(signature: str = "v3", **extra) -> AlibabaAuth:
    return AlibabaAuth(signature=signature, action="DescribeMetricList", version="2019-01-01", access_key_id=AK,
                       access_key_secret=extra.pop("access_key_secret", SK), **extra)


def signed(url: str, signer: AlibabaSigner, method: str = "GET") -> requests.PreparedRequest:
    return requests.Request(method, url, auth=signer).prepare()


def send(api, signer, method, params, body) -> Received:
    api.routes["/"] = Reply({"Code": "200"})
    requests.request(method, api.url("/"), params=params, json=body, auth=signer, timeout=10)
    return Received.of(api.requests[-1])


# ------------------------------------------------------------------ published examples


def test_v3_reproduces_alibabas_published_example():
    """`Request syntax and signature method V3` (help.aliyun.com / alibabacloud.com), its worked example."""
    config = AlibabaAuth(action="RunInstances", version="2014-05-26", access_key_id="YourAccessKeyId",
                         access_key_secret="YourAccessKeySecret")
    signer = AlibabaSigner(config, clock=lambda: datetime(2023, 10, 26, 10, 22, 32, tzinfo=timezone.utc),
                           nonce=lambda: "3156853299f313e23d1673dc12e1703d")
    request = signed("https://ecs.cn-shanghai.aliyuncs.com/?ImageId=win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd&RegionId=cn-shanghai", signer, "POST")
    assert request.headers["Authorization"] == (
        "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,"
        "SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,"
        "Signature=06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
    )
    assert request.headers["x-acs-content-sha256"] == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_v3_reproduces_the_signature_of_the_documented_request_headers():
    """The same page's header table: x-acs-date 2023-10-26T09:01:01Z, nonce d410180a5abf7fe235dd9b74aca91fc0."""
    config = AlibabaAuth(action="RunInstances", version="2014-05-26", access_key_id="YourAccessKeyId",
                         access_key_secret="YourAccessKeySecret")
    signer = AlibabaSigner(config, clock=lambda: datetime(2023, 10, 26, 9, 1, 1, tzinfo=timezone.utc),
                           nonce=lambda: "d410180a5abf7fe235dd9b74aca91fc0")
    request = signed("https://ecs.cn-shanghai.aliyuncs.com/?ImageId=win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd&RegionId=cn-shanghai", signer, "POST")
    assert request.headers["Authorization"].endswith("Signature=e521358f7776c97df52e6b2891a8bc73026794a071b50c3323388c4e0df64804")


def test_rpc_reproduces_alibabas_published_example():
    """`Request syntax and signature method V2 for RPC APIs`: DescribeRegions signed with testid / testsecret."""
    config = AlibabaAuth(signature="rpc", action="DescribeRegions", version="2014-05-26", access_key_id="testid",
                         access_key_secret="testsecret")
    signer = AlibabaSigner(config, clock=lambda: datetime(2016, 2, 23, 12, 46, 24, tzinfo=timezone.utc),
                           nonce=lambda: "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf")
    request = signed("http://ecs.aliyuncs.com/?Format=XML", signer)
    query = dict(parse_qsl(urlsplit(request.url).query))
    assert query["Signature"] == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
    assert query == {
        "AccessKeyId": "testid", "Action": "DescribeRegions", "Format": "XML", "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf", "SignatureVersion": "1.0",
        "Timestamp": "2016-02-23T12:46:24Z", "Version": "2014-05-26", "Signature": "OLeaidS1JvxuMvnyHOwuJ+uX5qY=",
    }


# ------------------------------------------------------------------ agreement with the official SDKs


@pytest.mark.parametrize("method, params, body", REQUESTS, ids=["get-with-encoded-query", "post-with-json-body"])
def test_v3_signatures_agree_with_the_official_sdk(api, method, params, body):
    received = send(api, AlibabaSigner(alibaba(security_token="sts-token-1")), method, params, body)
    assert received.header("x-acs-security-token") == "sts-token-1"
    assert "x-acs-security-token" in received.header("authorization")
    assert verify_alibaba_v3(received, AK, SK).ok


@pytest.mark.parametrize("method, params, body", REQUESTS, ids=["get-with-encoded-query", "post-with-query-params"])
def test_rpc_signatures_agree_with_both_official_sdks(api, method, params, body):
    from aliyunsdkcore.auth.composer import rpc_signature_composer as composer

    received = send(api, AlibabaSigner(alibaba("rpc", security_token="sts-token-2")), method, params, None)
    assert verify_alibaba_rpc(received, AK, SK).ok
    query = dict(received.pairs())
    signature = query.pop("Signature")
    assert query["SecurityToken"] == "sts-token-2" and query["Format"] == "JSON"
    assert {k: query[k] for k in params} == params  # the configured parameters are sent as they were
    string_to_sign = getattr(composer, "__compose_string_to_sign")(method, query)
    assert getattr(composer, "__get_signature")(string_to_sign, SK) == signature


# ------------------------------------------------------------------ rejections


def test_a_wrong_secret_is_rejected(api):
    v3 = send(api, AlibabaSigner(alibaba(access_key_secret="not-the-secret")), "GET", {"a": "1"}, None)
    rpc = send(api, AlibabaSigner(alibaba("rpc", access_key_secret="not-the-secret")), "GET", {"a": "1"}, None)
    assert verify_alibaba_v3(v3, AK, SK).reason == "signature mismatch"
    assert verify_alibaba_rpc(rpc, AK, SK).reason == "signature mismatch"
    assert verify_alibaba_v3(v3, AK, "not-the-secret").ok and verify_alibaba_rpc(rpc, AK, "not-the-secret").ok


def test_a_changed_body_or_query_is_rejected(api):
    received = send(api, AlibabaSigner(alibaba()), "POST", {"RegionId": "cn-hangzhou"}, {"Length": 1000})
    assert verify_alibaba_v3(received, AK, SK).ok
    tampered_body = Received(received.method, received.path, received.query, received.headers, b'{"Length":1}')
    assert verify_alibaba_v3(tampered_body, AK, SK).reason == "x-acs-content-sha256 does not match the body"
    tampered_query = Received(received.method, received.path, "RegionId=cn-beijing", received.headers, received.body)
    assert verify_alibaba_v3(tampered_query, AK, SK).reason == "signature mismatch"
    rpc = send(api, AlibabaSigner(alibaba("rpc")), "GET", {"RegionId": "cn-hangzhou"}, None)
    changed = Received(rpc.method, rpc.path, rpc.query.replace("cn-hangzhou", "cn-beijing"), rpc.headers, rpc.body)
    assert verify_alibaba_rpc(changed, AK, SK).reason == "signature mismatch"


@pytest.mark.parametrize("signature, verify", [("v3", verify_alibaba_v3), ("rpc", verify_alibaba_rpc)])
def test_a_request_older_than_the_window_is_rejected(api, signature, verify):
    received = send(api, AlibabaSigner(alibaba(signature), clock=lambda: NOW), "GET", {"a": "1"}, None)
    assert verify(received, AK, SK, now=NOW + timedelta(minutes=4)).ok
    assert verify(received, AK, SK, now=NOW + timedelta(minutes=6)).reason.startswith("stale request")
    assert verify(received, AK, SK, now=NOW - timedelta(minutes=6)).reason.startswith("request signed")


def test_each_request_gets_a_fresh_nonce_and_the_clocks_time(api):
    first = send(api, AlibabaSigner(alibaba(), clock=lambda: NOW), "GET", {}, None)
    second = send(api, AlibabaSigner(alibaba(), clock=lambda: NOW), "GET", {}, None)
    assert first.header("x-acs-date") == "2026-03-04T05:06:07Z"
    assert first.header("x-acs-signature-nonce") != second.header("x-acs-signature-nonce")
    assert first.header("x-acs-action") == "DescribeMetricList" and first.header("x-acs-version") == "2019-01-01"


# ------------------------------------------------------------------ through the client


def target(api, auth: str, path: str = "/metrics", extra: str = ""):
    return parse_config(f"""
targets:
  - name: cms
    url: {api.url(path)}
    params: {{Namespace: acs_pai_eas, MetricName: qps}}
{extra}
    retries: {{attempts: 1}}
    auth: {{alibaba: {auth}}}
    mappings:
      - level: service
        metrics: [{{name: qps, value: Datapoints}}]
""").targets[0]


@pytest.mark.parametrize("signature, verify", [("v3", verify_alibaba_v3), ("rpc", verify_alibaba_rpc)])
def test_a_target_client_is_accepted_by_a_verifying_server_and_follows_a_rotated_secret(api, tmp_path, signature, verify):
    secret = tmp_path / "secret"
    secret.write_text(SK + "\n")
    expected = {"secret": SK}
    route = VerifyingRoute(lambda received: verify(received, AK, expected["secret"]), Reply({"Datapoints": 5}))
    api.routes["/metrics"] = route
    auth = f"{{signature: {signature}, action: DescribeMetricList, version: '2019-01-01', access_key_id: {AK}, access_key_secret_file: {secret}}}"
    client = TargetClient(target(api, auth, extra="    method: POST\n    body: {Length: 10}" if signature == "v3" else ""))
    assert client.fetch().documents == [{"Datapoints": 5}]
    secret.write_text("rotated-secret")
    expected["secret"] = "rotated-secret"
    assert client.fetch().documents == [{"Datapoints": 5}]
    expected["secret"] = SK  # the server still wants the old one: the poll fails as the API answers
    with pytest.raises(FetchError) as caught:
        client.fetch()
    assert (caught.value.reason, caught.value.status) == ("http_status", 403)
    assert [bool(v) for v in route.verdicts] == [True, True, False]


def test_an_unreadable_secret_file_fails_the_poll_with_reason_auth(api, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text(SK)
    client = TargetClient(target(api, f"{{action: A, version: V, access_key_id: {AK}, access_key_secret_file: {secret}}}"))
    secret.unlink()
    with pytest.raises(FetchError) as caught:
        client.fetch()
    assert caught.value.reason == "auth"
    assert str(caught.value) == "cannot read the access_key_secret file: No such file or directory"
    assert api.requests == []


def test_the_secrets_are_known_to_the_redactor():
    auth = Auth(alibaba=alibaba(security_token="sts-token-3"))
    assert sorted(auth_secrets(auth)) == sorted([SK, "sts-token-3", AK])
    with pytest.raises(AuthFailure):
        build_auth(Auth(alibaba=alibaba(access_key_secret="")))(requests.Request("GET", "http://x/").prepare())


@pytest.mark.parametrize("block, problem", [
    ("{action: A, version: V, access_key_id: K}", "targets[0].auth.alibaba: set access_key_secret or access_key_secret_file"),
    ("{action: A, version: V, access_key_id: K, access_key_secret: s, access_key_secret_file: /etc/hostname}",
     "targets[0].auth.alibaba: set access_key_secret or access_key_secret_file, not both"),
    ("{signature: v2, action: A, version: V, access_key_id: K, access_key_secret: s}", "targets[0].auth.alibaba.signature: must be 'v3' or 'rpc', got 'v2'"),
    ("{version: V, access_key_id: K, access_key_secret: s}", "targets[0].auth.alibaba.action: required key missing"),
])
def test_a_bad_alibaba_block_is_a_config_error_with_its_key_path(block, problem):
    with pytest.raises(ConfigError) as caught:
        parse_config(f"targets: [{{name: t, url: 'http://127.0.0.1:1/', auth: {{alibaba: {block}}}, mappings: [{{level: service, metrics: [{{name: m, value: v}}]}}]}}]")
    assert problem in caught.value.problems


def test_an_unquoted_version_is_read_as_the_text_it_was():
    target = parse_config(
        "targets: [{name: t, url: 'http://127.0.0.1:1/', auth: {alibaba: {action: A, version: 2019-01-01, access_key_id: K, "
        "access_key_secret: s}}, mappings: [{level: service, metrics: [{name: m, value: v}]}]}]"
    ).targets[0]
    assert target.auth.alibaba.version == "2019-01-01"
