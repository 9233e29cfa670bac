"""Collector: one header per metric, every target's lines under it, stale snapshots left out, no formatting."""

from exporter.collector import render_exposition

from test_store import snapshot


def test_each_metric_gets_one_header_followed_by_every_targets_lines():
    snapshots = {"b": snapshot("b", 2), "a": snapshot("a", 1)}
    text = b"".join(render_exposition(snapshots)).decode()
    assert text == '# HELP m M.\n# TYPE m gauge\nm{level="service",target="a"} 1\nm{level="service",target="b"} 2\n'


def test_openmetrics_uses_the_openmetrics_headers():
    text = b"".join(render_exposition({"a": snapshot("a", 1)}, openmetrics=True)).decode()
    assert text.startswith("# HELP m M.\n# TYPE m gauge\n")


def test_stale_snapshots_are_left_out_even_before_the_scheduler_drops_them():
    fresh, stale = snapshot("a", 1, stale_after=60), snapshot("b", 2, stale_after=5)
    text = b"".join(render_exposition({"a": fresh, "b": stale}, now=stale.published + 6)).decode()
    assert 'target="a"' in text and 'target="b"' not in text


def test_the_scrape_returns_the_pre_rendered_bytes_themselves():
    snap = snapshot("a", 1)
    chunks = render_exposition({"a": snap})
    assert any(chunk is snap.text()[0] for chunk in chunks)


def test_the_deflated_exposition_decodes_to_the_plain_one_in_both_formats():
    import gzip

    from exporter.collector import render_exposition_deflated
    from exporter.exposition import gzip_member

    fresh, stale = snapshot("a", 1, stale_after=60), snapshot("b", 2, stale_after=5)
    snapshots, now = {"a": fresh, "b": stale, "c": snapshot("c", 3)}, stale.published + 6
    for openmetrics in (False, True):
        plain = b"".join(render_exposition(snapshots, openmetrics=openmetrics, now=now))
        deflated = render_exposition_deflated(snapshots, openmetrics=openmetrics, now=now)
        assert gzip.decompress(b"".join(gzip_member(deflated))) == plain
        assert any(isinstance(chunk.data, memoryview) and chunk.data.obj is fresh.deflated.data for chunk in deflated)  # its own segments
