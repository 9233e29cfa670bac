"""Snapshots: each target's latest poll, rendered once as bytes and swapped in atomically."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional

from .exposition import DeflatedChunk, DeflatedFamilies, FamilyHeader, render_samples
from .mapping import MapResult
from .memory import fresh_int, trim

__all__ = ["Snapshot", "SnapshotStore"]


class _Bodies:
    """A snapshot's lines, as text, as gzip segments, or both.

    The segments are compressed once, by whichever comes first: the background compressor (right after publishing)
    or a gzip scrape (which then waits for it rather than compressing twice). Once they are, the compressor drops the
    text unless a plain-text scrape has read it (`release_text`): Prometheus asks for gzip, so a bridge that only it
    scrapes keeps its series once, compressed (about 1/14 of the text at 200k). A plain scrape of a snapshot whose
    text was dropped inflates it again, once, and the snapshot keeps it from then on (and so does the target's next
    snapshot, `keep_text`): plain scrapers pay the memory they use, and an inflate at most once a poll.
    """

    __slots__ = ("_text", "_lock", "_deflated", "_keep_text", "read_plain")

    def __init__(self, text: tuple[bytes, ...]) -> None:
        self._text: Optional[tuple[bytes, ...]] = text
        self._lock = threading.Lock()
        self._deflated = DeflatedFamilies(len(text))  # made now, on the poll's thread: filling it allocates no small objects
        self._keep_text = False
        self.read_plain = False

    def deflated(self) -> DeflatedFamilies:
        """The segments, compressing them now if nobody has."""
        deflated = self._deflated
        if not deflated.ready:
            with self._lock:
                if not deflated.ready:
                    deflated.fill(self._text)  # type: ignore[arg-type]  # text is only dropped once this is done
        return deflated

    def text(self) -> tuple[bytes, ...]:
        """Each family's lines, inflated from the segments if the text was dropped (and kept from then on)."""
        self.read_plain = True  # before reading `_text`: `release_text` checks it under the lock
        text = self._text
        if text is None:
            with self._lock:
                text = self._text
                if text is None:
                    text = self._text = self._deflated.inflate()
        return text

    def head(self, index: int, size: int) -> bytes:
        """At most the first `size` bytes of one family's lines, inflating no more than that if the text was dropped."""
        text = self._text
        if text is not None:
            return text[index][:size]
        return self._deflated.inflate_head(index, size)

    def keep_text(self) -> None:
        """Keep the text after compressing (plain scrapers read this target's previous snapshot)."""
        self._keep_text = True

    def release_text(self) -> bool:
        """Drop the text if the segments are ready and no plain scrape has read it; return whether it was dropped."""
        with self._lock:
            if self._text is None or not self._deflated.ready or self.read_plain or self._keep_text:
                return False
            self._text = None
            return True

    @property
    def ready(self) -> bool:
        """Whether the segments have been compressed."""
        return self._deflated.ready

    @property
    def holds_text(self) -> bool:
        """Whether the text is in memory (rendered, kept or inflated)."""
        return self._text is not None


@dataclass(frozen=True)
class Snapshot:
    """One target's series from one successful poll: per metric, its header and its pre-rendered sample lines.

    `deflated` holds the same lines compressed once as gzip segments (one per family, in order), so that a gzip scrape
    only concatenates them. They are compressed off the poll's critical path: `SnapshotStore.publish` hands the
    snapshot to a background thread (zlib releases the GIL, so that runs beside the next poll's mapping), and a gzip
    scrape that comes first compresses them itself, once. Measured at 200k series (bench/): compression was 13 % of
    poll-to-publish. After compressing, the text is dropped until a plain scrape asks for it (`_Bodies`).
    """

    target: str
    headers: tuple[FamilyHeader, ...]
    series: int
    published: float
    stale_after: float
    _bodies: _Bodies = field(compare=False, repr=False)

    @classmethod
    def build(
        cls, target: str, result: MapResult, headers: Mapping[str, FamilyHeader], stale_after: float, *, consume: bool = False
    ) -> "Snapshot":
        """Render a poll's samples to bytes, metric by metric, skipping metrics with no samples.

        With `consume`, `result.families` is emptied once rendered, and what the snapshot keeps is made after that (a
        poll's way: made while the samples are in memory, its small objects would keep their arenas resident; see
        `memory.py`).
        """
        def header(name: str) -> FamilyHeader:
            if name in headers:
                return headers[name]
            source = headers[result.renamed[name]]  # a family metric_relabel_configs renamed: its metric's type and help
            return FamilyHeader.build(name, source.type, source.help)

        samples = result.families
        names = sorted(name for name, series in samples.items() if series)
        rendered = [render_samples(name, samples[name]) for name in names]
        series = result.series
        if consume:
            samples.clear()
            series = fresh_int(series)
        return cls(target, tuple([header(name) for name in names]), series, time.monotonic(), stale_after, _Bodies(tuple(rendered)))

    def text(self) -> tuple[bytes, ...]:
        """Every family's lines, in the order of `headers` (inflated now if the text was dropped after compressing)."""
        return self._bodies.text()

    def head(self, index: int, size: int) -> bytes:
        """At most the first `size` bytes of the lines of family `index` (for a preview: never inflates them all)."""
        return self._bodies.head(index, size)

    @property
    def deflated(self) -> DeflatedFamilies:
        """Every family's lines as gzip segments, in order (compressed now if the background has not yet)."""
        return self._bodies.deflated()

    @property
    def compressed(self) -> bool:
        """Whether `deflated` is ready (reading it then never waits)."""
        return self._bodies.ready

    def family_deflated(self, index: int) -> DeflatedChunk:
        """The lines of `families[index]` as a gzip segment."""
        return self.deflated.chunk(index)

    def is_stale(self, now: float) -> bool:
        """Whether the snapshot is older than its target's stale_after."""
        return now - self.published > self.stale_after


class _Compressor:
    """One daemon thread that compresses each published snapshot once, in the background."""

    def __init__(self) -> None:
        self._queue: "queue.SimpleQueue[Snapshot]" = queue.SimpleQueue()
        self._thread: Optional[threading.Thread] = None
        self._start_lock = threading.Lock()
        self._idle = threading.Condition()
        self._pending = 0

    def submit(self, snapshot: Snapshot) -> None:
        """Compress `snapshot` soon, on the compressor thread."""
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="snapshot-compressor", daemon=True)
                    self._thread.start()
        with self._idle:
            self._pending += 1
        self._queue.put(snapshot)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every snapshot submitted so far is compressed (and the heap trimmed after it); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def _run(self) -> None:
        while True:
            snapshot = self._queue.get()
            snapshot.deflated  # noqa: B018 — compresses once; a scrape may have done it already
            snapshot._bodies.release_text()
            large = snapshot.series >= TRIM_AFTER_SERIES
            del snapshot
            if large and self._queue.empty():
                trim()  # the poll that built it freed its parsed document and samples: give those pages back
            with self._idle:
                self._pending -= 1
                if not self._pending:
                    self._idle.notify_all()


TRIM_AFTER_SERIES = 20_000  # trimming costs a few ms; after small polls there is little to give back
COMPRESSOR = _Compressor()


class SnapshotStore:
    """The latest snapshot of every target; readers get an immutable mapping, writers swap it whole."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshots: Mapping[str, Snapshot] = {}

    def current(self) -> Mapping[str, Snapshot]:
        """Every target's snapshot as of now; the mapping never changes after it is returned."""
        return self._snapshots

    def publish(self, snapshot: Snapshot) -> None:
        """Replace one target's snapshot (keeping its text after compression if plain scrapes read the one it replaces)."""
        with self._lock:
            previous = self._snapshots.get(snapshot.target)
            if previous is not None and previous._bodies.read_plain:
                snapshot._bodies.keep_text()
            snapshots = dict(self._snapshots)
            snapshots[snapshot.target] = snapshot
            self._snapshots = snapshots
        COMPRESSOR.submit(snapshot)

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
