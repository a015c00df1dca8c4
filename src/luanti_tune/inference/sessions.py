"""Bounded per-agent memory (LRU + TTL) handed to family adapters as :data:`AgentMemory`.

Agents come and go; a long-running server must not grow one dict per agent name it ever saw.
The engine calls :meth:`SessionStore.touch` with the agent ids of each batch (refreshing their
recency in one loop), lets the adapter read/write entries through the plain mapping interface,
then calls :meth:`SessionStore.enforce` which drops expired entries and the least recently used
ones beyond ``max_agents``. Between batches ``len(store) <= max_agents`` always holds.

Not thread-safe on purpose: the engine runs batches of one family serially.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import Any


class SessionStore(MutableMapping[str, dict[str, Any]]):
    """An LRU/TTL-bounded ``agent id -> dict`` mapping."""

    def __init__(
        self, max_agents: int = 10_000, ttl_s: float = 300.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_agents < 1:
            raise ValueError("max_agents must be >= 1")
        if ttl_s <= 0:
            raise ValueError("ttl_s must be > 0")
        self.max_agents = max_agents
        self.ttl_s = ttl_s
        self._clock = clock
        self._data: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._seen: dict[str, float] = {}
        self.evicted = 0

    # -- mapping interface used by adapters (no bookkeeping on reads: touch() does it per batch)
    def __getitem__(self, key: str) -> dict[str, Any]:
        return self._data[key]

    def __setitem__(self, key: str, value: dict[str, Any]) -> None:
        if key not in self._data:
            self._seen[key] = self._clock()
        self._data[key] = value

    def __delitem__(self, key: str) -> None:
        del self._data[key]
        self._seen.pop(key, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    # -- bookkeeping
    def touch(self, agents: Iterable[str]) -> None:
        """Mark ``agents`` as just seen (most recently used)."""
        now = self._clock()
        data, seen = self._data, self._seen
        move = data.move_to_end
        for a in agents:
            if a in data:
                move(a)
                seen[a] = now

    def enforce(self) -> int:
        """Drop expired and overflowing entries (oldest first); returns how many were dropped."""
        data, seen = self._data, self._seen
        deadline = self._clock() - self.ttl_s
        dropped = 0
        while data:
            oldest = next(iter(data))
            if len(data) > self.max_agents or seen.get(oldest, 0.0) < deadline:
                data.popitem(last=False)
                seen.pop(oldest, None)
                dropped += 1
            else:
                break
        self.evicted += dropped
        return dropped
