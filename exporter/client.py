"""HTTP client for one target: auth, TLS, a deadline over the whole poll, retries, a size cap, and pagination.

Embedding example (the classic `get_metrics(metric_type=None, pod_name=None, container_name=None)`)::

    from exporter import TargetClient, FetchError, load_config

    client = TargetClient(load_config("my.yaml").targets[0])
    try:
        document = client.get_metrics(metric_type="pod", pod_name="llm-chat-0")
    except FetchError as err:
        print(err.reason, err)       # e.g. "timeout", "connection", "http_status", "invalid_json", "too_large"
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Optional
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import orjson
import requests
from requests.adapters import HTTPAdapter

from . import __version__
from .auth import AuthFailure, auth_secrets, build_auth
from .config import Target
from .paths import Getter, PathError, compile_path

__all__ = ["FetchError", "FetchResult", "TargetClient", "Redactor", "REASONS"]

REASONS = (
    "timeout", "connection", "tls", "http_status", "invalid_json", "too_large", "pagination", "mapping", "auth", "api_error",
)
_SECRET_PARAM = re.compile(r"token|secret|passw|pwd|key|signature|sig$|auth|credential", re.IGNORECASE)
_CHUNK = 1 << 16


class _HideQueryStrings(logging.Filter):
    """urllib3 logs request URLs at DEBUG; query strings may hold secrets, so they never reach a handler."""

    _QUERY = re.compile(r"\?[^\s\"']*")

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record with query strings masked."""
        message = record.getMessage()
        if "?" in message:
            record.msg, record.args = self._QUERY.sub("?<redacted>", message), None
        return True


logging.getLogger("urllib3.connectionpool").addFilter(_HideQueryStrings())


class FetchError(Exception):
    """A failed fetch; `reason` is one of REASONS and the message never contains a secret."""

    def __init__(self, reason: str, message: str, status: Optional[int] = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status


@dataclass
class FetchResult:
    """Everything one poll fetched: the parsed pages and what the API said about time."""

    documents: list[Any] = field(default_factory=list)
    bytes: int = 0
    attempts: int = 0
    api_date: Optional[float] = None
    received_at: float = 0.0


class Redactor:
    """Knows a target's secrets and removes them from any text before it is logged or shown."""

    MASK = "<redacted>"

    def __init__(self, target: Target) -> None:
        self.target = target
        self.secret_params = {p for p in target.params if p in target.secret_params or _SECRET_PARAM.search(p)}

    def secrets(self) -> list[str]:
        """Every secret value this target uses, read fresh (files can rotate)."""
        values: list[str] = auth_secrets(self.target.auth)
        for name in self.secret_params:
            values.append(str(self.target.params[name]))
        parts = urlsplit(self.target.url)
        if parts.password:
            values.append(parts.password)
        for name, value in parse_qsl(parts.query):
            if name in self.target.secret_params or _SECRET_PARAM.search(name):
                values.append(value)
        return sorted({v for v in values if len(v) >= 3}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        """Replace every known secret in `text` with a mask."""
        for secret in self.secrets():
            if secret in text:
                text = text.replace(secret, self.MASK)
        return text

    def url(self) -> str:
        """The target URL with credentials and secret query parameters masked, plus its non-secret params."""
        parts = urlsplit(self.target.url)
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        if parts.username:
            netloc = f"{self.MASK}@{netloc}"
        query = [
            (k, self.MASK if k in self.target.secret_params or _SECRET_PARAM.search(k) else v)
            for k, v in parse_qsl(parts.query)
        ]
        query += [(k, self.MASK if k in self.secret_params else str(v)) for k, v in self.target.params.items()]
        return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe="<>"), ""))


def _describe(exc: BaseException) -> str:
    """The innermost, readable cause of a requests/urllib3 exception, without object reprs."""
    seen = set()
    cause: Optional[BaseException] = exc
    text = str(exc)
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        inner = getattr(cause, "reason", None)
        if isinstance(inner, BaseException):
            cause = inner
        elif cause.args and isinstance(cause.args[0], BaseException):
            cause = cause.args[0]
        else:
            cause = cause.__cause__ or cause.__context__
        if cause is not None:
            text = str(cause)
    text = re.sub(r"<[\w.]+ object at 0x[0-9a-f]+>:?\s*", "", text)
    text = re.sub(r"\(Caused by .*", "", text).strip()
    return text[:300] or type(exc).__name__


def _pagination_path(expression: str) -> Getter:
    """A pagination path whose failure on a page (a JMESPath function given the wrong type) fails the poll as `pagination`."""
    get = compile_path(expression)

    def read(document: Any) -> Any:
        try:
            return get(document)
        except PathError as exc:
            raise FetchError("pagination", str(exc)) from None

    return read


def _retry_after(response: requests.Response) -> Optional[float]:
    header = response.headers.get("Retry-After")
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(header).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _parse_json(body: bytes, content_type: str) -> Any:
    if not body.strip():
        raise FetchError("invalid_json", "empty response body")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        first = str(exc)
    try:
        # The standard library also reads the NaN and Infinity literals some APIs emit.
        return json.loads(body)
    except (ValueError, RecursionError):
        pass
    hint = f" (content-type {content_type.split(';')[0]})" if content_type and "json" not in content_type else ""
    raise FetchError("invalid_json", f"response is not valid JSON{hint}: {first[:200]}")


class TargetClient:
    """Performs one target's requests; thread-safe for one poll at a time, as the scheduler runs it."""

    def __init__(self, target: Target, stop: Optional[threading.Event] = None) -> None:
        self.target = target
        self.redactor = Redactor(target)
        self.stop = stop or threading.Event()
        self.session = requests.Session()
        self.session.mount("http://", HTTPAdapter(max_retries=0, pool_maxsize=2))
        self.session.mount("https://", HTTPAdapter(max_retries=0, pool_maxsize=2))
        self.session.trust_env = False
        self.session.headers["User-Agent"] = f"metrics-bridge/{__version__}"
        self.session.headers["Accept"] = "application/json"
        self.auth = build_auth(target.auth)
        tls = target.tls
        self.verify: Any = False if tls.insecure_skip_verify else (tls.ca_file or True)
        self.cert: Any = (tls.cert_file, tls.key_file) if tls.cert_file and tls.key_file else tls.cert_file
        pagination = target.pagination
        self._next_token = _pagination_path(pagination.next_token_path) if pagination and pagination.next_token_path else None
        self._total_pages = _pagination_path(pagination.total_pages_path) if pagination and pagination.total_pages_path else None
        self._total_items = _pagination_path(pagination.total_items_path) if pagination and pagination.total_items_path else None
        self._items = _pagination_path(pagination.items_path) if pagination and pagination.items_path else None

    def close(self) -> None:
        """Release pooled connections."""
        self.session.close()

    def get_metrics(
        self, metric_type: Optional[str] = None, pod_name: Optional[str] = None, container_name: Optional[str] = None
    ) -> Any:
        """Perform one request with these query parameters added; return the parsed JSON or raise FetchError."""
        extra = {k: v for k, v in (("metric_type", metric_type), ("pod_name", pod_name), ("container_name", container_name)) if v is not None}
        return self.fetch(extra_params=extra, paginate=False).documents[0]

    def fetch(self, extra_params: Optional[dict[str, Any]] = None, paginate: bool = True) -> FetchResult:
        """Fetch every page within the target's timeout; raise FetchError with a reason on any failure."""
        target = self.target
        deadline = time.monotonic() + target.timeout
        result = FetchResult()
        params: dict[str, Any] = {**target.params, **(extra_params or {})}
        body = target.body
        url = target.url
        pagination = target.pagination if paginate else None
        seen: set[str] = set()
        items_seen = 0
        page = pagination.first_page if pagination else 0
        while True:
            if pagination and pagination.type == "page_number":
                params[pagination.page_param] = page
            document, response = self._request(url, params, body, deadline, result)
            result.documents.append(document)
            if pagination is None:
                return result
            if pagination.type == "page_number":
                items = self._items(document) if self._items else None
                items_seen += len(items) if isinstance(items, list) else 0
            more = self._has_more(pagination, document, response, items_seen, len(result.documents))
            if more and len(result.documents) >= pagination.max_pages:
                raise FetchError("pagination", f"more than max_pages ({pagination.max_pages}) pages")
            if pagination.type == "next_token":
                token = self._next_token(document) if self._next_token else None  # type: ignore[misc]
                if token in (None, "", 0):
                    return result
                token = str(token)
                if token in seen:
                    raise FetchError("pagination", f"the API returned page token number {len(seen)} again (a pagination loop)")
                seen.add(token)
                if pagination.token_param:
                    params[pagination.token_param] = token
                else:
                    body = {**(body or {}), pagination.token_body_field: token}
            elif pagination.type == "page_number":
                if not more:
                    return result
                page += 1
            else:
                next_url = response.links.get("next", {}).get("url")
                if not next_url:
                    return result
                url = urljoin(response.url, next_url)
                if url in seen:
                    raise FetchError("pagination", "the API's Link: rel=next points to a page already fetched")
                seen.add(url)
                params = {}

    def _has_more(self, pagination: Any, document: Any, response: requests.Response, items_seen: int, pages: int) -> bool:
        """Whether the API says another page follows the one just fetched."""
        if pagination.type == "next_token":
            return self._next_token(document) not in (None, "", 0)  # type: ignore[misc]
        if pagination.type == "link_header":
            return bool(response.links.get("next"))
        items = self._items(document) if self._items else None
        if isinstance(items, list) and not items:
            return False
        try:
            if self._total_pages is not None:
                return pages < int(self._total_pages(document))
            return items_seen < int(self._total_items(document))  # type: ignore[misc]
        except (TypeError, ValueError):
            return False

    def _request(
        self, url: str, params: dict[str, Any], body: Any, deadline: float, result: FetchResult
    ) -> tuple[Any, requests.Response]:
        """One page, with retries on connection errors, 5xx and 429, all inside the deadline."""
        target = self.target
        retries = target.retries
        attempt = 0
        while True:
            attempt += 1
            result.attempts += 1
            try:
                return self._attempt(url, params, body, deadline, result)
            except FetchError as error:
                retryable = error.reason == "connection" or (
                    error.reason == "http_status" and error.status is not None and (error.status >= 500 or error.status == 429)
                )
                if not retryable or attempt >= retries.attempts:
                    raise
                wait = getattr(error, "retry_after", None)
                if wait is None:
                    wait = random.uniform(0, min(retries.max_backoff, retries.backoff * 2 ** (attempt - 1)))
                if time.monotonic() + wait >= deadline:
                    raise
                if self.stop.wait(wait):
                    raise

    def _attempt(self, url: str, params: dict[str, Any], body: Any, deadline: float, result: FetchResult) -> tuple[Any, requests.Response]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError("timeout", f"deadline of {self.target.timeout:g}s exceeded before the request")
        redact = self.redactor.redact
        try:
            response = self.session.request(
                self.target.method,
                url,
                params=params or None,
                json=body if self.target.method == "POST" else None,
                headers=dict(self.target.headers),
                auth=self.auth,
                timeout=(remaining, remaining),
                verify=self.verify,
                cert=self.cert,
                stream=True,
            )
        except AuthFailure as exc:
            raise FetchError("auth", redact(str(exc))) from None
        except requests.exceptions.SSLError as exc:
            raise FetchError("tls", redact(f"TLS handshake failed: {_describe(exc)}")) from None
        except requests.exceptions.ConnectTimeout:  # a firewall dropping packets, or a listener that never accepts
            raise FetchError("timeout", f"no connection within {self.target.timeout:g}s (connect timeout)") from None
        except requests.exceptions.Timeout:  # connected, but the status line and headers did not come in time
            raise FetchError("timeout", f"no answer within {self.target.timeout:g}s (read timeout)") from None
        except (requests.exceptions.ConnectionError, requests.exceptions.InvalidURL) as exc:
            raise FetchError("connection", redact(f"cannot connect: {_describe(exc)}")) from None
        except requests.exceptions.RequestException as exc:
            raise FetchError("connection", redact(f"request failed: {_describe(exc)}")) from None
        with response:
            date = response.headers.get("Date")
            if date:
                try:
                    result.api_date = parsedate_to_datetime(date).timestamp()
                    result.received_at = time.time()
                except (TypeError, ValueError):
                    pass
            if response.status_code not in self.target.accept_status:
                error = FetchError("http_status", f"HTTP {response.status_code} {response.reason or ''}".strip(), response.status_code)
                error.retry_after = _retry_after(response)  # type: ignore[attr-defined]
                raise error
            content = self._read(response, deadline)
        result.bytes += len(content)
        return _parse_json(content, response.headers.get("Content-Type", "")), response

    def _read(self, response: requests.Response, deadline: float) -> bytes:
        """Stream the body, enforcing the size cap and the deadline while reading."""
        cap = self.target.max_response_bytes
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > cap:
            raise FetchError("too_large", f"Content-Length {declared} exceeds max_response_bytes ({cap})")
        buffer = bytearray()
        raw = response.raw
        try:
            while True:
                chunk = raw.read1(_CHUNK, decode_content=True)
                if not chunk:
                    break
                buffer += chunk
                if len(buffer) > cap:
                    raise FetchError("too_large", f"response exceeds max_response_bytes ({cap}) while streaming")
                if time.monotonic() > deadline:
                    raise FetchError("timeout", f"body still arriving after {self.target.timeout:g}s")
        except FetchError:
            raise
        except Exception as exc:  # urllib3 raises several unrelated types for a broken body
            if time.monotonic() > deadline or "timed out" in str(exc).lower():
                raise FetchError("timeout", f"body still arriving after {self.target.timeout:g}s") from None
            raise FetchError("connection", self.redactor.redact(f"connection broken while reading: {_describe(exc)}")) from None
        return bytes(buffer)
