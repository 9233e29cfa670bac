"""Mappings compiled to Python: each configured mapping becomes one generated function of straight-line code.

`mapping.Mapper` builds, for every mapping, its label readers and metrics (`_Group`, `_Metric`); this module writes a
function that does what `Mapper.interpret` (the generic loop, kept as the reference) does with them, but with the
iteration steps unrolled into nested loops, plain dotted paths read by inline `dict.get` (a path prefix shared by
several labels and values read once per element), plain string labels read and escaped inline, each metric's value
converted by its own lines, and the series text built by one f-string. Paths, labels and conversions that need more
(JMESPath, regexes, `aggregate`, `latest`, `enum`, unit conversions) call the same compiled objects the reference
loop calls, so semantics and error messages are the same by construction; `tests/test_compiler.py` checks both
against each other. `metrics-bridge try --show-compiled` prints the source.

The source of a mapping depends only on its config, so compiled code objects are cached by source text: a reload that
keeps a mapping does not compile it again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

import orjson

from .convert import _QUANTITY_SUFFIX, ConversionError, utc_timestamp
from .exposition import escape_label_value
from .paths import field_keys

if TYPE_CHECKING:  # pragma: no cover
    from .mapping import Mapper, _Group, _Metric

__all__ = ["CompiledMapping", "compile_group"]

# Conversions that read a string of ASCII digits as exactly the number float() reads (see convert.py).
_DIGITS_READ_AS_NUMBER = frozenset({"number", "quantity", "bytes"})

MapFunction = Callable[[Any, Any, float, int], int]


@dataclass(frozen=True)
class CompiledMapping:
    """One mapping as generated source and the function it defines: `(document, result, deadline, countdown) → countdown`."""

    where: str
    source: str
    function: MapFunction


@lru_cache(maxsize=256)
def _code(source: str, filename: str) -> Any:
    return compile(source, filename, "exec")


def _literal(text: str) -> str:
    """`text` as the literal part of a single-quoted f-string: printable ASCII kept, braces doubled, the rest escaped."""
    out = []
    for char in text:
        if char in "{}":
            out.append(char * 2)
        elif " " <= char <= "~" and char not in "\\'":
            out.append(char)
        else:
            out.append(f"\\U{ord(char):08x}")
    return "".join(out)


class _Source:
    """Lines of Python being written, with indentation and fresh names."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.depth = 0
        self.counts: dict[str, int] = {}

    def __call__(self, line: str) -> None:
        self.lines.append("    " * self.depth + line)

    def name(self, stem: str) -> str:
        """A new variable name starting with `stem`."""
        n = self.counts.get(stem, 0)
        self.counts[stem] = n + 1
        return f"{stem}{n}"

    def block(self) -> "_Indent":
        """Indent the lines written inside the `with`."""
        return _Indent(self)


class _Indent:
    def __init__(self, source: _Source) -> None:
        self.source = source

    def __enter__(self) -> None:
        self.source.depth += 1

    def __exit__(self, *exc: Any) -> None:
        self.source.depth -= 1


class _Text:
    """A series text being assembled: constant pieces and variables, written out as one f-string."""

    def __init__(self, *parts: str) -> None:
        self.parts: list[tuple[bool, str]] = []  # (is a variable, text or name)
        # Where each label's escaped value is: `,name="` → a variable holding it, or None where the text has a part
        # that could hold any label (copied labels) and so only searching the text tells.
        self.labels: Optional[dict[str, str]] = {}
        self.shape = ""  # the text with every variable part as NUL: what its constant parts can spell
        for part in parts:
            self.constant(part)

    def constant(self, text: str) -> "_Text":
        if text:
            self.parts.append((False, text))
            self.shape += text
        return self

    def variable(self, name: str) -> "_Text":
        self.parts.append((True, name))
        self.shape += "\0"
        return self

    def extend(self, other: "_Text") -> "_Text":
        self.parts.extend(other.parts)
        self.shape += other.shape
        self.labels = None if self.labels is None or other.labels is None else {**self.labels, **other.labels}
        return self

    def named(self, name: str, like: "_Text") -> "_Text":
        """A variable `name` holding the text of `like` (what it holds stays known)."""
        self.parts.append((True, name))
        self.shape += like.shape
        self.labels = dict(like.labels) if like.labels is not None else None
        return self

    def label(self, prefix: str, name: str) -> "_Text":
        """The variable `name`, holding the escaped value of the label that `prefix` (`,pod="`) starts."""
        self.variable(name)
        if self.labels is not None:
            self.labels[prefix] = name
        return self

    def opaque(self, name: str) -> "_Text":
        """The variable `name`, holding label text of any names."""
        self.variable(name)
        self.labels = None
        return self

    def holder(self, prefix: str) -> Optional[str]:
        """The variable holding the value of the label `prefix` starts, when that alone decides whether it is empty:
        the label is in the text once, as that variable, and no constant part could hold it instead."""
        if self.labels is None or prefix not in self.labels or self.shape.count(prefix) != 1:
            return None
        return self.labels[prefix]

    @property
    def empty(self) -> bool:
        return not self.parts

    def code(self) -> str:
        """An expression evaluating to the text."""
        if not self.parts:
            return "''"
        if len(self.parts) == 1 and self.parts[0][0]:
            return self.parts[0][1]
        return "f'" + "".join("{" + text + "}" if var else _literal(text) for var, text in self.parts) + "'"


class _Element:
    """Reads from one element of a mapping: each dotted path, and each prefix paths share, read once per element."""

    def __init__(self, src: _Source, node: str) -> None:
        self.src = src
        self.node = node
        self.prefixes: dict[tuple[str, ...], str] = {}  # keys → variable holding that object (or EMPTY)
        self.leaves: dict[tuple[str, ...], str] = {}  # keys → variable holding the value there (or None)
        self.prologue: list[str] = []

    def read(self, keys: tuple[str, ...]) -> str:
        """An expression for the value at `keys` (() is the element itself); None where missing or not an object."""
        if not keys:
            return self.node
        name = self.leaves.get(keys)
        if name is None:
            name = self.leaves[keys] = self.src.name("v")
            self.prologue.append(f"{name} = {self._object(keys[:-1])}.get({keys[-1]!r})")
        return name

    def _object(self, keys: tuple[str, ...]) -> str:
        name = self.prefixes.get(keys)
        if name is not None:
            return name
        if not keys:
            name = self.src.name("d")
            self.prologue.append(f"{name} = {self.node} if type({self.node}) is dict else EMPTY")
        else:
            parent = self._object(keys[:-1])
            name = self.src.name("d")
            self.prologue.append(f"{name} = {parent}.get({keys[-1]!r}, EMPTY)")
            self.prologue.append(f"if type({name}) is not dict: {name} = EMPTY")
        self.prefixes[keys] = name
        return name


def _chain(src: _Source, target: str, node: str, keys: tuple[str, ...]) -> None:
    """`target = ` the value at `keys` under `node`, as `paths.compile_path` reads it."""
    if not keys:
        src(f"{target} = {node}")
        return
    src(f"{target} = {node}.get({keys[0]!r}) if type({node}) is dict else None")
    for key in keys[1:]:
        src(f"{target} = {target}.get({key!r}) if type({target}) is dict else None")


class _Generator:
    """Writes the function for one `_Group` of a `Mapper`."""

    def __init__(self, mapper: "Mapper", group: "_Group", index: int) -> None:
        self.mapper = mapper
        self.group = group
        self.index = index
        self.src = _Source()
        self.ns: dict[str, Any] = {}
        spec = group.spec
        self.uses_key = any(
            label.key
            for labels in (*(s.labels for s in spec.each), spec.labels, *(m.labels for m in spec.metrics))
            for label in labels.values()
        )

    # ---------------------------------------------------------------------------------------------------- namespace
    def bind(self, stem: str, value: Any) -> str:
        """A global of the generated code holding `value`."""
        name = self.src.name(stem.upper() + "_")
        self.ns[name] = value
        return name

    def number(self, value: float) -> str:
        """A float as source: its repr (exact) when finite, else a bound global."""
        return repr(float(value)) if math.isfinite(value) else self.bind("const", float(value))

    # -------------------------------------------------------------------------------------------------------- labels
    def labels(self, readers: list[tuple[str, Callable[[Any, Any], str]]], specs: dict[str, Any], at: Optional[_Element], node: str, key: str) -> _Text:
        """Statements reading labels into variables; the `,name="value"` text they make."""
        src = self.src
        text = _Text()
        for (prefix, reader), spec in zip(readers, specs.values()):
            text.constant(prefix)
            keys = field_keys(spec.path) if spec.path is not None else None
            if spec.value is not None:
                text.constant(escape_label_value(spec.value))
            elif keys is not None and spec.regex is None and not spec.key and not spec.default:
                name = src.name("l")
                if at is not None:
                    src(f"{name} = {at.read(keys)}")
                else:  # an outer step's label: read in place
                    _chain(src, name, node, keys)
                src(f"if type({name}) is not str:")
                with src.block():
                    src(f"{name} = label_text({name})")
                    src(f"if {name} is None: {name} = ''")
                src(f"if '\\\\' in {name} or '\"' in {name} or '\\n' in {name}: {name} = escape({name})")
                text.label(prefix, name)
            elif keys is not None and at is not None and spec.regex is not None and not spec.key and hasattr(reader, "memo"):
                # A field cut down by a regex: its label text remembered across polls, by the reader that computes it.
                name = src.name("l")
                raw = at.read(keys)
                src(f"{name} = {self.bind('memo', reader.memo.table)}.get({raw}) if type({raw}) is str else None")
                src(f"if {name} is None: {name} = {self.bind('label', reader)}({node}, {key})")
                text.label(prefix, name)
            else:
                name = src.name("l")
                src(f"{name} = {self.bind('label', reader)}({node}, {key})")
                text.label(prefix, name)
            text.constant('"')
        return text

    # --------------------------------------------------------------------------------------------------------- steps
    def generate(self) -> CompiledMapping:
        src, group, mapper = self.src, self.group, self.mapper
        where = group.where
        name = f"map_{self.index}"
        src(f"def {name}(document, result, deadline, countdown):")
        with src.block():
            src(f'"""{where}, compiled."""')
            src("families = result.families")
            for k, metric in enumerate(group.metrics):
                src(f"f{k} = families.setdefault({metric.name!r}, {{}})")
                if not metric.info:
                    src(f"memo{k} = {{}}")
            src("missing = bad = stored = invalid = 0")
            src("before = result.series")
            src("try:")
            with src.block():
                self.level(0, "document", "None", _Text())
            src("finally:")
            with src.block():
                src("result.missing_values += missing")
                src("result.bad_values += bad")
                src("result.duplicates += stored - (result.series - before)  # stores that replaced a series")
                src("result.invalid_counters += invalid")
            src("return countdown")
        source = "\n".join(src.lines) + "\n"
        from . import mapping  # imported here: it imports this module

        namespace = {
            "EMPTY": {},
            "BINARY_SUFFIXES": _QUANTITY_SUFFIX,
            "utc_timestamp": utc_timestamp,
            "CHECK_EVERY": mapping.CHECK_EVERY,
            "MEMO_SIZE": mapping._MEMO_SIZE,
            "MappingError": mapping.MappingError,
            "ConversionError": ConversionError,
            "JSONDecodeError": orjson.JSONDecodeError,
            "loads": orjson.loads,
            "escape": escape_label_value,
            "label_text": mapping._label_text,
            "empty_label": mapping._empty_label,
            "checkpoint": mapper._checkpoint,
            "long_value": mapper._long_value,
            "relabel": mapper._relabel,
            **{f"M{k}": metric for k, metric in enumerate(group.metrics)},
            **self.ns,
        }
        exec(_code(source, f"<metrics-bridge {where}>"), namespace)
        return CompiledMapping(where, source, namespace[name])

    def level(self, depth: int, node: str, key: str, outer: _Text) -> None:
        """The loop over step `depth` of `each` (or, past the last step, the code for one element)."""
        src, group = self.src, self.group
        if depth == len(group.steps):
            self.element(node, key, outer)
            return
        step, spec = group.steps[depth], group.spec.each[depth]
        where = f"{group.where}.each[{step.index}] {step.path!r}"
        found = src.name("found")
        keys = field_keys(step.path)
        if keys is not None:
            _chain(src, found, node, keys)
        else:
            src(f"{found} = {self.bind('path', step.getter)}({node})")
        if step.decode_json:
            src(f"if type({found}) is str:")
            with src.block():
                src("try:")
                with src.block():
                    src(f"{found} = loads({found})")
                src("except JSONDecodeError as exc:")
                with src.block():
                    src(f"raise MappingError({where + ': not a JSON string: '!r} + str(exc)) from None")
        src(f"if {found} is not None:")
        with src.block():
            element, item_key = src.name("e"), src.name("k") if self.uses_key else "None"
            if step.single:
                src(f"items = (({key}, {found}),)" if self.uses_key else f"items = ({found},)")
            else:
                src(f"if type({found}) is list:")
                src(f"    items = enumerate({found})" if self.uses_key else f"    items = {found}")
                src(f"elif type({found}) is dict:")
                src(f"    items = {found}.items()" if self.uses_key else f"    items = {found}.values()")
                src("else:")
                src(f"    raise MappingError({where + ': expected an array or object, got '!r} + type({found}).__name__)")
            src(f"for {item_key + ', ' if self.uses_key else ''}{element} in items:")
            with src.block():
                text = _Text().extend(outer)
                if step.labels:
                    labels = self.labels(step.labels, spec.labels, None, element, item_key)
                    if not labels.empty:
                        name = src.name("o")
                        text.extend(labels)
                        src(f"{name} = {text.code()}")
                        text = _Text().named(name, text)
                self.level(depth + 1, element, item_key, text)

    # ------------------------------------------------------------------------------------------------------- element
    def element(self, node: str, key: str, outer: _Text) -> None:
        """Per innermost element: the deadline check, the shared series texts, then every metric."""
        src, group, mapper = self.src, self.group, self.mapper
        src("countdown -= 1")
        src("if not countdown:")
        src("    countdown = CHECK_EVERY")
        src("    checkpoint(result, deadline)")
        at = _Element(src, node)
        head = len(src.lines)  # the prologue (shared path prefixes) goes here, once the body has said what it needs
        common = _Text().extend(outer)
        if group.labels:
            common.extend(self.labels(group.labels, group.spec.labels, at, node, key))
        if group.copied_labels is not None:
            copied = src.name("c")
            src(f"{copied} = {self.bind('labels_from', group.copied_labels)}({node})")
            common.opaque(copied)
        limit = mapper.value_limit
        if limit and not common.empty:
            src(f"common = {common.code()}")
            src(f"if len(common) > {limit}: long_value(common)")
            common = _Text().named("common", common)
        slots: dict[tuple[str, tuple[str, ...]], tuple[str, str]] = {}
        for k, metric in enumerate(group.metrics):
            slot = None
            if not metric.labels:
                slot_key = (metric.prefix, tuple(metric.required))
                slot = slots.get(slot_key)
                if slot is None:
                    text, empty = src.name("t"), src.name("empty")
                    parts = _Text(metric.prefix).extend(common).constant("}")
                    src(f"{text} = {parts.code()}")
                    if metric.required:
                        self.empty_label(empty, text, metric.required, parts)
                    else:
                        empty = "None"
                    slot = slots[slot_key] = (text, empty)
            self.metric(k, metric, at, node, key, common, slot)
        src.lines[head:head] = ["    " * src.depth + line for line in at.prologue]

    def rescaled(self, expression: str, metric: "_Metric") -> str:
        """`expression` times the metric's scale, as `_Metric.rescale` computes it."""
        if metric.divisor is not None:
            return f"{expression} / {self.number(metric.divisor)}"
        if metric.scale != 1.0:
            return f"{expression} * {self.number(metric.scale)}"
        return expression

    def empty_label(self, target: str, text: str, required: list[str], parts: _Text) -> None:
        """`target = ` the first required label absent or empty in `text`, else None (`mapping._empty_label`): where
        the text is known to hold each required label once, as a variable, by testing those variables."""
        src = self.src
        holders = [parts.holder(prefix) for prefix in required]
        if None in holders:
            src(f"{target} = empty_label({text}, {tuple(required)!r})")
            return
        for n, (prefix, holder) in enumerate(zip(required, holders)):
            src(f"{'elif' if n else 'if'} not {holder}:")
            src(f"    {target} = {prefix[1:-2]!r}")
        src("else:")
        src(f"    {target} = None")

    def metric(self, k: int, metric: "_Metric", at: _Element, node: str, key: str, common: _Text, slot: Optional[tuple[str, str]]) -> None:
        """One metric's value read, checked and stored (with its own labels' text when it has any)."""
        src, mapper = self.src, self.mapper
        spec = metric.spec
        skip = mapper.skip_bad_values
        src(f"# {metric.where}: {metric.name}")
        if metric.info:
            src("value = 1.0")
        else:
            keys = field_keys(spec.value) if spec.value and spec.aggregate is None and spec.latest is None else None
            if keys is not None:
                src(f"raw = {at.read(keys)}")
            else:
                src(f"raw = {self.bind('value', metric.getter)}({node})")
            src("if raw is None:")
            with src.block():
                if metric.default is None:
                    src("missing += 1")
                    src("value = None")
                else:
                    src(f"value = {self.number(metric.default)}")
            if metric.plain:
                src("elif type(raw) is float or type(raw) is int:")
                with src.block():
                    src("try:")
                    src(f"    value = {self.rescaled('float(raw)', metric)}")
                    src("except OverflowError:  # an integer beyond the float range: ±Inf, as 1e400 reads")
                    src(f"    value = M{k}.value(raw)")
            if spec.convert in _DIGITS_READ_AS_NUMBER and spec.regex is None and spec.enum is None and metric.reduce is None:
                src(f"elif type(raw) is str and raw.isdigit() and raw.isascii():  # digits only: {spec.convert} reads the number")
                with src.block():
                    src(f"value = {self.rescaled('float(raw)', metric)}")
                if spec.convert == "quantity":
                    src(
                        "elif type(raw) is str and (factor := BINARY_SUFFIXES.get(raw[-2:])) is not None"
                        " and (digits := raw[:-2]).isdigit() and raw.isascii():  # 16Gi"
                    )
                    with src.block():
                        src(f"value = {self.rescaled('float(digits) * factor', metric)}")
            if spec.convert == "timestamp" and spec.regex is None and spec.enum is None and metric.reduce is None:
                src("elif type(raw) is str and raw[-1:] == 'Z' and raw[:1].isdigit() and (stamp := utc_timestamp(raw)) is not None:")
                with src.block():
                    src(f"value = {self.rescaled('stamp', metric)}")
            src("else:")
            with src.block():
                src(f"value = memo{k}.get(raw) if type(raw) is str else None")
                src("if value is None:")
                with src.block():
                    src("try:")
                    src(f"    value = M{k}.value(raw)")
                    src("except ConversionError as exc:")
                    with src.block():
                        if skip:
                            src("bad += 1")
                        else:
                            message = f"{metric.where} {metric.name} (value {metric.path!r}): "
                            src(f"raise MappingError({message!r} + str(exc)) from None")
                    src("else:")
                    src(f"    if type(raw) is str and len(memo{k}) < MEMO_SIZE: memo{k}[raw] = value")
            src("if value is not None:")
            src.depth += 1
        if metric.counter:
            src("if not value >= 0.0:  # negative or NaN: no valid counter sample (OpenMetrics)")
            src("    invalid += 1")
            src("else:")
            src.depth += 1
        if slot is not None:
            text, empty = slot
        else:
            own = self.labels(metric.labels, spec.labels, at, node, key)
            text, empty = "text", "empty"
            parts = _Text(metric.prefix).extend(common).extend(own).constant("}")
            src(f"text = {parts.code()}")
            if mapper.value_limit:
                src(f"if len(text) > {mapper.value_limit}: long_value(text)")
            if metric.required:
                self.empty_label("empty", "text", metric.required, parts)
            else:
                src("empty = None")
        series = f"f{k}"
        if mapper.relabeler is not None:
            src(f"relabeled = relabel(M{k}, {text}, result)")
            src("if relabeled is not None:")
            src.depth += 1
            src("series, text, empty = relabeled")
            series, text, empty = "series", "text", "empty"
        if empty != "None":
            src(f"if {empty} is not None:")
            with src.block():
                if skip:
                    src("bad += 1")
                else:
                    src(f"raise MappingError({metric.where + ' ' + metric.name + ': empty '!r} + repr({empty}) + ' label')")
            src("else:")
            src.depth += 1
        src(f"{series}[{text}] = value")
        src("stored += 1")
        src.depth -= (mapper.relabeler is not None) + (empty != "None") + metric.counter + (not metric.info)


def compile_group(mapper: "Mapper", group: "_Group", index: int) -> CompiledMapping:
    """The generated function for one of a mapper's mappings."""
    return _Generator(mapper, group, index).generate()


def iter_sources(compiled: list[CompiledMapping]) -> Iterator[str]:
    """Each compiled mapping's source, headed by where it comes from."""
    for mapping in compiled:
        yield f"# {mapping.where}\n{mapping.source}"
