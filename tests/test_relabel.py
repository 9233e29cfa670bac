"""Relabel rules: Prometheus' own test cases, its validation, and metric_relabel_configs on mapped series."""

import math
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from exporter.config import ConfigError, parse_config
from exporter.mapping import Mapper, MappingError
from exporter.relabel import RelabelConfig, expand, relabel

CASES = yaml.safe_load((Path(__file__).parent / "testdata" / "relabel" / "prometheus.yaml").read_text())


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_prometheus_relabel_cases_give_prometheus_results(case):
    rules = [RelabelConfig(**rule) for rule in case["rules"]]
    result = relabel(case["input"], rules)
    if case.get("drop"):
        assert result is None
    else:
        assert result == case["output"]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"action": "replace"}, "relabel configuration for replace action requires 'target_label' value"),
        ({"action": "lowercase"}, "relabel configuration for lowercase action requires 'target_label' value"),
        ({"action": "lowercase", "target_label": "${3}"}, "'${3}' is invalid 'target_label' for lowercase action"),
        ({"action": "uppercase", "target_label": "x", "replacement": "y"}, "'replacement' can not be set for uppercase action"),
        ({"action": "hashmod", "target_label": "x"}, "relabel configuration for hashmod requires non-zero modulus"),
        ({"action": "replace", "target_label": "-label"}, "'-label' is invalid 'target_label' for replace action"),
        ({"action": "replace", "target_label": "foo${"}, "'foo${' is invalid 'target_label' for replace action"),
        ({"action": "labelmap", "replacement": "-${1}"}, "'-${1}' is invalid 'replacement' for labelmap action"),
        ({"action": "labeldrop", "regex": "x", "source_labels": ["a"]}, "labeldrop action requires only 'regex', and no other fields"),
        ({"action": "keepequal", "target_label": "x", "regex": "y"}, "keepequal action requires only 'source_labels' and `target_label`, and no other fields"),
        ({"action": "frobnicate"}, "unknown relabel action 'frobnicate'"),
        ({"action": "replace", "target_label": "x", "regex": "(a)\\1"}, "is not valid RE2 syntax"),
        ({"action": "replace", "target_label": "level"}, "target_label 'level' is set by metrics-bridge itself"),
        ({"action": "lowercase", "target_label": "target", "source_labels": ["a"]}, "target_label 'target' is set by metrics-bridge itself"),
    ],
)
def test_invalid_rules_are_refused_as_prometheus_refuses_them(rule, message):
    with pytest.raises(ValidationError, match=None) as caught:
        RelabelConfig(**rule)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "rule",
    [
        {"regex": "__meta_kubernetes_pod_label_(strimzi_io_.+)", "action": "labelmap", "replacement": "$1"},
        {"regex": "__meta_(.+)", "action": "labelmap", "replacement": "${1}"},
        {"source_labels": ["a"], "regex": "some-([^-]+)-([^,]+)", "action": "replace", "replacement": "${1}", "target_label": "${3}"},
        {"action": "Replace", "target_label": "x"},  # actions are case-insensitive, as in Prometheus
    ],
)
def test_valid_rules_from_prometheus_are_accepted(rule):
    RelabelConfig(**rule)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("$1", "a"), ("${1}", "a"), ("$1x", ""), ("${1}x", "ax"), ("$10", ""), ("$name", "b"), ("${name}", "b"),
        ("$$1", "$1"), ("$", "$"), ("${", "${"), ("${}", "${}"), ("$-", "$-"), ("$01", ""), ("x$2y", "x"),
    ],
)
def test_replacement_templates_expand_as_gos_regexp_expand(template, expected):
    assert expand(template, ["ab", "a", "b"], {"name": 2}) == expected


CGROUP_RULES = """
    metric_relabel_configs:
      - source_labels: [cgroup]
        regex: 'kubepods-[a-z]+-pod([0-9a-f_]+)\\.slice'
        target_label: pod_uid
        replacement: '$1'
      - source_labels: [pod_uid]
        regex: '([0-9a-f]+)_([0-9a-f]+)_([0-9a-f]+)'
        target_label: pod_uid
        replacement: '$1-$2-$3'
      - regex: cgroup
        action: labeldrop
"""


def cgroup_target(rules=CGROUP_RULES, extra=""):
    return parse_config(f"""
targets:
  - name: t
    url: http://127.0.0.1:1/
{rules}{extra}
    mappings:
      - each: cgroups
        level: service
        labels: {{cgroup: {{key: true}}}}
        metrics:
          - {{name: cgroup_memory_bytes, value: memory}}
          - {{name: cgroup_oom_kills_total, type: counter, value: oom}}
""").targets[0]


def test_a_cgroup_key_becomes_a_pod_uid_label():
    document = {"cgroups": {"kubepods-burstable-pod0b1f9e52_3c7a_4d7e.slice": {"memory": 1024, "oom": 2}}}
    result = Mapper(cgroup_target()).map(document)
    assert result.families["cgroup_memory_bytes"] == {'{level="service",target="t",pod_uid="0b1f9e52-3c7a-4d7e"}': 1024.0}
    assert result.families["cgroup_oom_kills_total"] == {'{level="service",target="t",pod_uid="0b1f9e52-3c7a-4d7e"}': 2.0}


def test_keep_and_drop_rules_select_series_by_name_and_labels():
    rules = """
    metric_relabel_configs:
      - {source_labels: [__name__], regex: 'cgroup_memory_bytes', action: keep}
      - {source_labels: [cgroup], regex: '.*besteffort.*', action: drop}
"""
    document = {"cgroups": {"kubepods-burstable-podab.slice": {"memory": 1, "oom": 0}, "kubepods-besteffort-podcd.slice": {"memory": 2, "oom": 0}}}
    result = Mapper(cgroup_target(rules)).map(document)
    assert result.families["cgroup_memory_bytes"] == {'{level="service",target="t",cgroup="kubepods-burstable-podab.slice"}': 1.0}
    assert result.families["cgroup_oom_kills_total"] == {}


def test_rules_never_change_or_remove_level_and_target():
    rules = """
    metric_relabel_configs:
      - {regex: 'level|target|cgroup', action: labeldrop}
      - {regex: '(cgroup)', replacement: 'level', action: labelmap}
"""
    result = Mapper(cgroup_target(rules)).map({"cgroups": {"x": {"memory": 1, "oom": 0}}})
    assert list(result.families["cgroup_memory_bytes"]) == ['{level="service",target="t"}']


def test_a_rule_may_rename_a_metric_and_the_family_keeps_its_type_and_help():
    from exporter.poller import Poller
    from exporter.store import Snapshot

    rules = """
    metric_relabel_configs:
      - {source_labels: [__name__], regex: 'cgroup_(.*)', target_label: __name__, replacement: 'container_$1'}
"""
    target = cgroup_target(rules)
    result = Mapper(target).map({"cgroups": {"x": {"memory": 1, "oom": 3}}})
    assert result.families["container_oom_kills_total"] == {'{level="service",target="t",cgroup="x"}': 3.0}
    snapshot = Snapshot.build("t", result, Poller.family_headers(target), math.inf)
    headers = {header.name: header.type for header in snapshot.headers}
    assert headers == {"container_memory_bytes": "gauge", "container_oom_kills_total": "counter"}


def test_a_rename_that_breaks_the_type_suffix_fails_the_poll():
    rules = """
    metric_relabel_configs:
      - {source_labels: [__name__], regex: '(.*)_total', target_label: __name__, replacement: '$1'}
"""
    with pytest.raises(MappingError, match="a counter's name must end in _total"):
        Mapper(cgroup_target(rules)).map({"cgroups": {"x": {"memory": 1, "oom": 3}}})


def test_scratch_labels_starting_with_two_underscores_are_removed_after_the_rules():
    rules = """
    metric_relabel_configs:
      - {source_labels: [cgroup], regex: '(.*)\\.slice', target_label: __tmp_unit, replacement: '$1'}
      - {source_labels: [__tmp_unit], regex: '(.*)', target_label: unit, replacement: 'u-$1'}
"""
    result = Mapper(cgroup_target(rules)).map({"cgroups": {"a.slice": {"memory": 1, "oom": 0}}})
    assert list(result.families["cgroup_memory_bytes"]) == ['{level="service",target="t",cgroup="a.slice",unit="u-a"}']


def test_relabelled_series_are_held_to_the_label_limits():
    rules = """
    metric_relabel_configs:
      - {source_labels: [cgroup], target_label: copy, regex: '(.*)', replacement: '$1$1$1'}
"""
    with pytest.raises(MappingError) as caught:
        Mapper(cgroup_target(rules, "    label_value_length_limit: 25\n")).map({"cgroups": {"x" * 10: {"memory": 1, "oom": 0}}})
    assert caught.value.reason == "too_large" and "label_value_length_limit (25)" in str(caught.value)
    with pytest.raises(MappingError, match="label_limit"):
        Mapper(cgroup_target(rules, "    label_limit: 4\n")).map({"cgroups": {"x": {"memory": 1, "oom": 0}}})


def test_label_values_with_quotes_and_newlines_survive_relabelling_exactly():
    rules = """
    metric_relabel_configs:
      - {source_labels: [cgroup], target_label: copy}
"""
    result = Mapper(cgroup_target(rules)).map({"cgroups": {'a"b\\c\nd': {"memory": 1, "oom": 0}}})
    assert list(result.families["cgroup_memory_bytes"]) == ['{level="service",target="t",cgroup="a\\"b\\\\c\\nd",copy="a\\"b\\\\c\\nd"}']


def test_a_bad_rule_is_a_config_error_with_its_key_path():
    with pytest.raises(ConfigError) as caught:
        cgroup_target("    metric_relabel_configs:\n      - {action: replace, regex: '('}\n")
    assert caught.value.problems[0].startswith("targets[0].metric_relabel_configs[0]")
