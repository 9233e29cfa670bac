"""metrics-bridge benchmark: poll-to-publish, scrape latency, memory, scheduling and concurrent scrapes, in one run.

    pip install -e '.[bench]'
    python bench/run.py            # 10k, 100k and 200k series; prints the table, writes bench/RESULTS.md and results.png
    python bench/run.py --quick    # small sizes and short windows (CI smoke test); writes to a temporary directory

Everything runs on loopback, each part in its own process: the demo API (`bench/api_server.py`), the bridge under test
(`bench/bridge_server.py`: `Bridge` + `MetricsServer`, so its RSS is its own) and the prometheus_client baseline
(`bench/baseline_server.py`). This process only drives them and measures over HTTP.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import math
import os
import platform
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

import orjson
import yaml

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SERIES_PER_POD = 18  # bridged series per demo pod with exporter/demo.yaml (10 from /pods, 8 from /containers)
SCRAPER_NICE = 10  # concurrent scrapers' niceness (see concurrent_scrapes)
BRIDGED_PREFIX = b"\ninference_"  # every series the demo config bridges starts with this
MiB = 1024 * 1024


@dataclass(frozen=True)
class Plan:
    """How much of everything to run."""

    name: str
    sizes: tuple[int, ...]
    poll_rounds: int
    loads_repeat: int
    scrapes: int
    baseline_scrapes: int
    baseline_repeat: int
    concurrent_scrapers: int
    concurrent_seconds: float
    schedule_targets: int
    schedule_interval: float
    schedule_timeout: float
    schedule_window: float
    large: tuple[int, ...] = ()  # sizes measured for poll and memory only (no baseline, no concurrent scrapers)


FULL = Plan("full", (10_000, 100_000, 200_000), 5, 7, 100, 5, 3, 20, 30.0, 500, 15.0, 10.0, 50.0, (1_000_000,))
# The quick plan is a smoke test run beside the rest of the suite: 4 scraper processes exercise the same code as 20.
QUICK = Plan("quick", (1_000, 4_000), 2, 3, 10, 2, 1, 4, 3.0, 60, 2.0, 1.5, 5.0, (10_000,))


# ---------------------------------------------------------------------------------------------------------------- processes
class Child:
    """A helper process speaking one JSON object a line; stderr goes to a log file."""

    def __init__(self, args: list[str], log: Path, env: Optional[dict[str, str]] = None, timeout: float = 120.0) -> None:
        self.log = log
        self._log_file = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log_file,
            env={**os.environ, **(env or {})}, cwd=ROOT,
        )
        try:
            self.hello = self.read(timeout)
        except BaseException:
            self.close()
            raise

    def read(self, timeout: float) -> Any:
        """The next JSON line, or an error naming the log when none comes in time."""
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{self.proc.args[1]}: no answer within {timeout:g}s (exit {self.proc.poll()}); log:\n{tail}")
        return orjson.loads(line)

    def ask(self, command: dict[str, Any], timeout: float = 300.0) -> Any:
        """Send one command and wait for its answer."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(orjson.dumps(command) + b"\n")
        self.proc.stdin.flush()
        return self.read(timeout)

    def close(self) -> None:
        """Ask the process to finish (close its stdin); kill it if it does not within 15 s."""
        try:
            if self.proc.stdin and not self.proc.stdin.closed:
                self.proc.stdin.close()
            self.proc.wait(15)
        except (subprocess.TimeoutExpired, BrokenPipeError):
            self.proc.kill()
            self.proc.wait(5)
        self._log_file.close()


# -------------------------------------------------------------------------------------------------------------------- HTTP
@dataclass
class Scrape:
    """One scrape as the scraper saw it."""

    seconds: float
    status: int
    body: bytes
    encoding: str


def scrape(port: int, use_gzip: bool, timeout: float = 60.0) -> Scrape:
    """GET /metrics on a fresh connection; time from connect to the last byte of the (possibly compressed) body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Accept-Encoding": "gzip"} if use_gzip else {}
    started = time.perf_counter()
    try:
        connection.request("GET", "/metrics", headers=headers)
        response = connection.getresponse()
        body = response.read()
        seconds = time.perf_counter() - started
        return Scrape(seconds, response.status, body, response.getheader("Content-Encoding") or "")
    finally:
        connection.close()


def bridged_samples(result: Scrape) -> int:
    """How many bridged sample lines a scrape holds (decompressing it when gzipped); raises if it does not decode."""
    body = gzip.decompress(result.body) if result.encoding == "gzip" else result.body
    return body.count(BRIDGED_PREFIX)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def scrape_series(port: int, use_gzip: bool, count: int, expect: int) -> dict[str, Any]:
    """`count` sequential scrapes: p50, p99, size; every one checked for status and the bridged sample count."""
    times, errors, size = [], 0, 0
    for _ in range(count):
        try:
            result = scrape(port, use_gzip)
            ok = result.status == 200 and (expect < 0 or bridged_samples(result) == expect)
            ok = ok and (result.encoding == "gzip") == use_gzip
        except (OSError, http.client.HTTPException, EOFError, ValueError):
            ok, result = False, None
        if not ok or result is None:
            errors += 1
            continue
        times.append(result.seconds)
        size = len(result.body)
    return {
        "p50": percentile(times, 0.5) if times else math.nan,
        "p99": percentile(times, 0.99) if times else math.nan,
        "bytes": size,
        "errors": errors,
        "count": count,
        "times": times,
    }


def interleaved_series(ports: dict[str, int], use_gzip: bool, count: int, expect: int) -> dict[str, dict[str, Any]]:
    """`scrape_series` on each server in A B B A order (count / 2 each), merged per server: the first scrapes after
    the polls overlap their snapshots' background compression, which measuring one server first would charge to it."""
    names = list(ports)
    parts: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for name in names + names[::-1]:
        parts[name].append(scrape_series(ports[name], use_gzip, max(1, count // 2), expect))
    merged = {}
    for name, runs in parts.items():
        times = [t for run in runs for t in run.pop("times")]
        merged[name] = {
            "p50": percentile(times, 0.5) if times else math.nan, "p99": percentile(times, 0.99) if times else math.nan,
            "bytes": runs[-1]["bytes"], "errors": sum(run["errors"] for run in runs), "count": sum(run["count"] for run in runs),
        }
    return merged


def poll_counts(port: int) -> dict[str, float]:
    """The large targets' (all but `services`) polls so far, from the bridge's self-metrics: `ok`, `skipped`, and
    failures as `failed:<reason>`."""
    out: dict[str, float] = {}
    metrics = self_metrics(port)
    for name, key in (("metrics_bridge_poll_success_total", "ok"), ("metrics_bridge_poll_skipped_total", "skipped"),
                      ("metrics_bridge_poll_failures_total", "failed")):
        for labels, value in metrics.get(name, []):
            if labels.get("target") != "services":
                label = f"failed:{labels.get('reason', '?')}" if key == "failed" else key
                out[label] = out.get(label, 0.0) + value
    return out


def concurrent_scrapes(port: int, scrapers: int, seconds: float, expect: int, metrics_port: Optional[int] = None) -> dict[str, Any]:
    """`scrapers` scraper processes (`bench/scraper.py`, half ask for gzip) scraping in a loop for `seconds`, all
    started at once; errors, p50 and p99 over all scrapes.

    Every response must be HTTP 200 with its full body; every fourth one per scraper is also decoded and must hold
    exactly `expect` bridged samples. Each scraper is a process of its own, as each Prometheus is: threads of this
    driver would share its GIL, and the driver, not the bridge, would set the tail. They run at nice SCRAPER_NICE:
    they stand in for Prometheus servers on other machines, and reading and decoding twenty 29 MB bodies at a time
    would otherwise take from the bridge the CPU that remote scrapers never take (their own reading is still timed).
    """
    children = [
        subprocess.Popen(
            ["nice", "-n", str(SCRAPER_NICE), sys.executable, str(ROOT / "bench" / "scraper.py"), "--port", str(port), "--seconds", str(seconds),
             "--expect", str(expect), *(["--gzip"] if i % 2 == 0 else [])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        for i in range(scrapers)
    ]
    try:
        before = poll_counts(metrics_port) if metrics_port else {}
        for child in children:  # every scraper has imported and is waiting: none starts before the others
            assert child.stdout is not None
            if not orjson.loads(child.stdout.readline() or "{}").get("ready"):
                raise RuntimeError("a scraper did not start")
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        by_kind: dict[bool, list[float]] = {False: [], True: []}
        errors: list[str] = []
        for i, child in enumerate(children):
            out, _ = child.communicate(timeout=seconds + 120)
            result = orjson.loads(out.strip().splitlines()[-1]) if out.strip() else {"times": [], "errors": ["scraper died"]}
            by_kind[i % 2 == 0].extend(result["times"])
            errors.extend(result["errors"])
        after = poll_counts(metrics_port) if metrics_port else {}
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    polls = {key: after[key] - before.get(key, 0.0) for key in after if after[key] - before.get(key, 0.0)}
    return summarize(by_kind[False], by_kind[True], errors, seconds, scrapers, polls)


def summarize(plain: list[float], gzipped: list[float], errors: list[str], seconds: float, scrapers: int,
              polls: Optional[dict[str, float]] = None) -> dict[str, Any]:
    """Counts and percentiles of concurrent scrapes (`plain_times`/`gzip_times` kept for merging phases), and the
    large targets' polls meanwhile (`ok`, `skipped`, `failed:<reason>`)."""
    times = plain + gzipped
    polls = polls or {}
    return {
        "polls": polls.get("ok", 0.0),
        "skipped": polls.get("skipped", 0.0),
        "poll_failures": sum(v for k, v in polls.items() if k.startswith("failed:")),
        "failure_reasons": {k[7:]: v for k, v in polls.items() if k.startswith("failed:")},
        "scrapes": len(times),
        "errors": len(errors),
        "error_kinds": sorted(set(errors))[:5],
        "p50": percentile(times, 0.5) if times else math.nan,
        "p99": percentile(times, 0.99) if times else math.nan,
        "plain_p50_p99": [percentile(plain, q) if plain else math.nan for q in (0.5, 0.99)],
        "gzip_p50_p99": [percentile(gzipped, q) if gzipped else math.nan for q in (0.5, 0.99)],
        "seconds": seconds,
        "scrapers": scrapers,
        "plain_times": plain,
        "gzip_times": gzipped,
        "error_list": errors,
    }


def interleaved_scrapes(ports: dict[str, int], scrapers: int, seconds: float, expect: int, metrics_port: Optional[int] = None) -> dict[str, dict[str, Any]]:
    """`concurrent_scrapes` on each server in turn, in A B B A order (seconds / 2 each), merged per server.

    Polls run throughout at the targets' intervals; the order cancels what drifts over the minute (the first polls
    of every target at once when the scheduler starts, the machine's other load), which measuring one server after
    the other would charge to the first.
    """
    names = list(ports)
    order = names + names[::-1]
    phases: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for name in order:
        phases[name].append(concurrent_scrapes(ports[name], scrapers, seconds / 2, expect, metrics_port))
    merged = {}
    for name, parts in phases.items():
        polls: dict[str, float] = {}
        for part in parts:
            for key, value in (("ok", part["polls"]), ("skipped", part["skipped"])):
                polls[key] = polls.get(key, 0.0) + value
            for reason, value in part["failure_reasons"].items():
                polls[f"failed:{reason}"] = polls.get(f"failed:{reason}", 0.0) + value
        merged[name] = summarize(
            [t for p in parts for t in p["plain_times"]], [t for p in parts for t in p["gzip_times"]],
            [e for p in parts for e in p["error_list"]], seconds, scrapers, polls,
        )
    return merged


def self_metrics(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The bridge's own samples (`metrics_bridge_*`) by sample name."""
    from prometheus_client.parser import text_string_to_metric_families

    text = scrape(port, False).body.decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        if family.name.startswith("metrics_bridge_"):
            for sample in family.samples:
                out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


# ------------------------------------------------------------------------------------------------------------ measurements
def measure_size(series: int, plan: Plan, work: Path, concurrent: bool, full: bool = True) -> dict[str, Any]:
    """Every per-size measurement against a fresh demo API and a fresh bridge process (`full=False`: poll and memory
    only, for the sizes where scrape latency and the prometheus_client baseline are not goals)."""
    pods = max(1, round(series / SERIES_PER_POD))
    out: dict[str, Any] = {"target_series": series, "pods": pods}
    api = Child(["bench/api_server.py", "demo", "--pods", str(pods)], work / f"api-{series}.log")
    bridge = baseline = None
    try:
        bridge = Child(
            # The large sizes measure what a poll costs, not the demo's 4 s timeout: past it their polls would fail.
            ["bench/bridge_server.py", "--config", str(ROOT / "exporter" / "demo.yaml"), *([] if full else ["--interval", "60", "--timeout", "60"])],
            work / f"bridge-{series}.log", env={"METRICS_BRIDGE_DEMO_URL": api.hello["url"]},
        )
        port = bridge.hello["port"]
        out["rss_idle"] = bridge.hello["rss"]
        # 1. Poll-to-publish: every target in turn (one poll of each is one round), and orjson.loads on the same bytes.
        polls = bridge.ask({"cmd": "poll", "rounds": plan.poll_rounds})
        if polls["failures"]:
            raise RuntimeError(f"{polls['failures']} poll(s) failed; see {bridge.log}")
        rounds = [sum(d[i] for d in polls["durations"].values()) for i in range(plan.poll_rounds)]
        out["series"] = sum(polls["series"].values())
        out["poll_to_publish"] = statistics.median(rounds)
        out["poll_targets"] = {name: statistics.median(d) for name, d in polls["durations"].items()}
        stages = bridge.ask({"cmd": "stages", "rounds": plan.poll_rounds})
        out["stages"] = {stage: sum(t[stage] for t in stages.values()) for stage in ("fetch", "map", "render", "publish")}
        # Steady memory: between polls, once the last publish's background compression (and trim) is done; measured
        # before the loads command, whose parsed documents the bridge itself never makes.
        memory = bridge.ask({"cmd": "memory", "settle": True})
        out["rss_polled"], out["rss_peak_polling"] = memory["rss"], memory["peak"]
        out["bytes_per_series"] = (out["rss_polled"] - out["rss_idle"]) / max(1, out["series"])
        loads = bridge.ask({"cmd": "loads", "repeat": plan.loads_repeat})
        out["loads"] = sum(v["loads"] for v in loads.values())
        out["loads_paused"] = sum(v.get("loads_paused", math.nan) for v in loads.values())
        out["response_bytes"] = sum(v["bytes"] for v in loads.values())
        if not full:
            out["rss_peak"] = memory["peak"]
            return out
        # 2. Scrape latency with no poll running, plain and gzip, every response checked.
        expect = out["series"]
        if concurrent:  # the same app and snapshots on the old server (bench/legacy_server.py) too, for comparison
            ports = {"scrape": port, "legacy": bridge.hello["legacy_port"]}
            for kind, use_gzip in (("plain", False), ("gzip", True)):
                for name, result in interleaved_series(ports, use_gzip, plan.scrapes, expect).items():
                    out[f"{name}_{kind}"] = result
        else:
            out["scrape_plain"] = scrape_series(port, False, plan.scrapes, expect)
            out["scrape_gzip"] = scrape_series(port, True, plan.scrapes, expect)
        # Steady memory again, now that plain scrapes have read the current snapshots' text (it is kept from then on).
        out["bytes_per_series_plain"] = (bridge.ask({"cmd": "memory", "settle": True})["rss"] - out["rss_idle"]) / max(1, out["series"])
        exposition = work / f"exposition-{series}.txt"
        body = scrape(port, False).body
        exposition.write_bytes(b"".join(line + b"\n" for line in body.split(b"\n") if line.startswith((b"# HELP inference_", b"# TYPE inference_", b"inference_"))))
        # 5. Concurrent scrapes while the scheduler polls every target at the demo config's interval.
        if concurrent:
            bridge.ask({"cmd": "start"})
            # Every target polls at once when the scheduler starts: wait for that burst to end (/readyz answers 200
            # once each target's first poll is done), or the first phase, and only it, would be charged for it.
            wait_ready(port, 120.0)
            both = interleaved_scrapes(
                {"concurrent": port, "legacy_concurrent": bridge.hello["legacy_port"]},
                plan.concurrent_scrapers, plan.concurrent_seconds, expect, metrics_port=port,
            )
            for key, result in both.items():
                for raw in ("plain_times", "gzip_times", "error_list"):
                    result.pop(raw)
                out[key] = result
        # 3. Memory: the bridge's own peak RSS over everything above.
        out["rss_peak"] = bridge.ask({"cmd": "memory"})["peak"]
        bridge.close()
        bridge = None
        # The baseline: the same samples as prometheus_client Gauge children, served by prometheus_client.
        baseline = Child(
            ["bench/baseline_server.py", "--exposition", str(exposition), "--repeat", str(plan.baseline_repeat)],
            work / f"baseline-{series}.log", timeout=600,
        )
        out["baseline_generate_latest"] = baseline.hello["generate_latest"]
        out["baseline_plain"] = scrape_series(baseline.hello["port"], False, plan.baseline_scrapes, expect)
        out["baseline_gzip"] = scrape_series(baseline.hello["port"], True, plan.baseline_scrapes, expect)
        for key in ("scrape_plain", "scrape_gzip", "baseline_plain", "baseline_gzip"):
            out[key].pop("times", None)
    finally:
        for child in (bridge, baseline, api):
            if child is not None:
                child.close()
    return out


def schedule_config(api: str, plan: Plan) -> dict[str, Any]:
    """`plan.schedule_targets` copies of the demo's services target, 5 % of them pointed at a URL that hangs."""
    demo = yaml.safe_load((ROOT / "exporter" / "demo.yaml").read_text())
    services = next(t for t in demo["targets"] if t["name"] == "services")
    count = plan.schedule_targets
    hanging = {round(k * count / max(1, round(count * 0.05))) for k in range(max(1, round(count * 0.05)))}
    targets = []
    for i in range(count):
        path = "hang" if i in hanging else "ok"
        targets.append({
            **services, "name": f"t{i:03d}", "url": f"{api}/{path}?target=t{i:03d}", "params": {},
            "interval": plan.schedule_interval, "timeout": plan.schedule_timeout,
        })
    return {"targets": targets}


def measure_scheduling(plan: Plan, work: Path) -> dict[str, Any]:
    """Many targets at one interval, 5 % hanging until their timeout: how late, and how often skipped, are the others?"""
    api = Child(["bench/api_server.py", "schedule", "--hang", str(plan.schedule_timeout + 5)], work / "schedule-api.log")
    bridge = None
    try:
        config = schedule_config(api.hello["url"], plan)
        path = work / "schedule.yaml"
        path.write_bytes(orjson.dumps(config))  # JSON is YAML
        healthy = {t["name"] for t in config["targets"] if "/ok" in t["url"]}
        bridge = Child(["bench/bridge_server.py", "--config", str(path)], work / "schedule-bridge.log")
        started = time.monotonic()
        bridge.ask({"cmd": "start"})
        # Read the start-delay histogram between rounds (80 % into each interval, when no poll is due) to tell the
        # rounds apart, and once more at the end of the window.
        rounds = int(plan.schedule_window // plan.schedule_interval) + 1
        readings = []
        for k in range(rounds):
            at = min(plan.schedule_window, (k + 0.8) * plan.schedule_interval) if k < rounds - 1 else plan.schedule_window
            time.sleep(max(0.0, at - (time.monotonic() - started)))
            readings.append(self_metrics(bridge.hello["port"]))
        metrics = readings[-1]
        with_api = scrape_json(api.hello["url"] + "/counts")
    finally:
        for child in (bridge, api):
            if child is not None:
                child.close()

    def total(name: str, keep: Callable[[dict[str, str]], bool], reading: Optional[dict] = None) -> float:
        return sum(v for labels, v in (reading or metrics).get(name, []) if labels.get("target") in healthy and keep(labels))

    def late(reading: dict) -> float:
        count = total("metrics_bridge_poll_start_delay_seconds_count", lambda labels: True, reading)
        return count - total("metrics_bridge_poll_start_delay_seconds_bucket", lambda labels: labels.get("le") == "1.0", reading)

    polls = total("metrics_bridge_poll_start_delay_seconds_count", lambda labels: True)
    on_time = total("metrics_bridge_poll_start_delay_seconds_bucket", lambda labels: labels.get("le") == "1.0")
    cumulative = [late(reading) for reading in readings]
    late_by_round = [int(b - a) for a, b in zip([0.0] + cumulative, cumulative)]
    made = [with_api.get(name, 0) for name in healthy]
    return {
        "targets": plan.schedule_targets,
        "hanging": plan.schedule_targets - len(healthy),
        "interval": plan.schedule_interval,
        "timeout": plan.schedule_timeout,
        "window": plan.schedule_window,
        "healthy_polls": int(polls),
        "late": int(polls - on_time),
        "late_by_round": late_by_round,
        "skipped": int(total("metrics_bridge_poll_skipped_total", lambda labels: True)),
        "healthy_failures": int(total("metrics_bridge_poll_failures_total", lambda labels: True)),
        "hanging_timeouts": int(sum(
            v for labels, v in metrics.get("metrics_bridge_poll_failures_total", [])
            if labels.get("target") not in healthy and labels.get("reason") == "timeout"
        )),
        "expected_per_target": rounds,
        "api_requests_min": min(made) if made else 0,
        "api_requests_max": max(made) if made else 0,
    }


def wait_ready(port: int, timeout: float) -> None:
    """Until the bridge's /readyz answers 200 (every target's first poll done); RuntimeError past `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                return
        except (OSError, http.client.HTTPException):
            pass
        finally:
            connection.close()
        time.sleep(0.1)  # polling an endpoint for a state change, not standing in for one
    raise RuntimeError(f"the bridge was not ready within {timeout:g} s")


def scrape_json(url: str) -> Any:
    """GET a JSON document from a loopback URL."""
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as response:
        return orjson.loads(response.read())


# ----------------------------------------------------------------------------------------------------------------- report
@dataclass
class Check:
    """One target from issue 7 and whether the run met it."""

    name: str
    target: str
    measured: str
    passed: bool


@dataclass
class Report:
    """Everything one run measured, and the checks made against it."""

    plan: Plan
    sizes: list[dict[str, Any]]
    scheduling: dict[str, Any]
    machine: dict[str, str]
    command: str
    seconds: float = 0.0
    large: list[dict[str, Any]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    def evaluate(self) -> None:
        """The issues' targets (7: scrape and scheduling; 14: poll, memory, concurrent p99), at the sizes they name."""
        top = self.sizes[-1]
        at = f" @ {top['series'] / 1000:.0f}k"
        plain = top["scrape_plain"]["p50"]
        speedup = top["baseline_generate_latest"] / plain
        ptp = top["poll_to_publish"]
        ratio = ptp / top["loads"]
        conc = top.get("concurrent", {})
        sched = self.scheduling
        errors = conc.get("errors", 0) + sum(s["scrape_plain"]["errors"] + s["scrape_gzip"]["errors"] for s in self.sizes)
        gzip_p99 = conc.get("gzip_p50_p99", [math.nan, math.nan])[1]
        plain_p99 = conc.get("plain_p50_p99", [math.nan, math.nan])[1]
        legacy = top.get("legacy_concurrent")
        regressions = []
        if legacy and conc:
            for kind in ("plain_p50_p99", "gzip_p50_p99"):
                for q, new, old in zip(("p50", "p99"), conc[kind], legacy[kind]):
                    if not new <= old * 1.25 + 0.005:
                        regressions.append(f"{kind[:-8]} {q} {new * 1000:.0f} vs {old * 1000:.0f} ms")
        self.checks = [
            Check("scrape p50, uncompressed" + at, "≤ 50 ms", f"{plain * 1000:.1f} ms", plain <= 0.050),
            Check("scrape p50 vs generate_latest" + at, "≥ 20× faster", f"{speedup:.0f}× faster", speedup >= 20),
            Check("poll-to-publish" + at, "≤ 1.5 s", f"{ptp:.3f} s", ptp <= 1.5),
            Check("poll-to-publish / orjson.loads" + at, "≤ 4×", f"{ratio:.1f}×", ratio <= 4),
            Check("steady memory per series" + at, "≤ 350 B", f"{top['bytes_per_series']:.0f} B", top["bytes_per_series"] <= 350),
            Check(f"peak RSS{at}, polls + {conc.get('scrapers', 0)} scrapers", "≤ 220 MiB", f"{top['rss_peak'] / MiB:.0f} MiB", top["rss_peak"] <= 220 * MiB),
            Check(f"concurrent scrape p99, gzip{at}", "≤ 0.3 s", f"{gzip_p99:.3f} s", gzip_p99 <= 0.3),
            Check(f"concurrent scrape p99, plain{at}", "≤ 1 s", f"{plain_p99:.3f} s", plain_p99 <= 1.0),
        ]
        for big in self.large:
            at_big = f" @ {big['series'] / 1e6:.1f}M" if big["series"] >= 1e6 else f" @ {big['series'] / 1000:.0f}k"
            limit = 2.5 * big["series"] / 1_000_000 if big["series"] < 1_000_000 else 2.5
            self.checks += [
                Check("poll-to-publish" + at_big, f"≤ {limit:.2g} s", f"{big['poll_to_publish']:.2f} s", big["poll_to_publish"] <= limit),
                Check("steady memory per series" + at_big, "≤ 350 B", f"{big['bytes_per_series']:.0f} B", big["bytes_per_series"] <= 350),
            ]
        self.checks += [
            Check(f"healthy polls started > 1 s late ({sched['targets']} targets)", "0", str(sched["late"]), sched["late"] == 0),
            Check(f"healthy polls skipped ({sched['targets']} targets)", "0", str(sched["skipped"]), sched["skipped"] == 0),
            Check(f"scrape errors ({conc.get('scrapers', 0)} concurrent scrapers + sequential)", "0", str(errors), errors == 0),
        ]
        if legacy:
            self.checks.append(Check(
                f"uvicorn vs the old wsgiref server, {conc['scrapers']} concurrent scrapers" + at, "no regression (≤ 1.25× + 5 ms)",
                "; ".join(regressions) or "none", not regressions,
            ))

    def table(self) -> str:
        """The PASS/FAIL table (Markdown, readable as plain text)."""
        rows = ["| check | target | measured | result |", "| --- | --- | --- | --- |"]
        rows += [f"| {c.name} | {c.target} | {c.measured} | {'PASS' if c.passed else 'FAIL'} |" for c in self.checks]
        return "\n".join(rows)

    def detail(self) -> str:
        """Per-size numbers (Markdown)."""
        rows = [
            "| series | response | poll-to-publish | orjson.loads | ratio | scrape p50 / p99 plain | scrape p50 / p99 gzip "
            "| exposition plain / gzip | generate_latest | baseline HTTP p50 plain / gzip | speed-up | peak RSS | bytes/series: gzip scrapes only / after plain ones |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for s in self.sizes:
            p, g = s["scrape_plain"], s["scrape_gzip"]
            rows.append(
                f"| {s['series']:,} | {s['response_bytes'] / MiB:.1f} MiB | {s['poll_to_publish'] * 1000:.0f} ms "
                f"| {s['loads'] * 1000:.0f} ms | {s['poll_to_publish'] / s['loads']:.1f}× "
                f"| {p['p50'] * 1000:.1f} / {p['p99'] * 1000:.1f} ms | {g['p50'] * 1000:.1f} / {g['p99'] * 1000:.1f} ms "
                f"| {p['bytes'] / MiB:.1f} / {g['bytes'] / MiB:.2f} MiB | {s['baseline_generate_latest'] * 1000:.0f} ms "
                f"| {s['baseline_plain']['p50'] * 1000:.0f} / {s['baseline_gzip']['p50'] * 1000:.0f} ms "
                f"| {s['baseline_generate_latest'] / p['p50']:.0f}× | {s['rss_peak'] / MiB:.0f} MiB "
                f"| {s['bytes_per_series']:.0f} / {s.get('bytes_per_series_plain', math.nan):.0f} |"
            )
        return "\n".join(rows)

    def servers(self) -> str:
        """The HTTP server now (uvicorn) beside the one before (wsgiref, a thread per connection), same app (Markdown)."""

        def failures(conc: dict[str, Any]) -> str:
            reasons = ", ".join(f"{reason} {count:g}" for reason, count in sorted(conc.get("failure_reasons", {}).items()))
            return f"{conc.get('polls', 0):g} / {conc.get('poll_failures', 0):g}" + (f" ({reasons})" if reasons else "")

        top = self.sizes[-1]
        if "legacy_concurrent" not in top:
            return ""
        ms = lambda pair: f"{pair[0] * 1000:.1f} / {pair[1] * 1000:.1f} ms"  # noqa: E731
        rows = [
            f"| server ({top['series']:,} series) | sequential plain p50 / p99 | sequential gzip p50 / p99 "
            f"| {top['concurrent']['scrapers']} concurrent: plain p50 / p99 | gzip p50 / p99 | scrapes | errors "
            "| large polls meanwhile: done / failed (reasons) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, plain, gz, conc in (
            ("uvicorn + a2wsgi (now)", top["scrape_plain"], top["scrape_gzip"], top["concurrent"]),
            ("wsgiref, thread per connection (before)", top["legacy_plain"], top["legacy_gzip"], top["legacy_concurrent"]),
        ):
            rows.append(
                f"| {name} | {ms((plain['p50'], plain['p99']))} | {ms((gz['p50'], gz['p99']))} | {ms(conc['plain_p50_p99'])} "
                f"| {ms(conc['gzip_p50_p99'])} | {conc['scrapes']} | {conc['errors']} | {failures(conc)} |"
            )
        return "\n".join(rows)

    def stages(self) -> str:
        """Where poll-to-publish goes, stage by stage, at each size (Markdown)."""
        rows = [
            "| series | fetch: HTTP + orjson.loads | map (JSON → samples) | render (gzip runs after publish) | publish | orjson.loads alone | the same, collector paused |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for s in self.sizes + self.large:
            st = s["stages"]
            rows.append(
                f"| {s['series']:,} | {st['fetch'] * 1000:.0f} ms | {st['map'] * 1000:.0f} ms | {st['render'] * 1000:.0f} ms "
                f"| {st['publish'] * 1000:.2f} ms | {s['loads'] * 1000:.0f} ms | {s.get('loads_paused', math.nan) * 1000:.0f} ms |"
            )
        return "\n".join(rows)

    def other(self) -> str:
        """Scheduling and concurrency in words."""
        sched = self.scheduling
        conc = self.sizes[-1].get("concurrent")
        lines = [
            f"- **Scheduling**: {sched['targets']} targets every {sched['interval']:g} s, {sched['hanging']} of them "
            f"hanging until their {sched['timeout']:g} s timeout, watched for {sched['window']:g} s: "
            f"{sched['healthy_polls']} healthy polls, {sched['late']} started more than 1 s late "
            f"(by round: {', '.join(map(str, sched['late_by_round']))}), {sched['skipped']} skipped, "
            f"{sched['healthy_failures']} failed; the hanging targets timed out {sched['hanging_timeouts']} times. "
            f"The API saw {sched['api_requests_min']}–{sched['api_requests_max']} requests per healthy target "
            f"(expected {sched['expected_per_target']}).",
        ]
        reasons = lambda c: (" (" + ", ".join(f"{r}: {n:g}" for r, n in sorted(c["failure_reasons"].items())) + ")") if c.get("failure_reasons") else ""  # noqa: E731
        if conc:
            lines.append(
                f"- **Concurrent scrapes** at {self.sizes[-1]['series']:,} series: {conc['scrapers']} scrapers (half gzip) for "
                f"{conc['seconds']:g} s while the scheduler polled every target at the demo config's intervals: {conc['scrapes']} scrapes, {conc['errors']} errors"
                f"{' (' + '; '.join(conc['error_kinds']) + ')' if conc['errors'] else ''}, p50 {conc['p50'] * 1000:.0f} ms, "
                f"p99 {conc['p99'] * 1000:.0f} ms; {conc['polls']:g} polls of the large targets ran meanwhile, "
                f"{conc['poll_failures']:g} failed{reasons(conc)}, {conc['skipped']:g} skipped."
            )
        return "\n".join(lines)


def machine_info() -> dict[str, str]:
    """What this ran on."""
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "?"
    try:
        import psutil

        memory = f"{psutil.virtual_memory().total / 1024**3:.1f} GiB"
    except ImportError:
        pass
    from importlib.metadata import version

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        commit = ""
    return {
        "cpu": f"{cpu} × {os.cpu_count()}",
        "memory": memory,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "packages": ", ".join(f"{p} {version(p)}" for p in ("orjson", "prometheus_client", "requests", "APScheduler")),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "commit": commit or "?",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def plot(report: Report, path: Path) -> None:
    """Scrape latency and poll-to-publish against series count, the bridge beside the baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    xs = [s["series"] / 1000 for s in report.sizes]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot(xs, [s["baseline_generate_latest"] * 1000 for s in report.sizes], "o-", color="tab:red", label="generate_latest (baseline)")
    left.plot(xs, [s["baseline_plain"]["p50"] * 1000 for s in report.sizes], "o--", color="tab:red", alpha=0.5, label="baseline over HTTP, p50")
    left.plot(xs, [s["scrape_plain"]["p50"] * 1000 for s in report.sizes], "o-", color="tab:blue", label="bridge over HTTP, p50")
    left.plot(xs, [s["scrape_gzip"]["p50"] * 1000 for s in report.sizes], "s--", color="tab:blue", alpha=0.6, label="bridge over HTTP, gzip, p50")
    left.axhline(50, color="grey", linestyle=":", linewidth=1, label="target 50 ms")
    left.set_yscale("log")
    left.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    left.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    left.set_xlabel("bridged series (thousands)")
    left.set_ylabel("ms per scrape (log scale)")
    left.set_title("Scrape latency")
    left.legend(fontsize=8)
    right.plot(xs, [s["poll_to_publish"] * 1000 for s in report.sizes], "o-", color="tab:blue", label="bridge poll-to-publish")
    right.plot(xs, [s["loads"] * 1000 for s in report.sizes], "o-", color="tab:green", label="orjson.loads alone (same bytes)")
    right.plot(xs, [s["loads"] * 8000 for s in report.sizes], ":", color="tab:green", alpha=0.6, label="8 × orjson.loads (target)")
    right.axhline(1500, color="grey", linestyle=":", linewidth=1, label="target 1.5 s")
    right.set_xlabel("bridged series (thousands)")
    right.set_ylabel("ms per poll (all targets)")
    right.set_title("Poll-to-publish")
    right.legend(fontsize=8)
    for axis in (left, right):
        axis.grid(True, alpha=0.3)
    fig.suptitle(f"metrics-bridge benchmark ({report.plan.name}) — {report.machine['cpu']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


SECTION = "## Scale: poll-to-publish, scrapes, memory, scheduling (`bench/run.py`)"


def write_results(report: Report, out: Path, extra: str) -> Path:
    """Write this run's section of RESULTS.md (table, plot, per-size numbers, machine, command); keep other sections."""
    m = report.machine
    plan = report.plan
    section = f"""{SECTION}

Produced by `{report.command}` in {report.seconds:.0f} s ({plan.name} plan), {m['date']}, commit {m['commit']}.
Targets from issues 7 and 14, judged at the largest size run (and, for issue 14, at 1M too):

{report.table()}

![Scrape latency and poll-to-publish against series count](results.png)

### Per size

{report.detail()}

{report.other()}

The HTTP server before and after (the same app and snapshots in the same process; the concurrent phases in A B B A order, {plan.concurrent_seconds / 2:g} s each):

{report.servers()}

Where poll-to-publish goes (each target's poll taken apart into `Poller.poll`'s stages; medians, summed over targets):

{report.stages()}

### How each number is taken

- **poll-to-publish**: one poll of every demo target in turn (fetch over loopback HTTP, parse, map, render, compress,
  publish), timed around `Poller.poll` in the bridge process with nothing else running; median of {plan.poll_rounds} rounds.
  **orjson.loads** is the median time of `orjson.loads` alone on the very bytes of each target's response, summed,
  with the cyclic collector running as it does by default (the ratio rows divide by it, as issue 14 defined them);
  "collector paused" is the same with `gc.disable()` around each call, as a poll parses (`exporter/gcpause.py`): the
  collector's passes over a large new document are most of the difference, and the poll does not pay them.
- **scrape p50/p99**: {plan.scrapes} sequential `GET /metrics` (text format) on fresh connections (at the largest size, half on each server in A B B A order), timed from connect to the
  last body byte, with no poll running; every response is checked (status, and the count of bridged samples after decoding).
- **generate_latest**: the same samples as labelled `Gauge` children in a prometheus_client registry (its own process),
  median of {plan.baseline_repeat} in-process `generate_latest` calls; "baseline HTTP" is that registry served by
  prometheus_client's `start_http_server` ({plan.baseline_scrapes} scrapes each). The speed-up is `generate_latest` alone (no
  HTTP) over the bridge's whole HTTP scrape: the stricter of the two ratios.
- **peak RSS**: the bridge process's VmHWM over every phase at that size (the largest size includes the scheduler
  polling all targets at once and the concurrent scrapes); **bytes/series** is the RSS growth from the idle bridge to
  the bridge holding its snapshots, per series, between polls: after the poll and stage rounds, once the background
  compressor (which trims the heap after a large snapshot) has finished, and before the orjson.loads timing. No scrape
  has run then, as for a bridge that only Prometheus scrapes (it asks for gzip): the snapshots hold their gzip segments
  and not their text. The second figure is taken the same way after the sequential plain and gzip scrapes, when the
  snapshots the plain ones read keep their text too (`store._Bodies`).
- **scheduling**: {plan.schedule_targets} copies of the demo's services target, 5 % pointed at a loopback URL that holds the
  request past the timeout; "late" and "skipped" come from the bridge's own `metrics_bridge_poll_start_delay_seconds`
  histogram (bucket 1.0) and `metrics_bridge_poll_skipped_total`, read between rounds; the API counts requests as a check.
- **concurrent scrapes**: {plan.concurrent_scrapers} scraper processes (`bench/scraper.py`) scraping in a loop (half with gzip) for {plan.concurrent_seconds:g} s
  on each server while the scheduler polls (in A B B A order, {plan.concurrent_seconds / 2:g} s a phase, so that drift over the minute is
  charged to neither); every response must be 200 and complete, every fourth is decoded and its samples counted.
  Each scraper is a process, as each Prometheus is (threads of the driver measured its GIL), at nice {SCRAPER_NICE}: they
  stand in for Prometheus servers on other machines, whose reading and decoding would not take the bridge's CPU.
  The large targets' polls during each server's phases are counted from the bridge's self-metrics, with reasons.
- The demo API runs in its own process with its clock frozen, so every poll gets the same bytes; the bridge still
  fetches, maps, renders and compresses every poll in full (it has no change detection). Its sockets set TCP_NODELAY,
  as Go's net/http and nginx do: Python's http.server writes headers and body apart, and a small body would otherwise
  wait ~40 ms for a delayed ACK.
- The machine's 2 cores are shared by the bridge, the API, this driver and any other work, so numbers are noisy; the
  load average at the start is below.
{extra}
### Machine

| | |
| --- | --- |
""" + "\n".join(f"| {k} | {v} |" for k, v in m.items()) + "\n"
    path = out / "RESULTS.md"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    begin = text.find(SECTION + "\n")
    if begin >= 0:  # replace this run's section, up to the next section
        following = text.find("\n## ", begin + 1)
        text = text[:begin] + section + ("\n" + text[following + 1 :] if following >= 0 else "")
    else:  # first in the file, under the title; other sections (bench/soak.py's) follow
        rest = text.split("\n", 1)[1].lstrip("\n") if text.startswith("# ") else text.lstrip("\n")
        text = "# Benchmark results\n\n" + section + ("\n" + rest if rest else "")
    path.write_text(text, encoding="utf-8")
    return path


def main(argv: Optional[list[str]] = None) -> int:
    """Run the plan, print the table, write RESULTS.md and results.png."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes and short windows (CI smoke test)")
    parser.add_argument("--sizes", default=None, help="comma-separated series counts, overriding the plan's")
    parser.add_argument("--out", default=None, help="where to write RESULTS.md and results.png (default: bench/, or a temporary directory with --quick)")
    parser.add_argument("--notes", default=None, help="a Markdown file added to RESULTS.md (analysis, profiles)")
    parser.add_argument("--check", action="store_true", help="exit 1 when any target is not met")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.sizes:
        plan = Plan(**{**plan.__dict__, "sizes": tuple(int(s) for s in args.sizes.split(","))})
    out = Path(args.out) if args.out else (Path(tempfile.mkdtemp(prefix="metrics-bridge-bench-")) if args.quick else BENCH)
    out.mkdir(parents=True, exist_ok=True)
    command = "python bench/run.py" + (" --quick" if args.quick else "") + (f" --sizes {args.sizes}" if args.sizes else "")
    started = time.monotonic()
    machine = machine_info()
    work = Path(tempfile.mkdtemp(prefix="metrics-bridge-bench-work-"))
    try:
        sizes = []
        for i, series in enumerate(plan.sizes):
            print(f"[bench] {series:,} series ...", file=sys.stderr, flush=True)
            sizes.append(measure_size(series, plan, work, concurrent=i == len(plan.sizes) - 1))
        large = []
        for series in plan.large:
            print(f"[bench] {series:,} series (poll and memory) ...", file=sys.stderr, flush=True)
            large.append(measure_size(series, plan, work, concurrent=False, full=False))
        print("[bench] scheduling ...", file=sys.stderr, flush=True)
        scheduling = measure_scheduling(plan, work)
    except BaseException:
        print(f"[bench] failed; the helper processes' logs are in {work}", file=sys.stderr)
        raise
    shutil.rmtree(work, ignore_errors=True)
    report = Report(plan, sizes, scheduling, machine, command, time.monotonic() - started, large)
    report.evaluate()
    extra = Path(args.notes).read_text(encoding="utf-8") if args.notes else ""
    plot(report, out / "results.png")
    results = write_results(report, out, extra)
    (out / "results.json").write_bytes(orjson.dumps({"sizes": sizes, "large": large, "scheduling": scheduling, "machine": machine}, option=orjson.OPT_INDENT_2))
    print(report.table())
    print()
    print(report.detail())
    print()
    print(report.other())
    print()
    print(report.servers())
    print()
    print(report.stages())
    print(f"\nwrote {results} and {out / 'results.png'}")
    return 1 if args.check and not all(c.passed for c in report.checks) else 0


if __name__ == "__main__":
    sys.exit(main())
