"""Explain: what each mapping matched in a document, and a warning naming every path that matched nothing."""

import logging

from exporter.config import parse_config
from exporter.explain import EmptyMappingWatch, explain
from exporter.mapping import Mapper

from fakeapi import Reply
from test_bridge import pods, pods_config

CONFIG = """
targets:
  - name: platform-pods
    url: http://127.0.0.1:1/
    mappings:
      - each: {each}
        level: pod
        labels: {{namespace: metadata.namespace, pod: {pod}}}
        metrics:
          - {{name: pod_cpu_cores, value: {cpu}, convert: quantity}}
          - {{name: pod_memory_bytes, value: usage.memory, convert: quantity}}
      - each:
          - {{path: items, labels: {{pod: metadata.name}}}}
          - {{path: containers, labels: {{container: name}}}}
        level: container
        metrics:
          - {{name: container_gpu_ratio, value: gpu.util, convert: percent}}
"""
DOCUMENT = {
    "items": [
        {
            "metadata": {"name": "chat-1", "namespace": "inference"},
            "usage": {"cpu": "1250m", "memory": "7Gi"},
            "containers": [{"name": "model-server", "gpu": {"util": "87 %"}}, {"name": "sidecar", "gpu": None}],
        }
    ]
}


def target(each="items", pod="metadata.name", cpu="usage.cpu"):
    return parse_config(CONFIG.format(each=each, pod=pod, cpu=cpu)).targets[0]


def test_each_step_says_how_many_elements_it_matched():
    explanation = explain(target(), [DOCUMENT])
    assert [m.describe() for m in explanation.mappings] == [
        "mappings[0]: items → 1 element(s)",
        "mappings[1]: items → 1, containers → 2 element(s)",
    ]
    assert explanation.warnings == []


def test_a_step_that_matches_nothing_is_named_with_the_key_that_is_there():
    explanation = explain(target(each="item"), [DOCUMENT])
    assert explanation.warnings == ["mappings[0].each[0] 'item' matched nothing in the document (did you mean 'items'?)"]
    assert explanation.mappings[0].describe() == "mappings[0]: item → 0 element(s)"


def test_a_value_path_that_matches_nothing_is_named_with_the_closest_path():
    assert explain(target(cpu="usage.cpus"), [DOCUMENT]).warnings == [
        "mappings[0].metrics[0].value 'usage.cpus' (pod_cpu_cores) matched nothing in 1 element(s) (did you mean 'usage.cpu'?)"
    ]


def test_a_label_path_that_matches_nothing_is_named():
    assert explain(target(pod="metadata.nmae"), [DOCUMENT]).warnings == [
        "mappings[0].labels.pod 'metadata.nmae' matched nothing in 1 element(s) (did you mean 'metadata.name'?)"
    ]


def test_a_value_missing_on_some_elements_only_is_not_a_warning():
    # The sidecar's GPU is null, the model server's is there: the path is right.
    assert explain(target(), [DOCUMENT]).warnings == []


def test_with_no_close_key_the_keys_that_are_there_are_listed():
    assert explain(target(each="pods"), [{"data": [], "kind": "List"}]).warnings == [
        "mappings[0].each[0] 'pods' matched nothing in the document (keys there: data, kind)",
        "mappings[1].each[0] 'items' matched nothing in the document (keys there: data, kind)",
    ]


def test_the_watch_warns_once_when_a_mapping_that_produced_series_produces_none():
    watched = target()
    mapper, watch = Mapper(watched), EmptyMappingWatch(watched)
    assert watch.after_poll(mapper.map(DOCUMENT), [DOCUMENT]) is None
    renamed = {"items": [{**DOCUMENT["items"][0], "usage": {"cpu_cores": "1", "mem": "1Gi"}}]}
    warning = watch.after_poll(mapper.map(renamed), [renamed])
    assert warning is not None and warning.startswith("mappings[0] of platform-pods produced series before and none now: ")
    assert "mappings[0].metrics[0].value 'usage.cpu' (pod_cpu_cores) matched nothing in 1 element(s) (did you mean 'usage.cpu_cores'?)" in warning
    assert watch.after_poll(mapper.map(renamed), [renamed]) is None  # once
    assert watch.after_poll(mapper.map(DOCUMENT), [DOCUMENT]) is None
    assert watch.after_poll(mapper.map(renamed), [renamed]) is not None  # a new regression is reported again


def test_a_mapping_that_never_produced_is_not_reported_by_the_watch():
    watched = target(each="item")
    watch = EmptyMappingWatch(watched)
    assert watch.after_poll(Mapper(watched).map(DOCUMENT), [DOCUMENT]) is None


def test_run_logs_the_warning_once_when_the_api_renames_a_field(api, run_bridge, caplog):
    api.routes["/pods"] = Reply(pods("a", "b"))
    running = run_bridge(pods_config(api), schedule=False)
    caplog.set_level(logging.WARNING, logger="exporter.poll")
    assert running.bridge.poll_now("pods")
    api.routes["/pods"] = Reply({"pods": pods("a", "b")["items"]})
    assert running.bridge.poll_now("pods") and running.bridge.poll_now("pods")
    warnings = [r.getMessage() for r in caplog.records if "produced series before" in r.getMessage()]
    assert warnings == [
        "mappings[0] of pods produced series before and none now: "
        "mappings[0].each[0] 'items' matched nothing in the document (keys there: pods)"
    ]
