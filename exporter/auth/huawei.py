"""Huawei Cloud AK/SK signature (`SDK-HMAC-SHA256`), as API Gateway and the cloud services' endpoints verify it.

Signs the method, the path (ending in `/` for signing only), the sorted query, the `host`, `x-sdk-date`,
`content-type`, `x-project-id` and `x-security-token` headers, and the SHA-256 of the body.
"""

from __future__ import annotations

from typing import Optional
from urllib.parse import unquote, urlsplit

from pydantic import SecretStr, field_validator, model_validator
from requests import PreparedRequest
from requests.auth import AuthBase

from ..configtypes import Strict, check_secret_file
from .canonical import Clock, body_bytes, hmac_sha256, query_pairs, rfc3986, sha256_hex, signed_headers, utc_now
from .credentials import one_of, present, read_optional, read_required

__all__ = ["HuaweiAuth", "HuaweiSigner", "ALGORITHM", "canonical_uri"]

ALGORITHM = "SDK-HMAC-SHA256"
_SIGNED = frozenset({"content-type", "x-sdk-date", "x-project-id", "x-security-token"})  # and host


class HuaweiAuth(Strict):
    """A Huawei Cloud AK/SK pair, optionally a project and a temporary security token."""

    access_key_id: str
    secret_access_key: Optional[SecretStr] = None
    secret_access_key_file: Optional[str] = None
    project_id: Optional[str] = None
    security_token: Optional[SecretStr] = None
    security_token_file: Optional[str] = None

    _check_files = field_validator("secret_access_key_file", "security_token_file")(check_secret_file)

    @model_validator(mode="after")
    def _sources(self) -> "HuaweiAuth":
        one_of(self.secret_access_key, self.secret_access_key_file, "secret_access_key")
        one_of(self.security_token, self.security_token_file, "security_token", required=False)
        return self


def canonical_uri(path: str) -> str:
    """Each decoded path segment encoded per RFC 3986, joined with `/`, ending in `/` (Huawei signs it that way)."""
    uri = "/".join(rfc3986(segment) for segment in unquote(path or "/").split("/"))
    return uri if uri.endswith("/") else uri + "/"


class HuaweiSigner(AuthBase):
    """Adds `X-Sdk-Date` (and the project and token headers) and `Authorization: SDK-HMAC-SHA256 ...`."""

    def __init__(self, config: HuaweiAuth, clock: Clock = utc_now) -> None:
        self.config, self.clock = config, clock

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        config = self.config
        secret = read_required(config.secret_access_key, config.secret_access_key_file, "secret_access_key")
        token = read_optional(config.security_token, config.security_token_file, "security_token")
        body = body_bytes(request)
        headers = request.headers
        date = self.clock().strftime("%Y%m%dT%H%M%SZ")
        headers["X-Sdk-Date"] = date
        if config.project_id:
            headers["X-Project-Id"] = config.project_id
        if token:
            headers["X-Security-Token"] = token
        signed = signed_headers(request, _SIGNED.__contains__)
        names = list(signed)
        query = "&".join(f"{rfc3986(k)}={rfc3986(v)}" for k, v in sorted(query_pairs(request)))
        canonical = "\n".join([
            (request.method or "GET").upper(), canonical_uri(urlsplit(request.url or "").path), query,
            "".join(f"{name}:{signed[name]}\n" for name in names), ";".join(names), sha256_hex(body),
        ])
        string_to_sign = f"{ALGORITHM}\n{date}\n{sha256_hex(canonical.encode('utf-8'))}"
        signature = hmac_sha256(secret.encode("utf-8"), string_to_sign).hex()
        headers["Authorization"] = (
            f"{ALGORITHM} Access={config.access_key_id}, SignedHeaders={';'.join(names)}, Signature={signature}"
        )
        return request

    def secrets(self) -> list[str]:
        """The SK, the security token and the AK."""
        config = self.config
        return present(
            (config.secret_access_key, config.secret_access_key_file), (config.security_token, config.security_token_file)
        ) + [config.access_key_id]
