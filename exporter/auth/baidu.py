"""Baidu AI Cloud (BCE) signature `bce-auth-v1`: `Authorization: bce-auth-v1/{ak}/{timestamp}/{expiration}/{headers}/{sig}`.

The signing key is HMAC-SHA256(SK, `bce-auth-v1/{ak}/{timestamp}/{expiration}`); the signature covers the method,
the path, the query and the `host`, `content-type` and `x-bce-*` headers. BCE does not sign the body itself, so the
signer sends `x-bce-content-sha256` (BCE's documented body digest header) and signs that.
"""

from __future__ import annotations

from typing import Optional
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from requests import PreparedRequest
from requests.auth import AuthBase

from ..configtypes import Strict, check_secret_file
from .canonical import Clock, body_bytes, host_header, hmac_sha256, query_pairs, rfc3986, sha256_hex, utc_now
from .credentials import one_of, present, read_required

__all__ = ["BaiduAuth", "BaiduSigner", "PREFIX", "signing_key", "canonical_request"]

PREFIX = "bce-auth-v1"


class BaiduAuth(Strict):
    """A Baidu AI Cloud AK/SK pair and how long each signature stays valid."""

    access_key_id: str
    secret_access_key: Optional[SecretStr] = None
    secret_access_key_file: Optional[str] = None
    expiration_seconds: int = Field(default=1800, gt=0)

    _check_file = field_validator("secret_access_key_file")(check_secret_file)

    @model_validator(mode="after")
    def _sources(self) -> "BaiduAuth":
        one_of(self.secret_access_key, self.secret_access_key_file, "secret_access_key")
        return self


def signing_key(secret: str, prefix: str) -> str:
    """HMAC-SHA256-HEX(SK, authStringPrefix), the key each signature is made with."""
    return hmac_sha256(secret.encode("utf-8"), prefix).hex()


def canonical_request(request: PreparedRequest, names: list[str]) -> str:
    """Method, encoded path, sorted encoded query and the sorted encoded headers `names` (lower-case), one per line."""
    values = {name.lower(): str(value).strip() for name, value in request.headers.items()}
    values.setdefault("host", host_header(request))
    query = sorted(f"{rfc3986(k)}={rfc3986(v)}" for k, v in query_pairs(request) if k.lower() != "authorization")
    path = rfc3986(unquote(urlsplit(request.url or "").path or "/"), safe="/~")
    return "\n".join([
        (request.method or "GET").upper(), path, "&".join(query),
        "\n".join(sorted(f"{rfc3986(name)}:{rfc3986(values[name])}" for name in names)),
    ])


class BaiduSigner(AuthBase):
    """Adds `x-bce-date`, `x-bce-content-sha256` and the `bce-auth-v1` Authorization header."""

    def __init__(self, config: BaiduAuth, clock: Clock = utc_now) -> None:
        self.config, self.clock = config, clock

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        config = self.config
        secret = read_required(config.secret_access_key, config.secret_access_key_file, "secret_access_key")
        headers = request.headers
        timestamp = self.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        headers["x-bce-date"] = timestamp
        headers["x-bce-content-sha256"] = sha256_hex(body_bytes(request))
        names = sorted({"host"} | {n for n in map(str.lower, headers) if n.startswith("x-bce-") or n == "content-type"})
        prefix = f"{PREFIX}/{config.access_key_id}/{timestamp}/{config.expiration_seconds}"
        signature = hmac_sha256(signing_key(secret, prefix).encode("ascii"), canonical_request(request, names)).hex()
        headers["Authorization"] = f"{prefix}/{';'.join(names)}/{signature}"
        return request

    def secrets(self) -> list[str]:
        """The SK and the AK."""
        config = self.config
        return present((config.secret_access_key, config.secret_access_key_file)) + [config.access_key_id]
