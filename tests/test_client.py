"""Client: requests as configured, a deadline over the whole poll, retries, a size cap, pagination, typed errors."""

import socket
import threading
import time
from urllib.parse import urlsplit

import orjson
import pytest
from requests import PreparedRequest
from requests.auth import AuthBase

from exporter.client import MAX_REDIRECTS, FetchError, Redactor, TargetClient
from exporter.config import parse_config

from fakeapi import FakeAPI, Reply


def make_target(url: str, extra: str = "", name: str = "t"):
    text = f"""
targets:
  - name: {name}
    url: {url}
{extra}
    mappings:
      - level: service
        metrics: [{{name: m, value: v}}]
"""
    return parse_config(text).targets[0]


def client_for(api, extra: str = "", path: str = "/m") -> TargetClient:
    return TargetClient(make_target(api.url(path), extra))


def fetch_error(client: TargetClient) -> FetchError:
    with pytest.raises(FetchError) as caught:
        client.fetch()
    return caught.value


def test_a_get_sends_params_headers_and_a_bearer_token_from_a_file(api, tmp_path):
    token = tmp_path / "token"
    token.write_text("tok-123\n")
    api.routes["/m"] = Reply({"v": 1})
    client = client_for(api, f"    params: {{metric_type: pod, pod_name: p-1}}\n    headers: {{X-Tenant: ml}}\n    auth: {{bearer_token_file: {token}}}")
    result = client.fetch()
    assert result.documents == [{"v": 1}]
    (request,) = api.requests
    assert request.query == {"metric_type": "pod", "pod_name": "p-1"}
    assert request.headers["x-tenant"] == "ml"
    assert request.headers["authorization"] == "Bearer tok-123"
    assert request.headers["user-agent"].startswith("metrics-bridge/")


def test_a_rotated_token_file_is_read_again_on_the_next_poll(api, tmp_path):
    token = tmp_path / "token"
    token.write_text("first")
    api.routes["/m"] = Reply({"v": 1})
    client = client_for(api, f"    auth: {{bearer_token_file: {token}}}")
    client.fetch()
    token.write_text("second")
    client.fetch()
    assert [r.headers["authorization"] for r in api.requests] == ["Bearer first", "Bearer second"]


def test_basic_auth_and_api_key_headers_are_sent(api, tmp_path):
    api.routes["/m"] = Reply({"v": 1})
    client_for(api, "    auth: {basic: {username: u, password: pw}}").fetch()
    client_for(api, "    auth: {api_key: {header: X-Key, value: k-9}}").fetch()
    assert api.requests[0].headers["authorization"] == "Basic dTpwdw=="
    assert api.requests[1].headers["x-key"] == "k-9"


def test_a_post_sends_its_json_body(api):
    api.routes["/m"] = Reply({"v": 1})
    client_for(api, "    method: post\n    body: {query: gpu, window: 60}").fetch()
    (request,) = api.requests
    assert request.method == "POST"
    assert orjson.loads(request.body) == {"query": "gpu", "window": 60}


def test_get_metrics_adds_the_classic_query_parameters_and_returns_parsed_json(api):
    api.routes["/m"] = Reply({"pods": [{"name": "p-1"}]})
    document = client_for(api).get_metrics(metric_type="container", pod_name="p-1", container_name="c")
    assert document == {"pods": [{"name": "p-1"}]}
    assert api.requests[0].query == {"metric_type": "container", "pod_name": "p-1", "container_name": "c"}


def test_5xx_is_retried_until_success(api):
    replies = iter([Reply(status=503), Reply(status=502), Reply({"v": 2})])
    api.routes["/m"] = lambda request: next(replies)
    result = client_for(api, "    retries: {attempts: 3, backoff: 0.01}").fetch()
    assert result.documents == [{"v": 2}]
    assert result.attempts == 3


def test_429_honours_retry_after(api):
    replies = iter([Reply(status=429, headers={"Retry-After": "0"}), Reply({"v": 3})])
    api.routes["/m"] = lambda request: next(replies)
    assert client_for(api, "    retries: {attempts: 2, backoff: 5s}").fetch().documents == [{"v": 3}]


def test_a_retry_after_beyond_the_deadline_gives_up_at_once(api):
    api.routes["/m"] = Reply(status=429, headers={"Retry-After": "120"})
    started = time.monotonic()
    error = fetch_error(client_for(api, "    timeout: 2s\n    retries: {attempts: 5}"))
    assert (error.reason, error.status) == ("http_status", 429)
    assert time.monotonic() - started < 2
    assert len(api.requests) == 1


def test_4xx_is_not_retried(api):
    api.routes["/m"] = Reply(status=403)
    error = fetch_error(client_for(api, "    retries: {attempts: 3, backoff: 0.01}"))
    assert (error.reason, str(error)) == ("http_status", "HTTP 403 Forbidden")
    assert len(api.requests) == 1


def test_accepted_status_codes_are_configurable(api):
    api.routes["/m"] = Reply({"v": 1}, status=203)
    assert client_for(api, "    accept_status: [200, 203]").fetch().documents == [{"v": 1}]


def test_connection_refused_is_a_connection_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = TargetClient(make_target(f"http://127.0.0.1:{port}/m", "    retries: {attempts: 1}"))
    error = fetch_error(client)
    assert error.reason == "connection"
    assert "refused" in str(error).lower()


def test_a_slow_answer_is_a_timeout(api):
    api.routes["/m"] = Reply({"v": 1}, delay=5)
    error = fetch_error(client_for(api, "    timeout: 0.3s\n    retries: {attempts: 1}"))
    assert error.reason == "timeout"


def test_a_body_that_drips_past_the_deadline_is_a_timeout(api):
    api.routes["/m"] = Reply(b'{"v": "' + b"x" * 400 + b'"}', drip_interval=0.02)
    started = time.monotonic()
    error = fetch_error(client_for(api, "    timeout: 0.5s\n    retries: {attempts: 1}"))
    assert error.reason == "timeout"
    assert time.monotonic() - started < 3


def test_a_declared_length_over_the_cap_is_refused_before_reading(api):
    api.routes["/m"] = Reply(b"[" + b"1," * 1000 + b"1]")
    error = fetch_error(client_for(api, "    max_response_bytes: 1000"))
    assert error.reason == "too_large"
    assert "Content-Length" in str(error)


def test_a_body_without_length_is_cut_off_at_the_cap_while_streaming(api):
    api.routes["/m"] = Reply(b"[" + b"1," * 100_000 + b"1]", content_length=-1)
    error = fetch_error(client_for(api, "    max_response_bytes: 64KiB"))
    assert error.reason == "too_large"
    assert "while streaming" in str(error)


@pytest.mark.parametrize(
    "body, content_type, expected",
    [(b"<html>oops</html>", "text/html", "content-type text/html"), (b"", "application/json", "empty response body"),
     (b'{"v": [1, 2', "application/json", "not valid JSON"), (b'{"v": "\xff"}', "application/json", "not valid JSON")],
)
def test_bodies_that_are_not_json_are_invalid_json(api, body, content_type, expected):
    api.routes["/m"] = Reply(body, headers={"Content-Type": content_type})
    error = fetch_error(client_for(api))
    assert error.reason == "invalid_json"
    assert expected in str(error)


def test_nan_and_infinity_literals_are_read(api):
    api.routes["/m"] = Reply(b'{"a": NaN, "b": Infinity, "c": -Infinity}')
    document = client_for(api).fetch().documents[0]
    assert document["b"] == float("inf") and document["c"] == float("-inf") and document["a"] != document["a"]


def test_next_token_pagination_sends_the_token_back_until_there_is_none(api):
    pages = {None: {"items": [1], "next": "p2"}, "p2": {"items": [2], "next": "p3"}, "p3": {"items": [3], "next": ""}}
    api.routes["/m"] = lambda request: Reply(pages[request.query.get("token")])
    result = client_for(api, "    pagination: {type: next_token, next_token_path: next, token_param: token}").fetch()
    assert [d["items"] for d in result.documents] == [[1], [2], [3]]


def test_next_token_pagination_can_send_the_token_in_a_post_body(api):
    import orjson

    pages = {None: {"next": "t2"}, "t2": {"next": None}}
    api.routes["/m"] = lambda request: Reply(pages[orjson.loads(request.body or b"{}").get("NextToken")])
    client = client_for(api, "    method: POST\n    body: {Namespace: acs}\n    pagination: {type: next_token, next_token_path: next, token_body_field: NextToken}")
    assert len(client.fetch().documents) == 2
    assert orjson.loads(api.requests[1].body) == {"Namespace": "acs", "NextToken": "t2"}


def test_a_token_returned_twice_is_a_pagination_loop(api):
    api.routes["/m"] = Reply({"next": "same"})
    error = fetch_error(client_for(api, "    pagination: {type: next_token, next_token_path: next, token_param: t}"))
    assert error.reason == "pagination"
    assert "loop" in str(error)
    assert len(api.requests) == 2


def test_page_number_pagination_stops_at_the_reported_total(api):
    api.routes["/m"] = lambda request: Reply({"page": int(request.query["page"]), "pages": 3, "items": [1]})
    result = client_for(api, "    pagination: {type: page_number, total_pages_path: pages}").fetch()
    assert [d["page"] for d in result.documents] == [1, 2, 3]


def test_page_number_pagination_can_count_items_against_a_total(api):
    api.routes["/m"] = lambda request: Reply({"total": 5, "items": [1, 2] if request.query["p"] != "2" else [5]})
    client = client_for(api, "    pagination: {type: page_number, page_param: p, first_page: 0, total_items_path: total, items_path: items}")
    assert [r.query["p"] for r in (client.fetch(), api.requests)[1]] == ["0", "1", "2"]


def test_link_header_pagination_follows_rel_next(api):
    api.routes["/m"] = Reply({"n": 1}, headers={"Link": '</m2?cursor=abc>; rel="next"'})
    api.routes["/m2"] = Reply({"n": 2})
    result = client_for(api, "    pagination: {type: link_header}").fetch()
    assert [d["n"] for d in result.documents] == [1, 2]
    assert api.requests[1].query == {"cursor": "abc"}


def test_more_pages_than_max_pages_fail_the_poll(api):
    api.routes["/m"] = lambda request: Reply({"next": str(len(api.requests))})
    error = fetch_error(client_for(api, "    pagination: {type: next_token, next_token_path: next, token_param: t, max_pages: 3}"))
    assert error.reason == "pagination"
    assert len(api.requests) == 3


def test_the_deadline_covers_every_page(api):
    api.routes["/m"] = lambda request: Reply({"next": str(len(api.requests))}, delay=0.15)
    error = fetch_error(client_for(api, "    timeout: 0.5s\n    pagination: {type: next_token, next_token_path: next, token_param: t}"))
    assert error.reason == "timeout"
    assert 2 <= len(api.requests) <= 5


def test_the_api_date_header_is_recorded_for_clock_skew(api):
    api.routes["/m"] = Reply({"v": 1})
    result = client_for(api).fetch()
    assert result.api_date is not None and abs(result.api_date - result.received_at) < 5


def test_errors_and_the_shown_url_never_contain_secrets(api):
    target = make_target(
        "http://user:hunter22@127.0.0.1:1/m?api_key=qs-secret-1&page=2",
        "    params: {token: param-secret-2, region: eu}\n    auth: {bearer_token: bearer-secret-3}\n    retries: {attempts: 1}",
    )
    client = TargetClient(target)
    error = fetch_error(client)
    shown = Redactor(target).url()
    for secret in ("hunter22", "qs-secret-1", "param-secret-2", "bearer-secret-3"):
        assert secret not in str(error)
        assert secret not in shown
    assert "region=eu" in shown and "page=2" in shown


def test_urllib3_debug_logs_never_show_query_strings_even_for_embedders(api, caplog):
    api.routes["/m"] = Reply({"v": 1})
    with caplog.at_level("DEBUG"):
        client_for(api, "    params: {sig: query-secret-77}").fetch()
    assert '"GET /m?<redacted> HTTP/1.1" 200' in caplog.text
    assert "query-secret-77" not in caplog.text


# Redirects: followed by the client itself, under the poll's byte cap and deadline, credentials kept at home.


class PathSigner(AuthBase):
    """Signs the exact request it is handed, as the cloud signers do: the header names the path it signed."""

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        request.headers["X-Signed-Path"] = urlsplit(request.url).path
        return request


def test_a_same_origin_redirect_is_followed_and_each_hop_is_signed_again(api):
    api.routes["/m"] = Reply(status=302, headers={"Location": "/moved?x=1"})
    api.routes["/moved"] = Reply({"v": 7})
    client = client_for(api, "    headers: {X-Tenant: ml}\n    auth: {api_key: {header: X-Key, value: key-1}}")
    api_key = client.auth
    client.auth = type("Both", (AuthBase,), {"__call__": lambda self, r: PathSigner()(api_key(r))})()
    assert client.fetch().documents == [{"v": 7}]
    first, second = api.requests
    assert (second.path, second.query) == ("/moved", {"x": "1"})
    assert [r.headers["x-signed-path"] for r in api.requests] == ["/m", "/moved"]
    assert second.headers["x-key"] == "key-1" and second.headers["x-tenant"] == "ml"


def test_a_redirect_to_another_origin_gets_no_credentials_and_only_safe_headers(api, tmp_path):
    other = FakeAPI().start()
    try:
        other.routes["/elsewhere"] = Reply({"v": 1})
        api.routes["/m"] = Reply(status=302, headers={"Location": other.url("/elsewhere")})
        token = tmp_path / "token"
        token.write_text("bearer-secret-9")
        for auth in ("{api_key: {header: X-Key, value: key-secret-8}}", f"{{bearer_token_file: {token}}}"):
            extra = f"    headers: {{X-Tenant-Hash: hdr-secret-7, Accept: application/vnd.x+json}}\n    safe_headers: [accept]\n    auth: {auth}"
            assert client_for(api, extra).fetch().documents == [{"v": 1}]
        assert [r.headers["x-key"] for r in api.requests[:1]] == ["key-secret-8"]
        assert len(other.requests) == 2
        for request in other.requests:
            received = " ".join(f"{k}: {v}" for k, v in request.headers.items())
            for secret in ("key-secret-8", "bearer-secret-9", "hdr-secret-7"):
                assert secret not in received
            assert "authorization" not in request.headers and "x-key" not in request.headers
            assert request.headers["accept"] == "application/vnd.x+json"
    finally:
        other.close()


def test_a_scheme_or_port_change_is_another_origin(api):
    same_host_other_port = FakeAPI().start()
    try:
        same_host_other_port.routes["/m"] = Reply({"v": 1})
        api.routes["/m"] = Reply(status=307, headers={"Location": same_host_other_port.url("/m")})
        client_for(api, "    auth: {basic: {username: u, password: pw-secret}}").fetch()
        (request,) = same_host_other_port.requests
        assert "authorization" not in request.headers
    finally:
        same_host_other_port.close()


def test_the_url_password_goes_along_a_same_origin_redirect_only(api):
    port = api.httpd.server_address[1]
    api.routes["/m"] = Reply(status=301, headers={"Location": f"http://127.0.0.1:{port}/n"})
    api.routes["/n"] = Reply({"v": 1})
    client = TargetClient(make_target(f"http://u:pw@127.0.0.1:{port}/m"))
    client.fetch()
    assert [r.headers.get("authorization") for r in api.requests] == ["Basic dTpwdw=="] * 2


def test_a_redirect_loop_stops_at_the_hop_limit_as_http_status_and_is_not_retried(api):
    api.routes["/m"] = Reply(status=302, headers={"Location": "/n"})
    api.routes["/n"] = Reply(status=302, headers={"Location": "/m"})
    error = fetch_error(client_for(api, "    retries: {attempts: 3, backoff: 0.01}"))
    assert (error.reason, error.status) == ("http_status", 302)
    assert str(error) == f"stopped after {MAX_REDIRECTS} redirects (the last: HTTP 302)"
    assert len(api.requests) == MAX_REDIRECTS == 10


def test_nine_redirects_in_a_row_are_followed(api):
    for hop in range(9):
        api.routes[f"/r{hop}"] = Reply(status=308, headers={"Location": f"/r{hop + 1}"})
    api.routes["/r9"] = Reply({"v": 9})
    assert client_for(api, path="/r0").fetch().documents == [{"v": 9}]
    assert len(api.requests) == 10


def test_with_follow_redirects_false_a_redirect_is_an_http_status_failure(api):
    api.routes["/m"] = Reply(b"moved", status=302, headers={"Location": "/n"})
    api.routes["/n"] = Reply({"v": 1})
    error = fetch_error(client_for(api, "    follow_redirects: false\n    retries: {attempts: 3}"))
    assert (error.reason, str(error)) == ("http_status", "HTTP 302 Found")
    assert [r.path for r in api.requests] == ["/m"]


@pytest.mark.parametrize("status, kept", [(301, False), (302, False), (303, False), (307, True), (308, True)])
def test_a_redirected_post_becomes_a_get_except_after_307_and_308(api, status, kept):
    api.routes["/m"] = Reply(status=status, headers={"Location": "/n"})
    api.routes["/n"] = Reply({"v": 1})
    client_for(api, "    method: post\n    body: {q: 1}").fetch()
    first, second = api.requests
    assert orjson.loads(first.body) == {"q": 1}
    assert (second.method, second.body) == (("POST", first.body) if kept else ("GET", b""))


def test_a_redirect_to_a_url_that_is_not_http_fails_as_http_status(api):
    api.routes["/m"] = Reply(status=302, headers={"Location": "file:///etc/passwd"})
    error = fetch_error(client_for(api))
    assert (error.reason, str(error)) == ("http_status", "HTTP 302 redirects to a URL that is not http(s)")


def test_a_redirect_body_is_never_read(api):
    """A 302 whose body drips at 1 byte a second: the client follows it at once instead of waiting for the body."""
    api.routes["/m"] = Reply(b"x" * 100, status=302, headers={"Location": "/n"}, drip_interval=1)
    api.routes["/n"] = Reply({"v": 1})
    started = time.monotonic()
    assert client_for(api, "    timeout: 3s").fetch().documents == [{"v": 1}]
    assert time.monotonic() - started < 1


def test_a_redirect_to_a_dripping_body_fails_within_the_deadline(api):
    api.routes["/m"] = Reply(b"x" * 100, status=302, headers={"Location": "/n"}, drip_interval=0.5)
    api.routes["/n"] = Reply(b'{"v": "' + b"x" * 100 + b'"}', drip_interval=0.5)
    started = time.monotonic()
    error = fetch_error(client_for(api, "    timeout: 1s\n    retries: {attempts: 1}"))
    assert (error.reason, str(error)) == ("timeout", "body still arriving after 1s")
    assert time.monotonic() - started < 1.5


# The deadline holds whatever the socket does.


def test_a_body_dripped_just_inside_each_read_timeout_fails_at_the_deadline(api):
    """One byte every 0.9 s against a 1 s timeout: no single read times out, the poll must still end by 1.5 s."""
    api.routes["/m"] = Reply(b'{"v": 1}', drip_interval=0.9)
    started = time.monotonic()
    error = fetch_error(client_for(api, "    timeout: 1s\n    retries: {attempts: 1}"))
    elapsed = time.monotonic() - started
    assert error.reason == "timeout"
    assert 0.9 < elapsed < 1.5


def drip_head_server(interval: float):
    """A raw loopback server that answers a status line and then one header line every `interval` seconds."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def answer() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            try:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\n")
                while not stop.wait(interval):
                    conn.sendall(b"X-Drip: 1\r\n")
            except OSError:
                pass

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return listener, stop


def test_headers_dripped_just_inside_each_read_timeout_fail_at_the_deadline():
    listener, stop = drip_head_server(0.4)
    try:
        client = TargetClient(make_target(f"http://127.0.0.1:{listener.getsockname()[1]}/m", "    timeout: 1s\n    retries: {attempts: 1}"))
        started = time.monotonic()
        error = fetch_error(client)
        assert (error.reason, str(error)) == ("timeout", "no answer within 1s (read timeout)")
        assert time.monotonic() - started < 1.5
    finally:
        stop.set()
        listener.close()


# One byte cap for the whole poll.


def test_pages_each_under_the_cap_but_over_it_together_are_too_large(api):
    page = {"items": ["x" * 150], "next": None}
    api.routes["/m"] = lambda request: Reply({**page, "next": str(int(request.query.get("t", "0")) + 1)})
    error = fetch_error(client_for(api, "    max_response_bytes: 1000\n    pagination: {type: next_token, next_token_path: next, token_param: t}"))
    assert error.reason == "too_large"
    assert str(error).startswith("Content-Length 17") and "exceeds max_response_bytes (1000), counting the " in str(error)
    assert 5 <= len(api.requests) <= 7


def test_the_cap_counts_decoded_bytes(api):
    import gzip

    api.routes["/m"] = Reply(gzip.compress(b'{"v": "' + b"x" * 5000 + b'"}'), headers={"Content-Encoding": "gzip"})
    error = fetch_error(client_for(api, "    max_response_bytes: 4000"))
    assert (error.reason, str(error)) == ("too_large", "response exceeds max_response_bytes (4000) while streaming")


# Secrets: every message is redacted in one place, whoever wrote the secret into it.


def test_header_values_are_secrets_unless_listed_as_safe():
    target = make_target("http://127.0.0.1:1/m", "    headers: {X-Tenant: tenant-secret-1, X-Source: bridge-01}\n    safe_headers: [x-source]")
    redactor = Redactor(target)
    assert redactor.redact("tenant-secret-1 from bridge-01") == "<redacted> from bridge-01"


def test_a_secret_is_masked_url_encoded_and_base64_encoded_too():
    import base64

    target = make_target("http://127.0.0.1:1/m", "    auth: {bearer_token: 'a+b/c=d e'}")
    redactor = Redactor(target)
    encoded = base64.b64encode(b"a+b/c=d e").decode()
    assert redactor.redact(f"a+b/c=d e | a%2Bb%2Fc%3Dd%20e | a%2Bb%2Fc%3Dd+e | {encoded}") == " | ".join(["<redacted>"] * 4)


def test_secret_looking_query_values_and_passwords_are_masked_in_any_url():
    redactor = Redactor(make_target("http://127.0.0.1:1/m", "    secret_params: [cursor]"))
    text = "Failed to parse: http://u:p4ss@h:99999/x?page=2&X-Amz-Signature=abc123&cursor=c-9&sig=s1"
    assert redactor.redact(text) == "Failed to parse: http://u:<redacted>@h:99999/x?page=2&X-Amz-Signature=<redacted>&cursor=<redacted>&sig=<redacted>"


def test_page_tokens_and_link_cursors_of_the_poll_are_masked_in_its_errors(api):
    api.routes["/m"] = lambda request: (
        Reply({"next": "page-token-secret-5"}) if "t" not in request.query else Reply({"next": 5})
    )
    client = client_for(api, "    pagination: {type: next_token, next_token_path: \"join(',', [next])\", token_param: t}")
    error = fetch_error(client)
    assert error.reason == "pagination"
    assert client.redactor.redact("echo page-token-secret-5") == "echo <redacted>"
    api.routes["/l"] = Reply({"v": 1}, headers={"Link": '<http://127.0.0.1:99999/l?cursor=cursor-secret-6&page=2>; rel="next"'})
    error = fetch_error(client_for(api, "    pagination: {type: link_header}", path="/l"))
    assert error.reason == "connection"
    assert "cursor-secret-6" not in str(error) and "cursor=<redacted>&page=2" in str(error)
