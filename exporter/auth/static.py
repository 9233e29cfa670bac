"""The static schemes: a bearer token, HTTP basic auth, and an API key in a header."""

from __future__ import annotations

from typing import Optional

from pydantic import SecretStr, field_validator, model_validator
from requests import PreparedRequest
from requests.auth import AuthBase, _basic_auth_str

from ..configtypes import Strict, check_secret_file, read_secret
from .credentials import present

__all__ = ["BasicAuth", "ApiKey", "BearerAuth", "BasicAuthSigner", "ApiKeyAuth"]


class BasicAuth(Strict):
    """HTTP basic authentication."""

    username: str
    password: Optional[SecretStr] = None
    password_file: Optional[str] = None

    _check_file = field_validator("password_file")(check_secret_file)

    @model_validator(mode="after")
    def _one_password(self) -> "BasicAuth":
        if (self.password is None) == (self.password_file is None):
            raise ValueError("set exactly one of password, password_file")
        return self


class ApiKey(Strict):
    """An API key sent in a request header."""

    header: str = "X-API-Key"
    value: Optional[SecretStr] = None
    value_file: Optional[str] = None

    _check_file = field_validator("value_file")(check_secret_file)

    @model_validator(mode="after")
    def _one_value(self) -> "ApiKey":
        if (self.value is None) == (self.value_file is None):
            raise ValueError("set exactly one of value, value_file")
        return self


def _read(inline: Optional[SecretStr], path: Optional[str]) -> str:
    from . import AuthFailure

    try:
        return read_secret(inline, path) or ""
    except OSError as exc:
        raise AuthFailure(f"cannot read credentials file: {exc.strerror or exc}") from None


class BearerAuth(AuthBase):
    """`Authorization: Bearer <token>`."""

    def __init__(self, token: Optional[SecretStr], token_file: Optional[str]) -> None:
        self.token, self.token_file = token, token_file

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        request.headers["Authorization"] = f"Bearer {_read(self.token, self.token_file)}"
        return request

    def secrets(self) -> list[str]:
        """The token."""
        return present((self.token, self.token_file))


class BasicAuthSigner(AuthBase):
    """`Authorization: Basic ...` from a username and a password (inline or from a file)."""

    def __init__(self, config: BasicAuth) -> None:
        self.config = config

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        password = _read(self.config.password, self.config.password_file)
        request.headers["Authorization"] = _basic_auth_str(self.config.username, password)
        return request

    def secrets(self) -> list[str]:
        """The password, and the header value that encodes it."""
        found = present((self.config.password, self.config.password_file))
        return found + [_basic_auth_str(self.config.username, p).split(" ", 1)[1] for p in found]


class ApiKeyAuth(AuthBase):
    """An API key in a configured header."""

    def __init__(self, config: ApiKey) -> None:
        self.config = config

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        request.headers[self.config.header] = _read(self.config.value, self.config.value_file)
        return request

    def secrets(self) -> list[str]:
        """The key."""
        return present((self.config.value, self.config.value_file))
