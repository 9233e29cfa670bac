"""Collector: joins the pre-rendered snapshots into one exposition; no I/O and no per-sample formatting."""

from __future__ import annotations

import time
from typing import Mapping, Optional

from .exposition import DeflatedChunk, FamilyHeader
from .store import Snapshot

__all__ = ["render_exposition", "render_exposition_deflated"]

Layout = list[tuple[FamilyHeader, list[tuple[Snapshot, int]]]]


def _layout(snapshots: Mapping[str, Snapshot], now: Optional[float]) -> Layout:
    """Per metric name in order: its header, then (snapshot, family index) for every fresh snapshot that has it.

    Snapshots past their `stale_after` are left out, whether or not the scheduler has dropped them yet.
    """
    now = time.monotonic() if now is None else now
    headers: dict[str, FamilyHeader] = {}
    parts: dict[str, list[tuple[Snapshot, int]]] = {}
    for _, snapshot in sorted(snapshots.items()):
        if snapshot.is_stale(now):
            continue
        for index, header in enumerate(snapshot.headers):
            members = parts.get(header.name)
            if members is None:
                headers[header.name] = header
                parts[header.name] = [(snapshot, index)]
            else:
                members.append((snapshot, index))
    return [(headers[name], parts[name]) for name in sorted(parts)]


def render_exposition(snapshots: Mapping[str, Snapshot], openmetrics: bool = False, now: Optional[float] = None) -> list[bytes]:
    """Return the bridged series as byte chunks, each metric's header once and then every target's lines for it."""
    out: list[bytes] = []
    texts: dict[int, tuple[bytes, ...]] = {}  # per snapshot, its text, asked for once (it may have to be inflated)
    for header, members in _layout(snapshots, now):
        out.append(header.openmetrics if openmetrics else header.text)
        for snapshot, index in members:
            text = texts.get(id(snapshot))
            if text is None:
                text = texts[id(snapshot)] = snapshot.text()
            out.append(text[index])
    return out


def render_exposition_deflated(
    snapshots: Mapping[str, Snapshot], openmetrics: bool = False, now: Optional[float] = None
) -> list[DeflatedChunk]:
    """The same exposition as `render_exposition`, as the gzip segments compressed when each snapshot was built."""
    out: list[DeflatedChunk] = []
    for header, members in _layout(snapshots, now):
        out.append(header.deflated(openmetrics))
        out.extend([snapshot.family_deflated(index) for snapshot, index in members])
    return out
