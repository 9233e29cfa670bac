"""Request templates: names, filters and formats; windows without gaps or overlaps; config errors with key paths."""

import threading
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from exporter.collector import render_exposition
from exporter.config import ConfigError, parse_config
from exporter.request import RequestTemplate
from exporter.templating import TemplateFailure, Window, WindowTracker, compile_tree, poll_context

from fakeapi import Reply

AT = datetime(2024, 5, 1, 12, 7, 42, 250000, tzinfo=timezone.utc)  # 1714565262.25


def render(text, now=AT, window=None, **extra):
    renderer = compile_tree(text)
    assert renderer is not None, f"{text!r} is not a template"
    context = poll_context(now, window or Window(now - timedelta(minutes=5), now))
    context.update(extra)
    return renderer(context)


def test_every_format_writes_the_documented_form():
    assert render("{{ now | epoch }}") == 1714565262
    assert render("{{ now | epoch_ms }}") == 1714565262250
    assert render("{{ now | rfc3339 }}") == "2024-05-01T12:07:42.25Z"
    assert render("{{ now | floor('1s') | rfc3339 }}") == "2024-05-01T12:07:42Z"
    assert render("{{ now | iso_z }}") == "2024-05-01T12:07:42Z"
    assert render("{{ now | iso_space }}") == "2024-05-01 12:07:42"
    assert render("{{ now | strftime('%Y%m%d') }}") == "20240501"


def test_offsets_and_alignment_read_as_arithmetic_on_times():
    assert render("{{ (now - duration('5m')) | iso_z }}") == "2024-05-01T12:02:42Z"
    assert render("{{ (now + duration('1h30m')) | iso_z }}") == "2024-05-01T13:37:42Z"
    assert render("{{ now | floor('5m') | iso_z }}") == "2024-05-01T12:05:00Z"
    assert render("{{ now | floor('1m') | epoch }}") == 1714565220
    assert render("{{ (now - duration(90)) | floor('1h') | iso_space }}") == "2024-05-01 12:00:00"


def test_the_window_is_available_as_start_end_and_seconds():
    window = Window(AT - timedelta(seconds=75), AT)
    assert render("{{ window.start | iso_z }}/{{ window.end | iso_z }}", window=window) == "2024-05-01T12:06:27Z/2024-05-01T12:07:42Z"
    assert render("{{ window.seconds | int }}", window=window) == 75


def test_a_template_that_is_one_expression_keeps_its_type_and_any_other_is_text():
    assert render("{{ now | epoch }}") == 1714565262
    assert render("t={{ now | epoch }}") == "t=1714565262"
    assert render("{{ now | epoch }}{{ now | epoch }}") == "17145652621714565262"


def test_strings_without_a_template_are_not_compiled_at_all():
    assert compile_tree("a {b} }} %} 100%") is None
    assert compile_tree({"x": ["plain", 1, None], "y": "text"}) is None


def test_a_time_left_unformatted_is_an_error_that_names_the_filters():
    with pytest.raises(TemplateFailure, match=r"gives a time, not text: format it with a filter \(\| epoch, \| epoch_ms"):
        render("{{ now }}")


def test_the_sandbox_refuses_python_internals():
    with pytest.raises(TemplateFailure, match="unsafe"):
        render("{{ now.__class__.__mro__ }}")


def test_the_window_tracker_starts_each_window_where_the_last_successful_one_ended():
    tracker = WindowTracker(initial_length=300, max_lookback=3600)
    first = tracker.next(AT)
    assert (first.start, first.end) == (AT - timedelta(minutes=5), AT)
    tracker.advance(first)
    second = tracker.next(AT + timedelta(seconds=60))
    assert (second.start, second.end) == (AT, AT + timedelta(seconds=60))
    # Two failed polls: not advanced, so the next window still starts at the first one's end.
    tracker.next(AT + timedelta(seconds=120))
    third = tracker.next(AT + timedelta(seconds=180))
    assert (third.start, third.end) == (AT, AT + timedelta(seconds=180))


def test_after_a_long_outage_the_window_reaches_back_no_further_than_max_lookback():
    tracker = WindowTracker(initial_length=60, max_lookback=600)
    tracker.advance(tracker.next(AT))
    later = tracker.next(AT + timedelta(hours=2))
    assert (later.start, later.end) == (AT + timedelta(hours=2) - timedelta(minutes=10), AT + timedelta(hours=2))


def test_an_aligned_window_with_a_delay_ends_on_the_period_and_never_moves_back():
    tracker = WindowTracker(initial_length=300, max_lookback=3600, align=60, delay=60)
    first = tracker.next(AT)  # 12:07:42 less 1m, floored to the minute
    assert (first.start, first.end) == (datetime(2024, 5, 1, 12, 1, tzinfo=timezone.utc), datetime(2024, 5, 1, 12, 6, tzinfo=timezone.utc))
    tracker.advance(first)
    same_minute = tracker.next(AT + timedelta(seconds=10))
    assert same_minute.start == same_minute.end == first.end
    stepped_back = tracker.next(AT - timedelta(hours=1))
    assert stepped_back.start == stepped_back.end == first.end


def windowed_config(api, extra="", url_path="/metrics"):
    return f"""
targets:
  - name: win
    url: {api.url(url_path)}
    interval: 60s
    timeout: 2s
    retries: {{attempts: 1}}
    params:
      StartTime: "{{{{ window.start | epoch_ms }}}}"
      EndTime: "{{{{ window.end | epoch_ms }}}}"
      Namespace: acs_ecs
{extra}
    mappings:
      - level: service
        metrics:
          - {{name: requests_per_second, value: value}}
"""


class WindowedAPI:
    """A windowed API that rejects a request whose StartTime is not the EndTime it last answered (a gap or an overlap)."""

    def __init__(self, initial_ms):
        self.initial_ms = initial_ms
        self.last_end = None
        self.failing = 0
        self.asked = []
        self.lock = threading.Lock()

    def __call__(self, request):
        start, end = int(request.query["StartTime"]), int(request.query["EndTime"])
        with self.lock:
            self.asked.append((start, end))
            if self.last_end is None:
                if end - start != self.initial_ms:
                    return Reply({"error": f"first window is {end - start} ms"}, 400)
            elif start != self.last_end:
                return Reply({"error": "gap" if start > self.last_end else "overlap"}, 400)
            if end <= start:
                return Reply({"error": "empty window"}, 400)
            if self.failing:
                self.failing -= 1
                return Reply({"error": "outage"}, 503)
            self.last_end = end
            return Reply({"value": len(self.asked)})


def exposition(running, name):
    return b"".join(render_exposition({name: running.bridge.store.current()[name]})).decode()


def test_a_windowed_api_sees_consecutive_windows_with_no_gap_and_no_overlap(api, run_bridge):
    windowed = WindowedAPI(initial_ms=60_000)
    api.routes["/metrics"] = windowed
    running = run_bridge(windowed_config(api), schedule=False)
    for _ in range(4):
        assert running.bridge.poll_now("win") is True
    starts = [s for s, _ in windowed.asked]
    ends = [e for _, e in windowed.asked]
    assert starts[1:] == ends[:-1]
    assert exposition(running, "win") == (
        "# HELP requests_per_second requests_per_second\n# TYPE requests_per_second gauge\n"
        'requests_per_second{level="service",target="win"} 4\n'
    )


def test_after_an_outage_the_next_window_starts_where_the_last_successful_one_ended(api, run_bridge):
    windowed = WindowedAPI(initial_ms=60_000)
    api.routes["/metrics"] = windowed
    running = run_bridge(windowed_config(api), schedule=False)
    assert running.bridge.poll_now("win") is True
    good_end = windowed.asked[0][1]
    windowed.failing = 3
    assert [running.bridge.poll_now("win") for _ in range(3)] == [False, False, False]
    assert running.bridge.poll_now("win") is True
    assert [start for start, _ in windowed.asked[1:]] == [good_end] * 4
    assert windowed.last_end == windowed.asked[-1][1]
    assert running.bridge.poll_now("win") is True  # and it goes on from there


def test_max_lookback_bounds_the_first_window(api, run_bridge):
    windowed = WindowedAPI(initial_ms=30_000)
    api.routes["/metrics"] = windowed
    running = run_bridge(windowed_config(api, "    window: {max_lookback: 30s}"), schedule=False)
    assert running.bridge.poll_now("win") is True
    (start, end), = windowed.asked
    assert end - start == 30_000


def test_templates_render_in_the_path_params_headers_and_nested_body(api, run_bridge):
    api.routes["/v1/2024/query"] = Reply({"value": 1})
    seen = []

    def reply(request):
        seen.append(request)
        return Reply({"value": 1})

    config = f"""
targets:
  - name: all
    url: {api.url('/v1')}/{{{{ now | strftime('%Y') }}}}/query
    method: POST
    interval: 60s
    timeout: 2s
    retries: {{attempts: 1}}
    window: {{initial_length: 5m, align: 1m}}
    params: {{from: "{{{{ window.start | iso_z }}}}", plain: "a{{b}}c 100%"}}
    headers: {{X-Window-End: "{{{{ window.end | iso_space }}}}", X-Static: "{{ not a template"}}
    body:
      metric: cpu
      range: {{from: "{{{{ window.start | epoch_ms }}}}", to: "{{{{ window.end | epoch_ms }}}}"}}
      dims: [{{name: region, value: "r-{{{{ now | strftime('%Y') }}}}"}}]
    mappings:
      - level: service
        metrics:
          - {{name: requests_per_second, value: value}}
"""
    year = datetime.now(timezone.utc).strftime("%Y")
    api.routes[f"/v1/{year}/query"] = reply
    running = run_bridge(config, schedule=False)
    before = datetime.now(timezone.utc)
    assert running.bridge.poll_now("all") is True
    after = datetime.now(timezone.utc)
    (request,) = seen
    body = orjson.loads(request.body)
    end_ms = body["range"]["to"]
    assert type(end_ms) is int and type(body["range"]["from"]) is int
    assert end_ms % 60_000 == 0 and body["range"]["from"] == end_ms - 300_000
    end = datetime.fromtimestamp(end_ms / 1000, timezone.utc)
    assert before - timedelta(minutes=1) < end <= after
    assert body["metric"] == "cpu" and body["dims"] == [{"name": "region", "value": f"r-{year}"}]
    assert request.query == {"from": (end - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ"), "plain": "a{b}c 100%"}
    assert request.headers["x-window-end"] == end.strftime("%Y-%m-%d %H:%M:%S")
    assert request.headers["x-static"] == "{ not a template"


def test_templated_headers_go_out_beside_the_auth_header(api, run_bridge):
    seen = []
    api.routes["/m"] = lambda request: seen.append(request) or Reply({"value": 1})
    config = windowed_config(api, "    auth: {api_key: {header: X-Key, value: k-9}}\n    headers: {X-From: '{{ window.start | epoch }}'}", "/m")
    running = run_bridge(config, schedule=False)
    assert running.bridge.poll_now("win") is True
    assert seen[0].headers["x-key"] == "k-9"
    assert int(seen[0].headers["x-from"]) * 1000 <= int(seen[0].query["StartTime"]) < (int(seen[0].headers["x-from"]) + 1) * 1000


def test_the_rendered_request_is_the_same_object_each_poll_when_nothing_is_templated():
    target = parse_config(
        "targets:\n  - name: t\n    url: http://127.0.0.1:9/m\n    params: {a: '1'}\n"
        "    mappings: [{level: service, metrics: [{name: m, value: v}]}]\n"
    ).targets[0]
    template = RequestTemplate(target)
    assert template.static
    assert template.render({}) is template.render({})
    assert template.render({}).params == {"a": "1"}


def problems(yaml_text):
    with pytest.raises(ConfigError) as caught:
        parse_config(yaml_text)
    return caught.value.problems


BAD = """
targets:
  - name: bad
    url: http://127.0.0.1:9/{{ nwo | epoch }}/x
    method: POST
    params: {a: "{{ now | epok }}", b: "{{ now | epoch", ok: "{{ now | epoch }}"}
    headers: {X-Date: "{{ now }}"}
    body: {q: [{t: "{{ item.name }}"}], d: "{{ now | floor('5 minutes') | epoch }}"}
    mappings: [{level: service, metrics: [{name: m, value: v}]}]
"""


def test_a_template_that_cannot_be_evaluated_is_a_config_error_with_its_key_path():
    assert problems(BAD) == [
        "targets[0].url: template: 'nwo' is undefined",
        "targets[0].params.a: template: No filter named 'epok'.",
        "targets[0].params.b: syntax error: unexpected end of template, expected 'end of print statement'.",
        "targets[0].headers.X-Date: the template gives a time, not text: "
        "format it with a filter (| epoch, | epoch_ms, | rfc3339, | iso_z, | iso_space)",
        "targets[0].body.q[0].t: template: 'item' is undefined (item.* exists only in the requests of a target with discovery:)",
        "targets[0].body.d: not a duration: '5 minutes' (use e.g. '30s', '5m', '1h')",
    ]


def test_a_bad_window_is_a_config_error():
    assert problems(
        "targets:\n  - name: w\n    url: http://127.0.0.1:9/m\n    window: {initial_length: 2h, max_lookback: 1h}\n"
        "    mappings: [{level: service, metrics: [{name: m, value: v}]}]\n"
    ) == ["targets[0].window: initial_length (7200s) must not exceed max_lookback (3600s)"]


def test_a_reload_that_changes_the_target_carries_the_window_on(api, run_bridge):
    windowed = WindowedAPI(initial_ms=60_000)
    api.routes["/metrics"] = windowed
    running = run_bridge(windowed_config(api), schedule=False)
    assert running.bridge.poll_now("win") is True
    changed = windowed_config(api, "    labels: {region: hz}")
    assert running.bridge.reload(parse_config(changed))["changed"] == ["win"]
    assert running.bridge.poll_now("win") is True
    assert windowed.asked[1][0] == windowed.asked[0][1]
