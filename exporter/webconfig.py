"""Web config (`--web-config-file`): TLS and bcrypt basic auth for the HTTP endpoints, as in exporter-toolkit.

    tls_server_config:
      cert_file: /etc/metrics-bridge/tls.crt
      key_file: /etc/metrics-bridge/tls.key
      # client_ca_file: /etc/metrics-bridge/ca.crt   # require client certificates signed by this CA
    basic_auth_users:
      prometheus: $2b$12$...                           # bcrypt hash: htpasswd -nBC 12 "" | tr -d ':\\n'
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ssl
import threading
from pathlib import Path
from typing import Optional, Union

import bcrypt
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from .config import ConfigError
from .configproblems import field_problems

__all__ = ["WebConfig", "load_web_config", "Authenticator"]


class TLSServerConfig(BaseModel):
    """Certificate and key to serve HTTPS with, and optionally a CA for client certificates."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cert_file: str
    key_file: str
    client_ca_file: Optional[str] = None
    min_version: str = "TLS12"

    @field_validator("min_version")
    @classmethod
    def _known_version(cls, value: str) -> str:
        if value not in ("TLS12", "TLS13"):
            raise ValueError("min_version must be TLS12 or TLS13")
        return value


class WebConfig(BaseModel):
    """The web config file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tls_server_config: Optional[TLSServerConfig] = None
    basic_auth_users: dict[str, str] = {}

    @field_validator("basic_auth_users")
    @classmethod
    def _bcrypt_hashes(cls, users: dict[str, str]) -> dict[str, str]:
        bad = [name for name, hashed in users.items() if not str(hashed).startswith(("$2a$", "$2b$", "$2y$"))]
        if bad:
            raise ValueError(f"passwords must be bcrypt hashes ($2b$...): not for {', '.join(sorted(bad))}")
        return users

    def ssl_context(self) -> Optional[ssl.SSLContext]:
        """A server-side TLS context, or None when TLS is off."""
        tls = self.tls_server_config
        if tls is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_3 if tls.min_version == "TLS13" else ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(tls.cert_file, tls.key_file)
        if tls.client_ca_file:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(tls.client_ca_file)
        return context


def load_web_config(path: Union[str, Path]) -> WebConfig:
    """Read and validate a web config file; raise ConfigError listing every problem."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        config = WebConfig.model_validate(raw)
    except OSError as exc:
        raise ConfigError(str(path), [f"<file>: cannot read: {exc.strerror or exc}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), [f"<yaml>: {exc}"]) from None
    except ValidationError as exc:
        raise ConfigError(str(path), field_problems(exc, WebConfig)) from None
    try:
        config.ssl_context()
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(str(path), [f"tls_server_config: cannot load certificate or key: {exc}"]) from None
    return config


class Authenticator:
    """Checks `Authorization: Basic` headers against bcrypt hashes, caching successful checks (bcrypt is slow)."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users
        self._verified: set[bytes] = set()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether any user is configured."""
        return bool(self.users)

    def allows(self, header: Optional[str]) -> bool:
        """Whether the Authorization header carries valid credentials (always true when auth is off)."""
        if not self.users:
            return True
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        hashed = self.users.get(user)
        if hashed is None:
            return False
        key = hashlib.sha256(f"{user}\0{password}\0{hashed}".encode()).digest()
        with self._lock:
            if any(hmac.compare_digest(key, known) for known in self._verified):
                return True
        if not bcrypt.checkpw(password.encode(), hashed.encode()):
            return False
        with self._lock:
            self._verified.add(key)
        return True
