"""Collector: joins the pre-rendered snapshots into one exposition; no I/O and no per-sample formatting."""

from __future__ import annotations

import time
from typing import Mapping, Optional

from .exposition import FamilyHeader
from .store import Snapshot

__all__ = ["render_exposition"]


def render_exposition(snapshots: Mapping[str, Snapshot], openmetrics: bool = False, now: Optional[float] = None) -> list[bytes]:
    """Return the bridged series as byte chunks, each metric's header once and then every target's lines for it.

    Snapshots past their `stale_after` are left out, whether or not the scheduler has dropped them yet.
    """
    now = time.monotonic() if now is None else now
    headers: dict[str, FamilyHeader] = {}
    parts: dict[str, list[bytes]] = {}
    for _, snapshot in sorted(snapshots.items()):
        if snapshot.is_stale(now):
            continue
        for header, lines in snapshot.families:
            chunks = parts.get(header.name)
            if chunks is None:
                headers[header.name] = header
                parts[header.name] = [lines]
            else:
                chunks.append(lines)
    out: list[bytes] = []
    for name in sorted(parts):
        header = headers[name]
        out.append(header.openmetrics if openmetrics else header.text)
        out.extend(parts[name])
    return out
