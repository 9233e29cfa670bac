"""Configuration: the YAML schema, `${ENV}` expansion, secrets, and loading with every problem reported at once."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union
from urllib.parse import urlsplit

import yaml
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url
from pydantic import BeforeValidator, Field, ValidationError, field_validator, model_validator

from .auth import Auth
from .configproblems import LEVEL_LABELS, cross_key_problems, field_problems, sort_by_target
from .configtypes import Bytes, PositiveSeconds, Seconds, Strict, check_secret_file, read_secret, syntax_only_files
from .convert import CONVERTERS
from .families import occupied_names, standard_collector_names
from .largepolls import DEFAULT_BYTES, DEFAULT_SLOTS
from .paths import PathError, compile_path
from .regex import Regex, RegexError
from .relabel import RelabelConfig
from .verdict import ApiErrorRule
from .templating import check_tree, sample_context

__all__ = [
    "Config",
    "ConfigError",
    "Target",
    "HttpRequest",
    "Discovery",
    "Window",
    "Mapping",
    "Metric",
    "load_config",
    "parse_config",
    "read_secret",
]

METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
RESERVED_LABELS = frozenset({"level", "target", "__name__"})
SELF_PREFIX = "metrics_bridge_"
# Per-target limits, on by default (docs/configuration.md#limits says why these numbers).
DEFAULT_SAMPLE_LIMIT = 200_000
DEFAULT_LABEL_LIMIT = 64
DEFAULT_LABEL_NAME_LENGTH_LIMIT = 256
DEFAULT_LABEL_VALUE_LENGTH_LIMIT = 1024
_TEMPLATE_SPAN = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """A configuration that cannot be used; `problems` lists each as `key.path: reason`."""

    def __init__(self, source: str, problems: list[str], environment_only: bool = False) -> None:
        self.source = source
        self.problems = problems
        self.environment_only = environment_only  # every problem is an unset variable (see parse_config's syntax_only)
        super().__init__(f"{source}: {len(problems)} problem(s)\n" + self.listing())

    def listing(self) -> str:
        """The problems, one per line (a multi-line one, such as JMESPath's caret line, indented under its first)."""
        return "\n".join("  " + p.replace("\n", "\n    ") for p in self.problems)


class TLS(Strict):
    """TLS settings for one target."""

    ca_file: Optional[str] = None
    cert_file: Optional[str] = None
    key_file: Optional[str] = None
    insecure_skip_verify: bool = False

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _readable(cls, path: Optional[str]) -> Optional[str]:
        return check_secret_file(path)

    @model_validator(mode="after")
    def _pair(self) -> "TLS":
        if self.key_file and not self.cert_file:
            raise ValueError("key_file needs cert_file")
        return self


class Retries(Strict):
    """Retries on connection errors, 5xx and 429, with exponential backoff and full jitter."""

    attempts: int = Field(default=3, ge=1, le=20)
    backoff: Seconds = 0.5
    max_backoff: Seconds = 10.0


class Pagination(Strict):
    """How to fetch the following pages of one response."""

    type: Literal["next_token", "page_number", "link_header"]
    # next_token: where the token is in the body, and where to send it back.
    next_token_path: Optional[str] = None
    token_param: Optional[str] = None
    token_body_field: Optional[str] = None
    # page_number: the page parameter, its first value, and where the total is.
    page_param: str = "page"
    first_page: int = 1
    total_pages_path: Optional[str] = None
    total_items_path: Optional[str] = None
    items_path: Optional[str] = None
    max_pages: int = Field(default=100, ge=1)

    @model_validator(mode="after")
    def _complete(self) -> "Pagination":
        if self.type == "next_token":
            if not self.next_token_path:
                raise ValueError("next_token pagination needs next_token_path")
            if bool(self.token_param) == bool(self.token_body_field):
                raise ValueError("next_token pagination needs exactly one of token_param, token_body_field")
        if self.type == "page_number":
            if not (self.total_pages_path or (self.total_items_path and self.items_path)):
                raise ValueError("page_number pagination needs total_pages_path, or total_items_path with items_path")
        return self

    @field_validator("next_token_path", "total_pages_path", "total_items_path", "items_path")
    @classmethod
    def _paths(cls, path: Optional[str]) -> Optional[str]:
        _check_path(path)
        return path


def _check_path(path: Optional[str]) -> None:
    if path is not None:
        try:
            compile_path(path)
        except PathError as exc:
            raise ValueError(str(exc)) from None


class LabelFrom(Strict):
    """A label value taken from a path, a constant, or the map key of an iteration step, optionally via a regex."""

    path: Optional[str] = None
    value: Optional[str] = None
    key: bool = False
    regex: Optional[str] = None
    default: Optional[str] = None

    @model_validator(mode="after")
    def _one_source(self) -> "LabelFrom":
        sources = [s for s in ("path", "value", "key") if getattr(self, s) not in (None, False)]
        if len(sources) != 1:
            raise ValueError("set exactly one of path, value, key")
        return self

    @field_validator("path")
    @classmethod
    def _compiles(cls, path: Optional[str]) -> Optional[str]:
        _check_path(path)
        return path

    @field_validator("regex")
    @classmethod
    def _regex(cls, pattern: Optional[str]) -> Optional[str]:
        if pattern is not None:
            _check_regex(pattern)
        return pattern


def _check_regex(pattern: str, full: bool = False) -> Regex:
    try:
        return Regex(pattern, full)
    except RegexError as exc:
        raise ValueError(str(exc)) from None


def _label_spec(value: Any) -> Any:
    if isinstance(value, str):
        return {"path": value}
    return value


LabelSpec = Annotated[LabelFrom, BeforeValidator(_label_spec)]
Labels = dict[str, LabelSpec]


def _check_label_names(labels: dict[str, Any]) -> dict[str, Any]:
    problems = []
    for name in labels:
        if not LABEL_NAME.match(name) or name.startswith("__"):
            problems.append(f"{name!r} is not a valid Prometheus label name")
        elif name in RESERVED_LABELS:
            problems.append(f"label {name!r} is set by metrics-bridge itself and cannot be configured")
    if problems:
        raise ValueError("; ".join(problems))
    return labels


class Step(Strict):
    """One iteration step: the array or map at `path`, each element becoming the context of the next step.

    `decode_json` first decodes a string holding JSON; `single` takes the value at `path` as one element instead of
    iterating it (a nested object, or a decoded JSON string, to read fields from).
    """

    path: str
    labels: Labels = {}
    decode_json: bool = False
    single: bool = False

    _names = field_validator("labels")(_check_label_names)

    @field_validator("path")
    @classmethod
    def _compiles(cls, path: str) -> str:
        _check_path(path)
        return path


def _step_spec(value: Any) -> Any:
    if isinstance(value, str):
        return {"path": value}
    return value


def _steps(value: Any) -> Any:
    if isinstance(value, (str, dict)):
        return [value]
    return value


class Latest(Strict):
    """The latest point of a time series: from a list of points, or from parallel arrays of timestamps and values."""

    points: Optional[str] = None
    timestamp: str = "timestamp"
    value: str = "value"
    timestamps: Optional[str] = None
    values: Optional[str] = None

    @model_validator(mode="after")
    def _one_shape(self) -> "Latest":
        parallel = self.timestamps is not None or self.values is not None
        if parallel == (self.points is not None):
            raise ValueError("set points (with timestamp and value inside each point), or timestamps and values")
        if parallel and (self.timestamps is None or self.values is None):
            raise ValueError("parallel arrays need both timestamps and values")
        if parallel and ("timestamp" in self.model_fields_set or "value" in self.model_fields_set):
            raise ValueError("timestamp and value are paths inside each point; with parallel arrays use timestamps and values")
        for name in ("points", "timestamp", "value", "timestamps", "values"):
            _check_path(getattr(self, name))
        return self


MetricType = Literal["gauge", "counter", "info"]
# How `aggregate` folds the array a metric's value path finds into one sample.
Aggregate = Literal["sum", "min", "max", "mean", "count"]


class Metric(Strict):
    """One metric produced by a mapping from each element it iterates."""

    name: str
    help: str = ""
    type: MetricType = "gauge"
    level: Optional[str] = None
    value: Optional[str] = None
    convert: str = "number"
    regex: Optional[str] = None
    enum: Optional[dict[str, float]] = None
    scale: float = 1.0
    default: Optional[float] = None
    aggregate: Optional[Aggregate] = None
    latest: Optional[Latest] = None
    labels: Labels = {}

    _names = field_validator("labels")(_check_label_names)

    @model_validator(mode="after")
    def _aggregate_shape(self) -> "Metric":
        if self.aggregate is not None and self.type == "info":
            raise ValueError("an info metric has no value to aggregate")
        if self.latest is not None:
            if self.type == "info":
                raise ValueError("an info metric has no value to take from a time series")
            if self.value is not None or self.aggregate is not None:
                raise ValueError("latest reads the value itself: drop value and aggregate")
        if self.aggregate == "count" and (self.convert != "number" or self.regex or self.enum or self.scale != 1.0):
            raise ValueError("aggregate: count counts the array's elements; drop convert, regex, enum and scale")
        return self

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        if not METRIC_NAME.match(name):
            raise ValueError(f"{name!r} is not a valid Prometheus metric name")
        if name.startswith(SELF_PREFIX):
            raise ValueError(f"names starting with {SELF_PREFIX!r} are reserved for the bridge's own metrics")
        return name

    @field_validator("convert")
    @classmethod
    def _known_conversion(cls, convert: str) -> str:
        if convert not in CONVERTERS:
            raise ValueError(f"unknown conversion {convert!r} (choose one of {', '.join(sorted(CONVERTERS))})")
        return convert

    @field_validator("regex")
    @classmethod
    def _regex(cls, pattern: Optional[str]) -> Optional[str]:
        if pattern is not None:
            _check_regex(pattern)
        return pattern

    @model_validator(mode="after")
    def _shape(self) -> "Metric":
        if self.type == "counter" and not self.name.endswith("_total"):
            raise ValueError(f"counter {self.name!r} must end in _total")
        if self.type != "counter" and self.name.endswith("_total"):
            raise ValueError(f"{self.name!r} ends in _total, which is for counters only (set type: counter, or rename)")
        if self.type == "info":
            if not self.name.endswith("_info"):
                raise ValueError(f"info metric {self.name!r} must end in _info")
            if self.value is not None:
                raise ValueError("an info metric has no value path: its value is always 1")
        elif self.value is None and self.latest is None:
            raise ValueError(f"{self.type} metric {self.name!r} needs a value path (or latest)")
        owned = standard_collector_names()
        taken = sorted(n for n in occupied_names(self.name, self.type) if n in owned)
        if taken:
            raise ValueError(
                f"name: {self.name!r} clashes with {owned[taken[0]]!r}, which the bridge's own process/platform/gc "
                "collectors serve (choose another name)"
            )
        return self

    @field_validator("value")
    @classmethod
    def _value_path(cls, path: Optional[str]) -> Optional[str]:
        _check_path(path)
        return path


class LabelsFrom(Strict):
    """Copy every key of the object at `path` as a label (names sanitised; `exclude` lists keys to leave out)."""

    path: str
    exclude: list[str] = []

    @field_validator("path")
    @classmethod
    def _compiles(cls, path: str) -> str:
        _check_path(path)
        return path


class Mapping(Strict):
    """A group of metrics read from the elements found by iterating `each` (outermost step first)."""

    each: Annotated[list[Annotated[Step, BeforeValidator(_step_spec)]], BeforeValidator(_steps)] = []
    level: Optional[str] = None
    labels: Labels = {}
    labels_from: Optional[Annotated[LabelsFrom, BeforeValidator(_step_spec)]] = None
    metrics: list[Metric] = Field(min_length=1)

    _names = field_validator("labels")(_check_label_names)


class Window(Strict):
    """The time window a target's templates see as `window.start` / `window.end` (see exporter/templating.py)."""

    initial_length: Optional[PositiveSeconds] = None
    max_lookback: PositiveSeconds = 3600.0
    align: Optional[PositiveSeconds] = None
    delay: Seconds = 0.0

    @model_validator(mode="after")
    def _lengths(self) -> "Window":
        if self.initial_length is not None and self.initial_length > self.max_lookback:
            raise ValueError(f"initial_length ({self.initial_length:g}s) must not exceed max_lookback ({self.max_lookback:g}s)")
        return self


class HttpRequest(Strict):
    """What one request sends: shared by a target and its discovery list, each field may hold templates."""

    url: str
    method: Literal["GET", "POST"] = "GET"
    params: dict[str, Union[str, int, float, bool]] = {}
    headers: dict[str, str] = {}
    safe_headers: list[str] = []
    body: Optional[Any] = None
    pagination: Optional[Pagination] = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        # A template stands for one URL-safe piece here; what it renders to is checked against a sample at load.
        if not re.match(r"^https?://[^\s/?#]+[^\s]*$", _TEMPLATE_SPAN.sub("x", url)):
            # Shown without user:password@ and the query string, either of which may hold a secret.
            shown = re.sub(r"^([^/]*//)?[^/@]*@", r"\1<redacted>@", url.split("?", 1)[0])
            raise ValueError(f"must be an http:// or https:// URL, got {shown[:80]!r}")
        _check_authority(url)
        return url

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, method: Any) -> Any:
        return method.upper() if isinstance(method, str) else method

    @model_validator(mode="after")
    def _body_needs_post(self) -> "HttpRequest":
        if self.body is not None and self.method != "POST":
            raise ValueError("a JSON body needs method: POST")
        return self

    def template_problems(self, where: str, context: dict[str, Any]) -> list[str]:
        """Every template of this request rendered once against a sample context: `key.path: problem` lines."""
        return [
            *check_tree(self.url, f"{where}url", context),
            *check_tree(self.params, f"{where}params", context),
            *check_tree(self.headers, f"{where}headers", context),
            *check_tree(self.body, f"{where}body", context),
        ]


class Discovery(HttpRequest):
    """A list fetched first; the target's request is then made once per item, with `item.*` in its templates."""

    each: str
    labels: Labels = {}
    concurrency: int = Field(default=4, ge=1, le=64)
    max_items: int = Field(default=100, ge=1, le=10000)

    _names = field_validator("labels")(_check_label_names)

    @field_validator("each")
    @classmethod
    def _compiles(cls, path: str) -> str:
        _check_path(path)
        return path

    @field_validator("labels")
    @classmethod
    def _no_key(cls, labels: dict[str, LabelFrom]) -> dict[str, LabelFrom]:
        keyed = [name for name, spec in labels.items() if spec.key]
        if keyed:
            raise ValueError("; ".join(f"{name}: key: true needs a map key, and a discovered item has none (use a path)" for name in keyed))
        return labels


class Target(HttpRequest):
    """One third-party endpoint and how its responses become metrics."""

    name: str = Field(max_length=128)
    secret_params: list[str] = []
    auth: Optional[Auth] = None
    tls: TLS = TLS()
    interval: PositiveSeconds = 15.0
    jitter: Seconds = 0.0
    timeout: PositiveSeconds = 10.0
    stale_after: Optional[PositiveSeconds] = None
    retries: Retries = Retries()
    accept_status: list[int] = [200]
    max_response_bytes: Bytes = 50 * 1024 * 1024
    follow_redirects: bool = True
    skip_bad_values: bool = False
    api_error: Optional[ApiErrorRule] = None
    # Prometheus' scrape limits, per poll (0 = no limit); over one, the poll fails as too_large.
    sample_limit: int = Field(default=DEFAULT_SAMPLE_LIMIT, ge=0)
    label_limit: int = Field(default=DEFAULT_LABEL_LIMIT, ge=0)
    label_name_length_limit: int = Field(default=DEFAULT_LABEL_NAME_LENGTH_LIMIT, ge=0)
    label_value_length_limit: int = Field(default=DEFAULT_LABEL_VALUE_LENGTH_LIMIT, ge=0)
    metric_relabel_configs: list[RelabelConfig] = []
    window: Window = Window()
    discovery: Optional[Discovery] = None
    labels: dict[str, str] = {}
    levels: list[str] = []
    mappings: list[Mapping] = Field(min_length=1)

    @field_validator("labels")
    @classmethod
    def _names(cls, labels: dict[str, str]) -> dict[str, str]:
        return _check_label_names(labels)

    @field_validator("name")
    @classmethod
    def _target_name(cls, name: str) -> str:
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", name):
            raise ValueError(f"{name!r}: use letters, digits, '.', '_' and '-', starting with a letter or digit")
        return name

    @model_validator(mode="after")
    def _templates(self) -> "Target":
        """Every request template renders against a sample poll context (a config error with its key path if not)."""
        initial = self.window_lengths[0]
        problems = self.template_problems("", sample_context(initial, with_item=self.discovery is not None))
        if self.discovery is not None:
            problems += self.discovery.template_problems("discovery.", sample_context(initial))
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _within_limits(self) -> "Target":
        """Labels every sample of a metric has (names, how many) must fit the label limits: no poll could succeed."""
        problems: list[str] = []
        names_limit, count_limit = self.label_name_length_limit, self.label_limit
        for m_index, mapping in enumerate(self.mappings):
            outer = [*self.labels, *(n for s in mapping.each for n in s.labels), *mapping.labels]
            for k_index, metric in enumerate(mapping.metrics):
                where = f"mappings[{m_index}].metrics[{k_index}]"
                names = ["__name__", "level", "target", *outer, *metric.labels]
                if count_limit and len(names) > count_limit:
                    problems.append(f"{where}: {metric.name!r} has {len(names)} labels (with __name__, level and target), over label_limit ({count_limit})")
                long = [n for n in names if names_limit and len(n) > names_limit]
                if long:
                    problems.append(f"{where}: label name {long[0][:40]!r}... is longer than label_name_length_limit ({names_limit})")
                if self.label_value_length_limit and len(metric.name) > self.label_value_length_limit:
                    problems.append(f"{where}: the name {metric.name!r} (the __name__ label) is longer than label_value_length_limit")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def window_lengths(self) -> tuple[float, float, Optional[float], float]:
        """The window's initial length (default: the interval), max lookback, alignment and delay, in seconds."""
        w = self.window
        initial = w.initial_length if w.initial_length is not None else min(self.interval, w.max_lookback)
        return initial, w.max_lookback, w.align, w.delay

    @property
    def effective_stale_after(self) -> float:
        """Seconds after the last success at which the served snapshot is dropped."""
        return self.stale_after if self.stale_after is not None else 3 * self.interval


def _check_authority(url: str) -> None:
    """Refuse a host or port the HTTP client cannot use, so that `check` catches what a poll would trip on."""
    authority = urlsplit_authority(url)
    if "{{" in authority:  # templated per poll: checked when rendered
        return
    hostport = authority.rsplit("@", 1)[-1]
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        if "Port" in str(exc):
            raise ValueError(f"port {hostport.rpartition(':')[2]!r} is not a number in 1-65535") from None
        raise ValueError(f"host {hostport[:80]!r} is not valid: {exc}") from None
    if port == 0:
        raise ValueError("port 0 is not a port a server listens on (use 1-65535)")
    if not parts.hostname:
        raise ValueError("the URL has no host")
    try:
        parse_url(url)
    except LocationParseError:
        raise ValueError(f"host {hostport[:80]!r} is not valid") from None


def urlsplit_authority(url: str) -> str:
    """The `user:password@host:port` part of a URL, without parsing it."""
    rest = url.split("//", 1)[-1]
    for stop in "/?#":
        rest = rest.split(stop, 1)[0]
    return rest


class Scheduler(Strict):
    """The shared poll scheduler."""

    # Deprecated, no effect: each poll has its own thread (one per target at most). Kept so old files still load.
    max_workers: Optional[int] = Field(default=None, ge=1, le=1024)
    misfire_grace_time: Optional[Seconds] = None
    # How many polls at once may hold a parsed response of large_poll_bytes or more (0: no limit); see largepolls.py.
    large_poll_concurrency: int = Field(default=DEFAULT_SLOTS, ge=0, le=1024)
    large_poll_bytes: Bytes = DEFAULT_BYTES


class Config(Strict):
    """The whole configuration file."""

    scheduler: Scheduler = Scheduler()
    targets: list[Target] = Field(min_length=1)

    @property
    def max_workers(self) -> int:
        """Poll threads: enough that hanging targets never hold up healthy ones."""
        if self.scheduler.max_workers is not None:
            return self.scheduler.max_workers
        return max(4, min(64, len(self.targets)))


def expand_env(text: str, environ: Optional[dict[str, str]] = None, keep_unset: bool = False) -> tuple[str, list[str]]:
    """Replace `${VAR}` and `${VAR:-default}`; return the text and the names of unset variables (left as written
    with `keep_unset`, else replaced by nothing)."""
    env = os.environ if environ is None else environ
    missing: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        missing.append(name)
        return match.group(0) if keep_unset else ""

    return _ENV.sub(substitute, text), missing


def _expand_tree(node: Any, path: str, problems: list[str], keep_unset: bool = False) -> Any:
    if isinstance(node, str):
        text, missing = expand_env(node, keep_unset=keep_unset)
        for name in missing:
            problems.append(f"{path or '<root>'}: environment variable {name} is not set")
        return text
    if isinstance(node, dict):
        return {k: _expand_tree(v, f"{path}.{k}" if path else str(k), problems, keep_unset) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand_tree(v, f"{path}[{i}]", problems, keep_unset) for i, v in enumerate(node)]
    return node


# Aliases may expand a document to 10 × the nodes written, or this many, whichever is more. Without a bound a
# 405-byte "billion laughs" document (nine aliases of nine) took 18 s to reject; anchors for shared blocks stay usable.
ALIAS_EXPANSION_FACTOR = 10
ALIAS_EXPANSION_FLOOR = 100_000


class _AliasBomb(Exception):
    pass


def _expanded_size(node: yaml.Node, memo: dict[int, int], open_: set[int]) -> int:
    """Nodes the document holds once every alias is expanded (counted in linear time: shared nodes are memoised)."""
    key = id(node)
    if key in memo:
        return memo[key]
    if key in open_:
        raise _AliasBomb("an alias refers to a node that contains it (a recursive document)")
    open_.add(key)
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, memo, open_) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, memo, open_) + _expanded_size(v, memo, open_) for k, v in node.value)
    open_.discard(key)
    memo[key] = size
    return size


def load_yaml(text: str) -> Any:
    """Safe-load one YAML document, refusing one whose aliases expand it beyond the budget above."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        memo: dict[int, int] = {}
        expanded = _expanded_size(node, memo, set())
        written = len(memo)
        budget = max(ALIAS_EXPANSION_FLOOR, ALIAS_EXPANSION_FACTOR * written)
        if expanded > budget:
            raise _AliasBomb(
                f"aliases expand the document to more than {budget} nodes ({written} written): "
                "write the repeated parts out, or use fewer aliases of aliases"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


def parse_config(text: str, source: str = "<config>", syntax_only: bool = False) -> Config:
    """Parse and validate YAML text; raise ConfigError listing every problem with its key path.

    `syntax_only` checks everything but the files and environment variables the config refers to: an unset
    `${VAR}` stays as written and a key holding one is not judged; secret files are not opened.
    """
    try:
        raw = load_yaml(text)
    except _AliasBomb as exc:
        raise ConfigError(source, [f"<yaml>: {exc}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        reason = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [f"<yaml> {where}: {reason}"]) from None
    if not isinstance(raw, dict):
        raise ConfigError(source, ["<root>: the file must hold a mapping with a 'targets' list"])
    unset_problems: list[str] = []
    raw = _expand_tree(raw, "", unset_problems, keep_unset=syntax_only)
    # A key already reported for an unset variable is not judged again for what was left in its place.
    unset = {p.split(": ", 1)[0] for p in unset_problems}
    problems = [] if syntax_only else list(unset_problems)
    config: Optional[Config] = None
    token = syntax_only_files.set(syntax_only)
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        problems.extend(p for p in field_problems(exc, Config) if p.split(": ", 1)[0] not in unset)
    finally:
        syntax_only_files.reset(token)
    problems.extend(p for p in cross_key_problems(raw) if p.split(": ", 1)[0] not in unset)
    if problems:
        raise ConfigError(source, sort_by_target(problems))
    if config is None:  # syntax only, and nothing wrong but what the environment would fill in
        raise ConfigError(source, unset_problems, environment_only=True)
    return config


def load_config(path: Union[str, Path], syntax_only: bool = False) -> Config:
    """Read and validate a config file; raise ConfigError listing every problem with its key path."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [f"<file>: cannot read: {getattr(exc, 'strerror', None) or exc}"]) from None
    return parse_config(text, str(path), syntax_only)
