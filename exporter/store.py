"""Snapshots: each target's latest poll, rendered once as bytes and swapped in atomically."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Iterable, Mapping

from .exposition import DeflatedChunk, FamilyHeader, render_samples
from .mapping import MapResult

__all__ = ["Snapshot", "SnapshotStore"]


@dataclass(frozen=True)
class Snapshot:
    """One target's series from one successful poll: per metric, its header and its pre-rendered sample lines.

    `deflated` holds the same lines compressed once as gzip segments (one per family, in order), so that a gzip scrape
    only concatenates them; a snapshot built without them is compressed at scrape time instead.
    """

    target: str
    families: tuple[tuple[FamilyHeader, bytes], ...]
    series: int
    published: float
    stale_after: float
    deflated: tuple[DeflatedChunk, ...] = ()

    @classmethod
    def build(cls, target: str, result: MapResult, headers: Mapping[str, FamilyHeader], stale_after: float) -> "Snapshot":
        """Render a poll's samples to bytes and compress them, metric by metric, skipping metrics with no samples."""
        def header(name: str) -> FamilyHeader:
            if name in headers:
                return headers[name]
            source = headers[result.renamed[name]]  # a family metric_relabel_configs renamed: its metric's type and help
            return FamilyHeader.build(name, source.type, source.help)

        families = tuple(
            (header(name), render_samples(name, series)) for name, series in sorted(result.families.items()) if series
        )
        deflated = tuple(DeflatedChunk.compress(lines) for _, lines in families)
        return cls(target, families, result.series, time.monotonic(), stale_after, deflated)

    def family_deflated(self, index: int) -> DeflatedChunk:
        """The lines of `families[index]` as a gzip segment."""
        if index < len(self.deflated):
            return self.deflated[index]
        return DeflatedChunk.compress(self.families[index][1])

    def is_stale(self, now: float) -> bool:
        """Whether the snapshot is older than its target's stale_after."""
        return now - self.published > self.stale_after


class SnapshotStore:
    """The latest snapshot of every target; readers get an immutable mapping, writers swap it whole."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshots: Mapping[str, Snapshot] = {}

    def current(self) -> Mapping[str, Snapshot]:
        """Every target's snapshot as of now; the mapping never changes after it is returned."""
        return self._snapshots

    def publish(self, snapshot: Snapshot) -> None:
        """Replace one target's snapshot."""
        with self._lock:
            snapshots = dict(self._snapshots)
            snapshots[snapshot.target] = snapshot
            self._snapshots = snapshots

    def drop(self, target: str) -> bool:
        """Forget one target's snapshot; return whether there was one."""
        with self._lock:
            if target not in self._snapshots:
                return False
            snapshots = dict(self._snapshots)
            del snapshots[target]
            self._snapshots = snapshots
            return True

    def retain(self, targets: Iterable[str]) -> None:
        """Drop the snapshots of every target not named."""
        keep = set(targets)
        with self._lock:
            self._snapshots = {name: snap for name, snap in self._snapshots.items() if name in keep}
