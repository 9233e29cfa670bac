"""Exposition pieces: escaping, value formatting and headers match what Prometheus parses."""

import math

from prometheus_client.parser import text_string_to_metric_families

from exporter.exposition import FamilyHeader, escape_label_value, format_value, render_samples


def test_label_values_escape_backslash_quote_and_newline():
    assert escape_label_value('a\\b"c\nd') == 'a\\\\b\\"c\\nd'
    assert escape_label_value("plain") == "plain"


def test_values_are_formatted_as_prometheus_reads_them():
    assert format_value(3.0) == "3"
    assert format_value(0.25) == "0.25"
    assert format_value(math.nan) == "NaN"
    assert format_value(math.inf) == "+Inf"
    assert format_value(-math.inf) == "-Inf"
    assert format_value(1e20) == "1e+20"
    assert float(format_value(0.1 + 0.2)) == 0.1 + 0.2


def test_a_counter_header_names_its_family_without_total_in_openmetrics_only():
    header = FamilyHeader.build("jobs_total", "counter", "Jobs done.")
    assert header.text == b"# HELP jobs_total Jobs done.\n# TYPE jobs_total counter\n"
    assert header.openmetrics == b"# HELP jobs Jobs done.\n# TYPE jobs counter\n"


def test_an_info_metric_is_a_gauge_in_text_format_and_info_in_openmetrics():
    header = FamilyHeader.build("build_info", "info", "")
    assert b"# TYPE build_info gauge" in header.text
    assert b"# TYPE build info" in header.openmetrics


def test_rendered_samples_parse_back_with_prometheus_client():
    header = FamilyHeader.build("temp_celsius", "gauge", 'Line one\nwith "quotes"')
    body = header.text + render_samples("temp_celsius", {'{level="pod",pod="a\\"b"}': 21.5, '{level="pod",pod="c"}': math.inf})
    (family,) = text_string_to_metric_families(body.decode())
    assert family.type == "gauge"
    assert [(s.labels["pod"], s.value) for s in family.samples] == [('a"b', 21.5), ("c", math.inf)]


def test_rendered_values_are_formatted_exactly_as_format_value_does():
    values = [0.0, -0.0, 1.0, -3.0, 2.5, 1e-7, 1e15 - 1, 1e15, -1e15, 1e16, 123456789.0, math.nan, math.inf, -math.inf]
    series = {f'{{i="{i}"}}': value for i, value in enumerate(values)}
    lines = render_samples("m", series).decode().splitlines()
    assert lines == [f'm{{i="{i}"}} {format_value(value)}' for i, value in enumerate(values)]


def test_deflated_chunks_concatenate_into_one_gzip_member_that_gzip_zlib_and_gunzip_decode():
    import gzip
    import random
    import shutil
    import subprocess
    import zlib

    from exporter.exposition import DeflatedChunk, gzip_member

    rng = random.Random(7)
    for trial in range(30):
        parts = [rng.randbytes(rng.randrange(0, 3000)) + b"m 1\n" * rng.randrange(0, 500) for _ in range(rng.randrange(0, 6))]
        body = b"".join(gzip_member(DeflatedChunk.compress(part) for part in parts))
        assert gzip.decompress(body) == b"".join(parts)
        assert zlib.decompress(body, wbits=31) == b"".join(parts)
    if shutil.which("gunzip"):
        assert subprocess.run(["gunzip", "-c"], input=body, capture_output=True, check=True).stdout == b"".join(parts)


def test_a_running_crc32_steps_over_a_chunk_by_its_shift():
    import zlib

    from exporter.exposition import _crc_multiply, _crc_shift

    for head, tail in [(b"", b""), (b"a", b""), (b"", b"b"), (b"abc", b"x" * 1000), (b"\x00" * 70000, b"tail")]:
        assert _crc_multiply(_crc_shift(len(tail)), zlib.crc32(head)) ^ zlib.crc32(tail) == zlib.crc32(head + tail)


def test_family_headers_carry_their_lines_as_gzip_segments_for_both_formats():
    import zlib

    header = FamilyHeader.build("jobs_total", "counter", "Jobs done.")
    assert zlib.decompressobj(wbits=-15).decompress(header.deflated(False).data) == header.text
    assert zlib.decompressobj(wbits=-15).decompress(header.deflated(True).data) == header.openmetrics


def test_families_deflated_into_one_buffer_decode_as_the_concatenated_lines_and_fill_once():
    import gzip

    from exporter.exposition import DeflatedFamilies, gzip_member

    families = [b"a 1\n" * 1000, b"", b'b{pod="x"} 2\n' * 3]
    deflated = DeflatedFamilies(len(families))
    assert not deflated.ready and len(deflated) == 3
    deflated.fill(families)
    data = deflated.data
    deflated.fill([b"other\n"] * 3)  # filled already: nothing changes
    assert deflated.ready and deflated.data is data
    chunks = [deflated.chunk(i) for i in range(3)]
    assert [c.size for c in chunks] == [len(f) for f in families]
    assert gzip.decompress(b"".join(gzip_member(chunks))) == b"".join(families)
    assert gzip.decompress(b"".join(gzip_member([chunks[2], chunks[0]]))) == families[2] + families[0]


def test_filling_deflated_families_leaves_one_new_object_alive_however_many_families():
    import tracemalloc

    from exporter.exposition import DeflatedFamilies

    families = [f"m_{i} {i}\n".encode() * 50 for i in range(40)]
    deflated = DeflatedFamilies(len(families))
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        deflated.fill(families)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    kept = [s for s in after.compare_to(before, "filename") if s.count_diff > 0 and s.traceback[0].filename.endswith("exposition.py")]
    assert sum(s.count_diff for s in kept) == 1  # the joined buffer: no int, chunk or tuple per family
