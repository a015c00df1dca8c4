"""Team dataset: team episodes -> per (agent, target) pair features with hindsight labels.

Input events: ``agent.obs`` of team agents (``payload.kind == "team"``), ``inventory.action``
``take`` by agents (an item was collected) - both emitted by the simulator's team scenario and
by the Luanti mod. Per episode, the observations of each tick are replayed through the very same
:meth:`TeamAdapter.featurize_with_columns` the engine uses (fresh blackboard memory per episode),
so training and serving features cannot disagree.

Labels (:mod:`luanti_tune.policies.team`):

* item columns: when agent *a* collected item *k* at tick ``tp``, every observation of *a* while
  it was closing in on *k* (its distance to *k* kept shrinking until ``tp``) gets
  ``log_t = log(time to pickup + 0.1)`` and ``aim`` = the item's relative position;
* items nobody collected: a censored label, "at least the rest of the episode" (``cens = 1``),
  so that unreachable-looking items (e.g. high above the agent) learn to look expensive;
* named moving targets (players/mobs): the hindsight intercept time and point from the target's
  real future track (:func:`~luanti_tune.policies.team.hindsight_labels`), censored at the horizon.

Other pairs carry ``weight = 0``. Episodes are split whole into train/validation (most recent last).
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from luanti_tune.datasets.common import Dataset, arrays_hash, base_manifest, split_by_group
from luanti_tune.policies import team as fam
from luanti_tune.schemas.agent import Observation

log = logging.getLogger(__name__)

KIND = "team"
EVENT_TYPES: tuple[str, ...] = ("agent.obs", "inventory.action")
PICKUP_RADIUS = 2.0


def _episode_key(ev: Mapping[str, Any]) -> tuple[str, str]:
    return (str(ev.get("source")), str(ev.get("episode_id") or "-"))


def _collect(events: Iterable[Mapping[str, Any]]) -> tuple[dict[tuple[str, str], dict[str, Any]], int, int, int]:
    episodes: dict[tuple[str, str], dict[str, Any]] = defaultdict(lambda: {"obs": defaultdict(list), "pickups": []})
    n, first_id, last_id = 0, 0, 0
    for ev in events:
        kind = ev.get("type")
        actor = ev.get("actor") or {}
        if actor.get("kind") != "agent":
            continue
        payload = ev.get("payload") or {}
        if kind == "agent.obs":
            if payload.get("kind") != "team":
                continue
            obs = Observation.model_validate(payload)
            episodes[_episode_key(ev)]["obs"][obs.tick].append(obs)
        elif kind == "inventory.action" and payload.get("action") == "take" and ev.get("pos"):
            p = ev["pos"]
            tick = int(ev["time"]["tick"])
            episodes[_episode_key(ev)]["pickups"].append((tick, str(actor["name"]), float(p["x"]), float(p["z"])))
        else:
            continue
        n += 1
        eid = int(ev.get("_id", 0))
        first_id = eid if first_id == 0 else min(first_id, eid)
        last_id = max(last_id, eid)
    return episodes, n, first_id, last_id


def _episode_rows(
    ep: Mapping[str, Any], adapter: fam.TeamAdapter, dt: float
) -> tuple[dict[str, list[np.ndarray]], float, int]:
    """Replay one episode; returns arrays (lists of per-tick chunks), the end time and labelled pairs."""
    memory: dict[str, dict[str, Any]] = {}
    ticks = sorted(ep["obs"])
    rows: list[tuple[int, str, str, list[str]]] = []  # (tick, agent, team, columns)
    chunks: dict[str, list[np.ndarray]] = defaultdict(list)
    positions: dict[str, tuple[float, float]] = {}  # item key -> (x, z)
    tracks: dict[str, list[tuple[float, float, float]]] = defaultdict(list)  # moving target -> (t, x, z)
    kinds: dict[str, str] = {}
    agent_pos: dict[tuple[str, int], tuple[float, float]] = {}
    for tick in ticks:
        group = ep["obs"][tick]
        arrays, teams = adapter.featurize_with_columns(group, memory)
        chunks["pair"].append(arrays["pair"])
        chunks["mask"].append(arrays["mask"])
        for team, (idx, cols, entries) in teams.items():
            for i in idx:
                rows.append((tick, group[i].agent, team, cols))
                agent_pos[(group[i].agent, tick)] = (group[i].pos.x, group[i].pos.z)
            for key, e in entries.items():
                kinds[key] = e[6]
                if e[6] == "item":
                    positions.setdefault(key, (e[0], e[1]))
                elif e[4] == tick:
                    tracks[key].append((tick * dt, e[0], e[1]))
    n = len(rows)
    k = adapter.max_targets
    log_t = np.zeros((n, k), np.float32)
    aim = np.zeros((n, k, 2), np.float32)
    weight = np.zeros((n, k), np.float32)
    cens = np.zeros((n, k), np.float32)
    last_tick = ticks[-1] if ticks else 0
    pickup_of = _match_pickups(ep["pickups"], positions)
    agent_ticks: dict[str, list[int]] = defaultdict(list)
    for tick, agent, _, _ in rows:
        agent_ticks[agent].append(tick)
    start_of = {
        key: _approach_start(agent_ticks[agent], agent_pos, agent, positions[key], tp)
        for key, (tp, agent) in pickup_of.items()
    }
    arch = adapter.arch
    arrays = {"log_t": log_t, "aim": aim, "weight": weight, "cens": cens}
    for r, (tick, agent, _team, cols) in enumerate(rows):
        here = agent_pos[(agent, tick)]
        for j, key in enumerate(cols):
            if kinds.get(key) == "item":
                label = _item_label(pickup_of.get(key), start_of.get(key, 0), agent, tick, last_tick, dt, arch)
                if label is not None:
                    tau, censored = label
                    pos = positions[key]
                    _put(arrays, r, j, tau, (pos[0] - here[0], pos[1] - here[1]), censored)
            elif key in tracks and len(tracks[key]) >= 2:
                tr = np.asarray(tracks[key])
                if tr[-1, 0] < tick * dt + 1.0:  # too little future to label
                    continue
                args = (arch["agent_speed"], arch["catch_radius"], arch["horizon_s"], dt)
                tau, disp, _ = fam.hindsight_labels(np.array(here), tick * dt, tr[:, 0], tr[:, 1:], *args)
                x0 = float(np.interp(tick * dt, tr[:, 0], tr[:, 1]))
                z0 = float(np.interp(tick * dt, tr[:, 0], tr[:, 2]))
                _put(arrays, r, j, tau, (x0 + disp[0] - here[0], z0 + disp[1] - here[1]), False)
    chunks["log_t"] = [log_t]
    chunks["aim"] = [aim]
    chunks["weight"] = [weight]
    chunks["cens"] = [cens]
    chunks["tick"] = [np.array([t for t, _, _, _ in rows], dtype=np.int64)]
    return chunks, (ticks[-1] * dt if ticks else 0.0), int(weight.sum())


def _item_label(
    hit: tuple[int, str] | None,
    approach_start: int,
    agent: str,
    tick: int,
    last_tick: int,
    dt: float,
    arch: Mapping[str, Any],
) -> tuple[float, bool] | None:
    """``(seconds, censored)`` for one (agent, item) pair at ``tick``, or ``None`` (no label)."""
    if hit is None:  # never collected: reaching it takes at least the rest of the episode
        rest = min((last_tick - tick) * dt, float(arch["horizon_s"]))
        return (rest, True) if rest >= 1.0 else None
    if hit[1] != agent or not approach_start <= tick < hit[0]:
        return None
    tau = (hit[0] - tick) * dt
    return (tau, False) if tau <= arch["horizon_s"] else None


def _put(
    arrays: Mapping[str, np.ndarray], r: int, j: int, tau: float, aim: tuple[float, float], censored: bool
) -> None:
    arrays["log_t"][r, j] = math.log(tau + 0.1)
    arrays["aim"][r, j] = aim
    arrays["weight"][r, j] = 1.0
    arrays["cens"][r, j] = 1.0 if censored else 0.0


def _match_pickups(
    pickups: list[tuple[int, str, float, float]], positions: Mapping[str, tuple[float, float]]
) -> dict[str, tuple[int, str]]:
    """Item key -> (tick, agent) of its pickup: the nearest known item to where the agent stood."""
    out: dict[str, tuple[int, str]] = {}
    if not positions:
        return out
    keys = list(positions)
    pts = np.array([positions[k] for k in keys])
    for tick, agent, x, z in sorted(pickups):
        d = np.hypot(pts[:, 0] - x, pts[:, 1] - z)
        for j in np.argsort(d):
            if d[j] > PICKUP_RADIUS:
                break
            if keys[j] not in out:
                out[keys[j]] = (tick, agent)
                break
    return out


def _approach_start(
    ticks: list[int],
    agent_pos: Mapping[tuple[str, int], tuple[float, float]],
    agent: str,
    item: tuple[float, float],
    pickup_tick: int,
) -> int:
    """First tick of the agent's final approach: walking back from the pickup, the last tick
    from which its distance to ``item`` never grew (by more than 0.3 nodes) until the pickup."""
    before = [t for t in ticks if t < pickup_tick]
    start = pickup_tick
    later = -math.inf
    for t in reversed(before):
        x, z = agent_pos[(agent, t)]
        d = math.hypot(x - item[0], z - item[1])
        if d + 0.3 < later:  # going back in time the distance must not shrink
            break
        later = d
        start = t
    return start


def empty_arrays(max_targets: int) -> dict[str, np.ndarray]:
    return {
        "pair": np.zeros((0, max_targets, fam.N_FEATURES), np.float32),
        "mask": np.zeros((0, max_targets), np.float32),
        "log_t": np.zeros((0, max_targets), np.float32),
        "aim": np.zeros((0, max_targets, 2), np.float32),
        "weight": np.zeros((0, max_targets), np.float32),
        "cens": np.zeros((0, max_targets), np.float32),
        "tick": np.zeros(0, np.int64),
        "unit": np.zeros(0, np.int32),
    }


def build_from_events(
    events: Iterable[Mapping[str, Any]],
    arch: Mapping[str, Any] | None = None,
    *,
    val_fraction: float = 0.25,
    event_range: Mapping[str, Any] | None = None,
) -> Dataset:
    """Build the team dataset from wire event dicts (other event types are ignored)."""
    adapter = fam.TeamAdapter(arch)
    episodes, n_events, first_id, last_id = _collect(events)
    parts: dict[str, list[np.ndarray]] = defaultdict(list)
    unit_end: list[float] = []
    labelled = 0
    for u, key in enumerate(sorted(episodes)):
        chunks, end, n_lab = _episode_rows(episodes[key], adapter, fam.TICK_S)
        labelled += n_lab
        n_rows = len(chunks["tick"][0])
        for name, arrs in chunks.items():
            parts[name].extend(arrs)
        parts["unit"].append(np.full(n_rows, u, np.int32))
        unit_end.append(end + u * 1e-6)  # stable order for equal end times
    arrays = {k: np.concatenate(v) for k, v in parts.items()} if parts else empty_arrays(adapter.max_targets)
    keep = arrays["weight"].sum(1) > 0  # rows without any label teach nothing
    arrays = {k: v[keep] for k, v in arrays.items()}
    is_val, val_units = split_by_group(arrays["unit"], unit_end, val_fraction)
    arrays["is_val"] = is_val
    manifest = base_manifest(
        KIND,
        event_range={**dict(event_range or {}), "first_id": first_id, "last_id": last_id},
        filters={"types": list(EVENT_TYPES), "observation_kind": "team"},
        feature_spec={
            "architecture": dict(adapter.arch),
            "inputs": {"pair": f"[N,K,{fam.N_FEATURES}] agent x target features", "mask": "[N,K]"},
            "labels": {
                "log_t": "[N,K] log(seconds + 0.1) to reach",
                "aim": "[N,K,2]",
                "weight": "[N,K] 1 = labelled",
                "cens": "[N,K] 1 = log_t is a lower bound (never reached)",
            },
        },
        split={"unit": "episode (source, episode_id)", "val_fraction": val_fraction, "val_units": len(val_units)},
        counts={
            "events": n_events,
            "episodes": len(episodes),
            "rows": int(len(is_val)),
            "labelled_pairs": int(arrays["weight"].sum()),
            "censored_pairs": int(arrays["cens"].sum()),
            "train": int((~is_val).sum()),
            "val": int(is_val.sum()),
        },
    )
    manifest["hash"] = arrays_hash(arrays)
    return Dataset(arrays=arrays, manifest=manifest)


def build_from_store(
    store: Any, arch: Mapping[str, Any] | None = None, *, after_id: int = 0, until_id: int | None = None
) -> Dataset:
    """Build from ``store`` events with ``after_id < id <= until_id`` (a reproducible view)."""
    from luanti_tune.store.base import EventQuery

    q = EventQuery(types=EVENT_TYPES, actor_kind="agent", after_id=after_id, until_id=until_id)
    return build_from_events(
        store.iter_events(q),
        arch,
        event_range={"store": _redact(str(getattr(store, "url", ""))), "after_id": after_id, "until_id": until_id},
    )


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
