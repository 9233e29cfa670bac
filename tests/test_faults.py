"""Faults: whatever the third-party API or the user gets wrong costs only that target or that reload — counted by reason,
logged once, shown on the status page, with /metrics valid, the other targets served and no secret shown anywhere.

Every fault runs against a real loopback server: the scripted `FakeAPI`, an HTTPS copy of it with `trustme`
certificates, a listener whose backlog is full, or `LazyBody`, which generates a 200 MiB body as it sends it.
`docs/failures.md` shows the same failures as an operator sees them.
"""

from __future__ import annotations

import gc
import logging
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import orjson
import pytest
import requests
import trustme
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter import cli
from exporter.bridge import Bridge
from exporter.client import FetchError, TargetClient
from exporter.config import ConfigError, parse_config
from exporter.logsetup import configure_logging
from exporter.selfmetrics import FAILURE_REASONS
from exporter.server import MetricsServer, create_app

from conftest import require_tool
from fakeapi import FakeAPI, Reply, wait_until
from signatures import (
    LoopbackSTS, OAuth2TokenServer, VerifyingRoute, sigv4_fields, sigv4_route, verify_alibaba_rpc, verify_alibaba_v3, verify_baidu,
    verify_huawei, verify_volcengine,
)

MiB = 1024 * 1024
ROOT = Path(__file__).parent.parent

# ---------------------------------------------------------------------------------------------------------------------
# Targets, scrapes and checks
# ---------------------------------------------------------------------------------------------------------------------

POD_MAPPINGS = [
    {
        "each": "items",
        "level": "pod",
        "labels": {"namespace": "ns", "pod": "name"},
        "metrics": [
            {"name": "pod_cpu_usage_cores", "help": "CPU the pod uses.", "value": "cpu", "convert": "quantity"},
            {"name": "pod_restarts_total", "help": "Container restarts.", "type": "counter", "value": "restarts"},
        ],
    }
]


def pods_doc(*names: str) -> dict:
    return {"items": [{"ns": "inference", "name": n, "cpu": "500m", "restarts": 1} for n in names]}


def target(name: str, url: str, **settings: Any) -> dict:
    """One target as the config file holds it: short timeouts, no retries unless the settings say so."""
    return {"name": name, "url": url, "interval": "10s", "timeout": "0.5s", "retries": {"attempts": 1}, **settings,
            "mappings": POD_MAPPINGS}


def config_text(*targets: dict) -> str:
    return yaml.safe_dump({"targets": list(targets)}, sort_keys=False)


def scrape(url: str) -> str:
    response = requests.get(url + "/metrics", timeout=10)
    assert response.status_code == 200
    return response.text


def samples(text: str, name: str) -> dict[tuple, float]:
    """Every sample of one name, keyed by its sorted label pairs."""
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text) for s in family.samples if s.name == name
    }


def value(text: str, name: str, **labels: str) -> Optional[float]:
    for key, found in samples(text, name).items():
        if all(dict(key).get(k) == v for k, v in labels.items()):
            return found
    return None


def failures(text: str, target_name: str) -> dict[str, float]:
    return {
        dict(key)["reason"]: found for key, found in samples(text, "metrics_bridge_poll_failures_total").items()
        if dict(key)["target"] == target_name
    }


def pods_served(text: str) -> dict[str, list[str]]:
    """Target → the pods it has series for (from pod_cpu_usage_cores)."""
    served: dict[str, list[str]] = {}
    for key in samples(text, "pod_cpu_usage_cores"):
        labels = dict(key)
        served.setdefault(labels["target"], []).append(labels["pod"])
    return {name: sorted(pods) for name, pods in served.items()}


def promtool_check(promtool: str, text: str) -> tuple[int, str, str]:
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    return checked.returncode, checked.stdout, checked.stderr


def targets_api(url: str) -> dict[str, dict]:
    response = requests.get(url + "/api/v1/targets", timeout=10)
    return {record["name"]: record for record in response.json()["targets"]}


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def nested_bytes(depth: int, leaf: bytes = b"1") -> bytes:
    return b"[" * depth + leaf + b"]" * depth


# ---------------------------------------------------------------------------------------------------------------------
# Servers that misbehave
# ---------------------------------------------------------------------------------------------------------------------


class LazyBody:
    """A loopback HTTP server answering 200 with a body it generates while sending (one 64 KiB chunk, sent again and
    again), so a 200 MiB body never exists anywhere; it records how much of the body each connection got out."""

    CHUNK = b'{"ns":"inference","name":"p","cpu":"1m"},' * 1600  # 64 000 bytes

    def __init__(self, total: int, declare_length: bool = False) -> None:
        self.total = total
        self.declare_length = declare_length
        self.sent: list[int] = []  # body bytes sent, per finished connection
        self.finished = threading.Event()
        self.stopping = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.thread = threading.Thread(target=self._accept, name="lazy-body", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/lazy"

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        sent = 0
        with conn:
            conn.settimeout(5)
            try:
                request = b""
                while b"\r\n\r\n" not in request and len(request) < 65536:
                    data = conn.recv(4096)
                    if not data:
                        return
                    request += data
                length = f"Content-Length: {self.total}\r\n" if self.declare_length else ""
                conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{length}Connection: close\r\n\r\n".encode())
                while sent < self.total and not self.stopping.is_set():  # at most total / 64 000 rounds
                    conn.sendall(self.CHUNK)
                    sent += len(self.CHUNK)
            except OSError:  # the client hung up: the point of the exercise
                pass
            finally:
                self.sent.append(sent)
                self.finished.set()

    def close(self) -> None:
        self.stopping.set()
        self.listener.close()
        self.thread.join(timeout=5)


class FaultServers:
    """The fake API plus the odd servers some faults need, all on loopback and all closed after the test."""

    def __init__(self, api: FakeAPI, tmp_path: Path) -> None:
        self.api = api
        self.tmp_path = tmp_path
        self.closers: list[Callable[[], None]] = []
        self.ca = trustme.CA()
        self.ca_file = tmp_path / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.lazy: list[LazyBody] = []

    def route(self, path: str, reply: Reply) -> str:
        self.api.routes[path] = reply
        return self.api.url(path)

    def backlog_full(self) -> str:
        """A listener that never accepts, its backlog filled: the kernel drops further SYNs, so connect() hangs."""
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        filler = socket.create_connection(listener.getsockname(), timeout=5)
        self.closers += [filler.close, listener.close]
        return f"http://127.0.0.1:{listener.getsockname()[1]}/m"

    def https(self, path: str, certificate: str) -> str:
        """A TLS copy of the fake API, serving its routes with a self-signed certificate or one for another host."""
        api = FakeAPI()
        api.routes = self.api.routes
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        if certificate == "self-signed":  # the CA's own certificate: issuer and subject are the same
            cert, key = self.tmp_path / "self.pem", self.tmp_path / "self.key"
            self.ca.cert_pem.write_to_path(str(cert))
            self.ca.private_key_pem.write_to_path(str(key))
            context.load_cert_chain(str(cert), str(key))
        else:
            self.ca.issue_cert("metrics.other.example").configure_cert(context)
        api.httpd.socket = context.wrap_socket(api.httpd.socket, server_side=True, do_handshake_on_connect=False)
        api.httpd.handle_error = lambda request, address: None  # the refused handshake is the point, not news
        api.start()
        self.closers.append(api.close)
        return f"https://127.0.0.1:{api.httpd.server_address[1]}{path}"

    def lazy_body(self, total: int, declare_length: bool = False) -> LazyBody:
        body = LazyBody(total, declare_length)
        self.lazy.append(body)
        self.closers.append(body.close)
        return body

    def close(self) -> None:
        for close in reversed(self.closers):
            close()


@pytest.fixture
def servers(api: FakeAPI, tmp_path: Path):
    """The fake API with a healthy route, and room for the servers each fault needs."""
    api.routes["/healthy"] = Reply(pods_doc("g1", "g2"))
    fault_servers = FaultServers(api, tmp_path)
    yield fault_servers
    fault_servers.close()


# ---------------------------------------------------------------------------------------------------------------------
# The faults of the third-party API
# ---------------------------------------------------------------------------------------------------------------------

Served = tuple[str, dict]


@dataclass(frozen=True)
class Fault:
    """One way the API misbehaves, and how the bridge must report it."""

    name: str
    reason: str  # the `reason` label of metrics_bridge_poll_failures_total
    error: str  # a regex the redacted message matches (status page, targets API and WARNING line)
    serve: Callable[[FaultServers, str], Served]  # sets the fault up at a path; returns the URL and extra settings
    settings: dict = field(default_factory=dict)
    requests: Optional[int] = None  # requests one poll must make (retries, or none)
    peak_mib: int = 8  # what the failed poll may allocate at its peak (the in-process fake API's allocations included)


def reply(*args: Any, **kwargs: Any) -> Callable[[FaultServers, str], Served]:
    return lambda servers, path: (servers.route(path, Reply(*args, **kwargs)), {})


RETRIED = {"retries": {"attempts": 2, "backoff": "10ms"}}
CAP = {"max_response_bytes": "1MiB", "timeout": "2s"}

FAULTS = [
    Fault("connection-refused", "connection", r"cannot connect: \[Errno 111\] Connection refused",
          lambda s, p: (f"http://127.0.0.1:{closed_port()}{p}", {})),
    Fault("unresolvable-host", "connection", r"cannot connect: \[Errno -\d+\] (Name or service not known|Temporary failure in name resolution)",
          lambda s, p: (f"http://metrics-api.invalid{p}", {})),
    # A handshake takes 0.2 s of CPU here: 0.5 s is too tight a deadline for it when every fault runs at once.
    Fault("tls-self-signed-certificate", "tls", r"TLS handshake failed: .*certificate verify failed: self.signed certificate",
          lambda s, p: (s.https(p, "self-signed"), {}), {"timeout": "2s"}),
    Fault("tls-certificate-for-another-host", "tls", r"TLS handshake failed: .*certificate verify failed: (IP address|Hostname) mismatch",
          lambda s, p: (s.https(p, "other-host"), {"tls": {"ca_file": str(s.ca_file)}}), {"timeout": "2s"}),
    Fault("connect-timeout", "timeout", r"no connection within 0\.5s \(connect timeout\)$",
          lambda s, p: (s.backlog_full(), {})),
    Fault("read-timeout", "timeout", r"no answer within 0\.5s \(read timeout\)$", reply(pods_doc("a"), delay=5)),
    Fault("body-dripping-past-the-deadline", "timeout", r"body still arriving after 0\.5s",
          reply(pods_doc(*"abcdefgh"), drip_interval=0.02)),
    *[
        Fault(f"http-{status}", "http_status", rf"HTTP {status} {phrase}$", reply({"error": phrase}, status=status),
              RETRIED, requests=2)
        for status, phrase in ((500, "Internal Server Error"), (502, "Bad Gateway"), (503, "Service Unavailable"))
    ],
    Fault("http-429-with-retry-after-beyond-the-deadline", "http_status", r"HTTP 429 Too Many Requests$",
          reply({"error": "slow down"}, status=429, headers={"Retry-After": "30"}), {"retries": {"attempts": 3}}, requests=1),
    Fault("http-401", "http_status", r"HTTP 401 Unauthorized$", reply({"error": "who?"}, status=401),
          {"retries": {"attempts": 3}}, requests=1),
    Fault("http-403", "http_status", r"HTTP 403 Forbidden$", reply({"error": "no"}, status=403),
          {"retries": {"attempts": 3}}, requests=1),
    Fault("html-error-page-with-status-200", "invalid_json", r"response is not valid JSON \(content-type text/html\): ",
          reply(b"<html><body><h1>502 Bad Gateway</h1></body></html>", headers={"Content-Type": "text/html; charset=utf-8"})),
    Fault("empty-body", "invalid_json", r"empty response body$", reply(b"")),
    Fault("truncated-json", "invalid_json", r"response is not valid JSON: ", reply(orjson.dumps(pods_doc("a", "b"))[:40])),
    Fault("connection-closed-mid-body", "connection", r"connection broken while reading: ",
          reply(orjson.dumps(pods_doc("a"))[:40], content_length=500, headers={"Connection": "close"})),
    Fault("invalid-utf8", "invalid_json", r"response is not valid JSON: .*UTF-8",
          reply(b'{"items": [{"ns": "inference", "name": "\xff\xfe", "cpu": "1", "restarts": 0}]}')),
    Fault("body-over-the-size-cap-without-a-length", "too_large",
          r"response exceeds max_response_bytes \(1048576\) while streaming$",
          lambda s, p: (s.lazy_body(200 * MiB).url, {}), CAP),
    Fault("body-over-the-size-cap-with-its-length", "too_large",
          r"Content-Length 209715200 exceeds max_response_bytes \(1048576\)$",
          lambda s, p: (s.lazy_body(200 * MiB, declare_length=True).url, {}), CAP),
    Fault("document-nested-100000-deep", "invalid_json", r"response is not valid JSON: .*depth limit exceeded",
          reply(nested_bytes(100_000))),
    Fault("value-nested-500-deep", "mapping", r"mappings\[0\]\.metrics\[0\] pod_cpu_usage_cores \(value 'cpu'\): not a number: \[\[\[",
          reply(b'{"items": [{"ns": "inference", "name": "a", "restarts": 0, "cpu": ' + nested_bytes(500) + b"}]}")),
    Fault("array-of-the-wrong-type", "mapping", r"mappings\[0\]\.each\[0\] 'items': expected an array or object, got str$",
          reply({"items": "temporarily unavailable"})),
    Fault("value-of-the-wrong-type", "mapping", r"mappings\[0\]\.metrics\[0\] pod_cpu_usage_cores \(value 'cpu'\): not a number: \{'m': 5\}$",
          reply({"items": [{"ns": "inference", "name": "a", "cpu": {"m": 5}, "restarts": 0}]})),
    Fault("missing-pod-name", "mapping", r"mappings\[0\]\.metrics\[0\] pod_cpu_usage_cores: empty 'pod' label$",
          reply({"items": [{"ns": "inference", "cpu": "1", "restarts": 0}]})),
    Fault("pagination-token-returned-forever", "pagination",
          r"the API returned page token number 1 again \(a pagination loop\)$",
          reply({**pods_doc("a"), "next": "same-token"}),
          {"pagination": {"type": "next_token", "next_token_path": "next", "token_param": "page_token"}}, requests=2),
    Fault("redirect-loop", "http_status", r"stopped after 10 redirects \(the last: HTTP 302\)$",
          lambda s, p: (s.route(p, Reply(status=302, headers={"Location": p})), {}), RETRIED, requests=10),
    Fault("redirect-with-follow-redirects-off", "http_status", r"HTTP 301 Moved Permanently$",
          lambda s, p: (s.route(p, Reply(status=301, headers={"Location": "/healthy"})), {}),
          {"follow_redirects": False, **RETRIED}, requests=1),
    Fault("pages-each-under-the-cap-but-over-it-together", "too_large",
          r"Content-Length \d+ exceeds max_response_bytes \(1048576\), counting the \d+ bytes of earlier pages$",
          lambda s, p: (s.route(p, lambda request: Reply({**pods_doc("a"), "pad": "x" * 400_000, "next": str(len(s.api.requests))})), {}),
          {**CAP, "pagination": {"type": "next_token", "next_token_path": "next", "token_param": "page_token"}}, requests=3,
          peak_mib=16),  # three 0.4 MB pages, each built, encoded and parsed in this process
    Fault("pagination-path-given-the-wrong-type", "pagination",
          r"""path "join\(',', next\)" failed on the document: In function join\(\), invalid type for value: 5""",
          reply({**pods_doc("a"), "next": 5}),
          {"pagination": {"type": "next_token", "next_token_path": "join(',', next)", "token_param": "page_token"}}, requests=1),
]


@pytest.mark.parametrize("fault", FAULTS, ids=lambda fault: fault.name)
def test_a_fault_fails_only_its_own_target_and_counts_its_reason(fault, servers, run_bridge, caplog):
    promtool = require_tool("promtool")
    url, settings = fault.serve(servers, "/fault")
    config = config_text(target("healthy", servers.api.url("/healthy"), timeout="2s"), target("faulty", url, **fault.settings, **settings))
    running = run_bridge(config, schedule=False)
    bridge = running.bridge
    assert bridge.poll_now("healthy") is True
    caplog.set_level(logging.WARNING, logger="exporter.poll")
    tracemalloc.start()
    try:
        assert bridge.poll_now("faulty") is False
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert bridge.poll_now("healthy") is True

    text = scrape(running.url)
    assert failures(text, "faulty") == {reason: float(reason == fault.reason) for reason in FAILURE_REASONS}
    assert failures(text, "healthy") == {reason: 0.0 for reason in FAILURE_REASONS}
    assert value(text, "metrics_bridge_target_up", target="faulty") == 0
    assert value(text, "metrics_bridge_target_up", target="healthy") == 1
    assert value(text, "metrics_bridge_series", target="faulty") == 0
    assert pods_served(text) == {"healthy": ["g1", "g2"]}
    assert promtool_check(promtool, text) == (0, "", "")

    record = targets_api(running.url)["faulty"]
    assert (record["outcome"], record["healthy"]) == (f"failure ({fault.reason})", False)
    assert re.search(fault.error, record["last_error"]), record["last_error"]
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "exporter.poll" and r.levelno == logging.WARNING]
    assert warning == f"poll of faulty failed: reason={fault.reason}: {record['last_error']}"
    page = requests.get(running.url + "/", timeout=10).text
    assert f'<span class="badge failure">failure ({fault.reason})</span>' in page
    assert targets_api(running.url)["healthy"]["outcome"] == "success"
    assert requests.get(running.url + "/healthz", timeout=10).status_code == 200
    assert peak < fault.peak_mib * MiB, f"the failed poll allocated {peak / MiB:.1f} MiB at its peak"
    if fault.requests is not None:
        assert len([r for r in servers.api.requests if r.path == "/fault"]) == fault.requests


def test_a_body_over_the_size_cap_is_never_read_whole(servers, run_bridge):
    """1 MiB cap, 200 MiB body generated as it is sent: the poll stops near the cap and holds about the cap."""
    body = servers.lazy_body(200 * MiB)
    running = run_bridge(config_text(target("huge", body.url, **CAP)), schedule=False)
    tracemalloc.start()
    try:
        assert running.bridge.poll_now("huge") is False
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    wait_until(body.finished.is_set, timeout=10)
    (sent,) = body.sent
    # What left the fake before the client hung up: the cap plus what the loopback socket buffers held.
    assert 1 * MiB < sent < 32 * MiB, f"the fake sent {sent / MiB:.1f} MiB of 200"
    assert peak < 4 * MiB, f"the poll allocated {peak / MiB:.1f} MiB at its peak"
    assert running.bridge.pollers["huge"].status.last_outcome == "failure (too_large)"


GiB = 1024 * MiB

PEAK_RSS_OF_ONE_POLL = """
import resource, sys, time
from exporter.client import FetchError, TargetClient
from exporter.config import parse_config

client = TargetClient(parse_config(sys.stdin.read()).targets[0])
started = time.monotonic()
try:
    outcome = f"success: {client.fetch().documents}"
except FetchError as error:
    outcome = f"{error.reason}: {error}"
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, time.monotonic() - started, outcome)
"""


def one_poll_alone(config: str) -> tuple[int, float, str]:
    """Poll once in a fresh interpreter (so the peak is this poll's alone); return its peak RSS, duration and outcome."""
    done = subprocess.run([sys.executable, "-c", PEAK_RSS_OF_ONE_POLL], input=config, capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    peak, duration, outcome = done.stdout.strip().split(" ", 2)
    return int(peak), float(duration), outcome


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """1 GiB of zeros, gzip-encoded in about 1 MiB: 64 gzip members of 16 MiB each (RFC 1952 allows concatenation)."""
    import gzip

    member = gzip.compress(bytes(16 * MiB), compresslevel=9)
    return member * 64


@pytest.mark.parametrize("status", [200, 302])
def test_a_gzip_bomb_costs_no_more_memory_than_the_cap(status, servers, gzip_bomb):
    """A 1 GiB gzip bomb, as a 200 body and as the body of a 302: decoded bytes stop at the cap, a redirect's body is
    never read at all, and the poll's peak RSS stays under 300 MiB (it was 2.1 GiB when requests read 3xx bodies)."""
    assert len(gzip_bomb) < 2 * MiB
    headers = {"Content-Encoding": "gzip"}
    if status == 302:
        headers["Location"] = "/healthy"
    url = servers.route("/bomb", Reply(gzip_bomb, status=status, headers=headers))
    peak, _, outcome = one_poll_alone(config_text(target("bomb", url, timeout="5s")))
    if status == 200:
        assert outcome == "too_large: response exceeds max_response_bytes (52428800) while streaming"
    else:
        assert outcome.startswith("success: [{'items': [{'ns': 'inference', 'name': 'g1'")
        assert [r.path for r in servers.api.requests] == ["/bomb", "/healthy"]
    assert peak < 300 * MiB, f"peak RSS {peak / MiB:.0f} MiB"


def test_a_302_dripping_its_body_to_a_dripping_200_fails_within_the_timeout(servers):
    servers.route("/slow", Reply(orjson.dumps(pods_doc("a")), drip_interval=0.5))
    url = servers.route("/drip302", Reply(b"x" * 60, status=302, headers={"Location": "/slow"}, drip_interval=0.5))
    _, duration, outcome = one_poll_alone(config_text(target("drip", url, timeout="1.5s")))
    assert outcome == "timeout: body still arriving after 1.5s"
    assert 1.5 <= duration < 2


def test_repeated_failures_hold_no_memory(servers, run_bridge):
    """Fifteen more failed polls of each of three kinds leave the bridge's part of the heap where three left it."""
    servers.route("/html", Reply(b"<html>down</html>", headers={"Content-Type": "text/html"}))
    servers.route("/503", Reply({"error": "x"}, status=503))
    # Polls are slow under tracemalloc; a generous deadline keeps each failing for the same reason every time.
    config = config_text(
        target("html", servers.api.url("/html"), timeout="5s"), target("unavailable", servers.api.url("/503"), timeout="5s"),
        target("refused", f"http://127.0.0.1:{closed_port()}/m", timeout="5s"),
    )
    bridge = run_bridge(config, schedule=False).bridge

    def fail_all(times: int) -> None:
        for _ in range(times):
            for name in ("html", "unavailable", "refused"):
                assert bridge.poll_now(name) is False

    def bridge_heap() -> int:
        """Bytes allocated with a metrics-bridge frame on the stack (the fake API's threads have none), leaving out
        the log records pytest keeps for its report."""
        gc.collect()
        snapshot = tracemalloc.take_snapshot().filter_traces([
            tracemalloc.Filter(True, str(ROOT / "exporter" / "*"), all_frames=True),
            tracemalloc.Filter(False, logging.__file__, all_frames=True),
        ])
        return sum(stat.size for stat in snapshot.statistics("filename"))

    fail_all(5)
    tracemalloc.start(25)
    try:
        fail_all(3)
        before = bridge_heap()
        fail_all(15)
        after = bridge_heap()
    finally:
        tracemalloc.stop()
    assert after - before < 16 * 1024, f"{(after - before) / 1024:.0f} KiB more after 45 failed polls"


TOLERATED = [
    pytest.param(
        b'{"items": [{"ns": "inference", "name": "a", "cpu": NaN, "restarts": Infinity},'
        b' {"ns": "inference", "name": "b", "cpu": -Infinity, "restarts": 2}]}',
        {"a": ("NaN", "+Inf"), "b": ("-Inf", "2")}, 0, id="nan-and-infinity-literals",
    ),
    pytest.param(
        b'{"items": [{"ns": "inference", "name": "a", "restarts": 3}, {"ns": "inference", "name": "b"}]}',
        {"a": (None, "3")}, 3, id="missing-value-fields",
    ),
    pytest.param(
        b'{"items": [{"ns": "inference", "name": "a", "cpu": 1' + b"0" * 400 + b', "restarts": 1}]}',
        {"a": ("+Inf", "1")}, 0, id="integer-beyond-the-float-range",
    ),
    pytest.param(
        b'{"items": [{"ns": "inference", "name": "a\\ud800", "cpu": "1", "restarts": 1}]}',
        {"a?": ("1", "1")}, 0, id="lone-surrogate-in-a-label-value",
    ),
    pytest.param(
        b'{"kind": "PodList", "items": [{"ns": "inference", "name": "a", "cpu": "2", "restarts": 0, "extra": {"x": [1, null]}}]}',
        {"a": ("2", "0")}, 0, id="unknown-fields",
    ),
    pytest.param(b'{"items": []}', {}, 0, id="no-items-at-all"),
]


@pytest.mark.parametrize("body, expected, missing", TOLERATED)
def test_odd_but_readable_answers_are_served_and_what_is_missing_is_counted(body, expected, missing, servers, run_bridge):
    promtool = require_tool("promtool")
    running = run_bridge(config_text(target("odd", servers.route("/odd", Reply(body)))), schedule=False)
    assert running.bridge.poll_now("odd") is True
    text = scrape(running.url)
    lines = {line.split("{")[0] + ":" + re.search(r'pod="([^"]*)"', line).group(1): line.rsplit(" ", 1)[1]
             for line in text.splitlines() if line.startswith("pod_")}
    for pod, (cpu, restarts) in expected.items():
        assert lines.get(f"pod_cpu_usage_cores:{pod}") == cpu
        assert lines.get(f"pod_restarts_total:{pod}") == restarts
    assert len(lines) == sum(v is not None for pair in expected.values() for v in pair)
    assert value(text, "metrics_bridge_target_up", target="odd") == 1
    assert value(text, "metrics_bridge_samples_dropped_total", target="odd", reason="missing_value") == missing
    assert promtool_check(promtool, text) == (0, "", "")


def test_a_flapping_target_is_served_stale_until_stale_after_then_dropped_and_restored(servers, run_bridge, caplog):
    promtool = require_tool("promtool")
    api = servers.api
    api.routes["/flappy"] = Reply(pods_doc("a", "b"))
    running = run_bridge(
        config_text(target("healthy", api.url("/healthy")), target("flappy", api.url("/flappy"), interval="1s", stale_after="0.5s")),
        schedule=False,
    )
    bridge = running.bridge
    caplog.set_level(logging.WARNING, logger="exporter.poll")
    flaps = 0
    for names in (("a", "b"), ("c",), ("d", "e")):  # up, down, up, down, ... each failure within stale_after
        api.routes["/flappy"] = Reply(pods_doc(*names))
        assert bridge.poll_now("flappy") and bridge.poll_now("healthy")
        api.routes["/flappy"] = Reply({"error": "flap"}, status=503)
        assert not bridge.poll_now("flappy")
        flaps += 1
        text = scrape(running.url)
        assert pods_served(text) == {"flappy": sorted(names), "healthy": ["g1", "g2"]}  # the last good poll, still served
        assert value(text, "metrics_bridge_target_up", target="flappy") == 0
        assert value(text, "metrics_bridge_series", target="flappy") == 2 * len(names)  # two metrics a pod
        assert value(text, "metrics_bridge_poll_failures_total", target="flappy", reason="http_status") == flaps
        assert promtool_check(promtool, text) == (0, "", "")
    # A failure that outlasts stale_after: scrapes leave the snapshot out at once, the next failed poll drops it.
    wait_until(lambda: "flappy" not in pods_served(scrape(running.url)), timeout=5)
    assert not bridge.poll_now("flappy")
    assert "flappy" not in bridge.store.current()
    text = scrape(running.url)
    assert pods_served(text) == {"healthy": ["g1", "g2"]}
    assert value(text, "metrics_bridge_series", target="flappy") == 0
    assert promtool_check(promtool, text) == (0, "", "")
    assert caplog.records[-1].getMessage() == "poll of flappy failed: reason=http_status: HTTP 503 Service Unavailable; stale snapshot dropped"
    api.routes["/flappy"] = Reply(pods_doc("z"))
    assert bridge.poll_now("flappy") is True
    text = scrape(running.url)
    assert pods_served(text) == {"flappy": ["z"], "healthy": ["g1", "g2"]}
    assert value(text, "metrics_bridge_target_up", target="flappy") == 1
    assert value(text, "metrics_bridge_poll_success_total", target="flappy") == 4
    assert value(text, "metrics_bridge_poll_failures_total", target="flappy", reason="http_status") == 4
    assert targets_api(running.url)["flappy"]["outcome"] == "success"


def test_every_fault_at_once_leaves_the_process_up_serving_the_healthy_target_and_valid_metrics(servers, tmp_path):
    """`metrics-bridge run` with one target per fault, all polled every 2 s by the scheduler, next to a healthy one."""
    promtool = require_tool("promtool")
    # Every target's first poll comes at once: a listen backlog of 5 (socketserver's default) would drop SYNs.
    servers.api.httpd.socket.listen(128)
    targets = [target("healthy", servers.api.url("/healthy"), interval="2s", timeout="1s")]
    for fault in FAULTS:
        url, settings = fault.serve(servers, f"/{fault.name}")
        targets.append(target(fault.name, url, **{**fault.settings, "interval": "2s"}, **settings))
    config = tmp_path / "storm.yaml"
    config.write_text(config_text(*targets))
    port = closed_port()
    url = f"http://127.0.0.1:{port}"
    with open(tmp_path / "stderr.log", "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "exporter", "run", "--config", str(config), f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=stderr, cwd=ROOT,
        )
    try:
        def every_target_polled_twice() -> bool:
            try:
                records = targets_api(url)
            except requests.ConnectionError:
                return False
            return len(records) == len(targets) and all(r["polls"] >= 2 for r in records.values())

        wait_until(every_target_polled_twice, timeout=40, interval=0.2)
        text = scrape(url)
        for fault in FAULTS:
            counted = failures(text, fault.name)
            assert counted[fault.reason] >= 2, (fault.name, counted)
            assert sum(counted.values()) == counted[fault.reason], (fault.name, counted)
            assert value(text, "metrics_bridge_target_up", target=fault.name) == 0
        assert value(text, "metrics_bridge_target_up", target="healthy") == 1
        assert pods_served(text) == {"healthy": ["g1", "g2"]}
        assert promtool_check(promtool, text) == (0, "", "")
        assert requests.get(url + "/healthz", timeout=10).status_code == 200
        assert value(text, "process_resident_memory_bytes") < 200 * MiB  # two 200 MiB bodies were offered, repeatedly
        assert process.poll() is None
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
    log = (tmp_path / "stderr.log").read_text()
    assert code == 0
    assert "Traceback" not in log
    for fault in FAULTS:
        assert f" WARNING exporter.poll: poll of {fault.name} failed: reason={fault.reason}: " in log


def test_every_failure_reason_is_documented_in_the_failures_table():
    table = (ROOT / "docs" / "failures.md").read_text(encoding="utf-8")
    for reason in FAILURE_REASONS:
        assert f"`{reason}`" in table, reason


# ---------------------------------------------------------------------------------------------------------------------
# Bad input from the user
# ---------------------------------------------------------------------------------------------------------------------

GOOD = {
    "targets": [
        {"name": "api", "url": "http://127.0.0.1:9/m", "interval": "10s", "timeout": "2s", "mappings": POD_MAPPINGS},
    ]
}


def good_config(**changes: Any) -> dict:
    """A copy of GOOD with the first target's keys changed (None removes a key)."""
    config = yaml.safe_load(yaml.safe_dump(GOOD))
    for key, new in changes.items():
        if new is None:
            config["targets"][0].pop(key)
        else:
            config["targets"][0][key] = new
    return config


def with_mapping(**changes: Any) -> dict:
    mapping = {**POD_MAPPINGS[0], **changes}
    return good_config(mappings=[mapping])


BAD_CONFIGS = [
    pytest.param(
        "targets:\n  - name: api\n    url: [http://127.0.0.1:9/m\n",
        ["<yaml> line 4, column 1: expected ',' or ']', but got '<stream end>'"], id="invalid-yaml",
    ),
    pytest.param(good_config(intervall="10s"), ["targets[0].intervall: unknown key (did you mean 'interval'?)"], id="unknown-key"),
    pytest.param(
        good_config(interval="soon"), ["targets[0].interval: not a duration: 'soon' (use a number of seconds, or 15s, 1m30s, 250ms, 1h, PT1M)"], id="duration-of-the-wrong-type",
    ),
    pytest.param(
        good_config(retries={"attempts": "many"}),
        ["targets[0].retries.attempts: must be a valid integer, unable to parse string as an integer"],
        id="number-of-the-wrong-type",
    ),
    pytest.param(
        good_config(mappings={"each": "items"}), ["targets[0].mappings: must be a valid list, got a mapping"],
        id="list-of-the-wrong-type",
    ),
    pytest.param(
        with_mapping(metrics=[{"name": "pod cpu", "value": "cpu"}]),
        ["targets[0].mappings[0].metrics[0].name: 'pod cpu' is not a valid Prometheus metric name"], id="bad-metric-name",
    ),
    pytest.param(
        with_mapping(labels={"namespace": "ns", "pod": "name", "pod-ip": "ip"}),
        ["targets[0].mappings[0].labels: 'pod-ip' is not a valid Prometheus label name"], id="bad-label-name",
    ),
    pytest.param(
        with_mapping(labels={"namespace": "ns", "pod": "name", "level": "tier"}),
        ["targets[0].mappings[0].labels: label 'level' is set by metrics-bridge itself and cannot be configured"],
        id="label-clashing-with-level",
    ),
    pytest.param(
        good_config(labels={"level": "gold"}),
        ["targets[0].labels: label 'level' is set by metrics-bridge itself and cannot be configured"],
        id="target-label-clashing-with-level",
    ),
    pytest.param(
        {"targets": GOOD["targets"] * 2},
        ["targets[1].name: duplicate target name 'api' (first at targets[0])"], id="duplicate-target-names",
    ),
    pytest.param(
        with_mapping(labels={"namespace": "ns", "pod": {"path": "name", "regex": "(pod-[0-9+"}}),
        ["targets[0].mappings[0].labels.pod.regex: regex '(pod-[0-9+' is not valid RE2 syntax: missing ]: [0-9+"],
        id="label-regex-that-does-not-compile",
    ),
    pytest.param(
        good_config(auth={"bearer_token_file": "/nonexistent/metrics-bridge/token"}),
        ["targets[0].auth.bearer_token_file: cannot read secret file '/nonexistent/metrics-bridge/token': No such file or directory"],
        id="missing-secret-file",
    ),
    pytest.param(
        good_config(auth={"basic": {"username": "svc", "password_file": "/"}}),
        ["targets[0].auth.basic.password_file: cannot read secret file '/': Is a directory"],
        id="secret-file-that-is-a-directory",
    ),
]


def as_text(config: Any) -> str:
    return config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)


@pytest.mark.parametrize("config, problems", BAD_CONFIGS)
def test_a_bad_config_is_rejected_with_its_key_path_and_a_sentence(config, problems):
    with pytest.raises(ConfigError) as caught:
        parse_config(as_text(config))
    assert caught.value.problems == problems


@pytest.mark.parametrize("config, problems", BAD_CONFIGS)
def test_check_exits_non_zero_listing_the_problems_without_a_traceback(config, problems, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "configure_logging", lambda *args: None)  # leave pytest's log capture alone
    path = tmp_path / "bad.yaml"
    path.write_text(as_text(config))
    assert cli.main(["check", "--config", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"metrics-bridge: invalid configuration {path}:\n" + "".join(f"  {p}\n" for p in problems)


@pytest.mark.parametrize("config, problems", BAD_CONFIGS)
def test_a_bad_config_through_reload_keeps_the_running_config(config, problems, servers, tmp_path, caplog):
    path = tmp_path / "config.yaml"
    good = config_text(target("healthy", servers.api.url("/healthy")))
    path.write_text(good)
    bridge = Bridge(parse_config(good), process_metrics=False)
    server = MetricsServer(create_app(bridge, str(path), lifecycle=True), "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{server.port}"
    try:
        bridge.start(schedule=False)
        running_config, running_pollers = bridge.config, bridge.pollers
        path.write_text(as_text(config))
        response = requests.post(url + "/-/reload", timeout=10)
        assert (response.status_code, response.text) == (
            400, "configuration rejected, still running the previous one:\n" + "".join(f"  {p}\n" for p in problems),
        )
        assert bridge.reload_from_file(str(path)) == (False, problems)
        assert bridge.config is running_config and bridge.pollers is running_pollers
        assert bridge.poll_now("healthy") is True
        text = scrape(url)
        assert pods_served(text) == {"healthy": ["g1", "g2"]}
        assert value(text, "metrics_bridge_config_last_reload_successful") == 0
        rejected = [r for r in caplog.records if r.getMessage().startswith("configuration reload rejected, keeping the running configuration")]
        assert len(rejected) == 2 and all(r.levelno == logging.ERROR for r in rejected)
    finally:
        bridge.stop(1)
        server.close()


# ---------------------------------------------------------------------------------------------------------------------
# Secrets
# ---------------------------------------------------------------------------------------------------------------------

SECRETS = {
    "bearer token": "bearer-7f3a-SECRET",
    "basic password": "basic-pw-91c2-SECRET",
    "API key": "apikey-5d8e-SECRET",
    "token in the URL query": "query-token-0b7d-SECRET",
    "secret-looking param": "signature-33aa-SECRET",
    "param listed in secret_params": "tenant-hash-6c1f-SECRET",
    "password in the URL userinfo": "userinfo-pw-48e0-SECRET",
    "Alibaba AccessKey ID": "LTAI-ak-2f6b-SECRET",
    "Alibaba AccessKey secret": "alibaba-sk-8d1e-SECRET",
    "Alibaba STS token": "alibaba-sts-a7c3-SECRET",
    "Huawei AK": "HW-ak-61d0-SECRET",
    "Huawei SK": "huawei-sk-c4b9-SECRET",
    "Huawei security token": "huawei-sts-0e5a-SECRET",
    "Volcengine access key ID": "AKLT-ak-93f2-SECRET",
    "Volcengine secret key": "volc-sk-1b7d-SECRET",
    "Volcengine session token": "volc-sts-5c28-SECRET",
    "Baidu AK": "bce-ak-7e41-SECRET",
    "Baidu SK": "bce-sk-2a9c-SECRET",
    "value under headers:": "header-value-2a9f-SECRET",
    "page token from the API": "page-token-71bd-SECRET",
    "cursor in a rel=next link": "link-cursor-e5c3-SECRET",
    "OAuth2 client secret": "oauth2-client-9e4b-SECRET",
    "AWS secret key": "aws-secret-key-27fd-SECRET",
    "AWS session token": "aws-session-token-c3a9-SECRET",
}


@pytest.fixture
def debug_log(tmp_path):
    """A function that sets up metrics-bridge's own logging at DEBUG, to stderr and a file, as `run --log-level debug
    --log-file` does, and returns the file; pytest's log capture comes back after the test (conftest's
    logging_is_restored). (Called from the test body, so that stderr is the one capsys reads.)"""
    path = tmp_path / "bridge.log"

    def set_up() -> Path:
        configure_logging("debug", "text", str(path))
        return path

    return set_up


def test_planted_secrets_never_reach_logs_pages_metrics_errors_or_check_output(servers, tmp_path, debug_log, capsys, monkeypatch):
    log_file = debug_log()
    s = SECRETS
    api = servers.api
    password_file = tmp_path / "password"
    password_file.write_text(s["basic password"] + "\n")
    api.routes["/ok"] = Reply(pods_doc("a"))
    api.routes["/denied"] = Reply({"error": "unknown key"}, status=401)
    # An API that echoes the token back where a number belongs: the mapping error quotes the value.
    api.routes["/echo"] = Reply({"items": [{"ns": "inference", "name": "a", "cpu": s["bearer token"], "restarts": 0}]})
    api.routes["/html"] = Reply(f"<html>bad token {s['bearer token']}</html>", headers={"Content-Type": "text/html"})
    # Echoes of a header value and of a page token where a number belongs; a rel=next link that does not parse.
    api.routes["/echo-header"] = lambda request: Reply({"items": [{"ns": "inference", "name": "a", "cpu": request.headers["x-tenant-hash"]}]})
    api.routes["/echo-token"] = lambda request: Reply(
        {"items": [], "next": s["page token from the API"]} if "page" not in request.query
        else {"items": [{"ns": "inference", "name": "a", "cpu": request.query["page"]}], "next": None}
    )
    api.routes["/bad-link"] = Reply(pods_doc("a"), headers={"Link": f'<http://127.0.0.1:99999/m?cursor={s["cursor in a rel=next link"]}>; rel="next"'})
    port = api.httpd.server_address[1]
    query = f"access_token={s['token in the URL query']}&region=eu"
    params = {"signature": s["secret-looking param"], "tenant": s["param listed in secret_params"], "zone": "a"}
    bearer = {"bearer_token": s["bearer token"]}
    userinfo = f"svc:{s['password in the URL userinfo']}@"
    alibaba = {"action": "DescribeMetricList", "version": "2019-01-01", "access_key_id": s["Alibaba AccessKey ID"],
               "access_key_secret": s["Alibaba AccessKey secret"], "security_token": s["Alibaba STS token"]}
    huawei = {"access_key_id": s["Huawei AK"], "secret_access_key": s["Huawei SK"], "security_token": s["Huawei security token"]}
    volcengine = {"access_key_id": s["Volcengine access key ID"], "secret_access_key": s["Volcengine secret key"],
                  "session_token": s["Volcengine session token"], "region": "cn-beijing", "service": "ml_platform"}
    baidu = {"access_key_id": s["Baidu AK"], "secret_access_key": s["Baidu SK"]}
    # Loopback APIs that verify each provider's signature with its official SDK (tests/signatures.py).
    api.routes["/alibaba-v3"] = VerifyingRoute(lambda r: verify_alibaba_v3(r, alibaba["access_key_id"], alibaba["access_key_secret"]), Reply(pods_doc("a")))
    api.routes["/alibaba-rpc"] = VerifyingRoute(lambda r: verify_alibaba_rpc(r, alibaba["access_key_id"], alibaba["access_key_secret"]), Reply(pods_doc("a")))
    api.routes["/huawei"] = VerifyingRoute(lambda r: verify_huawei(r, huawei["access_key_id"], huawei["secret_access_key"]), Reply(pods_doc("a")))
    api.routes["/volcengine"] = VerifyingRoute(
        lambda r: verify_volcengine(r, volcengine["access_key_id"], volcengine["secret_access_key"], "cn-beijing", "ml_platform"), Reply(pods_doc("a")))
    api.routes["/baidu"] = VerifyingRoute(lambda r: verify_baidu(r, baidu["access_key_id"], "the-key-the-api-expects"), Reply(pods_doc("a")))
    # OAuth2: a token endpoint issuing tokens to the planted client secret; an API that echoes the token into a value;
    # a hostile token endpoint that quotes the credentials it got (basic header, then form) in its error.
    token_server = OAuth2TokenServer("bridge", s["OAuth2 client secret"]).start()
    oauth2 = {"oauth2": {"client_id": "bridge", "client_secret": s["OAuth2 client secret"], "token_url": token_server.token_url}}
    api.routes["/oauth2"] = token_server.bearer_route(Reply(pods_doc("a")))
    api.routes["/oauth2-echo"] = lambda r: Reply({"items": [{"ns": "i", "name": "a", "cpu": r.headers["authorization"][7:], "restarts": 0}]})
    api.routes["/token-echo"] = lambda r: Reply({"error": "invalid_client", "error_description": f"{r.headers.get('authorization')} {r.body.decode()}"}, status=401)
    hostile_token = {"oauth2": {**oauth2["oauth2"], "token_url": api.url("/token-echo")}}
    # SigV4: keys with a session token, a role assumed through a loopback STS, and an API that echoes the signature.
    aws = {"region": "eu-west-1", "service": "monitoring", "access_key": "AKIAPLANTED", "secret_key": s["AWS secret key"],
           "session_token": s["AWS session token"]}
    sts = LoopbackSTS({"AKIAPLANTED": s["AWS secret key"]}, "eu-west-1", "arn:aws:iam::123456789012:role/reader")
    api.routes["/sts"] = sts.route
    api.routes["/sigv4"] = sigv4_route({"AKIAPLANTED": s["AWS secret key"]}, "eu-west-1", "monitoring", Reply(pods_doc("a")))
    api.routes["/sigv4-role"] = lambda r: sigv4_route(sts.temporary_keys(), "eu-west-1", "monitoring", Reply(pods_doc("a")), sts.temporary_tokens())(r)
    api.routes["/sigv4-echo"] = lambda r: Reply({"items": [{"ns": "i", "name": "a", "cpu": sigv4_fields(r.headers)["signature"], "restarts": 0}]})
    role = {**aws, "role_arn": sts.role_arn, "sts_endpoint": api.url("/sts")}
    targets = [
        target("alibaba-v3-ok", api.url("/alibaba-v3"), method="POST", body={"Namespace": "acs_pai_eas"}, auth={"alibaba": alibaba}),
        target("alibaba-rpc-ok", api.url("/alibaba-rpc"), params={"Namespace": "acs_pai_eas"}, auth={"alibaba": {**alibaba, "signature": "rpc"}}),
        target("huawei-ok", api.url("/huawei"), auth={"huawei": huawei}),
        target("volcengine-ok", api.url("/volcengine"), auth={"volcengine": volcengine}),
        target("baidu-denied", api.url("/baidu"), auth={"baidu": baidu}),
        target("alibaba-refused", f"http://127.0.0.1:{closed_port()}/m", auth={"alibaba": {**alibaba, "signature": "rpc"}}),
        target("bearer-ok", f"{api.url('/ok')}?{query}", auth=bearer, params=params, secret_params=["tenant"]),
        target("basic-ok", api.url("/ok"), auth={"basic": {"username": "svc", "password_file": str(password_file)}}),
        target("userinfo-ok", f"http://{userinfo}127.0.0.1:{port}/ok?{query}"),
        target("apikey-denied", api.url("/denied"), auth={"api_key": {"header": "X-API-Key", "value": s["API key"]}}),
        target("refused", f"http://{userinfo}127.0.0.1:{closed_port()}/m?{query}", auth=bearer, params=params, secret_params=["tenant"]),
        target("unresolvable", f"http://{userinfo}metrics-api.invalid/m?{query}", auth=bearer, params=params, secret_params=["tenant"]),
        target("echo", api.url("/echo"), auth=bearer),
        target("html", api.url("/html"), auth=bearer),
        target("header-echo", api.url("/echo-header"), headers={"X-Tenant-Hash": s["value under headers:"], "Accept": "application/json"},
               safe_headers=["Accept"]),
        target("token-echo", api.url("/echo-token"), pagination={"type": "next_token", "next_token_path": "next", "token_param": "page"}),
        target("bad-link", api.url("/bad-link"), pagination={"type": "link_header"}),
        target("oauth2-ok", api.url("/oauth2"), auth=oauth2),
        target("oauth2-echo", api.url("/oauth2-echo"), auth=oauth2),
        target("oauth2-hostile-token-endpoint", api.url("/oauth2"), auth=hostile_token),
        target("sigv4-ok", api.url("/sigv4"), auth={"sigv4": aws}, method="POST", body={"Namespace": "AWS/SageMaker"}),
        target("sigv4-role", api.url("/sigv4-role"), auth={"sigv4": role}),
        target("sigv4-echo", api.url("/sigv4-echo"), auth={"sigv4": aws}),
    ]
    path = tmp_path / "config.yaml"
    path.write_text(config_text(*targets))
    config = parse_config(path.read_text())
    outputs: dict[str, str] = {}

    bridge = Bridge(config, process_metrics=False)
    server = MetricsServer(create_app(bridge, str(path), lifecycle=True), "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{server.port}"
    try:
        bridge.start(schedule=False)
        outcomes = {t["name"]: bridge.poll_now(t["name"]) for t in targets}
        assert outcomes == {"alibaba-v3-ok": True, "alibaba-rpc-ok": True, "huawei-ok": True, "volcengine-ok": True,
                            "baidu-denied": False, "alibaba-refused": False,
                            "bearer-ok": True, "basic-ok": True, "userinfo-ok": True, "apikey-denied": False,
                            "refused": False, "unresolvable": False, "echo": False, "html": False,
                            "header-echo": False, "token-echo": False, "bad-link": False,
                            "oauth2-ok": True, "oauth2-echo": False, "oauth2-hostile-token-endpoint": False,
                            "sigv4-ok": True, "sigv4-role": True, "sigv4-echo": False}
        for name, poller in bridge.pollers.items():
            outputs[f"status.last_error of {name}"] = poller.status.last_error
        outputs["/"] = requests.get(url + "/", timeout=10).text
        outputs["/api/v1/targets"] = requests.get(url + "/api/v1/targets", timeout=10).text
        for t in targets:
            outputs[f"/targets/{t['name']}"] = requests.get(url + f"/targets/{t['name']}", timeout=10).text
        outputs["/metrics"] = scrape(url)
        outputs["/metrics (OpenMetrics)"] = requests.get(
            url + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}, timeout=10
        ).text
        # A bad config holding the same secrets, reloaded over HTTP and from the file.
        bad = config_text(*targets).replace(f"http://{userinfo}127.0.0.1", f"ftp://{userinfo}127.0.0.1").replace("interval:", "intervall:", 1)
        path.write_text(bad)
        outputs["POST /-/reload"] = requests.post(url + "/-/reload", timeout=10).text
        outputs["reload_from_file problems"] = "\n".join(bridge.reload_from_file(str(path))[1])
        with pytest.raises(ConfigError) as caught:
            parse_config(bad)
        outputs["ConfigError"] = str(caught.value)
    finally:
        bridge.stop(1)
        server.close()
    for t in config.targets:
        client = TargetClient(t)
        try:
            client.fetch()
        except FetchError as error:
            outputs[f"FetchError of {t.name}"] = str(error)
        finally:
            client.close()
    monkeypatch.setattr(cli, "configure_logging", lambda *args: None)  # keep the DEBUG set-up of this test
    outputs["stderr log (DEBUG) of the polls and reloads"] = capsys.readouterr().err
    for name, text in (("good", config_text(*targets)), ("bad", bad)):
        path.write_text(text)
        cli.main(["check", "--config", str(path)])
        captured = capsys.readouterr()
        outputs[f"check of the {name} config"] = captured.out + captured.err
    path.write_text(config_text(*targets))
    for name in ("refused", "echo", "alibaba-rpc-ok", "baidu-denied", "header-echo", "token-echo", "bad-link", "oauth2-echo",
                 "oauth2-hostile-token-endpoint", "sigv4-echo"):
        cli.main(["try", "--config", str(path), "--target", name])
        captured = capsys.readouterr()
        outputs[f"try --target {name}"] = captured.out + captured.err
    for handler in logging.getLogger().handlers:
        handler.flush()
    outputs["log file (DEBUG)"] = log_file.read_text()
    token_server.close()

    # The signatures the APIs received are secret too (a replay within the window would pass).
    signed_paths = ("/alibaba-v3", "/alibaba-rpc", "/huawei", "/volcengine", "/baidu")
    signatures = [
        (r.path, r.query["Signature"] if r.path == "/alibaba-rpc" else re.split(r"[=/]", r.headers["authorization"])[-1])
        for r in api.requests if r.path in signed_paths
    ]
    assert {path for path, _ in signatures} == set(signed_paths) and all(len(value) >= 20 for _, value in signatures)
    planted = {**s, **{f"signature {i} sent to {path}": value for i, (path, value) in enumerate(signatures)}}
    # Credentials obtained or made at run time: every token issued, every assumed role's keys, every SigV4 signature sent.
    planted.update({f"OAuth2 token {i}": t.value for i, t in enumerate(token_server.issued)})
    planted.update({f"assumed-role {kind} {i}": v for i, keys in enumerate(sts.issued.values()) for kind, v in zip(("secret key", "token"), keys)})
    planted.update({f"SigV4 signature {i}": f["signature"] for i, f in enumerate(filter(None, (sigv4_fields(r.headers) for r in api.requests)))})
    assert len(token_server.issued) >= 3 and len(sts.issued) >= 2
    leaks = [f"{what} in {where}" for where, text in outputs.items() for what, secret in planted.items() if secret in text]
    assert leaks == []
    assert [where for where, text in outputs.items() if "Signature=" in text or "bce-auth-v1/" in text] == []
    assert "poll of baidu-denied failed: reason=http_status" in outputs["log file (DEBUG)"]
    assert "poll of alibaba-refused failed: reason=connection" in outputs["log file (DEBUG)"]
    # The outputs searched are the real ones: they name the failures and mask what they hide.
    assert "poll of refused failed: reason=connection" in outputs["log file (DEBUG)"]
    assert "poll of refused failed: reason=connection" in outputs["stderr log (DEBUG) of the polls and reloads"]
    assert "poll of bearer-ok succeeded" in outputs["log file (DEBUG)"]
    assert "<redacted>" in outputs["/api/v1/targets"] and "region=eu" in outputs["/api/v1/targets"]
    assert "intervall: unknown key" in outputs["check of the bad config"]
    assert "must be an http:// or https:// URL" in outputs["POST /-/reload"]
    assert "fetch failed (connection)" in outputs["try --target refused"]
    assert "mapping failed" in outputs["try --target echo"]
    assert "fetch failed (http_status)" in outputs["try --target baidu-denied"]
    assert "HTTP 403" in outputs["/targets/baidu-denied"]
    assert "not a Kubernetes quantity: '<redacted>'" in outputs["status.last_error of header-echo"]
    assert "not a Kubernetes quantity: '<redacted>'" in outputs["status.last_error of token-echo"]
    assert outputs["status.last_error of bad-link"] == "cannot connect: Failed to parse: http://127.0.0.1:99999/m?cursor=<redacted>"
    assert "fetch failed (connection): cannot connect: Failed to parse" in outputs["try --target bad-link"]
    assert "mapping failed" in outputs["try --target oauth2-echo"] and "mapping failed" in outputs["try --target sigv4-echo"]
    assert "poll of oauth2-hostile-token-endpoint failed: reason=auth: token request failed: HTTP 401 (invalid_client None grant_type=client_credentials&client_id=bridge&client_secret=<redacted>)" in outputs["log file (DEBUG)"]
    assert "poll of sigv4-echo failed: reason=mapping" in outputs["log file (DEBUG)"]
