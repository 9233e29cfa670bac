"""Mapping micro-benchmark: the demo targets' documents at 200k series, mapped in-process, best of N CPU time (no HTTP; CPU time, not wall time, so that other load on the machine counts less).

    python bench/mapping.py               # 11,112 pods (200k series), best of 7
    python bench/mapping.py --pods 1000 --repeat 3

The poll-to-publish figure of bench/run.py includes the fetch and the rendering; this isolates `Mapper.map`, the
hot loop, so that two versions can be compared side by side on the same machine within a minute.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson  # noqa: E402

from exporter.config import load_config  # noqa: E402
from exporter.demo import DemoPlatform  # noqa: E402
from exporter.mapping import Mapper  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    """Print the best mapping time per demo target and in total."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=11_112)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    os.environ.setdefault("METRICS_BRIDGE_DEMO_URL", "http://127.0.0.1:1/")
    frozen = time.time()
    platform = DemoPlatform(pods=args.pods, clock=lambda: frozen)
    total_best = 0.0
    total_series = 0
    for target in load_config(ROOT / "exporter" / "demo.yaml").targets:
        document = orjson.loads(platform.body(str(target.params["metric_type"])))
        mapper = Mapper(target)
        best = float("inf")
        for _ in range(args.repeat):
            started = time.process_time()
            result = mapper.map(document)
            best = min(best, time.process_time() - started)
        total_best += best
        total_series += result.series
        print(f"{target.name:<12} {result.series:>8} series  {best * 1000:8.1f} ms")
    print(f"{'total':<12} {total_series:>8} series  {total_best * 1000:8.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
