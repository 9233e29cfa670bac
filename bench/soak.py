"""Soak: `metrics-bridge run` polled and scraped for ten minutes, with pod churn and one flapping target.

    python bench/soak.py                  # 10 minutes; prints the figures and writes the "Soak" section of bench/RESULTS.md
    python bench/soak.py --minutes 2      # a shorter look (--no-write leaves bench/RESULTS.md alone)

The bridge runs as its own process (`python -m exporter run`), so the RSS and file descriptors measured are its own.
This process runs two demo APIs on loopback (`exporter/demo.py`) and drives everything:

- **churn**: a demo platform of 60 pods that replaces a fifth of them every 5 s, so pod names (and series) keep
  coming and going; it feeds four targets (services, pods, containers, and the model-server containers alone).
- **flap**: a second demo platform for the fifth target, `flappy`, which this process switches between answering
  and HTTP 503 every 15 s; with `stale_after: 6s`, every down phase serves the stale snapshot, then drops it, and every
  up phase restores it.
- **scrapes**: two scrapers, one asking for text format with gzip, one for OpenMetrics without, each scraping every
  0.25 s for the whole run; every answer must be 200 and parse, and hold the four healthy targets' series. Every 5 s
  the status page and the targets API are fetched too, and every minute `promtool check metrics` (if installed) checks
  a scrape.

Every 5 s the bridge's RSS (VmRSS), open file descriptors and threads are read from /proc. After a warm-up (a fifth of
the run, at most 2 minutes), the baseline is the median of the first six readings and the end the median of the last
six. Passing means: RSS growth from baseline to end under 5 %, file descriptors flat (end within 5 of baseline), and
zero scrape errors. The exit status says whether it passed.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import requests
import yaml
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from exporter.cli import demo_config_text  # noqa: E402
from exporter.demo import DemoPlatform, DemoServer, Fault  # noqa: E402

HEALTHY = ("services", "pods", "containers", "model-servers")
MiB = 1024 * 1024


def soak_config(churn_url: str, flap_url: str, interval: float) -> dict[str, Any]:
    """The demo config's three targets on the churning API, plus the model-server containers alone, plus `flappy`."""
    config = yaml.safe_load(demo_config_text())
    by_name = {t["name"]: t for t in config["targets"]}
    model_servers = {**by_name["containers"], "name": "model-servers",
                     "params": {"metric_type": "container", "container_name": "model-server"}}
    flappy = {**by_name["pods"], "name": "flappy", "url": flap_url, "stale_after": "6s"}
    targets = [*config["targets"], model_servers, flappy]
    for t in targets:
        t.setdefault("url", churn_url)
        if t["url"].startswith("${"):
            t["url"] = churn_url
        t.update(interval=f"{interval:g}s", timeout=f"{interval * 0.75:g}s", retries={"attempts": 1})
    return {"targets": targets}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def proc_figures(pid: int) -> dict[str, int]:
    """RSS in bytes, open file descriptors and threads of a process, from /proc."""
    figures = {"fds": len(os.listdir(f"/proc/{pid}/fd"))}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key == "VmRSS":
            figures["rss"] = int(rest.split()[0]) * 1024
        elif key == "Threads":
            figures["threads"] = int(rest)
    return figures


@dataclass
class Scrapes:
    """What the scrapers saw."""

    count: int = 0
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    pods_seen: set[str] = field(default_factory=set)
    flappy_present: Optional[bool] = None
    flappy_dropped: int = 0
    flappy_restored: int = 0
    series: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def error(self, text: str) -> None:
        with self.lock:
            self.errors.append(f"{time.strftime('%H:%M:%S')} {text}")


def check_exposition(text: str, openmetrics: bool, scrapes: Scrapes) -> None:
    """Parse a scrape and check that every healthy target has series in it; note flappy's comings and goings."""
    targets: set[str] = set()
    pods: set[str] = set()
    bridged = 0
    for family in (parse_openmetrics if openmetrics else parse_text)(text):
        for sample in family.samples:
            if family.name.startswith("inference_"):
                bridged += 1
                targets.add(sample.labels.get("target", ""))
                if "pod" in sample.labels:
                    pods.add(sample.labels["pod"])
    missing = [t for t in HEALTHY if t not in targets]
    if missing:
        scrapes.error(f"scrape without series of {', '.join(missing)}")
    with scrapes.lock:
        scrapes.pods_seen |= pods
        scrapes.series.append(bridged)
        present = "flappy" in targets
        if scrapes.flappy_present is not None and present != scrapes.flappy_present:
            if present:
                scrapes.flappy_restored += 1
            else:
                scrapes.flappy_dropped += 1
        scrapes.flappy_present = present


def scraper(url: str, openmetrics: bool, every: float, stop: threading.Event, scrapes: Scrapes) -> None:
    """Scrape until stopped, one scrape every `every` seconds; count and keep every failure."""
    session = requests.Session()
    headers = {"Accept": "application/openmetrics-text; version=1.0.0", "Accept-Encoding": "identity"} if openmetrics else {}
    while not stop.wait(every):
        started = time.perf_counter()
        try:
            response = session.get(url + "/metrics", headers=headers, timeout=10)
            latency = time.perf_counter() - started
            if response.status_code != 200:
                scrapes.error(f"/metrics answered {response.status_code}")
                continue
            if openmetrics and not response.text.endswith("# EOF\n"):
                scrapes.error("OpenMetrics scrape without # EOF")
            check_exposition(response.text, openmetrics, scrapes)
        except Exception as exc:  # every kind of failure is a scrape error to report, not a crash
            scrapes.error(f"/metrics: {type(exc).__name__}: {exc}")
            continue
        with scrapes.lock:
            scrapes.count += 1
            scrapes.latencies.append(latency)


def flapper(server: DemoServer, phase: float, stop: threading.Event) -> int:
    """Switch the flapping API between answering and 503 every `phase` seconds; return the number of down phases."""
    down = 0
    while not stop.wait(phase):
        if server.fault.mode == "none":
            server.fault = Fault(mode="status", status=503)
            down += 1
        else:
            server.fault = Fault()
    return down


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        return "?"


def run(minutes: float, scrape_every: float, interval: float) -> tuple[bool, str]:
    """Run the soak; return whether it passed and the Markdown section describing it."""
    duration = minutes * 60
    warmup = min(120.0, duration / 5)
    churn = DemoServer(DemoPlatform(pods=60, churn_interval=5.0, churn_ratio=0.2)).start()
    flap = DemoServer(DemoPlatform(pods=20, seed=2, churn_interval=3600.0)).start()
    for server in (churn, flap):  # the bridge's pooled connections reset when it stops: not worth a traceback
        server.httpd.handle_error = lambda request, address: None  # type: ignore[method-assign]
    work = Path(tempfile.mkdtemp(prefix="metrics-bridge-soak-"))
    config_path = work / "soak.yaml"
    config_path.write_text(yaml.safe_dump(soak_config(churn.url, flap.url, interval), sort_keys=False))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = work / "bridge.log"
    log = open(log_path, "w")
    bridge = subprocess.Popen(
        [sys.executable, "-m", "exporter", "run", "--config", str(config_path), f"--web.listen-address=127.0.0.1:{port}", "--log-level", "warning"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log,
    )
    stop = threading.Event()
    scrapes = Scrapes()
    readings: list[tuple[float, dict[str, int]]] = []
    page_errors: list[str] = []
    promtool = shutil.which("promtool")
    promtool_runs = promtool_failures = 0
    down_phases: list[int] = []
    started = time.monotonic()
    try:
        deadline = time.monotonic() + 30
        while True:  # bounded: 30 s for the bridge to answer /readyz
            try:
                if requests.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline or bridge.poll() is not None:
                raise SystemExit(f"the bridge did not become ready; see {log_path}")
            time.sleep(0.2)
        threads = [
            threading.Thread(target=scraper, args=(url, False, scrape_every, stop, scrapes), daemon=True),
            threading.Thread(target=scraper, args=(url, True, scrape_every, stop, scrapes), daemon=True),
            threading.Thread(target=lambda: down_phases.append(flapper(flap, 15.0, stop)), daemon=True),
        ]
        for thread in threads:
            thread.start()
        next_promtool = time.monotonic() + 60
        while not stop.wait(5.0):  # one reading every 5 s until the duration is up
            elapsed = time.monotonic() - started
            if bridge.poll() is not None:
                scrapes.error(f"the bridge exited with {bridge.returncode}")
                break
            readings.append((elapsed, proc_figures(bridge.pid)))
            for path in ("/", "/api/v1/targets", "/healthz"):
                try:
                    status = requests.get(url + path, timeout=10).status_code
                    if status != 200:
                        page_errors.append(f"{path} answered {status}")
                except requests.RequestException as exc:
                    page_errors.append(f"{path}: {exc}")
            if promtool and time.monotonic() >= next_promtool:
                next_promtool += 60
                text = requests.get(url + "/metrics", timeout=10).text
                checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
                promtool_runs += 1
                if (checked.returncode, checked.stdout, checked.stderr) != (0, "", ""):
                    promtool_failures += 1
                    scrapes.error(f"promtool: {checked.stdout}{checked.stderr}"[:300])
            if elapsed >= duration:
                break
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
        final_text = requests.get(url + "/metrics", timeout=10).text
    finally:
        stop.set()
        bridge.terminate()
        try:
            code = bridge.wait(timeout=30)
        except subprocess.TimeoutExpired:
            bridge.kill()
            code = bridge.wait()
        log.close()
        churn.close()
        flap.close()
    elapsed = time.monotonic() - started

    after = [(t, r) for t, r in readings if t >= warmup]
    if len(after) < 12:
        raise SystemExit(f"too few readings after the warm-up ({len(after)}); run longer")
    base = {k: statistics.median(r[k] for _, r in after[:6]) for k in ("rss", "fds", "threads")}
    end = {k: statistics.median(r[k] for _, r in after[-6:]) for k in ("rss", "fds", "threads")}
    peak = {k: max(r[k] for _, r in after) for k in ("rss", "fds", "threads")}
    low = {k: min(r[k] for _, r in after) for k in ("rss", "fds", "threads")}
    growth = (end["rss"] - base["rss"]) / base["rss"]
    polls = {
        s.labels["target"]: s.value
        for f in parse_text(final_text) for s in f.samples if s.name == "metrics_bridge_poll_success_total"
    }
    failed = {}
    for f in parse_text(final_text):
        for s in f.samples:
            if s.name == "metrics_bridge_poll_failures_total" and s.value:
                failed[f"{s.labels['target']}/{s.labels['reason']}"] = s.value
    by_minute = [min(readings, key=lambda reading: abs(reading[0] - 60 * m))[1] for m in range(1, int(elapsed // 60) + 1)]
    log_text = log_path.read_text()
    tracebacks = log_text.count("Traceback")
    scrape_errors = len(scrapes.errors) + len(page_errors)
    rss_ok, fds_ok, scrapes_ok = growth < 0.05, end["fds"] - base["fds"] <= 5, scrape_errors == 0 and tracebacks == 0
    passed = rss_ok and fds_ok and scrapes_ok and code == 0
    verdict = lambda ok: "pass" if ok else "**FAIL**"  # noqa: E731
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = f"""## Soak

Produced by `python bench/soak.py --minutes {minutes:g}` ({elapsed / 60:.1f} min, {now}, commit {commit()}, {os.cpu_count()} cores,
Python {platform.python_version()}); how it runs is in the docstring of `bench/soak.py`. Five targets polled every {interval:g} s by
`metrics-bridge run`: four on a demo API of 60 pods replacing a fifth of them every 5 s, and `flappy`, whose API answers
503 for 15 s out of every 30 (`stale_after: 6s`). Two scrapers, each every {scrape_every:g} s (text+gzip and OpenMetrics).
Figures after a {warmup:.0f} s warm-up; baseline = median of the first six 5 s readings after it, end = median of the last six.

| Check | Baseline | End | Min – max after warm-up | Verdict |
| --- | --- | --- | --- | --- |
| RSS (MiB) | {base['rss'] / MiB:.1f} | {end['rss'] / MiB:.1f} ({growth * 100:+.2f} %) | {low['rss'] / MiB:.1f} – {peak['rss'] / MiB:.1f} | {verdict(rss_ok)} (growth < 5 %) |
| Open file descriptors | {base['fds']:.0f} | {end['fds']:.0f} | {low['fds']} – {peak['fds']} | {verdict(fds_ok)} (end ≤ baseline + 5) |
| Threads | {base['threads']:.0f} | {end['threads']:.0f} | {low['threads']} – {peak['threads']} | (for information) |
| Scrape errors | | {scrape_errors} in {scrapes.count + len(scrapes.errors)} scrapes and {len(readings) * 3} page fetches | | {verdict(scrapes_ok)} (zero) |

- At each minute: RSS {", ".join(f"{r['rss'] / MiB:.1f}" for r in by_minute)} MiB; file descriptors {", ".join(str(r['fds']) for r in by_minute)}.
- Scrape latency: p50 {quantile(scrapes.latencies, 0.5) * 1000:.1f} ms, p99 {quantile(scrapes.latencies, 0.99) * 1000:.1f} ms;
  bridged samples per scrape {min(scrapes.series, default=0)} – {max(scrapes.series, default=0)}; {len(scrapes.pods_seen)} distinct pod names seen over the run (churn).
- Successful polls: {", ".join(f"{k} {v:.0f}" for k, v in sorted(polls.items()))}.
- Failed polls: {", ".join(f"{k} {v:.0f}" for k, v in sorted(failed.items())) or "none"} (flappy's are the injected 503s).
- `flappy` went down {sum(down_phases)} times; scrapes saw its series dropped {scrapes.flappy_dropped} times and restored {scrapes.flappy_restored} times.
- `promtool check metrics`: {f"{promtool_runs} checks, {promtool_failures} with problems" if promtool else "not installed, not run"}.
  Tracebacks in the bridge's log: {tracebacks}; exit status after SIGTERM: {code}.
"""
    if scrapes.errors or page_errors:
        section += "\nFirst errors:\n\n" + "".join(f"    {e}\n" for e in (scrapes.errors + page_errors)[:10])
    return passed, section


def write_section(section: str, path: Path) -> None:
    """Put the Soak section into RESULTS.md: replace an earlier one, else append; the rest of the file is untouched."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    start = text.find("## Soak\n")
    if start >= 0:
        following = text.find("\n## ", start + 1)
        text = text[:start] + section + (text[following + 1 :] if following >= 0 else "")
    else:
        text = (text.rstrip("\n") + "\n\n" if text.strip() else "") + section
    path.write_text(text, encoding="utf-8")


def main(argv: Optional[list[str]] = None) -> int:
    """Run the soak, print its section, write it into RESULTS.md; exit 1 if it failed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to soak")
    parser.add_argument("--scrape-interval", type=float, default=0.25, help="seconds between scrapes, per scraper")
    parser.add_argument("--poll-interval", type=float, default=2.0, help="every target's poll interval, in seconds")
    parser.add_argument("--results", default=str(BENCH / "RESULTS.md"), help="the Markdown file whose Soak section to write")
    parser.add_argument("--no-write", action="store_true", help="print the figures only")
    args = parser.parse_args(argv)
    passed, section = run(args.minutes, args.scrape_interval, args.poll_interval)
    print(section)
    if not args.no_write:
        write_section(section, Path(args.results))
        print(f"written to {args.results}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
