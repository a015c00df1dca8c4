"""Pursuit episodes against recorded players: their own trajectories, replayed.

A :class:`RecordedTrack` is what was recorded of one player: times, horizontal positions and
velocities (from what agents saw at decision time, or ``player.move`` events) and, when an agent
was chasing them, where that agent was. :func:`replay_pursuit` puts a chaser next to the player at
seeded moments of their tracks and lets a policy chase the replayed player on open flat ground:
the chaser walks at ``agent_speed`` in the direction the policy says, deciding every
``act_every`` server steps (the mod's default rhythm), and catches the player within
``catch_radius``. The player does not react to this chaser (the replay is open loop); they react
as they did to the agent that chased them then, which is where the chaser starts when that agent
was recorded nearby.

Nothing here reads who the player is: episodes are built from positions and times only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from luanti_tune.policies.base import AgentMemory, Policy
from luanti_tune.schemas.agent import Observation
from luanti_tune.sim.physics import DT, WALK_SPEED


@dataclass(frozen=True)
class RecordedTrack:
    """One player's recorded movement: ``t`` ascending seconds, ``xz``/``vel`` ``[M, 2]``;
    ``chaser`` ``[M, 2]`` the chasing agent's position at each time (NaN where none was seen)."""

    t: np.ndarray
    xz: np.ndarray
    vel: np.ndarray
    chaser: np.ndarray | None = None

    @property
    def duration(self) -> float:
        return float(self.t[-1] - self.t[0]) if len(self.t) else 0.0

    def at(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Position and velocity at ``t`` (linear between samples, clamped at the ends)."""
        x = np.interp(t, self.t, self.xz[:, 0])
        z = np.interp(t, self.t, self.xz[:, 1])
        vx = np.interp(t, self.t, self.vel[:, 0])
        vz = np.interp(t, self.t, self.vel[:, 1])
        return np.array([x, z]), np.array([vx, vz])


@dataclass(frozen=True)
class ReplayConfig:
    episode_s: float = 8.0  # an episode lasts at most this long (censored time to catch)
    episodes: int = 24  # spread over the tracks in proportion to their length
    seed: int = 0
    agent_speed: float = WALK_SPEED
    catch_radius: float = 1.0
    act_every: int = 2  # decide every k server steps (the mod's act_interval)
    start_dist: tuple[float, float] = (6.0, 10.0)  # chaser start distance when none was recorded


def _starts(tracks: Sequence[RecordedTrack], cfg: ReplayConfig) -> list[tuple[int, float]]:
    """Seeded ``(track, start time)`` pairs, each with ``episode_s`` of track after it."""
    usable = [i for i, tr in enumerate(tracks) if tr.duration >= cfg.episode_s]
    if not usable:
        return []
    rng = np.random.default_rng([cfg.seed, 4242])
    spans = np.array([tracks[i].duration - cfg.episode_s for i in usable]) + 1e-6
    picks = rng.choice(len(usable), size=cfg.episodes, p=spans / spans.sum())
    out = []
    for k in picks.tolist():
        tr = tracks[usable[k]]
        out.append((usable[k], float(tr.t[0] + rng.uniform(0.0, tr.duration - cfg.episode_s))))
    return sorted(out)


def replay_pursuit(
    policy: Policy, tracks: Sequence[RecordedTrack], cfg: ReplayConfig = ReplayConfig()
) -> dict[str, Any]:
    """Chase replayed players; every episode is decided in one batch per decision step.

    Returns ``episodes``, ``catch_rate``, ``mean_time`` (uncaught episodes count as
    ``episode_s``; lower is better) and ``times`` (per episode, in start order).
    """
    starts = _starts(tracks, cfg)
    n = len(starts)
    if n == 0:
        return {"episodes": 0, "catch_rate": 0.0, "mean_time": None, "times": []}
    rng = np.random.default_rng([cfg.seed, 4343])
    chaser = np.zeros((n, 2))
    for k, (i, t0) in enumerate(starts):
        tr = tracks[i]
        p, _ = tr.at(t0)
        c = None
        if tr.chaser is not None:
            cx = np.interp(t0, tr.t, tr.chaser[:, 0], left=np.nan, right=np.nan)
            cz = np.interp(t0, tr.t, tr.chaser[:, 1], left=np.nan, right=np.nan)
            d = math.hypot(cx - p[0], cz - p[1]) if np.isfinite(cx + cz) else math.nan
            if cfg.start_dist[0] * 0.5 <= d <= cfg.start_dist[1] * 1.6:
                c = np.array([cx, cz])
        if c is None:
            ang = rng.uniform(0.0, 2 * math.pi)
            d = rng.uniform(*cfg.start_dist)
            c = p + d * np.array([math.cos(ang), math.sin(ang)])
        chaser[k] = c
    steps = int(round(cfg.episode_s / DT))
    caught_at = np.full(n, -1, dtype=np.int64)
    direction = np.zeros((n, 2))
    speed = np.zeros(n)
    memory: AgentMemory = {}
    names = [f"chaser-{k}" for k in range(n)]
    for step in range(steps + 1):
        active = np.flatnonzero(caught_at < 0)
        if len(active) == 0:
            break
        ppos = np.zeros((n, 2))
        pvel = np.zeros((n, 2))
        for k in active.tolist():
            i, t0 = starts[k]
            ppos[k], pvel[k] = tracks[i].at(t0 + step * DT)
        d = np.hypot(*(ppos[active] - chaser[active]).T)
        hit = active[d < cfg.catch_radius]
        caught_at[hit] = step
        active = np.flatnonzero(caught_at < 0)
        if step == steps or len(active) == 0:
            break
        if step % cfg.act_every == 0:
            obs = [_observation(names[k], step, chaser[k], ppos[k], pvel[k]) for k in active.tolist()]
            for k, decision in zip(active.tolist(), policy.decide(obs, memory), strict=True):
                direction[k], speed[k] = _motion(decision.action, chaser[k])
        chaser[active] += direction[active] * (speed[active] * cfg.agent_speed * DT)[:, None]
    times = np.where(caught_at >= 0, caught_at * DT, cfg.episode_s)
    return {
        "episodes": n,
        "catch_rate": float((caught_at >= 0).mean()),
        "mean_time": float(times.mean()),
        "times": [round(float(x), 4) for x in times],
    }


def _observation(agent: str, tick: int, chaser: np.ndarray, player: np.ndarray, vel: np.ndarray) -> Observation:
    rel = player - chaser
    return Observation.model_validate(
        {
            "agent": agent,
            "kind": "pursuit",
            "tick": tick,
            "pos": {"x": float(chaser[0]), "y": 0.0, "z": float(chaser[1])},
            "entities": [
                {
                    "kind": "player",
                    "name": "target",
                    "rel": {"x": float(rel[0]), "y": 0.0, "z": float(rel[1])},
                    "velocity": {"x": float(vel[0]), "y": 0.0, "z": float(vel[1])},
                }
            ],
            "targets": ["target"],
        }
    )


def _motion(action: Any, here: np.ndarray) -> tuple[np.ndarray, float]:
    """Unit walking direction and speed fraction of a decided action (anything else stands)."""
    if action.type == "move":
        d = np.array([action.args.dir.x, action.args.dir.z])
        speed = float(action.args.speed)
    elif action.type == "move_to":
        d = np.array([action.args.pos.x - here[0], action.args.pos.z - here[1]])
        speed = float(action.args.speed)
    else:
        return np.zeros(2), 0.0
    norm = float(np.hypot(*d))
    if not math.isfinite(norm) or norm < 1e-9:
        return np.zeros(2), 0.0
    return d / norm, min(1.0, speed)
