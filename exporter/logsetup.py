"""Logging set-up: ISO-8601 UTC timestamps with milliseconds, text or JSON, stderr plus an optional rotating file.

Exceptions nobody caught (in a thread, or "ignored" in a finaliser) are logged too, instead of Python printing a raw
traceback past the chosen format and file. They name the exception type and where it was raised, never its message,
which may quote a URL or a credential.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
import threading
import time
import traceback
from typing import Any, Optional

import orjson

__all__ = ["configure_logging"]


class _TextFormatter(logging.Formatter):

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: Optional[str] = None) -> str:
        """ISO-8601 UTC with milliseconds."""
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


class _JSONFormatter(_TextFormatter):
    def format(self, record: logging.LogRecord) -> str:
        """One JSON object a line."""
        entry = {
            "ts": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def _where(tb: Any) -> str:
    frames = traceback.extract_tb(tb) if tb is not None else []
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("exporter").error(
        "thread %s stopped by an uncaught %s at %s", name, args.exc_type.__name__, _where(args.exc_traceback)
    )


def _log_unraisable(unraisable: Any) -> None:
    logging.getLogger("exporter").debug(
        "ignored %s at %s", type(unraisable.exc_value).__name__, _where(unraisable.exc_traceback)
    )


def configure_logging(level: str = "info", fmt: str = "text", file: Optional[str] = None) -> None:
    """Route every log record to stderr (and `file`, rotated at 10 MiB, 5 kept) in the chosen format."""
    formatter: logging.Formatter = _JSONFormatter() if fmt == "json" else _TextFormatter()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if file:
        handlers.append(logging.handlers.RotatingFileHandler(file, maxBytes=10 * 1024 * 1024, backupCount=5))
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(level.upper())
    threading.excepthook = _log_thread_exception
    sys.unraisablehook = _log_unraisable
    logging.getLogger("urllib3").setLevel(logging.WARNING)
