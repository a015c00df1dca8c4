"""Scripted baselines acting on schema observations only (no simulator internals).

* :class:`PurePursuitPolicy` - the enemy runs straight at where the target *is* now.
* :class:`InterceptPolicy` - constant-velocity lead: runs at where the target *will be* if it
  keeps its current velocity (a simple "prediction" baseline).
* :class:`AStarNavigationPolicy` - a grid planner over the observation's ``nearby`` voxel grid:
  uniform-cost search (A* without a goal inside the grid) to every standable cell, then the
  first step toward the reachable cell nearest ``goal``; replans every decision. Geometry only:
  it knows solid from non-solid and nothing about hazards or slow ground unless
  ``avoid_hazards=True``.
* :class:`GreedyTeamPolicy` - every team member independently heads for its nearest item.

All of them are :class:`~luanti_tune.policies.base.Policy` objects, so they are evaluated
exactly like learned models and serve as the inference fallback.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from luanti_tune.policies.base import AgentMemory, Decision, Policy
from luanti_tune.schemas.agent import Action, EntityView, MoveAction, MoveArgs, Observation, WaitAction, WaitArgs
from luanti_tune.schemas.common import NODE_CODES, Vec3

_SOLID_CODES = (NODE_CODES["solid"], NODE_CODES["slow"], NODE_CODES["unknown"])
_HAZARD_CODES = (NODE_CODES["lava"],)
_MOVES = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1))
_DYS = (0, 1, -1, -2, -3)


def wait_action(agent: str) -> Action:
    """Do nothing for one tick (no target, no goal, or nowhere to go)."""
    return WaitAction(agent=agent, type="wait", args=WaitArgs(ticks=1))


def move_action(agent: str, dx: float, dz: float, speed: float = 1.0, jump: bool = False) -> Action:
    """A ``move`` toward the horizontal direction ``(dx, dz)`` (normalised here)."""
    n = math.hypot(dx, dz)
    if n < 1e-9:
        return wait_action(agent)
    return MoveAction(
        agent=agent,
        type="move",
        args=MoveArgs(dir=Vec3(x=dx / n, y=1.0 if jump else 0.0, z=dz / n), speed=speed),
    )


def pick_target(obs: Observation) -> EntityView | None:
    """The first listed target that is visible, else the nearest player, else ``None``."""
    by_name = {e.name: e for e in obs.entities if e.name}
    for name in obs.targets:
        if name in by_name:
            return by_name[name]
    players = [e for e in obs.entities if e.kind == "player"]
    if not players:
        return None
    return min(players, key=lambda e: e.rel.x**2 + e.rel.z**2)


class PurePursuitPolicy(Policy):
    """Head straight for the target's current position."""

    name = "scripted-pure-pursuit"
    version = "1"

    def decide(self, observations: Sequence[Observation], memory: AgentMemory) -> list[Decision]:
        out = []
        for obs in observations:
            t = pick_target(obs)
            if t is None:
                out.append(Decision(wait_action(obs.agent), 1.0))
            else:
                out.append(Decision(move_action(obs.agent, t.rel.x, t.rel.z), 1.0))
        return out


class InterceptPolicy(Policy):
    """Aim at the interception point assuming the target keeps its velocity (lead pursuit)."""

    name = "scripted-intercept"
    version = "1"

    def __init__(self, own_speed: float = 4.0, max_lead_s: float = 2.5) -> None:
        self.own_speed = own_speed
        self.max_lead_s = max_lead_s

    def decide(self, observations: Sequence[Observation], memory: AgentMemory) -> list[Decision]:
        out = []
        for obs in observations:
            t = pick_target(obs)
            if t is None:
                out.append(Decision(wait_action(obs.agent), 1.0))
                continue
            v = t.velocity or Vec3(x=0, y=0, z=0)
            lead = intercept_time(t.rel.x, t.rel.z, v.x, v.z, self.own_speed, self.max_lead_s)
            out.append(Decision(move_action(obs.agent, t.rel.x + v.x * lead, t.rel.z + v.z * lead), 1.0))
        return out


class TrajectoryInterceptPolicy(Policy):
    """Lead pursuit with the target's *average* velocity over a window (from per-agent memory).

    A constant-velocity lead is fooled by strafing and zig-zagging; averaging the observed
    trajectory (relative positions corrected for the enemy's own motion) predicts the drift.
    """

    name = "scripted-trajectory-intercept"
    version = "1"

    def __init__(self, own_speed: float = 4.0, window: int = 10, max_lead_s: float = 2.5, dt: float = 0.09) -> None:
        self.own_speed = own_speed
        self.window = window
        self.max_lead_s = max_lead_s
        self.dt = dt

    def decide(self, observations: Sequence[Observation], memory: AgentMemory) -> list[Decision]:
        out = []
        for obs in observations:
            t = pick_target(obs)
            if t is None:
                out.append(Decision(wait_action(obs.agent), 1.0))
                continue
            mem = memory.setdefault(obs.agent, {})
            hist: list[tuple[float, float]] = mem.setdefault("hist", [])
            if mem.get("target") != t.name:
                hist.clear()
                mem["target"] = t.name
            hist.append((obs.pos.x + t.rel.x, obs.pos.z + t.rel.z))
            del hist[: -self.window]
            if len(hist) >= 2:
                span = (len(hist) - 1) * self.dt
                vx = (hist[-1][0] - hist[0][0]) / span
                vz = (hist[-1][1] - hist[0][1]) / span
            else:
                v = t.velocity or Vec3(x=0, y=0, z=0)
                vx, vz = v.x, v.z
            lead = intercept_time(t.rel.x, t.rel.z, vx, vz, self.own_speed, self.max_lead_s)
            out.append(Decision(move_action(obs.agent, t.rel.x + vx * lead, t.rel.z + vz * lead), 1.0))
        return out


def intercept_time(rx: float, rz: float, vx: float, vz: float, speed: float, max_t: float) -> float:
    """Smallest ``t >= 0`` with ``|r + v t| = speed * t`` (clipped to ``max_t``)."""
    a = vx * vx + vz * vz - speed * speed
    b = 2 * (rx * vx + rz * vz)
    c = rx * rx + rz * rz
    if abs(a) < 1e-9:
        t = -c / b if b < 0 else max_t
    else:
        disc = b * b - 4 * a * c
        if disc < 0:
            return max_t
        roots = [(-b - math.sqrt(disc)) / (2 * a), (-b + math.sqrt(disc)) / (2 * a)]
        pos = [r for r in roots if r >= 0]
        t = min(pos) if pos else max_t
    return float(min(max(t, 0.0), max_t))


class AStarNavigationPolicy(Policy):
    """Plan over the local ``nearby`` grid toward ``goal``; geometry only by default."""

    name = "scripted-astar"
    version = "1"

    def __init__(self, avoid_hazards: bool = False, max_drop: int = 3) -> None:
        self.avoid_hazards = avoid_hazards
        self.max_drop = max_drop

    def decide(self, observations: Sequence[Observation], memory: AgentMemory) -> list[Decision]:
        return [Decision(self._one(obs, memory.setdefault(obs.agent, {})), 1.0) for obs in observations]

    def _one(self, obs: Observation, mem: dict[str, Any]) -> Action:
        if obs.goal is None:
            return wait_action(obs.agent)
        gx, gy, gz = obs.goal.x - obs.pos.x, obs.goal.y - obs.pos.y, obs.goal.z - obs.pos.z
        if obs.nearby is None:
            return move_action(obs.agent, gx, gz)
        step = self.plan(obs.nearby.radius, obs.nearby.codes, (gx, gy, gz))
        if step is None:
            return move_action(obs.agent, gx, gz)
        cell_x = math.floor(obs.pos.x + 0.5)
        cell_z = math.floor(obs.pos.z + 0.5)
        tx = cell_x + step[0] - obs.pos.x
        tz = cell_z + step[2] - obs.pos.z
        return move_action(obs.agent, tx, tz, jump=step[1] > 0)

    def plan(
        self, radius: int, codes: Sequence[int], goal_rel: tuple[float, float, float]
    ) -> tuple[int, int, int] | None:
        """First step ``(dx, dy, dz)`` of the best path inside the grid, ``None`` when stuck."""
        side = 2 * radius + 1
        g = np.asarray(codes, dtype=np.int16).reshape(side, side, side)  # [y, z, x]
        solid = np.isin(g, _SOLID_CODES)
        blocked = solid.copy()
        if self.avoid_hazards:
            hazard = np.isin(g, _HAZARD_CODES)
            blocked |= hazard
            blocked[1:] |= hazard[:-1]  # do not stand right above lava either
        # standable: feet and head free, solid floor (or a liquid/ladder for geometry-only)
        free = ~blocked
        head_free = np.ones_like(free)
        head_free[:-1] = free[1:]
        floor = np.zeros_like(free)
        floor[1:] = solid[:-1] | (g[:-1] == NODE_CODES["climbable"])
        if not self.avoid_hazards:
            floor[1:] |= np.isin(g[:-1], (NODE_CODES["water"], NODE_CODES["lava"]))
        stand = free & head_free & floor
        r = radius
        start = (r, r, r)
        goal = np.array([goal_rel[1], goal_rel[2], goal_rel[0]])
        best: tuple[float, tuple[int, int, int]] = (float(np.hypot(np.hypot(*goal[1:]), goal[0] * 0.5)), start)
        dist: dict[tuple[int, int, int], float] = {start: 0.0}
        parent: dict[tuple[int, int, int], tuple[int, int, int]] = {}
        heap = [(0.0, start)]
        while heap:
            d, cur = heapq.heappop(heap)
            if d > dist.get(cur, math.inf):
                continue
            y, z, x = cur
            rel = np.array([y - r, z - r, x - r])
            h = float(np.hypot(np.hypot(*(goal[1:] - rel[1:])), (goal[0] - rel[0]) * 0.5))
            if h + 0.05 * d < best[0]:
                best = (h + 0.05 * d, cur)
            for node, cost in self._neighbours(cur, free, stand, side):
                nd = d + cost
                if nd < dist.get(node, math.inf):
                    dist[node] = nd
                    parent[node] = cur
                    heapq.heappush(heap, (nd, node))
        target = best[1]
        if target == start:
            return None
        node = target
        while parent.get(node) != start:
            node = parent[node]
        return (node[2] - r, node[0] - r, node[1] - r)

    def _neighbours(
        self, cur: tuple[int, int, int], free: np.ndarray, stand: np.ndarray, side: int
    ) -> list[tuple[tuple[int, int, int], float]]:
        """Standable cells one step away (8 directions; step up 1, drop up to ``max_drop``)."""
        y, z, x = cur
        out = []
        for dz, dx in _MOVES:
            nz, nx = z + dz, x + dx
            if not (0 <= nz < side and 0 <= nx < side):
                continue
            if dz and dx and not (free[y, nz, x] and free[y, z, nx]):
                continue  # no corner cutting
            for dy in _DYS:
                ny = y + dy
                if dy < -self.max_drop or not (0 <= ny < side):
                    continue
                if dy == 1 and not (y + 2 < side and free[y + 2, z, x]):
                    continue
                if stand[ny, nz, nx]:
                    out.append(((ny, nz, nx), math.hypot(dx, dz) + (0.5 if dy > 0 else 0.0)))
                    break
        return out


class GreedyTeamPolicy(Policy):
    """Each member independently goes for its nearest item (no coordination)."""

    name = "scripted-greedy-team"
    version = "1"

    def decide(self, observations: Sequence[Observation], memory: AgentMemory) -> list[Decision]:
        out = []
        for obs in observations:
            items = [e for e in obs.entities if e.kind == "item"]
            if items:
                t = min(items, key=lambda e: e.rel.x**2 + e.rel.z**2)
                out.append(Decision(move_action(obs.agent, t.rel.x, t.rel.z), 1.0))
            elif obs.goal is not None:
                out.append(Decision(move_action(obs.agent, obs.goal.x - obs.pos.x, obs.goal.z - obs.pos.z), 1.0))
            else:
                out.append(Decision(wait_action(obs.agent), 1.0))
        return out
