"""The alert rules: promtool-clean, unit-tested firing and not firing, annotated, and linked to their runbook sections."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import require_tool

REPO = Path(__file__).resolve().parent.parent
ALERTS = REPO / "alerts"
RULES = ALERTS / "metrics-bridge.rules.yml"
RULE_TESTS = ALERTS / "metrics-bridge.tests.yml"
RUNBOOK = REPO / "docs" / "runbook.md"
REQUIRED = {
    "MetricsBridgePollFailing",
    "MetricsBridgeTargetDown",
    "MetricsBridgeDataStale",
    "MetricsBridgeAbsent",
    "MetricsBridgeReloadFailed",
    "MetricsBridgeClockSkew",
    "InferenceHighErrorRatio",
    "InferenceHighP99Latency",
    "InferenceContainerNearMemoryLimit",
}
SEVERITIES = {"critical", "warning", "info"}


def alert_rules(text: str | None = None) -> dict[str, dict]:
    """Every alerting rule of the rules file, by name."""
    document = yaml.safe_load(text if text is not None else RULES.read_text(encoding="utf-8"))
    return {rule["alert"]: rule for group in document["groups"] for rule in group["rules"] if "alert" in rule}


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def promtool(*args: str, cwd: Path = ALERTS) -> subprocess.CompletedProcess:
    return subprocess.run([require_tool("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.mark.integration
def test_promtool_finds_the_rules_file_clean() -> None:
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


@pytest.mark.integration
def test_the_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_the_issue_asks_for_is_defined() -> None:
    assert REQUIRED <= set(alert_rules())


def test_every_alert_has_a_severity_summary_description_and_runbook_url() -> None:
    for name, rule in alert_rules().items():
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, name
        assert len(annotations["summary"]) > 15 and len(annotations["description"]) > 60, name
        assert annotations["runbook_url"] == f"docs/runbook.md#{name.lower()}", name


def test_every_runbook_url_points_at_a_section_of_the_runbook() -> None:
    headings = re.findall(r"^## (.+)$", RUNBOOK.read_text(encoding="utf-8"), flags=re.MULTILINE)
    anchors = {github_anchor(h) for h in headings}
    for name, rule in alert_rules().items():
        assert rule["annotations"]["runbook_url"].split("#", 1)[1] in anchors, name
    assert set(headings) == set(alert_rules()), "one runbook section per alert, no more"


def test_every_alert_is_unit_tested_both_firing_and_not_firing() -> None:
    cases = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    firing: set[str] = set()
    quiet: set[str] = set()
    for test in cases["tests"]:
        for check in test.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert firing == set(alert_rules()), "alerts never tested firing: " + ", ".join(sorted(set(alert_rules()) - firing))
    assert quiet == set(alert_rules()), "alerts never tested quiet: " + ", ".join(sorted(set(alert_rules()) - quiet))


@pytest.mark.integration
def test_the_unit_tests_fail_for_any_alert_that_can_no_longer_fire(tmp_path: Path) -> None:
    """Each alert in turn is given an expression that is always empty: promtool must notice every one."""
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    text = RULES.read_text(encoding="utf-8")
    for name in alert_rules(text):
        document = yaml.safe_load(text)
        for group in document["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == name:
                    rule["expr"] = "vector(1) == 2"
        (tmp_path / RULES.name).write_text(yaml.safe_dump(document), encoding="utf-8")
        result = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
        assert result.returncode != 0, f"the unit tests still pass with {name} unable to fire"
        assert name in result.stdout + result.stderr
