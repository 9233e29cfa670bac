"""Value conversions: the awkward encodings real APIs use, turned into Prometheus floats in base units."""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any, Callable, Optional

__all__ = [
    "ConversionError",
    "parse_number",
    "parse_quantity",
    "parse_percent",
    "parse_duration",
    "parse_timestamp",
    "parse_epoch_ms",
    "parse_size",
    "CONVERTERS",
]


class ConversionError(ValueError):
    """A value that cannot be read as the number its mapping expects."""


_SPECIAL = {
    "nan": math.nan,
    "+nan": math.nan,
    "-nan": math.nan,
    "inf": math.inf,
    "+inf": math.inf,
    "infinity": math.inf,
    "+infinity": math.inf,
    "-inf": -math.inf,
    "-infinity": -math.inf,
}
_PLAIN_DECIMAL = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)$")
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_number(value: Any) -> float:
    """Read a JSON number, boolean, numeric string, thousands-separated string or NaN/Inf string."""
    kind = type(value)
    if kind is float:
        return value
    if kind is int:
        try:
            return float(value)
        except OverflowError:  # an integer beyond the float range is ±Inf, as the literal 1e400 reads
            return math.inf if value > 0 else -math.inf
    if kind is bool:
        return 1.0 if value else 0.0
    if kind is str:
        text = value.strip()
        try:
            return float(text)
        except ValueError:
            pass
        special = _SPECIAL.get(text.lower())
        if special is not None:
            return special
        if _THOUSANDS.match(text):
            return float(text.replace(",", ""))
    raise ConversionError(f"not a number: {_describe(value)}")


_QUANTITY = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([A-Za-z]{0,2})\s*$")
_DECIMAL_SUFFIX = {"": 0, "n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_QUANTITY_SUFFIX = {
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
    "Pi": 2.0**50,
    "Ei": 2.0**60,
}


def parse_quantity(value: Any) -> float:
    """Read a Kubernetes quantity (`250m`, `1834567123n`, `8388608Ki`, `7Gi`, `1e3`) as a plain number."""
    if type(value) is not str:
        return parse_number(value)
    match = _QUANTITY.match(value)
    if match is None:
        raise ConversionError(f"not a Kubernetes quantity: {_describe(value)}")
    number, suffix = match.groups()
    exponent = _DECIMAL_SUFFIX.get(suffix)
    if exponent is not None:
        # Shifting the decimal point in the text keeps "1555m" exactly 1.555, not 1.5550000000000002.
        return float(f"{number}e{exponent}") if "e" not in number.lower() else float(number) * 10.0**exponent
    factor = _QUANTITY_SUFFIX.get(suffix)
    if factor is None:
        raise ConversionError(f"unknown quantity suffix {suffix!r} in {_describe(value)}")
    return float(number) * factor


def parse_size(value: Any) -> float:
    """Read a byte size such as `50MiB`, `512Ki` or `1048576`."""
    if type(value) is str and value.endswith("B"):
        value = value[:-1]
    return parse_quantity(value)


def parse_percent(value: Any) -> float:
    """Read a percentage (`87 %`, `87%`, or a bare number meaning percent) as a ratio 0–1."""
    if type(value) is str:
        value = value.strip()
        if value.endswith("%"):
            value = value[:-1].rstrip()
        if _PLAIN_DECIMAL.match(value):
            return float(value + "e-2")
    number = parse_number(value)
    text = repr(number)
    if _PLAIN_DECIMAL.match(text):
        # A JSON number too: shifting the point in its shortest text keeps 87.4 at 0.874, not 0.8740000000000001.
        return float(text + "e-2")
    return number / 100.0


_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_ISO_DURATION = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(value: Any) -> float:
    """Read a duration (`10.254s`, `1m0s`, `250ms`, ISO-8601 `PT1M`, or a number of seconds) as seconds."""
    if type(value) is not str:
        return parse_number(value)
    text = value.strip()
    sign = 1.0
    if text[:1] in "+-":
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if text.startswith("P"):
        match = _ISO_DURATION.match(text)
        if match is None or text in ("P", "PT"):
            raise ConversionError(f"not an ISO-8601 duration: {_describe(value)}")
        parts = match.groupdict()
        total = sum(float(parts[k] or 0) * f for k, f in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)))
        return sign * total
    pos = 0
    total = 0.0
    for match in _GO_DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _GO_UNITS[match.group(2)]
        pos = match.end()
    if pos == len(text) and pos > 0:
        return sign * total
    try:
        return sign * parse_number(text)
    except ConversionError:
        raise ConversionError(f"not a duration: {_describe(value)}") from None


def parse_timestamp(value: Any) -> float:
    """Read an RFC 3339 timestamp, or a number of epoch seconds, as epoch seconds."""
    if type(value) is not str:
        return parse_number(value)
    text = value.strip()
    if text[-1:] in "zZ":
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        try:
            return parse_number(text)
        except ConversionError:
            raise ConversionError(f"not an RFC 3339 timestamp: {_describe(value)}") from None
    if parsed.tzinfo is None:
        raise ConversionError(f"timestamp without a time zone: {_describe(value)}")
    return parsed.timestamp()


def utc_timestamp(text: str) -> Optional[float]:
    """`parse_timestamp` of an RFC 3339 string ending in `Z`, or None where it is not one `datetime` reads."""
    try:
        parsed = datetime.fromisoformat(text[:-1] + "+00:00")
    except ValueError:
        return None
    return parsed.timestamp() if parsed.tzinfo is not None else None  # "2026-01-02Z" reads as a naive date


def parse_epoch_ms(value: Any) -> float:
    """Read epoch milliseconds (a number or numeric string) as epoch seconds."""
    return parse_number(value) / 1000.0


CONVERTERS: dict[str, Callable[[Any], float]] = {
    "number": parse_number,
    "quantity": parse_quantity,
    "percent": parse_percent,
    "duration": parse_duration,
    "timestamp": parse_timestamp,
    "epoch_ms": parse_epoch_ms,
    "bytes": parse_size,
}
