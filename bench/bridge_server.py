"""The bridge under test, in its own process so that its RSS is its own: `Bridge` + `MetricsServer`, as `metrics-bridge run`.

    python bench/bridge_server.py --config bench.yaml [--interval 5] [--timeout 4]

It serves /metrics on a free loopback port (and the same app on the old wsgiref server, `bench/legacy_server.py`, on
another: `legacy_port`), prints `{"port": ..., "legacy_port": ..., "pid": ...}`, then answers one JSON command a line on
standard input with one JSON line on standard output:

    {"cmd": "poll", "rounds": 3}    poll every target in turn, `rounds` times, on this thread, before the scheduler runs:
                                    the same `Poller` the scheduler's workers use, publishing to the served store
    {"cmd": "stages", "rounds": 3}  the same polls taken apart: fetch (HTTP + orjson.loads), map, render + compress
    {"cmd": "loads", "repeat": 5}   fetch each target's body once and time `orjson.loads` alone on those bytes
                                    (and again with the cyclic collector paused, as a poll parses)
    {"cmd": "start"}                start the scheduler (every target's first poll is now)
    {"cmd": "memory"}               current and peak RSS, in bytes ("settle": true: once the background compressor,
                                    which trims the heap after a large snapshot, has finished with every snapshot)
    {"cmd": "quit"}                 stop polling and serving, then exit
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import statistics
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson  # noqa: E402

from exporter.bridge import Bridge  # noqa: E402
from exporter.config import Config, load_config  # noqa: E402
from exporter.logsetup import configure_logging  # noqa: E402
from exporter.memory import fix_mmap_threshold, limit_arenas  # noqa: E402
from exporter.poller import Poller  # noqa: E402
from exporter.store import COMPRESSOR, Snapshot  # noqa: E402
from exporter.server import MetricsServer, create_app  # noqa: E402
from legacy_server import LegacyServer  # noqa: E402


def memory() -> dict[str, int]:
    """This process's resident set now and at its peak (VmHWM), in bytes."""
    status = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                status[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    peak = status.get("VmHWM", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"rss": status.get("VmRSS", peak), "peak": peak}


def override(config: Config, interval: float | None, timeout: float | None) -> Config:
    """The config with every target's interval and timeout replaced where given, and no sample_limit: the benchmark
    measures sizes (1M series) above the default limit of 200000 series per target, which would fail those polls."""
    targets = []
    for target in config.targets:
        new_interval = interval or target.interval
        new_timeout = min(timeout or target.timeout, new_interval)
        targets.append(target.model_copy(update={"interval": new_interval, "timeout": new_timeout, "sample_limit": 0}))
    return config.model_copy(update={"targets": targets})


def poll_rounds(pollers: dict[str, Poller], rounds: int) -> dict[str, Any]:
    """Poll every target in turn on this thread, as one of the scheduler's workers would; time each poll."""
    durations: dict[str, list[float]] = {name: [] for name in pollers}
    failures = 0
    for _ in range(rounds):
        for name, poller in pollers.items():
            started = time.perf_counter()
            ok = poller.poll()
            durations[name].append(time.perf_counter() - started)
            failures += not ok
    series = {name: poller.status.series for name, poller in pollers.items()}
    return {"durations": durations, "series": series, "failures": failures}


def poll_stages(pollers: dict[str, Poller], rounds: int) -> dict[str, dict[str, float]]:
    """Median seconds of each stage of `Poller.poll`, per target: where poll-to-publish goes.

    Each stage frees what `Poller.poll` frees where it frees it (the parsed documents before rendering, the samples
    after), and nothing outlives its target's turn: holding one target's documents through the next one's fetch would
    put two documents in memory at once, which no poll does, and raise the steady memory measured after these rounds
    (by 30-40 B per series at 200k, measured in-process).
    """
    stages: dict[str, dict[str, list[float]]] = {name: {"fetch": [], "map": [], "render": [], "publish": []} for name in pollers}
    for _ in range(rounds):
        for name, poller in pollers.items():
            t0 = time.perf_counter()
            fetched = poller.client.fetch()
            t1 = time.perf_counter()
            result = poller.mapper.new_result()
            for document in fetched.documents:
                poller.mapper.map(document, result)
            fetched.documents.clear()  # as Poller.poll does: the parsed response is not needed to render
            t2 = time.perf_counter()
            snapshot = Snapshot.build(name, result, poller.headers, poller.target.effective_stale_after, consume=True)
            t3 = time.perf_counter()
            poller.publish(snapshot)
            t4 = time.perf_counter()
            del fetched, result, snapshot
            for stage, seconds in zip(("fetch", "map", "render", "publish"), (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                stages[name][stage].append(seconds)
    return {name: {stage: statistics.median(v) for stage, v in by_stage.items()} for name, by_stage in stages.items()}


def time_loads(pollers: dict[str, Poller], repeat: int) -> dict[str, Any]:
    """For each target: fetch its body once, then the median time of `orjson.loads` on those very bytes."""
    out: dict[str, Any] = {}
    for name, poller in pollers.items():
        target = poller.target
        query = urllib.parse.urlencode({k: str(v) for k, v in target.params.items()})
        url = target.url + ("&" if "?" in target.url else "?") + query if query else target.url
        with urllib.request.urlopen(url, timeout=30) as response:
            body = response.read()
        times, paused = [], []
        for _ in range(repeat):
            started = time.perf_counter()
            orjson.loads(body)
            times.append(time.perf_counter() - started)
        for _ in range(repeat):  # as a poll parses: with the cyclic collector paused (exporter/gcpause.py)
            gc.disable()
            try:
                started = time.perf_counter()
                document = orjson.loads(body)
                paused.append(time.perf_counter() - started)
            finally:
                gc.enable()
            del document
        out[name] = {"bytes": len(body), "loads": statistics.median(times), "loads_paused": statistics.median(paused)}
    return out


def main() -> int:
    """Serve the bridge and answer commands until `quit` or end of input."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--interval", type=float, default=None)
    parser.add_argument("--timeout", type=float, default=None)
    args = parser.parse_args()
    configure_logging("error", "text", None)
    limit_arenas(2)  # as `metrics-bridge run` does (and MALLOC_ARENA_MAX=2 in the image)
    fix_mmap_threshold()
    config = load_config(args.config)
    config = override(config, args.interval, args.timeout)
    bridge = Bridge(config)
    # The measuring pollers' snapshots must not go stale while the scrape phases run, however long those take.
    pollers = {
        t.name: Poller(t.model_copy(update={"stale_after": 24 * 3600.0}), bridge.store, bridge.metrics, bridge.stop_event, bridge.gate)
        for t in config.targets
    }
    app = create_app(bridge)
    server = MetricsServer(app, "127.0.0.1", 0).start()
    legacy = LegacyServer(app, "127.0.0.1", 0).start()
    print(orjson.dumps({"port": server.port, "legacy_port": legacy.port, "pid": os.getpid(), **memory()}).decode(), flush=True)
    for line in sys.stdin:
        command = orjson.loads(line)
        cmd = command.get("cmd")
        if cmd == "poll":
            reply: Any = poll_rounds(pollers, int(command.get("rounds", 1)))
        elif cmd == "stages":
            reply = poll_stages(pollers, int(command.get("rounds", 1)))
        elif cmd == "loads":
            reply = time_loads(pollers, int(command.get("repeat", 5)))
        elif cmd == "start":
            for poller in pollers.values():
                poller.client.close()
            bridge.start()
            reply = {"started": True}
        elif cmd == "memory":
            if command.get("settle") and not COMPRESSOR.wait_idle(60):
                reply = {"error": "the compressor did not finish within 60 s"}
            else:
                reply = memory()
        elif cmd == "quit":
            break
        else:
            reply = {"error": f"unknown command {cmd!r}"}
        print(orjson.dumps(reply).decode(), flush=True)
    if bridge.started:
        bridge.stop(5.0)
    server.close()
    legacy.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
