"""OAuth2 client credentials: one token per lifetime for every poll, page and thread of a target, fetched within the
poll's deadline, refreshed before it expires; every failed fetch fails the poll with reason `auth`.

Real loopback servers throughout: `OAuth2TokenServer` (tests/signatures.py) checks the client and issues tokens,
and a `FakeAPI` route accepts only the tokens it issued.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time

import pytest
import trustme
import yaml

from exporter.client import FetchError, TargetClient
from exporter.config import ConfigError, parse_config

from fakeapi import FakeAPI, Reply, wait_until
from signatures import OAuth2TokenServer

CLIENT_ID, CLIENT_SECRET = "bridge-client", "s3cr3t-client-value"
DOC = {"items": [{"v": 1}], "total": 3}


@pytest.fixture
def tokens():
    """A token endpoint for CLIENT_ID / CLIENT_SECRET issuing one-hour tokens."""
    server = OAuth2TokenServer(CLIENT_ID, CLIENT_SECRET).start()
    yield server
    server.close()


def target(url: str, oauth2: dict, **settings):
    """One target with an `auth.oauth2` block."""
    block = {"name": "t", "url": url, "timeout": "2s", "retries": {"attempts": 1}, "auth": {"oauth2": oauth2},
             "mappings": [{"each": "items", "level": "service", "metrics": [{"name": "m", "value": "v"}]}], **settings}
    return parse_config(yaml.safe_dump({"targets": [block]})).targets[0]


def oauth2(server: OAuth2TokenServer, **overrides) -> dict:
    return {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "token_url": server.token_url, **overrides}


def protected(api: FakeAPI, server: OAuth2TokenServer, path: str = "/m", doc=DOC) -> str:
    """An API route that answers only to a live token of `server`."""
    api.routes[path] = server.bearer_route(Reply(doc))
    return api.url(path)


def auth_error(client: TargetClient) -> FetchError:
    with pytest.raises(FetchError) as caught:
        client.fetch()
    assert caught.value.reason == "auth"
    return caught.value


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_one_token_serves_every_page_of_every_poll(api, tokens):
    pages = {"type": "page_number", "page_param": "page", "total_pages_path": "total", "first_page": 1}
    client = TargetClient(target(protected(api, tokens), oauth2(tokens), pagination=pages))
    try:
        for _ in range(3):
            assert len(client.fetch().documents) == 3
    finally:
        client.close()
    assert tokens.requests == 1 and len(tokens.issued) == 1
    sent = {r.headers["authorization"] for r in api.requests}
    assert sent == {f"Bearer {tokens.issued[0].value}"} and len(api.requests) == 9


def test_concurrent_requests_of_a_target_wait_for_one_token_fetch(api, tokens):
    original = tokens.api.routes["/token"]

    def slow_token(request):  # a slow answer, so that every thread asks while the one fetch is under way
        reply = original(request)
        tokens.api.release.wait(0.3)
        return reply

    tokens.api.routes["/token"] = slow_token
    client = TargetClient(target(protected(api, tokens), oauth2(tokens)))
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(client.fetch())) for _ in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    finally:
        client.close()
    assert len(results) == 8
    assert tokens.requests == 1
    assert all(tokens.accepts(r.headers["authorization"]) for r in api.requests) and len(api.requests) == 8


def test_a_token_is_refreshed_shortly_before_it_expires(api):
    server = OAuth2TokenServer(CLIENT_ID, CLIENT_SECRET, expires_in=1).start()
    client = TargetClient(target(protected(api, server), oauth2(server)))
    try:
        client.fetch()
        assert len(server.issued) == 1
        # Polls keep succeeding; a second token comes once half of the one-second lifetime has passed, never a third.
        wait_until(lambda: client.fetch() and len(server.issued) == 2, timeout=5)
    finally:
        client.close()
        server.close()
    first, second = server.issued
    # Half the lifetime after the first request was sent (the cache counts from then, to be safe), as the token
    # server saw it: the first request's transit can make that a millisecond or so under 0.5 s.
    assert second.issued_at - first.issued_at >= 0.45
    assert second.issued_at < first.expires_at  # renewed before the first one expired


def test_scopes_are_joined_by_spaces_and_endpoint_params_join_the_form(api, tokens):
    settings = oauth2(tokens, scopes=["metrics.read", "https://monitor.azure.com/.default"], endpoint_params={"audience": "api://metrics", "resource": "x"})
    client = TargetClient(target(protected(api, tokens), settings))
    try:
        client.fetch()
    finally:
        client.close()
    assert tokens.forms == [{
        "grant_type": "client_credentials", "scope": "metrics.read https://monitor.azure.com/.default",
        "audience": "api://metrics", "resource": "x",
    }]


def test_client_credentials_go_in_the_form_when_the_endpoint_refuses_basic_auth(api):
    server = OAuth2TokenServer(CLIENT_ID, CLIENT_SECRET, expires_in=1, client_auth="params").start()
    client = TargetClient(target(protected(api, server), oauth2(server)))
    try:
        client.fetch()
        assert server.requests == 2  # basic refused with 401, then the form
        wait_until(lambda: client.fetch() and len(server.issued) == 2, timeout=5)
    finally:
        client.close()
        server.close()
    assert server.requests == 3  # the style that worked is kept: the renewal needed one request
    assert server.forms[-1]["client_id"] == CLIENT_ID and server.forms[-1]["client_secret"] == CLIENT_SECRET


def test_a_wrong_client_secret_is_rejected_and_fails_the_poll_with_reason_auth(api, tokens):
    client = TargetClient(target(protected(api, tokens), oauth2(tokens, client_secret="not-the-secret")))
    try:
        error = auth_error(client)
    finally:
        client.close()
    assert str(error) == "token request failed: HTTP 401 (invalid_client client authentication failed)"
    assert tokens.issued == [] and api.requests == []


@pytest.mark.parametrize(
    "answer, message",
    [
        (Reply({"error": "temporarily_unavailable"}, status=503), "token request failed: HTTP 503 (temporarily_unavailable)"),
        (Reply("<html>sign in</html>", headers={"Content-Type": "text/html"}), "token request failed: the token endpoint's answer is not a JSON object"),
        (Reply({"token_type": "Bearer", "expires_in": 3600}), "token request failed: the answer has no access_token"),
        (Reply({"access_token": "x" * 300_000}), r"answer exceeds 262144 bytes"),
        (Reply(b"", status=302, headers={"Location": "http://127.0.0.1:1/elsewhere"}), "token request failed: HTTP 302"),
    ],
    ids=["http-503", "not-json", "no-access-token", "too-large", "redirect-not-followed"],
)
def test_a_failed_token_fetch_fails_the_poll_with_reason_auth(api, tokens, answer, message):
    tokens.answer = answer
    client = TargetClient(target(protected(api, tokens), oauth2(tokens)))
    try:
        error = auth_error(client)
    finally:
        client.close()
    assert message in str(error)
    assert api.requests == []  # the API is never asked without a token


def test_an_unreachable_token_endpoint_fails_the_poll_with_reason_auth(api):
    url = f"http://127.0.0.1:{closed_port()}/token"
    client = TargetClient(target(api.url("/m"), {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "token_url": url}))
    try:
        error = auth_error(client)
    finally:
        client.close()
    assert str(error).startswith(f"token request to {url} failed: ") and "refused" in str(error).lower()


def test_a_slow_token_endpoint_fails_the_poll_within_its_deadline(api, tokens):
    tokens.answer = Reply({"access_token": "late"}, delay=30)
    client = TargetClient(target(protected(api, tokens), oauth2(tokens), timeout="0.5s"))
    started = time.monotonic()
    try:
        error = auth_error(client)
    finally:
        client.close()
        tokens.api.release.set()
    assert time.monotonic() - started < 1.5
    assert "timed out" in str(error)


def test_a_rotated_client_secret_file_gets_a_new_token_at_the_next_request(api, tmp_path, tokens):
    secret_file = tmp_path / "client-secret"
    secret_file.write_text(CLIENT_SECRET + "\n")
    settings = {"client_id": CLIENT_ID, "client_secret_file": str(secret_file), "token_url": tokens.token_url}
    client = TargetClient(target(protected(api, tokens), settings))
    try:
        client.fetch()
        client.fetch()
        assert tokens.requests == 1
        tokens.client_secret = "rotated-client-secret"
        secret_file.write_text("rotated-client-secret\n")
        client.fetch()
    finally:
        client.close()
    assert tokens.requests == 2 and len(tokens.issued) == 2
    assert api.requests[-1].headers["authorization"] == f"Bearer {tokens.issued[1].value}"


def test_a_token_the_api_rejects_is_replaced_at_the_next_poll(api, tokens):
    client = TargetClient(target(protected(api, tokens), oauth2(tokens)))
    try:
        client.fetch()
        tokens.issued.clear()  # the identity provider revoked it
        with pytest.raises(FetchError) as caught:
            client.fetch()
        assert (caught.value.reason, caught.value.status) == ("http_status", 401)
        client.fetch()
    finally:
        client.close()
    assert tokens.requests == 2 and len(tokens.issued) == 1


def test_the_token_request_uses_the_targets_tls_settings(api, tmp_path):
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = OAuth2TokenServer(CLIENT_ID, CLIENT_SECRET)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server.api.httpd.socket = context.wrap_socket(server.api.httpd.socket, server_side=True, do_handshake_on_connect=False)
    server.api.httpd.handle_error = lambda request, address: None
    server.start()
    settings = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "token_url": server.token_url.replace("http://", "https://")}
    trusting = TargetClient(target(protected(api, server), settings, tls={"ca_file": str(ca_file)}))
    distrusting = TargetClient(target(protected(api, server), settings))
    try:
        trusting.fetch()
        error = auth_error(distrusting)
    finally:
        trusting.close()
        distrusting.close()
        server.close()
    assert len(server.issued) == 1
    assert "TLS handshake failed" in str(error) and "CERTIFICATE_VERIFY_FAILED" in str(error)


def test_the_client_secret_and_the_token_are_known_secrets_of_the_target(api, tokens):
    client = TargetClient(target(protected(api, tokens), oauth2(tokens)))
    try:
        client.fetch()
        shown = client.redactor.redact(f"echo {CLIENT_SECRET} and {tokens.issued[0].value}")
    finally:
        client.close()
    assert shown == "echo <redacted> and <redacted>"


@pytest.mark.parametrize(
    "block, problem",
    [
        ({"client_id": "c", "token_url": "http://127.0.0.1/t"}, "set exactly one of client_secret, client_secret_file"),
        ({"client_id": "c", "client_secret": "s", "client_secret_file": "/dev/null", "token_url": "http://127.0.0.1/t"}, "set exactly one of client_secret, client_secret_file"),
        ({"client_id": "c", "client_secret": "s", "token_url": "ftp://127.0.0.1/t"}, "oauth2.token_url: must be an http:// or https:// URL"),
        ({"client_id": "c", "client_secret": "s", "token_url": "http://127.0.0.1/t", "scopes": ["a"], "endpoint_params": {"scope": "b"}}, "endpoint_params cannot set scope when scopes is set"),
        ({"client_id": "c", "client_secret": "s", "token_url": "http://127.0.0.1/t", "scope": "a"}, "oauth2.scope: unknown key"),
    ],
    ids=["no-secret", "two-secrets", "not-http", "scope-twice", "misspelt-key"],
)
def test_a_bad_oauth2_block_is_a_config_error_with_its_key_path(block, problem):
    with pytest.raises(ConfigError) as caught:
        target("http://127.0.0.1/m", block)
    assert "targets[0].auth.oauth2" in str(caught.value) and problem in str(caught.value)
