"""Mapping: JSON documents become labelled samples, with parent labels, map keys, regexes and conversions."""

import math
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.collector import render_exposition
from exporter.config import load_config, parse_config
from exporter.mapping import Mapper, MappingError
from exporter.poller import Poller
from exporter.store import Snapshot

from golden import assert_golden

TESTDATA = Path(__file__).parent / "testdata"


def platform_target():
    return load_config(TESTDATA / "config" / "platform.yml").targets[0]


def platform_document():
    return orjson.loads((TESTDATA / "serve" / "platform.json").read_bytes())


def exposition(target, result) -> str:
    snapshot = Snapshot.build(target.name, result, Poller.family_headers(target), math.inf)
    return b"".join(render_exposition({target.name: snapshot})).decode()


def samples(result, name):
    return {labels: value for labels, value in result.families[name].items()}


def target_from(mapping_yaml: str, **target_keys):
    extra = "".join(f"    {k}: {v}\n" for k, v in target_keys.items())
    text = f"targets:\n  - name: t\n    url: http://127.0.0.1:1/\n{extra}    mappings:\n{mapping_yaml}"
    return parse_config(text).targets[0]


def test_the_realistic_platform_payload_maps_to_the_golden_exposition():
    target = platform_target()
    result = Mapper(target).map(platform_document())
    assert_golden("platform.txt", exposition(target, result))


def test_the_golden_exposition_parses_as_prometheus_text_with_a_level_on_every_series():
    text = (TESTDATA / "response" / "platform.txt").read_text()
    families = list(text_string_to_metric_families(text))
    assert len(families) == 22
    for family in families:
        for sample in family.samples:
            assert sample.labels["level"] in {"service", "pod", "container", "node"}
            if sample.labels["level"] in ("pod", "container"):
                assert sample.labels["pod"].startswith("chat-")
            if sample.labels["level"] == "container":
                assert sample.labels["container"] in {"model-server", "sidecar"}


def test_containers_inherit_the_namespace_and_pod_of_their_enclosing_objects():
    result = Mapper(platform_target()).map(platform_document())
    series = samples(result, "container_restarts_total")
    assert series == {
        '{level="container",target="platform",cluster="gpu-eu-1",namespace="inference",pod="chat-7d9f8b6c5-x2x9z",container="model-server"}': 0,
        '{level="container",target="platform",cluster="gpu-eu-1",namespace="inference",pod="chat-7d9f8b6c5-x2x9z",container="sidecar"}': 2,
        '{level="container",target="platform",cluster="gpu-eu-1",namespace="inference",pod="chat-7d9f8b6c5-q8w7e",container="model-server"}': 1,
    }


def test_map_keys_become_label_values():
    result = Mapper(platform_target()).map(platform_document())
    services = {labels.split('service="')[1].split('"')[0] for labels in result.families["svc_ready"]}
    assert services == {"chat", "embed"}


def test_a_null_value_skips_the_series_unless_a_default_is_given():
    result = Mapper(platform_target()).map(platform_document())
    assert len(result.families["svc_queue_depth"]) == 1
    assert sorted(result.families["svc_queue_depth_or_zero"].values()) == [0, 3]
    assert result.missing_values == 5


def test_a_json_string_field_is_decoded_and_mapped():
    result = Mapper(platform_target()).map(platform_document())
    assert sorted(result.families["container_kv_cache_usage_ratio"].values()) == [0.12, 0.415]


def test_a_value_of_the_wrong_type_fails_the_mapping_with_its_metric_and_path():
    document = platform_document()
    document["services"]["chat"]["rps"] = {"unexpected": "object"}
    with pytest.raises(MappingError, match=r"svc_requests_per_second \(value 'rps'\): not a number"):
        Mapper(platform_target()).map(document)


def test_skip_bad_values_drops_only_the_bad_sample_and_counts_it():
    target = platform_target().model_copy(update={"skip_bad_values": True})
    document = platform_document()
    document["services"]["chat"]["rps"] = "fast"
    result = Mapper(target).map(document)
    assert len(result.families["svc_requests_per_second"]) == 1
    assert result.bad_values == 1


def test_a_step_that_is_not_an_array_or_object_is_a_mapping_error():
    target = target_from(
        "      - each: items\n        level: service\n        metrics:\n          - {name: m, value: v}\n"
    )
    with pytest.raises(MappingError, match=r"each\[0\] 'items': expected an array or object, got str"):
        Mapper(target).map({"items": "oops"})


def test_a_missing_array_yields_no_samples_and_no_error():
    target = target_from("      - each: items\n        level: service\n        metrics:\n          - {name: m, value: v}\n")
    assert Mapper(target).map({}).series == 0


def test_duplicate_series_keep_the_last_value_and_are_counted():
    target = target_from(
        "      - each: items\n        level: pod\n        labels: {pod: name}\n        metrics:\n          - {name: m, value: v}\n"
    )
    result = Mapper(target).map({"items": [{"name": "a", "v": 1}, {"name": "a", "v": 2}, {"name": "b", "v": 3}]})
    assert result.duplicates == 1
    assert samples(result, "m") == {'{level="pod",target="t",pod="a"}': 2, '{level="pod",target="t",pod="b"}': 3}


def test_several_mappings_may_feed_one_metric_name():
    target = target_from(
        "      - each: a\n        level: service\n        labels: {service: n}\n        metrics:\n          - {name: m, help: h, value: v}\n"
        "      - each: b\n        level: service\n        labels: {service: n}\n        metrics:\n          - {name: m, help: h, value: v}\n"
    )
    result = Mapper(target).map({"a": [{"n": "x", "v": 1}], "b": [{"n": "y", "v": 2}]})
    assert len(result.families["m"]) == 2


def test_an_empty_pod_label_is_a_mapping_error_for_pod_level_series():
    target = target_from(
        "      - each: items\n        level: pod\n        labels: {pod: name}\n        metrics:\n          - {name: m, value: v}\n"
    )
    with pytest.raises(MappingError, match="empty 'pod' label"):
        Mapper(target).map({"items": [{"v": 1}]})


def test_label_values_with_quotes_backslashes_and_newlines_are_escaped():
    target = target_from(
        "      - each: items\n        level: service\n        labels: {service: name}\n        metrics:\n          - {name: m, value: v}\n"
    )
    result = Mapper(target).map({"items": [{"name": 'a"b\\c\nd', "v": 1}]})
    (labels,) = result.families["m"]
    assert labels == '{level="service",target="t",service="a\\"b\\\\c\\nd"}'


def test_label_regex_without_a_match_uses_the_default():
    target = target_from(
        "      - each: items\n        level: service\n        labels:\n          service: {path: id, regex: 'svc-(\\w+)', default: unknown}\n"
        "        metrics:\n          - {name: m, value: v}\n"
    )
    result = Mapper(target).map({"items": [{"id": "svc-chat", "v": 1}, {"id": "other", "v": 2}]})
    assert set(result.families["m"]) == {
        '{level="service",target="t",service="chat"}',
        '{level="service",target="t",service="unknown"}',
    }


def test_numeric_and_boolean_label_values_are_written_as_text():
    target = target_from(
        "      - each: items\n        level: service\n        labels: {shard: n, canary: c}\n        metrics:\n          - {name: m, value: v}\n"
    )
    result = Mapper(target).map({"items": [{"n": 3, "c": True, "v": 1}]})
    assert list(result.families["m"]) == ['{level="service",target="t",shard="3",canary="true"}']


def test_scale_converts_units_exactly():
    target = target_from(
        "      - level: service\n        metrics:\n          - {name: a_seconds, value: ns, scale: 1.0e-9}\n"
        "          - {name: b_bytes, value: mib, scale: 1048576}\n"
    )
    result = Mapper(target).map({"ns": 950000000, "mib": 7})
    assert list(result.families["a_seconds"].values()) == [0.95]
    assert list(result.families["b_bytes"].values()) == [7340032]
