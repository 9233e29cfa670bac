"""Every problem of a config file as `key.path: reason`: pydantic's field errors in plain words, and the checks
that span keys (levels, labels, timeouts, metric families), run on the raw data so they are reported together with
the field errors of the same pass rather than only once every field is valid."""

from __future__ import annotations

import difflib
import re
import typing
from typing import Any, Iterable, Optional

from pydantic import BaseModel, TypeAdapter, ValidationError

from .families import occupied_names

__all__ = ["field_problems", "cross_key_problems", "LEVEL_LABELS", "sort_by_target"]

_TYPES = ("gauge", "counter", "info")
LEVEL_LABELS: dict[str, tuple[str, ...]] = {"service": (), "pod": ("pod",), "container": ("pod", "container")}


# --- pydantic errors → problems --------------------------------------------------------------------------------


def _unwrap(annotation: Any) -> Any:
    """Strip Annotated and Optional from a type annotation."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin is typing.Union:
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            models = [a for a in args if isinstance(_unwrap(a), type) and issubclass(_unwrap(a), BaseModel)]
            annotation = models[0] if models else args[0]
        else:
            return annotation


def _model_at(root: type[BaseModel], loc: Iterable[Any]) -> Optional[type[BaseModel]]:
    """The config block (model class) found by following a pydantic error location from the root, if any."""
    current: Any = root
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None
            current = field.annotation
        elif typing.get_origin(current) in (list, tuple) and isinstance(part, int):
            current = typing.get_args(current)[0]
        elif typing.get_origin(current) is dict and isinstance(part, str):
            current = typing.get_args(current)[1]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _loc(parts: tuple[Any, ...]) -> str:
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif str(part).startswith(("function-", "function_")) or part in ("str", "int", "float", "bool", "dict[str,...]"):
            continue
        else:
            text += f".{part}" if text else str(part)
    return text


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest of `choices`, or ""."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


_KINDS = {dict: "a mapping", list: "a list", str: "a string", int: "a number", float: "a number", bool: "true/false"}


def _kind(value: Any) -> str:
    return "nothing" if value is None else _KINDS.get(type(value), type(value).__name__)


def _message(item: dict[str, Any], root: type[BaseModel]) -> str:
    """One pydantic error in the words of the config file, without library class names."""
    kind, loc = item["type"], tuple(item["loc"])
    if kind == "extra_forbidden":
        block = _model_at(root, loc[:-1])
        known = [name for name in block.model_fields] if block is not None else []
        hint = did_you_mean(str(loc[-1]), known)
        return f"unknown key{hint}" if hint or not known else f"unknown key (valid here: {', '.join(known)})"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        block = _model_at(root, loc)
        keys = f" with keys {', '.join(block.model_fields)}" if block is not None else ""
        return f"must be a mapping{keys}, got {_kind(item.get('input'))}"
    if kind == "missing":
        return "required key missing"
    if kind == "too_short":
        minimum = (item.get("ctx") or {}).get("min_length", 1)
        return "must not be empty" if minimum == 1 else f"must have at least {minimum} items"
    message = str(item["msg"]).removeprefix("Value error, ")
    if message.startswith("Input should be "):
        message = "must be " + message.removeprefix("Input should be ")
        if kind == "literal_error":  # the choices of a fixed list (method, type, ...): never a secret
            message += f", got {item.get('input')!r}"
        elif kind.endswith("_type"):
            message += f", got {_kind(item.get('input'))}"
    return message


_RELATIVE = re.compile(r"^[A-Za-z_][\w.\[\]-]*: ")  # header names (X-Date) are key path parts too


def field_problems(error: ValidationError, root: type[BaseModel]) -> list[str]:
    """Every field error of one validation, as `key.path: reason` (a `; `-joined value error split into several)."""
    problems = []
    for item in error.errors(include_url=False):
        where = _loc(tuple(item["loc"]))
        message = _message(item, root)
        parts = message.split("; ") if item["type"] == "value_error" and "\n" not in message else [message]
        for part in parts:
            if _RELATIVE.match(part):
                problems.append(f"{where}.{part}" if where else part)
            else:
                problems.append(f"{where or '<root>'}: {part}")
    return problems


def sort_by_target(problems: list[str]) -> list[str]:
    """Group problems by target (stable: within a target, in the order found); top-level ones first."""

    def key(problem: str) -> int:
        match = re.match(r"targets\[(\d+)\]", problem)
        return int(match.group(1)) if match else -1

    return sorted(problems, key=key)


# --- checks across keys, on the raw (env-expanded) data ---------------------------------------------------------


def _seconds(raw: dict[str, Any], key: str, default: float) -> Optional[float]:
    from .configtypes import Seconds

    if key not in raw:
        return default
    try:
        return TypeAdapter(Seconds).validate_python(raw[key])
    except ValidationError:
        return None  # reported as a field error


def _names(labels: Any) -> list[str]:
    return [str(name) for name in labels] if isinstance(labels, dict) else []


def _steps(each: Any) -> list[dict[str, Any]]:
    if isinstance(each, (str, dict)):
        each = [each]
    if not isinstance(each, list):
        return []
    return [{"path": s} if isinstance(s, str) else s for s in each if isinstance(s, (str, dict))]


def _claim(taken: dict[str, str], labels: list[str], where: str, problems: list[str]) -> dict[str, str]:
    """Return where each of `labels` is set, adding a problem for any name already set at an enclosing level."""
    claimed = {}
    for name in labels:
        if name in taken:
            problems.append(f"{where}.{name}: label {name!r} is already set at {taken[name]}")
        claimed[name] = f"{where}.{name}"
    return claimed


def target_problems(raw: dict[str, Any], where: str) -> list[str]:
    """The checks of one target that span keys: timeout and jitter against interval, safe_headers, levels, labels.

    (A body without POST is checked by the request model itself, which discovery's request shares.)
    """
    problems: list[str] = []
    interval, timeout, jitter = _seconds(raw, "interval", 15.0), _seconds(raw, "timeout", 10.0), _seconds(raw, "jitter", 0.0)
    if interval is not None and interval > 0:
        if timeout is not None and timeout > interval:
            problems.append(f"{where}.timeout: timeout ({timeout:g}s) must not exceed interval ({interval:g}s)")
        if jitter is not None and jitter >= interval:
            problems.append(f"{where}.jitter: jitter ({jitter:g}s) must be shorter than interval ({interval:g}s)")
    headers, safe = raw.get("headers"), raw.get("safe_headers")
    if isinstance(safe, list):
        configured = {str(name).lower() for name in headers} if isinstance(headers, dict) else set()
        problems += [f"{where}.safe_headers: {name!r} is not one of headers" for name in safe if str(name).lower() not in configured]
    declared = [str(level) for level in raw.get("levels") or [] if isinstance(level, str)] if isinstance(raw.get("levels"), list) else []
    known_levels = list(LEVEL_LABELS) + [level for level in declared if level not in LEVEL_LABELS]
    mappings = raw.get("mappings")
    for m_index, mapping in enumerate(mappings if isinstance(mappings, list) else []):
        if not isinstance(mapping, dict):
            continue
        here = f"mappings[{m_index}]"
        sources: dict[str, str] = {n: f"labels.{n}" for n in _names(raw.get("labels"))}
        discovery = raw.get("discovery")
        if isinstance(discovery, dict):  # an item's labels are on every series of that item
            sources.update(_claim(sources, _names(discovery.get("labels")), "discovery.labels", problems if m_index == 0 else []))
        for s_index, step in enumerate(_steps(mapping.get("each", []))):
            sources.update(_claim(sources, _names(step.get("labels")), f"{here}.each[{s_index}].labels", problems))
        sources.update(_claim(sources, _names(mapping.get("labels")), f"{here}.labels", problems))
        outer = set(sources)
        mapping_level = mapping.get("level")
        level_reported = False
        metrics = mapping.get("metrics")
        for k_index, metric in enumerate(metrics if isinstance(metrics, list) else []):
            if not isinstance(metric, dict):
                continue
            at = f"{here}.metrics[{k_index}]"
            own = _names(metric.get("labels"))
            _claim(sources, own, f"{at}.labels", problems)
            level = metric.get("level") or mapping_level
            if level is None:
                problems.append(f"{at}: no level (set it on the metric or its mapping)")
                continue
            if not isinstance(level, str):
                continue  # a field error
            if level not in known_levels:
                if metric.get("level") or not level_reported:
                    key = f"{at}.level" if metric.get("level") else f"{here}.level"
                    problems.append(
                        f"{key}: unknown level {level!r}{did_you_mean(level, known_levels)}; choose one of "
                        f"{', '.join(known_levels)}, or declare it in the target's levels"
                    )
                    level_reported = level_reported or not metric.get("level")
                continue
            missing = [n for n in LEVEL_LABELS.get(level, ()) if n not in outer and n not in own]
            if missing and mapping.get("labels_from") is None:  # copied labels are checked per sample instead
                problems.append(f"{at}: {level}-level metric {metric.get('name')!r} needs label(s) {', '.join(missing)}")
    return [f"{where}.{p}" if p.startswith(("mappings[", "discovery.")) else p for p in problems]


def cross_key_problems(raw: dict[str, Any]) -> list[str]:
    """Every check that spans keys, for every target, and across targets (unique names, one type per metric name,
    no two families claiming one exposition name)."""
    problems: list[str] = []
    targets = raw.get("targets")
    targets = targets if isinstance(targets, list) else []
    seen: dict[str, int] = {}
    families: dict[str, tuple[str, str, str]] = {}
    occupied: dict[str, tuple[str, str]] = {}  # exposition name → (metric name, where) of the first to occupy it
    for t_index, target in enumerate(targets):
        if not isinstance(target, dict):
            continue
        where = f"targets[{t_index}]"
        name = target.get("name")
        if isinstance(name, str):
            if name in seen:
                problems.append(f"{where}.name: duplicate target name {name!r} (first at targets[{seen[name]}])")
            seen.setdefault(name, t_index)
        problems.extend(target_problems(target, where))
        mappings = target.get("mappings")
        for m_index, mapping in enumerate(mappings if isinstance(mappings, list) else []):
            metrics = mapping.get("metrics") if isinstance(mapping, dict) else None
            for k_index, metric in enumerate(metrics if isinstance(metrics, list) else []):
                if not isinstance(metric, dict) or not isinstance(metric.get("name"), str):
                    continue
                at = f"{where}.mappings[{m_index}].metrics[{k_index}]"
                name, kind, help_text = metric["name"], str(metric.get("type", "gauge")), str(metric.get("help", ""))
                first = families.setdefault(name, (kind, help_text, at))
                if first[0] != kind:
                    problems.append(f"{at}.type: {name!r} is of type {kind} here but {first[0]} at {first[2]}")
                    continue
                if first[1] != help_text and help_text and first[1]:
                    problems.append(f"{at}.help: {name!r} has a different help text at {first[2]}")
                if kind not in _TYPES:
                    continue  # a field error
                names = occupied_names(name, kind)
                clashes: dict[tuple[str, str], str] = {}
                for taken in sorted(names):
                    if taken in occupied and occupied[taken][0] != name:
                        clashes.setdefault(occupied[taken], taken)
                for (other, other_at), taken in clashes.items():
                    problems.append(
                        f"{at}.name: {name!r} ({kind}) clashes with {other!r} at {other_at}: "
                        f"in OpenMetrics both claim {taken!r}, which Prometheus rejects (rename one)"
                    )
                for taken in names:
                    occupied.setdefault(taken, (name, at))
    return problems
