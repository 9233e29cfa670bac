"""OAuth2 client credentials, spelled and behaving like Prometheus' `oauth2` block: a token source per target that
fetches a token once per lifetime and hands it to every page and thread of every poll."""

from __future__ import annotations

import base64
import json
import re
from typing import Any, Optional
from urllib.parse import parse_qsl, quote_plus

from pydantic import SecretStr, field_validator, model_validator
from requests import PreparedRequest, Response
from requests.auth import AuthBase

from ..configtypes import Strict, check_secret_file
from .exchange import Answer, CredentialEndpoint, Expiring
from .credentials import present, read_required

__all__ = ["OAuth2", "OAuth2TokenSource", "OAuth2Auth", "REFRESH_MARGIN"]

REFRESH_MARGIN = 60.0  # a token is renewed this long (at most half its lifetime) before `expires_in` runs out


class OAuth2(Strict):
    """The OAuth2 client credentials grant (RFC 6749 §4.4)."""

    client_id: str
    client_secret: Optional[SecretStr] = None
    client_secret_file: Optional[str] = None
    token_url: str
    scopes: list[str] = []
    endpoint_params: dict[str, str] = {}

    _check_file = field_validator("client_secret_file")(check_secret_file)

    @field_validator("token_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not re.match(r"^https?://[^\s/?#]+[^\s]*$", url):
            raise ValueError(f"must be an http:// or https:// URL, got {url.split('?', 1)[0][:80]!r}")
        return url

    @model_validator(mode="after")
    def _consistent(self) -> "OAuth2":
        if (self.client_secret is None) == (self.client_secret_file is None):
            raise ValueError("set exactly one of client_secret, client_secret_file")
        if self.scopes and "scope" in self.endpoint_params:
            raise ValueError("endpoint_params cannot set scope when scopes is set")
        return self


def _basic(client_id: str, secret: str) -> str:
    """RFC 6749 §2.3.1: the form-encoded id and secret as HTTP basic credentials."""
    return base64.b64encode(f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()).decode()


def _fields(answer: Answer) -> dict[str, Any]:
    """The token endpoint's answer as a dict: JSON, or form-encoded as some providers send it."""
    media = answer.content_type.split(";")[0].strip().lower()
    try:
        if media in ("application/x-www-form-urlencoded", "text/plain"):
            return dict(parse_qsl(answer.body.decode("utf-8")))
        fields = json.loads(answer.body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        fields = None
    if not isinstance(fields, dict):
        raise ValueError("the token endpoint's answer is not a JSON object")
    return fields


def _lifetime(value: Any) -> Optional[float]:
    """`expires_in` as seconds (a number or a numeric string, as Azure AD v1 sends it); None when absent or unusable."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds > 0 else None


class OAuth2TokenSource:
    """Fetches and caches one target's access token; thread-safe, and only one caller fetches at a time.

    Client authentication works as Prometheus' (golang.org/x/oauth2 auto-detection): HTTP basic first; if the
    endpoint answers 400 or 401, `client_id`/`client_secret` in the form; whichever worked is kept."""

    def __init__(self, config: OAuth2, verify: Any = True, cert: Any = None) -> None:
        self.config = config
        self.endpoint = CredentialEndpoint("token request", verify, cert)
        self.cache: Expiring[str] = Expiring(REFRESH_MARGIN)
        self._style: Optional[str] = None

    def secret(self) -> str:
        """The client secret, read fresh (a rotated file takes effect at the next request)."""
        return read_required(self.config.client_secret, self.config.client_secret_file, "client secret")

    def token(self) -> str:
        """A valid access token: the cached one, or a new one if it is about to expire or the secret changed."""
        secret = self.secret()
        return self.cache.get(secret, lambda: self._fetch(secret))

    def forget(self, token: str) -> None:
        """The API rejected `token`: fetch a new one at the next request."""
        self.cache.forget(token)

    def _fetch(self, secret: str) -> tuple[str, Optional[float]]:
        from . import AuthFailure

        config = self.config
        form = {"grant_type": "client_credentials"}
        if config.scopes:
            form["scope"] = " ".join(config.scopes)
        form.update(config.endpoint_params)
        headers = {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"}
        styles = [self._style] if self._style else ["header", "params"]
        for style in styles:
            if style == "header":
                answer = self.endpoint.post(config.token_url, form, {**headers, "Authorization": f"Basic {_basic(config.client_id, secret)}"})
            else:
                answer = self.endpoint.post(config.token_url, {**form, "client_id": config.client_id, "client_secret": secret}, headers)
            if answer.ok or answer.status not in (400, 401):
                break
        if not answer.ok:
            raise AuthFailure(f"token request failed: HTTP {answer.status}{self._error(answer)}")
        try:
            fields = _fields(answer)
        except ValueError as exc:
            raise AuthFailure(f"token request failed: {exc}") from None
        token = fields.get("access_token")
        if not isinstance(token, str) or not token:
            raise AuthFailure("token request failed: the answer has no access_token")
        self._style = style
        return token, _lifetime(fields.get("expires_in"))

    @staticmethod
    def _error(answer: Answer) -> str:
        """The RFC 6749 §5.2 `error` and `error_description` of a failed answer, if it has them."""
        try:
            fields = _fields(answer)
        except ValueError:
            return ""
        error = " ".join(str(fields.get(k, ""))[:200] for k in ("error", "error_description")).strip()
        return f" ({error})" if error else ""

    def secrets(self) -> list[str]:
        """The client secret, its basic-auth encoding, and the token held now."""
        found = present((self.config.client_secret, self.config.client_secret_file))
        found += [_basic(self.config.client_id, s) for s in found]
        token = self.cache.current()
        return found + ([token] if token else [])


class OAuth2Auth(AuthBase):
    """`Authorization: Bearer <token>` from the target's token source; a 401 answer makes the next request fetch anew."""

    def __init__(self, config: OAuth2, verify: Any = True, cert: Any = None) -> None:
        self.source = OAuth2TokenSource(config, verify, cert)

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        token = self.source.token()
        request.headers["Authorization"] = f"Bearer {token}"

        def forget_if_rejected(response: Response, **kwargs: Any) -> Response:
            if response.status_code == 401:
                self.source.forget(token)
            return response

        request.register_hook("response", forget_if_rejected)
        return request

    def secrets(self) -> list[str]:
        """The client secret and the current token."""
        return self.source.secrets()

    def close(self) -> None:
        """Release the token endpoint's connections."""
        self.source.endpoint.close()
