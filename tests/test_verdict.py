"""The API's own verdict: a 200 body that says it failed fails the poll as api_error, with the API's message redacted."""

import subprocess
import sys

import pytest
import requests

from exporter.config import ConfigError, parse_config
from exporter.verdict import MESSAGE_CHARS, ApiError, ApiErrorRule, Verdict
from fakeapi import Reply
from test_bridge import pods, sample_value, scrape

SECRET = "s3cr3t-token-value"


def verdict_config(api, when, message="message", extra=""):
    return f"""
targets:
  - name: pods
    url: {api.url('/pods')}
    params: {{token: {SECRET}}}
    timeout: 2s
    retries: {{attempts: 1}}
    api_error: {{when: "{when}", message: "{message}"}}
{extra}
    mappings:
      - each: items
        level: pod
        labels: {{namespace: ns, pod: name}}
        metrics:
          - {{name: pod_cpu_usage_cores, help: CPU., value: cpu, convert: quantity}}
"""


def check(when, document, message=None):
    verdict = Verdict(ApiErrorRule(when=when, message=message))
    try:
        verdict.check(document)
    except ApiError as error:
        return str(error)
    return None


@pytest.mark.parametrize(
    ("when", "document"),
    [
        ("status == 'error'", {"status": "error"}),
        ("Success == `false`", {"Success": False}),
        ("Code != '200'", {"Code": "Throttling"}),
        ("error", {"error": {"code": 1}}),
        ("length(errors) > `0`", {"errors": ["x"]}),
        ("errors", {"errors": ["x"]}),
    ],
)
def test_a_predicate_that_holds_marks_the_page_as_an_error(when, document):
    assert check(when, document) is not None


@pytest.mark.parametrize(
    ("when", "document"),
    [
        ("status == 'error'", {"status": "success"}),
        ("Success == `false`", {"Success": True}),
        ("error", {"error": None}),
        ("errors", {"errors": []}),
        ("error_message", {"error_message": ""}),
        ("length(errors) > `0`", {"items": []}),  # errors missing: length() fails, which is not an error verdict
    ],
)
def test_a_predicate_that_does_not_hold_or_cannot_be_evaluated_lets_the_page_through(when, document):
    assert check(when, document) is None


def test_the_message_is_the_apis_own_text_truncated():
    long = "x" * (MESSAGE_CHARS + 50)
    assert check("status == 'error'", {"status": "error", "msg": "quota exceeded"}, "msg") == (
        "the API reported an error: quota exceeded"
    )
    assert check("status == 'error'", {"status": "error", "msg": long}, "msg").endswith("x" * MESSAGE_CHARS + "…")
    assert check("status == 'error'", {"status": "error", "err": {"code": 7}}, "err") == 'the API reported an error: {"code":7}'
    assert "no message" in check("status == 'error'", {"status": "error"}, "msg")


def test_a_bad_predicate_is_a_config_error_with_its_key_path():
    text = """
targets:
  - name: t
    url: http://127.0.0.1:1/
    api_error: {when: "status ==", message: "[["}
    mappings:
      - {each: items, level: service, metrics: [{name: x, value: v}]}
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    problems = caught.value.problems
    assert "targets[0].api_error.when: invalid JMESPath expression: the expression is incomplete\nstatus ==\n         ^" in problems
    assert "targets[0].api_error.message: invalid JMESPath expression: the expression is incomplete\n[[\n  ^" in problems


def test_an_error_body_fails_the_poll_as_api_error_and_keeps_the_last_good_snapshot(api, run_bridge):
    api.routes["/pods"] = Reply(pods("a"))
    running = run_bridge(verdict_config(api, "status == 'error'"), schedule=False)
    assert running.bridge.poll_now("pods") is True
    api.routes["/pods"] = Reply({"status": "error", "message": f"token {SECRET} has expired", "items": []})
    assert running.bridge.poll_now("pods") is False
    text = scrape(running.url)
    assert sample_value(text, "metrics_bridge_poll_failures_total", target="pods", reason="api_error") == 1
    assert sample_value(text, "metrics_bridge_target_up", target="pods") == 0
    assert sample_value(text, "pod_cpu_usage_cores", pod="a") == 0.5  # the last good snapshot is still served
    targets = requests.get(running.url + "/api/v1/targets", timeout=5).text
    assert "the API reported an error: token <redacted> has expired" in targets
    page = requests.get(running.url + "/", timeout=5).text
    assert "has expired" in page and SECRET not in page and SECRET not in targets


def test_the_failure_is_logged_with_the_redacted_message(api, run_bridge, caplog):
    api.routes["/pods"] = Reply({"status": "error", "message": f"bad token {SECRET}"})
    running = run_bridge(verdict_config(api, "status == 'error'"), schedule=False)
    with caplog.at_level("DEBUG"):
        running.bridge.poll_now("pods")
    assert "reason=api_error: the API reported an error: bad token <redacted>" in caplog.text
    assert SECRET not in caplog.text


def test_every_page_is_judged_so_an_error_on_a_later_page_fails_the_poll(api, run_bridge):
    def page(request):
        if request.query.get("page") == "2":
            return Reply({"status": "error", "message": "page 2 is broken", "items": [], "pages": 2})
        return Reply({**pods("a"), "pages": 2})

    api.routes["/pods"] = page
    extra = "    pagination: {type: page_number, total_pages_path: pages}\n"
    running = run_bridge(verdict_config(api, "status == 'error'", extra=extra), schedule=False)
    assert running.bridge.poll_now("pods") is False
    assert "page 2 is broken" in running.bridge.pollers["pods"].status.last_error


def test_try_on_an_error_body_says_so_on_stderr_and_exits_non_zero(api, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(verdict_config(api, "Success == `false`", "Message"))
    body = tmp_path / "body.json"
    body.write_text('{"Success": false, "Message": "The specified InstanceId does not exist.", "items": []}')
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "try", "--config", str(config), "--target", "pods", "--input", str(body)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert "api_error: the API reported an error: The specified InstanceId does not exist." in result.stderr
