"""Access keys for the cloud signers: secrets read fresh at each request, checked once at config load."""

from __future__ import annotations

from typing import Optional

from pydantic import SecretStr

from ..configtypes import read_secret

__all__ = ["read_required", "read_optional", "present", "one_of"]


def read_required(inline: Optional[SecretStr], path: Optional[str], what: str) -> str:
    """A secret read fresh (files rotate); an unreadable or empty one is an AuthFailure naming `what`, not the value."""
    from . import AuthFailure

    try:
        value = read_secret(inline, path)
    except OSError as exc:
        raise AuthFailure(f"cannot read the {what} file: {exc.strerror or exc}") from None
    if not value:
        raise AuthFailure(f"the {what} is empty")
    return value


def read_optional(inline: Optional[SecretStr], path: Optional[str], what: str) -> Optional[str]:
    """An optional secret (a session token) read fresh; None when not configured."""
    if inline is None and path is None:
        return None
    return read_required(inline, path, what)


def present(*values: tuple[Optional[SecretStr], Optional[str]]) -> list[str]:
    """The secrets that can be read now, for the Redactor (unreadable files contribute nothing)."""
    found = []
    for inline, path in values:
        try:
            value = read_secret(inline, path)
        except OSError:
            value = None
        if value:
            found.append(value)
    return found


def one_of(inline: Optional[SecretStr], path: Optional[str], name: str, required: bool = True) -> None:
    """Config check: a secret comes inline or from its file, not both (and, when required, from one of them)."""
    if inline is not None and path is not None:
        raise ValueError(f"set {name} or {name}_file, not both")
    if required and inline is None and path is None:
        raise ValueError(f"set {name} or {name}_file")
