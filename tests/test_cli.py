"""Command line: check, try, run (signals, reload, shutdown) and demo, as a user runs them."""

import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import require_tool
from fakeapi import Reply, wait_until
from test_bridge import pods, pods_config, sample_value

ROOT = Path(__file__).parent.parent
TESTDATA = Path(__file__).parent / "testdata"


def cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "exporter", *args], capture_output=True, text=True, timeout=60, **kwargs)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_check_accepts_the_example_config():
    result = cli("check", "--config", str(ROOT / "examples" / "config.yaml"))
    assert result.returncode == 0
    assert "OK — 2 target(s)" in result.stdout


def test_check_lists_every_problem_and_exits_non_zero_without_a_traceback(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("targets:\n  - name: a\n    url: nope\n    mappings: []\n    colour: blue\n")
    result = cli("check", "--config", str(path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[1:] == [
        "  targets[0].url: must be an http:// or https:// URL, got 'nope'",
        "  targets[0].mappings: List should have at least 1 item after validation, not 0",
        "  targets[0].colour: unknown key",
    ]


def test_the_config_can_come_from_the_environment():
    env = {**os.environ, "METRICS_BRIDGE_CONFIG": str(ROOT / "examples" / "config.yaml")}
    assert cli("check", env=env).returncode == 0


def test_try_prints_the_exact_exposition_of_a_saved_response():
    result = cli(
        "try", "--config", str(TESTDATA / "config" / "platform.yml"), "--target", "platform",
        "--input", str(TESTDATA / "serve" / "platform.json"),
    )
    assert result.returncode == 0
    assert result.stdout == (TESTDATA / "response" / "platform.txt").read_text()
    assert "43 series" in result.stderr


def test_try_fetches_the_target_once_without_input(api, tmp_path):
    api.routes["/pods"] = Reply(pods("a"))
    path = tmp_path / "c.yaml"
    path.write_text(pods_config(api))
    result = cli("try", "--config", str(path), "--target", "pods")
    assert result.returncode == 0
    assert 'pod_cpu_usage_cores{level="pod",target="pods",namespace="inference",pod="a"} 0.5' in result.stdout


def test_try_names_the_targets_when_the_target_is_unknown():
    result = cli("try", "--config", str(TESTDATA / "config" / "platform.yml"), "--target", "nope", "--input", "-", input="{}")
    assert result.returncode == 1
    assert "the config has: platform" in result.stderr


def test_help_shows_defaults():
    result = cli("run", "--help")
    assert "(default: 0.0.0.0:9877)" in result.stdout
    assert "--log-format {text,json}" in result.stdout
    assert "--total-shards" in result.stdout and "--web.config.file" in result.stdout and "--web.listen-address" in result.stdout


class Process:
    """A metrics-bridge subprocess whose stderr is collected."""

    def __init__(self, *args, env=None):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "exporter", *args, f"--web.listen-address=127.0.0.1:{self.port}"],
            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def get(self, path):
        try:
            return requests.get(self.url + path, timeout=5)
        except requests.ConnectionError:
            return None

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        _, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, err


def test_run_reloads_on_sighup_and_keeps_the_running_config_when_the_new_one_is_bad(api, tmp_path):
    api.routes["/pods"] = Reply(pods("a"))
    api.routes["/extra"] = Reply(pods("x"))
    path = tmp_path / "config.yaml"
    path.write_text(pods_config(api))
    bridge = Process("run", "--config", str(path))
    try:
        wait_until(lambda: (r := bridge.get("/metrics")) is not None and 'pod="a"' in r.text)
        path.write_text(pods_config(api).replace("level: pod", "level: planet"))
        bridge.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: sample_value(bridge.get("/metrics").text, "metrics_bridge_config_last_reload_successful") == 0)
        assert 'pod="a"' in bridge.get("/metrics").text
        path.write_text(pods_config(api) + pods_config(api, "extra").split("targets:\n")[1])
        bridge.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: 'pod="x"' in bridge.get("/metrics").text)
        assert sample_value(bridge.get("/metrics").text, "metrics_bridge_config_last_reload_successful") == 1
    finally:
        code, err = bridge.stop()
    assert code == 0
    assert "unknown level 'planet'" in err
    assert "configuration reloaded: added extra" in err


def test_sigterm_lets_the_poll_in_flight_finish_and_exits_cleanly(api, tmp_path):
    api.routes["/pods"] = Reply(pods("a"), delay=1.0)
    path = tmp_path / "config.yaml"
    path.write_text(pods_config(api))
    bridge = Process("run", "--config", str(path), "--log-level", "debug")
    wait_until(lambda: len(api.requests) == 1)
    code, err = bridge.stop(signal.SIGTERM)
    assert code == 0
    assert "SIGTERM received: stopping" in err
    assert "poll of pods succeeded" in err
    assert err.rstrip().endswith("INFO exporter: stopped")
    assert "Traceback" not in err


def test_json_logs_are_one_object_per_line_with_millisecond_utc_timestamps(api, tmp_path):
    import orjson

    api.routes["/pods"] = Reply(status=500)
    path = tmp_path / "config.yaml"
    path.write_text(pods_config(api))
    log_file = tmp_path / "bridge.log"
    bridge = Process("run", "--config", str(path), "--log-format", "json", "--log-file", str(log_file))
    wait_until(lambda: log_file.exists() and "failed" in log_file.read_text())
    code, err = bridge.stop()
    lines = [orjson.loads(line) for line in err.splitlines() if line.startswith("{")]
    warning = next(line for line in lines if line["level"] == "WARNING")
    assert warning["msg"] == "poll of pods failed: reason=http_status: HTTP 500 Internal Server Error"
    assert len(warning["ts"]) == 24 and warning["ts"].endswith("Z")
    assert code == 0


def test_demo_serves_all_three_levels_within_ten_seconds_and_promtool_finds_no_problem():
    promtool = require_tool("promtool")
    demo = Process("demo", "--pods", "6")
    try:
        wait_until(lambda: (r := demo.get("/readyz")) is not None and r.status_code == 200, timeout=10)
        text = demo.get("/metrics").text
        for level in ("service", "pod", "container"):
            assert f'level="{level}"' in text
        for name in ("inference_requests_per_second", "inference_pod_cpu_usage_cores", "inference_container_memory_working_set_bytes",
                     "metrics_bridge_poll_success_total", "metrics_bridge_poll_duration_seconds_bucket", "process_resident_memory_bytes"):
            assert f"\n{name}{{" in text or f"\n{name} " in text, name
        assert sample_value(text, "metrics_bridge_series", target="pods") == 6 * 10
        checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
        assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")
    finally:
        code, _ = demo.stop(signal.SIGINT)
    assert code == 0


def scrape_value(bridge, name):
    response = bridge.get("/metrics")
    return sample_value(response.text, name) if response is not None else None


def test_sigterm_exits_within_the_shutdown_grace_while_a_poll_hangs(api, tmp_path):
    api.routes["/pods"] = Reply(pods("a"), delay=60)
    path = tmp_path / "config.yaml"
    path.write_text(pods_config(api, interval="30s").replace("timeout: 2s", "timeout: 30s"))
    bridge = Process("run", "--config", str(path), "--shutdown-grace", "1")
    wait_until(lambda: len(api.requests) == 1)
    started = time.monotonic()
    code, err = bridge.stop(signal.SIGTERM)
    elapsed = time.monotonic() - started
    assert elapsed < 1 + 2, f"exit took {elapsed:.1f}s"
    assert code == 0
    assert "Traceback" not in err
    assert err.rstrip().endswith("INFO exporter: stopped; polls still running were abandoned")


def test_ten_sighups_in_a_row_each_reload_within_a_second(api, tmp_path):
    api.routes["/pods"] = Reply(pods("a"))
    path = tmp_path / "config.yaml"
    path.write_text(pods_config(api))
    bridge = Process("run", "--config", str(path))
    try:
        previous = wait_until(lambda: scrape_value(bridge, "metrics_bridge_config_last_reload_success_timestamp_seconds"))
        for _ in range(10):
            bridge.proc.send_signal(signal.SIGHUP)
            sent = time.monotonic()
            previous = wait_until(
                lambda: (value := scrape_value(bridge, "metrics_bridge_config_last_reload_success_timestamp_seconds")) > previous and value,
                timeout=1.0, interval=0.01,
            )
            assert time.monotonic() - sent < 1.0
    finally:
        code, err = bridge.stop()
    assert code == 0
    assert err.count("SIGHUP received: reloading") == 10
    assert err.count("configuration reloaded: no changes") == 10


def test_reset_and_timed_out_polls_log_only_json_lines(api, tmp_path):
    resetter = socket.socket()
    resetter.bind(("127.0.0.1", 0))
    resetter.listen(16)
    stop = threading.Event()

    def reset_every_connection():
        resetter.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = resetter.accept()
            except OSError:
                continue
            conn.recv(65536)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    thread = threading.Thread(target=reset_every_connection, daemon=True)
    thread.start()
    api.routes["/slow"] = Reply(pods("s"), delay=30)
    reset_url = f"http://127.0.0.1:{resetter.getsockname()[1]}/reset"
    config = pods_config(api, "slow", interval="0.5s").replace("timeout: 2s", "timeout: 0.3s")
    config += pods_config(api, "reset", interval="0.5s").split("targets:\n")[1].replace("timeout: 2s", "timeout: 0.3s").replace(api.url("/reset"), reset_url)
    path = tmp_path / "config.yaml"
    path.write_text(config)
    bridge = Process("run", "--config", str(path), "--log-format", "json", "--log-level", "debug")
    try:
        wait_until(lambda: (r := bridge.get("/metrics")) is not None
                   and (sample_value(r.text, "metrics_bridge_poll_failures_total", target="reset", reason="connection") or 0) >= 2
                   and (sample_value(r.text, "metrics_bridge_poll_failures_total", target="slow", reason="timeout") or 0) >= 2)
    finally:
        code, err = bridge.stop()
        stop.set()
        thread.join()
        resetter.close()
    assert code == 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert all(line.startswith("{") for line in lines), [line for line in lines if not line.startswith("{")][:5]
    assert "Traceback" not in err


def test_the_web_flags_take_exporter_toolkit_spellings_and_keep_the_old_ones_as_aliases():
    from exporter.cli import build_parser

    documented = build_parser().parse_args([
        "run", "--config", "c.yml", "--web.listen-address=127.0.0.1:1", "--web.config.file=w.yml",
        "--web.telemetry-path=/m", "--web.enable-lifecycle", "--web.max-requests=7",
    ])
    assert (documented.listen, documented.web_config_file, documented.telemetry_path) == ("127.0.0.1:1", "w.yml", "/m")
    assert documented.enable_lifecycle is True and documented.max_requests == 7
    old = build_parser().parse_args(["run", "--config", "c.yml", "--listen", "127.0.0.1:2", "--web-config-file", "v.yml"])
    assert (old.listen, old.web_config_file, old.telemetry_path, old.enable_lifecycle, old.max_requests) == ("127.0.0.1:2", "v.yml", "/metrics", False, 40)
