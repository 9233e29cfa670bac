"""Per-poll request templates: Jinja2 `{{ ... }}` in url, params, headers and body, rendered in a sandbox at each poll.

What a template sees (documented with examples in docs/configuration.md, "Request templates")::

    {{ now | epoch }}                                  1714564800
    {{ (now - duration('5m')) | iso_z }}               2024-05-01T11:55:00Z
    {{ now | floor('5m') | epoch_ms }}                 1714564800000
    {{ window.start | iso_space }}                     2024-05-01 11:59:00   (end of the last successful poll's window)
    {{ item.modelName | urlencode }}                   resnet-18              (with `discovery:`, one item per request)

A string without `{{`, `{%` or `{#` is not a template and is sent byte for byte as configured.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from itertools import chain, islice
from typing import Any, Callable, Iterable, Mapping, Optional, Union

from jinja2 import StrictUndefined, TemplateError, Undefined
from jinja2.nativetypes import NativeCodeGenerator
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .convert import ConversionError, parse_duration

__all__ = [
    "TemplateFailure",
    "Window",
    "WindowTracker",
    "is_template",
    "compile_tree",
    "check_tree",
    "poll_context",
    "sample_context",
]

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
FORMATS = ("epoch", "epoch_ms", "rfc3339", "iso_z", "iso_space")
_MARKERS = ("{{", "{%", "{#")


class TemplateFailure(ValueError):
    """A template that cannot be rendered: a syntax error, an unknown name or filter, or a value of the wrong kind."""


@dataclass(frozen=True)
class Window:
    """The time range one poll asks for: from the end of the last successful poll's window up to (about) now."""

    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        """The window's length in seconds."""
        return (self.end - self.start).total_seconds()


def _as_period(period: Union[str, int, float, timedelta]) -> timedelta:
    if isinstance(period, timedelta):
        return period
    try:
        return timedelta(seconds=parse_duration(period))
    except (ConversionError, TypeError) as exc:
        raise TemplateFailure(f"not a duration: {period!r} (use e.g. '30s', '5m', '1h')") from exc


def duration(text: Union[str, int, float]) -> timedelta:
    """A duration to add to or subtract from a time: `duration('5m')`, `duration('1h30m')`, `duration(90)`."""
    return _as_period(text)


def _time(value: Any, name: str) -> datetime:
    if isinstance(value, SampleItem):  # a discovered field, checked at load: its type is known only at the poll
        return EPOCH
    if isinstance(value, Undefined):
        str(value)  # StrictUndefined raises here, naming what was not defined
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
    raise TemplateFailure(
        f"{name} needs a time (now, window.start, window.end or an offset from them), got {type(value).__name__}"
    )


def floor(value: Any, period: Union[str, int, float, timedelta]) -> datetime:
    """The time rounded down to a whole period since the Unix epoch: `now | floor('5m')` → 12:05:00 at 12:07:42."""
    moment = _time(value, "floor")
    step = _as_period(period)
    if step <= timedelta(0):
        raise TemplateFailure(f"floor needs a positive period, got {period!r}")
    return moment - (moment - EPOCH) % step


def epoch(value: Any) -> int:
    """Whole seconds since the Unix epoch (rounded down)."""
    return int((_time(value, "epoch") - EPOCH) // timedelta(seconds=1))


def epoch_ms(value: Any) -> int:
    """Whole milliseconds since the Unix epoch (rounded down)."""
    return int((_time(value, "epoch_ms") - EPOCH) // timedelta(milliseconds=1))


def rfc3339(value: Any) -> str:
    """RFC 3339 in UTC, with a fraction only when the time has one: `2024-05-01T12:00:00Z`, `…T12:00:00.25Z`."""
    moment = _time(value, "rfc3339").astimezone(timezone.utc)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def iso_z(value: Any) -> str:
    """`YYYY-MM-DDTHH:MM:SSZ` in UTC, rounded down to the second."""
    return _time(value, "iso_z").astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_space(value: Any) -> str:
    """`YYYY-MM-DD HH:MM:SS` in UTC, rounded down to the second."""
    return _time(value, "iso_space").astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def strftime(value: Any, pattern: str) -> str:
    """Any other form, in UTC, by a `strftime` pattern: `now | strftime('%Y%m%d')` → 20240501."""
    return _time(value, "strftime").astimezone(timezone.utc).strftime(pattern)


def _concat(values: Iterable[Any]) -> Any:
    """A string, except that a template that is exactly one expression keeps its value's type (an epoch stays a number)."""
    head = list(islice(values, 2))
    if not head:
        return ""
    if len(head) == 1:
        return head[0]
    return "".join(str(v) for v in chain(head, values))


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox with native output: no attribute starting with `_`, no mutating a list or dict, no I/O."""

    code_generator_class = NativeCodeGenerator
    concat = staticmethod(_concat)  # type: ignore[assignment]


ENVIRONMENT = _Environment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
ENVIRONMENT.globals.clear()  # no range(), lipsum(), dict(), cycler() ...: only what a request needs
ENVIRONMENT.globals["duration"] = duration
ENVIRONMENT.filters.update(
    floor=floor, epoch=epoch, epoch_ms=epoch_ms, rfc3339=rfc3339, iso_z=iso_z, iso_space=iso_space, strftime=strftime
)


def is_template(text: str) -> bool:
    """Whether a configured string holds a template (and so is rendered at each poll)."""
    return any(marker in text for marker in _MARKERS)


def _finish(value: Any) -> Any:
    if isinstance(value, Undefined):
        str(value)  # StrictUndefined raises here with the name that was not defined
    if isinstance(value, (datetime, timedelta)):
        raise TemplateFailure(
            f"the template gives a {'time' if isinstance(value, datetime) else 'duration'}, not text: "
            f"format it with a filter ({', '.join('| ' + f for f in FORMATS)})"
        )
    return value


def _compile_string(text: str) -> Callable[[Mapping[str, Any]], Any]:
    try:
        template = ENVIRONMENT.from_string(text)
    except TemplateError as exc:
        raise TemplateFailure(_describe(exc)) from None

    def render(context: Mapping[str, Any]) -> Any:
        try:
            return _finish(template.render(context))
        except TemplateFailure:
            raise
        except (TemplateError, ArithmeticError, TypeError, ValueError, LookupError) as exc:
            raise TemplateFailure(_describe(exc)) from None

    return render


def _describe(exc: BaseException) -> str:
    line = getattr(exc, "lineno", None)
    text = str(exc).strip() or type(exc).__name__
    if text == "'item' is undefined":
        text += " (item.* exists only in the requests of a target with discovery:)"
    kind = "syntax error" if type(exc).__name__ == "TemplateSyntaxError" else "template"
    return f"{kind}{f' at line {line}' if line and line > 1 else ''}: {text}"


Renderer = Callable[[Mapping[str, Any]], Any]


def compile_tree(node: Any) -> Optional[Renderer]:
    """Compile every template string in a config value (a string, or a dict/list nesting them) once.

    Returns None when the value holds no template (it is then sent exactly as configured), else a function from a
    template context to the rendered value. Raises TemplateFailure on the first template that does not compile.
    """
    if isinstance(node, str):
        return _compile_string(node) if is_template(node) else None
    if isinstance(node, dict):
        parts = {key: compile_tree(value) for key, value in node.items()}
        if all(part is None for part in parts.values()):
            return None
        return lambda context: {
            key: (part(context) if part is not None else node[key]) for key, part in parts.items()
        }
    if isinstance(node, list):
        items = [compile_tree(value) for value in node]
        if all(item is None for item in items):
            return None
        return lambda context: [item(context) if item is not None else node[i] for i, item in enumerate(items)]
    return None


def check_tree(node: Any, where: str, context: Mapping[str, Any]) -> list[str]:
    """Compile and render every template in a config value against a sample context; return `key.path: problem` lines."""
    if isinstance(node, str):
        if not is_template(node):
            return []
        try:
            _compile_string(node)(context)
        except TemplateFailure as exc:
            return [f"{where}: {exc}"]
        return []
    if isinstance(node, dict):
        return [p for key, value in node.items() for p in check_tree(value, f"{where}.{key}", context)]
    if isinstance(node, list):
        return [p for i, value in enumerate(node) for p in check_tree(value, f"{where}[{i}]", context)]
    return []


class SampleItem:
    """Stands in for a discovered item when templates are checked at load: every field exists and reads as `sample`."""

    def __getattr__(self, name: str) -> "SampleItem":
        if name.startswith("_"):
            raise AttributeError(name)
        return self

    def __getitem__(self, key: Any) -> "SampleItem":
        return self

    def __str__(self) -> str:
        return "sample"

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(())


def poll_context(now: datetime, window: Window, item: Any = None, with_item: bool = False) -> dict[str, Any]:
    """The names a template sees at one poll: `now`, `window` and, with discovery, the `item`."""
    context: dict[str, Any] = {"now": now, "window": window}
    if with_item:
        context["item"] = item
    return context


def sample_context(initial_length: float, with_item: bool = False) -> dict[str, Any]:
    """A context like a first poll's, for checking templates when the config is loaded."""
    now = datetime.now(timezone.utc)
    window = Window(now - timedelta(seconds=initial_length), now)
    return poll_context(now, window, SampleItem(), with_item)


class WindowTracker:
    """Each poll's window: it starts where the last successful poll's window ended, so none overlap and none leave gaps.

    The end is now, less `delay`, rounded down to `align`. The first poll (and the first after a restart) looks back
    `initial_length`; after an outage the window reaches back at most `max_lookback`. The end never moves backwards
    (a stepped clock, or an aligned end not yet past the start, gives an empty window at the last end).
    """

    def __init__(self, initial_length: float, max_lookback: float, align: Optional[float] = None, delay: float = 0.0) -> None:
        self.initial_length = timedelta(seconds=initial_length)
        self.max_lookback = timedelta(seconds=max_lookback)
        self.align = timedelta(seconds=align) if align else None
        self.delay = timedelta(seconds=delay)
        self.last_end: Optional[datetime] = None

    def next(self, now: datetime) -> Window:
        """The window the poll starting `now` asks for."""
        end = now - self.delay
        if self.align is not None:
            end = floor(end, self.align)
        if self.last_end is None:
            start = end - self.initial_length
        else:
            start = self.last_end
            end = max(end, start)
        return Window(max(start, end - self.max_lookback), end)

    def advance(self, window: Window) -> None:
        """Record a successful poll: the next window starts where this one ended."""
        self.last_end = window.end
