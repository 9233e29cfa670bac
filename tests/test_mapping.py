"""Mapping: JSON documents become labelled samples, with parent labels, map keys, regexes and conversions."""

import math
import textwrap
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.collector import render_exposition
from exporter.config import ConfigError, load_config, parse_config
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


# --- aggregate: fold the array a value path finds into one sample ----------------------------------------------


def recipe_target(yaml_text: str):
    """The first target of a config written as an indented YAML block."""
    return parse_config(textwrap.dedent(yaml_text)).targets[0]


def config_problems(yaml_text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(textwrap.dedent(yaml_text))
    return caught.value.problems


POD_METRICS = {
    "items": [
        {"name": "chat-0", "containers": [{"usage": {"cpu": "250m"}}, {"usage": {"cpu": "1834567123n"}}]},
        {"name": "chat-1", "containers": [{"usage": {"cpu": "3u"}}, {"usage": {}}]},
        {"name": "chat-2", "containers": []},
    ]
}


def aggregate_target(how: str, extra: str = "") -> object:
    return recipe_target(
        f"""
        targets:
          - name: t
            url: http://127.0.0.1:1/
            {extra}
            mappings:
              - each: items
                level: pod
                labels: {{pod: name}}
                metrics:
                  - {{name: cpu_cores, value: "containers[].usage.cpu", convert: quantity, aggregate: {how}}}
        """
    )


def test_aggregate_sum_adds_the_converted_values_of_every_element_exactly():
    result = Mapper(aggregate_target("sum")).map(POD_METRICS)
    assert samples(result, "cpu_cores") == {
        '{level="pod",target="t",pod="chat-0"}': 2.084567123,
        '{level="pod",target="t",pod="chat-1"}': 0.000003,
    }
    assert result.missing_values == 1  # chat-2 has no containers: no value, not a made-up 0


def test_aggregate_min_max_and_mean_fold_the_same_elements():
    document = {"items": [{"name": "p", "containers": [{"usage": {"cpu": c}} for c in ("500m", "1", "1500m")]}]}
    for how, expected in (("min", 0.5), ("max", 1.5), ("mean", 1.0)):
        result = Mapper(aggregate_target(how)).map(document)
        assert list(result.families["cpu_cores"].values()) == [expected], how


def test_aggregate_of_an_empty_array_takes_the_default_when_one_is_set():
    target = recipe_target(
        """
        targets:
          - name: t
            url: http://127.0.0.1:1/
            mappings:
              - each: items
                level: pod
                labels: {pod: name}
                metrics:
                  - {name: cpu_cores, value: "containers[].usage.cpu", convert: quantity, aggregate: sum, default: 0}
        """
    )
    result = Mapper(target).map(POD_METRICS)
    assert samples(result, "cpu_cores")['{level="pod",target="t",pod="chat-2"}'] == 0.0
    assert result.missing_values == 0


def test_aggregate_count_counts_the_elements_a_filter_keeps_including_none():
    target = recipe_target(
        """
        targets:
          - name: t
            url: http://127.0.0.1:1/
            mappings:
              - each: models
                level: service
                labels: {model: name}
                metrics:
                  - {name: workers_ready, value: "workers[?status=='READY']", aggregate: count}
        """
    )
    document = {
        "models": [
            {"name": "a", "workers": [{"status": "READY"}, {"status": "UNLOADING"}, {"status": "READY"}]},
            {"name": "b", "workers": [{"status": "UNLOADING"}]},
        ]
    }
    result = Mapper(target).map(document)
    assert samples(result, "workers_ready") == {
        '{level="service",target="t",model="a"}': 2.0,
        '{level="service",target="t",model="b"}': 0.0,
    }


def test_aggregate_on_a_value_that_is_not_an_array_is_a_bad_value():
    document = {"items": [{"name": "p", "containers": "250m"}]}
    target = recipe_target(
        """
        targets:
          - name: t
            url: http://127.0.0.1:1/
            mappings:
              - each: items
                level: pod
                labels: {pod: name}
                metrics:
                  - {name: cpu_cores, value: containers, convert: quantity, aggregate: sum}
        """
    )
    with pytest.raises(MappingError, match=r"mappings\[0\]\.metrics\[0\] cpu_cores .*aggregate: sum needs an array, got str"):
        Mapper(target).map(document)
    skipping = aggregate_target("sum", "skip_bad_values: true")
    result = Mapper(skipping).map({"items": [{"name": "p", "containers": [{"usage": {"cpu": "lots"}}]}]})
    assert result.families["cpu_cores"] == {} and result.bad_values == 1


def test_aggregate_misuse_is_reported_at_load_with_its_key_path():
    problems = config_problems(
        """
        targets:
          - name: t
            url: http://127.0.0.1:1/
            mappings:
              - level: service
                metrics:
                  - {name: a_info, type: info, aggregate: count}
                  - {name: b, value: xs, aggregate: count, convert: quantity}
                  - {name: c, value: xs, aggregate: median}
        """
    )
    assert any(p.startswith("targets[0].mappings[0].metrics[0]") and "no value to aggregate" in p for p in problems), problems
    assert any(p.startswith("targets[0].mappings[0].metrics[1]") and "drop convert" in p for p in problems), problems
    assert any(p.startswith("targets[0].mappings[0].metrics[2].aggregate") for p in problems), problems


def test_percent_of_a_json_number_is_the_exact_ratio():
    target = recipe_target(
        """
        targets:
          - name: t
            url: http://127.0.0.1:1/
            mappings:
              - level: service
                metrics:
                  - {name: cpu_ratio, value: Average, convert: percent}
        """
    )
    assert list(Mapper(target).map({"Average": 87.4}).families["cpu_ratio"].values()) == [0.874]


# --- labels_from: copy every key of an object as a label -----------------------------------------------------


def labels_from_target(labels_from: str, labels: str = "{}", level: str = "service", extra: str = ""):
    return recipe_target(
        f"""
        targets:
          - name: t
            url: http://127.0.0.1:1/
            labels: {{cluster: east}}
            {extra}
            mappings:
              - each: data.result
                level: {level}
                labels: {labels}
                labels_from: {labels_from}
                metrics:
                  - {{name: m, value: "value[1]"}}
        """
    )


def vector(*metrics: dict) -> dict:
    return {"status": "success", "data": {"resultType": "vector", "result": [{"metric": m, "value": [1, "2"]} for m in metrics]}}


def test_labels_from_copies_every_key_sorted_after_the_configured_labels():
    target = labels_from_target("metric", "{source: {value: prom}}")
    result = Mapper(target).map(vector({"pod": "chat-0", "namespace": "inference", "container": "server"}))
    assert list(result.families["m"]) == [
        '{level="service",target="t",cluster="east",source="prom",container="server",namespace="inference",pod="chat-0"}'
    ]


def test_labels_from_sanitises_names_drops_dunder_keys_and_leaves_out_empty_values():
    target = labels_from_target("metric")
    result = Mapper(target).map(
        vector({"__name__": "up", "app.kubernetes.io/name": "chat", "9lives": "x", "empty": "", "none": None, "n": 3, "q": 'a"b'})
    )
    assert list(result.families["m"]) == [
        '{level="service",target="t",cluster="east",_9lives="x",app_kubernetes_io_name="chat",n="3",q="a\\"b"}'
    ]


def test_labels_from_renames_level_and_target_and_yields_to_configured_labels():
    target = labels_from_target("metric", "{service: {value: configured}}")
    result = Mapper(target).map(vector({"level": "debug", "target": "db", "cluster": "west", "service": "copied", "a_b": "1", "a.b": "2"}))
    assert list(result.families["m"]) == [
        '{level="service",target="t",cluster="east",service="configured",a_b="2",exported_level="debug",exported_target="db"}'
    ]


def test_labels_from_exclude_leaves_the_named_keys_out():
    target = labels_from_target("{path: metric, exclude: [job, instance]}")
    result = Mapper(target).map(vector({"job": "vllm", "instance": "10.0.0.1:8000", "pod": "chat-0"}))
    assert list(result.families["m"]) == ['{level="service",target="t",cluster="east",pod="chat-0"}']


def test_labels_from_a_value_that_is_not_an_object_is_a_mapping_error():
    target = labels_from_target("metric")
    with pytest.raises(MappingError, match=r"mappings\[0\]\.labels_from 'metric': expected an object, got list"):
        Mapper(target).map(vector(["pod", "chat-0"]))  # type: ignore[arg-type]
    assert Mapper(target).map({"data": {"result": [{"value": [1, "2"]}]}}).series == 1  # no object: no copied labels


def test_labels_from_supplies_level_labels_checked_per_sample():
    target = labels_from_target("metric", level="container")  # accepted at load: pod and container may be copied
    result = Mapper(target).map(vector({"pod": "chat-0", "container": "server"}))
    assert list(result.families["m"]) == ['{level="container",target="t",cluster="east",container="server",pod="chat-0"}']
    with pytest.raises(MappingError, match="empty 'container' label"):
        Mapper(target).map(vector({"pod": "chat-0"}))


def test_labels_from_problems_are_reported_at_load_with_their_key_path():
    problems = config_problems(
        """
        targets:
          - name: t
            url: http://127.0.0.1:1/
            mappings:
              - level: service
                labels_from: {path: "metric[", exclude: job, extra: 1}
                metrics:
                  - {name: m, value: v}
        """
    )
    assert any(p.startswith("targets[0].mappings[0].labels_from.path") and "invalid JMESPath" in p for p in problems), problems
    assert any(p.startswith("targets[0].mappings[0].labels_from.exclude") for p in problems), problems
    assert "targets[0].mappings[0].labels_from.extra: unknown key" in problems


def test_a_repeated_string_value_converts_the_same_every_time_and_a_bad_one_is_counted_every_time():
    target = target_from(
        "      - each: items\n        level: pod\n        labels: {pod: name}\n        metrics:\n"
        "          - {name: m_bytes, value: v, convert: quantity}\n",
        skip_bad_values="true",
    )
    mapper = Mapper(target)
    items = [{"name": f"p{i}", "v": "16Gi" if i % 3 else "lots"} for i in range(9)]
    for _ in range(2):  # and the same on the next poll
        result = mapper.map({"items": items})
        assert sorted(set(result.families["m_bytes"].values())) == [16 * 2**30]
        assert len(result.families["m_bytes"]) == 6 and result.bad_values == 3


def test_every_metric_of_an_element_with_an_empty_level_label_is_dropped_or_reported_by_name():
    mapping = (
        "      - each: items\n        level: pod\n        labels: {pod: name}\n        metrics:\n"
        "          - {name: m_one, value: a}\n          - {name: m_two, value: b}\n"
        "          - {name: m_info, type: info, labels: {node: node}}\n"
    )
    document = {"items": [{"name": "", "a": 1, "node": "n1"}, {"name": "ok", "a": 2, "b": 3, "node": "n2"}]}
    result = Mapper(target_from(mapping, skip_bad_values="true")).map(document)
    # m_two of the first element has no value: it is missing (read first), not bad.
    assert (result.bad_values, result.missing_values) == (2, 1)
    assert samples(result, "m_info") == {'{level="pod",target="t",pod="ok",node="n2"}': 1}
    with pytest.raises(MappingError, match=r"metrics\[0\] m_one: empty 'pod' label"):
        Mapper(target_from(mapping)).map(document)


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5])
def test_labels_render_in_configured_order_whatever_their_number(count):
    names = [f"l{i}" for i in range(count)]
    labels = ", ".join(f"{name}: {name}" for name in names)
    target = target_from(
        f"      - each: items\n        level: service\n        labels: {{{labels}}}\n        metrics:\n"
        f"          - {{name: m, value: v, labels: {{{', '.join(f'x{name}: {name}' for name in names)}}}}}\n"
    )
    element = {name: f'v"{i}' for i, name in enumerate(names)} | {"v": 1}
    (text,) = Mapper(target).map({"items": [element]}).families["m"]
    group = "".join(f',{name}="v\\"{i}"' for i, name in enumerate(names))
    own = "".join(f',x{name}="v\\"{i}"' for i, name in enumerate(names))
    assert text == '{level="service",target="t"' + group + own + "}"
