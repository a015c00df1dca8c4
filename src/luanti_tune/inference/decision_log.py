"""Log served decisions back into the store as sampled ``agent.act`` events, and what agents saw
of their targets as ``agent.track`` events (:mod:`~luanti_tune.inference.track_log`).

The hot path only samples and enqueues plain tuples (one hand-over per engine batch; the writer
thread is woken only once ``flush_items`` decisions are queued, else by its ``flush_every_s``
timer, so it seldom takes the GIL from the engine); a daemon
thread builds and validates the events and appends them in batches, so a slow store never delays a
decision. A full queue drops (counted in ``act_log_dropped_total``) instead of growing.

The writer holds the GIL while it builds events, and a request being decided meanwhile waits
for it. The engine's own decisions (finite ``move``/``wait`` actions of the shape the families
build) are therefore written as stored rows straight from their values (:func:`trusted_body`,
about a quarter of the cost of validating them with the event schema); anything else goes through
the schema, which drops what is invalid (counted).
"""

from __future__ import annotations

import logging
import math
import os
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import orjson

from luanti_tune.inference.metrics import Metrics, metrics
from luanti_tune.inference.track_log import TrackRecorder
from luanti_tune.policies.base import Sightings
from luanti_tune.store.base import Store
from luanti_tune.store.rows import EventRow, RowStore, event_row

log = logging.getLogger(__name__)

#: (agent, tick, pos dict, action dict, model, version, fallback reason)
LogItem = tuple[str, int, dict[str, float], dict[str, Any], str | None, str | None, str | None]

_XYZ = ("x", "y", "z")
_ACTION_KEYS = ("agent", "type", "args")
_MOVE_KEYS = ("dir", "speed")
_WAIT_KEYS = ("ticks",)
#: the event schema's length limits of the payload's model, version and fallback strings
_PAYLOAD_LIMITS = (("model", 128), ("version", 64), ("fallback", 64))


def _xyz(v: Any) -> bool:
    """Whether ``v`` is ``{"x", "y", "z"}`` of finite floats (in that order)."""
    return (
        type(v) is dict
        and tuple(v) == _XYZ
        and type(v["x"]) is float
        and type(v["y"]) is float
        and type(v["z"]) is float
        and math.isfinite(v["x"] + v["y"] + v["z"])
    )


def _action_ok(action: Any, agent: str) -> bool:
    """Whether ``action`` is a move or wait of ``agent`` that the event schema accepts as it is
    (``MoveArgs``: a finite direction of length <= 1.5, speed in [0, 1]; ``WaitArgs``: 1..1000
    ticks), in the JSON form and key order the schema serialises."""
    if type(action) is not dict or tuple(action) != _ACTION_KEYS or action["agent"] != agent:
        return False
    args = action["args"]
    if type(args) is not dict:
        return False
    kind = action["type"]
    if kind == "move":
        if tuple(args) != _MOVE_KEYS or not _xyz(args["dir"]):
            return False
        d, speed = args["dir"], args["speed"]
        return type(speed) is float and 0.0 <= speed <= 1.0 and d["x"] ** 2 + d["y"] ** 2 + d["z"] ** 2 <= 2.25
    if kind == "wait":
        ticks = args.get("ticks")
        return tuple(args) == _WAIT_KEYS and type(ticks) is int and 1 <= ticks <= 1000
    return False


def _source_ok(source: str) -> bool:
    """Whether the event schema accepts ``source`` (checked once, on a sample event)."""
    from luanti_tune.schemas.event import parse_event

    sample = {
        "schema": "luanti.event/1",
        "source": source,
        "seq": 0,
        "type": "agent.act",
        "time": {"wall_us": 0, "game_s": 0.0, "tick": 0},
        "actor": {"kind": "agent", "name": "a"},
        "payload": {"action": {"agent": "a", "type": "wait", "args": {"ticks": 1}}},
    }
    try:
        parse_event(sample)
    except ValueError:
        return False
    return True


def trusted_body(raw: dict[str, Any]) -> str | None:
    """The stored JSON of the ``agent.act`` event ``raw`` (built by the writer: schema, source and
    seq are its own, the actor's name is an agent name the request validated) when its values are
    of the exact types and ranges the event schema accepts, else ``None`` (validate it instead).

    Equal to what validating ``raw`` and serialising the event gives (tested), at a quarter of the
    cost: the writer holds the GIL while it builds events."""
    agent = raw["actor"]["name"]
    payload = raw["payload"]
    tick = raw["time"]["tick"]
    if type(tick) is not int or tick < 0 or not _xyz(raw["pos"]) or not _action_ok(payload["action"], agent):
        return None
    for key, limit in _PAYLOAD_LIMITS:
        value = payload.get(key)
        if value is not None and (type(value) is not str or len(value) > limit):
            return None
    return orjson.dumps(raw).decode()


class DecisionLogger:
    """Sampled, asynchronous ``agent.act`` writer."""

    def __init__(
        self,
        store: Store,
        sample_rate: float = 0.01,
        *,
        source: str | None = None,
        max_queue: int = 10_000,
        flush_every_s: float = 0.5,
        flush_items: int = 64,
        seed: int | None = None,
        record_tracks: bool = True,
    ) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError("sample_rate must be within [0, 1]")
        if max_queue < 1 or flush_items < 1:
            raise ValueError("max_queue and flush_items must be >= 1")
        self.store = store
        self.sample_rate = sample_rate
        host = socket.gethostname().replace(" ", "_")[:40] or "host"
        self.source = source or f"act.{host}.{os.getpid()}"
        # rows are written without the schema only under a source the schema accepts
        self._trusted_source = _source_ok(self.source)
        # Sequence numbers start at the wall clock in microseconds so a restarted process never
        # reuses a (source, seq) key of its previous life.
        self._seq = time.time_ns() // 1000
        self.max_queue = max_queue
        self._batches: deque[Sequence[LogItem]] = deque()  # offered, not yet taken by the writer
        self._queued = 0  # decisions in _batches
        self._cond = threading.Condition(threading.Lock())
        self._flush_every_s = flush_every_s
        # small writes: the writer holds the GIL while it validates, and a request being decided
        # meanwhile waits for it; 64 events cost ~1.5 ms, 500 cost ~11 ms of one request's p99
        self._flush_items = flush_items
        self._rng = random.Random(seed)
        self._np_rng: Any = None  # numpy Generator for large batches, made on first use
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self.written = 0  # agent.act events
        self.tracks_written = 0  # agent.track events
        self.dropped = 0
        self.metrics: Metrics | None = None  # set by the engine (its registry)
        #: what agents saw of their targets, written as ``agent.track`` events by the same thread
        self.tracks: TrackRecorder | None = TrackRecorder() if record_tracks else None

    def sample(self, n: int) -> list[int]:
        """Indices (of ``n`` decisions) to log."""
        rate = self.sample_rate
        if rate <= 0.0 or n == 0:
            return []
        if rate >= 1.0:
            return list(range(n))
        k = sum(1 for _ in range(n) if self._rng.random() < rate) if n < 64 else self._binomial(n, rate)
        return sorted(self._rng.sample(range(n), k)) if k else []

    def _binomial(self, n: int, p: float) -> int:
        if self._np_rng is None:
            import numpy as np

            self._np_rng = np.random.default_rng(self._rng.getrandbits(63))
        return int(self._np_rng.binomial(n, p))

    def offer(self, items: Sequence[LogItem]) -> None:
        """Queue ``items`` for writing; what does not fit into ``max_queue``, or comes after
        :meth:`close`, is dropped (counted)."""
        if not items:
            return
        with self._cond:
            room = 0 if self._stopped.is_set() else self.max_queue - self._queued
            if room > 0:
                take = items if len(items) <= room else items[:room]
                self._batches.append(take)
                self._queued += len(take)
                self._ensure_thread()  # under the lock: close() cannot come in between
                if self._queued >= self._flush_items:
                    # a write is due; smaller amounts wait for the writer's timer, so it does not
                    # wake (and take the GIL from the engine) after every batch
                    self._cond.notify()
            lost = len(items) - max(room, 0)
            if lost > 0:
                self.dropped += lost
        if lost > 0:
            (self.metrics or metrics()).log_dropped.inc(lost)

    def offer_sightings(self, seen: Sightings) -> None:
        """Keep what agents saw for the next ``agent.track`` write (nothing when not recording)."""
        if self.tracks is None or self._stopped.is_set():
            return
        self.tracks.offer(seen)
        if self._thread is None:
            with self._cond:
                if not self._stopped.is_set():
                    self._ensure_thread()

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="act-decision-log", daemon=True)
            self._thread.start()

    def _take(self, timeout: float) -> list[LogItem]:
        """Every queued decision (waiting up to ``timeout`` for a full write's worth)."""
        with self._cond:
            if self._queued < self._flush_items and not self._stopped.is_set():
                self._cond.wait(timeout)
            out = [item for batch in self._batches for item in batch]
            self._batches.clear()
            self._queued = 0
            return out

    def _run(self) -> None:
        pending: list[LogItem] = []
        last = time.monotonic()
        while True:
            stopping = self._stopped.is_set()
            pending += self._take(self._flush_every_s)
            if self.tracks is not None and (stopping or self.tracks.due()):
                self._write_tracks()
            # small writes: the writer holds the GIL while it validates
            while len(pending) >= self._flush_items:
                self._write(pending[: self._flush_items])
                del pending[: self._flush_items]
                last = time.monotonic()
            if pending and (stopping or time.monotonic() - last >= self._flush_every_s):
                self._write(pending)
                pending = []
                last = time.monotonic()
            if stopping:
                return

    def _write_tracks(self) -> None:
        """The track recorder's pending sightings as ``agent.track`` events (validated)."""
        assert self.tracks is not None
        from luanti_tune.schemas.event import parse_event

        raws = self.tracks.events(self.source, self._seq + 1, time.time_ns() // 1000)
        self._seq += len(raws)
        events = []
        for raw in raws:
            try:
                events.append(parse_event(raw))
            except Exception as exc:  # noqa: BLE001 - a bad sighting must not kill the logger
                log.warning("dropping unrecordable track of %s: %s", raw["actor"]["name"], exc)
        rows = [event_row(e) for e in events] if isinstance(self.store, RowStore) else []
        self.tracks_written += self._append(rows, events)

    def _append(self, rows: list[EventRow], events: list[Any]) -> int:
        """Store ``rows`` (a row store) or ``events``; how many were stored (a store error is
        counted as dropped, never raised)."""
        rows_store = isinstance(self.store, RowStore)
        count = len(rows) if rows_store else len(events)
        if count == 0:
            return 0
        try:
            if rows_store:
                result = self.store.append_rows(rows)  # type: ignore[attr-defined]
            else:
                result = self.store.append(events)
            return int(result.accepted)
        except Exception as exc:  # noqa: BLE001 - store down: count and move on
            log.warning("could not log %d agent events: %s", count, exc)
            with self._cond:
                self.dropped += count
            (self.metrics or metrics()).log_dropped.inc(count)
            return 0

    def _write(self, items: list[LogItem]) -> None:
        if not items:
            return
        from luanti_tune.schemas.event import parse_event

        rows_store = isinstance(self.store, RowStore)
        fast = rows_store and self._trusted_source
        rows: list[EventRow] = []
        events = []
        source = self.source
        wall = time.time_ns() // 1000
        for agent, tick, pos, action, model, version, fallback in items:
            self._seq += 1
            payload: dict[str, Any] = {"action": action}
            if model is not None:
                payload["model"] = model
            if version is not None:
                payload["version"] = version
            if fallback is not None:
                payload["fallback"] = fallback
            raw = {  # the key order of the schema's own serialisation
                "schema": "luanti.event/1",
                "source": source,
                "seq": self._seq,
                "time": {"wall_us": wall, "game_s": 0.0, "tick": tick},
                "actor": {"kind": "agent", "name": agent},
                "pos": pos,
                "type": "agent.act",
                "payload": payload,
            }
            body = trusted_body(raw) if fast else None
            if body is not None:
                rows.append(EventRow(source, self._seq, "agent.act", wall, "agent", agent, None, body))
                continue
            try:
                event = parse_event(raw)
            except Exception as exc:  # noqa: BLE001 - a bad decision must not kill the logger
                log.warning("dropping unloggable decision of %s: %s", agent, exc)
                with self._cond:
                    self.dropped += 1
                continue
            if rows_store:
                rows.append(event_row(event))
            else:
                events.append(event)
        self.written += self._append(rows, events)

    def close(self, timeout: float = 5.0) -> None:
        """Flush what is queued and stop the writer thread; later offers are dropped (counted)."""
        with self._cond:
            self._stopped.set()
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
