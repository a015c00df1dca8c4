"""The ``Store`` interface: append-only, idempotent event storage (docs/design.md "Storage").

Backends (:mod:`luanti_tune.store.sqlite`, the embedded default, and
:mod:`luanti_tune.store.postgres`) implement it; :func:`luanti_tune.store.base.open_store` opens
one by URL. Events are validated before they reach a store; a store trusts its input. Every
stored event gets a global, increasing ``id`` (arrival order), which dataset builders use as a
stable cursor.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from luanti_tune.schemas.event import EventBase


@dataclass(frozen=True)
class AppendResult:
    """Outcome of one batch: ``accepted`` new events, ``duplicates`` already stored."""

    accepted: int
    duplicates: int


@dataclass(frozen=True)
class EventQuery:
    """Filters of :meth:`Store.iter_events`; every field is optional and they combine with AND."""

    types: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    actor_name: str | None = None
    actor_kind: str | None = None
    episode_id: str | None = None
    since_us: int | None = None
    until_us: int | None = None
    after_id: int = 0
    until_id: int | None = None
    limit: int | None = None


@dataclass
class StoreStats:
    events: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    sources: dict[str, int] = field(default_factory=dict)
    max_id: int = 0


class Store(abc.ABC):
    """Append-only event store keyed by ``(source, seq)``."""

    url: str

    @abc.abstractmethod
    def append(self, events: Sequence[EventBase]) -> AppendResult:
        """Store a batch in one transaction: all new events or none; duplicates are skipped."""

    @abc.abstractmethod
    def iter_events(self, query: EventQuery | None = None, batch_size: int = 5000) -> Iterator[dict[str, Any]]:
        """Stream matching events in ``id`` order as wire dicts with an extra ``"_id"`` key."""

    @abc.abstractmethod
    def stats(self) -> StoreStats:
        """Totals by type and by source."""

    @abc.abstractmethod
    def max_id(self) -> int:
        """Largest stored event id (0 when empty): a cursor for "new events since"."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise :class:`~luanti_tune.errors.StoreUnavailable` if the backend cannot serve."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections; the store cannot be used afterwards."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
