#!/usr/bin/env python3
"""Copy the files the chart renders from into helm/metrics-bridge/files/, since Helm reads only inside the chart.

The sources stay the single truth: alerts/metrics-bridge.rules.yml (PrometheusRule), dashboards/*.json (Grafana
ConfigMaps) and examples/config.yaml (the default config, as in the image). Run this after changing any of them;
tests/test_helm.py fails while a copy differs from its source or a copy has no source.

    python3 helm/sync-chart-files.py           # update the copies
    python3 helm/sync-chart-files.py --check   # exit 1 and list the differences, change nothing
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHART_FILES = REPO / "helm" / "metrics-bridge" / "files"
# (source glob relative to the repository, directory under files/ its copies go to)
SOURCES = [
    ("alerts/metrics-bridge.rules.yml", "alerts"),
    ("dashboards/*.json", "dashboards"),
    ("examples/config.yaml", "."),
]


def planned_copies(repo: Path = REPO, chart_files: Path = CHART_FILES) -> dict[Path, Path]:
    """Every copy the chart should hold, mapped to its source."""
    repo, chart_files = repo.resolve(), chart_files.resolve()
    copies: dict[Path, Path] = {}
    for pattern, directory in SOURCES:
        for source in sorted(repo.glob(pattern)):
            copies[(chart_files / directory / source.name).resolve()] = source
    return copies


def differences(repo: Path = REPO, chart_files: Path = CHART_FILES) -> list[str]:
    """What is out of date, one line each: missing or differing copies, and copies whose source is gone."""
    repo, chart_files = repo.resolve(), chart_files.resolve()
    copies = planned_copies(repo, chart_files)
    problems = []
    for copy, source in copies.items():
        if not copy.is_file():
            problems.append(f"{copy.relative_to(repo)}: missing copy of {source.relative_to(repo)}")
        elif copy.read_bytes() != source.read_bytes():
            problems.append(f"{copy.relative_to(repo)}: differs from {source.relative_to(repo)}")
    if chart_files.is_dir():
        for path in sorted(p.resolve() for p in chart_files.rglob("*") if p.is_file()):
            if path not in copies:
                problems.append(f"{path.relative_to(repo)}: no source any more (or not one of {[p for p, _ in SOURCES]})")
    return problems


def sync(repo: Path = REPO, chart_files: Path = CHART_FILES) -> list[str]:
    """Make the copies match their sources; return what changed."""
    changed = differences(repo, chart_files)
    copies = planned_copies(repo, chart_files)
    if chart_files.is_dir():
        for path in chart_files.rglob("*"):
            if path.is_file() and path.resolve() not in copies:
                path.unlink()
    for copy, source in copies.items():
        copy.parent.mkdir(parents=True, exist_ok=True)
        if not copy.is_file() or copy.read_bytes() != source.read_bytes():
            copy.write_bytes(source.read_bytes())
    return changed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="report differences and exit 1; change nothing")
    args = parser.parse_args()
    problems = differences() if args.check else sync()
    for line in problems:
        print(line)
    if args.check and problems:
        print("run: python3 helm/sync-chart-files.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
