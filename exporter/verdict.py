"""The API's own verdict: a 200 body that says it is an error (`status == 'error'`) fails the poll as `api_error`."""

from __future__ import annotations

from typing import Any, Optional

import orjson
from pydantic import field_validator

from .configtypes import Strict
from .paths import Getter, PathError, compile_path

__all__ = ["ApiErrorRule", "ApiError", "Verdict", "verdict_for", "MESSAGE_CHARS"]

MESSAGE_CHARS = 300  # of the API's message shown on the status page and in the log


class ApiErrorRule(Strict):
    """The target's `api_error:` block: a JMESPath predicate on each parsed page, and where the API's message is."""

    when: str
    message: Optional[str] = None

    @field_validator("when", "message")
    @classmethod
    def _compiles(cls, path: Optional[str]) -> Optional[str]:
        if path is not None:
            if not path.strip():
                raise ValueError("an empty expression")
            try:
                compile_path(path)
            except PathError as exc:
                raise ValueError(str(exc)) from None
        return path


class ApiError(Exception):
    """A page the API itself marked as an error; the message is the API's, not yet redacted."""


def _truthy(value: Any) -> bool:
    """JMESPath truthiness: false, null and empty strings, arrays and objects are false; every number is true."""
    if value is None or value is False:
        return False
    if type(value) in (str, list, dict):
        return bool(value)
    return True


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode()
    except (orjson.JSONEncodeError, TypeError):
        return repr(value)


class Verdict:
    """A compiled `api_error` rule; `check` raises ApiError for a page the API marked as an error."""

    def __init__(self, rule: ApiErrorRule) -> None:
        self.rule = rule
        self._when: Getter = compile_path(rule.when)
        self._message: Optional[Getter] = compile_path(rule.message) if rule.message else None

    def check(self, document: Any) -> None:
        """Raise ApiError if the predicate holds on this page (a predicate that cannot be evaluated is not an error)."""
        try:
            failed = _truthy(self._when(document))
        except PathError:  # `length(errors) > 0` on a page without `errors`: the page does not say it failed
            return
        if failed:
            raise ApiError(self.message(document))

    def message(self, document: Any) -> str:
        """The API's message for a failed page, truncated, or a note that it gave none."""
        found: Any = None
        if self._message is not None:
            try:
                found = self._message(document)
            except PathError:
                found = None
        if found is None or found == "":
            return f"the API reported an error (api_error.when {self.rule.when!r} matched; no message)"
        text = _text(found)
        if len(text) > MESSAGE_CHARS:
            text = text[:MESSAGE_CHARS] + "…"
        return f"the API reported an error: {text}"


def verdict_for(rule: Optional[ApiErrorRule]) -> Optional[Verdict]:
    """A compiled verdict for a target's `api_error` block, or None when it has none."""
    return Verdict(rule) if rule is not None else None
