"""Mapping: JSON documents become labelled samples, with parent labels, map keys, regexes and conversions."""

import math
import time
import textwrap
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.collector import render_exposition
from exporter.config import ConfigError, load_config, parse_config
from exporter.mapping import CHECK_EVERY, Mapper, MappingError
from exporter.poller import Poller
from exporter.store import Snapshot

from fakeapi import Reply
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
    assert "targets[0].mappings[0].labels_from.extra: unknown key (valid here: path, exclude)" in problems


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


# ---------------------------------------------------------------------------------------------- counters, limits, time
def counter_target(**keys):
    return target_from(
        "      - each: items\n        level: service\n        labels: {name: name}\n        metrics:\n"
        "          - {name: jobs_done_total, type: counter, value: done}\n"
        "          - {name: jobs_delta, value: done}\n",
        **keys,
    )


def test_negative_and_nan_counter_samples_are_dropped_and_counted_while_gauges_keep_them():
    target = counter_target()
    document = {"items": [{"name": "a", "done": -1}, {"name": "b", "done": "NaN"}, {"name": "c", "done": 5}, {"name": "d", "done": "+Inf"}]}
    result = Mapper(target).map(document)
    assert samples(result, "jobs_done_total") == {
        '{level="service",target="t",name="c"}': 5.0, '{level="service",target="t",name="d"}': math.inf,
    }
    assert result.invalid_counters == 2
    assert len(result.families["jobs_delta"]) == 4  # a gauge may go negative or be NaN


def test_the_exposition_with_bad_counters_in_the_input_passes_the_strict_openmetrics_parser():
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families

    target = counter_target()
    result = Mapper(target).map({"items": [{"name": "a", "done": -3}, {"name": "b", "done": "nan"}, {"name": "c", "done": 2}]})
    snapshot = Snapshot.build(target.name, result, Poller.family_headers(target), math.inf)
    text = b"".join(render_exposition({target.name: snapshot}, openmetrics=True)).decode() + "# EOF\n"
    families = {f.name: f for f in openmetrics_families(text)}
    assert [s.value for s in families["jobs_done"].samples] == [2.0]
    served = text.replace('name="c"} 2', 'name="c"} -3')  # the line the drop kept out
    with pytest.raises(ValueError, match="negative"):
        list(openmetrics_families(served))


def many(n, value=1):
    return {"items": [{"name": f"pod-{i}", "done": value} for i in range(n)]}


def test_mapping_over_sample_limit_fails_as_too_large_and_stops_early():
    mapper = Mapper(counter_target(sample_limit=100))
    result = mapper.new_result()
    with pytest.raises(MappingError) as caught:
        mapper.map(many(50_000), result)
    assert caught.value.reason == "too_large"
    assert "sample_limit (100)" in str(caught.value)
    assert result.series <= 2 * CHECK_EVERY  # stopped at the first check, not after 100,000 samples


def test_sample_limit_counts_the_whole_poll_across_pages_and_zero_means_no_limit():
    mapper = Mapper(counter_target(sample_limit=150))
    result = mapper.map(many(70))
    with pytest.raises(MappingError, match="sample_limit"):
        mapper.map({"items": [{"name": f"other-{i}", "done": 1} for i in range(10)]}, result)
    assert Mapper(counter_target(sample_limit=0)).map(many(5_000)).series == 10_000


def test_mapping_past_the_deadline_fails_as_timeout_within_one_check():
    mapper = Mapper(counter_target(sample_limit=0))
    result = mapper.new_result()
    with pytest.raises(MappingError) as caught:
        mapper.map(many(50_000), result, deadline=time.monotonic() - 1.0)
    assert caught.value.reason == "timeout"
    assert result.series <= 2 * CHECK_EVERY
    assert Mapper(counter_target()).map(many(10), deadline=time.monotonic() + 60).series == 20


def test_a_label_value_over_label_value_length_limit_fails_the_poll_as_too_large():
    mapper = Mapper(counter_target(label_value_length_limit=100))
    with pytest.raises(MappingError) as caught:
        mapper.map({"items": [{"name": "x" * 101, "done": 1}]})
    assert caught.value.reason == "too_large" and "'name'" in str(caught.value)
    # The limit is on the value, not its escaped text: 100 quotes are 200 characters escaped, and pass.
    assert mapper.map({"items": [{"name": '"' * 100, "done": 1}]}).series == 2
    assert Mapper(counter_target(label_value_length_limit=0)).map({"items": [{"name": "x" * 100_000, "done": 1}]}).series == 2


def test_a_twenty_megabyte_label_value_is_refused_by_default():
    with pytest.raises(MappingError, match="label_value_length_limit"):
        Mapper(counter_target()).map({"items": [{"name": "v" * 20_000_000, "done": 1}]})


def copied_target(**keys):
    return target_from(
        "      - each: items\n        level: service\n        labels_from: tags\n        metrics:\n"
        "          - {name: widget_count, value: n}\n",
        **keys,
    )


def test_copied_labels_over_label_limit_or_label_name_length_limit_fail_as_too_large():
    tags = {f"k{i}": "v" for i in range(10)}
    assert Mapper(copied_target(label_limit=13)).map({"items": [{"n": 1, "tags": tags}]}).series == 1
    with pytest.raises(MappingError, match="label_limit") as caught:
        Mapper(copied_target(label_limit=12)).map({"items": [{"n": 1, "tags": tags}]})
    assert caught.value.reason == "too_large"
    with pytest.raises(MappingError, match="label_name_length_limit"):
        Mapper(copied_target(label_name_length_limit=20)).map({"items": [{"n": 1, "tags": {"k" * 21: "v"}}]})


def test_configured_labels_that_can_never_fit_the_limits_are_config_errors():
    with pytest.raises(ConfigError) as caught:
        target_from(
            "      - each: items\n        level: service\n        labels: {a: a, b: b}\n        metrics:\n"
            "          - {name: x, value: v}\n",
            label_limit=4,
        )
    assert caught.value.problems == [
        "targets[0].mappings[0].metrics[0]: 'x' has 5 labels (with __name__, level and target), over label_limit (4)"
    ]


def test_a_catastrophic_regex_on_a_hostile_value_maps_in_linear_time():
    """`(a+)+$` against 27 a's and a `!` backtracks for minutes in Python's re; RE2 answers at once."""
    target = target_from(
        "      - each: items\n        level: service\n        labels:\n"
        "          name: {path: name, regex: '^(a+)+$', default: hostile}\n        metrics:\n"
        "          - {name: widget_count, value: n}\n",
    )
    started = time.monotonic()
    result = Mapper(target).map({"items": [{"name": "a" * 27 + "!", "n": i} for i in range(200)]}, deadline=time.monotonic() + 5)
    assert time.monotonic() - started < 2.0
    assert set(result.families["widget_count"]) == {'{level="service",target="t",name="hostile"}'}


def test_regexes_that_re2_cannot_run_are_config_errors():
    with pytest.raises(ConfigError) as caught:
        target_from(
            "      - each: items\n        level: service\n        metrics:\n"
            "          - {name: x, value: v, regex: '(a)\\1'}\n",
        )
    assert caught.value.problems == [
        "targets[0].mappings[0].metrics[0].regex: regex '(a)\\\\1' is not valid RE2 syntax: invalid escape sequence: \\1"
    ]


POLL_ONCE = """
import json, sys, threading, time
def peak_rss():  # VmHWM, this process's own peak: ru_maxrss would include the parent's RSS at fork
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
from exporter.config import parse_config
from exporter.poller import Poller
from exporter.selfmetrics import SelfMetrics
from exporter.store import SnapshotStore
target = parse_config(sys.stdin.read()).targets[0]
poller = Poller(target, SnapshotStore(), SelfMetrics(process=False), threading.Event())
started = time.monotonic()
poller.poll()
print(json.dumps({"outcome": poller.status.last_outcome, "error": poller.status.last_error,
                  "seconds": time.monotonic() - started, "peak_rss": peak_rss()}))
"""


def test_a_response_of_one_and_a_half_million_series_fails_fast_as_too_large_with_bounded_memory(api):
    """Issue 12 row 9: one response mapping to 1.5 M series must not build them all first (RSS < 300 MiB).

    The body is compact (a 3 MB array) so that parsing it stays small and what is measured is the mapping: built
    whole, its 1.5 M series texts of ~80 characters alone would take over 300 MiB.
    """
    import json
    import subprocess
    import sys

    body = b'{"pods":[' + b",".join([b"0"] * 1_500_000) + b"]}"
    api.routes["/pods"] = Reply(body)
    config = f"""
targets:
  - name: big
    url: {api.url('/pods')}
    timeout: 20s
    interval: 30s
    retries: {{attempts: 1}}
    labels: {{cluster: production-eu-west-1-inference-cluster-0001}}
    mappings:
      - each: pods
        level: pod
        labels: {{pod: {{key: true}}}}
        metrics:
          - {{name: pod_restarts, value: "@"}}
"""
    done = subprocess.run([sys.executable, "-c", POLL_ONCE], input=config, capture_output=True, text=True, timeout=120)
    report = json.loads(done.stdout)
    assert report["outcome"] == "failure (too_large)"
    assert "sample_limit (200000)" in report["error"]
    assert report["peak_rss"] < 300 * 1024 * 1024, f"peak RSS {report['peak_rss'] / 2**20:.0f} MiB"
    assert report["seconds"] < 10


def test_a_catastrophic_label_regex_never_freezes_the_process_and_healthz_answers_within_a_second(api, run_bridge):
    """Issue 12 row 10: with Python's re this poll held the GIL for minutes; RE2 keeps it to microseconds a value."""
    import threading

    import requests

    api.routes["/pods"] = Reply({"items": [{"name": "a" * 27 + "!", "n": i} for i in range(2_000)]})
    running = run_bridge(f"""
targets:
  - name: hostile
    url: {api.url('/pods')}
    timeout: 2s
    retries: {{attempts: 1}}
    mappings:
      - each: items
        level: service
        labels:
          name: {{path: name, regex: '^(a+)+$', default: hostile}}
          index: n
        metrics:
          - {{name: widget_count, value: n}}
""", schedule=False)
    outcome = []
    poll = threading.Thread(target=lambda: outcome.append(running.bridge.poll_now("hostile")))
    poll.start()
    health = requests.get(running.url + "/healthz", timeout=1.0)
    assert health.status_code == 200
    poll.join(timeout=2.5)
    assert outcome == [True]


def test_invalid_counter_drops_are_counted_from_zero_in_the_self_metrics(api, run_bridge):
    from test_bridge import sample_value, scrape

    api.routes["/jobs"] = Reply({"items": [{"job": "a", "done": 4}]})
    config = f"""
targets:
  - name: jobs
    url: {api.url('/jobs')}
    timeout: 2s
    retries: {{attempts: 1}}
    mappings:
      - each: items
        level: service
        labels: {{job: job}}
        metrics:
          - {{name: jobs_done_total, type: counter, value: done}}
"""
    running = run_bridge(config, schedule=False)
    assert sample_value(scrape(running.url), "metrics_bridge_samples_dropped_total", target="jobs", reason="invalid_counter") == 0
    api.routes["/jobs"] = Reply({"items": [{"job": "a", "done": -4}, {"job": "b", "done": 1}]})
    assert running.bridge.poll_now("jobs") is True
    text = scrape(running.url)
    assert sample_value(text, "metrics_bridge_samples_dropped_total", target="jobs", reason="invalid_counter") == 1
    assert sample_value(text, "jobs_done_total", job="a") is None and sample_value(text, "jobs_done_total", job="b") == 1


# ------------------------------------------------------------------------------------------------ time series: latest
def latest_target(latest: str, **keys):
    return target_from(
        "      - each: series\n        level: service\n        labels: {id: id}\n        metrics:\n"
        f"          - {{name: requests_per_second, latest: {latest}}}\n",
        **keys,
    )


def test_the_latest_point_of_a_list_of_points_is_taken_by_timestamp_not_by_position():
    target = latest_target("{points: points}")
    document = {"series": [{"id": "a", "points": [
        {"timestamp": "2026-12-01T21:45:00Z", "value": 2}, {"timestamp": "2026-12-01T21:50:00Z", "value": 3},
        {"timestamp": "2026-12-01T21:40:00Z", "value": 1},
    ]}]}
    result = Mapper(target).map(document)
    assert samples(result, "requests_per_second") == {'{level="service",target="t",id="a"}': 3.0}
    assert result.duplicates == 0


def test_points_as_pairs_use_index_paths_and_string_values_are_converted():
    target = latest_target('{points: values, timestamp: "[0]", value: "[1]"}')
    document = {"series": [{"id": "a", "values": [[1764625560, "0.5"], [1764625620, "0.75"], [1764625500, "9"]]}]}
    assert samples(Mapper(target).map(document), "requests_per_second") == {'{level="service",target="t",id="a"}': 0.75}


def test_parallel_arrays_are_paired_and_the_latest_timestamp_wins():
    """CloudWatch GetMetricData: Timestamps and Values, newest first by default, but order is not relied on."""
    target = latest_target("{timestamps: Timestamps, values: Values}")
    document = {"series": [
        {"id": "m1", "Timestamps": ["2026-12-01T21:45:00Z", "2026-12-01T21:50:00Z", "2026-12-01T21:40:00Z"], "Values": [20.0, 30.0, 10.0]},
        {"id": "m2", "Timestamps": [1764625500.0, 1764625200.0], "Values": [7.0, 5.0]},
    ]}
    assert samples(Mapper(target).map(document), "requests_per_second") == {
        '{level="service",target="t",id="m1"}': 30.0, '{level="service",target="t",id="m2"}': 7.0,
    }


def test_a_tie_goes_to_the_later_point_and_null_values_are_gaps():
    target = latest_target("{points: points}")
    document = {"series": [{"id": "a", "points": [
        {"timestamp": 100, "value": 1}, {"timestamp": 100, "value": 2}, {"timestamp": 200, "value": None},
    ]}]}
    assert samples(Mapper(target).map(document), "requests_per_second") == {'{level="service",target="t",id="a"}': 2.0}


def test_a_series_with_no_points_is_a_missing_value():
    result = Mapper(latest_target("{timestamps: Timestamps, values: Values}")).map(
        {"series": [{"id": "a", "Timestamps": [], "Values": []}, {"id": "b"}]}
    )
    assert result.families["requests_per_second"] == {}
    assert result.missing_values == 2


def test_parallel_arrays_of_different_lengths_are_a_bad_value():
    document = {"series": [{"id": "a", "Timestamps": [1, 2], "Values": [1]}]}
    with pytest.raises(MappingError, match="latest: 2 timestamps but 1 values"):
        Mapper(latest_target("{timestamps: Timestamps, values: Values}")).map(document)
    result = Mapper(latest_target("{timestamps: Timestamps, values: Values}", skip_bad_values="true")).map(document)
    assert result.bad_values == 1


@pytest.mark.parametrize(
    ("latest", "problem"),
    [
        ("{timestamps: Timestamps}", "parallel arrays need both timestamps and values"),
        ("{points: p, timestamps: T, values: V}", "set points (with timestamp and value inside each point), or timestamps and values"),
        ("{timestamps: T, values: V, value: v}", "timestamp and value are paths inside each point"),
    ],
)
def test_a_latest_block_of_the_wrong_shape_is_a_config_error(latest, problem):
    with pytest.raises(ConfigError) as caught:
        latest_target(latest)
    assert any(problem in p and p.startswith("targets[0].mappings[0].metrics[0].latest") for p in caught.value.problems)


def test_an_inner_step_reads_a_root_field_through_a_single_at_step_and_a_literal_is_a_constant_value():
    target = target_from(textwrap.indent(textwrap.dedent('''
        - each:
            - {path: "@", single: true, labels: {region: regionId}}
            - {path: services, labels: {service: name}}
          level: service
          metrics:
            - {name: svc_up, help: Up., value: "`1`"}
            - {name: svc_qps, help: QPS., value: qps}
        '''), "      "))
    result = Mapper(target).map({"regionId": "eu-1", "services": [{"name": "chat", "qps": 3}, {"name": "embed", "qps": 0.5}]})
    assert samples(result, "svc_up") == {
        '{level="service",target="t",region="eu-1",service="chat"}': 1.0,
        '{level="service",target="t",region="eu-1",service="embed"}': 1.0,
    }
    assert samples(result, "svc_qps")['{level="service",target="t",region="eu-1",service="embed"}'] == 0.5
