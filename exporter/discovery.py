"""Discovery fan-out: fetch a list, then the target's request once per item, a few at a time, inside one deadline.

How items count (also in docs/configuration.md, "Discovery"):

- the list fetch fails → the poll fails with the list's reason (`timeout`, `http_status`, ...);
- the list holds more than `max_items` items → the poll fails with reason `too_large` (nothing is truncated);
- an item fails (its fetch, its request template, or its mapping) → counted in
  `metrics_bridge_discovery_item_failures_total{target,reason}`; the others' samples are served;
- every item failed → the poll fails with the first item's reason; an empty list is a successful, empty poll.

The snapshot is built from this poll's successful items alone, so an item that disappears (or fails) loses its
series at once.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, fields
from typing import Any, Callable, Optional

from .client import FetchError, FetchResult, TargetClient
from .config import LabelFrom, Target
from .largepolls import PollTicket
from .mapping import Mapper, MappingError, MapResult, _label_text
from .paths import PathError, compile_path
from .request import RequestTemplate
from .templating import TemplateFailure
from .verdict import ApiError, Verdict

__all__ = ["Discovery", "DiscoveryFailed", "DiscoveryOutcome", "ItemFailure"]


@dataclass(frozen=True)
class ItemFailure:
    """One discovered item that produced no samples this poll (its message is already redacted)."""

    index: int
    labels: dict[str, str]
    reason: str
    message: str


@dataclass
class DiscoveryOutcome:
    """One fan-out: the merged samples of the items that succeeded, what was fetched, and which items failed."""

    result: MapResult
    fetched: FetchResult
    items: int
    failures: list[ItemFailure]


class DiscoveryFailed(FetchError):
    """The fan-out failed as a whole, but knows how many items were listed and which failed (for the self-metrics)."""

    def __init__(self, outcome: DiscoveryOutcome, reason: str, message: str) -> None:
        super().__init__(reason, message)
        self.outcome = outcome


def _label_reader(spec: LabelFrom) -> Callable[[Any], str]:
    """An item label's raw value: a path (or constant), optionally cut by a regex, else its default."""
    if spec.value is not None:
        constant = spec.value
        return lambda item: constant
    getter = compile_path(spec.path or "@")
    pattern = re.compile(spec.regex) if spec.regex else None
    group: Any = 0
    if pattern is not None:
        group = "value" if "value" in pattern.groupindex else (1 if pattern.groups else 0)
    default = spec.default or ""

    def read(item: Any) -> str:
        raw = _label_text(getter(item))
        if raw is None:
            return default
        if pattern is not None:
            match = pattern.search(raw)
            raw = (match.group(group) if match else None) or default
        return raw

    return read


def merge_results(into: MapResult, other: MapResult) -> None:
    """Add one item's samples and counts to the poll's; a series another item already gave counts as a duplicate."""
    for name, series in other.families.items():
        family = into.families.setdefault(name, {})
        before = len(family)
        family.update(series)
        into.duplicates += before + len(series) - len(family)
    for item in fields(MapResult):
        mine, theirs = getattr(into, item.name), getattr(other, item.name)
        if item.name == "families":
            continue
        if isinstance(theirs, int):
            setattr(into, item.name, mine + theirs)
        elif isinstance(theirs, dict):
            mine.update(theirs)


class Discovery:
    """A target's discovery block, compiled once per configuration."""

    def __init__(self, target: Target, client: TargetClient, mapper: Mapper, verdict: Optional[Verdict] = None) -> None:
        assert target.discovery is not None
        self.target = target
        self.spec = target.discovery
        self.client = client
        self.mapper = mapper
        self.verdict = verdict
        self.list_request = RequestTemplate(self.spec)
        self.item_request = RequestTemplate(target)
        self.each = compile_path(self.spec.each)
        self.labels = [(name, _label_reader(spec)) for name, spec in self.spec.labels.items()]
        self._mappers: dict[tuple[tuple[str, str], ...], Mapper] = {}

    def run(self, context: dict[str, Any], deadline: float, ticket: Optional[PollTicket] = None) -> DiscoveryOutcome:
        """List the items, fetch and map each; raise FetchError when the poll as a whole fails (see the module doc)."""
        redact = self.client.redactor.redact
        try:
            list_request = self.list_request.render(context)
        except TemplateFailure as exc:
            raise FetchError("mapping", redact(f"discovery request template: {exc}")) from None
        try:
            listed = self.client.fetch(request=list_request, deadline=deadline, ticket=ticket)
        except FetchError as error:
            raise FetchError(error.reason, f"discovery list: {error}", error.status) from None
        if self.verdict is not None:
            for document in listed.documents:
                try:
                    self.verdict.check(document)
                except ApiError as error:
                    raise FetchError("api_error", redact(f"discovery list: {error}")) from None
        items = self._items(listed.documents)
        if len(items) > self.spec.max_items:
            outcome = DiscoveryOutcome(self.mapper.new_result(), listed, len(items), [])
            raise DiscoveryFailed(outcome, "too_large", f"discovery found {len(items)} items, more than max_items ({self.spec.max_items})")
        labelled = [(item, {name: read(item) for name, read in self.labels}) for item in items]
        mappers = {key: self._mapper(key) for key in {tuple(labels.items()) for _, labels in labelled}}
        self._mappers = mappers  # items gone from the list take their mappers with them
        outcomes: list[Any] = [None] * len(labelled)
        if labelled:
            outcomes = self._fan_out(labelled, mappers, context, deadline, ticket)
        result = self.mapper.new_result()
        fetched = FetchResult(bytes=listed.bytes, attempts=listed.attempts, api_date=listed.api_date, received_at=listed.received_at)
        fetched.documents = listed.documents
        failures: list[ItemFailure] = []
        for index, ((_, labels), outcome) in enumerate(zip(labelled, outcomes)):
            if isinstance(outcome, ItemFailure):
                failures.append(outcome)
                continue
            item_fetched, item_result = outcome
            merge_results(result, item_result)
            fetched.bytes += item_fetched.bytes
            fetched.attempts += item_fetched.attempts
        done = DiscoveryOutcome(result, fetched, len(labelled), failures)
        limit = self.target.sample_limit
        if limit and result.series > limit:  # each item was checked alone; together they must fit too
            raise DiscoveryFailed(done, "too_large", f"more than sample_limit ({limit}) samples from {len(labelled)} items")
        if labelled and len(failures) == len(labelled):
            first = failures[0]
            raise DiscoveryFailed(done, first.reason, f"all {len(labelled)} discovered items failed; item 0: {first.message}")
        return done

    def settle(self) -> int:
        """After a poll: settle the label memos of the target's mapper and of every listed item's (`Mapper.settle`)."""
        return self.mapper.settle() + sum(m.settle() for m in self._mappers.values() if m is not self.mapper)

    def _items(self, documents: list[Any]) -> list[Any]:
        """The items of every page of the list, in order."""
        items: list[Any] = []
        for page, document in enumerate(documents):
            try:
                found = self.each(document)
            except PathError as exc:
                raise FetchError("mapping", f"discovery.each {self.spec.each!r}: {exc}") from None
            if found is None:
                continue
            if type(found) is not list:
                raise FetchError(
                    "mapping", f"discovery.each {self.spec.each!r}: expected an array, got {type(found).__name__}"
                    + (f" (page {page + 1})" if len(documents) > 1 else "")
                )
            items.extend(found)
        return items

    def _mapper(self, key: tuple[tuple[str, str], ...]) -> Mapper:
        """The target's mappings with one item's labels on every series (kept while the item is listed)."""
        mapper = self._mappers.get(key)
        if mapper is None:
            if not key:
                return self.mapper
            mapper = Mapper(self.target.model_copy(update={"labels": {**self.target.labels, **dict(key)}}))
        return mapper

    def _fan_out(
        self, labelled: list[tuple[Any, dict[str, str]]], mappers: dict[Any, Mapper], context: dict[str, Any],
        deadline: float, ticket: Optional[PollTicket],
    ) -> list[Any]:
        """Fetch and map every item, `concurrency` at a time; an item not done by the deadline fails as `timeout`."""
        workers = min(self.spec.concurrency, len(labelled))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"discovery-{self.target.name}")
        try:
            futures: list[Future[Any]] = [
                pool.submit(self._item, index, item, labels, mappers[tuple(labels.items())], context, deadline, ticket)
                for index, (item, labels) in enumerate(labelled)
            ]
            wait(futures, timeout=max(0.0, deadline - time.monotonic()))
            for future in futures:
                future.cancel()  # those not started yet; the running ones stop at the deadline on their own
        finally:
            # Waits for the running items: each one's requests end at the deadline (connect/read timeouts, body checks).
            pool.shutdown(wait=True, cancel_futures=True)
        outcomes: list[Any] = []
        for index, ((_, labels), future) in enumerate(zip(labelled, futures)):
            if future.cancelled():
                outcomes.append(ItemFailure(index, labels, "timeout", f"not started within the deadline of {self.target.timeout:g}s"))
            else:
                outcomes.append(future.result())
        return outcomes

    def _item(
        self, index: int, item: Any, labels: dict[str, str], mapper: Mapper, context: dict[str, Any], deadline: float,
        ticket: Optional[PollTicket] = None,
    ) -> Any:
        """One item's fetch and mapping: (FetchResult, MapResult), or an ItemFailure. Never raises."""
        redact = self.client.redactor.redact
        try:
            request = self.item_request.render({**context, "item": item})
            fetched = self.client.fetch(request=request, deadline=deadline, new_poll=False, ticket=ticket)
            result = mapper.new_result()
            for document in fetched.documents:
                if self.verdict is not None:
                    self.verdict.check(document)
                mapper.map(document, result, deadline)
            return fetched, result
        except TemplateFailure as exc:
            return ItemFailure(index, labels, "mapping", redact(f"request template: {exc}"))
        except FetchError as error:
            return ItemFailure(index, labels, error.reason, str(error))
        except MappingError as error:  # mapping, or too_large / timeout when the mapping was cut short
            return ItemFailure(index, labels, getattr(error, "reason", "mapping"), redact(str(error)))
        except ApiError as error:
            return ItemFailure(index, labels, "api_error", redact(str(error)))
        except Exception as error:  # a bug costs this item, not the poll
            return ItemFailure(index, labels, "internal", redact(f"{type(error).__name__}: {error}"))
