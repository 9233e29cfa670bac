"""Label texts a regex cut from a field, remembered across polls, and kept where they do not pin a poll's memory.

Cutting a pod name out of a container id costs an RE2 call (about 1.3 µs); the same ids come back every poll, so
each label remembers its results. Remembering them as they are found would keep the parsed document's own id strings
alive, one every few hundred bytes of CPython's small-object heap: each pins the 1 MiB arena it sits in, and the whole
document's arenas stay resident after it is freed (at 200k series, 75 of the 386 bytes of steady memory per series,
measured in-process). So a poll stages what it found in one flat buffer outside that heap, and `settle`, called once
the poll's document is gone, copies the entries into the table: fresh strings, packed into the arenas that remain.
"""

from __future__ import annotations

from typing import Optional

__all__ = ["LabelMemo"]

_SEPARATOR = "\0"


class LabelMemo:
    """One label's remembered texts: `table` maps a field's value to its label text; new results wait in a buffer."""

    __slots__ = ("table", "limit", "key_limit", "_texts", "_staged", "_pending")

    def __init__(self, limit: int, key_limit: int) -> None:
        self.table: dict[str, str] = {}  # read directly by the mapping's hot path (and its compiled code)
        self.limit = limit
        self.key_limit = key_limit
        self._texts: dict[str, str] = {}  # each distinct label text kept once: ids differ, the namespaces they name repeat
        self._staged = bytearray()
        self._pending = 0

    def stage(self, raw: str, text: str) -> None:
        """Remember `raw` → `text` from the next `settle` on (values too long, or holding NUL, are not remembered)."""
        if len(raw) > self.key_limit or len(self.table) + self._pending >= self.limit:
            return
        if _SEPARATOR in raw or _SEPARATOR in text:
            return
        self._staged += f"{raw}\0{text}\0".encode("utf-8", "surrogatepass")
        self._pending += 1

    def settle(self, shared: Optional[dict[str, str]] = None) -> int:
        """Move the staged entries into the table as new strings; return how many were added.

        Memos settled with the same `shared` dict use one string for equal values (the labels that cut a namespace,
        a pod and a container out of one id then hold each id once, not three times).
        """
        if not self._pending:
            return 0
        staged, self._staged, self._pending = self._staged, bytearray(), 0
        parts = staged.decode("utf-8", "surrogatepass").split(_SEPARATOR)
        del staged
        table, texts = self.table, self._texts
        if shared is None:
            shared = {}
        added = 0
        for i in range(0, len(parts) - 1, 2):
            raw = parts[i]
            if raw not in table and len(table) < self.limit:
                text = parts[i + 1]
                table[shared.setdefault(raw, raw)] = texts.setdefault(text, text)
                added += 1
        return added

    @property
    def staged(self) -> int:
        """How many results wait for the next `settle`."""
        return self._pending

    def __len__(self) -> int:
        return len(self.table)
