"""Record what agents saw of their targets when they decided, as compact ``agent.track`` events.

Train like you serve: a pursuit model served at the decision rate (every ``act_interval`` server
steps) is best trained on the target tracks it was served, not on ``player.move`` samples at
2 Hz. The engine hands each batch's :class:`~luanti_tune.policies.base.Sightings` to
:meth:`TrackRecorder.offer` (a list append: nothing is copied or grouped on the engine thread);
the decision log's writer thread calls :meth:`TrackRecorder.events` every ``flush_s`` and stores
one ``agent.track`` event per (agent, target) with every decision since the last flush, ticks
strictly increasing (a retried tick keeps its last sighting).

Bounded: at most ``max_pending`` sightings wait (more are dropped and counted) and at most
``max_tracks`` (agent, target) pairs are written per flush, always the same ones while they last
(ordered by a stable hash), so recorded tracks stay continuous when there are more agents.
"""

from __future__ import annotations

import threading
import time
import zlib
from typing import Any

import numpy as np

from luanti_tune.policies.base import Sightings
from luanti_tune.schemas.agent import TICK_S
from luanti_tune.schemas.event import MAX_TRACK_KNOTS


class TrackRecorder:
    def __init__(self, *, flush_s: float = 4.0, max_tracks: int = 512, max_pending: int = 500_000) -> None:
        if flush_s <= 0 or max_tracks < 1 or max_pending < 1:
            raise ValueError("flush_s must be > 0, max_tracks and max_pending >= 1")
        self.flush_s = flush_s
        self.max_tracks = max_tracks
        self.max_pending = max_pending
        self._lock = threading.Lock()
        self._pending: list[Sightings] = []
        self._count = 0
        self._last = time.monotonic()
        self.dropped = 0
        self.recorded = 0  # knots written into events

    def offer(self, seen: Sightings) -> None:
        """Keep ``seen`` for the next flush (engine thread)."""
        n = len(seen)
        if n == 0:
            return
        with self._lock:
            if self._count + n > self.max_pending:
                self.dropped += n
                return
            self._pending.append(seen)
            self._count += n

    def due(self, now: float | None = None) -> bool:
        return self._count > 0 and (now if now is not None else time.monotonic()) - self._last >= self.flush_s

    def events(self, source: str, first_seq: int, wall_us: int) -> list[dict[str, Any]]:
        """Every pending sighting as ``agent.track`` wire events (``seq`` from ``first_seq`` on)."""
        with self._lock:
            parts, self._pending, self._count = self._pending, [], 0
            self._last = time.monotonic()
        if not parts:
            return []
        agents = [a for p in parts for a in p.agents]
        targets = [t for p in parts for t in p.targets]
        ticks = np.concatenate([p.ticks for p in parts])
        cols = np.column_stack(
            [
                np.concatenate([p.target_xz for p in parts]),
                np.concatenate([p.target_vel for p in parts]),
                np.concatenate([p.agent_xz for p in parts]),
            ]
        )
        keys = [f"{a}\x00{t}" for a, t in zip(agents, targets, strict=True)]
        uniq, inverse = np.unique(np.asarray(keys, dtype=object), return_inverse=True)
        names = [str(u) for u in uniq]
        pairs = sorted(range(len(names)), key=lambda g: (zlib.crc32(names[g].encode()), names[g]))[: self.max_tracks]
        # rows of each kept pair in arrival order
        order = np.argsort(inverse, kind="stable")
        out: list[dict[str, Any]] = []
        seq = first_seq
        starts = np.searchsorted(inverse[order], np.arange(len(uniq) + 1))
        for g in sorted(pairs):
            rows = order[starts[g] : starts[g + 1]]
            rows = rows[np.isfinite(cols[rows]).all(axis=1)]
            agent, target = names[g].split("\x00", 1)
            for r in _runs(rows, ticks):
                t = ticks[r]
                c = cols[r]
                out.append(
                    {
                        "schema": "luanti.event/1",
                        "source": source,
                        "seq": seq,
                        "type": "agent.track",
                        "time": {"wall_us": wall_us, "game_s": round(float(t[-1]) * TICK_S, 3), "tick": int(t[-1])},
                        "actor": {"kind": "agent", "name": agent},
                        "target": {"kind": "player", "name": target},
                        "payload": {
                            "target": target,
                            "tick": t.tolist(),
                            "x": c[:, 0].tolist(),
                            "z": c[:, 1].tolist(),
                            "vx": c[:, 2].tolist(),
                            "vz": c[:, 3].tolist(),
                            "ax": c[:, 4].tolist(),
                            "az": c[:, 5].tolist(),
                        },
                    }
                )
                seq += 1
                self.recorded += len(r)
        return out


def _runs(rows: np.ndarray, ticks: np.ndarray) -> list[np.ndarray]:
    """``rows`` (arrival order) as runs of strictly increasing ticks, at most
    :data:`MAX_TRACK_KNOTS` each: a repeated tick (a retried request) replaces the sighting before
    it; a tick going back (the server or episode started over) starts a new run."""
    tk = ticks[rows]
    keep = np.append(tk[1:] != tk[:-1], True)
    rows, tk = rows[keep], tk[keep]
    cuts = np.flatnonzero(tk[1:] < tk[:-1]) + 1
    out = []
    for run in np.split(rows, cuts):
        out += [run[lo : lo + MAX_TRACK_KNOTS] for lo in range(0, len(run), MAX_TRACK_KNOTS)]
    return [r for r in out if len(r)]
