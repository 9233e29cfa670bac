"""Mapping: a target's parsed JSON documents → labelled samples, grouped by metric name.

Each configured mapping iterates its `each` steps (arrays, or maps whose keys become labels), carrying the labels
of enclosing objects down to the inner ones, and reads each metric's value from the innermost element.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Sequence

import orjson

from . import config as cfg
from .compiler import compile_group
from .convert import CONVERTERS, ConversionError, parse_timestamp
from .exposition import escape_label_value, label_pairs
from .labelmemo import LabelMemo
from .paths import Getter, PathError, compile_path
from .regex import Regex
from .relabel import Relabeler, RelabelError

__all__ = ["MappingError", "MappingAborted", "MapResult", "Mapper"]

Series = dict[str, float]


class MappingError(ValueError):
    """A document that does not fit its mapping (a value of the wrong type, a step that is not iterable)."""

    reason = "mapping"


class MappingAborted(MappingError):
    """A mapping stopped early: over a limit (`too_large`) or past the poll's deadline (`timeout`)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class MapResult:
    """The samples of one poll: metric name → {pre-escaped label text → value}, plus what was dropped."""

    families: dict[str, Series] = field(default_factory=dict)
    duplicates: int = 0
    missing_values: int = 0
    bad_values: int = 0
    invalid_counters: int = 0
    renamed: dict[str, str] = field(default_factory=dict)  # a family metric_relabel_configs renamed → its metric

    @property
    def series(self) -> int:
        """How many distinct series the poll produced."""
        return sum(len(s) for s in self.families.values())


def _label_text(value: Any) -> Optional[str]:
    kind = type(value)
    if kind is str:
        return value
    if value is None:
        return None
    if kind is bool:
        return "true" if value else "false"
    if kind is float and value.is_integer():
        return str(int(value))
    if kind in (int, float):
        return str(value)
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:  # an integer beyond 64 bits, or nesting deeper than orjson writes (255)
        try:
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        except RecursionError:
            raise MappingError("a label value is an array or object nested too deeply to write as text") from None


LabelReader = Callable[[Any, Any], str]


def _compile_label(spec: cfg.LabelFrom) -> LabelReader:
    default = spec.default or ""
    pattern = Regex(spec.regex) if spec.regex else None
    group = pattern.value_group() if pattern is not None else 0
    if spec.value is not None:
        constant = escape_label_value(spec.value)
        return lambda node, key: constant
    getter: Getter = (lambda node: None) if spec.key else compile_path(spec.path or "@")

    def read(node: Any, key: Any) -> str:
        raw = _label_text(key if spec.key else getter(node))
        if raw is None:
            return default
        if pattern is not None:
            raw = pattern.group(raw, group) or default
        return escape_label_value(raw)

    if pattern is None and not spec.key and not spec.default:
        # The common case: a plain string field, read without the extra checks.
        def read_plain(node: Any, key: Any) -> str:
            raw = getter(node)
            if type(raw) is not str:
                raw = _label_text(raw)
                if raw is None:
                    return ""
            if "\\" in raw or '"' in raw or "\n" in raw:  # escape_label_value's test, without the call
                return escape_label_value(raw)
            return raw

        return read_plain
    if pattern is not None and not spec.key:
        # A field cut down by a regex (`id` → pod name): `read` without its key and escaping calls. The label text
        # of each value is remembered across polls (ids repeat from poll to poll), up to _REGEX_MEMO_SIZE values:
        # a dict hit costs 0.05 µs where an RE2 call costs about 1.3 µs (Python's re: 0.45 µs). New results are
        # staged and join the table when the poll settles (labelmemo.py says why).
        search = pattern.group
        memo = LabelMemo(_REGEX_MEMO_SIZE, _REGEX_MEMO_KEY)
        table, stage = memo.table, memo.stage

        def read_match(node: Any, key: Any) -> str:
            raw = getter(node)
            if type(raw) is not str:
                raw = _label_text(raw)
                if raw is None:
                    return default
            text = table.get(raw)
            if text is None:
                text = search(raw, group) or default
                if "\\" in text or '"' in text or "\n" in text:
                    text = escape_label_value(text)
                stage(raw, text)
            return text

        read_match.memo = memo  # type: ignore[attr-defined]  # the compiled code looks values up in its table first
        return read_match
    return read


def _compile_labels(labels: dict[str, cfg.LabelFrom]) -> list[tuple[str, LabelReader]]:
    return [(f',{name}="', _compile_label(spec)) for name, spec in labels.items()]


def _render_labels(readers: list[tuple[str, LabelReader]], node: Any, key: Any) -> str:
    return "".join([prefix + read(node, key) + '"' for prefix, read in readers])


def _label_renderer(readers: list[tuple[str, LabelReader]]) -> Callable[[Any, Any], str]:
    """`_render_labels` for these readers as one function: an f-string for up to three labels, not a join."""
    if len(readers) == 1:
        (p0, r0), = readers
        return lambda node, key: f'{p0}{r0(node, key)}"'
    if len(readers) == 2:
        (p0, r0), (p1, r1) = readers
        return lambda node, key: f'{p0}{r0(node, key)}"{p1}{r1(node, key)}"'
    if len(readers) == 3:
        (p0, r0), (p1, r1), (p2, r2) = readers
        return lambda node, key: f'{p0}{r0(node, key)}"{p1}{r1(node, key)}"{p2}{r2(node, key)}"'
    return lambda node, key: _render_labels(readers, node, key)


_INVALID_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")
_UNSEEN = object()


def _copied_label_name(key: str, exclude: frozenset[str], configured: set[str]) -> Optional[str]:
    """The label name a copied key gets, or None to leave it out (see `labels_from` in docs/configuration.md)."""
    if key in exclude or key.startswith("__"):
        return None
    name = _INVALID_LABEL_CHARS.sub("_", key)
    if not name or name.startswith("__"):
        return None
    if name[0].isdigit():
        name = "_" + name
    if name in cfg.RESERVED_LABELS:
        name = "exported_" + name
    return None if name in configured else name


def _compile_labels_from(
    spec: cfg.LabelsFrom, configured: set[str], where: str, budget: int, name_limit: int
) -> Callable[[Any], str]:
    """A reader of the label text copied from every key of one object: sorted by key, escaped, empty values left out.

    More than `budget` copied labels (-1: no limit), or a name longer than `name_limit` (0: no limit), aborts the poll.
    """
    getter = compile_path(spec.path)
    exclude = frozenset(spec.exclude)
    names: dict[str, Optional[str]] = {}

    def read(node: Any) -> str:
        found = getter(node)
        if found is None:
            return ""
        if type(found) is not dict:
            raise MappingError(f"{where} {spec.path!r}: expected an object, got {type(found).__name__}")
        copied: dict[str, str] = {}
        for key in sorted(found):
            name = names.get(key, _UNSEEN)
            if name is _UNSEEN:
                name = _copied_label_name(key, exclude, configured)
                if len(names) < 10_000:  # label keys are few; the cap only bounds a hostile API
                    names[key] = name
            if name is None or name in copied:
                continue
            text = _label_text(found[key])
            if text:
                if name_limit and len(name) > name_limit:
                    raise MappingAborted("too_large", f"{where}: copied label name {name[:60]!r}... is longer than label_name_length_limit ({name_limit})")
                copied[name] = escape_label_value(text)
        if budget >= 0 and len(copied) > budget:
            raise MappingAborted("too_large", f"{where}: {len(copied)} copied labels take a series over label_limit")
        return "".join([f',{name}="{text}"' for name, text in copied.items()])

    return read


def _empty_as_missing(getter: Getter) -> Getter:
    """Wrap a getter so that an array with no non-null element reads as missing."""

    def get(node: Any) -> Any:
        found = getter(node)
        if type(found) is list and all(item is None for item in found):
            return None
        return found

    return get


def _compile_aggregate(how: str, convert_one: Callable[[Any], float]) -> Callable[[Any], float]:
    """Fold an array of raw values into one float: each non-null element converted, then summed, averaged, etc."""

    def reduce(raw: Any) -> float:
        if type(raw) is not list:
            raise ConversionError(f"aggregate: {how} needs an array, got {type(raw).__name__}")
        if how == "count":
            return float(sum(1 for item in raw if item is not None))
        values = [convert_one(item) for item in raw if item is not None]
        if how == "min":
            return min(values)
        if how == "max":
            return max(values)
        try:
            total = math.fsum(values)
        except (OverflowError, ValueError):  # fsum refuses what float addition makes ±Inf (overflow) or NaN (Inf - Inf)
            total = sum(values)
        if how == "mean":
            total /= len(values)
        # 15 significant digits: "250m" + "1834567123n" is 2.084567123, not 2.0845671230000002.
        return float(f"{total:.15g}")

    return reduce


class _Unreadable:
    """A time series whose shape is wrong (arrays of different lengths, a bad timestamp): a bad value, with why."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _latest_point(points: list[tuple[Any, Any]]) -> Any:
    """The value of the point with the greatest timestamp (on a tie, the later one), skipping null values; else None."""
    best_time = -math.inf
    best: Any = None
    for timestamp, value in points:
        if value is None or timestamp is None:
            continue
        try:
            when = parse_timestamp(timestamp)
        except ConversionError as exc:
            return _Unreadable(f"latest: a point's timestamp: {exc}")
        if when >= best_time:
            best_time, best = when, value
    return best


def _compile_latest(spec: cfg.Latest) -> Getter:
    """A getter of the raw value of a time series' latest point, None when it has none."""
    if spec.points is not None:
        points_at = compile_path(spec.points)
        timestamp_at, value_at = compile_path(spec.timestamp), compile_path(spec.value)

        def from_points(node: Any) -> Any:
            points = points_at(node)
            if points is None:
                return None
            if type(points) is not list:
                return _Unreadable(f"latest: points {spec.points!r} is {type(points).__name__}, not an array")
            return _latest_point([(timestamp_at(p), value_at(p)) for p in points])

        return from_points
    timestamps_at, values_at = compile_path(spec.timestamps or ""), compile_path(spec.values or "")

    def from_arrays(node: Any) -> Any:
        timestamps, values = timestamps_at(node), values_at(node)
        if timestamps is None and values is None:
            return None
        if type(timestamps) is not list or type(values) is not list:
            return _Unreadable(f"latest: {spec.timestamps!r} and {spec.values!r} must both be arrays")
        if len(timestamps) != len(values):
            return _Unreadable(f"latest: {len(timestamps)} timestamps but {len(values)} values")
        return _latest_point(list(zip(timestamps, values)))

    return from_arrays


@dataclass
class _Step:
    index: int
    path: str
    getter: Getter
    labels: list[tuple[str, LabelReader]]
    decode_json: bool
    single: bool
    render: Optional[Callable[[Any, Any], str]] = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.render = _label_renderer(self.labels) if self.labels else None


class _Metric:
    """One configured metric, compiled: its label prefix, value reader and conversion."""

    def __init__(self, metric: cfg.Metric, level: str, target_prefix: str, target_labels: int, where: str) -> None:
        self.spec = metric
        self.name = metric.name
        self.where = where
        self.path = metric.value or ""
        self.prefix = f'{{level="{escape_label_value(level)}"{target_prefix}'
        self.labels = _compile_labels(metric.labels)
        self.required = [f',{n}="' for n in cfg.LEVEL_LABELS.get(level, ())]
        self.info = metric.type == "info"
        self.counter = metric.type == "counter"
        self.label_count = 3 + target_labels + len(metric.labels)  # __name__, level, target; the rest are added by _Group
        self.getter = compile_path(metric.value) if metric.value else None
        self.convert = CONVERTERS[metric.convert]
        self.plain = metric.convert == "number" and metric.regex is None and metric.enum is None
        self.regex = Regex(metric.regex) if metric.regex else None
        self.enum = metric.enum
        self.scale = metric.scale
        # Dividing by an exact power of ten keeps 950000000 × 1e-9 at 0.95 rather than 0.9500000000000001.
        inverse = round(1.0 / metric.scale) if 0.0 < metric.scale < 1.0 else 0
        exact = inverse > 1 and str(inverse).rstrip("0") == "1" and abs(inverse * metric.scale - 1.0) < 1e-12
        self.divisor = float(inverse) if exact else None
        self.default = metric.default
        self.reduce: Optional[Callable[[Any], float]] = None
        if metric.aggregate is not None:
            self.plain = False
            self.reduce = _compile_aggregate(metric.aggregate, self.convert_one)
            if metric.aggregate != "count" and self.getter is not None:
                self.getter = _empty_as_missing(self.getter)
        if metric.latest is not None:
            self.path = f"latest {metric.latest.points or metric.latest.values!r}"
            self.getter = _compile_latest(metric.latest)
            self.plain = False  # the value picked is converted as any other, or reported bad with why
            self.reduce = self._convert_latest

    def _convert_latest(self, raw: Any) -> float:
        if type(raw) is _Unreadable:
            raise ConversionError(raw.reason)
        return self.convert_one(raw)

    def value(self, raw: Any) -> float:
        """Convert a raw JSON value (with `aggregate`, an array of them) to a float, or raise ConversionError."""
        if self.reduce is not None:
            return self.reduce(raw)
        return self.convert_one(raw)

    def convert_one(self, raw: Any) -> float:
        """Convert one raw JSON value to a float, or raise ConversionError."""
        if self.regex is not None:
            if type(raw) is not str:
                raise ConversionError(f"regex needs a string, got {type(raw).__name__}")
            match = self.regex.match(raw)
            if match is None:
                raise ConversionError(f"regex {self.regex.pattern!r} does not match {raw[:60]!r}")
            raw = match[self.regex.value_group()]
        if self.enum is not None:
            key = _label_text(raw)
            if key not in self.enum:
                raise ConversionError(f"{key!r} is not one of {', '.join(self.enum)}")
            return self.rescale(self.enum[key])
        return self.rescale(self.convert(raw))

    def rescale(self, value: float) -> float:
        """Apply the metric's scale factor."""
        if self.divisor is not None:
            return value / self.divisor
        return value * self.scale if self.scale != 1.0 else value


class _Group:
    """One configured mapping, compiled."""

    def __init__(self, mapping: cfg.Mapping, target: cfg.Target, index: int, target_prefix: str) -> None:
        self.spec = mapping
        self.where = f"mappings[{index}]"
        self.steps = [
            _Step(i, s.path, compile_path(s.path), _compile_labels(s.labels), s.decode_json, s.single)
            for i, s in enumerate(mapping.each)
        ]
        self.labels = _compile_labels(mapping.labels)
        self.copied_labels: Optional[Callable[[Any], str]] = None
        if mapping.labels_from is not None:
            configured = set(target.labels) | set(mapping.labels)
            configured.update(*(s.labels for s in mapping.each), *(m.labels for m in mapping.metrics))
        self.metrics = [
            _Metric(m, m.level or mapping.level or "", target_prefix, len(target.labels), f"{self.where}.metrics[{k}]")
            for k, m in enumerate(mapping.metrics)
        ]
        if mapping.labels_from is not None:
            static = len(mapping.labels) + sum(len(s.labels) for s in mapping.each)
            most = max(m.label_count for m in self.metrics) + static
            budget = target.label_limit - most if target.label_limit else -1
            self.copied_labels = _compile_labels_from(
                mapping.labels_from, configured, f"{self.where}.labels_from", budget, target.label_name_length_limit
            )

    def elements(self, node: Any) -> Iterator[tuple[Any, Any, str]]:
        """Yield (element, map key, label text of enclosing steps) for every innermost element."""
        yield from self._walk(node, None, "", 0)

    def _walk(self, node: Any, key: Any, labels: str, depth: int) -> Iterator[tuple[Any, Any, str]]:
        if depth == len(self.steps):
            yield node, key, labels
            return
        step = self.steps[depth]
        found = step.getter(node)
        if step.decode_json and type(found) is str:
            try:
                found = orjson.loads(found)
            except orjson.JSONDecodeError as exc:
                raise MappingError(f"{self.where}.each[{step.index}] {step.path!r}: not a JSON string: {exc}") from None
        if found is None:
            return
        if step.single:
            items: Any = ((key, found),)
        elif type(found) is list:
            items = enumerate(found)
        elif type(found) is dict:
            items = found.items()
        else:
            raise MappingError(
                f"{self.where}.each[{step.index}] {step.path!r}: expected an array or object, got {type(found).__name__}"
            )
        render = step.render
        last = depth + 1 == len(self.steps)
        for item_key, element in items:
            text = labels + render(element, item_key) if render is not None else labels
            if last:
                yield element, item_key, text
            else:
                yield from self._walk(element, item_key, text, depth + 1)


class Mapper:
    """All of one target's mappings, compiled once; `map` is called for every page of every poll."""

    def __init__(self, target: cfg.Target) -> None:
        prefix = f',target="{escape_label_value(target.name)}"'
        prefix += "".join(f',{k}="{escape_label_value(v)}"' for k, v in target.labels.items())
        self.skip_bad_values = target.skip_bad_values
        self.sample_limit = target.sample_limit
        self.value_limit = target.label_value_length_limit
        self.groups = [_Group(m, target, i, prefix) for i, m in enumerate(target.mappings)]
        self.relabeler: Optional[Relabeler] = None
        if target.metric_relabel_configs:
            self.relabeler = Relabeler(
                target.metric_relabel_configs, target.label_limit, target.label_name_length_limit, self.value_limit
            )
        self.types = {m.name: m.type for mapping in target.mappings for m in mapping.metrics}
        self.compiled = [compile_group(self, group, i) for i, group in enumerate(self.groups)]
        readers = [
            reader
            for group in self.groups
            for labels in (group.labels, *(s.labels for s in group.steps), *(m.labels for m in group.metrics))
            for _, reader in labels
        ]
        self.memos: list[LabelMemo] = [reader.memo for reader in readers if hasattr(reader, "memo")]

    def settle(self) -> int:
        """After a poll, once its documents are freed: let the label texts it found join the memos; return how many."""
        shared: dict[str, str] = {}  # one string per value, across the labels cut from the same field
        return sum(memo.settle(shared) for memo in self.memos)

    @property
    def source(self) -> str:
        """The generated Python of every mapping (`metrics-bridge try --show-compiled`)."""
        return "\n".join(f"# {c.where}\n{c.source}" for c in self.compiled)

    def new_result(self) -> MapResult:
        """An empty result with a family for every configured metric name."""
        result = MapResult()
        for group in self.groups:
            for metric in group.metrics:
                result.families.setdefault(metric.name, {})
        return result

    def map(self, document: Any, result: Optional[MapResult] = None, deadline: Optional[float] = None) -> MapResult:
        """Map one parsed document into `result` (a new one if not given); raise MappingError if it does not fit.

        Past `deadline` (a `time.monotonic()` value) or over the target's sample_limit, mapping stops within
        `CHECK_EVERY` elements with MappingAborted, so a huge or slow document costs bounded time and memory.
        """
        if result is None:
            result = self.new_result()
        limit = math.inf if deadline is None else deadline
        countdown = CHECK_EVERY
        try:
            for compiled in self.compiled:
                countdown = compiled.function(document, result, limit, countdown)
        except PathError as exc:  # a JMESPath function given a value of the wrong type by this document
            raise MappingError(str(exc)) from None
        self._checkpoint(result, limit)
        return result

    def interpret(self, document: Any, result: Optional[MapResult] = None, deadline: Optional[float] = None) -> MapResult:
        """`map` by the generic loop instead of the compiled code: the reference the compiled code is tested against."""
        try:
            result = self._map(document, result, math.inf if deadline is None else deadline)
        except PathError as exc:
            raise MappingError(str(exc)) from None
        self._checkpoint(result, math.inf if deadline is None else deadline)
        return result

    def _checkpoint(self, result: MapResult, deadline: float) -> None:
        """Abort if the poll's deadline has passed or its samples are over sample_limit."""
        if self.sample_limit and result.series > self.sample_limit:
            raise MappingAborted("too_large", f"more than sample_limit ({self.sample_limit}) samples")
        if time.monotonic() > deadline:
            raise MappingAborted("timeout", "the poll's deadline passed while mapping")

    def _long_value(self, text: str) -> None:
        """Abort if one label value in a series text, unescaped, is longer than label_value_length_limit."""
        limit = self.value_limit
        for name, value in label_pairs(text):
            if len(value) > limit and len(value) - value.count("\\") + value.count("\\\\") > limit:
                raise MappingAborted(
                    "too_large", f"label {name!r} has a value longer than label_value_length_limit ({limit})"
                )

    def _relabel(self, metric: "_Metric", text: str, result: MapResult) -> Optional[tuple[Series, str, Optional[str]]]:
        """A sample's series after metric_relabel_configs: (its family, its text, an empty required label), or None."""
        try:
            relabeled = self.relabeler(metric.name, text)  # type: ignore[misc]
        except RelabelError as exc:
            if exc.reason == "mapping":
                raise MappingError(f"{metric.where} {metric.name}: {exc}") from None
            raise MappingAborted(exc.reason, f"{metric.where} {metric.name}: {exc}") from None
        if relabeled is None:
            return None
        name, text = relabeled
        if name == metric.name:
            series = result.families[name]
        else:
            series = self._renamed_family(metric, name, result)
        return series, text, _empty_label(text, metric.required) if metric.required else None

    def _renamed_family(self, metric: "_Metric", name: str, result: MapResult) -> Series:
        """The family a rule renamed a metric's sample into: its type's suffix kept, no clash with another type."""
        kind = self.types.get(metric.name, "gauge")
        problem = ""
        if name.startswith(cfg.SELF_PREFIX):
            problem = f"names starting with {cfg.SELF_PREFIX!r} are the bridge's own"
        elif kind == "counter" and not name.endswith("_total"):
            problem = "a counter's name must end in _total"
        elif kind == "info" and not name.endswith("_info"):
            problem = "an info metric's name must end in _info"
        elif kind != "counter" and name.endswith("_total"):
            problem = "only counters end in _total"
        elif self.types.get(name, kind) != kind or self.types.get(result.renamed.get(name, ""), kind) != kind:
            problem = f"{name!r} is also a metric of another type"
        if problem:
            raise MappingError(f"{metric.where} {metric.name}: metric_relabel_configs renamed it to {name!r}: {problem}")
        if name not in self.types:
            result.renamed.setdefault(name, metric.name)
        return result.families.setdefault(name, {})

    def _map(self, document: Any, result: Optional[MapResult], deadline: float) -> MapResult:
        """The loop behind `map`.

        This is the hot loop (200k samples a poll in bench/). Per element, the series text shared by the metrics that
        have no labels of their own is built, and its level labels checked, once rather than once per metric; and
        string values go through a per-metric memo, since APIs repeat them ("16Gi", "1250m", "87.5 %"). The memo
        lives for one call only: kept across polls, its keys would pin the old documents' memory (30 MB more RSS at
        200k series). Together with label renderers built once per call, these take 40 % off the plain loop.
        """
        if result is None:
            result = self.new_result()
        families = result.families
        skip_bad_values = self.skip_bad_values
        value_limit = self.value_limit or math.inf
        relabel = self.relabeler
        countdown = CHECK_EVERY
        for group in self.groups:
            # Metrics without labels of their own share one series text per level: their "slot".
            slots: dict[tuple[str, tuple[str, ...]], int] = {}
            plans = []
            for metric in group.metrics:
                slot = -1 if metric.labels else slots.setdefault((metric.prefix, tuple(metric.required)), len(slots))
                exact = metric.divisor is None and metric.scale == 1.0
                own = _label_renderer(metric.labels) if metric.labels else None
                plans.append(
                    (metric, families.setdefault(metric.name, {}), slot, metric.getter, metric.info, metric.plain, exact, {}, own, metric.counter)
                )
            prefixes = [prefix for prefix, _ in slots]
            required = [names for _, names in slots]
            one_slot = len(slots) == 1
            prefix0, required0 = (prefixes[0], required[0]) if one_slot else ("", ())
            group_labels = _label_renderer(group.labels) if group.labels else None
            copied_labels = group.copied_labels
            for element, key, outer in group.elements(document):
                countdown -= 1
                if not countdown:
                    countdown = CHECK_EVERY
                    self._checkpoint(result, deadline)
                common = outer + group_labels(element, key) if group_labels is not None else outer
                if copied_labels is not None:
                    common += copied_labels(element)
                if len(common) > value_limit:  # the whole text over the limit: look at each value
                    self._long_value(common)
                if one_slot:
                    text = prefix0 + common + "}"
                    texts: Sequence[str] = (text,)
                    empty: Sequence[Optional[str]] = (_empty_label(text, required0) if required0 else None,)
                else:
                    texts = [prefix + common + "}" for prefix in prefixes]
                    empty = [_empty_label(text, names) for text, names in zip(texts, required)]
                for metric, series, slot, getter, info, plain, exact, memo, own, counter in plans:
                    if info:
                        value = 1.0
                    else:
                        raw = getter(element)
                        if raw is None:
                            if metric.default is None:
                                result.missing_values += 1
                                continue
                            value = metric.default
                        elif plain and (type(raw) is float or type(raw) is int):
                            try:
                                value = float(raw) if exact else metric.rescale(float(raw))
                            except OverflowError:  # an integer beyond the float range: ±Inf, as 1e400 reads
                                value = metric.value(raw)
                        else:
                            cached = memo.get(raw) if type(raw) is str else None
                            if cached is None:
                                try:
                                    value = metric.value(raw)
                                except ConversionError as exc:
                                    if skip_bad_values:
                                        result.bad_values += 1
                                        continue
                                    raise MappingError(f"{metric.where} {metric.name} (value {metric.path!r}): {exc}") from None
                                if type(raw) is str and len(memo) < _MEMO_SIZE:
                                    memo[raw] = value
                            else:
                                value = cached
                        if counter and not value >= 0.0:  # negative or NaN: no valid counter sample (OpenMetrics)
                            result.invalid_counters += 1
                            continue
                    if slot >= 0:
                        text = texts[slot]
                        label = empty[slot]
                    else:
                        text = metric.prefix + common + own(element, key) + "}"
                        if len(text) > value_limit:
                            self._long_value(text)
                        label = _empty_label(text, metric.required)
                    if relabel is not None:
                        relabeled = self._relabel(metric, text, result)
                        if relabeled is None:  # dropped by a keep or drop rule
                            continue
                        series, text, label = relabeled
                    if label is not None:
                        if skip_bad_values:
                            result.bad_values += 1
                            continue
                        raise MappingError(f"{metric.where} {metric.name}: empty {label!r} label")
                    size = len(series)
                    series[text] = value
                    if len(series) == size:
                        result.duplicates += 1
        return result


_MEMO_SIZE = 4096  # converted string values remembered per metric and call; the first ones seen stay
_REGEX_MEMO_SIZE = 131_072  # label regex results remembered per label (a few MB at most; all 111k container ids at 1M series)
_REGEX_MEMO_KEY = 256  # longer values are not remembered
CHECK_EVERY = 1024  # elements mapped between two looks at the clock and the sample count



def _empty_label(text: str, required: Sequence[str]) -> Optional[str]:
    """The first of the `required` label prefixes (`,pod="`) absent or empty in a series text, by name; else None."""
    for prefix in required:
        start = _label_start(text, prefix)
        if start < 0 or text[start + len(prefix)] == '"':
            return prefix[1:-2]
    return None


def _label_start(text: str, prefix: str) -> int:
    """Where the label that `prefix` (`,pod="`) starts is in a series text, or -1: the first match that follows the
    closing quote of the label before it, not one inside a value (a value can end in `,pod=`, and contain `\\",pod=`)."""
    start = text.find(prefix)
    while start > 0:
        quote = start - 1
        if text[quote] == '"':
            slashes = 0
            while quote - slashes > 0 and text[quote - slashes - 1] == "\\":
                slashes += 1
            if not slashes % 2:  # the quote is a delimiter, not an escaped quote
                return start
        start = text.find(prefix, start + 1)
    return -1
