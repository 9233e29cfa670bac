"""Value conversions: every awkward encoding the issue names, read as base units."""

import math

import pytest

from exporter.convert import (
    ConversionError,
    parse_duration,
    parse_epoch_ms,
    parse_number,
    parse_percent,
    parse_quantity,
    parse_size,
    parse_timestamp,
    utc_timestamp,
)


@pytest.mark.parametrize(
    "raw, expected",
    [(3, 3.0), (2.5, 2.5), (True, 1.0), (False, 0.0), ("42", 42.0), (" 4.5 ", 4.5), ("18,432", 18432.0),
     ("1,234,567.5", 1234567.5), ("+Inf", math.inf), ("-Inf", -math.inf), ("Infinity", math.inf), ("1e3", 1000.0)],
)
def test_numbers_numeric_strings_booleans_and_thousands_separators_are_read(raw, expected):
    assert parse_number(raw) == expected


def test_nan_strings_are_read_as_nan():
    assert math.isnan(parse_number("NaN"))
    assert math.isnan(parse_number("nan"))


@pytest.mark.parametrize("raw", ["abc", "", "1,23", {"a": 1}, [1], None, "12 apples"])
def test_things_that_are_not_numbers_raise_a_conversion_error(raw):
    with pytest.raises(ConversionError):
        parse_number(raw)


@pytest.mark.parametrize(
    "raw, expected",
    [("250m", 0.25), ("1834567123n", 1.834567123), ("3u", 3e-6), ("8388608Ki", 8589934592.0), ("7Gi", 7 * 2**30),
     ("1e3", 1000.0), ("23117824", 23117824.0), ("1555m", 1.555), ("2k", 2000.0), ("1.5M", 1.5e6), (512, 512.0)],
)
def test_kubernetes_quantities_are_read_exactly(raw, expected):
    assert parse_quantity(raw) == expected


def test_an_unknown_quantity_suffix_is_an_error():
    with pytest.raises(ConversionError, match="suffix"):
        parse_quantity("12Zi")


@pytest.mark.parametrize("raw, expected", [("87 %", 0.87), ("87%", 0.87), ("20.8%", 0.208), (50, 0.5), ("100", 1.0)])
def test_percentages_become_ratios(raw, expected):
    assert parse_percent(raw) == expected


@pytest.mark.parametrize(
    "raw, expected",
    [("10.254s", 10.254), ("1m0s", 60.0), ("PT1M", 60.0), ("250ms", 0.25), ("1h2m3s", 3723.0), ("P1DT1H", 90000.0),
     ("PT0.5S", 0.5), ("45", 45.0), (1.5, 1.5), ("1.5us", 1.5e-6), ("-2s", -2.0)],
)
def test_durations_become_seconds(raw, expected):
    assert parse_duration(raw) == pytest.approx(expected)


@pytest.mark.parametrize("raw", ["soon", "1x", "PT", "P"])
def test_malformed_durations_raise(raw):
    with pytest.raises(ConversionError):
        parse_duration(raw)


def test_rfc3339_timestamps_become_epoch_seconds():
    assert parse_timestamp("2026-01-02T03:04:05Z") == 1767323045.0
    assert parse_timestamp("2026-01-02T04:04:05.250+01:00") == 1767323045.25
    assert parse_timestamp(1767323045) == 1767323045.0


@pytest.mark.parametrize("text", ["2026-01-02T03:04:05Z", "2026-01-02T03:04:05.250Z", "2001-09-09T01:46:40.000Z", "1999-12-31T23:59:60Z", "2026-13-01T00:00:00Z", "2026-01-02Z", "2026-01-02T03:04:05+01:00Z"])
def test_the_utc_fast_path_reads_what_parse_timestamp_reads_or_gives_way(text):
    """`utc_timestamp` (the compiled mappings' shortcut) is exact where it answers and None where parse_timestamp
    has more to say (a leap second, a month 13: errors; a date alone)."""
    fast = utc_timestamp(text)
    try:
        slow = parse_timestamp(text)
    except ConversionError:
        assert fast is None
    else:
        assert fast is None or fast == slow


def test_a_timestamp_without_a_zone_is_refused():
    with pytest.raises(ConversionError, match="time zone"):
        parse_timestamp("2026-01-02T03:04:05")


def test_epoch_milliseconds_become_epoch_seconds():
    assert parse_epoch_ms(1767323045250) == 1767323045.25
    assert parse_epoch_ms("1767323045000") == 1767323045.0


def test_sizes_accept_a_trailing_b():
    assert parse_size("50MiB") == 50 * 2**20
    assert parse_size("1KiB") == 1024
