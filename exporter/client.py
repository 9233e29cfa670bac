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

import base64
import functools
import json
import logging
import random
import re
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Optional, Union
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urljoin, urlsplit, urlunsplit

import orjson
import requests
from requests.auth import AuthBase, HTTPBasicAuth
from requests.cookies import extract_cookies_to_jar
from requests.hooks import dispatch_hook
from requests.utils import get_auth_from_url, requote_uri

from . import __version__
from .auth import AuthFailure, auth_secrets, build_auth, within_deadline
from .config import Pagination, Target
from .deadline import WATCHDOG, DeadlineAdapter
from .gcpause import PAUSE_ABOVE_BYTES, paused_collection
from .largepolls import PollTicket, SlotTimeout
from .paths import Getter, PathError, compile_path
from .request import Request, RequestTemplate
from .templating import TemplateFailure, WindowTracker, poll_context

__all__ = ["FetchError", "FetchResult", "TargetClient", "Redactor", "REASONS"]

REASONS = (
    "timeout", "connection", "tls", "http_status", "invalid_json", "too_large", "pagination", "mapping", "auth", "api_error",
)
_SECRET_WORDS = "token|secret|passw|pwd|key|signature|auth|credential"
_SECRET_PARAM = re.compile(rf"{_SECRET_WORDS}|sig$", re.IGNORECASE)
_CHUNK = 1 << 16
_REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 10  # as Go's net/http, which Prometheus uses: the tenth redirect in a row fails the page
_DEFAULT_PORTS = {"http": 80, "https": 443}


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
    ticket: Optional[PollTicket] = field(default=None, repr=False, compare=False)  # taken before a large body is parsed


class Redactor:
    """Knows a target's secrets and removes them from any text before it is logged or shown.

    Secrets are the credentials of `auth`, secret query parameters (by name or listed in `secret_params`), the
    password in the URL, every `headers:` value not listed in `safe_headers`, and the page tokens of the poll in
    progress. Each is also masked URL-encoded and base64-encoded; any URL's userinfo password and secret-looking query
    values are masked whoever wrote them (a redirect or a `rel=next` link).
    """

    MASK = "<redacted>"

    def __init__(self, target: Target, signer: Optional[AuthBase] = None) -> None:
        self.target = target
        self.signer = signer  # the client's auth object: it knows the credentials it obtained (tokens)
        self.secret_params = {p for p in target.params if p in target.secret_params or _SECRET_PARAM.search(p)}
        safe = {name.lower() for name in target.safe_headers}
        self.secret_headers = {name for name in target.headers if name.lower() not in safe}
        self.poll_secrets: set[str] = set()
        name = r"[^=&\s#\"'<>]*"
        names = "|".join([re.escape(p) for p in target.secret_params] + [rf"{name}(?:{_SECRET_WORDS}){name}", rf"{name}sig"])
        self._query = re.compile(rf"([?&;](?:{names})=)[^&\s#\"'<>]+", re.IGNORECASE)
        self._userinfo = re.compile(r"(//[^/@\s:]*:)[^/@\s]+@")

    def secrets(self) -> list[str]:
        """Every secret value this target uses, read fresh (files can rotate), in the forms it may appear in."""
        values: list[str] = auth_secrets(self.target.auth, self.signer)
        for name in self.secret_params:
            values.append(str(self.target.params[name]))
        values += [self.target.headers[name] for name in self.secret_headers]
        values += list(self.poll_secrets)  # a copy: a discovery fan-out adds to it from several threads
        urls = [self.target.url]
        discovery = self.target.discovery
        if discovery is not None:  # the list is a second request of the same target, with secrets of its own
            values += [str(v) for k, v in discovery.params.items() if k in self.target.secret_params or _SECRET_PARAM.search(k)]
            safe = {name.lower() for name in self.target.safe_headers}
            values += [v for k, v in discovery.headers.items() if k.lower() not in safe]
            urls.append(discovery.url)
        for url in urls:
            parts = urlsplit(url)
            if parts.password:
                values.append(parts.password)
                values.append(base64.b64encode(f"{parts.username or ''}:{parts.password}".encode()).decode())
            for name, value in parse_qsl(parts.query):
                if name in self.target.secret_params or _SECRET_PARAM.search(name):
                    values.append(value)
        forms = set()
        for value in values:
            if len(value) >= 3:
                forms.update((value, quote(value, safe=""), quote_plus(value), base64.b64encode(value.encode()).decode()))
        return sorted(forms, key=len, reverse=True)

    def redact(self, text: str) -> str:
        """Replace every known secret in `text` with a mask, and secret-looking parts of any URL in it."""
        for secret in self.secrets():
            if secret in text:
                text = text.replace(secret, self.MASK)
        if "=" in text:
            text = self._query.sub(rf"\1{self.MASK}", text)
        if "@" in text:
            text = self._userinfo.sub(rf"\1{self.MASK}@", text)
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


@dataclass(frozen=True)
class _PagePaths:
    """A pagination block's paths, compiled."""

    next_token: Optional[Getter]
    total_pages: Optional[Getter]
    total_items: Optional[Getter]
    items: Optional[Getter]


@functools.lru_cache(maxsize=256)
def _page_paths(pagination: Pagination) -> _PagePaths:
    def path(expression: Optional[str]) -> Optional[Getter]:
        return _pagination_path(expression) if expression else None

    return _PagePaths(
        path(pagination.next_token_path), path(pagination.total_pages_path), path(pagination.total_items_path),
        path(pagination.items_path),
    )


def _has_more(pagination: Pagination, paths: _PagePaths, document: Any, response: requests.Response, items_seen: int, pages: int) -> bool:
    """Whether the API says another page follows the one just fetched."""
    if pagination.type == "next_token":
        return paths.next_token(document) not in (None, "", 0)  # type: ignore[misc]
    if pagination.type == "link_header":
        return bool(response.links.get("next"))
    items = paths.items(document) if paths.items else None
    if isinstance(items, list) and not items:
        return False
    try:
        if paths.total_pages is not None:
            return pages < int(paths.total_pages(document))
        return items_seen < int(paths.total_items(document))  # type: ignore[misc]
    except (TypeError, ValueError):
        return False


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


def _parse_json(body: Union[bytes, bytearray], content_type: str) -> Any:
    if not body or body.isspace():  # no .strip(): that would copy a body of up to max_response_bytes
        raise FetchError("invalid_json", "empty response body")
    with paused_collection() if len(body) > PAUSE_ABOVE_BYTES else nullcontext():
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
        self.stop = stop or threading.Event()
        self.session = requests.Session()
        # A discovery fan-out sends `concurrency` requests at once; each keeps its connection for the next poll.
        pool = max(2, target.discovery.concurrency) if target.discovery is not None else 2
        self.session.mount("http://", DeadlineAdapter(max_retries=0, pool_maxsize=pool))
        self.session.mount("https://", DeadlineAdapter(max_retries=0, pool_maxsize=pool))
        self.session.trust_env = False
        self.session.headers["User-Agent"] = f"metrics-bridge/{__version__}"
        self.session.headers["Accept"] = "application/json"
        tls = target.tls
        self.verify: Any = False if tls.insecure_skip_verify else (tls.ca_file or True)
        self.cert: Any = (tls.cert_file, tls.key_file) if tls.cert_file and tls.key_file else tls.cert_file
        self.auth = build_auth(target.auth, self.verify, self.cert)
        self.redactor = Redactor(target, self.auth)
        self._template: Optional[RequestTemplate] = None

    def close(self) -> None:
        """Release pooled connections."""
        self.session.close()
        if hasattr(self.auth, "close"):
            self.auth.close()

    def get_metrics(
        self, metric_type: Optional[str] = None, pod_name: Optional[str] = None, container_name: Optional[str] = None
    ) -> Any:
        """Perform one request with these query parameters added; return the parsed JSON or raise FetchError."""
        extra = {k: v for k, v in (("metric_type", metric_type), ("pod_name", pod_name), ("container_name", container_name)) if v is not None}
        return self.fetch(extra_params=extra, paginate=False).documents[0]

    def fetch(
        self,
        extra_params: Optional[dict[str, Any]] = None,
        paginate: bool = True,
        request: Optional[Request] = None,
        deadline: Optional[float] = None,
        new_poll: bool = True,
        ticket: Optional[PollTicket] = None,
    ) -> FetchResult:
        """Fetch every page of one request before the deadline; raise FetchError with a reason on any failure.

        `request` is the concrete request (the poller renders it from the target's templates at each poll); without
        it, the target's own request with its templates rendered for now, as on a first poll. `deadline` is a
        `time.monotonic()` value, by default the target's timeout from now. `new_poll=False`: another request of the
        poll in progress (a discovered item), which keeps the poll's page tokens redacted. `ticket`: the poll's claim on
        the large-poll gate, taken before a response of `scheduler.large_poll_bytes` or more is parsed.
        This is where every FetchError's message is redacted, whichever step raised it.
        """
        if deadline is None:
            deadline = time.monotonic() + self.target.timeout
        if new_poll:
            self.redactor.poll_secrets.clear()
        try:
            if request is None:
                request = self._default_request()
            with WATCHDOG.watch(deadline):
                return self._fetch(request, deadline, extra_params, paginate, ticket)
        except FetchError as error:
            error.args = (self.redactor.redact(str(error)),)
            raise

    def _default_request(self) -> Request:
        """The target's own request, its templates (if any) rendered for now with a first poll's window."""
        if self._template is None:
            self._template = RequestTemplate(self.target)
        if self._template.static:
            return self._template.render({})
        now = datetime.now(timezone.utc)
        window = WindowTracker(*self.target.window_lengths).next(now)
        try:
            return self._template.render(poll_context(now, window))
        except TemplateFailure as exc:
            raise FetchError("mapping", f"request template: {exc}") from None

    def _fetch(
        self, request: Request, deadline: float, extra_params: Optional[dict[str, Any]], paginate: bool, ticket: Optional[PollTicket]
    ) -> FetchResult:
        """Every page of one request, all under one byte cap and one deadline."""
        result = FetchResult(ticket=ticket)
        params: dict[str, Any] = {**request.params, **(extra_params or {})}
        body = request.body
        url = request.url
        origin = _origin(url)  # credentials go to this origin only, whatever a redirect or a rel=next link says
        pagination = request.pagination if paginate else None
        paths = _page_paths(pagination) if pagination else None
        seen: set[str] = set()
        items_seen = 0
        page = pagination.first_page if pagination else 0
        while True:
            if pagination and pagination.type == "page_number":
                params[pagination.page_param] = page
            document, response = self._request(request, url, params, body, deadline, result, origin)
            result.documents.append(document)
            if pagination is None:
                return result
            if pagination.type == "page_number":
                items = paths.items(document) if paths.items else None  # type: ignore[union-attr]
                items_seen += len(items) if isinstance(items, list) else 0
            more = _has_more(pagination, paths, document, response, items_seen, len(result.documents))  # type: ignore[arg-type]
            if more and len(result.documents) >= pagination.max_pages:
                raise FetchError("pagination", f"more than max_pages ({pagination.max_pages}) pages")
            if pagination.type == "next_token":
                token = paths.next_token(document) if paths.next_token else None  # type: ignore[union-attr]
                if token in (None, "", 0):
                    return result
                token = str(token)
                self.redactor.poll_secrets.add(token)  # opaque, and some APIs put credentials or cursors in them
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
                try:
                    url = urljoin(response.url, next_url)
                except ValueError:
                    raise FetchError("pagination", "the API's Link: rel=next is not a URL") from None
                # Cursors are as opaque as page tokens; numbers (page=2) stay readable.
                self.redactor.poll_secrets.update(v for _, v in parse_qsl(urlsplit(url).query) if not v.isdigit())
                if url in seen:
                    raise FetchError("pagination", "the API's Link: rel=next points to a page already fetched")
                seen.add(url)
                params = {}

    def _request(
        self, request: Request, url: str, params: dict[str, Any], body: Any, deadline: float, result: FetchResult, origin: tuple[str, str, int]
    ) -> tuple[Any, requests.Response]:
        """One page, with retries on connection errors, 5xx and 429, all inside the deadline."""
        target = self.target
        retries = target.retries
        attempt = 0
        while True:
            attempt += 1
            result.attempts += 1
            try:
                return self._attempt(request, url, params, body, deadline, result, origin)
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

    def _attempt(
        self, spec: Request, url: str, params: dict[str, Any], body: Any, deadline: float, result: FetchResult, origin: tuple[str, str, int]
    ) -> tuple[Any, requests.Response]:
        """One page: the request and the redirects it leads to, each hop under the byte cap and the deadline."""
        request = requests.Request(
            spec.method, url, params=params or None, json=body if spec.method == "POST" else None, headers=dict(spec.headers),
        )
        for hop in range(1, MAX_REDIRECTS + 1):
            response = self._send(request, deadline, trusted=_origin(request.url) == origin)
            with response:
                if self.target.follow_redirects and response.status_code in _REDIRECTS and response.headers.get("Location"):
                    # Closed unread: a redirect's body is never read, so it costs neither memory nor time.
                    request = self._redirected(request, response)
                    continue
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
                content = self._read(response, deadline, self.target.max_response_bytes - result.bytes)
            result.bytes += len(content)
            if result.ticket is not None:
                self._admit(result.ticket, len(content))
            return _parse_json(content, response.headers.get("Content-Type", "")), response
        raise FetchError(
            "http_status", f"stopped after {MAX_REDIRECTS} redirects (the last: HTTP {response.status_code})", response.status_code
        )

    def _admit(self, ticket: PollTicket, size: int) -> None:
        """Before parsing `size` more bytes, wait for a large-poll slot if the poll is now large; FetchError if none comes."""
        try:
            ticket.admit(size)
        except SlotTimeout as timeout:
            gate = ticket.gate
            if gate.closed:
                raise FetchError("timeout", "shutting down: the response was not parsed") from None
            raise FetchError(
                "timeout",
                f"the response was not parsed: waited {timeout.args[0]:.2f}s for a large-poll slot "
                f"({gate.slots} at a time for polls of {gate.threshold} bytes or more, this one {ticket.parsed}: "
                f"scheduler.large_poll_concurrency) until the deadline of {self.target.timeout:g}s",
            ) from None

    def _redirected(self, request: requests.Request, response: requests.Response) -> requests.Request:
        """The request a redirect asks for: 303 (and 301/302 after a POST) become a GET without a body, as browsers
        and Go do; 307 and 308 repeat the method and the body. Credentials are added, or not, when it is sent."""
        try:
            location = urljoin(response.url, requote_uri(response.headers["Location"]))
            location = urlunsplit(urlsplit(location)._replace(fragment=""))
        except ValueError:
            raise FetchError("http_status", f"HTTP {response.status_code} redirects to something that is not a URL", response.status_code) from None
        self.redactor.poll_secrets.update(v for _, v in parse_qsl(urlsplit(location).query) if not v.isdigit())
        if urlsplit(location).scheme not in _DEFAULT_PORTS:
            raise FetchError("http_status", f"HTTP {response.status_code} redirects to a URL that is not http(s)", response.status_code)
        method, data, json_body = request.method, request.data, request.json
        if response.status_code == 303 or (response.status_code in (301, 302) and method == "POST"):
            method, data, json_body = "GET", None, None
        return requests.Request(method, location, headers=request.headers, data=data, json=json_body, auth=request.auth)

    def _send(self, request: requests.Request, deadline: float, trusted: bool) -> requests.Response:
        """Send one request, bypassing requests' redirect machinery (which reads a 3xx body whole, uncapped).

        `trusted`: the request goes to the poll's origin, so it gets the credentials: `auth` (signed afresh for
        this exact request) and every configured header. Elsewhere it gets only the `safe_headers`.
        """
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError("timeout", f"deadline of {self.target.timeout:g}s exceeded before the request")
        if trusted:
            headers, auth = request.headers, within_deadline(self._credentials(), deadline)
        else:
            safe = {name.lower() for name in self.target.safe_headers}
            headers, auth = {k: v for k, v in request.headers.items() if k.lower() in safe}, None
        outgoing = requests.Request(request.method, request.url, params=request.params, headers=headers, data=request.data, json=request.json, auth=auth)
        try:
            prepared = self.session.prepare_request(outgoing)
            response = self.session.get_adapter(prepared.url).send(
                prepared, stream=True, timeout=(remaining, remaining), verify=self.verify, cert=self.cert, proxies={}
            )
        except AuthFailure as exc:
            raise FetchError("auth", str(exc)) from None
        except requests.exceptions.ConnectTimeout:  # a firewall dropping packets, or a listener that never accepts
            raise FetchError("timeout", f"no connection within {self.target.timeout:g}s (connect timeout)") from None
        except requests.exceptions.RequestException as exc:
            if time.monotonic() >= deadline or isinstance(exc, requests.exceptions.Timeout):
                # Connected, but the status line and headers did not come in time (the watchdog may have cut them).
                raise FetchError("timeout", f"no answer within {self.target.timeout:g}s (read timeout)") from None
            if isinstance(exc, requests.exceptions.SSLError):
                raise FetchError("tls", f"TLS handshake failed: {_describe(exc)}") from None
            if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.InvalidURL)):
                raise FetchError("connection", f"cannot connect: {_describe(exc)}") from None
            raise FetchError("connection", f"request failed: {_describe(exc)}") from None
        if time.monotonic() >= deadline:  # the watchdog may have cut the headers short: an EOF there ends them
            response.close()
            raise FetchError("timeout", f"no answer within {self.target.timeout:g}s (read timeout)")
        extract_cookies_to_jar(self.session.cookies, prepared, response.raw)
        return dispatch_hook("response", prepared.hooks, response)  # as Session.send does: auth objects' hooks run

    def _credentials(self) -> Optional[AuthBase]:
        """The auth for a request to the poll's origin: the target's scheme, else the URL's own user:password@."""
        if self.auth is not None:
            return self.auth
        username, password = get_auth_from_url(self.target.url)
        return HTTPBasicAuth(username, password) if username or password else None

    def _read(self, response: requests.Response, deadline: float, budget: int) -> bytearray:
        """Stream the body, decoded, until it ends, it passes what is left of the poll's byte cap, or the deadline."""
        cap = self.target.max_response_bytes
        spent = cap - budget
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > budget:
            raise FetchError("too_large", f"Content-Length {declared} exceeds max_response_bytes ({cap})" + _earlier(spent))
        buffer = bytearray()
        raw = response.raw
        try:
            while True:
                chunk = raw.read1(_CHUNK, decode_content=True)  # urllib3 >= 2.6 decodes at most _CHUNK bytes per call
                if not chunk:
                    break
                buffer += chunk
                if len(buffer) > budget:
                    raise FetchError("too_large", f"response exceeds max_response_bytes ({cap}) while streaming" + _earlier(spent))
                if time.monotonic() > deadline:
                    raise FetchError("timeout", f"body still arriving after {self.target.timeout:g}s")
        except FetchError:
            raise
        except Exception as exc:  # urllib3 raises several unrelated types for a broken body
            if time.monotonic() > deadline or "timed out" in str(exc).lower():
                raise FetchError("timeout", f"body still arriving after {self.target.timeout:g}s") from None
            raise FetchError("connection", f"connection broken while reading: {_describe(exc)}") from None
        if time.monotonic() >= deadline:  # a body that ends with the connection looks complete when the watchdog cuts it
            raise FetchError("timeout", f"body still arriving after {self.target.timeout:g}s")
        return buffer


def _earlier(spent: int) -> str:
    return f", counting the {spent} bytes of earlier pages" if spent else ""


def _origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) with the default port filled in: what must match for credentials to be sent."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
    except ValueError:
        port = -1
    return scheme, (parts.hostname or "").lower(), port
