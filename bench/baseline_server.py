"""The baseline: the same samples as labelled prometheus_client `Gauge` children, served by prometheus_client itself.

    python bench/baseline_server.py --exposition bridged.txt --repeat 3

This is the seed approach (and json_exporter's): a registry of labelled children, formatted by `generate_latest` on every
scrape. It reads the bridge's exposition, re-creates every sample as a child of a `Gauge` with the sample's name, times
`generate_latest` in this process, serves the registry with `start_http_server` (prometheus_client's WSGI app, gzip
included) on a free loopback port, prints one JSON line with the port and timings, and serves until stdin closes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import orjson
from prometheus_client import CollectorRegistry, Gauge, generate_latest, start_http_server
from prometheus_client.parser import text_string_to_metric_families


def build_registry(exposition: str) -> tuple[CollectorRegistry, int]:
    """A registry holding every sample of a text exposition as a labelled `Gauge` child; and the sample count."""
    by_name: dict[str, tuple[str, list[tuple[dict[str, str], float]]]] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            entry = by_name.setdefault(sample.name, (family.documentation, []))
            entry[1].append((sample.labels, sample.value))
    registry = CollectorRegistry(auto_describe=False)
    count = 0
    for name, (help_text, samples) in by_name.items():
        label_names = sorted({label for labels, _ in samples for label in labels})
        gauge = Gauge(name, help_text or name, label_names, registry=registry)
        for labels, value in samples:
            child = gauge.labels(*[labels.get(label, "") for label in label_names]) if label_names else gauge
            child.set(value)
            count += 1
    return registry, count


def main() -> int:
    """Build the registry, time `generate_latest`, serve until stdin closes."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exposition", required=True, help="a text exposition file holding the samples")
    parser.add_argument("--repeat", type=int, default=3, help="times to run generate_latest for its median")
    args = parser.parse_args()
    registry, samples = build_registry(Path(args.exposition).read_text(encoding="utf-8"))
    times = []
    size = 0
    for _ in range(max(1, args.repeat)):
        started = time.perf_counter()
        size = len(generate_latest(registry))
        times.append(time.perf_counter() - started)
    server, _thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    report = {"port": server.server_address[1], "samples": samples, "bytes": size, "generate_latest": statistics.median(times)}
    print(orjson.dumps(report).decode(), flush=True)
    sys.stdin.read()
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
