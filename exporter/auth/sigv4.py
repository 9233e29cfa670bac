"""AWS Signature Version 4, spelled like Prometheus' `sigv4` block: signs the exact request sent (method, path,
query, headers, body bytes), optionally with the temporary keys of a role assumed through STS.

Written here rather than taken from `requests-aws4auth`: that library signs a canonical query that differs from the
one it sends when a value holds a space (sent as `+`), `'` or `*`, and mutates itself on a date change (not
thread-safe). This signer first rewrites the query into its canonical form, so that what is signed is what is sent.
It is checked against botocore's SigV4Auth and AWS's published test suite (tests/test_auth_sigv4.py).
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import os
import re
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Optional
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from pydantic import SecretStr, field_validator, model_validator
from requests import PreparedRequest
from requests.auth import AuthBase

from ..configtypes import Strict, check_secret_file
from .exchange import CredentialEndpoint, Expiring
from .credentials import present, read_optional, read_required

__all__ = ["SigV4", "SigV4Auth", "Credentials", "sign", "ROLE_REFRESH_MARGIN"]

ROLE_REFRESH_MARGIN = 300.0  # assumed-role keys are renewed this long (at most half their lifetime) before they expire
ROLE_SESSION_NAME = "metrics-bridge"
ROLE_DURATION_SECONDS = 3600
# Headers that proxies and HTTP clients add or rewrite are not signed (nor are they by botocore / the AWS SDKs).
_UNSIGNED = {
    "authorization", "user-agent", "expect", "x-amzn-trace-id", "connection", "keep-alive", "accept-encoding",
    "content-length", "transfer-encoding", "te", "upgrade", "proxy-authorization",
}
_SINGLE_ENCODED_PATH = {"s3", "s3-object-lambda"}  # S3 paths are signed as sent; other services' are encoded again
_CONTENT_SHA256_HEADER = {"s3", "s3-object-lambda", "glacier"}  # services that want x-amz-content-sha256 (as aws-sdk-go)


def _env_region() -> Optional[str]:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None


class SigV4(Strict):
    """AWS Signature Version 4 request signing."""

    region: Optional[str] = None
    service: str
    access_key: Optional[str] = None
    secret_key: Optional[SecretStr] = None
    secret_key_file: Optional[str] = None
    session_token: Optional[SecretStr] = None
    session_token_file: Optional[str] = None
    role_arn: Optional[str] = None
    sts_endpoint: Optional[str] = None

    _check_files = field_validator("secret_key_file", "session_token_file")(check_secret_file)

    @field_validator("service", "region")
    @classmethod
    def _name(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not re.match(r"^[a-z0-9][a-z0-9-]*$", value):
            raise ValueError(f"{value!r}: use lower-case letters, digits and '-' (e.g. us-east-1, monitoring)")
        return value

    @field_validator("sts_endpoint")
    @classmethod
    def _http_url(cls, url: Optional[str]) -> Optional[str]:
        if url is not None and not re.match(r"^https?://[^\s/?#]+[^\s]*$", url):
            raise ValueError(f"must be an http:// or https:// URL, got {url.split('?', 1)[0][:80]!r}")
        return url

    @model_validator(mode="after")
    def _consistent(self) -> "SigV4":
        secret = self.secret_key is not None or self.secret_key_file is not None
        if self.secret_key is not None and self.secret_key_file is not None:
            raise ValueError("set secret_key or secret_key_file, not both")
        if self.session_token is not None and self.session_token_file is not None:
            raise ValueError("set session_token or session_token_file, not both")
        if self.access_key is not None and not secret:
            raise ValueError("access_key needs secret_key or secret_key_file")
        if self.access_key is None and (secret or self.session_token is not None or self.session_token_file is not None):
            raise ValueError("secret_key and session_token need access_key (without any, the AWS_* environment variables are used)")
        if self.sts_endpoint is not None and self.role_arn is None:
            raise ValueError("sts_endpoint needs role_arn")
        if self.region is None and _env_region() is None:
            raise ValueError("set region (or the AWS_REGION environment variable)")
        return self


@dataclass(frozen=True)
class Credentials:
    """One set of AWS keys."""

    access_key: str
    secret_key: str
    token: Optional[str] = None


def _normalized_path(path: str) -> str:
    """The path with `.`/`..` segments resolved and empty segments removed (RFC 3986 §5.2.4, as AWS normalises it)."""
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment not in ("", "."):
            segments.append(segment)
    normal = "/" + "/".join(segments)
    return normal + "/" if path.endswith("/") and normal != "/" else normal


def canonical_query(query: str) -> str:
    """The query's AWS canonical form: every name and value percent-encoded (RFC 3986 unreserved kept), sorted."""
    pairs = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in parse_qsl(query, keep_blank_values=True))
    return "&".join(f"{k}={v}" for k, v in pairs)


def _host(scheme: str, netloc: str) -> str:
    """The Host header http.client sends for this URL: no userinfo, no default port."""
    host = netloc.rpartition("@")[2]
    default = ":443" if scheme == "https" else ":80"
    return host[: -len(default)] if host.endswith(default) else host


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def sign(request: PreparedRequest, credentials: Credentials, region: str, service: str, now: datetime) -> PreparedRequest:
    """Sign `request` in place: its query is rewritten to canonical form, Host and X-Amz-* set, Authorization added."""
    from . import AuthFailure

    parts = urlsplit(request.url or "")
    query = canonical_query(parts.query)
    request.url = urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, ""))
    body = request.body if request.body is not None else b""
    if isinstance(body, str):
        body = request.body = body.encode("utf-8")
    if not isinstance(body, bytes):
        raise AuthFailure("sigv4 signs the body it sends, so a streamed body cannot be signed")
    payload_hash = hashlib.sha256(body).hexdigest()
    amz_date = now.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    headers = request.headers
    for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
        headers.pop(name, None)
    headers["Host"] = _host(parts.scheme, parts.netloc)
    headers["X-Amz-Date"] = amz_date
    if credentials.token:
        headers["X-Amz-Security-Token"] = credentials.token
    if service in _CONTENT_SHA256_HEADER:
        headers["X-Amz-Content-Sha256"] = payload_hash
    signed = sorted((k.lower(), " ".join(str(v).split())) for k, v in headers.items() if k.lower() not in _UNSIGNED)
    signed_names = ";".join(name for name, _ in signed)
    path = parts.path or "/"
    canonical_path = path if service in _SINGLE_ENCODED_PATH else quote(_normalized_path(path), safe="/~")
    canonical = "\n".join(
        [request.method or "GET", canonical_path, query, "".join(f"{n}:{v}\n" for n, v in signed), signed_names, payload_hash]
    )
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    string_to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode('utf-8')).hexdigest()}"
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{credentials.secret_key}".encode("utf-8"), amz_date[:8]), region), service), "aws4_request")
    signature = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    headers["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, SignedHeaders={signed_names}, Signature={signature}"
    )
    return request


class _Signer(AuthBase):
    """Signs with fixed keys (the base keys, for the STS request)."""

    def __init__(self, credentials: Credentials, region: str, service: str) -> None:
        self.credentials, self.region, self.service = credentials, region, service

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        return sign(request, self.credentials, self.region, self.service, datetime.now(timezone.utc))


def _xml_text(root: ElementTree.Element, name: str) -> Optional[str]:
    """The text of the first element named `name`, whatever its namespace."""
    for element in root.iter():
        if element.tag == name or element.tag.endswith("}" + name):
            return (element.text or "").strip()
    return None


class SigV4Auth(AuthBase):
    """Signs every request of a target; keys are read at each request (files and environment variables rotate)."""

    def __init__(self, config: SigV4, verify: Any = True, cert: Any = None) -> None:
        self.config = config
        self.region: str = config.region or _env_region() or ""
        self.service = config.service
        self.role: Expiring[Credentials] = Expiring(ROLE_REFRESH_MARGIN)
        # An API that echoes a request back would show its signature in an error message: the last ones are redacted.
        self.recent_signatures: collections.deque[str] = collections.deque(maxlen=64)
        self.endpoint = CredentialEndpoint("STS AssumeRole request", verify, cert)
        suffix = ".amazonaws.com.cn" if self.region.startswith("cn-") else ".amazonaws.com"
        self.sts_endpoint = config.sts_endpoint or f"https://sts.{self.region}{suffix}/"

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        sign(request, self.credentials(), self.region, self.service, datetime.now(timezone.utc))
        self.recent_signatures.append(request.headers["Authorization"].rpartition("Signature=")[2])
        return request

    def base_credentials(self) -> Credentials:
        """The configured keys, or else AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN."""
        from . import AuthFailure

        config = self.config
        if config.access_key is not None:
            token = read_optional(config.session_token, config.session_token_file, "session token")
            return Credentials(config.access_key, read_required(config.secret_key, config.secret_key_file, "secret key"), token)
        access, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
        if not access or not secret:
            raise AuthFailure("no AWS credentials: set access_key and secret_key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        return Credentials(access, secret, os.environ.get("AWS_SESSION_TOKEN") or None)

    def credentials(self) -> Credentials:
        """The keys that sign: the base keys, or those of the assumed role (cached until shortly before they expire)."""
        base = self.base_credentials()
        if self.config.role_arn is None:
            return base
        return self.role.get(base, lambda: self._assume_role(base))

    def _assume_role(self, base: Credentials) -> tuple[Credentials, Optional[float]]:
        """STS AssumeRole, signed with the base keys."""
        from . import AuthFailure

        form = urlencode({
            "Action": "AssumeRole", "Version": "2011-06-15", "RoleArn": self.config.role_arn,
            "RoleSessionName": ROLE_SESSION_NAME, "DurationSeconds": str(ROLE_DURATION_SECONDS),
        })
        headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8", "Accept": "text/xml"}
        answer = self.endpoint.post(self.sts_endpoint, form.encode(), headers, auth=_Signer(base, self.region, "sts"))
        try:
            root = ElementTree.fromstring(answer.body)
        except ElementTree.ParseError:
            root = None
        if not answer.ok:
            detail = " ".join(t for t in (_xml_text(root, "Code"), _xml_text(root, "Message")) if t) if root is not None else ""
            raise AuthFailure(f"STS AssumeRole failed: HTTP {answer.status}" + (f" ({detail[:200]})" if detail else ""))
        if root is None:
            raise AuthFailure("STS AssumeRole failed: the answer is not XML")
        access, secret, token = (_xml_text(root, n) for n in ("AccessKeyId", "SecretAccessKey", "SessionToken"))
        if not access or not secret:
            raise AuthFailure("STS AssumeRole failed: the answer has no Credentials")
        lifetime: Optional[float] = None
        expiration = _xml_text(root, "Expiration")
        if expiration:
            try:
                lifetime = datetime.fromisoformat(expiration.replace("Z", "+00:00")).timestamp() - time.time()
            except ValueError:
                lifetime = None
        return Credentials(access, secret, token or None), lifetime

    def secrets(self) -> list[str]:
        """The secret key and session token, those of the assumed role held now, and the latest signatures."""
        config = self.config
        found = present((config.secret_key, config.secret_key_file), (config.session_token, config.session_token_file))
        if config.access_key is None:
            found += [v for v in (os.environ.get("AWS_SECRET_ACCESS_KEY"), os.environ.get("AWS_SESSION_TOKEN")) if v]
        role = self.role.current()
        return found + ([v for v in (role.secret_key, role.token) if v] if role else []) + list(self.recent_signatures)

    def close(self) -> None:
        """Release the STS endpoint's connections."""
        self.endpoint.close()
