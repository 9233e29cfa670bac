"""Credential exchanges: a bounded form POST to a token or STS endpoint inside the poll's deadline, and a cache of
what it returns that one caller at a time refreshes."""

from __future__ import annotations

import re
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Callable, Generic, Hashable, Optional, TypeVar
from urllib.parse import urlsplit

import requests
from requests import PreparedRequest
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase

__all__ = ["within_deadline", "remaining", "Answer", "CredentialEndpoint", "Expiring", "DEFAULT_TIMEOUT", "MAX_ANSWER_BYTES"]

DEFAULT_TIMEOUT = 10.0  # a credential request made outside a poll (none is, today) gets this long
MAX_ANSWER_BYTES = 256 * 1024  # a token or STS answer is a few KiB; a bigger one is hostile

_DEADLINE: ContextVar[Optional[float]] = ContextVar("metrics_bridge_auth_deadline", default=None)
T = TypeVar("T")


class _WithinDeadline(AuthBase):
    """Runs a target's one auth object with the poll's deadline in view, so that a token fetch it makes ends in time."""

    def __init__(self, auth: AuthBase, deadline: float) -> None:
        self.auth, self.deadline = auth, deadline

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        token = _DEADLINE.set(self.deadline)
        try:
            return self.auth(request)
        finally:
            _DEADLINE.reset(token)


def within_deadline(auth: Optional[AuthBase], deadline: float) -> Optional[AuthBase]:
    """`auth` for one request of a poll whose deadline is `deadline` (a `time.monotonic()` value)."""
    return None if auth is None else _WithinDeadline(auth, deadline)


def remaining() -> float:
    """Seconds left for a credential request: what the current poll has left, or DEFAULT_TIMEOUT outside a poll."""
    deadline = _DEADLINE.get()
    return DEFAULT_TIMEOUT if deadline is None else deadline - time.monotonic()


def _failure(message: str) -> Exception:
    from . import AuthFailure

    return AuthFailure(message)


def _cause(exc: BaseException) -> str:
    """The innermost readable message of a requests/urllib3 exception."""
    while True:
        inner = getattr(exc, "reason", None)
        if not isinstance(inner, BaseException):
            inner = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else None
        if inner is None:
            break
        exc = inner
    text = re.sub(r"<[\w.]+ object at 0x[0-9a-f]+>:?\s*", "", str(exc))
    return re.sub(r"\(Caused by .*", "", text).strip()[:200] or type(exc).__name__


@dataclass(frozen=True)
class Answer:
    """A credential endpoint's answer."""

    status: int
    content_type: str
    body: bytes

    @property
    def ok(self) -> bool:
        """Whether the status is 2xx."""
        return 200 <= self.status < 300


class CredentialEndpoint:
    """POSTs forms to a credential endpoint with the target's TLS settings, no proxy from the environment, no
    redirects (they would carry credentials elsewhere), a timeout inside the poll's deadline and a cap on the answer."""

    def __init__(self, what: str, verify: Any = True, cert: Any = None) -> None:
        self.what, self.verify, self.cert = what, verify, cert
        self._session: Optional[requests.Session] = None

    @property
    def session(self) -> requests.Session:
        """The session, made at the first request (auth objects built only to list secrets never make one)."""
        if self._session is None:
            session = requests.Session()
            session.trust_env = False
            session.mount("http://", HTTPAdapter(max_retries=0, pool_maxsize=1))
            session.mount("https://", HTTPAdapter(max_retries=0, pool_maxsize=1))
            self._session = session
        return self._session

    def post(self, url: str, data: Any, headers: dict[str, str], auth: Optional[AuthBase] = None) -> Answer:
        """POST once; raise AuthFailure on a connection error, a timeout or an oversized answer."""
        timeout = remaining()
        if timeout <= 0:
            raise _failure(f"{self.what}: no time left within the poll's deadline")
        deadline = time.monotonic() + timeout
        parts = urlsplit(url)
        where = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
        try:
            with self.session.post(
                url, data=data, headers=headers, auth=auth, timeout=(timeout, timeout), verify=self.verify,
                cert=self.cert, stream=True, allow_redirects=False,
            ) as response:
                body = bytearray()
                for chunk in response.iter_content(16384):
                    body += chunk
                    if len(body) > MAX_ANSWER_BYTES:
                        raise _failure(f"{self.what} to {where}: answer exceeds {MAX_ANSWER_BYTES} bytes")
                    if time.monotonic() > deadline:
                        raise _failure(f"{self.what} to {where}: answer still arriving at the poll's deadline")
                return Answer(response.status_code, response.headers.get("Content-Type", ""), bytes(body))
        except requests.exceptions.SSLError as exc:
            raise _failure(f"{self.what} to {where} failed: TLS handshake failed: {_cause(exc)}") from None
        except requests.exceptions.Timeout:
            raise _failure(f"{self.what} to {where} timed out after {timeout:.3g}s") from None
        except requests.exceptions.RequestException as exc:
            raise _failure(f"{self.what} to {where} failed: {_cause(exc)}") from None

    def close(self) -> None:
        """Release pooled connections."""
        if self._session is not None:
            self._session.close()


class Expiring(Generic[T]):
    """A credential kept until `margin` before it expires; one caller at a time fetches it, the others wait for it.

    It is tied to the `key` it was fetched with (the client secret, the base keys): a different key (a rotated
    secret file) discards it."""

    def __init__(self, margin: float) -> None:
        self.margin = margin
        self._lock = threading.Lock()
        self._value: Optional[T] = None
        self._key: Optional[Hashable] = None
        self._refresh_at = 0.0

    def _fresh(self, key: Hashable) -> bool:
        return self._value is not None and self._key == key and time.monotonic() < self._refresh_at

    def refresh_after(self, lifetime: Optional[float]) -> float:
        """Seconds a credential living `lifetime` seconds is reused: until `margin` (at most half its life) before it
        expires; one without a lifetime is kept until it is rejected or its key changes."""
        if lifetime is None:
            return float("inf")
        return max(0.0, lifetime - min(self.margin, lifetime / 2))

    def get(self, key: Hashable, fetch: Callable[[], tuple[T, Optional[float]]]) -> T:
        """The cached value, or the one `fetch` returns (value, lifetime in seconds or None) under the lock."""
        value = self._value
        if self._fresh(key):
            return value  # type: ignore[return-value]
        if not self._lock.acquire(timeout=max(0.0, remaining())):
            raise _failure("no credential within the poll's deadline: another request of this target is still fetching it")
        try:
            if self._fresh(key):
                return self._value  # type: ignore[return-value]
            started = time.monotonic()
            value, lifetime = fetch()
            self._value, self._key = value, key
            self._refresh_at = started + self.refresh_after(lifetime)
            return value
        finally:
            self._lock.release()

    def current(self) -> Optional[T]:
        """The value held now, fresh or not (for redaction)."""
        return self._value

    def forget(self, value: T) -> None:
        """Drop `value` if it is still the one held (the API rejected it), so the next request fetches another."""
        if self._value == value:
            self._refresh_at = 0.0
