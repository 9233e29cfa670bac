"""Status page: every target's state, rendered in a real headless Chromium, with nothing secret and no external asset."""

import subprocess
from html.parser import HTMLParser

from conftest import ARTIFACTS, require_tool
from fakeapi import Reply
from test_bridge import pods, pods_config

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]


class TargetRows(HTMLParser):
    """Collects the cells of each `<tr data-target>` row of a rendered DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, str]] = {}
        self._row = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and "data-target" in attrs:
            self._row = self.rows.setdefault(attrs["data-target"], {})
        elif tag == "td" and self._row is not None:
            self._cell = (attrs.get("class") or "").split()[0] if attrs.get("class") else f"col{len(self._row)}"
            self._row[self._cell] = ""

    def handle_endtag(self, tag):
        if tag == "td":
            self._cell = None
        elif tag == "tr":
            self._row = None

    def handle_data(self, data):
        if self._row is not None and self._cell is not None:
            self._row[self._cell] += data


def chromium(binary, tmp_path, *args):
    return subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True, text=True, timeout=90,
    )


def test_the_status_page_shows_a_healthy_and_a_failing_target_in_a_real_browser(api, run_bridge, tmp_path):
    binary = require_tool("chromium")
    api.routes["/pods"] = Reply(pods("a", "b"))
    api.routes["/broken"] = Reply(b"<html>upstream down</html>", status=200, headers={"Content-Type": "text/html"})
    config = pods_config(api, extra="    auth: {bearer_token: planted-secret-9931}\n") + pods_config(api, "broken").split("targets:\n")[1]
    running = run_bridge(config, schedule=False)
    running.bridge.poll_now("pods")
    running.bridge.poll_now("broken")

    dom = chromium(binary, tmp_path, "--dump-dom", running.url + "/")
    assert dom.returncode == 0, dom.stderr[-2000:]
    parser = TargetRows()
    parser.feed(dom.stdout)
    assert set(parser.rows) == {"pods", "broken"}
    assert parser.rows["pods"]["outcome"] == "success"
    assert parser.rows["pods"]["series"] == "2"
    assert parser.rows["broken"]["outcome"] == "failure (invalid_json)"
    assert "content-type text/html" in parser.rows["broken"]["error"]
    assert "planted-secret-9931" not in dom.stdout
    assert 'href="/metrics"' in dom.stdout and 'href="/api/v1/targets"' in dom.stdout

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "status-page.png"
    screenshot.unlink(missing_ok=True)
    shot = chromium(binary, tmp_path, "--window-size=1400,500", f"--screenshot={screenshot}", running.url + "/")
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
