"""The committed Grafana dashboards: generated from dashboards/generate.py, with uids, units, descriptions and variables.

The helpers here (`load_dashboards`, `panel_queries`, `variable_queries`, `substitute`) also serve
tests/test_live_prometheus.py, which runs every query against a real Prometheus.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from conftest import require_module
from exporter.selfmetrics import SelfMetrics
from test_alerts import alert_rules

REPO = Path(__file__).resolve().parent.parent
DASHBOARDS = REPO / "dashboards"
GENERATOR = DASHBOARDS / "generate.py"
# The uids are a contract: bookmarks, links and provisioning refer to them.
UIDS = {"metrics-bridge-inference-services", "metrics-bridge-pods-containers", "metrics-bridge-health"}
CHAIN = ["datasource", "job", "target", "namespace", "pod", "container"]
OLDEST_SCHEMA_VERSION = 39  # Grafana 11.0
SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\{([^{}]*)\}")
RANGE = re.compile(r"\[([^\]]*)\]")


def load_dashboards() -> dict[str, dict]:
    """Every committed dashboard, by file name."""
    return {path.name: json.loads(path.read_text(encoding="utf-8")) for path in sorted(DASHBOARDS.glob("*.json"))}


def panels(board: dict) -> Iterator[dict]:
    """Every panel that shows data (rows left out), nested ones included."""
    for panel in board["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def panel_queries() -> list[tuple[str, str, str, str]]:
    """(dashboard file, panel title, refId, expr) for every query of every panel of every dashboard."""
    return [
        (name, panel["title"], target["refId"], target["expr"])
        for name, board in load_dashboards().items()
        for panel in panels(board)
        for target in panel["targets"]
    ]


def variable_queries() -> list[tuple[str, str, str]]:
    """(dashboard file, variable name, query) for every query variable."""
    return [
        (name, variable["name"], variable["query"])
        for name, board in load_dashboards().items()
        for variable in board["templating"]["list"]
        if variable["type"] == "query"
    ]


def substitute(expr: str, rate_interval: str = "15s") -> str:
    """A query as Grafana would send it with every variable at "All" (its regex `.*`)."""
    expr = expr.replace("$__rate_interval", rate_interval)
    expr = re.sub(r"\$\{?(job|target|namespace|pod|container)\}?", ".*", expr)
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr


def test_regenerating_the_dashboards_changes_nothing(tmp_path: Path) -> None:
    require_module("grafana_foundation_sdk")
    subprocess.run([sys.executable, str(GENERATOR), "--output", str(tmp_path)], check=True, timeout=60)
    generated = {p.name: p.read_text(encoding="utf-8") for p in tmp_path.glob("*.json")}
    committed = {p.name: p.read_text(encoding="utf-8") for p in DASHBOARDS.glob("*.json")}
    assert sorted(generated) == sorted(committed)
    for name, text in generated.items():
        assert text == committed[name], f"dashboards/{name} is out of date: run python dashboards/generate.py"


def test_the_check_flag_names_a_dashboard_that_differs(tmp_path: Path) -> None:
    require_module("grafana_foundation_sdk")
    for path in DASHBOARDS.glob("*.json"):
        (tmp_path / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    ok = subprocess.run([sys.executable, str(GENERATOR), "--check", "--output", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    edited = tmp_path / "metrics-bridge-health.json"
    edited.write_text(edited.read_text(encoding="utf-8").replace("Bridge health", "Bridge wealth"), encoding="utf-8")
    stale = subprocess.run([sys.executable, str(GENERATOR), "--check", "--output", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert stale.returncode == 1
    assert "metrics-bridge-health.json" in stale.stderr and "inference-services" not in stale.stderr


def test_there_are_three_dashboards_with_stable_uids_named_after_their_files() -> None:
    boards = load_dashboards()
    assert {board["uid"] for board in boards.values()} == UIDS
    for name, board in boards.items():
        assert name == f"{board['uid']}.json"


def test_every_dashboard_has_the_schema_version_of_a_current_grafana() -> None:
    for name, board in load_dashboards().items():
        assert board["schemaVersion"] >= OLDEST_SCHEMA_VERSION, name


def test_every_panel_has_a_unit_a_description_and_the_dashboard_datasource() -> None:
    for name, board in load_dashboards().items():
        for panel in panels(board):
            where = f"{name}: {panel['title']}"
            assert panel["fieldConfig"]["defaults"].get("unit"), f"{where} has no unit"
            assert len(panel.get("description", "")) > 20, f"{where} does not say what it shows"
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
            assert panel["targets"], f"{where} has no query"
            for target in panel["targets"]:
                assert target["datasource"] == panel["datasource"], where


def test_panel_ids_are_unique_within_each_dashboard() -> None:
    for name, board in load_dashboards().items():
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), name


def test_variables_chain_from_datasource_to_container() -> None:
    boards = load_dashboards()
    chains = {name: [v["name"] for v in board["templating"]["list"]] for name, board in boards.items()}
    assert chains["metrics-bridge-pods-containers.json"] == CHAIN
    for name, board in boards.items():
        variables = board["templating"]["list"]
        assert chains[name] == CHAIN[: len(variables)], f"{name}: variables out of chain order"
        assert variables[0]["type"] == "datasource" and variables[0]["query"] == "prometheus"
        for position, variable in enumerate(variables[1:], start=1):
            assert variable["datasource"]["uid"] == "${datasource}", f"{name}: ${variable['name']}"
            for earlier in chains[name][1:position]:
                assert f"${earlier}" in variable["query"], f"{name}: ${variable['name']} ignores ${earlier}"
            assert variable["includeAll"] and variable["multi"] and variable["allValue"] == ".*"


def test_every_range_in_a_panel_query_is_the_rate_interval() -> None:
    for name, title, ref, expr in panel_queries():
        ranges = RANGE.findall(expr)
        assert all(r == "$__rate_interval" for r in ranges), f"{name}: {title} {ref}: {ranges}"
        if re.search(r"\b(rate|increase)\(", expr):
            assert ranges, f"{name}: {title} {ref}"


def test_every_selector_in_a_panel_query_filters_on_the_job_variable() -> None:
    for name, title, ref, expr in panel_queries():
        selectors = SELECTOR.findall(expr)
        assert selectors, f"{name}: {title} {ref}"
        for metric, matchers in selectors:
            assert 'job=~"$job"' in matchers, f"{name}: {title} {ref}: {metric}{{{matchers}}}"
            if metric.startswith("inference_"):
                assert 'namespace=~"$namespace"' in matchers, f"{name}: {title} {ref}: {metric}"


def test_every_substituted_query_has_no_variables_left() -> None:
    for _, _, _, expr in panel_queries():
        assert "$" not in substitute(expr)
    with pytest.raises(AssertionError):
        substitute('up{instance=~"$instance"}')


def test_every_bridged_demo_metric_is_on_a_dashboard() -> None:
    demo = yaml.safe_load((REPO / "exporter" / "demo.yaml").read_text(encoding="utf-8"))
    names = {metric["name"] for target in demo["targets"] for mapping in target["mappings"] for metric in mapping["metrics"]}
    used = {metric for _, _, _, expr in panel_queries() for metric, _ in SELECTOR.findall(expr)}
    assert len(names) >= 19
    assert names - used == set()


def test_every_self_metric_is_on_the_bridge_health_dashboard() -> None:
    metrics = SelfMetrics(process=False)
    suffix = {"counter": "_total", "histogram": "_bucket"}
    # build_info feeds the job variable; shard_info only labels a replica.
    names = {
        family.name + suffix.get(family.type, "")
        for family in metrics.registry.collect()
        if family.name not in ("metrics_bridge_build_info", "metrics_bridge_shard_info")
    }
    used = {
        metric
        for name, _, _, expr in panel_queries()
        if name == "metrics-bridge-health.json"
        for metric, _ in SELECTOR.findall(expr)
    }
    assert len(names) >= 13
    assert names - used == set()


def test_the_dashboards_colour_at_the_thresholds_of_the_alerts() -> None:
    require_module("grafana_foundation_sdk")
    spec = importlib.util.spec_from_file_location("dashboards_generate", GENERATOR)
    assert spec and spec.loader
    generate = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = generate  # dataclasses look their module up there
    try:
        spec.loader.exec_module(generate)
    finally:
        del sys.modules[spec.name]
    rules = alert_rules()
    for alert, threshold in [
        ("MetricsBridgePollFailing", generate.POLL_FAILURE_RATIO_WARNING),
        ("MetricsBridgeDataStale", generate.STALE_SECONDS_CRITICAL),
        ("InferenceHighErrorRatio", generate.ERROR_RATIO_WARNING),
        ("InferenceHighP99Latency", generate.LATENCY_P99_WARNING),
        ("InferenceContainerNearMemoryLimit", generate.MEMORY_OF_LIMIT_WARNING),
    ]:
        assert rules[alert]["expr"].strip().endswith(f"> {threshold:g}"), alert
