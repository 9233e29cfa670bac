"""The collector pause around large parses: held across threads, restored exactly, and used by the client."""

from __future__ import annotations

import gc
import threading
from typing import Iterator

import orjson
import pytest

from exporter.client import _parse_json
from exporter.gcpause import PAUSE_ABOVE_BYTES, paused_collection


@pytest.fixture
def collections() -> Iterator[list[int]]:
    """The generation of every collection that starts while the test runs."""
    started: list[int] = []

    def callback(phase: str, info: dict) -> None:  # type: ignore[type-arg]
        if phase == "start":
            started.append(info["generation"])

    gc.callbacks.append(callback)
    try:
        yield started
    finally:
        gc.callbacks.remove(callback)


def test_the_collector_is_off_inside_and_back_on_after() -> None:
    assert gc.isenabled()
    with paused_collection():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_the_pause_lasts_until_the_last_thread_holding_it_leaves() -> None:
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        with paused_collection():
            entered.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert entered.wait(10)
    with paused_collection():
        assert not gc.isenabled()
    assert not gc.isenabled(), "another thread's parse is still running"
    release.set()
    holder.join(10)
    assert gc.isenabled()


def test_a_collector_disabled_beforehand_stays_disabled() -> None:
    gc.disable()
    try:
        with paused_collection():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_pause_ends_when_the_parse_raises() -> None:
    with pytest.raises(ValueError):
        with paused_collection():
            raise ValueError("bad document")
    assert gc.isenabled()


def test_a_large_response_is_parsed_without_the_collector_running(monkeypatch: pytest.MonkeyPatch) -> None:
    parsing = [False]
    during: list[int] = []  # the generation of every collection that starts while orjson.loads runs, in any thread
    loads = orjson.loads

    def timed_loads(body: bytes) -> object:
        parsing[0] = True
        try:
            return loads(body)
        finally:
            parsing[0] = False

    def callback(phase: str, info: dict) -> None:  # type: ignore[type-arg]
        if phase == "start" and parsing[0]:
            during.append(info["generation"])

    body = orjson.dumps([{"pod": f"p-{i}", "cpu": i} for i in range(PAUSE_ABOVE_BYTES // 20)])
    assert len(body) > PAUSE_ABOVE_BYTES
    monkeypatch.setattr(orjson, "loads", timed_loads)
    gc.callbacks.append(callback)
    try:
        document = _parse_json(body, "application/json")
    finally:
        gc.callbacks.remove(callback)
    assert during == [], "unpaused, this parse starts about 150 collections"
    assert len(document) == PAUSE_ABOVE_BYTES // 20 and document[7] == {"pod": "p-7", "cpu": 7}
    assert gc.isenabled()


def test_a_small_response_leaves_the_collector_alone(collections: list[int]) -> None:
    body = orjson.dumps([{"pod": f"p-{i}"} for i in range(5000)])  # 5000 dicts: several young collections
    assert len(body) < PAUSE_ABOVE_BYTES
    collections.clear()
    _parse_json(body, "application/json")
    assert collections, "a parse this size is left to the collector as usual"


def test_a_large_parse_ends_without_a_collection_and_its_document_in_the_oldest_generation(collections: list[int]) -> None:
    # Nested, as API responses are: a dict of only strings and numbers is not tracked by the collector at all.
    body = orjson.dumps([{"pod": f"p-{i}", "usage": {"cpu": i}} for i in range(PAUSE_ABOVE_BYTES // 24)])
    collections.clear()
    document = _parse_json(body, "application/json")
    _ = [{} for _ in range(500)]  # fewer than a young collection needs (700), but after a plain re-enable one starts
    assert collections == [], "without the promotion the first allocation collects every dict the parse made"
    assert gc.get_count()[0] < 700
    oldest = {id(o) for o in gc.get_objects(generation=2)}
    assert gc.is_tracked(document[12345])
    assert id(document) in oldest and id(document[12345]) in oldest
    assert gc.get_freeze_count() == 0, "nothing stays frozen"


def test_objects_the_process_froze_itself_stay_frozen() -> None:
    kept = [["frozen"]]  # a list is tracked; frozen, it is in no generation

    def in_a_generation() -> bool:
        return any(any(o is kept[0] for o in gc.get_objects(generation=g)) for g in range(3))

    gc.freeze()
    try:
        assert not in_a_generation()
        body = orjson.dumps([{"pod": f"p-{i}"} for i in range(PAUSE_ABOVE_BYTES // 12)])
        _parse_json(body, "application/json")
        assert not in_a_generation(), "the promotion would have unfrozen it"
        assert gc.get_freeze_count() > 0 and gc.isenabled()
    finally:
        gc.unfreeze()
    assert in_a_generation()
