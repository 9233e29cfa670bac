"""Alibaba Cloud request signatures: V3 (`ACS3-HMAC-SHA256`, headers) and the older RPC signature (HMAC-SHA1, query).

V3 signs the method, the canonical path and query, the `host`, `content-type` and every `x-acs-*` header, and the
SHA-256 of the body. RPC adds the common parameters (`AccessKeyId`, `Timestamp`, `SignatureNonce`, ...) and
`Signature` to the query it sends; it signs the query only, so RPC APIs take their parameters in `params`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import date
from typing import Literal, Optional
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr, field_validator, model_validator
from requests import PreparedRequest
from requests.auth import AuthBase

from ..configtypes import Strict, check_secret_file
from .canonical import (
    Clock, Nonce, body_bytes, canonical_path, hmac_sha256, query_pairs, random_nonce, rfc3986, sha256_hex, signed_headers,
    utc_now,
)
from .credentials import one_of, present, read_optional, read_required

__all__ = ["AlibabaAuth", "AlibabaSigner", "V3_ALGORITHM"]

V3_ALGORITHM = "ACS3-HMAC-SHA256"
_RPC_COMMON = ("AccessKeyId", "Action", "SecurityToken", "Signature", "SignatureMethod", "SignatureNonce",
               "SignatureVersion", "Timestamp", "Version")


class AlibabaAuth(Strict):
    """An Alibaba Cloud AccessKey pair (optionally an STS token) and the API it calls."""

    signature: Literal["v3", "rpc"] = "v3"
    action: str
    version: str
    access_key_id: str
    access_key_secret: Optional[SecretStr] = None
    access_key_secret_file: Optional[str] = None
    security_token: Optional[SecretStr] = None
    security_token_file: Optional[str] = None

    _check_files = field_validator("access_key_secret_file", "security_token_file")(check_secret_file)

    @field_validator("version", mode="before")
    @classmethod
    def _date_as_text(cls, value: object) -> object:
        """`version: 2019-01-01` unquoted is a YAML date: take it as the text it was."""
        return value.isoformat() if isinstance(value, date) else value

    @model_validator(mode="after")
    def _sources(self) -> "AlibabaAuth":
        one_of(self.access_key_secret, self.access_key_secret_file, "access_key_secret")
        one_of(self.security_token, self.security_token_file, "security_token", required=False)
        return self


class AlibabaSigner(AuthBase):
    """Signs each request with the configured signature version, at the time and nonce of `clock` and `nonce`."""

    def __init__(self, config: AlibabaAuth, clock: Clock = utc_now, nonce: Nonce = random_nonce) -> None:
        self.config, self.clock, self.nonce = config, clock, nonce

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        secret = read_required(self.config.access_key_secret, self.config.access_key_secret_file, "access_key_secret")
        token = read_optional(self.config.security_token, self.config.security_token_file, "security_token")
        if self.config.signature == "rpc":
            return self._sign_rpc(request, secret, token)
        return self._sign_v3(request, secret, token)

    def _sign_v3(self, request: PreparedRequest, secret: str, token: Optional[str]) -> PreparedRequest:
        config = self.config
        body = body_bytes(request)
        headers = request.headers
        headers["x-acs-action"] = config.action
        headers["x-acs-version"] = config.version
        headers["x-acs-date"] = self.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        headers["x-acs-signature-nonce"] = self.nonce()
        headers["x-acs-content-sha256"] = sha256_hex(body)
        if token:
            headers["x-acs-security-token"] = token
        signed = signed_headers(request, lambda name: name.startswith("x-acs-") or name == "content-type")
        names = list(signed)
        query = "&".join(f"{rfc3986(k)}={rfc3986(v)}" for k, v in sorted(query_pairs(request)))
        canonical = "\n".join([
            (request.method or "GET").upper(), canonical_path(request), query,
            "".join(f"{name}:{signed[name]}\n" for name in names), ";".join(names), headers["x-acs-content-sha256"],
        ])
        string_to_sign = f"{V3_ALGORITHM}\n{sha256_hex(canonical.encode('utf-8'))}"
        signature = hmac_sha256(secret.encode("utf-8"), string_to_sign).hex()
        headers["Authorization"] = (
            f"{V3_ALGORITHM} Credential={config.access_key_id},SignedHeaders={';'.join(names)},Signature={signature}"
        )
        return request

    def _sign_rpc(self, request: PreparedRequest, secret: str, token: Optional[str]) -> PreparedRequest:
        config = self.config
        params = [(k, v) for k, v in query_pairs(request) if k not in _RPC_COMMON]
        if not any(k == "Format" for k, _ in params):
            params.append(("Format", "JSON"))
        params += [
            ("AccessKeyId", config.access_key_id), ("Action", config.action),
            ("SignatureMethod", "HMAC-SHA1"), ("SignatureNonce", self.nonce()), ("SignatureVersion", "1.0"),
            ("Timestamp", self.clock().strftime("%Y-%m-%dT%H:%M:%SZ")), ("Version", config.version),
        ]
        if token:
            params.append(("SecurityToken", token))
        query = "&".join(f"{rfc3986(k)}={rfc3986(v)}" for k, v in sorted(params))
        string_to_sign = f"{(request.method or 'GET').upper()}&%2F&{rfc3986(query)}"
        digest = hmac.new(f"{secret}&".encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha1).digest()
        signature = base64.b64encode(digest).decode("ascii")
        parts = urlsplit(request.url or "")
        query += f"&Signature={rfc3986(signature)}"
        request.url = urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, ""))
        return request

    def secrets(self) -> list[str]:
        """The AccessKey secret, the STS token and the AccessKey ID (the issue counts AK and SK as secrets)."""
        config = self.config
        return present(
            (config.access_key_secret, config.access_key_secret_file), (config.security_token, config.security_token_file)
        ) + [config.access_key_id]
