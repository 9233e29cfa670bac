"""Canonical request parts for the cloud signers: a PreparedRequest as the server will read it, and its encodings."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timezone
from typing import Callable
from urllib.parse import parse_qsl, quote, unquote, urlsplit
from uuid import uuid4

from requests import PreparedRequest


__all__ = [
    "Clock", "Nonce", "utc_now", "random_nonce", "rfc3986", "canonical_path", "query_pairs", "host_header", "signed_headers",
    "body_bytes", "sha256_hex", "hmac_sha256",
]

Clock = Callable[[], datetime]
Nonce = Callable[[], str]
_DEFAULT_PORTS = {"http": 80, "https": 443}


def utc_now() -> datetime:
    """The current time in UTC (signers take a clock so tests can fix it)."""
    return datetime.now(timezone.utc)


def random_nonce() -> str:
    """A fresh random nonce: 32 hex digits."""
    return uuid4().hex


def rfc3986(text: str, safe: str = "~") -> str:
    """Percent-encode every byte of the UTF-8 text except RFC 3986 unreserved characters (and `safe`)."""
    return quote(text, safe=safe)


def canonical_path(request: PreparedRequest) -> str:
    """The URL path decoded and encoded again per RFC 3986 with `/` kept, as a server canonicalises it; `/` if empty."""
    path = urlsplit(request.url or "").path or "/"
    return rfc3986(unquote(path), safe="/~")


def query_pairs(request: PreparedRequest) -> list[tuple[str, str]]:
    """The query parameters as the server decodes them (`+` is a space), blank values kept, in order."""
    return parse_qsl(urlsplit(request.url or "").query, keep_blank_values=True)


def host_header(request: PreparedRequest) -> str:
    """The Host header urllib3 sends for this URL: the lower-cased host, and the port unless it is the default."""
    parts = urlsplit(request.url or "")
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        host += f":{parts.port}"
    return host


def signed_headers(request: PreparedRequest, keep: Callable[[str], bool]) -> dict[str, str]:
    """`host` (as configured, or as urllib3 sends it) and the headers `keep` accepts: lower-cased, trimmed, sorted."""
    signed = {"host": str(request.headers.get("Host") or host_header(request)).strip()}
    for name, value in request.headers.items():
        if keep(name.lower()):
            signed[name.lower()] = str(value).strip()
    return dict(sorted(signed.items()))


def body_bytes(request: PreparedRequest) -> bytes:
    """The exact body bytes about to be sent (a streamed body cannot be signed)."""
    from . import AuthFailure

    body = request.body
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    raise AuthFailure("a streamed request body cannot be signed")


def sha256_hex(data: bytes) -> str:
    """Lower-case hex SHA-256."""
    return hashlib.sha256(data).hexdigest()


def hmac_sha256(key: bytes, message: str) -> bytes:
    """HMAC-SHA256 of a UTF-8 message."""
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()
