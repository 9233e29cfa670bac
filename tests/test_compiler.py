"""Compiled mappings: the generated code maps every document as the reference loop does, error for error."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings

from exporter.compiler import _code
from exporter.config import load_config, parse_config
from exporter.demo import DemoPlatform
from exporter.mapping import CHECK_EVERY, Mapper, MappingError

from test_properties import FEATURES, JSON
from test_recipes import BY_NAME, environment

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "examples" / "recipes"

# FEATURES (every feature of a mapping) under each option that changes the generated code: bad values skipped, label
# and sample limits, and metric_relabel_configs that rewrite, rename and drop.
RELABEL = """
    metric_relabel_configs:
      - {source_labels: [name], regex: "(a.*)", target_label: renamed, replacement: "x-$1"}
      - {source_labels: [__name__], regex: p_value, target_label: __name__, replacement: p_other}
      - {source_labels: [kind], regex: drop.*, action: drop}
      - {regex: secret, action: labeldrop}
"""
VARIANTS = {
    "plain": FEATURES,
    "skip_bad_values": FEATURES.replace("    labels: {cluster", "    skip_bad_values: true\n    labels: {cluster"),
    "label_limits": FEATURES.replace("    labels: {cluster", "    label_value_length_limit: 20\n    label_limit: 11\n    labels: {cluster"),
    "sample_limit": FEATURES.replace("    labels: {cluster", "    sample_limit: 9\n    labels: {cluster"),
    "relabel": FEATURES.replace("    labels: {cluster", RELABEL.lstrip("\n") + "    labels: {cluster"),
}
MAPPERS = {name: Mapper(parse_config(text).targets[0]) for name, text in VARIANTS.items()}


def outcome(mapper: Mapper, method: str, documents: list) -> tuple:
    """What mapping `documents` in turn gives: every sample (values by repr, so NaN equals NaN) and count, or the error."""
    result = mapper.new_result()
    try:
        for document in documents:
            getattr(mapper, method)(document, result)
    except MappingError as error:
        return ("error", type(error).__name__, error.reason, str(error))
    families = {name: {text: repr(value) for text, value in series.items()} for name, series in result.families.items()}
    order = {name: list(series) for name, series in result.families.items()}
    counts = (result.duplicates, result.missing_values, result.bad_values, result.invalid_counters, result.renamed)
    return ("ok", families, order, counts)


def assert_compiled_matches_reference(mapper: Mapper, *documents: object) -> tuple:
    compiled = outcome(mapper, "map", list(documents))
    reference = outcome(mapper, "interpret", list(documents))
    assert compiled == reference
    return compiled


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=JSON)
def test_compiled_code_maps_any_json_exactly_as_the_reference_loop(document):
    for mapper in MAPPERS.values():
        assert_compiled_matches_reference(mapper, document)


ITEM = {
    "name": "alpha", "kind": "web-1", "meta": {"team": "ml", "secret": "s", "a-b": 2}, "v": 12, "q": "250m",
    "pct": "87.5 %", "d": "1m30s", "ts": "2024-01-01T00:00:00Z", "ms": 1700000000000, "b": "1KiB", "state": "up",
    "text": "v=12.5", "values": [1, 2, None, 3], "tags": ["x", "y"],
}
DOCUMENTS = {
    "every-feature": {
        "items": [ITEM, {**ITEM, "name": "beta", "v": -3.5, "kind": None}, {**ITEM, "name": 'q"uo\\te\n', "v": 1e400}],
        "pods": [{"ns": "n1", "name": "p1", "containers": [{"name": "c1", "v": 1}, {"name": "c2", "v": 2}]},
                 {"ns": "n1", "name": "p2", "containers": {"x": {"name": "c3", "v": 3}}}],
        "blob": '{"inner": {"x": 4}}',
    },
    "digit strings": {"items": [{**ITEM, "q": "0042", "b": "1024", "v": "12", "pct": "50", "d": "90"},
                                {**ITEM, "name": "u", "q": "\u0663", "v": "\u00b2", "b": "9" * 400}]},
    "a long label value": {"items": [ITEM, {**ITEM, "name": "n" * 30}]},
    "a long copied label value": {"items": [{**ITEM, "meta": {"team": "t" * 30}}]},
    "an empty pod label": {"pods": [{"ns": "n1", "name": "", "containers": [{"name": "c3", "v": 3}]}]},
    "an empty pod label after a value ending in ',pod='": {"pods": [{"ns": "n1,pod=", "name": "", "containers": [{"name": "c", "v": 1}]}]},
    "an empty pod label after a value holding '\\\",pod='": {"pods": [{"ns": '\\",pod=', "name": "", "containers": [{"name": "c", "v": 1}]}]},
    "a map instead of a list": {"items": {"k1": ITEM, "k2": {**ITEM, "name": "b"}}},
    "bad values": {"items": [{**ITEM, "q": "lots", "state": "sideways", "d": [], "values": ["a"]}]},
    "duplicates": {"items": [ITEM, ITEM, ITEM]},
    "a counter going negative": {"items": [{**ITEM, "v": -1}]},
    "a step that is not iterable": {"items": 5},
    "a blob that is not JSON": {"blob": "{"},
    "a JMESPath function on the wrong type": {"items": [{**ITEM, "name": 5}]},
    "many elements": {"items": [{**ITEM, "name": f"n{i}"} for i in range(CHECK_EVERY + 5)]},
}


@pytest.mark.parametrize("variant", sorted(MAPPERS))
@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_compiled_code_gives_the_same_samples_counts_and_errors_as_the_reference_loop(variant, name):
    assert_compiled_matches_reference(MAPPERS[variant], DOCUMENTS[name])


def test_the_chosen_documents_cover_success_errors_and_aborts():
    """The comparisons above are not all of one kind: some map, some fail as `mapping`, some abort over a limit."""
    kinds = [outcome(mapper, "map", [doc]) for mapper in MAPPERS.values() for doc in DOCUMENTS.values()]
    reasons = {kind[2] if kind[0] == "error" else "ok" for kind in kinds}
    assert {"ok", "mapping", "too_large"} <= reasons
    for variant in ("plain", "skip_bad_values", "relabel"):
        ok = outcome(MAPPERS[variant], "map", [DOCUMENTS["every-feature"]])
        assert ok[0] == "ok" and sum(len(series) for series in ok[1].values()) > 20
    relabeled = outcome(MAPPERS["relabel"], "map", [DOCUMENTS["every-feature"]])[1]
    assert relabeled["p_other"] and not relabeled["p_value"]
    assert any('renamed="x-alpha"' in text for text in relabeled["p_other"])


def test_pages_mapped_into_one_result_count_as_one_poll():
    mapper = MAPPERS["plain"]
    first, second = {"items": [ITEM]}, {"items": [ITEM, {**ITEM, "name": "other"}]}
    compiled = assert_compiled_matches_reference(mapper, first, second)
    assert compiled[0] == "ok" and compiled[3][0] > 0  # the second page repeats the first page's series


def test_the_deadline_stops_compiled_mapping_within_check_every_elements():
    mapper = MAPPERS["plain"]
    document = DOCUMENTS["many elements"]
    with pytest.raises(MappingError, match="deadline passed while mapping") as caught:
        mapper.map(document, deadline=0.0)
    assert caught.value.reason == "timeout"


@pytest.mark.parametrize("recipe", sorted(p.name for p in RECIPES.glob("*.yaml")) + ["demo"])
def test_every_recipe_compiles_to_code_that_matches_the_reference_on_its_fixtures(recipe, monkeypatch, tmp_path):
    path = ROOT / "exporter" / "demo.yaml" if recipe == "demo" else RECIPES / recipe
    monkeypatch.setenv("METRICS_BRIDGE_DEMO_URL", "http://127.0.0.1:1/")
    if recipe != "demo":  # the settings the recipe's own golden test gives it
        for name, value in environment(BY_NAME[path.stem], "http://127.0.0.1:1", tmp_path).items():
            monkeypatch.setenv(name, value)
    config = load_config(path, syntax_only=True)
    fixtures = sorted((ROOT / "tests" / "testdata" / "recipes" / path.stem).glob("*.json"))
    documents = [orjson.loads(p.read_bytes()) for p in fixtures]
    if recipe == "demo":
        platform = DemoPlatform(pods=30)
        documents = [orjson.loads(platform.body(kind)) for kind in ("model_inference", "pod", "container")]
    assert documents
    for target in config.targets:
        mapper = Mapper(target)
        compile(mapper.source, recipe, "exec")  # the printed source is itself valid Python
        for document in documents:
            assert_compiled_matches_reference(mapper, document)


def test_a_mapping_is_compiled_once_per_source_and_reused_by_a_reload():
    target = parse_config(FEATURES).targets[0]
    first, again = Mapper(target), Mapper(target)
    assert [c.source for c in first.compiled] == [c.source for c in again.compiled]
    assert all(a.function.__code__ is b.function.__code__ for a, b in zip(first.compiled, again.compiled))
    assert _code.cache_info().hits > 0


def test_label_values_and_names_no_python_literal_holds_compile_to_the_same_text():
    """Quotes, backslashes, braces, newlines, non-ASCII and lone surrogates in a config's constants and target name."""
    weird = 'a\'b"c\\d{e}f\ng\u2028h\U0001F642'
    text = f"""
targets:
  - name: t
    url: http://127.0.0.1:1/
    labels: {{cluster: {orjson.dumps(weird).decode()}}}
    mappings:
      - each: items
        level: service
        labels:
          const: {{value: {orjson.dumps(weird + "}}").decode()}}}
          name: name
        metrics:
          - {{name: w_value, value: v}}
          - {{name: w_info, type: info, labels: {{other: {{value: {orjson.dumps(weird).decode()}}}}}}}
"""
    mapper = Mapper(parse_config(text).targets[0])
    result = assert_compiled_matches_reference(mapper, {"items": [{"name": "\ud800{x}", "v": 1}]})
    assert result[0] == "ok"
    (series,) = result[1]["w_value"]
    assert 'const="a\'b\\"c\\\\d{e}f\\ng\u2028h\U0001F642}}"' in series


def test_try_show_compiled_prints_the_generated_code_of_the_target(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(FEATURES)
    out = subprocess.run(
        [sys.executable, "-m", "exporter", "try", "--config", str(config), "--target", "prop", "--show-compiled"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == Mapper(parse_config(FEATURES).targets[0]).source
    compile(out.stdout, "shown", "exec")
    assert "def map_0(document, result, deadline, countdown):" in out.stdout
    assert "f0 = families.setdefault('p_value', {})" in out.stdout
    assert out.stderr == ""


ROOT_AND_KEYS = """
targets:
  - name: shapes
    url: http://127.0.0.1:1/
    mappings:
      - level: service
        labels: {version: meta.version, region: {value: eu}}
        metrics:
          - {name: r_total_requests, value: stats.requests, default: 0}
          - {name: r_up, value: "stats.up || `0`"}
      - each:
          - {path: pods, labels: {pod: {key: true}}}
          - {path: containers, labels: {container: {key: true}, image: {path: image, default: unknown}}}
        level: container
        metrics:
          - {name: r_restarts_total, type: counter, value: restarts}
"""


@pytest.mark.parametrize(
    "document",
    [
        {"meta": {"version": 3}, "stats": {"requests": 5, "up": True},
         "pods": {"p1": {"containers": {"c1": {"restarts": 2, "image": "i"}, "c2": {"restarts": -1}}}, "p2": {"containers": []}}},
        {"stats": None, "pods": {"p1": {"containers": [{"restarts": 1}]}}},
        {"pods": {"": {"containers": {"c": {"restarts": 1}}}}},
        [],
    ],
    ids=["map-keys-as-labels", "array-indexes-as-keys", "an-empty-key", "a-root-that-is-not-an-object"],
)
def test_root_mappings_and_map_keys_compile_to_the_same_series(document):
    assert_compiled_matches_reference(Mapper(parse_config(ROOT_AND_KEYS).targets[0]), document)


def test_an_empty_required_label_is_found_whatever_the_label_values_before_it_spell():
    """A value ending in `,pod=` (or holding an escaped quote before it) is not where the pod label starts."""
    for name in ("an empty pod label after a value ending in ',pod='", "an empty pod label after a value holding '\\\",pod='"):
        kind, *rest = outcome(MAPPERS["plain"], "map", [DOCUMENTS[name]])
        assert kind == "error" and rest[2].endswith("p_container_value: empty 'pod' label"), rest


COPIED_AT_CONTAINER_LEVEL = """
targets:
  - name: copied
    url: http://127.0.0.1:1/
    labels: {cluster: c1}
    mappings:
      - each:
          - {path: pods, labels: {pod: name}}
          - {path: containers, labels: {container: name}}
        level: container
        labels_from: {path: extra}
        metrics:
          - {name: c_value, value: v}
"""


def test_required_labels_are_tested_by_their_variables_unless_copied_labels_could_hold_them(monkeypatch):
    """The demo's pods mapping tests the pod label's variable; with `labels_from`, which may spell any label, the
    generated code searches the series text as the reference does, and both still agree."""
    monkeypatch.setenv("METRICS_BRIDGE_DEMO_URL", "http://127.0.0.1:1/")
    demo = load_config(ROOT / "exporter" / "demo.yaml", syntax_only=True).targets
    pods = Mapper(next(t for t in demo if t.name == "pods"))
    assert "if not l1:\n" in pods.compiled[0].source and "empty_label(" not in pods.source
    copied = Mapper(parse_config(COPIED_AT_CONTAINER_LEVEL).targets[0])
    assert "empty_label(t0, (',pod=\"', ',container=\"'))" in copied.source
    for extra in ({"pod": ""}, {"x": "y,pod="}, {}):
        document = {"pods": [{"name": "p", "containers": [{"name": "c", "v": 1, "extra": extra}]}, {"name": "", "containers": [{"name": "c", "v": 2}]}]}
        assert_compiled_matches_reference(copied, document)
