"""Relabel rules on each mapped series (`metric_relabel_configs`), with Prometheus' semantics exactly.

A port of prometheus/prometheus `model/relabel/relabel.go` (validation and `relabel()`), with RE2 for the regexes as
Prometheus has (Go's regexp), anchored as `^(?s:regex)$`, and `replacement` expanded as Go's `Regexp.Expand`.
Applied at mapping time, once per sample of a target that has rules; a target without rules never reaches this module.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Callable, Optional, Union

from pydantic import Field, field_validator, model_validator

from .configtypes import Strict
from .exposition import escape_label_value, label_pairs, unescape_label_value
from .regex import Regex, RegexError

__all__ = ["RelabelConfig", "Relabeler", "RelabelError", "relabel", "expand", "ACTIONS", "PROTECTED"]

ACTIONS = (
    "replace", "keep", "drop", "keepequal", "dropequal", "hashmod", "labelmap", "labeldrop", "labelkeep",
    "lowercase", "uppercase",
)
DEFAULT_REGEX = "(.*)"
DEFAULT_REPLACEMENT = "$1"
DEFAULT_SEPARATOR = ";"
PROTECTED = ("level", "target")  # set by metrics-bridge; rules read them but never change or remove them
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_TARGET_WITH_VARIABLES = re.compile(r"^(?:(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*)+$")  # Prometheus' relabelTargetLegacy
_VARIABLE_NAME = re.compile(r"\w+")


class RelabelError(ValueError):
    """A series that relabelling left invalid: a bad metric or label name, or over a label limit."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class RelabelConfig(Strict):
    """One rule of `metric_relabel_configs`, spelled and defaulted as in Prometheus."""

    source_labels: Optional[list[str]] = None
    separator: str = DEFAULT_SEPARATOR
    regex: Optional[str] = DEFAULT_REGEX
    modulus: int = Field(default=0, ge=0, lt=2**64)
    target_label: str = ""
    replacement: str = DEFAULT_REPLACEMENT
    action: str = "replace"

    @field_validator("action", mode="before")
    @classmethod
    def _known_action(cls, action: Any) -> Any:
        if isinstance(action, str):
            if action.lower() not in ACTIONS:
                raise ValueError(f"unknown relabel action {action!r} (choose one of {', '.join(ACTIONS)})")
            return action.lower()
        return action

    @field_validator("source_labels")
    @classmethod
    def _label_names(cls, names: Optional[list[str]]) -> Optional[list[str]]:
        for name in names or ():
            if not _LABEL_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid label name")
        return names

    @field_validator("regex")
    @classmethod
    def _compiles(cls, pattern: Optional[str]) -> Optional[str]:
        try:
            Regex(_anchored(pattern or ""), full=True)
        except RegexError as exc:
            raise ValueError(str(exc).replace(repr(_anchored(pattern or "")), repr(pattern or ""))) from None
        return pattern

    @model_validator(mode="after")
    def _valid(self) -> "RelabelConfig":
        """Prometheus' Config.Validate with legacy (pre-UTF-8) label names, plus the labels metrics-bridge owns."""
        action, target, replacement = self.action, self.target_label, self.replacement
        if self.modulus == 0 and action == "hashmod":
            raise ValueError("relabel configuration for hashmod requires non-zero modulus")
        if action in ("replace", "hashmod", "lowercase", "uppercase", "keepequal", "dropequal") and not target:
            raise ValueError(f"relabel configuration for {action} action requires 'target_label' value")
        if action == "replace" and "$" not in target and not _LABEL_NAME.match(target):
            raise ValueError(f"{target!r} is invalid 'target_label' for {action} action")
        if action == "replace" and "$" in target and not _TARGET_WITH_VARIABLES.match(target):
            raise ValueError(f"{target!r} is invalid 'target_label' for {action} action")
        if action in ("lowercase", "uppercase", "keepequal", "dropequal", "hashmod") and not _LABEL_NAME.match(target):
            raise ValueError(f"{target!r} is invalid 'target_label' for {action} action")
        if action in ("lowercase", "uppercase", "keepequal", "dropequal") and replacement != DEFAULT_REPLACEMENT:
            raise ValueError(f"'replacement' can not be set for {action} action")
        if action == "labelmap" and not _TARGET_WITH_VARIABLES.match(replacement):
            raise ValueError(f"{replacement!r} is invalid 'replacement' for {action} action")
        if action in ("keepequal", "dropequal") and (
            self.regex != DEFAULT_REGEX or self.modulus or self.separator != DEFAULT_SEPARATOR
            or replacement != DEFAULT_REPLACEMENT
        ):
            raise ValueError(f"{action} action requires only 'source_labels' and `target_label`, and no other fields")
        if action in ("labeldrop", "labelkeep") and (
            self.source_labels is not None or target or self.modulus or self.separator != DEFAULT_SEPARATOR
            or replacement != DEFAULT_REPLACEMENT
        ):
            raise ValueError(f"{action} action requires only 'regex', and no other fields")
        if target in PROTECTED and action in ("replace", "hashmod", "lowercase", "uppercase"):
            raise ValueError(f"target_label {target!r} is set by metrics-bridge itself and cannot be relabelled")
        return self


def _anchored(pattern: str) -> str:
    return f"(?s:{pattern})"  # matched with both ends anchored: Prometheus' ^(?s:regex)$


def expand(template: str, groups: list[Optional[str]], names: dict[str, int]) -> str:
    """Go's Regexp.Expand: `$1`, `${1}`, `$name`, `${name}` (as long as possible), `$$`; unknown ones expand to ""."""
    if "$" not in template:
        return template
    out: list[str] = []
    rest = template
    while True:
        at = rest.find("$")
        if at < 0:
            out.append(rest)
            return "".join(out)
        out.append(rest[:at])
        rest = rest[at:]
        if rest.startswith("$$"):
            out.append("$")
            rest = rest[2:]
            continue
        name, after = _variable(rest)
        if name is None:  # malformed: the `$` is kept as text
            out.append("$")
            rest = rest[1:]
            continue
        rest = after
        index = _group_number(name)
        if index is None:
            index = names.get(name, -1)
        if 0 <= index < len(groups) and groups[index] is not None:
            out.append(groups[index])  # type: ignore[arg-type]


def _variable(text: str) -> tuple[Optional[str], str]:
    """The variable name after a `$` and the text after it, or (None, text) when there is none (Go's `extract`)."""
    if text[1:2] == "{":
        close = text.find("}", 2)
        if close < 0:
            return None, text
        name = text[2:close]
        if not name or _VARIABLE_NAME.fullmatch(name) is None:
            return None, text
        return name, text[close + 1 :]
    match = _VARIABLE_NAME.match(text, 1)
    if match is None:
        return None, text
    return match.group(), text[match.end() :]


def _group_number(name: str) -> Optional[int]:
    if not name.isdigit() or not name.isascii() or (name[0] == "0" and len(name) > 1) or len(name) > 8:
        return None
    return int(name)


class _Rule:
    """One validated rule, compiled."""

    __slots__ = ("action", "sources", "separator", "regex", "default_regex", "modulus", "target", "replacement")

    def __init__(self, config: RelabelConfig) -> None:
        self.action = config.action
        self.sources = tuple(config.source_labels or ())
        self.separator = config.separator
        pattern = config.regex or ""
        self.regex = Regex(_anchored(pattern), full=True)
        self.default_regex = pattern == DEFAULT_REGEX
        self.modulus = config.modulus
        self.target = config.target_label
        self.replacement = config.replacement


Labels = dict[str, str]


def _set(labels: Labels, name: str, value: str) -> None:
    """labels.Builder.Set: an empty value deletes the label."""
    if value:
        labels[name] = value
    else:
        labels.pop(name, None)


def _apply(rule: _Rule, labels: Labels) -> bool:
    """One rule on a label set, in place; False drops the series. `relabel()` of Prometheus' relabel.go."""
    value = rule.separator.join([labels.get(name, "") for name in rule.sources])
    action = rule.action
    if action == "drop":
        return not rule.regex.matches(value)
    if action == "keep":
        return rule.regex.matches(value)
    if action == "dropequal":
        return labels.get(rule.target, "") != value
    if action == "keepequal":
        return labels.get(rule.target, "") == value
    if action == "replace":
        if value == "" and rule.default_regex and "$" not in rule.target and "$" not in rule.replacement:
            _set(labels, rule.target, rule.replacement)  # the fast path: add or delete a constant label
            return True
        groups = rule.regex.match(value)
        if groups is None:
            return True
        names = rule.regex.groupindex
        target = expand(rule.target, groups, names)
        if not _LABEL_NAME.match(target):
            return True
        result = expand(rule.replacement, groups, names)
        if not result:
            labels.pop(target, None)
        else:
            labels[target] = result
        return True
    if action == "lowercase":
        _set(labels, rule.target, value.lower())
    elif action == "uppercase":
        _set(labels, rule.target, value.upper())
    elif action == "hashmod":
        digest = hashlib.md5(value.encode("utf-8", "surrogatepass")).digest()  # noqa: S324 - Prometheus' own choice
        _set(labels, rule.target, str(int.from_bytes(digest[8:], "big") % rule.modulus))
    elif action == "labelmap":
        for name, label_value in sorted(labels.items()):  # Builder.Range: a snapshot, in label order
            groups = rule.regex.match(name)
            if groups is not None:
                _set(labels, expand(rule.replacement, groups, rule.regex.groupindex), label_value)
    elif action == "labeldrop":
        for name in sorted(labels):
            if rule.regex.matches(name):
                del labels[name]
    elif action == "labelkeep":
        for name in sorted(labels):
            if not rule.regex.matches(name):
                del labels[name]
    return True


def relabel(labels: Labels, rules: "Union[list[_Rule], list[RelabelConfig]]") -> Optional[Labels]:
    """Apply rules in order to a copy of `labels` (with `__name__`); None when a rule drops the series."""
    compiled = [r if isinstance(r, _Rule) else _Rule(r) for r in rules]
    out = dict(labels)
    for rule in compiled:
        if not _apply(rule, out):
            return None
    return out


class Relabeler:
    """A target's rules, applied to one rendered series: (metric name, label text) → the new pair, or None (dropped).

    After the rules, `level` and `target` are put back as they were (rules cannot change or drop them), labels
    starting with `__` other than `__name__` are removed (scratch labels such as `__tmp_x`, as Prometheus removes
    them after target relabelling), and the target's label limits are checked on the result.
    """

    def __init__(self, rules: list[RelabelConfig], label_limit: int, name_limit: int, value_limit: int) -> None:
        self.rules = [_Rule(r) for r in rules]
        self.label_limit = label_limit
        self.name_limit = name_limit
        self.value_limit = value_limit

    def __call__(self, name: str, text: str) -> Optional[tuple[str, str]]:
        """Relabel one series; raise RelabelError when the result is not a valid series or breaks a label limit."""
        labels: Labels = {"__name__": name}
        for label, escaped in label_pairs(text):
            labels[label] = unescape_label_value(escaped)
        kept = {label: labels[label] for label in PROTECTED if label in labels}
        for rule in self.rules:
            if not _apply(rule, labels):
                return None
        new_name = labels.pop("__name__", "")
        if not _METRIC_NAME.match(new_name):
            raise RelabelError("mapping", f"metric_relabel_configs left {name!r} with an invalid metric name {new_name[:60]!r}")
        out = dict(kept)
        for label, value in labels.items():
            if label not in kept and not label.startswith("__"):
                if not _LABEL_NAME.match(label):
                    raise RelabelError("mapping", f"metric_relabel_configs made an invalid label name {label[:60]!r}")
                out[label] = value
        self._check_limits(new_name, out)
        return new_name, "{" + ",".join([f'{k}="{escape_label_value(v)}"' for k, v in out.items()]) + "}"

    def _check_limits(self, name: str, labels: Labels) -> None:
        if self.label_limit and len(labels) + 1 > self.label_limit:
            raise RelabelError("too_large", f"{name}: {len(labels) + 1} labels after relabelling, over label_limit ({self.label_limit})")
        for label, value in labels.items():
            if self.name_limit and len(label) > self.name_limit:
                raise RelabelError("too_large", f"label name {label[:60]!r}... is longer than label_name_length_limit ({self.name_limit})")
            if self.value_limit and len(value) > self.value_limit:
                raise RelabelError("too_large", f"label {label!r} has a value longer than label_value_length_limit ({self.value_limit})")


RelabelFunction = Callable[[str, str], Optional[tuple[str, str]]]
