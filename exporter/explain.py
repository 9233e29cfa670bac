"""What a target's mappings found in a document: the elements each `each` step matched, and every path that matched
nothing, with a "did you mean" from the keys that are there.

A typo that is still a valid path (`each: item` for `items`, `value: usage.cpus`) is not a config error: the mapping
just finds nothing, and its series silently vanish. This walks the documents separately from the mapping's hot loop,
so it costs nothing per poll: `try` and `check --input` run it, and `run` only when a mapping that produced series
before produces none (`EmptyMappingWatch`).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import orjson

from . import config as cfg
from .mapping import MapResult
from .paths import PathError, compile_path

__all__ = ["Explanation", "MappingCounts", "explain", "EmptyMappingWatch"]

_SAMPLE = 50  # elements looked at for key suggestions (documents can hold 100k of them)
_DEPTH = 4  # how deep key suggestions go below an element


@dataclass
class MappingCounts:
    """One mapping: how many elements each of its steps matched in all the documents."""

    index: int
    steps: list[tuple[str, int]] = field(default_factory=list)
    elements: int = 0

    def describe(self) -> str:
        """`mappings[1]: items → 1, containers → 2 element(s)`."""
        if not self.steps:
            return f"mappings[{self.index}]: the document root ({self.elements} element(s))"
        return f"mappings[{self.index}]: " + ", ".join(f"{path} → {count}" for path, count in self.steps) + " element(s)"


@dataclass
class Explanation:
    """What every mapping of a target found, and a warning for each path that matched nothing."""

    mappings: list[MappingCounts] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _paths_below(node: Any, prefix: str, depth: int, found: set[str]) -> None:
    if depth == 0 or type(node) is not dict:
        return
    for key, value in node.items():
        if not isinstance(key, str):
            continue
        path = f"{prefix}.{key}" if prefix else key
        found.add(path)
        _paths_below(value, path, depth - 1, found)


def _suggestion(path: str, contexts: Iterable[Any]) -> str:
    """` (did you mean 'x'?)` with the closest path that exists in the contexts, or the keys there are."""
    candidates: set[str] = set()
    for index, node in enumerate(contexts):
        if index >= _SAMPLE:
            break
        _paths_below(node, "", _DEPTH if "." in path else 1, candidates)
    if not candidates:
        return " (the elements there are not objects)" if contexts else ""
    close = difflib.get_close_matches(path, sorted(candidates), n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    top = sorted(c for c in candidates if "." not in c)
    shown = ", ".join(top[:12]) + (", ..." if len(top) > 12 else "")
    return f" (keys there: {shown})"


def _decoded(found: Any, step: cfg.Step) -> Any:
    if step.decode_json and type(found) is str:
        try:
            return orjson.loads(found)
        except orjson.JSONDecodeError:
            return None
    return found


def _children(found: Any, step: cfg.Step) -> list[Any]:
    if found is None:
        return []
    if step.single:
        return [found]
    if type(found) is list:
        return found
    if type(found) is dict:
        return list(found.values())
    return []


def _get(getter: Any, node: Any) -> Any:
    try:
        return getter(node)
    except PathError:
        return None


def _label_paths(labels: dict[str, cfg.LabelFrom]) -> list[tuple[str, str]]:
    return [(name, spec.path) for name, spec in labels.items() if spec.path is not None and not spec.key]


def _unmatched(getter_path: str, contexts: list[Any]) -> bool:
    getter = compile_path(getter_path)
    for node in contexts:
        try:
            value = getter(node)
        except PathError:
            continue
        if value is not None and value != []:
            return False
    return True


def explain_mapping(mapping: cfg.Mapping, index: int, documents: list[Any], warnings: list[str]) -> MappingCounts:
    """Walk one mapping's steps over the documents, counting elements and warning about paths that find nothing."""
    counts = MappingCounts(index)
    where = f"mappings[{index}]"
    contexts = list(documents)
    for s_index, step in enumerate(mapping.each):
        children: list[Any] = []
        getter = compile_path(step.path)
        for node in contexts:
            children.extend(_children(_decoded(_get(getter, node), step), step))
        counts.steps.append((step.path, len(children)))
        if not children:
            if contexts:
                warnings.append(
                    f"{where}.each[{s_index}] {step.path!r} matched nothing in the document{_suggestion(step.path, contexts)}"
                )
            return counts
        for name, path in _label_paths(step.labels):
            if _unmatched(path, children):
                warnings.append(
                    f"{where}.each[{s_index}].labels.{name} {path!r} matched nothing in {len(children)} element(s)"
                    f"{_suggestion(path, children)}"
                )
        contexts = children
    counts.elements = len(contexts)
    if not contexts:
        return counts
    for name, path in _label_paths(mapping.labels):
        if _unmatched(path, contexts):
            warnings.append(f"{where}.labels.{name} {path!r} matched nothing in {len(contexts)} element(s){_suggestion(path, contexts)}")
    if mapping.labels_from is not None and _unmatched(mapping.labels_from.path, contexts):
        path = mapping.labels_from.path
        warnings.append(f"{where}.labels_from {path!r} matched nothing in {len(contexts)} element(s){_suggestion(path, contexts)}")
    for k_index, metric in enumerate(mapping.metrics):
        at = f"{where}.metrics[{k_index}]"
        if metric.value is not None and metric.default is None and _unmatched(metric.value, contexts):
            warnings.append(
                f"{at}.value {metric.value!r} ({metric.name}) matched nothing in {len(contexts)} element(s)"
                f"{_suggestion(metric.value, contexts)}"
            )
        for name, path in _label_paths(metric.labels):
            if _unmatched(path, contexts):
                warnings.append(f"{at}.labels.{name} {path!r} matched nothing in {len(contexts)} element(s){_suggestion(path, contexts)}")
    return counts


def explain(target: cfg.Target, documents: list[Any], only: Optional[Iterable[int]] = None) -> Explanation:
    """Explain every mapping of a target (or those whose index is in `only`) against the documents of one poll."""
    wanted = None if only is None else set(only)
    explanation = Explanation()
    for index, mapping in enumerate(target.mappings):
        if wanted is None or index in wanted:
            explanation.mappings.append(explain_mapping(mapping, index, documents, explanation.warnings))
    return explanation


class EmptyMappingWatch:
    """Notices a mapping that produced series before and produces none now, and explains it once per target.

    A mapping's series are those of its metric names (several mappings may share one name: then the name counts for
    each); the check is one dictionary look-up per metric per poll.
    """

    def __init__(self, target: cfg.Target) -> None:
        self.target = target
        self.names = [sorted({m.name for m in mapping.metrics}) for mapping in target.mappings]
        self.produced: set[int] = set()
        self.warned = False

    def after_poll(self, result: MapResult, documents: list[Any]) -> Optional[str]:
        """A warning to log when a mapping that produced series before produced none in this poll, else None."""
        families = result.families
        empty = []
        for index, names in enumerate(self.names):
            if any(families.get(name) for name in names):
                self.produced.add(index)
            elif index in self.produced:
                empty.append(index)
        if not empty:
            self.warned = False  # a later regression is reported again
            return None
        if self.warned:
            return None
        self.warned = True
        explanation = explain(self.target, documents, only=empty)
        found = "; ".join(explanation.warnings) or "no path is missing: the values are null or the elements gone"
        return (
            f"{', '.join(f'mappings[{i}]' for i in empty)} of {self.target.name} produced series before and none now: {found}"
        )
