"""Building blocks of the config schema shared by every block: strict models, durations, sizes and secrets."""

from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Optional

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, model_validator

from .convert import ConversionError, parse_duration, parse_size

__all__ = ["Strict", "Seconds", "PositiveSeconds", "Bytes", "read_secret", "check_secret_file", "syntax_only_files"]

# Set while a config is checked with `--syntax-only`: secret files are named but not opened.
syntax_only_files: ContextVar[bool] = ContextVar("syntax_only_files", default=False)
DURATION_FORMS = "a number of seconds, or 15s, 1m30s, 250ms, 1h, PT1M"
SIZE_FORMS = "a number of bytes, or 50MiB, 512Ki, 1G"


def _seconds(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ConversionError as exc:
            raise ValueError(f"{exc} (use {DURATION_FORMS})") from None
    return value


def _bytes(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return int(parse_size(value))
        except ConversionError as exc:
            raise ValueError(f"{exc} (use {SIZE_FORMS})") from None
    return value


Seconds = Annotated[float, BeforeValidator(_seconds), Field(ge=0)]
PositiveSeconds = Annotated[float, BeforeValidator(_seconds), Field(gt=0)]
Bytes = Annotated[int, BeforeValidator(_bytes), Field(gt=0)]


class Strict(BaseModel):
    """A config block: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_block(cls, data: Any) -> Any:
        """A block whose keys are all commented out (`scheduler:`) means its defaults."""
        return {} if data is None else data


def read_secret(inline: Optional[SecretStr], path: Optional[str]) -> Optional[str]:
    """Return a secret from its file (stripped of the trailing newline) or its inline/env value."""
    if path:
        return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    return inline.get_secret_value() if inline is not None else None


def check_secret_file(path: Optional[str]) -> Optional[str]:
    """Validate that a secret file named in the config can be opened (its content is read at each use)."""
    if path is not None and not syntax_only_files.get():
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ValueError(f"cannot read secret file {path!r}: {exc.strerror or exc}") from None
    return path
