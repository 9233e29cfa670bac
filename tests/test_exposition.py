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
