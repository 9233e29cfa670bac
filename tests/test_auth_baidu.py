"""Baidu AI Cloud bce-auth-v1: the signing key of Baidu's published example, agreement with the official SDK
(`bce-python-sdk`) on that example and on what a loopback server received, and rejection of a wrong secret, a changed
body, an expired signature and a stale timestamp."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import requests

from exporter.auth import Auth, auth_secrets
from exporter.auth.baidu import BaiduAuth, BaiduSigner, canonical_request, signing_key
from exporter.auth.canonical import hmac_sha256
from exporter.client import FetchError, TargetClient
from exporter.config import ConfigError, parse_config

from conftest import require_module
from fakeapi import Reply
from signatures import Received, VerifyingRoute, verify_baidu

AK, SK = "ALTAKExampleBaiduKey", "baidu-secret-3e8d"
NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
REQUESTS = [
    ("GET", {"serviceId": "svc 1/a", "metricName": "QPS", "note": "x+y*~é", "empty": ""}, None),
    ("POST", {"action": "query"}, {"serviceId": "svc-1", "metrics": ["QPS", "Latency"], "period": 60}),
]
EXAMPLE_AK, EXAMPLE_SK = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"


@pytest.fixture(autouse=True)
def sdk():
    """The official SDK is a test-only dependency (the `test` extra)."""
    require_module("baidubce")


def baidu(**extra) -> BaiduAuth:
    return BaiduAuth(access_key_id=AK, secret_access_key=extra.pop("secret_access_key", SK), **extra)


def send(api, signer, method, params, body, path="/rest/2.0/metrics") -> Received:
    api.routes[path] = Reply({"result": []})
    requests.request(method, api.url(path), params=params, json=body, auth=signer, timeout=10)
    return Received.of(api.requests[-1])


def test_the_signing_key_and_signature_reproduce_baidus_published_example():
    """`Generating an authentication string` / `Sample code` (cloud.baidu.com Reference): the BOS UploadPart of
    2015-04-27T08:23:49Z publishes the signing key; the signature over its five headers is checked with the SDK."""
    from baidubce.auth.bce_credentials import BceCredentials
    from baidubce.auth.bce_v1_signer import sign

    prefix = f"bce-auth-v1/{EXAMPLE_AK}/2015-04-27T08:23:49Z/1800"
    assert signing_key(EXAMPLE_SK, prefix) == "1d5ce5f464064cbee060330d973218821825ac6952368a482a592e6615aef479"
    request = requests.Request(
        "PUT", "http://bj.bcebos.com/test/myfolder/readme.txt?partNumber=9&uploadId=a44cc9bab11cbd156984767aad637851",
        headers={"Content-Type": "text/plain", "Content-Length": "8", "Content-Md5": "NFzcPqhviddjRNnSOGo4rw==",
                 "x-bce-date": "2015-04-27T08:23:49Z"}, data=b"Example",
    ).prepare()
    request.headers["Content-Length"] = "8"
    names = ["content-length", "content-md5", "content-type", "host", "x-bce-date"]
    ours = hmac_sha256(signing_key(EXAMPLE_SK, prefix).encode(), canonical_request(request, names)).hex()
    theirs = sign(
        BceCredentials(EXAMPLE_AK, EXAMPLE_SK), b"PUT", b"/test/myfolder/readme.txt",
        {b"host": b"bj.bcebos.com", b"content-length": b"8", b"content-md5": b"NFzcPqhviddjRNnSOGo4rw==",
         b"content-type": b"text/plain", b"x-bce-date": b"2015-04-27T08:23:49Z"},
        {"partNumber": 9, "uploadId": "a44cc9bab11cbd156984767aad637851"}, timestamp=1430123029,
        headers_to_sign=[n.encode() for n in names],
    )
    assert theirs.decode() == f"{prefix}/{';'.join(names)}/{ours}"


@pytest.mark.parametrize("method, params, body", REQUESTS, ids=["get-with-encoded-query", "post-with-json-body"])
def test_signatures_agree_with_the_official_sdk(api, method, params, body):
    received = send(api, BaiduSigner(baidu(expiration_seconds=600)), method, params, body, path="/rest/2.0/a%20b:c")
    signed = "content-type;host;x-bce-content-sha256;x-bce-date" if body else "host;x-bce-content-sha256;x-bce-date"
    assert received.header("authorization").startswith(f"bce-auth-v1/{AK}/") and f"/600/{signed}/" in received.header("authorization")
    assert verify_baidu(received, AK, SK).ok


def test_a_wrong_secret_is_rejected(api):
    received = send(api, BaiduSigner(baidu(secret_access_key="not-the-secret")), "GET", {"a": "1"}, None)
    assert verify_baidu(received, AK, SK).reason == "signature mismatch"
    assert verify_baidu(received, AK, "not-the-secret").ok


def test_a_changed_body_or_query_is_rejected(api):
    received = send(api, BaiduSigner(baidu()), "POST", {"action": "query"}, {"period": 60})
    assert verify_baidu(received, AK, SK).ok
    tampered = Received(received.method, received.path, received.query, received.headers, b'{"period":1}')
    assert verify_baidu(tampered, AK, SK).reason == "x-bce-content-sha256 does not match the body"
    requery = Received(received.method, received.path, "action=delete", received.headers, received.body)
    assert verify_baidu(requery, AK, SK).reason == "signature mismatch"


def test_an_expired_or_stale_signature_is_rejected(api):
    received = send(api, BaiduSigner(baidu(expiration_seconds=120), clock=lambda: NOW), "GET", {"a": "1"}, None)
    assert received.header("x-bce-date") == "2026-03-04T05:06:07Z"
    assert verify_baidu(received, AK, SK, now=NOW + timedelta(seconds=100)).ok
    assert verify_baidu(received, AK, SK, now=NOW + timedelta(seconds=130)).reason == "expired signature"
    long_lived = send(api, BaiduSigner(baidu(), clock=lambda: NOW), "GET", {"a": "1"}, None)
    assert verify_baidu(long_lived, AK, SK, now=NOW + timedelta(minutes=6)).reason.startswith("stale request")


def test_a_target_client_is_accepted_by_a_verifying_server_and_follows_a_rotated_secret(api, tmp_path):
    secret = tmp_path / "sk"
    secret.write_text(SK + "\n")
    expected = {"secret": SK}
    route = VerifyingRoute(lambda r: verify_baidu(r, AK, expected["secret"]), Reply({"result": [{"value": 7}]}))
    api.routes["/v2/metrics"] = route
    target = parse_config(f"""
targets:
  - name: qianfan
    url: {api.url('/v2/metrics')}
    method: POST
    params: {{serviceId: svc-1}}
    body: {{metrics: [QPS]}}
    retries: {{attempts: 1}}
    auth: {{baidu: {{access_key_id: {AK}, secret_access_key_file: {secret}, expiration_seconds: 300}}}}
    mappings:
      - level: service
        metrics: [{{name: m, value: "result[0].value"}}]
""").targets[0]
    client = TargetClient(target)
    assert client.fetch().documents == [{"result": [{"value": 7}]}]
    secret.write_text("rotated")
    expected["secret"] = "rotated"
    client.fetch()
    expected["secret"] = SK
    with pytest.raises(FetchError) as caught:
        client.fetch()
    assert (caught.value.reason, caught.value.status) == ("http_status", 403)
    assert [bool(v) for v in route.verdicts] == [True, True, False]


def test_the_secrets_are_known_to_the_redactor():
    assert sorted(auth_secrets(Auth(baidu=baidu()))) == sorted([SK, AK])


@pytest.mark.parametrize("block, problem", [
    ("{access_key_id: K, secret_access_key: s, expiration_seconds: 0}", "targets[0].auth.baidu.expiration_seconds: must be greater than 0"),
    ("{access_key_id: K}", "targets[0].auth.baidu: set secret_access_key or secret_access_key_file"),
])
def test_a_bad_baidu_block_is_a_config_error_with_its_key_path(block, problem):
    with pytest.raises(ConfigError) as caught:
        parse_config(f"targets: [{{name: t, url: 'http://127.0.0.1:1/', auth: {{baidu: {block}}}, mappings: [{{level: service, metrics: [{{name: m, value: v}}]}}]}}]")
    assert caught.value.problems == [problem]
