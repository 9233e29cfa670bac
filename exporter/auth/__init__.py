"""Request authentication: a target's `auth` block, and one `requests.auth.AuthBase` per scheme built from it.

The client never knows which scheme is in use: it hands each prepared request to `build_auth(target.auth)`, which
adds a header or signs the exact bytes about to be sent. Secrets are read at each use, so rotated files take effect.
One auth object lives per target client: the OAuth2 token source and assumed-role keys are cached on it, and
`within_deadline` lets the credential requests they make end inside the poll's deadline.
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import field_validator, model_validator
from pydantic import SecretStr
from requests.auth import AuthBase

from ..configtypes import Strict, check_secret_file
from .alibaba import AlibabaAuth, AlibabaSigner
from .baidu import BaiduAuth, BaiduSigner
from .exchange import within_deadline
from .huawei import HuaweiAuth, HuaweiSigner
from .oauth2 import OAuth2, OAuth2Auth
from .sigv4 import SigV4, SigV4Auth
from .static import ApiKey, ApiKeyAuth, BasicAuth, BasicAuthSigner, BearerAuth
from .volcengine import VolcengineAuth, VolcengineSigner

__all__ = [
    "Auth", "AuthFailure", "build_auth", "auth_secrets", "within_deadline", "BasicAuth", "ApiKey", "OAuth2", "SigV4",
    "AlibabaAuth", "HuaweiAuth", "VolcengineAuth", "BaiduAuth",
]


class AuthFailure(Exception):
    """Credentials could not be obtained (an unreadable file, a failed token fetch): the poll fails with reason `auth`."""


class Auth(Strict):
    """Credentials for one target: exactly one scheme."""

    bearer_token: Optional[SecretStr] = None
    bearer_token_file: Optional[str] = None
    basic: Optional[BasicAuth] = None
    api_key: Optional[ApiKey] = None
    alibaba: Optional[AlibabaAuth] = None
    huawei: Optional[HuaweiAuth] = None
    volcengine: Optional[VolcengineAuth] = None
    baidu: Optional[BaiduAuth] = None
    oauth2: Optional[OAuth2] = None
    sigv4: Optional[SigV4] = None

    _check_file = field_validator("bearer_token_file")(check_secret_file)

    def schemes(self) -> list[str]:
        """The names of the schemes this block sets."""
        return [name for name in type(self).model_fields if getattr(self, name) and name != "bearer_token_file"] + (
            ["bearer_token"] if self.bearer_token_file and not self.bearer_token else []
        )

    @model_validator(mode="after")
    def _one_scheme(self) -> "Auth":
        chosen = self.schemes()
        if len(chosen) > 1:
            raise ValueError(f"choose one authentication scheme, not {' and '.join(chosen)}")
        if self.bearer_token is not None and self.bearer_token_file is not None:
            raise ValueError("set bearer_token or bearer_token_file, not both")
        return self


def build_auth(auth: Optional[Auth], verify: Any = True, cert: Any = None) -> Optional[AuthBase]:
    """The requests auth object for a target's `auth` block (None: send no credentials); `verify` and `cert` are the
    target's TLS settings, used for credential requests (token, STS) too."""
    if auth is None:
        return None
    if auth.bearer_token is not None or auth.bearer_token_file is not None:
        return BearerAuth(auth.bearer_token, auth.bearer_token_file)
    if auth.basic is not None:
        return BasicAuthSigner(auth.basic)
    if auth.api_key is not None:
        return ApiKeyAuth(auth.api_key)
    if auth.alibaba is not None:
        return AlibabaSigner(auth.alibaba)
    if auth.huawei is not None:
        return HuaweiSigner(auth.huawei)
    if auth.volcengine is not None:
        return VolcengineSigner(auth.volcengine)
    if auth.baidu is not None:
        return BaiduSigner(auth.baidu)
    if auth.oauth2 is not None:
        return OAuth2Auth(auth.oauth2, verify, cert)
    if auth.sigv4 is not None:
        return SigV4Auth(auth.sigv4, verify, cert)
    return None


def auth_secrets(auth: Optional[Auth], signer: Optional[AuthBase] = None) -> list[str]:
    """Every secret value the block uses, read fresh (files rotate); unreadable files contribute nothing. Pass the
    target client's auth object as `signer` to include what it obtained (the current OAuth2 token, assumed-role keys)."""
    if signer is None:
        signer = build_auth(auth)
    secrets = getattr(signer, "secrets", None)
    return list(secrets()) if secrets is not None else []
