"""Benchmark smoke test: the quick plan of bench/run.py completes and writes its table and plot (timings not judged)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import require_module

REPO = Path(__file__).resolve().parent.parent
CHECKS = (
    "scrape p50, uncompressed",
    "scrape p50 vs generate_latest",
    "poll-to-publish @",
    "poll-to-publish / orjson.loads",
    "steady memory per series @",
    "peak RSS",
    "concurrent scrape p99, gzip",
    "concurrent scrape p99, plain",
    "healthy polls started > 1 s late",
    "healthy polls skipped",
    "scrape errors",
)


def test_the_quick_benchmark_runs_every_part_and_writes_its_table_and_plot(tmp_path):
    require_module("matplotlib")
    run = subprocess.run(
        [sys.executable, "bench/run.py", "--quick", "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    results = (tmp_path / "RESULTS.md").read_text()
    for check in CHECKS:
        rows = [line for line in results.splitlines() if line.startswith(f"| {check}")]
        assert rows, check
        for row in rows:
            assert row.endswith(("| PASS |", "| FAIL |")), row
            assert row in run.stdout
    # The large size (1M in the full plan) is judged on its own rows: poll-to-publish and memory per series.
    assert [line for line in results.splitlines() if line.startswith("| poll-to-publish @ 10k")]
    assert [line for line in results.splitlines() if line.startswith("| steady memory per series @ 10k")]
    assert "![Scrape latency and poll-to-publish against series count](results.png)" in results
    assert (tmp_path / "results.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "python bench/run.py --quick" in results
