"""Store: snapshots are rendered once and swapped whole; readers keep the mapping they were given."""

import math

from exporter.exposition import FamilyHeader
from exporter.mapping import MapResult
from exporter.store import COMPRESSOR, Snapshot, SnapshotStore

from fakeapi import wait_until

HEADERS = {"m": FamilyHeader.build("m", "gauge", "M."), "empty": FamilyHeader.build("empty", "gauge", "")}


def snapshot(target, value, stale_after=math.inf):
    result = MapResult(families={"m": {'{level="service",target="%s"}' % target: float(value)}, "empty": {}})
    return Snapshot.build(target, result, HEADERS, stale_after)


def test_a_snapshot_holds_rendered_lines_and_skips_metrics_without_samples():
    snap = snapshot("a", 2.5)
    assert [(h.name, lines) for h, lines in snap.families] == [("m", b'm{level="service",target="a"} 2.5\n')]
    assert snap.series == 1


def test_publishing_swaps_the_mapping_without_touching_one_already_handed_out():
    store = SnapshotStore()
    store.publish(snapshot("a", 1))
    before = store.current()
    store.publish(snapshot("a", 2))
    store.publish(snapshot("b", 3))
    assert before["a"].families[0][1].endswith(b" 1\n") and "b" not in before
    assert sorted(store.current()) == ["a", "b"]


def test_drop_and_retain_forget_targets():
    store = SnapshotStore()
    for name in "abc":
        store.publish(snapshot(name, 1))
    assert store.drop("a") is True and store.drop("a") is False
    store.retain(["c"])
    assert list(store.current()) == ["c"]


def test_a_snapshot_is_stale_only_after_its_stale_after():
    snap = snapshot("a", 1, stale_after=10)
    assert not snap.is_stale(snap.published + 9.9)
    assert snap.is_stale(snap.published + 10.1)


def test_a_snapshot_compresses_each_familys_lines_once_into_a_gzip_segment_when_first_asked():
    import zlib

    snap = snapshot("a", 2.5)
    (lines,) = [lines for _, lines in snap.families]
    assert not snap._segments.ready  # building a snapshot compresses nothing: that is off the poll's path
    assert len(snap.deflated) == 1
    chunk = snap.family_deflated(0)
    assert zlib.decompressobj(wbits=-15).decompress(chunk.data) == lines
    assert (chunk.crc, chunk.size) == (zlib.crc32(lines), len(lines))
    assert snap.deflated is snap.deflated and chunk.data.obj is snap.deflated.data  # once, not per scrape


def test_a_snapshot_built_to_consume_its_result_empties_the_samples_and_keeps_their_count():
    samples = {'{level="service",target="a"}': 1.0, '{level="service",target="b"}': 2.0}
    kept = MapResult(families={"m": dict(samples)})
    assert Snapshot.build("a", kept, HEADERS, math.inf).series == 2 and kept.families == {"m": samples}
    result = MapResult(families={"m": dict(samples)})
    snap = Snapshot.build("a", result, HEADERS, math.inf, consume=True)
    assert snap.series == 2 and result.families == {}
    assert snap.families[0][1] == b'm{level="service",target="a"} 1\nm{level="service",target="b"} 2\n'


def test_publishing_a_snapshot_has_it_compressed_in_the_background():
    store = SnapshotStore()
    snap = snapshot("a", 1.0)
    store.publish(snap)
    assert wait_until(lambda: snap._segments.ready)




def test_a_snapshot_says_whether_its_gzip_segments_are_ready_and_reading_them_makes_them_so():
    snap = snapshot("a", 1)
    assert snap.compressed is False
    snap.deflated  # noqa: B018
    assert snap.compressed is True


def test_the_compressor_can_be_waited_on_until_every_published_snapshot_is_compressed():
    store = SnapshotStore()
    snaps = [snapshot(f"t{i}", i) for i in range(20)]
    for snap in snaps:
        store.publish(snap)
    assert COMPRESSOR.wait_idle(10)
    assert all(snap.compressed for snap in snaps)
