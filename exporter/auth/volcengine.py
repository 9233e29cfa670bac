"""Volcengine (BytePlus) OpenAPI signature: `HMAC-SHA256` with a credential scope `date/region/service/request`.

Signs the method, the canonical path and query, the `host`, `x-date`, `x-content-sha256`, `content-type` and
`x-security-token` headers, and the SHA-256 of the body; the signing key is derived from the secret key, the date,
the region and the service.
"""

from __future__ import annotations

from typing import Optional

from pydantic import SecretStr, field_validator, model_validator
from requests import PreparedRequest
from requests.auth import AuthBase

from ..configtypes import Strict, check_secret_file
from .canonical import (
    Clock, body_bytes, canonical_path, hmac_sha256, query_pairs, rfc3986, sha256_hex, signed_headers, utc_now,
)
from .credentials import one_of, present, read_optional, read_required

__all__ = ["VolcengineAuth", "VolcengineSigner", "ALGORITHM", "signing_key", "canonical_request"]

ALGORITHM = "HMAC-SHA256"
_SIGNED = frozenset({"content-type", "x-date", "x-content-sha256", "x-security-token"})  # and host


class VolcengineAuth(Strict):
    """A Volcengine AccessKey pair, the region and service it signs for, and optionally an STS session token."""

    access_key_id: str
    secret_access_key: Optional[SecretStr] = None
    secret_access_key_file: Optional[str] = None
    region: str
    service: str
    session_token: Optional[SecretStr] = None
    session_token_file: Optional[str] = None

    _check_files = field_validator("secret_access_key_file", "session_token_file")(check_secret_file)

    @model_validator(mode="after")
    def _sources(self) -> "VolcengineAuth":
        one_of(self.secret_access_key, self.secret_access_key_file, "secret_access_key")
        one_of(self.session_token, self.session_token_file, "session_token", required=False)
        return self


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """HMAC(HMAC(HMAC(HMAC(secret, date), region), service), "request")."""
    key = secret.encode("utf-8")
    for part in (date, region, service, "request"):
        key = hmac_sha256(key, part)
    return key


def canonical_request(request: PreparedRequest) -> tuple[str, str]:
    """The canonical request of a request whose `X-Date` and `X-Content-Sha256` are set, and its signed header names."""
    signed = signed_headers(request, _SIGNED.__contains__)
    names = list(signed)
    query = "&".join(f"{k}={v}" for k, v in sorted((rfc3986(k), rfc3986(v)) for k, v in query_pairs(request)))
    canonical = "\n".join([
        (request.method or "GET").upper(), canonical_path(request), query,
        "".join(f"{name}:{signed[name]}\n" for name in names), ";".join(names), request.headers["X-Content-Sha256"],
    ])
    return canonical, ";".join(names)


class VolcengineSigner(AuthBase):
    """Adds `X-Date`, `X-Content-Sha256` (and `X-Security-Token`) and `Authorization: HMAC-SHA256 Credential=...`."""

    def __init__(self, config: VolcengineAuth, clock: Clock = utc_now) -> None:
        self.config, self.clock = config, clock

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        config = self.config
        secret = read_required(config.secret_access_key, config.secret_access_key_file, "secret_access_key")
        token = read_optional(config.session_token, config.session_token_file, "session_token")
        body_hash = sha256_hex(body_bytes(request))
        headers = request.headers
        date = self.clock().strftime("%Y%m%dT%H%M%SZ")
        headers["X-Date"] = date
        headers["X-Content-Sha256"] = body_hash
        if token:
            headers["X-Security-Token"] = token
        canonical, names = canonical_request(request)
        scope = f"{date[:8]}/{config.region}/{config.service}/request"
        string_to_sign = f"{ALGORITHM}\n{date}\n{scope}\n{sha256_hex(canonical.encode('utf-8'))}"
        signature = hmac_sha256(signing_key(secret, date[:8], config.region, config.service), string_to_sign).hex()
        headers["Authorization"] = (
            f"{ALGORITHM} Credential={config.access_key_id}/{scope}, SignedHeaders={names}, Signature={signature}"
        )
        return request

    def secrets(self) -> list[str]:
        """The secret key, the session token and the access key ID."""
        config = self.config
        return present(
            (config.secret_access_key, config.secret_access_key_file), (config.session_token, config.session_token_file)
        ) + [config.access_key_id]
