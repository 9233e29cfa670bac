"""Label memo: regex results found in a poll are staged outside the object heap and join the table once it settles."""

import sys
import textwrap

import orjson

from exporter.config import parse_config
from exporter.labelmemo import LabelMemo
from exporter.mapping import Mapper


def test_a_staged_result_is_not_looked_up_until_the_memo_settles():
    memo = LabelMemo(limit=10, key_limit=64)
    memo.stage("inference/chat-1/model-server", "chat-1")
    assert memo.table == {}
    assert memo.settle() == 1
    assert memo.table == {"inference/chat-1/model-server": "chat-1"}
    assert memo.settle() == 0  # nothing new


def test_staging_keeps_no_reference_to_the_documents_strings_and_settling_makes_new_ones():
    raw = "".join(["inference/", "chat-2/", "model-server"])  # made at run time, as a parsed document's strings are
    text = raw[10:16]
    refs = sys.getrefcount(raw), sys.getrefcount(text)
    memo = LabelMemo(limit=10, key_limit=64)
    memo.stage(raw, text)
    assert (sys.getrefcount(raw), sys.getrefcount(text)) == refs
    memo.settle()
    ((key, value),) = memo.table.items()
    assert key == raw and key is not raw and value == text and value is not text


def test_equal_label_texts_are_kept_once_and_a_value_staged_twice_is_added_once():
    memo = LabelMemo(limit=10, key_limit=64)
    for pod in ("a", "b", "a"):
        memo.stage(f"inference/{pod}/c", "inference")
    assert memo.settle() == 2
    first, second = memo.table.values()
    assert first is second


def test_memos_settled_together_hold_one_string_for_a_value_they_all_found():
    memos = [LabelMemo(limit=10, key_limit=64) for _ in range(3)]
    for memo, text in zip(memos, ("ns", "pod-1", "c")):
        memo.stage("ns/pod-1/c", text)
    shared: dict[str, str] = {}
    assert [memo.settle(shared) for memo in memos] == [1, 1, 1]
    keys = [next(iter(memo.table)) for memo in memos]
    assert keys[0] is keys[1] is keys[2]


def test_the_memo_stops_remembering_at_its_limit_counting_staged_entries():
    memo = LabelMemo(limit=3, key_limit=64)
    for i in range(5):
        memo.stage(f"id-{i}", f"t{i}")
    assert memo.settle() == 3 and len(memo) == 3
    memo.stage("id-9", "t9")
    assert memo.settle() == 0 and "id-9" not in memo.table


def test_long_values_and_values_holding_nul_are_not_remembered():
    memo = LabelMemo(limit=10, key_limit=8)
    memo.stage("x" * 9, "x")
    memo.stage("a\0b", "a")
    memo.stage("ab", "a\0")
    memo.stage("\ud800", "\udfff")  # lone surrogates round-trip
    assert memo.settle() == 1 and memo.table == {"\ud800": "\udfff"}


def containers_mapper() -> Mapper:
    config = parse_config(textwrap.dedent("""
        targets:
          - name: containers
            url: http://127.0.0.1:1/
            mappings:
              - each: containers
                level: container
                labels:
                  namespace: {path: id, regex: "^([^/]+)/"}
                  pod: {path: id, regex: "^[^/]+/([^/]+)/"}
                  container: {path: id, regex: "/([^/]+)$"}
                metrics:
                  - {name: cpu_cores, value: cpu}
    """))
    return Mapper(config.targets[0])


def test_a_mapper_remembers_its_label_regex_results_from_the_next_poll_on_with_the_same_series():
    mapper = containers_mapper()
    document = orjson.loads(orjson.dumps({"containers": [{"id": f"ns/pod-{i}/c{i % 2}", "cpu": i} for i in range(50)]}))
    first = mapper.map(document).families
    assert [(len(memo), memo.staged) for memo in mapper.memos] == [(0, 50)] * 3
    assert mapper.settle() == 150  # three labels, fifty ids each
    keys = [{key: key for key in memo.table} for memo in mapper.memos]
    assert all(keys[0][k] is keys[1][k] is keys[2][k] for k in keys[0])  # each id held once, not once per label
    second = mapper.map(document).families
    assert [memo.staged for memo in mapper.memos] == [0] * 3  # every id found in the tables: no regex ran
    assert second == first
    assert '{level="container",target="containers",namespace="ns",pod="pod-7",container="c1"}' in second["cpu_cores"]


def test_a_poll_settles_what_its_labels_found_and_a_discovery_poll_settles_every_items_mapper(api, run_bridge):
    from fakeapi import Reply

    ids = {"containers": [{"id": f"ns/pod-{i}/c", "cpu": i} for i in range(20)]}
    api.routes["/containers"] = Reply(ids)
    api.routes["/list"] = Reply({"items": [{"name": "a"}, {"name": "b"}]})
    api.routes["/item"] = Reply(ids)
    mapping = """
            mappings:
              - each: containers
                level: container
                labels:
                  namespace: {path: id, regex: "^([^/]+)/"}
                  pod: {path: id, regex: "^[^/]+/([^/]+)/"}
                  container: {path: id, regex: "/([^/]+)$"}
                metrics:
                  - {name: cpu_cores, value: cpu}"""
    running = run_bridge(textwrap.dedent(f"""
        targets:
          - name: plain
            url: {api.url("/containers")}{mapping}
          - name: listed
            url: {api.url("/item")}
            discovery:
              url: {api.url("/list")}
              each: items
              labels: {{service: name}}{mapping}
    """), schedule=False)
    for name in ("plain", "listed"):
        assert running.bridge.poll_now(name)
    plain = running.bridge.pollers["plain"]
    assert [(len(m), m.staged) for m in plain.mapper.memos] == [(20, 0)] * 3
    listed = running.bridge.pollers["listed"].discovery
    item_mappers = list(listed._mappers.values())
    assert len(item_mappers) == 2 and all([(len(m), m.staged) for m in mapper.memos] == [(20, 0)] * 3 for mapper in item_mappers)
