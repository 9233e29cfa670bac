"""Client: requests as configured, a deadline over the whole poll, retries, a size cap, pagination, typed errors."""

import socket
import time

import orjson
import pytest

from exporter.client import FetchError, Redactor, TargetClient
from exporter.config import parse_config

from fakeapi import Reply


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
