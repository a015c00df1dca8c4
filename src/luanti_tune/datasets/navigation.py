"""Traversal experience dataset for the navigation family.

Built from the events navigating agents emit (``agent.obs`` -> ``agent.act`` -> next
``agent.obs``, plus ``agent.result``): each decision that asked the agent to move becomes one
sample with

* its local voxel context (``codes``: node codes around the agent, ``(s, s, s)`` in
  ``(y, z, x)`` order) and its experience map at that moment (``exp``; replayed with the
  exact function the running agent uses, :func:`~luanti_tune.policies.navigation.update_experience`);
* outcome labels attached to cells of that grid: ``speed`` (achieved fraction of walk speed,
  at the agent's cell), ``damage`` (hp lost per decision step) and ``fell`` (dropped to a
  lower cell) at the cell it ended in (``hit_off``), ``blocked`` at the cell it moved toward
  (``ahead_off``).

Episodes never straddle the split: whole episodes (``source`` + ``episode_id``; without an
episode id, one agent's stream) go to one side, the most recent ones to validation, i.e. a
split by episode *and* by time. The result is a :class:`~luanti_tune.datasets.common.Dataset`
(arrays + ``is_val`` + manifest with event range, filters, feature spec, counts, hash).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from luanti_tune.datasets.common import Dataset, arrays_hash, base_manifest, split_by_group
from luanti_tune.errors import TrainingSkipped
from luanti_tune.policies.navigation import (
    BLOCKED_PROGRESS,
    DECISION_SECONDS,
    MEMORY_CHANNELS,
    NODE_CODES,
    NODE_SECONDS,
    WINDOW,
    action_direction,
    cell_of,
    cell_windows,
    experience_channels,
    grid_codes,
    label_offsets,
    note_decision,
    update_experience,
)
from luanti_tune.schemas.agent import Observation
from luanti_tune.schemas.event import AgentActPayload, LastResult

log = logging.getLogger(__name__)

KIND = "navigation"
EVENT_TYPES = ("agent.obs", "agent.act", "agent.result")
#: Arrays of a navigation dataset besides ``is_val``.
ARRAYS = (
    "codes",
    "win_codes",
    "win_exp",
    "hit_off",
    "ahead_off",
    "speed",
    "speed_mask",
    "damage",
    "fell",
    "blocked",
    "unit",
    "event_id",
)
WALK_SPEED = 1.0 / NODE_SECONDS


# ----------------------------------------------------------------------------- building


@dataclass
class _Track:
    """Replay state of one agent in one episode."""

    unit: int
    mem: dict[str, Any] = field(default_factory=dict)
    obs: Observation | None = None
    obs_time: float = 0.0
    obs_id: int = 0
    codes: np.ndarray | None = None
    exp: np.ndarray | None = None
    direction: tuple[float, float] | None = None
    failed: bool = False


class _Builder:
    def __init__(self, radius: int) -> None:
        self.radius = radius
        self.tracks: dict[tuple[str, str, str], _Track] = {}
        self.units: dict[tuple[str, str], int] = {}
        self.unit_first_id: list[int] = []
        self.rows: dict[str, list[Any]] = {k: [] for k in ARRAYS}
        self.skipped: dict[str, int] = {}
        self.first_id: int | None = None
        self.last_id = 0

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def track(self, ev: Mapping[str, Any]) -> _Track:
        source = str(ev["source"])
        episode = str(ev.get("episode_id") or "")
        agent = str(ev["actor"]["name"])
        unit_key = (source, episode or f"agent:{agent}")
        key = (source, episode, agent)
        tr = self.tracks.get(key)
        if tr is None:
            if unit_key not in self.units:
                self.units[unit_key] = len(self.units)
                self.unit_first_id.append(int(ev["_id"]))
            tr = _Track(unit=self.units[unit_key])
            self.tracks[key] = tr
        return tr

    def add(self, ev: Mapping[str, Any]) -> None:
        eid = int(ev["_id"])
        self.first_id = eid if self.first_id is None else self.first_id
        self.last_id = eid
        etype = ev["type"]
        payload = ev.get("payload") or {}
        if etype == "agent.obs":
            if payload.get("kind") != "navigation":
                return
            obs = Observation.model_validate(payload)
            tr = self.track(ev)
            t = float(ev["time"]["game_s"])
            if tr.obs is not None and tr.direction is not None:
                self.emit(tr, obs, t)
            elif tr.obs is not None:
                self.skip("no_move")
            update_experience(tr.mem, obs)
            tr.obs, tr.obs_time, tr.obs_id = obs, t, eid
            tr.codes = grid_codes(obs, self.radius)
            tr.exp = experience_channels(tr.mem, cell_of(obs.pos), self.radius).astype(np.float16)
            tr.direction, tr.failed = None, False
        elif etype == "agent.act":
            key = (str(ev["source"]), str(ev.get("episode_id") or ""), str(ev["actor"]["name"]))
            found = self.tracks.get(key)
            if found is None or found.obs is None:
                return
            act = AgentActPayload.model_validate(payload).action
            found.direction = action_direction(found.obs, act)
            note_decision(found.mem, found.obs, act)
        elif etype == "agent.result":
            key = (str(ev["source"]), str(ev.get("episode_id") or ""), str(ev["actor"]["name"]))
            found = self.tracks.get(key)
            if found is not None and found.obs is not None and not LastResult.model_validate(payload).ok:
                found.failed = True

    def emit(self, tr: _Track, nxt: Observation, t: float) -> None:
        obs, d = tr.obs, tr.direction
        assert obs is not None and d is not None and tr.codes is not None and tr.exp is not None
        dt = t - tr.obs_time
        if not (dt > 0 and math.isfinite(dt)) or dt > 20 * DECISION_SECONDS:
            self.skip("bad_dt")
            return
        if nxt.hp <= 0 and obs.hp <= 0:
            self.skip("dead")
            return
        steps = dt / DECISION_SECONDS
        p1, p2 = obs.pos.as_tuple(), nxt.pos.as_tuple()
        if nxt.hp > obs.hp + 0.5 or math.hypot(p2[0] - p1[0], p2[2] - p1[2]) > 2.0 * steps:
            self.skip("respawn")
            return
        c1, c2 = cell_of(p1), cell_of(p2)
        progress = (p2[0] - p1[0]) * d[0] + (p2[2] - p1[2]) * d[1]
        failed = tr.failed or (nxt.last_result is not None and not nxt.last_result.ok)
        blocked = failed or progress < BLOCKED_PROGRESS * steps
        speed = min(1.25, max(0.0, progress / (WALK_SPEED * dt)))
        hit = [max(-1, min(1, c2[1] - c1[1])), max(-1, min(1, c2[2] - c1[2])), max(-1, min(1, c2[0] - c1[0]))]
        sx, sz = int(round(d[0] * 1.41)), int(round(d[1] * 1.41))
        ahead = [0, max(-1, min(1, sz)), max(-1, min(1, sx))]
        rows = self.rows
        wc, we = cell_windows(tr.codes, tr.exp, label_offsets(hit, ahead))
        rows["codes"].append(tr.codes)
        rows["win_codes"].append(wc)
        rows["win_exp"].append(we)
        rows["hit_off"].append(hit)
        rows["ahead_off"].append(ahead)
        rows["speed"].append(speed)
        rows["speed_mask"].append(0.0 if blocked else 1.0)
        rows["damage"].append(max(0.0, float(obs.hp) - float(nxt.hp)) / steps)
        rows["fell"].append(1.0 if c2[1] < c1[1] else 0.0)
        rows["blocked"].append(1.0 if blocked else 0.0)
        rows["unit"].append(tr.unit)
        rows["event_id"].append(tr.obs_id)


@dataclass(frozen=True)
class NavigationSpec:
    """Feature spec and filters of a navigation dataset (recorded in the manifest)."""

    radius: int = 3
    val_fraction: float = 0.2
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.radius < 3:
            raise ValueError("radius must be >= 3 (one neighbour plus two cells of context)")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError("val_fraction must be in [0, 1)")


def empty_arrays(radius: int) -> dict[str, np.ndarray]:
    side = 2 * radius + 1
    return {
        "codes": np.zeros((0, side, side, side), np.int8),
        "win_codes": np.zeros((0, 3, WINDOW, WINDOW, WINDOW), np.int8),
        "win_exp": np.zeros((0, 3, len(MEMORY_CHANNELS), WINDOW, WINDOW, WINDOW), np.float16),
        "hit_off": np.zeros((0, 3), np.int8),
        "ahead_off": np.zeros((0, 3), np.int8),
        **{k: np.zeros(0, np.float32) for k in ("speed", "speed_mask", "damage", "fell", "blocked")},
        "unit": np.zeros(0, np.int32),
        "event_id": np.zeros(0, np.int64),
        "is_val": np.zeros(0, bool),
    }


def build_from_events(
    events: Iterable[Mapping[str, Any]],
    spec: NavigationSpec | None = None,
    *,
    event_range: Mapping[str, Any] | None = None,
) -> Dataset:
    """Build from stored event dicts (with ``_id``) in id order; other event types are ignored."""
    spec = spec or NavigationSpec()
    b = _Builder(spec.radius)
    n_events = 0
    for ev in events:
        if ev.get("type") not in EVENT_TYPES:
            continue
        if spec.sources and ev.get("source") not in spec.sources:
            continue
        n_events += 1
        b.add(ev)
    n = len(b.rows["speed"])
    side = 2 * spec.radius + 1
    if n == 0:
        arrays = empty_arrays(spec.radius)
    else:
        arrays = {
            "codes": np.asarray(b.rows["codes"], dtype=np.int8).reshape(n, side, side, side),
            "win_codes": np.asarray(b.rows["win_codes"], dtype=np.int8).reshape(n, 3, WINDOW, WINDOW, WINDOW),
            "win_exp": np.asarray(b.rows["win_exp"], dtype=np.float16).reshape(
                n, 3, len(MEMORY_CHANNELS), WINDOW, WINDOW, WINDOW
            ),
            "hit_off": np.asarray(b.rows["hit_off"], dtype=np.int8).reshape(n, 3),
            "ahead_off": np.asarray(b.rows["ahead_off"], dtype=np.int8).reshape(n, 3),
            **{
                k: np.asarray(b.rows[k], dtype=np.float32) for k in ("speed", "speed_mask", "damage", "fell", "blocked")
            },
            "unit": np.asarray(b.rows["unit"], dtype=np.int32),
            "event_id": np.asarray(b.rows["event_id"], dtype=np.int64),
        }
        # a unit's "end time" is its last sample's event id: the most recent units are validation
        end = np.zeros(len(b.units), dtype=np.float64)
        np.maximum.at(end, arrays["unit"], arrays["event_id"].astype(np.float64))
        arrays["is_val"], _ = split_by_group(arrays["unit"], end.tolist(), spec.val_fraction)
    is_val = arrays["is_val"]
    unit_names = {v: f"{k[0]}/{k[1]}" for k, v in b.units.items()}
    val_units = sorted({unit_names[int(u)] for u in np.unique(arrays["unit"][is_val])})
    manifest = base_manifest(
        KIND,
        family="navigation",
        event_range={**dict(event_range or {}), "first_id": b.first_id, "last_id": b.last_id},
        filters={"types": list(EVENT_TYPES), "sources": list(spec.sources), "observation_kind": "navigation"},
        feature_spec={
            **asdict(spec),
            "codes": "[N,s,s,s] int8 node codes (y, z, x) around the agent's feet cell, s = 2*radius+1",
            "node_codes": dict(NODE_CODES),
            "win_codes": "[N,3,w,w,w] int8 codes around the 3 labelled cells (own, hit_off, ahead_off), -1 = off grid",
            "win_exp": f"[N,3,{len(MEMORY_CHANNELS)},w,w,w] experience channels {list(MEMORY_CHANNELS)} there",
            "window": WINDOW,
            "labels": {
                "speed": "progress along the commanded direction / walk speed, at the agent's cell",
                "damage": "hp lost per decision step, at hit_off",
                "fell": "1 if the agent dropped to a lower cell, at hit_off",
                "blocked": "1 if the move failed or made no progress, at ahead_off",
            },
            "offset_order": "dy, dz, dx",
            "decision_seconds": DECISION_SECONDS,
        },
        split={
            "unit": "episode (source, episode_id); without an episode id one agent's stream",
            "method": "whole units; most recent units (by last event id) are validation",
            "val_fraction": spec.val_fraction,
            "val_units": val_units,
            "train_units": len(b.units) - len(val_units),
        },
        counts={
            "events": n_events,
            "samples": n,
            "train": int((~is_val).sum()),
            "val": int(is_val.sum()),
            "units": len(b.units),
            "blocked": int(arrays["blocked"].sum()),
            "damaged": int((arrays["damage"] > 0).sum()),
            "fell": int(arrays["fell"].sum()),
            "skipped": dict(b.skipped),
        },
    )
    manifest["hash"] = arrays_hash(arrays)
    log.info("navigation dataset: %s", manifest["counts"])
    return Dataset(arrays=arrays, manifest=manifest)


def build_from_store(
    store: Any,
    spec: NavigationSpec | None = None,
    *,
    after_id: int = 0,
    until_id: int | None = None,
    min_samples: int = 0,
) -> Dataset:
    """Build from ``store`` events with ``after_id < id <= until_id`` (a reproducible view).

    Raises :class:`~luanti_tune.errors.TrainingSkipped` when fewer than ``min_samples`` rows result.
    """
    from luanti_tune.store.base import EventQuery

    spec = spec or NavigationSpec()
    until = store.max_id() if until_id is None else until_id
    query = EventQuery(types=EVENT_TYPES, sources=spec.sources, after_id=after_id, until_id=until)
    rng = {"after_id": after_id, "until_id": until, "store": _redact(getattr(store, "url", ""))}
    ds = build_from_events(store.iter_events(query), spec, event_range=rng)
    if len(ds) < min_samples:
        raise TrainingSkipped(
            f"navigation dataset too small: {len(ds)} samples (< {min_samples}) in ids {after_id}..{until}"
        )
    return ds


def subset(arrays: Mapping[str, np.ndarray], index: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[index] for k, v in arrays.items()}


def concat(parts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Row-wise concatenation of array dicts with the same keys and grid radius."""
    parts = [p for p in parts if len(p["speed"])]
    if not parts:
        raise TrainingSkipped("no navigation rows")
    sides = {p["codes"].shape[-1] for p in parts}
    if len(sides) != 1:
        raise ValueError(f"cannot concatenate navigation rows of different grid sides {sorted(sides)}")
    keys = [k for k in parts[0] if all(k in p for p in parts)]
    return {k: np.concatenate([p[k] for p in parts]) for k in keys}


def _redact(url: str) -> str:
    """Drop credentials from a database URL before it goes into a manifest."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
