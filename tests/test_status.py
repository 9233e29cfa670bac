"""Status pages: every target's state, counts and recent polls, and a page per target, rendered in a real headless
Chromium, with nothing secret and no external asset. UPDATE_SCREENSHOTS=1 also writes the screenshots in docs/images/."""

import html
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests

from exporter.status import relative_time

from conftest import ARTIFACTS, require_tool
from fakeapi import Reply
from test_bridge import pods, pods_config

IMAGES = Path(__file__).parent.parent / "docs" / "images"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic", "--hide-scrollbars",
]


class TargetRows(HTMLParser):
    """Collects the cells of each `<tr data-target>` row of a rendered DOM, whether it is hidden, and its chart bars."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, str]] = {}
        self.hidden: set[str] = set()
        self.bars: dict[str, list[str]] = {}
        self._row = None
        self._name = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and "data-target" in attrs:
            self._name = attrs["data-target"]
            self._row = self.rows.setdefault(self._name, {})
            self.bars[self._name] = []
            if "hidden" in attrs:
                self.hidden.add(self._name)
        elif tag == "td" and self._row is not None:
            self._cell = (attrs.get("class") or "").split()[0] if attrs.get("class") else f"col{len(self._row)}"
            self._row[self._cell] = ""
        elif tag == "rect" and self._name is not None and attrs.get("class") != "empty":
            self.bars[self._name].append(attrs.get("class", ""))

    def handle_endtag(self, tag):
        if tag == "td":
            self._cell = None
        elif tag == "tr":
            self._row = self._name = None

    def handle_data(self, data):
        if self._row is not None and self._cell is not None:
            self._row[self._cell] += data


def chromium(binary, tmp_path, *args):
    return subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True, text=True, timeout=90,
    )


def rendered_rows(binary, tmp_path, url):
    dom = chromium(binary, tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    parser = TargetRows()
    parser.feed(dom.stdout)
    return parser, dom.stdout


def card(dom, name):
    """The number on one of the overview's summary cards."""
    match = re.search(rf'data-card="{name}"[^>]*>.*?<b>([^<]*)</b>', dom, re.S)
    assert match, name
    return match.group(1)


def screenshot(binary, tmp_path, url, name, size="1400,700"):
    """Take a screenshot into tests/artifacts (and docs/images with UPDATE_SCREENSHOTS=1); return its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    path.unlink(missing_ok=True)
    shot = chromium(binary, tmp_path, f"--window-size={size}", f"--screenshot={path}", url)
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, IMAGES / name)
    return path


def three_targets(api, run_bridge):
    """A healthy target polled three times, a failing one (twice failed after one success), and a pending one."""
    api.routes["/pods"] = Reply(pods("a", "b"))
    api.routes["/broken"] = Reply(pods("x"))
    api.routes["/later"] = Reply(pods("y"))
    config = (
        pods_config(api, extra="    auth: {bearer_token: planted-secret-9931}\n")
        + pods_config(api, "broken").split("targets:\n")[1]
        + pods_config(api, "later").split("targets:\n")[1]
    )
    running = run_bridge(config, schedule=False)
    for _ in range(3):
        running.bridge.poll_now("pods")  # three polls of two series
    running.bridge.poll_now("broken")
    api.routes["/broken"] = Reply(b"<html>upstream down planted-secret-9931</html>", headers={"Content-Type": "text/html"})
    running.bridge.poll_now("broken")
    running.bridge.poll_now("broken")
    return running


def test_relative_times_read_as_people_say_them():
    assert relative_time(None, 1000.0) == "—"
    assert relative_time(1000.0, 1000.4) == "now"
    assert relative_time(988.0, 1000.0) == "12 s ago"
    assert relative_time(1003.0, 1000.0) == "in 3 s"
    assert relative_time(1000.0 - 4 * 60 - 5, 1000.0) == "4 min ago"
    assert relative_time(1000.0 - 2 * 3600, 1000.0) == "2 h ago"
    assert relative_time(1000.0 - 3 * 86400, 1000.0) == "3 d ago"


def test_the_overview_shows_counts_recent_polls_and_relative_times_in_a_real_browser(api, run_bridge, tmp_path):
    binary = require_tool("chromium")
    running = three_targets(api, run_bridge)

    parser, dom = rendered_rows(binary, tmp_path, running.url + "/")
    assert set(parser.rows) == {"pods", "broken", "later"}
    assert parser.hidden == set()
    pods_row, broken, later = parser.rows["pods"], parser.rows["broken"], parser.rows["later"]
    assert pods_row["outcome"] == "success" and pods_row["series"] == "2" and pods_row["counts"] == "3 / 0"
    assert broken["outcome"] == "failure (invalid_json)" and broken["counts"] == "1 / 2"
    assert "content-type text/html" in broken["error"]
    assert later["outcome"] == "pending" and later["counts"] == "0 / 0" and later["start"] == "—"
    assert re.fullmatch(r"now|\d+ s ago", pods_row["start"]), pods_row["start"]
    # One bar per poll, coloured by its outcome, oldest first.
    assert parser.bars["pods"] == ["success"] * 3
    assert parser.bars["broken"] == ["success", "failure", "failure"]
    assert parser.bars["later"] == []
    assert "planted-secret-9931" not in dom
    assert "<script src" not in dom and "<link" not in dom and "http://" not in dom.split("<main>")[0]
    assert 'href="targets/broken"' in dom and 'href="metrics"' in dom

    screenshot(binary, tmp_path, running.url + "/", "status-page-3-targets.png", size="1400,420")


def test_the_filter_box_and_the_failing_link_narrow_the_overview(api, run_bridge):
    running = three_targets(api, run_bridge)
    by_query = TargetRows()
    by_query.feed(requests.get(running.url + "/", params={"q": "BROK"}, timeout=5).text)
    assert set(by_query.rows) - by_query.hidden == {"broken"}
    by_state = TargetRows()
    by_state.feed(requests.get(running.url + "/", params={"state": "failing"}, timeout=5).text)
    assert set(by_state.rows) - by_state.hidden == {"broken"}
    by_outcome = TargetRows()
    by_outcome.feed(requests.get(running.url + "/", params={"q": "pending"}, timeout=5).text)
    assert set(by_outcome.rows) - by_outcome.hidden == {"later"}


def test_a_target_page_shows_its_last_error_in_full_its_history_and_its_first_series(api, run_bridge, tmp_path):
    binary = require_tool("chromium")
    running = three_targets(api, run_bridge)
    page = requests.get(running.url + "/targets/broken", timeout=5)
    assert page.status_code == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "failure (invalid_json)" in page.text and "content-type text/html" in page.text
    assert page.text.count("<tr><td") == 3  # every kept poll, newest first
    assert "planted-secret-9931" not in page.text

    healthy = requests.get(running.url + "/targets/pods", timeout=5).text
    assert '<pre id="series">' in healthy
    assert "# TYPE pod_cpu_usage_cores gauge" in healthy
    assert 'pod_cpu_usage_cores{level="pod",target="pods",namespace="inference",pod="a"} 0.5' in healthy.replace("&quot;", '"')
    assert "3 succeeded" in healthy and "0 failed" in healthy
    assert requests.get(running.url + "/targets/nope", timeout=5).status_code == 404

    dom = chromium(binary, tmp_path, "--dump-dom", running.url + "/targets/broken")
    assert dom.returncode == 0 and 'id="last-error"' in dom.stdout
    screenshot(binary, tmp_path, running.url + "/targets/pods", "status-target-page.png", size="1100,800")


def test_a_long_error_is_cut_in_the_overview_and_shown_whole_on_the_target_page(api, run_bridge):
    field = "cpu_" + "very_long_field_name_" * 8
    api.routes["/pods"] = Reply({"items": [{"ns": "inference", "name": "a", field: "not a quantity"}]})
    running = run_bridge(pods_config(api).replace("value: cpu,", f"value: {field},"), schedule=False)
    running.bridge.poll_now("pods")
    error = running.bridge.pollers["pods"].status.last_error
    assert len(error) > 200 and field in error
    overview = TargetRows()
    overview.feed(requests.get(running.url + "/", timeout=5).text)
    assert overview.rows["pods"]["error"] == error[:160] + "…"
    target = requests.get(running.url + "/targets/pods", timeout=5).text
    assert html.escape(error) in target


@pytest.mark.timeout(180)
def test_five_hundred_targets_render_with_a_chart_each_and_a_working_filter(api, run_bridge, tmp_path):
    binary = require_tool("chromium")
    api.routes["/pods"] = Reply(pods("a", "b", "c"))
    api.routes["/down"] = Reply(status=503)
    blocks = []
    for i in range(500):
        path = "/down" if i % 25 == 0 else "/pods"
        blocks.append(
            f"  - name: svc-{i:03d}\n    url: {api.url(path)}\n    interval: 30s\n    timeout: 2s\n"
            "    retries: {attempts: 1}\n    mappings:\n      - each: items\n        level: pod\n"
            "        labels: {namespace: ns, pod: name}\n        metrics:\n"
            "          - {name: pod_cpu_usage_cores, help: CPU., value: cpu, convert: quantity}\n"
        )
    running = run_bridge("targets:\n" + "".join(blocks), schedule=False)
    for name in running.bridge.pollers:
        for _ in range(2):
            running.bridge.poll_now(name)

    parser, dom = rendered_rows(binary, tmp_path, running.url + "/")
    assert len(parser.rows) == 500 and parser.hidden == set()
    assert all(len(bars) == 2 for bars in parser.bars.values())
    assert parser.rows["svc-025"]["outcome"] == "failure (http_status)"
    assert card(dom, "targets") == "500" and card(dom, "failing") == "20" and card(dom, "up") == "480"
    assert card(dom, "series") == str(480 * 3)
    filtered, _ = rendered_rows(binary, tmp_path, running.url + "/?q=svc-49")
    assert set(filtered.rows) - filtered.hidden == {f"svc-49{i}" for i in range(10)}

    screenshot(binary, tmp_path, running.url + "/", "status-page-500-targets.png", size="1400,900")
    screenshot(binary, tmp_path, running.url + "/?state=failing", "status-page-500-targets-failing.png", size="1400,900")


def test_a_target_page_previews_series_whose_text_was_dropped_without_inflating_them_all(api, run_bridge):
    from exporter.store import COMPRESSOR

    api.routes["/pods"] = Reply(pods(*[f"p{i}" for i in range(3000)]))
    running = run_bridge(pods_config(api), schedule=False)
    running.bridge.poll_now("pods")
    assert COMPRESSOR.wait_idle(10)
    snapshot = running.bridge.store.current()["pods"]
    assert not snapshot._bodies.holds_text  # nobody scraped it as text: only its gzip segments are kept
    page = requests.get(running.url + "/targets/pods", timeout=5).text.replace("&quot;", '"')
    assert 'pod_cpu_usage_cores{level="pod",target="pods",namespace="inference",pod="p0"} 0.5' in page
    assert "first 40 lines of 3000 series" in page
    assert not snapshot._bodies.holds_text
