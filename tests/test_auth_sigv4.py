"""AWS Signature Version 4: the signer reproduces AWS's published test suite, and botocore (a verifier that is not
the signer) accepts what a real TargetClient sends to a loopback API; a wrong key, a changed body or a missing
session token are rejected; roles are assumed through a loopback STS once per lifetime of their keys.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests
import yaml

from exporter.auth.sigv4 import Credentials, sign
from exporter.client import FetchError, TargetClient
from exporter.config import ConfigError, parse_config

from conftest import require_module
from fakeapi import FakeAPI, Reply, wait_until
from signatures import LoopbackSTS, request_url, sigv4_route, verify_sigv4

SUITE = json.loads((Path(__file__).parent / "testdata" / "sigv4" / "aws-sigv4-testsuite.json").read_text())
ACCESS_KEY, SECRET_KEY, REGION, SERVICE = "AKIAEXAMPLEBRIDGE", "bridge/secret+key/EXAMPLE", "eu-west-1", "monitoring"
DOC = {"items": [{"v": 1}]}


@pytest.fixture(autouse=True)
def botocore():
    """The verifier: botocore, a test-only dependency (its absence fails CI)."""
    return require_module("botocore")


@pytest.fixture(autouse=True)
def no_aws_environment(monkeypatch):
    """Keys from the developer's environment must not leak into these tests."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)


def target(url: str, sigv4: dict, **settings):
    """One target with an `auth.sigv4` block."""
    block = {"name": "t", "url": url, "timeout": "2s", "retries": {"attempts": 1}, "auth": {"sigv4": sigv4},
             "mappings": [{"each": "items", "level": "service", "metrics": [{"name": "m", "value": "v"}]}], **settings}
    return parse_config(yaml.safe_dump({"targets": [block]})).targets[0]


def keys(**overrides) -> dict:
    return {"region": REGION, "service": SERVICE, "access_key": ACCESS_KEY, "secret_key": SECRET_KEY, **overrides}


def fetch(t) -> object:
    client = TargetClient(t)
    try:
        return client.fetch()
    finally:
        client.close()


def fetch_error(t) -> FetchError:
    with pytest.raises(FetchError) as caught:
        fetch(t)
    return caught.value


@pytest.mark.parametrize("case", SUITE["cases"], ids=[c["name"] for c in SUITE["cases"]])
def test_the_signer_reproduces_the_aws_signature_v4_test_suite(case):
    prepared = requests.Request(
        case["method"], f"https://{SUITE['host']}{case['target']}", headers=case["headers"], data=case["body"] or None
    ).prepare()
    now = datetime.strptime(SUITE["date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    sign(prepared, Credentials(SUITE["access_key"], SUITE["secret_key"], case.get("session_token")), SUITE["region"], SUITE["service"], now)
    assert prepared.headers["Authorization"] == case["authorization"]
    assert prepared.headers["X-Amz-Date"] == SUITE["date"]


SENT = [
    ("GET", {"Action": "GetMetricData", "Version": "2010-08-01"}, None, "/"),
    ("GET", {"filter": "a b+c", "quote": "it's *", "slash": "x/y=z&w", "empty": ""}, None, "/"),
    ("GET", {"name": "Ünïcode ✓", "~tilde": "-._~"}, None, "/path%20with%20space/%C3%BC/"),
    ("GET", {}, None, "/already?b=2&a=1&a=0"),
    ("POST", {}, {"StartTime": "2024-05-01T00:00:00Z", "MetricDataQueries": [{"Id": "q1", "Label": "Ünï"}]}, "/"),
]


@pytest.mark.parametrize("method, params, body, path", SENT, ids=["query-api", "reserved-characters", "unicode-path", "query-in-url", "json-body"])
def test_botocore_accepts_exactly_what_a_target_client_sends(api, method, params, body, path):
    api.routes[path.split("?")[0]] = sigv4_route({ACCESS_KEY: SECRET_KEY}, REGION, SERVICE, Reply(DOC))
    fetched = fetch(target(api.url(path), keys(), method=method, params=params, body=body))
    assert fetched.documents == [DOC]
    request = api.requests[-1]
    assert verify_sigv4(request.method, request_url(request), request.headers, request.body, SECRET_KEY, REGION, SERVICE)
    assert request.headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")


def test_a_wrong_secret_key_is_rejected(api):
    api.routes["/m"] = sigv4_route({ACCESS_KEY: SECRET_KEY}, REGION, SERVICE, Reply(DOC))
    error = fetch_error(target(api.url("/m"), keys(secret_key="not-the-secret-key")))
    assert (error.reason, error.status) == ("http_status", 403)
    request = api.requests[-1]
    assert not verify_sigv4(request.method, request_url(request), request.headers, request.body, SECRET_KEY, REGION, SERVICE)
    assert verify_sigv4(request.method, request_url(request), request.headers, request.body, "not-the-secret-key", REGION, SERVICE)


def test_the_signature_covers_the_body_query_and_headers(api):
    api.routes["/m"] = sigv4_route({ACCESS_KEY: SECRET_KEY}, REGION, SERVICE, Reply(DOC))
    fetch(target(api.url("/m"), keys(), method="POST", params={"a": "1"}, headers={"X-Tenant": "t1"}, body={"n": 1}))
    sent = api.requests[-1]
    url, headers = request_url(sent), sent.headers

    def accepted(method=sent.method, url=url, headers=headers, body=sent.body) -> bool:
        return verify_sigv4(method, url, headers, body, SECRET_KEY, REGION, SERVICE)

    assert accepted()
    assert not accepted(body=sent.body.replace(b"1", b"2"))
    assert not accepted(url=url.replace("a=1", "a=2"))
    assert not accepted(headers={**headers, "x-tenant": "t2"})
    assert not accepted(method="PUT")
    assert not accepted(headers={**headers, "x-amz-date": "20200101T000000Z"})


def test_s3_gets_the_content_hash_header_that_it_requires(api):
    api.routes["/bucket/key"] = sigv4_route({ACCESS_KEY: SECRET_KEY}, REGION, "s3", Reply(DOC))
    fetch(target(api.url("/bucket/key"), keys(service="s3"), method="POST", body={"x": 1}))
    sent = api.requests[-1]
    assert sent.headers["x-amz-content-sha256"] == hashlib.sha256(sent.body).hexdigest()
    assert "x-amz-content-sha256" in sent.headers["authorization"]
    forged = {**sent.headers, "x-amz-content-sha256": hashlib.sha256(b"other").hexdigest()}
    assert not verify_sigv4("POST", request_url(sent), forged, sent.body, SECRET_KEY, REGION, "s3")


def test_a_session_token_is_sent_and_signed(api, tmp_path):
    token_file = tmp_path / "session-token"
    token_file.write_text("FwoGZXIvYXdzEXAMPLETOKEN//==\n")
    api.routes["/m"] = sigv4_route({ACCESS_KEY: SECRET_KEY}, REGION, SERVICE, Reply(DOC), tokens={ACCESS_KEY: "FwoGZXIvYXdzEXAMPLETOKEN//=="})
    fetch(target(api.url("/m"), keys(session_token_file=str(token_file))))
    sent = api.requests[-1]
    assert sent.headers["x-amz-security-token"] == "FwoGZXIvYXdzEXAMPLETOKEN//=="
    assert "x-amz-security-token" in sent.headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert fetch_error(target(api.url("/m"), keys())).status == 403  # the server wants the token


def test_a_rotated_secret_key_file_signs_the_next_request(api, tmp_path):
    secret_file = tmp_path / "secret-key"
    secret_file.write_text(SECRET_KEY + "\n")
    api.routes["/m"] = sigv4_route({ACCESS_KEY: SECRET_KEY}, REGION, SERVICE, Reply(DOC))
    client = TargetClient(target(api.url("/m"), keys(secret_key=None, secret_key_file=str(secret_file))))
    try:
        client.fetch()
        secret_file.write_text("rotated/secret/key\n")
        api.routes["/m"] = sigv4_route({ACCESS_KEY: "rotated/secret/key"}, REGION, SERVICE, Reply(DOC))
        client.fetch()
    finally:
        client.close()


def test_keys_and_region_come_from_the_aws_environment_when_the_block_has_none(api, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFROMENVIRONMENT")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "environment/secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "environment-session-token")
    monkeypatch.setenv("AWS_REGION", "ap-southeast-2")
    api.routes["/m"] = sigv4_route({"AKIAFROMENVIRONMENT": "environment/secret"}, "ap-southeast-2", SERVICE, Reply(DOC),
                                   tokens={"AKIAFROMENVIRONMENT": "environment-session-token"})
    fetch(target(api.url("/m"), {"service": SERVICE}))
    assert "/ap-southeast-2/monitoring/aws4_request" in api.requests[-1].headers["authorization"]


def test_no_keys_anywhere_fails_the_poll_with_reason_auth(api):
    api.routes["/m"] = Reply(DOC)
    error = fetch_error(target(api.url("/m"), {"service": SERVICE, "region": REGION}))
    assert error.reason == "auth" and "no AWS credentials" in str(error)
    assert api.requests == []


@pytest.fixture
def sts():
    """A loopback STS that lets ACCESS_KEY / SECRET_KEY assume ROLE; its temporary keys live `duration` seconds."""
    role = "arn:aws:iam::123456789012:role/metrics-reader"
    server = FakeAPI()
    service = LoopbackSTS({ACCESS_KEY: SECRET_KEY}, REGION, role)
    server.routes["/"] = service.route
    server.start()
    service.url = server.url("/")  # type: ignore[attr-defined]
    yield service
    server.close()


def role_protected(api: FakeAPI, sts: LoopbackSTS) -> str:
    """An API route that accepts only the temporary keys the loopback STS issued, with their session tokens."""
    api.routes["/m"] = lambda request: sigv4_route(sts.temporary_keys(), REGION, SERVICE, Reply(DOC), tokens=sts.temporary_tokens())(request)
    return api.url("/m")


def test_a_role_is_assumed_once_and_its_temporary_keys_sign_every_request(api, sts):
    t = target(role_protected(api, sts), keys(role_arn=sts.role_arn, sts_endpoint=sts.url))
    client = TargetClient(t)
    try:
        for _ in range(3):
            client.fetch()
    finally:
        client.close()
    assert sts.calls == 1 and len(sts.issued) == 1
    (temporary,) = sts.issued
    assert all(f"Credential={temporary}/" in r.headers["authorization"] for r in api.requests) and len(api.requests) == 3
    # The base keys alone are not what the API accepts.
    assert fetch_error(target(api.url("/m"), keys())).status == 403


def test_assumed_keys_are_renewed_shortly_before_they_expire(api, sts):
    sts.duration = 3
    client = TargetClient(target(role_protected(api, sts), keys(role_arn=sts.role_arn, sts_endpoint=sts.url)))
    try:
        client.fetch()
        wait_until(lambda: client.fetch() and sts.calls == 2, timeout=6)
    finally:
        client.close()
    assert len(sts.issued) == 2


def test_a_refused_role_fails_the_poll_with_reason_auth(api, sts):
    error = fetch_error(target(role_protected(api, sts), keys(role_arn="arn:aws:iam::123456789012:role/other", sts_endpoint=sts.url)))
    assert error.reason == "auth"
    assert str(error) == "STS AssumeRole failed: HTTP 403 (AccessDenied not authorized to perform: sts:AssumeRole)"
    assert api.requests == []


def test_the_sts_request_is_signed_with_the_base_keys(api, sts):
    error = fetch_error(target(role_protected(api, sts), keys(secret_key="wrong", role_arn=sts.role_arn, sts_endpoint=sts.url)))
    assert error.reason == "auth" and "InvalidClientTokenId" in str(error)
    assert sts.calls == 1 and sts.issued == {}


def test_the_temporary_keys_are_known_secrets_of_the_target(api, sts):
    client = TargetClient(target(role_protected(api, sts), keys(role_arn=sts.role_arn, sts_endpoint=sts.url)))
    try:
        client.fetch()
        (secret, token), = sts.issued.values()
        shown = client.redactor.redact(f"{SECRET_KEY} {secret} {token}")
    finally:
        client.close()
    assert shown == "<redacted> <redacted> <redacted>"


@pytest.mark.parametrize(
    "block, problem",
    [
        ({"service": SERVICE, "region": REGION, "access_key": ACCESS_KEY}, "access_key needs secret_key or secret_key_file"),
        ({"service": SERVICE, "region": REGION, "secret_key": SECRET_KEY}, "secret_key and session_token need access_key"),
        ({"service": SERVICE, "region": REGION, "access_key": ACCESS_KEY, "secret_key": "a", "secret_key_file": "/dev/null"}, "set secret_key or secret_key_file, not both"),
        ({"service": SERVICE}, "set region (or the AWS_REGION environment variable)"),
        ({"region": REGION}, "sigv4.service: required key missing"),
        ({"service": "CloudWatch", "region": REGION}, "'CloudWatch': use lower-case letters"),
        ({"service": SERVICE, "region": REGION, "sts_endpoint": "http://127.0.0.1/"}, "sts_endpoint needs role_arn"),
    ],
    ids=["no-secret", "no-access-key", "two-secrets", "no-region", "no-service", "bad-service", "sts-without-role"],
)
def test_a_bad_sigv4_block_is_a_config_error_with_its_key_path(block, problem):
    with pytest.raises(ConfigError) as caught:
        target("http://127.0.0.1/m", block)
    assert "targets[0].auth.sigv4" in str(caught.value) and problem in str(caught.value)
