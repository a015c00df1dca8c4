"""Stored row layout shared by the SQLite and PostgreSQL backends.

A row keeps the indexed columns next to ``body``, the event's full wire JSON (aliases, no
unset optional fields), so an export writes ``body`` as-is and re-validating it gives back the
very same event. Serialising happens once, at the boundary (the HTTP service checks each
event's size on the same bytes), and the store only binds ready-made tuples.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from luanti_tune.schemas.event import EventBase
from luanti_tune.store.interface import AppendResult, EventQuery, Store, StoreStats


class EventRow(NamedTuple):
    source: str
    seq: int
    type: str
    wall_us: int
    actor_kind: str
    actor_name: str
    episode_id: str | None
    body: str


COLUMNS: tuple[str, ...] = EventRow._fields


def event_json(event: EventBase) -> str:
    """The event's canonical wire JSON (what the store keeps and exports)."""
    return event.model_dump_json(by_alias=True, exclude_none=True)


def event_row(event: EventBase, body: str | None = None) -> EventRow:
    """The stored row of a validated event; ``body`` may be given when already serialised."""
    return EventRow(
        event.source,
        event.seq,
        event.type,  # type: ignore[attr-defined]
        event.time.wall_us,
        event.actor.kind,
        event.actor.name,
        event.episode_id,
        event_json(event) if body is None else body,
    )


@dataclass(frozen=True)
class CommitResult(AppendResult):
    """The outcome of one committed row batch: an :class:`AppendResult` that also says how many
    new events each type got."""

    accepted_by_type: dict[str, int] = field(default_factory=dict)


def count_types(rows: Sequence[EventRow]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in rows:  # positional: rows may arrive as plain tuples (from a validation worker)
        counts[r[2]] = counts.get(r[2], 0) + 1
    return counts


class RowStore(Store):
    """A store that commits several ready-made row batches in ONE transaction (group commit)."""

    def append(self, events: Sequence[EventBase]) -> AppendResult:
        return self.append_rows([event_row(e) for e in events])

    def append_rows(self, rows: Sequence[EventRow]) -> CommitResult:
        """One batch, one transaction: all new rows or none; duplicate ``(source, seq)`` skipped."""
        return self.append_batches([rows])[0]

    @abc.abstractmethod
    def append_batches(self, batches: Sequence[Sequence[EventRow]]) -> list[CommitResult]:
        """Commit every batch in one transaction and report each batch's own outcome.

        Either everything is committed or nothing is (the error propagates); duplicates within a
        batch, across batches of the call, and with stored events are all counted as duplicates.
        """

    @abc.abstractmethod
    def iter_rows(self, query: EventQuery | None = None, batch_size: int = 5000) -> Iterator[tuple[int, str]]:
        """Stream ``(id, body)`` of matching events in ``id`` order (export writes ``body`` as-is)."""

    def iter_events(self, query: EventQuery | None = None, batch_size: int = 5000) -> Iterator[dict[str, Any]]:
        for row_id, body in self.iter_rows(query, batch_size):
            event: dict[str, Any] = orjson.loads(body)
            event["_id"] = row_id
            yield event


class SQLRowStore(RowStore):
    """A :class:`RowStore` over an SQL ``events`` table: the reads both backends write alike."""

    @abc.abstractmethod
    def _read(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Run one read-only statement and return all its rows."""

    def stats(self) -> StoreStats:
        by_type = {t: int(n) for t, n in self._read("SELECT type, count(*) FROM events GROUP BY type ORDER BY type")}
        sources = {
            s: int(n) for s, n in self._read("SELECT source, count(*) FROM events GROUP BY source ORDER BY source")
        }
        return StoreStats(events=sum(by_type.values()), by_type=by_type, sources=sources, max_id=self.max_id())

    def max_id(self) -> int:
        return int(self._read("SELECT coalesce(max(id), 0) FROM events")[0][0])

    def ping(self) -> None:
        self._read("SELECT 1")


def where_clause(query: EventQuery, placeholder: str) -> tuple[str, list[Any]]:
    """SQL conditions (joined by AND, without the id cursor) and their parameters."""
    conds: list[str] = []
    params: list[Any] = []

    def add(sql: str, *values: Any) -> None:
        conds.append(sql.replace("?", placeholder))
        params.extend(values)

    if query.types:
        add(f"type IN ({', '.join('?' * len(query.types))})", *query.types)
    if query.sources:
        add(f"source IN ({', '.join('?' * len(query.sources))})", *query.sources)
    if query.actor_name is not None:
        add("actor_name = ?", query.actor_name)
    if query.actor_kind is not None:
        add("actor_kind = ?", query.actor_kind)
    if query.episode_id is not None:
        add("episode_id = ?", query.episode_id)
    if query.since_us is not None:
        add("wall_us >= ?", query.since_us)
    if query.until_us is not None:
        add("wall_us < ?", query.until_us)
    if query.until_id is not None:
        add("id <= ?", query.until_id)
    return " AND ".join(conds), params


def paged(
    fetch: Callable[[int, int], list[tuple[int, str]]], query: EventQuery, batch_size: int
) -> Iterator[tuple[int, str]]:
    """Keyset pagination: ``fetch(after_id, n)`` returns up to n rows with id > after_id in id order."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    after = query.after_id
    left = query.limit
    while left is None or left > 0:
        n = batch_size if left is None else min(batch_size, left)
        page = fetch(after, n)
        if not page:
            return
        yield from page
        after = page[-1][0]
        if left is not None:
            left -= len(page)
        if len(page) < n:
            return
