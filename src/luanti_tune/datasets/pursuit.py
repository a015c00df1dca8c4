"""Pursuit dataset: player trajectory windows -> future displacement at several horizons.

Two sources of a player's trajectory, one per player:

* ``agent.track`` (what agents saw when they decided, recorded by the service): the target's
  position and velocity at every decision, and where the deciding agent was. Windows are
  anchored at the decisions themselves and the threat is that agent, so training sees exactly
  the features serving computed (train like you serve).
* ``player.move`` (sampled by the mod at 2 Hz) for players no agent watched: windows every
  ``stride_s``, the threat being the nearest agent/mob seen in ``agent.act`` events.

Either way: group by ``(source, player, episode_id)``, order by time, cut into segments at time
gaps, resample with :func:`luanti_tune.policies.pursuit.window_features` (the same code the
adapter runs at inference) and emit a row where the full history and the longest horizon lie
inside the segment.

Split: whole split units go to train or validation, the most recent units (by wall-clock end
time, comparable across servers) to validation. A unit is an episode (``source`` +
``episode_id``); events without an episode id are cut into ``unit_s`` long chunks of their
segment instead (a live server's endless session). Rows of one unit never appear on both sides.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from luanti_tune.datasets.common import Dataset, arrays_hash, base_manifest, split_by_group
from luanti_tune.policies.pursuit import DEFAULT_ARCH, THREAT_RANGE, TICK_S, future_targets, window_features

log = logging.getLogger(__name__)

KIND = "pursuit"


@dataclass(frozen=True)
class PursuitSpec:
    """Feature spec and filters of a pursuit dataset (recorded in the manifest)."""

    history: int = int(DEFAULT_ARCH["history"])
    hist_dt: float = float(DEFAULT_ARCH["hist_dt"])
    horizons: tuple[float, ...] = tuple(DEFAULT_ARCH["horizons"])
    stride_s: float = 0.25
    max_gap_s: float = 1.0
    unit_s: float = 20.0
    val_fraction: float = 0.2
    players: tuple[str, ...] = ()
    exclude_players: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    actor_kinds: tuple[str, ...] = ("player",)

    @classmethod
    def from_arch(cls, arch: Mapping[str, Any], **kw: Any) -> PursuitSpec:
        return cls(
            history=int(arch["history"]),
            hist_dt=float(arch["hist_dt"]),
            horizons=tuple(float(h) for h in arch["horizons"]),
            **kw,
        )


@dataclass
class _Track:
    t: list[float] = field(default_factory=list)
    x: list[float] = field(default_factory=list)
    z: list[float] = field(default_factory=list)
    vx: list[float] = field(default_factory=list)
    vz: list[float] = field(default_factory=list)
    w: list[float] = field(default_factory=list)  # wall clock seconds (split order across servers)
    #: where the deciding agent was at each knot (``agent.track`` tracks only)
    ax: list[float] = field(default_factory=list)
    az: list[float] = field(default_factory=list)


#: Faster than this (nodes/s, horizontally) between two samples is a teleport: the track is cut there.
MAX_SPEED = 25.0
#: A segment whose x and z stay within this range (nodes) is a player standing still: skipped.
STILL_NODES = 0.05


def _segments(track: _Track, max_gap: float, drops: dict[str, int] | None = None) -> Iterator[np.ndarray]:
    """``[M, 6]`` arrays (t, x, z, vx, vz, wall; + ax, az for decision tracks) sorted by time, split
    at gaps and teleports; of knots at one time the first is kept (decision tracks: the nearest
    agent's); segments of a player standing still are skipped (``drops`` counts both)."""
    cols = [track.t, track.x, track.z, track.vx, track.vz, track.w]
    if track.ax:
        cols += [track.ax, track.az]
    arr = np.column_stack(cols).astype(np.float64)
    if track.ax:  # nearest agent first among equal times
        d = np.hypot(arr[:, 6] - arr[:, 1], arr[:, 7] - arr[:, 2])
        arr = arr[np.lexsort((d, arr[:, 0]))]
    else:
        arr = arr[np.argsort(arr[:, 0], kind="stable")]
    keep = np.concatenate([[True], np.diff(arr[:, 0]) > 1e-9])
    arr = arr[keep]
    dt = np.diff(arr[:, 0])
    step = np.hypot(np.diff(arr[:, 1]), np.diff(arr[:, 2]))
    jump = step > MAX_SPEED * np.maximum(dt, 1e-9) + 1.0  # teleports, respawns: no movement to learn
    if drops is not None:
        drops["teleports"] += int(jump.sum())
    cuts = np.nonzero((dt > max_gap) | jump)[0] + 1
    for seg in np.split(arr, cuts):
        if len(seg) >= 2 and np.ptp(seg[:, 1]) + np.ptp(seg[:, 2]) < STILL_NODES:
            if drops is not None:
                drops["still_segments"] += 1  # a player who never moves there: nothing to predict
            continue
        yield seg


THREAT_KINDS = ("agent", "mob")
#: Event types read from the store: what agents saw when they decided, player trajectories and
#: agent positions (pursuers of players no agent recorded).
EVENT_TYPES = ("agent.track", "player.move", "agent.act")
THREAT_MAX_GAP_S = 2.0


def nearest_threat(here: np.ndarray, anchors: np.ndarray, segments: list[np.ndarray]) -> np.ndarray:
    """``[N, 3]``: nearest agent/mob position relative to ``here`` at each anchor + presence flag."""
    out = np.zeros((len(anchors), 3), dtype=np.float32)
    best = np.full(len(anchors), THREAT_RANGE)
    for seg in segments:
        st = seg[:, 0]
        valid = (anchors >= st[0] - 0.5) & (anchors <= st[-1] + 0.5)
        if not valid.any():
            continue
        rx = np.interp(anchors, st, seg[:, 1]) - here[:, 0]
        rz = np.interp(anchors, st, seg[:, 2]) - here[:, 1]
        d = np.hypot(rx, rz)
        take = valid & (d <= best)
        best = np.where(take, d, best)
        out[take, 0] = rx[take]
        out[take, 1] = rz[take]
        out[take, 2] = 1.0
    return out


def _choose_sources(
    col: _Collected,
) -> tuple[list[tuple[tuple[str, str, str], _Track, bool]], dict[str, str]]:
    """One source per player: what agents saw when they decided, else ``player.move``; the tracks
    to use (key, track, decided) and each player's source."""
    watched = {name for _source, name, _track in col.decided}
    sources_of = {name: "agent.track" for name in watched}
    todo: list[tuple[tuple[str, str, str], _Track, bool]] = [
        ((source, name, track), tr, True) for (source, name, track), tr in col.decided.items()
    ]
    for key, tr in col.tracks.items():
        if key[1] not in watched:
            sources_of[key[1]] = "player.move"
            todo.append((key, tr, False))
    return todo, sources_of


def _track_order(item: tuple[tuple[str, str, str], _Track, bool]) -> tuple[Any, ...]:
    (source, name, episode), tr, decided = item
    i = int(np.argmin(tr.t))
    return (source, decided, "" if decided else episode, tr.t[i], tr.x[i], tr.z[i], name, episode)


def decision_threat(target_xz: np.ndarray, agent_xz: np.ndarray) -> np.ndarray:
    """``[N, 3]``: the deciding agent relative to its target + presence flag, as the adapter
    computes it at serving time (absent beyond :data:`THREAT_RANGE`)."""
    out = np.zeros((len(target_xz), 3), dtype=np.float32)
    rel = agent_xz - target_xz
    near = rel[:, 0] ** 2 + rel[:, 1] ** 2 <= THREAT_RANGE**2
    out[near, :2] = rel[near]
    out[near, 2] = 1.0
    return out


@dataclass
class _Collected:
    tracks: dict[tuple[str, str, str], _Track] = field(default_factory=lambda: defaultdict(_Track))
    #: decision tracks (``agent.track``), by (source, player, "<agent>#<run>"): one per agent that
    #: watched the player (its own view and threat), a new run when its ticks start over
    decided: dict[tuple[str, str, str], _Track] = field(default_factory=lambda: defaultdict(_Track))
    last_tick: dict[tuple[str, str, str], tuple[int, int]] = field(default_factory=dict)
    threats: dict[tuple[str, str], _Track] = field(default_factory=lambda: defaultdict(_Track))
    n_events: int = 0
    n_decisions: int = 0
    drops: dict[str, int] = field(
        default_factory=lambda: {"teleports": 0, "still_segments": 0, "no_position_or_velocity": 0, "nonfinite": 0}
    )
    first_id: int | None = None
    last_id: int | None = None


def _add_threat(threats: dict[tuple[str, str], _Track], ev: Mapping[str, Any]) -> None:
    actor = ev.get("actor") or {}
    pos = ev.get("pos")
    if pos is not None and actor.get("kind") in THREAT_KINDS and ev.get("time"):
        th = threats[(str(ev.get("source")), str(actor.get("name")))]
        th.t.append(float(ev["time"]["game_s"]))
        th.x.append(float(pos["x"]))
        th.z.append(float(pos["z"]))
        th.vx.append(0.0)
        th.vz.append(0.0)
        th.w.append(0.0)


def _add_decisions(col: _Collected, ev: Mapping[str, Any]) -> None:
    """The knots of one ``agent.track`` event (ticks -> game seconds)."""
    p = ev["payload"]
    source, agent, target = str(ev.get("source")), str((ev.get("actor") or {}).get("name")), str(p["target"])
    run, last = col.last_tick.get((source, agent, target), (0, -1))
    if p["tick"][0] <= last:  # the server (or the episode) started over: a new track
        run += 1
    col.last_tick[(source, agent, target)] = (run, p["tick"][-1])
    tr = col.decided[(source, target, f"{agent}#{run}")]
    n = len(p["tick"])
    tr.t.extend(k * TICK_S for k in p["tick"])
    tr.x.extend(p["x"])
    tr.z.extend(p["z"])
    tr.vx.extend(p["vx"])
    tr.vz.extend(p["vz"])
    tr.ax.extend(p["ax"])
    tr.az.extend(p["az"])
    tr.w.extend([float(ev["time"].get("wall_us", 0)) / 1e6] * n)
    col.n_events += 1
    col.n_decisions += n
    if "_id" in ev:
        eid = int(ev["_id"])
        col.first_id = eid if col.first_id is None else min(col.first_id, eid)
        col.last_id = eid if col.last_id is None else max(col.last_id, eid)


def _collect(events: Iterable[Mapping[str, Any]], spec: PursuitSpec) -> _Collected:
    """Player tracks (filtered by ``spec``) and agent/mob tracks from the event stream."""
    players_in = set(spec.players)
    players_out = set(spec.exclude_players)
    sources = set(spec.sources)
    kinds = set(spec.actor_kinds)
    col = _Collected()
    tracks, threats = col.tracks, col.threats
    for ev in events:
        kind = ev.get("type")
        if kind == "agent.track":
            name = (ev.get("payload") or {}).get("target")
            if (players_in and name not in players_in) or name in players_out:
                continue
            if (sources and ev.get("source") not in sources) or (kinds and "player" not in kinds):
                continue
            _add_decisions(col, ev)
            continue
        if kind != "player.move":
            _add_threat(threats, ev)
            continue
        actor = ev.get("actor") or {}
        name = actor.get("name")
        if kinds and actor.get("kind") not in kinds:
            continue
        if (players_in and name not in players_in) or name in players_out:
            continue
        if sources and ev.get("source") not in sources:
            continue
        pos = ev.get("pos")
        vel = (ev.get("payload") or {}).get("velocity")
        if pos is None or vel is None:
            col.drops["no_position_or_velocity"] += 1
            continue
        tr = tracks[(str(ev.get("source")), str(name), str(ev.get("episode_id") or ""))]
        tr.t.append(float(ev["time"]["game_s"]))
        tr.x.append(float(pos["x"]))
        tr.z.append(float(pos["z"]))
        tr.vx.append(float(vel["x"]))
        tr.vz.append(float(vel["z"]))
        tr.w.append(float(ev["time"].get("wall_us", 0)) / 1e6)
        col.n_events += 1
        if "_id" in ev:
            eid = int(ev["_id"])
            col.first_id = eid if col.first_id is None else min(col.first_id, eid)
            col.last_id = eid if col.last_id is None else max(col.last_id, eid)

    return col


def build_from_events(
    events: Iterable[Mapping[str, Any]],
    spec: PursuitSpec | None = None,
    *,
    event_range: Mapping[str, Any] | None = None,
) -> Dataset:
    """Build the dataset from wire event dicts (non-``player.move`` events are ignored)."""
    spec = spec or PursuitSpec()
    col = _collect(events, spec)
    tracks, threats, n_events, first_id, last_id = col.tracks, col.threats, col.n_events, col.first_id, col.last_id

    threat_segs: dict[str, list[np.ndarray]] = defaultdict(list)
    for (source, _name), th in threats.items():
        threat_segs[source].extend(s for s in _segments(th, THREAT_MAX_GAP_S) if len(s) >= 1)
    span = (spec.history - 1) * spec.hist_dt
    h_max = max(spec.horizons)
    parts: dict[str, list[np.ndarray]] = defaultdict(list)
    unit_index: dict[tuple[str, ...], int] = {}
    unit_end: list[float] = []
    player_index: dict[str, int] = {}
    n_segments = 0
    per_player: dict[str, int] = defaultdict(int)
    segments: list[tuple[str, np.ndarray, bool, np.ndarray, np.ndarray]] = []
    todo, sources_of = _choose_sources(col)
    # rows in an order that does not depend on names (a renamed player gives the same dataset)
    for (source, name, episode), track, decided in sorted(todo, key=_track_order):
        for seg_no, seg in enumerate(_segments(track, spec.max_gap_s, col.drops)):
            t = seg[:, 0]
            if len(t) < 2 or t[-1] - t[0] < span + h_max:
                continue
            if decided:  # at the decisions themselves, as served
                at = np.flatnonzero((t >= t[0] + span - 1e-9) & (t <= t[-1] - h_max + 1e-9))
                anchors = t[at]
            else:
                anchors = np.arange(t[0] + span, t[-1] - h_max + 1e-9, spec.stride_s)
            if len(anchors) == 0:
                continue
            n_segments += 1
            xz = seg[:, 1:3]
            hist = window_features(t, xz, anchors, spec.history, spec.hist_dt)
            target = future_targets(t, xz, anchors, spec.horizons)
            vel = np.stack([np.interp(anchors, t, seg[:, 3]), np.interp(anchors, t, seg[:, 4])], axis=1)
            here = np.stack([np.interp(anchors, t, xz[:, 0]), np.interp(anchors, t, xz[:, 1])], axis=1)
            if decided:
                threat = decision_threat(seg[at, 1:3], seg[at, 6:8])
            else:
                threat = nearest_threat(here, anchors, threat_segs.get(source, []))
            if episode and not decided:
                keys: list[tuple[str, ...]] = [(source, episode)] * len(anchors)
            else:
                chunk = ((anchors - t[0]) // spec.unit_s).astype(int)
                keys = [(source, name, episode, str(seg_no), str(c)) for c in chunk]
            wall = np.interp(anchors, t, seg[:, 5])
            units = np.empty(len(anchors), dtype=np.int32)
            for i, unit_key in enumerate(keys):
                u = unit_index.get(unit_key)
                if u is None:
                    u = unit_index[unit_key] = len(unit_end)
                    unit_end.append(-np.inf)
                units[i] = u
                unit_end[u] = max(unit_end[u], float(wall[i]))
            pid = player_index.setdefault(name, len(player_index))
            per_player[name] += len(anchors)
            parts["hist"].append(hist)
            parts["vel"].append(vel.astype(np.float32))
            parts["threat"].append(threat)
            parts["target"].append(target)
            parts["t"].append(anchors.astype(np.float64))
            parts["unit"].append(units)
            parts["player"].append(np.full(len(anchors), pid, dtype=np.int32))
            segments.append((name, seg, decided, anchors, units))

    if parts:
        arrays = {k: np.concatenate(v) for k, v in parts.items()}
    else:
        arrays = {
            "hist": np.zeros((0, spec.history, 2), np.float32),
            "vel": np.zeros((0, 2), np.float32),
            "threat": np.zeros((0, 3), np.float32),
            "target": np.zeros((0, len(spec.horizons), 2), np.float32),
            "t": np.zeros(0, np.float64),
            "unit": np.zeros(0, np.int32),
            "player": np.zeros(0, np.int32),
        }
    finite = np.isfinite(arrays["hist"]).all((1, 2)) & np.isfinite(arrays["vel"]).all(1)
    finite &= np.isfinite(arrays["target"]).all((1, 2))
    if not finite.all():
        col.drops["nonfinite"] = int((~finite).sum())
        arrays = {k: v[finite] for k, v in arrays.items()}
    if any(col.drops.values()):
        log.info("pursuit dataset: skipped %s", ", ".join(f"{k} {v}" for k, v in col.drops.items() if v))
    is_val, val_units = split_by_group(arrays["unit"], unit_end, spec.val_fraction)
    arrays["is_val"] = is_val
    held_out = _held_out_trajectories(segments, set(val_units), span, h_max)
    names = sorted(player_index, key=player_index.__getitem__)
    manifest = base_manifest(
        KIND,
        event_range={
            **dict(event_range or {}),
            "first_id": first_id,
            "last_id": last_id,
        },
        filters={
            "types": list(EVENT_TYPES),
            "players": list(spec.players),
            "exclude_players": list(spec.exclude_players),
            "sources": list(spec.sources),
            "actor_kinds": list(spec.actor_kinds),
        },
        feature_spec={
            **{k: v for k, v in asdict(spec).items() if k in ("history", "hist_dt", "stride_s", "max_gap_s")},
            "horizons": list(spec.horizons),
            "inputs": {
                "hist": "[N,history,2] past x/z rel. to now",
                "vel": "[N,2] velocity x/z",
                "threat": f"[N,3] the deciding agent (agent.track) or nearest agent/mob (player.move) x/z "
                f"rel. to the player + present flag (within {THREAT_RANGE})",
            },
            "target": "[N,H,2] displacement x/z at each horizon",
        },
        split={
            "unit": "episode (source, episode_id); else unit_s chunk of a segment",
            "unit_s": spec.unit_s,
            "val_fraction": spec.val_fraction,
            "val_units": len(val_units),
            "train_units": int(len(np.unique(arrays["unit"]))) - len(val_units),
        },
        counts={
            "events": n_events,
            "decisions": col.n_decisions,
            "tracks": len(tracks),
            "segments": n_segments,
            "windows": int(len(is_val)),
            "train": int((~is_val).sum()),
            "val": int(is_val.sum()),
            "per_player": dict(per_player),
            "skipped": dict(col.drops),
        },
        players=names,
        track_sources={name: sources_of[name] for name in names},
    )
    manifest["hash"] = arrays_hash(arrays)
    manifest["counts"]["val_trajectories"] = len(held_out)
    return Dataset(arrays=arrays, manifest=manifest, extras={"val_trajectories": held_out})


@dataclass(frozen=True)
class Trajectory:
    """A recorded stretch of one player's movement: ``t`` seconds, ``xz``/``vel`` ``[M, 2]``, and
    ``chaser`` ``[M, 2]`` where the deciding agent was (``None`` for ``player.move`` tracks)."""

    player: str
    t: np.ndarray
    xz: np.ndarray
    vel: np.ndarray
    chaser: np.ndarray | None


def _held_out_trajectories(
    segments: list[tuple[str, np.ndarray, bool, np.ndarray, np.ndarray]], val_units: set[int], span: float, h_max: float
) -> list[Trajectory]:
    """The parts of each segment whose windows are held out (for episodes against them)."""
    out = []
    for name, seg, decided, anchors, units in segments:
        held = np.isin(units, list(val_units))
        if not held.any():
            continue
        lo, hi = float(anchors[held].min()) - span, float(anchors[held].max()) + h_max
        part = seg[(seg[:, 0] >= lo - 1e-9) & (seg[:, 0] <= hi + 1e-9)]
        if len(part) < 2:
            continue
        chaser = part[:, 6:8].copy() if decided else None
        out.append(Trajectory(name, part[:, 0].copy(), part[:, 1:3].copy(), part[:, 3:5].copy(), chaser))
    return out


def build_from_store(
    store: Any,
    spec: PursuitSpec | None = None,
    *,
    after_id: int = 0,
    until_id: int | None = None,
    limit: int | None = None,
) -> Dataset:
    """Build from ``store`` events with ``after_id < id <= until_id`` (a reproducible view)."""
    from luanti_tune.store.base import EventQuery

    spec = spec or PursuitSpec()
    query = EventQuery(types=EVENT_TYPES, after_id=after_id, until_id=until_id, limit=limit)
    rng = {"after_id": after_id, "until_id": until_id, "store": _redact(getattr(store, "url", ""))}
    return build_from_events(store.iter_events(query), spec, event_range=rng)


def _redact(url: str) -> str:
    """Drop credentials from a database URL before it goes into a manifest."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
