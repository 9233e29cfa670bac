"""Path expressions: JMESPath, with plain dotted paths compiled to direct dictionary look-ups.

Most mapping paths are plain field chains (`metadata.name`, `usage.cpu`). Running those through JMESPath costs a
tree-walk per element; compiled to a chain of `dict.get` they are several times faster, which matters at 200k series
per poll. Everything else (filters, projections, functions) goes to compiled JMESPath, which is still about ten times
faster than the JSONPath libraries on a 5 MB document.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Optional

import jmespath
from jmespath.exceptions import IncompleteExpressionError, JMESPathError, LexerError, ParseError

__all__ = ["PathError", "compile_path", "field_keys", "Getter"]

Getter = Callable[[Any], Any]

_SEGMENT = r'(?:[A-Za-z_][A-Za-z0-9_]*|"(?:[^"\\]|\\.)*")'
_SIMPLE = re.compile(rf"^{_SEGMENT}(?:\.{_SEGMENT})*$")


class PathError(ValueError):
    """A path expression that does not compile, or a JMESPath function given a value of the wrong type."""


def _unquote(segment: str) -> str:
    if segment.startswith('"'):
        return segment[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return segment


def _split(expression: str) -> list[str]:
    return [_unquote(s) for s in re.findall(_SEGMENT, expression)]


def _field_chain(keys: list[str]) -> Getter:
    if len(keys) == 1:
        (key,) = keys

        def get_one(node: Any) -> Any:
            return node.get(key) if type(node) is dict else None

        return get_one
    if len(keys) == 2:
        first, second = keys

        def get_two(node: Any) -> Any:
            if type(node) is dict:
                node = node.get(first)
                if type(node) is dict:
                    return node.get(second)
            return None

        return get_two

    def get_many(node: Any) -> Any:
        for key in keys:
            if type(node) is not dict:
                return None
            node = node.get(key)
        return node

    return get_many


def _identity(node: Any) -> Any:
    return node


def _syntax_error(expression: str, exc: JMESPathError) -> str:
    """JMESPath's complaint in a sentence, with the expression and a caret under the place it stopped."""
    position = getattr(exc, "lex_position", None)
    if isinstance(exc, IncompleteExpressionError):
        reason = "the expression is incomplete"
    elif isinstance(exc, LexerError):
        reason = str(exc.message)[:1].lower() + str(exc.message)[1:]
    elif isinstance(exc, ParseError):
        reason = f"unexpected {exc.token_value!r} at column {(position or 0) + 1}"
    else:
        reason, position = (str(exc).splitlines() or [type(exc).__name__])[0], None
    caret = f"\n{expression}\n{' ' * position}^" if isinstance(position, int) and 0 <= position <= len(expression) else ""
    return f"invalid JMESPath expression: {reason}{caret}"


def field_keys(expression: str) -> Optional[tuple[str, ...]]:
    """The keys of a plain field chain (`() ` for `@` or ""), or None for a path that needs JMESPath."""
    expression = expression.strip()
    if expression in ("@", ""):
        return ()
    if _SIMPLE.match(expression):
        return tuple(_split(expression))
    return None


def compile_path(expression: str) -> Getter:
    """Compile a path into a function of one JSON node; a missing field yields None."""
    expression = expression.strip()
    if expression in ("@", ""):
        return _identity
    if _SIMPLE.match(expression):
        return _field_chain(_split(expression))
    try:
        compiled = jmespath.compile(expression)
    except JMESPathError as exc:
        raise PathError(_syntax_error(expression, exc)) from None
    search = compiled.search

    def get(node: Any) -> Any:
        try:
            return search(node)
        except JMESPathError as exc:  # `length(name)` on a null name: the document does not fit the path
            raise PathError(f"path {expression!r} failed on the document: {str(exc)[:200]}") from None

    return get
