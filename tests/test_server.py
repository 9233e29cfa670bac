"""Server: /metrics in both formats and gzip, status page and targets API, reload, TLS and basic auth."""

import gzip

import bcrypt
import orjson
import pytest
import requests
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from exporter.bridge import Bridge
from exporter.config import parse_config
from exporter.server import MetricsServer, create_app, parse_listen
from exporter.webconfig import Authenticator, load_web_config

from conftest import require_module
from fakeapi import Reply, wait_until
from test_bridge import pods, pods_config, sample_value


def test_metrics_default_to_text_format_0_0_4(api, run_bridge):
    api.routes["/pods"] = Reply(pods("a"))
    running = run_bridge(pods_config(api), schedule=False)
    running.bridge.poll_now("pods")
    response = requests.get(running.url + "/metrics", timeout=5)
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "# TYPE pod_cpu_usage_cores gauge" in response.text
    assert sample_value(response.text, "pod_cpu_usage_cores", pod="a") == 0.5


def test_openmetrics_is_served_when_accepted_and_parses_strictly(api, run_bridge):
    api.routes["/pods"] = Reply(pods("a"))
    running = run_bridge(pods_config(api), schedule=False)
    running.bridge.poll_now("pods")
    response = requests.get(running.url + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}, timeout=5)
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
    families = {f.name: f for f in parse_openmetrics(response.text)}
    assert families["pod_cpu_usage_cores"].samples[0].value == 0.5
    assert families["metrics_bridge_poll_success"].type == "counter"


def test_gzip_is_used_when_accepted_and_decodes_to_the_plain_body(api, run_bridge):
    api.routes["/pods"] = Reply(pods(*[f"p{i}" for i in range(200)]))
    running = run_bridge(pods_config(api), schedule=False)
    running.bridge.poll_now("pods")
    raw = requests.get(running.url + "/metrics", headers={"Accept-Encoding": "gzip"}, timeout=5, stream=True)
    assert raw.headers["Content-Encoding"] == "gzip"
    body = gzip.decompress(raw.raw.read(decode_content=False)).decode()
    plain = requests.get(running.url + "/metrics", headers={"Accept-Encoding": "identity"}, timeout=5)
    assert "Content-Encoding" not in plain.headers
    bridged = lambda text: [line for line in text.splitlines() if line.startswith("pod_cpu")]  # noqa: E731
    assert bridged(body) == bridged(plain.text)
    assert len(bridged(body)) == 200


def test_targets_api_and_status_page_show_every_target_without_secrets(api, run_bridge):
    api.routes["/pods"] = Reply(pods("a"))
    api.routes["/broken"] = Reply(status=502)
    secret = "tok-do-not-show-4711"
    config = pods_config(api, extra=f"    params: {{api_token: {secret}}}\n") + pods_config(api, "broken").split("targets:\n")[1]
    running = run_bridge(config, schedule=False)
    running.bridge.poll_now("pods")
    running.bridge.poll_now("broken")
    data = requests.get(running.url + "/api/v1/targets", timeout=5).json()["targets"]
    by_name = {t["name"]: t for t in data}
    assert by_name["pods"]["outcome"] == "success" and by_name["pods"]["series"] == 1
    assert by_name["broken"]["outcome"] == "failure (http_status)"
    assert by_name["broken"]["last_error"] == "HTTP 502 Bad Gateway"
    assert by_name["pods"]["url"].endswith("api_token=<redacted>")
    page = requests.get(running.url + "/", timeout=5)
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert 'data-target="broken"' in page.text and "HTTP 502 Bad Gateway" in page.text
    assert secret not in page.text and secret not in str(data)
    assert "<script src" not in page.text and "http://" not in page.text.split("<tbody>")[0]


def test_reload_over_http_applies_a_good_config_and_refuses_a_bad_one(api, run_bridge, tmp_path):
    api.routes["/pods"] = Reply(pods("a"))
    api.routes["/more"] = Reply(pods("m"))
    path = tmp_path / "config.yaml"
    path.write_text(pods_config(api))
    bridge = Bridge(parse_config(path.read_text()), registry=None, process_metrics=False)
    server = MetricsServer(create_app(bridge, str(path), lifecycle=True, reload_spacing=0), "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{server.port}"
    try:
        bridge.start(schedule=False)
        bridge.poll_now("pods")
        path.write_text("targets: [")
        bad = requests.post(url + "/-/reload", timeout=5)
        assert bad.status_code == 400 and "<yaml>" in bad.text
        assert list(bridge.pollers) == ["pods"]
        text = requests.get(url + "/metrics", timeout=5).text
        assert sample_value(text, "metrics_bridge_config_last_reload_successful") == 0
        assert sample_value(text, "pod_cpu_usage_cores", pod="a") == 0.5
        path.write_text(pods_config(api) + pods_config(api, "more").split("targets:\n")[1])
        assert requests.post(url + "/-/reload", timeout=5).status_code == 200
        assert sorted(bridge.pollers) == ["more", "pods"]
        assert sample_value(requests.get(url + "/metrics", timeout=5).text, "metrics_bridge_config_last_reload_successful") == 1
        assert requests.get(url + "/-/reload", timeout=5).status_code == 405
    finally:
        bridge.stop(1)
        server.close()


def test_unknown_paths_are_404():
    bridge = Bridge(parse_config("targets: [{name: t, url: 'http://127.0.0.1:1/', mappings: [{level: service, metrics: [{name: m, value: v}]}]}]"), process_metrics=False)
    server = MetricsServer(create_app(bridge), "127.0.0.1", 0).start()
    try:
        assert requests.get(f"http://127.0.0.1:{server.port}/nope", timeout=5).status_code == 404
        assert requests.post(f"http://127.0.0.1:{server.port}/-/reload", timeout=5).status_code == 403
    finally:
        server.close()


def one_target_bridge() -> Bridge:
    return Bridge(parse_config("targets: [{name: t, url: 'http://127.0.0.1:1/', mappings: [{level: service, metrics: [{name: m, value: v}]}]}]"), process_metrics=False)


def test_only_requests_that_cannot_block_are_quick(password_hash, monkeypatch):
    from exporter import store as store_module
    from exporter.exposition import FamilyHeader
    from exporter.mapping import MapResult
    from exporter.store import Snapshot

    bridge = one_target_bridge()
    app = create_app(bridge)
    environ = lambda path, gz=False: {"PATH_INFO": path, **({"HTTP_ACCEPT_ENCODING": "gzip"} if gz else {})}  # noqa: E731
    assert app.quick(environ("/metrics")) and app.quick(environ("/metrics", gz=True)) and app.quick(environ("/healthz"))
    assert not app.quick(environ("/")) and not app.quick(environ("/api/v1/targets")) and not app.quick(environ("/-/reload"))
    # A gzip scrape of a snapshot not yet compressed would wait for the compression: not quick until it is done.
    monkeypatch.setattr(store_module.COMPRESSOR, "submit", lambda snapshot: None)
    result = MapResult(families={"m": {'{level="service",target="t"}': 1.0}})
    snap = Snapshot.build("t", result, {"m": FamilyHeader.build("m", "gauge", "M.")}, 60.0)
    bridge.store.publish(snap)
    assert app.quick(environ("/metrics")) and not app.quick(environ("/metrics", gz=True))
    snap.deflated  # noqa: B018
    assert app.quick(environ("/metrics", gz=True))
    # With basic auth every request may need bcrypt: none is quick.
    guarded = create_app(bridge, authenticator=Authenticator({"prometheus": password_hash}))
    assert not guarded.quick(environ("/metrics")) and not guarded.quick(environ("/healthz"))


def test_quick_requests_run_on_the_event_loop_and_the_others_on_a_worker_thread():
    import threading

    app = create_app(one_target_bridge())
    threads: dict[str, str] = {}

    def recording(environ, start_response):
        threads[environ["PATH_INFO"]] = threading.current_thread().name
        return app(environ, start_response)

    recording.quick = app.quick
    server = MetricsServer(recording, "127.0.0.1", 0).start()
    try:
        for path in ("/metrics", "/healthz", "/api/v1/targets", "/"):
            assert requests.get(f"http://127.0.0.1:{server.port}{path}", timeout=5).status_code in (200, 503)
    finally:
        server.close()
    for path in ("/metrics", "/healthz"):
        assert threads[path].startswith("metrics-http-") and "worker" not in threads[path], threads
    for path in ("/api/v1/targets", "/"):
        assert threads[path].startswith("metrics-http-worker"), threads


def test_listen_addresses_are_parsed():
    assert parse_listen("0.0.0.0:9877") == ("0.0.0.0", 9877)
    assert parse_listen(":9100") == ("0.0.0.0", 9100)
    assert parse_listen("[::1]:80") == ("::1", 80)
    with pytest.raises(ValueError):
        parse_listen("9877")


@pytest.fixture(scope="module")
def password_hash():
    return bcrypt.hashpw(b"correct horse", bcrypt.gensalt(rounds=4)).decode()


def test_basic_auth_guards_every_endpoint_but_healthz(password_hash):
    bridge = Bridge(parse_config("targets: [{name: t, url: 'http://127.0.0.1:1/', mappings: [{level: service, metrics: [{name: m, value: v}]}]}]"), process_metrics=False)
    bridge.start(schedule=False)
    server = MetricsServer(create_app(bridge, None, Authenticator({"prom": password_hash})), "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{server.port}"
    try:
        for path in ("/metrics", "/", "/api/v1/targets", "/readyz"):
            denied = requests.get(url + path, timeout=5)
            assert denied.status_code == 401 and denied.text == "Unauthorized\n"
            assert requests.get(url + path, auth=("prom", "wrong"), timeout=5).status_code == 401
            assert requests.get(url + path, auth=("nobody", "correct horse"), timeout=5).status_code == 401
        assert requests.get(url + "/metrics", auth=("prom", "correct horse"), timeout=5).status_code == 200
        assert requests.get(url + "/healthz", timeout=5).status_code == 200
    finally:
        bridge.stop(1)
        server.close()


def test_tls_and_auth_from_a_web_config_file_work_over_real_https(tmp_path, password_hash):
    trustme = require_module("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    web_config = tmp_path / "web.yml"
    web_config.write_text(
        f"tls_server_config:\n  cert_file: {tmp_path / 'server.pem'}\n  key_file: {tmp_path / 'server.pem'}\n"
        f"basic_auth_users:\n  prom: '{password_hash}'\n"
    )
    web = load_web_config(web_config)
    bridge = Bridge(parse_config("targets: [{name: t, url: 'http://127.0.0.1:1/', mappings: [{level: service, metrics: [{name: m, value: v}]}]}]"), process_metrics=False)
    server = MetricsServer(create_app(bridge, None, Authenticator(web.basic_auth_users)), "127.0.0.1", 0, web.ssl_context()).start()
    url = f"https://127.0.0.1:{server.port}"
    try:
        ok = requests.get(url + "/metrics", auth=("prom", "correct horse"), verify=str(tmp_path / "ca.pem"), timeout=5)
        assert ok.status_code == 200 and "metrics_bridge_build_info" in ok.text
        assert requests.get(url + "/metrics", verify=str(tmp_path / "ca.pem"), timeout=5).status_code == 401
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(url + "/healthz", timeout=5)
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5)
    finally:
        server.close()


def test_a_web_config_with_plain_passwords_or_unknown_keys_is_rejected(tmp_path):
    from exporter.config import ConfigError

    path = tmp_path / "web.yml"
    path.write_text("basic_auth_users: {prom: plaintext}\ntls_config: {}\n")
    with pytest.raises(ConfigError) as caught:
        load_web_config(path)
    assert caught.value.problems == [
        "basic_auth_users.prom: not a bcrypt hash: want $2b$<cost 04-31>$<53 characters> (htpasswd -nBC 12 \"\" | tr -d ':\\n')",
        "tls_config: unknown key (did you mean 'tls_server_config'?)",
    ]


def test_reloads_good_and_bad_never_leave_a_gap_for_concurrent_scrapers(api, tmp_path):
    import threading

    api.routes["/pods"] = Reply(pods("a"))
    api.routes["/more"] = Reply(pods("m"))
    path = tmp_path / "config.yaml"
    base = pods_config(api)
    path.write_text(base)
    bridge = Bridge(parse_config(base), process_metrics=False)
    server = MetricsServer(create_app(bridge, str(path), lifecycle=True, reload_spacing=0), "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{server.port}"
    bridge.start(schedule=False)
    bridge.poll_now("pods")
    stop = threading.Event()
    problems: list[str] = []
    scrapes = [0]

    def scraper():
        while not stop.is_set() and scrapes[0] < 5000:
            response = requests.get(url + "/metrics", timeout=5)
            scrapes[0] += 1
            if response.status_code != 200 or sample_value(response.text, "pod_cpu_usage_cores", pod="a") != 0.5:
                problems.append(f"{response.status_code}: unchanged target missing")

    threads = [threading.Thread(target=scraper) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for round_ in range(6):
            path.write_text("targets: [" if round_ % 2 else base + pods_config(api, f"more{round_}").split("targets:\n")[1].replace(f"/more{round_}", "/more"))
            expected = 400 if round_ % 2 else 200
            assert requests.post(url + "/-/reload", timeout=5).status_code == expected
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        bridge.stop(1)
        server.close()
    assert problems == []
    assert scrapes[0] > 3
    assert sorted(bridge.pollers) == ["more4", "pods"]


def test_a_gzip_scrape_sends_the_segments_compressed_after_the_poll_and_compresses_only_the_self_metrics(api, run_bridge, monkeypatch):
    from exporter import exposition

    api.routes["/pods"] = Reply(pods(*[f"p{i}" for i in range(300)]))
    running = run_bridge(pods_config(api), schedule=False)
    running.bridge.poll_now("pods")
    snapshot = running.bridge.store.current()["pods"]
    wait_until(lambda: snapshot.compressed)  # compressed in the background right after publishing
    compressed: list[bytes] = []
    original = exposition.DeflatedChunk.compress.__func__

    def counting(cls, raw, level=exposition.GZIP_LEVEL):
        compressed.append(raw)
        return original(cls, raw, level)

    monkeypatch.setattr(exposition.DeflatedChunk, "compress", classmethod(counting))
    raw = requests.get(running.url + "/metrics", headers={"Accept-Encoding": "gzip"}, timeout=5, stream=True)
    body = gzip.decompress(raw.raw.read(decode_content=False))
    assert len(compressed) == 1 and compressed[0].startswith(b"# HELP metrics_bridge_")
    assert body.count(b"\npod_cpu_usage_cores{") == 300 and body.endswith(compressed[0])


def test_curl_decodes_the_gzip_exposition_to_the_plain_one_and_head_announces_its_length(api, run_bridge):
    import subprocess

    from conftest import require_tool

    curl = require_tool("curl")
    api.routes["/pods"] = Reply(pods(*[f"p{i}" for i in range(500)]))
    running = run_bridge(pods_config(api), schedule=False)
    running.bridge.poll_now("pods")
    url = running.url + "/metrics"
    decoded = subprocess.run([curl, "-sf", "--compressed", url], capture_output=True, check=True, timeout=30).stdout
    plain = subprocess.run([curl, "-sf", url], capture_output=True, check=True, timeout=30).stdout
    bridged = lambda body: [line for line in body.splitlines() if line.startswith(b"pod_cpu")]  # noqa: E731
    assert len(bridged(decoded)) == 500 and bridged(decoded) == bridged(plain)
    for encoding in ("gzip", "identity"):
        head = requests.head(url, headers={"Accept-Encoding": encoding}, timeout=5)
        get = requests.get(url, headers={"Accept-Encoding": encoding}, timeout=5, stream=True)
        body = get.raw.read(decode_content=False)
        # The self-metrics may differ by a digit between two scrapes; the bridged part may not.
        assert abs(int(head.headers["Content-Length"]) - len(body)) < 64 and head.content == b""


def test_the_metrics_server_accepts_a_burst_of_connections_without_dropping_any():
    import socket

    server = MetricsServer(lambda environ, start_response: [], "127.0.0.1", 0)  # not started: nothing accepts
    sockets = []
    try:
        # With socketserver's default backlog of 5, the kernel drops the SYNs of a 20-scraper burst (retried after 1 s);
        # here, connections past the backlog would time out.
        sockets = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(40)]
    finally:
        for sock in sockets:
            sock.close()
        server.close()


# ------------------------------------------------------------------------------------------ the edge: hostile clients
import os  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from exporter.httpserver import raise_open_files_limit  # noqa: E402

from fakeapi import wait_until  # noqa: E402


def proc_status(pid: int) -> dict[str, int]:
    """VmHWM (bytes) and Threads of a process, from /proc."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(value.split()[0]) * 1024
        elif key == "Threads":
            out[key] = int(value)
    return out


class BridgeProcess:
    """`metrics-bridge run` in a subprocess on a free port, its stderr written to a file."""

    def __init__(self, config: str, tmp_path: Path, *args: str) -> None:
        path = tmp_path / "config.yaml"
        path.write_text(config)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.stderr_path = tmp_path / "stderr.log"
        self._stderr = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "exporter", "run", "--config", str(path), f"--web.listen-address=127.0.0.1:{self.port}", *args],
            stdout=subprocess.DEVNULL, stderr=self._stderr,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        wait_until(self._answers, timeout=20)

    def _answers(self) -> bool:
        try:
            return requests.get(self.url + "/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> str:
        """SIGTERM, wait, and return what it wrote on stderr."""
        self.proc.terminate()
        self.proc.wait(30)
        self._stderr.close()
        return self.stderr_path.read_text(errors="replace")


def blocking_app(release: threading.Event, entered: list):
    """A WSGI app whose `/slow` holds its request until `release` is set."""

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            entered.append(1)
            release.wait(10)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
        return [b"ok\n"]

    return app


def test_huge_header_streams_from_150_clients_are_refused_and_memory_stays_bounded(api, tmp_path):
    api.routes["/pods"] = Reply(pods("a"))
    bridge = BridgeProcess(pods_config(api), tmp_path)
    header = b"X-Big: " + b"a" * (64 * 1024 - 9) + b"\r\n"
    answers: list[bytes] = []

    def flood() -> None:
        with socket.create_connection(("127.0.0.1", bridge.port), timeout=10) as sock:
            try:
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                for _ in range(99):
                    sock.sendall(header)
            except OSError:
                pass  # refused mid-stream: the server closed the connection
            try:
                answers.append(sock.recv(64))
            except OSError:
                answers.append(b"")

    try:
        threads = [threading.Thread(target=flood) for _ in range(150)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        status = proc_status(bridge.proc.pid)
        assert requests.get(bridge.url + "/metrics", timeout=5).status_code == 200
    finally:
        stderr = bridge.stop()
    assert len(answers) == 150 and not any(answer.startswith(b"HTTP/1.1 200") for answer in answers)
    assert sum(answer.startswith(b"HTTP/1.1 400") for answer in answers) > 0
    assert status["VmHWM"] < 300 * 1024 * 1024, f"peak RSS {status['VmHWM'] / 2**20:.0f} MiB"
    assert "Traceback" not in stderr


def test_500_slowloris_sockets_hold_no_threads_and_a_scrape_is_answered_within_a_second(api, tmp_path):
    raise_open_files_limit()
    api.routes["/pods"] = Reply(pods("a"))
    bridge = BridgeProcess(pods_config(api), tmp_path)
    sockets: list[socket.socket] = []
    try:
        for i in range(500):
            sock = socket.create_connection(("127.0.0.1", bridge.port), timeout=5)
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow-%d: " % i)
            sockets.append(sock)
        for sock in sockets:  # one more byte each: the heads are still open, nothing has been answered
            sock.sendall(b"a")
        started = time.monotonic()
        response = requests.get(bridge.url + "/metrics", timeout=5)
        elapsed = time.monotonic() - started
        threads = proc_status(bridge.proc.pid)["Threads"]
        sockets[0].settimeout(0.2)
        with pytest.raises(socket.timeout):
            sockets[0].recv(1)  # still open, still waiting for the rest of its head
    finally:
        for sock in sockets:
            sock.close()
        stderr = bridge.stop()
    assert response.status_code == 200 and 'pod="a"' in response.text
    assert elapsed < 1.0
    assert threads < 80, f"{threads} threads for 500 open connections"
    assert "Traceback" not in stderr


def test_a_client_trickling_its_request_head_is_closed_at_the_head_deadline():
    from exporter.httpserver import Limits

    server = MetricsServer(blocking_app(threading.Event(), []), "127.0.0.1", 0, limits=Limits(head_timeout=0.5)).start()
    try:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Trickle: ")
        started = time.monotonic()
        closed = None
        while time.monotonic() - started < 5:
            try:
                sock.sendall(b"a")  # a byte every 50 ms: never idle, never complete
            except OSError:
                closed = time.monotonic() - started
                break
            sock.settimeout(0.05)
            try:
                if sock.recv(1) == b"":
                    closed = time.monotonic() - started
                    break
            except socket.timeout:
                pass
            except OSError:
                closed = time.monotonic() - started
                break
        sock.close()
        assert closed is not None and 0.4 < closed < 2.0, closed
        ok = requests.get(f"http://127.0.0.1:{server.port}/fast", timeout=5)  # a complete head is not cut
        assert ok.status_code == 200
    finally:
        server.close()


def test_requests_past_max_requests_are_answered_503_and_the_rest_complete():
    from exporter.httpserver import Limits

    release, entered = threading.Event(), []
    server = MetricsServer(blocking_app(release, entered), "127.0.0.1", 0, limits=Limits(max_requests=2)).start()
    url = f"http://127.0.0.1:{server.port}"
    results: list[int] = []
    holders = [threading.Thread(target=lambda: results.append(requests.get(url + "/slow", timeout=10).status_code)) for _ in range(2)]
    try:
        for thread in holders:
            thread.start()
        wait_until(lambda: len(entered) == 2)
        refused = requests.get(url + "/fast", timeout=5)
        assert refused.status_code == 503
        assert refused.text == "Limit of concurrent requests reached (2), try again later.\n"
        release.set()
        for thread in holders:
            thread.join(10)
        assert results == [200, 200]
        assert requests.get(url + "/fast", timeout=5).status_code == 200
    finally:
        release.set()
        server.close()


def test_a_client_certificate_signed_by_the_client_ca_is_required_when_configured(tmp_path):
    trustme = require_module("trustme")
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    client_ca = trustme.CA()
    client_ca.cert_pem.write_to_path(str(tmp_path / "client-ca.pem"))
    client_ca.issue_cert("prometheus@example.com").private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "client.pem"))
    ca.issue_cert("intruder@example.com").private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "intruder.pem"))
    web_config = tmp_path / "web.yml"
    web_config.write_text(
        f"tls_server_config:\n  cert_file: {tmp_path / 'server.pem'}\n  key_file: {tmp_path / 'server.pem'}\n"
        f"  client_ca_file: {tmp_path / 'client-ca.pem'}\n  min_version: TLS13\n"
    )
    web = load_web_config(web_config)
    server = MetricsServer(blocking_app(threading.Event(), []), "127.0.0.1", 0, web.ssl_context()).start()
    url = f"https://127.0.0.1:{server.port}/fast"
    ca_file = str(tmp_path / "ca.pem")
    try:
        ok = requests.get(url, verify=ca_file, cert=str(tmp_path / "client.pem"), timeout=5)
        assert ok.status_code == 200 and ok.text == "ok\n"
        for cert in (None, str(tmp_path / "intruder.pem")):  # none, or one the client CA did not sign
            with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
                requests.get(url, verify=ca_file, cert=cert, timeout=5)
        assert requests.get(url, verify=ca_file, cert=str(tmp_path / "client.pem"), timeout=5).status_code == 200
    finally:
        server.close()


def test_reset_and_abandoned_connections_leave_no_traceback_on_stderr(api, tmp_path):
    import struct

    api.routes["/pods"] = Reply(pods(*[f"p{i}" for i in range(3000)]))
    bridge = BridgeProcess(pods_config(api), tmp_path, "--log-level", "debug")
    try:
        wait_until(lambda: 'pod="p2999"' in requests.get(bridge.url + "/metrics", timeout=5).text)
        for request in (b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", b"GET /metrics HTTP/1.1\r\nHo", b"\x16\x03\x01garbage\r\n\r\n", b""):
            for _ in range(5):
                sock = socket.create_connection(("127.0.0.1", bridge.port), timeout=5)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                if request:
                    sock.sendall(request)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
                sock.close()
        assert requests.get(bridge.url + "/metrics", timeout=5).status_code == 200
    finally:
        stderr = bridge.stop()
    assert "Traceback" not in stderr and "Exception in" not in stderr
    assert "serving metrics on http://127.0.0.1:" in stderr


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_out_of_file_descriptors_the_server_pauses_accepting_warns_once_and_recovers(api, tmp_path):
    import resource

    api.routes["/pods"] = Reply(pods("a"))
    bridge = BridgeProcess(pods_config(api), tmp_path)
    sockets: list[socket.socket] = []
    try:
        # The first poll must be done before the limit, or it fails for want of a descriptor and nothing is served.
        wait_until(lambda: 'pod="a"' in requests.get(bridge.url + "/metrics", timeout=5).text)
        in_use = len(os.listdir(f"/proc/{bridge.proc.pid}/fd"))
        resource.prlimit(bridge.proc.pid, resource.RLIMIT_NOFILE, (in_use + 8, in_use + 8))
        sockets = [socket.create_connection(("127.0.0.1", bridge.port), timeout=5) for _ in range(30)]  # past the limit
        wait_until(lambda: "cannot accept connections" in bridge.stderr_path.read_text())
        before = cpu_seconds(bridge.proc.pid)
        time.sleep(2.0)  # the measuring window itself: how much CPU two seconds past the limit cost
        spent = cpu_seconds(bridge.proc.pid) - before
        for sock in sockets:
            sock.close()
        sockets = []
        started = time.monotonic()
        response = requests.get(bridge.url + "/metrics", timeout=15)
        recovered = time.monotonic() - started
    finally:
        for sock in sockets:
            sock.close()
        stderr = bridge.stop()
    assert spent < 0.3, f"{spent:.2f} s of CPU in 2 s past the descriptor limit: the accept loop spins"
    assert response.status_code == 200 and 'pod="a"' in response.text
    # The closed connections still in the backlog are accepted (and closed) first, as many a retry as descriptors free.
    assert recovered < 10.0
    assert stderr.count("cannot accept connections (Too many open files); retrying in 1 s") == 1, stderr
    assert "Traceback" not in stderr


def big_body_app(size: int):
    """A WSGI app answering every request with `size` zero bytes."""
    body = bytes(size)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))])
        return [memoryview(body)[i : i + (1 << 20)] for i in range(0, size, 1 << 20)]

    return app


def request_with_small_window(port: int) -> socket.socket:
    """A connection with a 64 KiB receive buffer that has sent `GET /` and read nothing yet."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    return sock


def test_a_client_that_stops_reading_is_cut_off_at_the_write_stall_deadline():
    from exporter.httpserver import Limits

    size = 64 * 1024 * 1024
    server = MetricsServer(big_body_app(size), "127.0.0.1", 0, limits=Limits(write_stall_timeout=1.0)).start()
    sock = request_with_small_window(server.port)
    try:
        wait_until(lambda: server.open_connections == 1, timeout=5)
        started = time.monotonic()
        wait_until(lambda: server.open_connections == 0, timeout=5)
        elapsed = time.monotonic() - started
    finally:
        sock.close()
        server.close()
    # Closed while the client had read nothing: 64 MiB cannot have gone through its window and the send buffer.
    assert 0.75 <= elapsed < 2.0, f"aborted after {elapsed:.2f} s with a 1 s write-stall deadline"  # counted from the connection


def test_a_client_reading_slowly_but_steadily_gets_the_whole_body():
    from exporter.httpserver import Limits

    size = 8 * 1024 * 1024
    server = MetricsServer(big_body_app(size), "127.0.0.1", 0, limits=Limits(write_stall_timeout=2.0)).start()
    sock = request_with_small_window(server.port)
    received = b""
    try:
        sock.settimeout(5)
        while len(received) < size + 40:  # the body and its header lines
            chunk = sock.recv(128 * 1024)
            if not chunk:
                break
            received += chunk
            time.sleep(0.04)  # a slow reader: about 3 MB/s, each pause far below the 2 s deadline
    finally:
        sock.close()
        server.close()
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and len(body) == size


def test_reload_is_refused_without_enable_lifecycle_and_to_cross_origin_browser_requests(api, tmp_path):
    api.routes["/pods"] = Reply(pods("a"))
    path = tmp_path / "config.yaml"
    path.write_text(pods_config(api))
    bridge = Bridge(parse_config(path.read_text()), process_metrics=False)
    runs: list[str] = []
    original = bridge.reload_from_file
    bridge.reload_from_file = lambda config_path: (runs.append(config_path), original(config_path))[1]  # real, counted
    closed = MetricsServer(create_app(bridge, str(path)), "127.0.0.1", 0).start()
    opened = MetricsServer(create_app(bridge, str(path), lifecycle=True, reload_spacing=0), "127.0.0.1", 0).start()
    try:
        refused = requests.post(f"http://127.0.0.1:{closed.port}/-/reload", timeout=5)
        assert (refused.status_code, refused.text) == (403, "Lifecycle API is not enabled.\n")
        url = f"http://127.0.0.1:{opened.port}/-/reload"
        simple = {"Content-Type": "text/plain"}  # what a page elsewhere can post without a CORS preflight
        for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"},
                        {"Sec-Fetch-Site": "same-site", "Origin": f"http://localhost:{opened.port}"}):
            answer = requests.post(url, data="x", headers={**simple, **headers}, timeout=5)
            assert answer.status_code == 403 and "cross-origin" in answer.text, headers
        assert runs == []  # none of them reloaded
        assert requests.post(url, timeout=5).status_code == 200  # curl: no Origin
        assert runs == [str(path)]
        same_origin = {"Origin": f"http://127.0.0.1:{opened.port}", "Sec-Fetch-Site": "same-origin"}
        assert requests.post(url, headers=same_origin, timeout=5).status_code == 200
    finally:
        closed.close()
        opened.close()


def test_flooding_reload_requests_coalesce_into_spaced_reloads(api, tmp_path):
    api.routes["/pods"] = Reply(pods("a"))
    path = tmp_path / "config.yaml"
    path.write_text(pods_config(api))
    bridge = Bridge(parse_config(path.read_text()), process_metrics=False)
    runs: list[float] = []
    original = bridge.reload_from_file

    def counted(config_path):
        runs.append(time.monotonic())
        return original(config_path)

    bridge.reload_from_file = counted  # the real reload, counted
    server = MetricsServer(create_app(bridge, str(path), lifecycle=True, reload_spacing=0.5), "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{server.port}/-/reload"
    statuses: list[int] = []
    deadline = time.monotonic() + 1.5

    def flood():
        while time.monotonic() < deadline:
            statuses.append(requests.post(url, timeout=10).status_code)

    try:
        flooders = [threading.Thread(target=flood) for _ in range(4)]
        for thread in flooders:
            thread.start()
        for thread in flooders:
            thread.join(20)
    finally:
        server.close()
    assert set(statuses) == {200} and len(statuses) >= len(runs)
    assert 2 <= len(runs) <= 5, f"{len(runs)} reloads for {len(statuses)} requests"
    assert all(b - a >= 0.5 for a, b in zip(runs, runs[1:]))


def test_a_plain_scrape_after_the_text_was_dropped_serves_the_same_exposition_as_gzip_does(api, run_bridge):
    from exporter.store import COMPRESSOR

    api.routes["/pods"] = Reply(pods(*[f"p{i}" for i in range(300)]))
    running = run_bridge(pods_config(api), schedule=False)
    running.bridge.poll_now("pods")
    snapshot = running.bridge.store.current()["pods"]
    assert COMPRESSOR.wait_idle(10) and not snapshot._bodies.holds_text
    zipped = requests.get(running.url + "/metrics", headers={"Accept-Encoding": "gzip"}, timeout=5, stream=True)
    assert not snapshot._bodies.holds_text  # gzip scrapes never need the text

    def bridged(body: bytes) -> list[bytes]:
        return [line for line in body.split(b"\n") if line.startswith((b"pod_", b"# HELP pod_", b"# TYPE pod_"))]

    from_gzip = bridged(gzip.decompress(zipped.raw.read(decode_content=False)))
    plain = bridged(requests.get(running.url + "/metrics", headers={"Accept-Encoding": "identity"}, timeout=5).content)
    assert len(plain) == 2 + 300 and plain == from_gzip and snapshot._bodies.holds_text
