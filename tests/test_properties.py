"""Properties: the mapper survives any JSON, label values survive the text format, and a scrape never sees half a poll."""

from __future__ import annotations

import threading
from collections import defaultdict

import pytest
import requests
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from exporter.collector import render_exposition
from exporter.config import parse_config
from exporter.mapping import Mapper, MappingError
from exporter.poller import Poller
from exporter.store import Snapshot

from conftest import RunningBridge
from fakeapi import FakeAPI, Reply

# Every feature of a mapping that reads from the document: paths, each steps over arrays and maps, key labels, label
# regexes and defaults, labels_from, every conversion, enum, regex values, scale, defaults, aggregates, info metrics,
# JMESPath functions, decode_json and single steps, and the non-empty pod/container labels the levels require.
FEATURES = r"""
targets:
  - name: prop
    url: http://127.0.0.1:1/
    labels: {cluster: "c\"1\\"}
    mappings:
      - each: items
        level: service
        labels:
          name: name
          kind: {path: kind, regex: "^(\\w+)", default: none}
          idx: {key: true}
        labels_from: {path: meta, exclude: [secret]}
        metrics:
          - {name: p_value, value: v}
          - {name: p_quantity, value: q, convert: quantity}
          - {name: p_percent_ratio, value: pct, convert: percent}
          - {name: p_duration_seconds, value: d, convert: duration}
          - {name: p_timestamp_seconds, value: ts, convert: timestamp}
          - {name: p_epoch_seconds, value: ms, convert: epoch_ms}
          - {name: p_size_bytes, value: b, convert: bytes}
          - {name: p_state, value: state, enum: {up: 1, down: 0}}
          - {name: p_regex, value: text, regex: "(?P<value>[0-9.]+)"}
          - {name: p_scaled, value: v, scale: 1.0e-9}
          - {name: p_defaulted, value: absent, default: 7}
          - {name: p_sum, value: values, aggregate: sum}
          - {name: p_mean, value: values, aggregate: mean}
          - {name: p_min, value: values, aggregate: min}
          - {name: p_max, value: values, aggregate: max}
          - {name: p_count, value: values, aggregate: count}
          - {name: p_name_length, value: "length(name)"}
          - {name: p_tags_info, type: info, labels: {tags: tags, first: "values[0]"}}
      - each:
          - {path: pods, labels: {namespace: ns, pod: name}}
          - {path: containers, labels: {container: name}}
        level: container
        metrics:
          - {name: p_container_value, value: v}
      - each:
          - {path: blob, decode_json: true}
          - {path: inner, single: true}
        level: service
        metrics:
          - {name: p_decoded, value: x}
"""

MAPPERS = [
    Mapper(parse_config(FEATURES).targets[0]),
    Mapper(parse_config(FEATURES.replace("    labels: {cluster", "    skip_bad_values: true\n    labels: {cluster")).targets[0]),
]
HEADERS = Poller.family_headers(parse_config(FEATURES).targets[0])

KEYS = ["items", "name", "kind", "meta", "secret", "v", "q", "pct", "d", "ts", "ms", "b", "state", "text", "values",
        "tags", "pods", "ns", "containers", "blob", "inner", "x", "__x", "0a", "level", "target", "a-b"]
# Strings that some conversion reads, strings that none does, and text no API should send (lone surrogates, NUL).
AWKWARD_TEXT = st.sampled_from([
    "250m", "1Gi", "7Ki", "87 %", "1m30s", "PT1M", "P", "-5ms", "2024-01-01T00:00:00Z", "2024-01-01T00:00:00", "NaN",
    "-Infinity", "1,234.5", "", " ", "up", "down", "1e400", "v=12.5", '{"inner": {"x": 1}}', '{"inner": 5}', "{", "%",
])
ANY_TEXT = st.text(st.characters(blacklist_categories=()), max_size=8)
SCALARS = (
    st.none() | st.booleans() | st.integers() | st.sampled_from([2**63, 2**64, -(2**70), 10**400, -(10**400)])
    | st.floats() | AWKWARD_TEXT | ANY_TEXT
)
JSON = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | ANY_TEXT, children, max_size=5),
    max_leaves=40,
)


def nested(depth: int, leaf: object) -> object:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


def assert_maps_to_valid_text_or_raises_mapping_error(document: object) -> None:
    for mapper in MAPPERS:
        try:
            result = mapper.map(document)
        except MappingError:
            continue
        snapshot = Snapshot.build("prop", result, HEADERS, 60.0)
        text = b"".join(render_exposition({"prop": snapshot})).decode("utf-8")
        parsed = sum(len(family.samples) for family in text_string_to_metric_families(text))
        assert parsed == result.series


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=JSON)
def test_arbitrary_json_never_raises_out_of_the_mapper_except_mapping_error(document):
    assert_maps_to_valid_text_or_raises_mapping_error(document)


@pytest.mark.parametrize(
    "document",
    [
        {"items": [{"name": "a", "v": 10**400, "q": -(10**400), "values": [1e308, 1e308, 2**70]}]},
        {"items": [{"name": "a", "values": [float("inf"), float("-inf")], "tags": [2**64]}]},
        {"items": [{"name": "\ud800", "meta": {"k": "\udfff"}, "tags": nested(300, "deep")}]},
        {"items": [{"name": nested(990, 1), "kind": nested(500, "k")}], "blob": '{"inner": {"x": 1e400}}'},
        {"items": {"k": {"name": 5, "meta": [1]}}},
        nested(1000, {"items": []}),
    ],
    ids=["integers-beyond-float", "inf-minus-inf-and-a-64-bit-overflow", "lone-surrogates-and-300-levels", "990-levels", "wrong-types", "1000-levels"],
)
def test_hostile_documents_never_raise_out_of_the_mapper_except_mapping_error(document):
    """Documents hypothesis rarely builds: numbers beyond a float, nesting beyond orjson's and Python's limits."""
    assert_maps_to_valid_text_or_raises_mapping_error(document)


LABEL_VALUES = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40) | st.sampled_from(
    ['"', "\\", "\n", '\\"', "\\n", 'a"b\\c\nd', "\r\t\x00", "\u2028", "ü🙂", "}", ",x=\"y\"", "# HELP"]
)


@settings(max_examples=200, deadline=None)
@given(from_api=LABEL_VALUES, map_key=LABEL_VALUES, constant=LABEL_VALUES, from_config=LABEL_VALUES)
def test_any_label_value_round_trips_through_the_text_format(from_api, map_key, constant, from_config):
    config = parse_config(
        """
targets:
  - name: t
    url: http://127.0.0.1:1/
    labels: {site: placeholder}
    mappings:
      - each: {path: items, labels: {key: {key: true}}}
        level: service
        labels: {text: name, fixed: {value: placeholder}}
        metrics: [{name: m, value: v}]
"""
    )
    target = config.targets[0]
    mapping = target.mappings[0]
    fixed = mapping.labels["fixed"].model_copy(update={"value": constant})
    mapping = mapping.model_copy(update={"labels": {**mapping.labels, "fixed": fixed}})
    target = target.model_copy(update={"labels": {"site": from_config}, "mappings": [mapping]})
    result = Mapper(target).map({"items": {map_key: {"name": from_api, "v": 1}}})
    text = b"".join(render_exposition({"t": Snapshot.build("t", result, Poller.family_headers(target), 60.0)})).decode()
    (family,) = text_string_to_metric_families(text)
    (sample,) = family.samples
    assert sample.labels == {
        "level": "service", "target": "t", "site": from_config, "key": map_key, "text": from_api, "fixed": constant,
    }


GENERATION_CONFIG = """
targets:
{targets}
"""
GENERATION_TARGET = """
  - name: {name}
    url: {url}
    interval: 10s
    timeout: 2s
    retries: {{attempts: 1}}
    mappings:
      - each: items
        level: pod
        labels: {{namespace: ns, pod: name, generation: gen}}
        metrics:
{metrics}
"""


# No shrinking: a torn scrape depends on timing, so shrinking would mostly re-run passing interleavings.
@settings(max_examples=5, deadline=None, phases=[Phase.explicit, Phase.generate], suppress_health_check=[HealthCheck.too_slow])
@given(pods=st.integers(1, 60), families=st.integers(1, 4), scrapers=st.integers(1, 3), polls=st.integers(8, 20))
def test_each_scrape_sees_one_polls_data_per_target_under_concurrent_polls(pods, families, scrapers, polls):
    """Every sample of a poll carries its generation (as value and label), and the pod count varies by generation,
    so a scrape that mixed two polls of one target would show two generations or the wrong number of samples."""
    names = ("alpha", "beta")
    api = FakeAPI().start()
    generations = {name: 0 for name in names}
    lock = threading.Lock()

    def reply_for(name):
        def reply(request):
            with lock:
                generations[name] += 1
                gen = generations[name]
            return Reply({"items": [{"ns": "ns", "name": f"p{i}", "gen": gen} for i in range(pods + gen % 5)]})

        return reply

    for name in names:
        api.routes[f"/{name}"] = reply_for(name)
    metrics = "".join(f"          - {{name: gen_value_{k}, value: gen}}\n" for k in range(families))
    running = RunningBridge(parse_config(GENERATION_CONFIG.format(
        targets="".join(GENERATION_TARGET.format(name=n, url=api.url(f"/{n}"), metrics=metrics) for n in names)
    )))
    running.bridge.start(schedule=False)
    problems: list[str] = []
    seen: dict[str, set[int]] = defaultdict(set)
    polling = threading.Event()
    polling.set()

    def poll_many(name):
        """At least `polls` polls, and on until the scrapes have seen two generations of every target (at most 2000)."""
        for done in range(1, 2001):
            running.bridge.poll_now(name)
            if done >= polls and all(len(seen[n]) >= 2 for n in names):
                return

    def scrape_until_polls_end():
        session = requests.Session()
        for _ in range(500):  # bounded; ends early once the polls are done
            done = not polling.is_set()
            text = session.get(running.url + "/metrics", timeout=5).text
            by_target: dict[str, list[tuple[str, float]]] = defaultdict(list)
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name.startswith("gen_value_"):
                        by_target[sample.labels["target"]].append((sample.labels["generation"], sample.value))
            for target, samples in by_target.items():
                gens = {int(value) for _, value in samples} | {int(label) for label, _ in samples}
                if len(gens) != 1:
                    problems.append(f"{target}: generations {sorted(gens)} in one scrape")
                    continue
                (gen,) = gens
                seen[target].add(gen)
                if len(samples) != families * (pods + gen % 5):
                    problems.append(f"{target}: {len(samples)} samples of generation {gen}")
            if done:
                return

    try:
        pollers = [threading.Thread(target=poll_many, args=(n,)) for n in names]
        scraping = [threading.Thread(target=scrape_until_polls_end) for _ in range(scrapers)]
        for thread in pollers + scraping:
            thread.start()
        for thread in pollers:
            thread.join(timeout=60)
        polling.clear()
        for thread in scraping:
            thread.join(timeout=60)
    finally:
        running.close()
        api.close()
    assert problems == []
    assert all(len(seen[name]) >= 2 for name in names), "the scrapes never overlapped a poll"
