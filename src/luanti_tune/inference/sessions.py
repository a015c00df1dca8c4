"""Bounded per-agent memory (LRU + TTL) handed to family adapters as :data:`AgentMemory`.

Agents come and go; a long-running server must not grow one dict per agent name it ever saw.
The engine calls :meth:`SessionStore.touch` with the agent ids of each batch (refreshing their
recency in one C-level update), lets the adapter read/write entries through the plain mapping interface,
then calls :meth:`SessionStore.enforce` which drops expired entries and the least recently used
ones beyond ``max_agents``. Between batches ``len(store) <= max_agents`` always holds.

Not thread-safe on purpose: the engine runs batches of one family serially.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import Any

_NEVER = (0, -math.inf)

#: ``[recency counter, last-seen time]``, shared by every agent of one :meth:`SessionStore.touch`.
Stamp = list[float]


class SessionStore(MutableMapping[str, dict[str, Any]]):
    """An LRU/TTL-bounded ``agent id -> dict`` mapping.

    Recency is a counter bumped once per :meth:`touch` (a whole batch shares one stamp, in C:
    ``dict.update``), so touching 1000 agents costs tens of microseconds, and touching exactly the
    agents of the previous touch again (a server's next step) only updates their shared stamp in
    place (no key of theirs got another stamp since, so this is exact); the least recently used
    entries are found by sorting only when the store overflows, expired ones by a sweep that runs
    only once the oldest last-seen time can have passed the TTL.
    """

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
        self._data: dict[str, dict[str, Any]] = {}
        #: ``(recency counter, last-seen time)`` per key; may hold keys not (or no longer) in _data
        self._seen: dict[str, Stamp | tuple[int, float]] = {}
        self._counter = 0
        #: the agents of the last touch and their stamp (``None`` once any key got another stamp)
        self._last: tuple[list[str], Stamp] | None = None
        self._oldest = math.inf  # a lower bound of the last-seen times of the entries
        self.evicted = 0

    # -- mapping interface used by adapters (no bookkeeping on reads: touch() does it per batch)
    def __getitem__(self, key: str) -> dict[str, Any]:
        return self._data[key]

    def __setitem__(self, key: str, value: dict[str, Any]) -> None:
        if key not in self._data:
            now = self._clock()
            self._counter += 1
            last = self._last
            if last is not None and self._seen.get(key) is last[1]:
                self._last = None  # one of the last touch's agents gets a stamp of its own
            self._seen[key] = (self._counter, now)
            if now < self._oldest:
                self._oldest = now
        self._data[key] = value

    def __delitem__(self, key: str) -> None:
        del self._data[key]
        self._seen.pop(key, None)
        self._last = None

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    # -- bookkeeping
    def touch(self, agents: Iterable[str]) -> list[str]:
        """Mark ``agents`` as just seen (most recently used).

        Returns the agents as a list the store keeps (do not modify it): the previous touch's list
        when it holds the same agents in the same order, so that a caller can hand that list on and
        later equality checks against it compare identical strings."""
        now = self._clock()
        self._counter += 1
        names = list(agents)  # a copy: the caller may reuse its list
        last = self._last
        if last is not None and (last[0] is agents or last[0] == names):
            stamp = last[1]
            stamp[0] = self._counter
            stamp[1] = now
            return last[0]
        stamp = [self._counter, now]
        self._seen.update(dict.fromkeys(names, stamp))
        self._last = (names, stamp)
        return names

    def enforce(self) -> int:
        """Drop expired and overflowing entries (least recently used first); returns how many."""
        data = self._data
        deadline = self._clock() - self.ttl_s
        dropped = 0
        if self._oldest < deadline:  # something may have expired: sweep
            seen = self._seen
            expired = [k for k in data if seen.get(k, _NEVER)[1] < deadline]
            for k in expired:
                del self[k]
            dropped += len(expired)
            self._prune()
        if len(data) > self.max_agents:
            seen = self._seen
            order = sorted(data, key=lambda k: seen.get(k, _NEVER)[0])
            for k in order[: len(data) - self.max_agents]:
                del self[k]
                dropped += 1
            self._prune()
        elif len(self._seen) > 2 * self.max_agents + 1024:  # touched keys that never got an entry
            self._prune()
        self.evicted += dropped
        return dropped

    def _prune(self) -> None:
        """Forget bookkeeping of keys without an entry; recompute the oldest last-seen time."""
        data = self._data
        if len(self._seen) != len(data):
            self._seen = {k: v for k, v in self._seen.items() if k in data}
            self._last = None
        self._oldest = min((t for _, t in self._seen.values()), default=math.inf)
