"""The dashboards and alerts against a real Prometheus scraping `metrics-bridge demo` every second, all on loopback.

Prometheus loads alerts/metrics-bridge.rules.yml unchanged. Every panel query and every variable query of every
dashboard must return data; injected poll failures must raise MetricsBridgePollFailing (pending is enough: its `for:`
is the real 10 minutes, but its 10-minute window fills from the few seconds of history there are).
"""

from __future__ import annotations

import functools
import json
import re
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, cast

import pytest

from conftest import require_tool
from fakeapi import wait_until
from test_alerts import RULES, alert_rules
from test_dashboards import REPO, panel_queries, substitute, variable_queries

pytestmark = pytest.mark.integration

DEMO_PODS = 4
DEMO_TARGETS = {"services", "pods", "containers"}
DISCOVERY_ONLY = re.compile(r"metrics_bridge_discover")
JOB = "metrics-bridge"
# Grafana's $__rate_interval is at least four scrape intervals; with 1 s scrapes, 15 s holds plenty of samples.
RATE_INTERVAL = "15s"


def free_port() -> int:
    """A loopback port nobody listens on right now (for Prometheus, which cannot report a port it picked itself)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def post_json(url: str, body: dict) -> Any:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


@dataclass
class Process:
    """A child process whose output is collected on a thread, so that it can never block on a full pipe."""

    name: str
    popen: subprocess.Popen
    lines: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, name: str, args: list[str], cwd: Path) -> "Process":
        popen = subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        process = cls(name, popen)
        threading.Thread(target=process._collect, name=f"{name}-output", daemon=True).start()
        return process

    def _collect(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))

    def find(self, pattern: str) -> Optional[re.Match]:
        """The first output line matching `pattern`; fail at once if the process has died."""
        for line in list(self.lines):
            match = re.search(pattern, line)
            if match:
                return match
        if self.popen.poll() is not None:
            pytest.fail(f"{self.name} exited with {self.popen.returncode}:\n" + "\n".join(self.lines[-30:]))
        return None

    def output(self) -> str:
        return "\n".join(self.lines[-30:])

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)


@dataclass
class Stack:
    """The demo bridge, its demo API, and a Prometheus scraping the bridge with the rules loaded."""

    demo: Process
    prometheus: Process
    api_base: str
    prometheus_url: str

    def query(self, expr: str) -> dict:
        """The result of an instant query; fails on a query error, such as a many-to-many match."""
        url = f"{self.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            body = get_json(url)
        except urllib.error.HTTPError as error:
            pytest.fail(f"Prometheus rejected {expr}: {error.read().decode()}")
        assert body["status"] == "success", body
        return body["data"]

    def label_values(self, selector: str, label: str) -> list[str]:
        url = f"{self.prometheus_url}/api/v1/label/{label}/values?" + urllib.parse.urlencode({"match[]": selector})
        return get_json(url)["data"]

    def active_alerts(self, name: str) -> list[dict]:
        return [a for a in get_json(f"{self.prometheus_url}/api/v1/alerts")["data"]["alerts"] if a["labels"]["alertname"] == name]

    def set_fault(self, fault: dict) -> None:
        post_json(f"{self.api_base}/-/faults", fault)


def start_demo() -> tuple[Process, str, str]:
    """`metrics-bridge demo` on free loopback ports, polling every second; returns it, its metrics address, API base."""
    demo = Process.start(
        "metrics-bridge demo",
        [sys.executable, "-m", "exporter", "demo", "--web.listen-address", "127.0.0.1:0", "--api-listen", "127.0.0.1:0",
         "--interval", "1", "--pods", str(DEMO_PODS)],
        REPO,
    )
    try:
        api = cast(re.Match, wait_until(lambda: demo.find(r"API at (http://127\.0\.0\.1:\d+)/api/v1/metrics"), timeout=20))
        metrics = cast(re.Match, wait_until(lambda: demo.find(r"serving metrics on http://(127\.0\.0\.1:\d+)/metrics"), timeout=20))
    except BaseException:
        demo.stop()
        raise
    return demo, metrics.group(1), api.group(1)


def ready_or_exited(process: Process, url: str) -> bool:
    """Whether Prometheus at `url` is ready, or its process has exited (nothing more to wait for)."""
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
            return response.status == 200
    except OSError:
        return process.popen.poll() is not None


def start_prometheus(binary: str, workdir: Path, scrape_address: str) -> tuple[Process, str]:
    config = workdir / "prometheus.yml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(RULES)],
                "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [scrape_address]}]}],
            }
        ),
        encoding="utf-8",
    )
    for _ in range(3):  # another process may take the free port before Prometheus binds it
        port = free_port()
        process = Process.start(
            "prometheus",
            [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            workdir,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until(functools.partial(ready_or_exited, process, url), timeout=30, interval=0.1)
        except BaseException:
            process.stop()
            raise
        if process.popen.poll() is None:
            return process, url
    pytest.fail("prometheus would not start:\n" + process.output())


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    binary = require_tool("prometheus")
    demo, metrics_address, api_base = start_demo()
    try:
        prometheus, prometheus_url = start_prometheus(binary, tmp_path_factory.mktemp("prometheus"), metrics_address)
        try:
            yield Stack(demo, prometheus, api_base, prometheus_url)
        finally:
            prometheus.stop()
    finally:
        demo.stop()


def wait_for_every(stack: Stack, checks: dict[str, Any], timeout: float) -> None:
    """Wait until every check (a no-argument callable returning truthy) passes; at the deadline, name those that fail."""
    failing: list[str] = list(checks)

    def all_pass() -> bool:
        failing[:] = [name for name, check in checks.items() if not check()]
        return not failing

    try:
        wait_until(all_pass, timeout=timeout, interval=0.5)
    except AssertionError:
        pytest.fail(f"within {timeout}s these returned nothing:\n  " + "\n  ".join(failing)
                    + "\n--- prometheus:\n" + stack.prometheus.output() + "\n--- demo:\n" + stack.demo.output())


def test_every_panel_query_of_every_dashboard_returns_series(stack: Stack) -> None:
    stack.set_fault({"mode": "none"})
    queries = panel_queries()
    assert len(queries) > 50

    def returns_series(expr: str) -> Any:
        return lambda: stack.query(substitute(expr, RATE_INTERVAL))["result"]

    # The demo has no target with discovery:, whose self-metrics exist only for such targets: those panels' queries
    # must run (stack.query fails on a query error) but have no series to return.
    for _, _, _, expr in queries:
        if DISCOVERY_ONLY.search(expr):
            assert stack.query(substitute(expr, RATE_INTERVAL))["result"] == []
    queries = [q for q in queries if not DISCOVERY_ONLY.search(q[3])]
    wait_for_every(stack, {f"{name}: {title} [{ref}] {expr}": returns_series(expr) for name, title, ref, expr in queries}, timeout=30)


def test_every_variable_query_lists_what_the_demo_serves(stack: Stack) -> None:
    stack.set_fault({"mode": "none"})
    expected = {
        "job": {JOB},
        "target": DEMO_TARGETS,
        "namespace": {"inference"},
        "container": {"model-server", "metrics-agent"},
    }
    checks = {}
    for name, variable, query in variable_queries():
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", query)
        assert match and match.group(2) == variable, f"{name}: ${variable}: {query}"
        selector = substitute(match.group(1))

        def lists(selector: str = selector, variable: str = variable) -> bool:
            values = set(stack.label_values(selector, variable))
            if variable == "pod":
                return len(values) >= DEMO_PODS
            return values == expected[variable]

        checks[f"{name}: ${variable}: {query}"] = lists
    wait_for_every(stack, checks, timeout=30)


def test_every_rule_evaluates_without_error(stack: Stack) -> None:
    names = set(alert_rules())

    def evaluated() -> bool:
        rules = [r for g in get_json(f"{stack.prometheus_url}/api/v1/rules")["data"]["groups"] for r in g["rules"]]
        assert {r["name"] for r in rules} == names
        for rule in rules:
            assert rule["health"] != "err", f"{rule['name']}: {rule.get('lastError')}"
        return all(rule["health"] == "ok" for rule in rules)

    wait_until(evaluated, timeout=20, interval=0.5)


def test_injected_poll_failures_make_the_poll_failing_alert_pending_or_firing(stack: Stack) -> None:
    stack.set_fault({"mode": "none"})
    # Some successful polls on record first, so that the alert has a ratio to exceed rather than nothing but failures.
    wait_until(lambda: stack.query(f'sum(metrics_bridge_poll_success_total{{job="{JOB}"}}) >= 9')["result"], timeout=20)
    assert stack.active_alerts("MetricsBridgePollFailing") == []
    stack.set_fault({"mode": "status", "status": 503, "ratio": 1.0})
    try:
        alerts = cast(list, wait_until(lambda: stack.active_alerts("MetricsBridgePollFailing"), timeout=30, interval=0.5))
    finally:
        stack.set_fault({"mode": "none"})
    for alert in alerts:
        assert alert["state"] in ("pending", "firing")
        assert alert["labels"]["job"] == JOB and alert["labels"]["target"] in DEMO_TARGETS
        assert alert["labels"]["severity"] == "warning"
        assert float(alert["value"]) > 0.2
    failures = stack.query(f'sum(metrics_bridge_poll_failures_total{{job="{JOB}", reason="http_status"}})')["result"]
    assert float(failures[0]["value"][1]) > 0
