"""Web config (`--web.config.file`): TLS and bcrypt basic auth for the HTTP endpoints, as in exporter-toolkit.

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
import re
import secrets
import ssl
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Annotated, Optional, Union

import bcrypt
import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, field_validator

from .config import ConfigError, _problems

__all__ = ["WebConfig", "load_web_config", "Authenticator"]

_BCRYPT = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")
MAX_PASSWORD_BYTES = 72  # bcrypt's limit; a longer password can never match (bcrypt 5 raises; older ones truncate)


def _bcrypt_hash(value: str) -> str:
    """A well-formed bcrypt hash (`$2b$<cost>$<53 characters>`, cost 4-31)."""
    match = _BCRYPT.fullmatch(value)
    if not match or not 4 <= int(match.group(1)) <= 31:
        raise ValueError("not a bcrypt hash: want $2b$<cost 04-31>$<53 characters> (htpasswd -nBC 12 \"\" | tr -d ':\\n')")
    return value


BcryptHash = Annotated[str, AfterValidator(_bcrypt_hash)]


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
    basic_auth_users: dict[str, BcryptHash] = {}

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
        raise ConfigError(str(path), _problems(exc)) from None
    try:
        config.ssl_context()
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(str(path), [f"tls_server_config: cannot load certificate or key: {exc}"]) from None
    return config


class Authenticator:
    """Checks `Authorization: Basic` headers against bcrypt hashes, as exporter-toolkit does.

    bcrypt runs behind one lock (32 clients guessing cost one core, not 32), an unknown user is checked against a
    dummy hash of the same cost (answered no faster than a wrong password: no user enumeration), and outcomes are
    kept in two bounded caches keyed by a digest of user, password and hash: successes (a scraper's repeated check
    costs no bcrypt) and failures apart, so a flood of wrong passwords cannot evict the scraper's entry.
    """

    def __init__(self, users: dict[str, str], cache_size: int = 256) -> None:
        self.users = users
        self.cache_size = cache_size
        self._cache: dict[bool, OrderedDict[bytes, None]] = {True: OrderedDict(), False: OrderedDict()}
        self._cache_lock = threading.Lock()
        self._bcrypt_lock = threading.Lock()
        cost = max((int(h[4:6]) for h in users.values() if _BCRYPT.fullmatch(h)), default=4)
        self.dummy_hash = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(cost)).decode() if users else ""

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
        secret = password.encode()
        if len(secret) > MAX_PASSWORD_BYTES:
            return False
        hashed = self.users.get(user)
        known = hashed is not None
        hashed = hashed if known else self.dummy_hash
        key = hashlib.sha256(b"\0".join((user.encode(), secret, hashed.encode()))).digest()
        with self._cache_lock:
            for outcome, cache in self._cache.items():
                if key in cache:
                    cache.move_to_end(key)
                    return outcome
        with self._bcrypt_lock:
            try:
                matched = bcrypt.checkpw(secret, hashed.encode())
            except ValueError:  # a hash bcrypt cannot read (the web config validates them, so not expected)
                matched = False
        allowed = known and matched
        with self._cache_lock:
            cache = self._cache[allowed]
            cache[key] = None
            while len(cache) > self.cache_size:
                cache.popitem(last=False)
        return allowed
