"""User regexes, run by RE2: time linear in the input whatever the pattern, so no value can make a poll hang.

Python's `re` backtracks: `(a+)+$` against 27 `a`s and a `b` runs for minutes while holding the GIL, which froze the
whole process (scrapes, /healthz) in the issue 12 reproduction. RE2 never backtracks, and it is the syntax Prometheus
itself uses for relabel rules (Go's regexp is RE2), so a rule copied from a Prometheus config means the same here.
The cost is the syntax RE2 leaves out: backreferences (`\\1`) and lookarounds (`(?=`, `(?<!`), refused at load.

We call google-re2's compiled `_re2.RE2.Match` directly: its public `re2.compile(...).search` maps byte offsets back
to characters in Python and costs about 17 µs a call here, 15 times `re`; the direct call costs about 1.5 µs.
"""

from __future__ import annotations

from typing import Optional

import re2
from re2 import _re2

__all__ = ["Regex", "RegexError"]

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a bad pattern is reported as a config error, not printed on stderr by RE2
_UNANCHORED = _re2.RE2.Anchor.UNANCHORED
_BOTH = _re2.RE2.Anchor.ANCHOR_BOTH

Groups = list[Optional[str]]


class RegexError(ValueError):
    """A pattern RE2 does not accept."""


class Regex:
    """One compiled pattern; `full` anchors it at both ends (Prometheus relabel semantics), else it searches."""

    __slots__ = ("pattern", "groups", "groupindex", "_match", "_anchor")

    def __init__(self, pattern: str, full: bool = False) -> None:
        self.pattern = pattern
        compiled = _re2.RE2(pattern.encode("utf-8", "surrogatepass"), _OPTIONS)
        if not compiled.ok():
            reason = compiled.error().decode("utf-8", "replace")
            raise RegexError(f"regex {pattern!r} is not valid RE2 syntax: {reason}")
        self.groups: int = compiled.NumberOfCapturingGroups()
        self.groupindex: dict[str, int] = {name.decode(): index for name, index in compiled.NamedCapturingGroups()}
        self._match = compiled.Match
        self._anchor = _BOTH if full else _UNANCHORED

    def match(self, text: str) -> Optional[Groups]:
        """The whole match and every group (None for a group that did not take part), or None if no match."""
        if text.isascii():
            spans = self._match(self._anchor, text.encode("ascii"), 0, len(text))
            if spans[0][0] < 0:
                return None
            return [text[start:end] if start >= 0 else None for start, end in spans]
        data = text.encode("utf-8", "surrogatepass")
        spans = self._match(self._anchor, data, 0, len(data))
        if spans[0][0] < 0:
            return None
        return [data[start:end].decode("utf-8", "replace") if start >= 0 else None for start, end in spans]

    def group(self, text: str, index: int) -> Optional[str]:
        """One group's text, or None when the pattern does not match or the group took no part (the label hot path)."""
        if text.isascii():
            start, end = self._match(self._anchor, text.encode("ascii"), 0, len(text))[index]
            return text[start:end] if start >= 0 else None
        data = text.encode("utf-8", "surrogatepass")
        start, end = self._match(self._anchor, data, 0, len(data))[index]
        return data[start:end].decode("utf-8", "replace") if start >= 0 else None

    def matches(self, text: str) -> bool:
        """Whether the pattern matches `text` (searched, or whole with `full`)."""
        data = text.encode("utf-8", "surrogatepass")
        return self._match(self._anchor, data, 0, len(data))[0][0] >= 0

    def value_group(self) -> int:
        """The group a value or label is read from: one named `value`, else the first, else the whole match."""
        return self.groupindex.get("value", 1 if self.groups else 0)
