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
    assert [h.name for h in snap.headers] == ["m"] and snap.text() == (b'm{level="service",target="a"} 2.5\n',)
    assert snap.series == 1


def test_publishing_swaps_the_mapping_without_touching_one_already_handed_out():
    store = SnapshotStore()
    store.publish(snapshot("a", 1))
    before = store.current()
    store.publish(snapshot("a", 2))
    store.publish(snapshot("b", 3))
    assert before["a"].text()[0].endswith(b" 1\n") and "b" not in before
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
    (lines,) = snap.text()
    assert not snap.compressed  # building a snapshot compresses nothing: that is off the poll's path
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
    assert snap.text()[0] == b'm{level="service",target="a"} 1\nm{level="service",target="b"} 2\n'


def test_publishing_a_snapshot_has_it_compressed_in_the_background():
    store = SnapshotStore()
    snap = snapshot("a", 1.0)
    store.publish(snap)
    assert wait_until(lambda: snap.compressed)




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


def many(target, count, offset=0):
    """A snapshot of `count` series in two families, values starting at `offset`."""
    headers = {**HEADERS, "n": FamilyHeader.build("n", "gauge", "N.")}
    families = {
        "m": {'{level="pod",pod="p%d"}' % i: float(offset + i) for i in range(count)},
        "n": {'{level="pod",pod="p%d"}' % i: offset + i / 7 for i in range(count)},
    }
    return Snapshot.build(target, MapResult(families=families), headers, math.inf)


def test_once_compressed_in_the_background_a_snapshot_nobody_read_as_text_drops_its_text():
    store, snap = SnapshotStore(), many("a", 500)
    assert snap._bodies.holds_text
    store.publish(snap)
    assert COMPRESSOR.wait_idle(10)
    assert snap.compressed and not snap._bodies.holds_text


def test_a_plain_read_of_a_dropped_text_inflates_the_very_lines_that_were_rendered_and_keeps_them():
    rendered, snap = many("a", 500).text(), many("a", 500)
    assert snap.text() == rendered  # read before compressing: the snapshot keeps its text
    snap.deflated  # noqa: B018
    assert snap._bodies.release_text() is False and snap._bodies.holds_text
    unread = many("a", 500)
    unread.deflated  # noqa: B018
    assert unread._bodies.release_text() is True and not unread._bodies.holds_text
    inflated = unread.text()
    assert inflated == rendered and unread._bodies.holds_text and unread.text() is inflated  # once, then kept


def test_text_is_never_dropped_before_the_segments_it_is_compressed_into_are_ready():
    snap = many("a", 50)
    assert snap._bodies.release_text() is False and snap._bodies.holds_text and not snap.compressed


def test_after_a_plain_scrape_the_targets_next_snapshot_keeps_its_text_and_one_nobody_reads_the_one_after_does_not():
    store = SnapshotStore()
    first = many("a", 200)
    store.publish(first)
    assert COMPRESSOR.wait_idle(10) and not first._bodies.holds_text
    first.text()  # a plain scrape
    second = many("a", 200, offset=1)
    store.publish(second)
    other = many("b", 200)  # another target's snapshot is not affected
    store.publish(other)
    assert COMPRESSOR.wait_idle(10)
    assert second._bodies.holds_text and not other._bodies.holds_text
    third = many("a", 200, offset=2)
    store.publish(third)
    assert COMPRESSOR.wait_idle(10) and not third._bodies.holds_text


def test_concurrent_plain_reads_of_a_dropped_text_inflate_it_once():
    import threading

    snap = many("a", 20_000)
    rendered = snap.text()
    snap = many("a", 20_000)
    snap.deflated  # noqa: B018
    assert snap._bodies.release_text()
    start, results = threading.Barrier(8), []

    def read():
        start.wait()
        results.append(snap.text())

    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and all(result is results[0] for result in results) and results[0] == rendered


def test_the_head_of_a_family_is_its_first_bytes_whether_or_not_the_text_was_dropped():
    snap = many("a", 1000)
    lines = snap.text()[1]
    dropped = many("a", 1000)
    dropped.deflated  # noqa: B018
    assert dropped._bodies.release_text()
    for size in (1, 100, len(lines), len(lines) + 10):
        assert snap.head(1, size) == dropped.head(1, size) == lines[:size]
    assert not dropped._bodies.holds_text  # a preview does not inflate everything
