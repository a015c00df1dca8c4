"""Scripted baselines acting on schema observations only (no simulator internals).

* :class:`PurePursuitPolicy` - the enemy runs straight at where the target *is* now.
* :class:`InterceptPolicy` - constant-velocity lead: runs at where the target *will be* if it
  keeps its current velocity (a simple "prediction" baseline).
* :class:`TrajectoryInterceptPolicy` - the same lead with the target's average velocity over a
  window of its recent positions (per-agent memory).
* :class:`AStarNavigationPolicy` - a grid planner over the observation's ``nearby`` voxel grid:
  uniform-cost search (A* without a goal inside the grid) to every standable cell, then the
  first step toward the reachable cell nearest ``goal``; replans every decision. Geometry only:
  it knows solid from non-solid and nothing about hazards or slow ground unless
  ``avoid_hazards=True``.
* :class:`GreedyTeamPolicy` - every team member independently heads for its nearest item.

All of them are :class:`~luanti_tune.policies.base.Policy` objects, so they are evaluated
exactly like learned models and serve as the inference fallback. Each decides a whole batch at
once (:meth:`~luanti_tune.policies.base.Policy.decide_columns`: array operations on the batch's
columns, :mod:`luanti_tune.policies.targets` for the entity each agent acts on), so that the
fallback answers 1000 agents in about the time a model does; ``decide`` gives the same
decisions as objects.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from luanti_tune.policies.base import AgentMemory, Decision, Policy
from luanti_tune.policies.batch import DecisionColumns
from luanti_tune.policies.columns import ObservationColumns
from luanti_tune.policies.targets import columns_of, nearest, pick_targets
from luanti_tune.schemas.agent import Observation
from luanti_tune.schemas.common import NODE_CODES

_SOLID_CODES = (NODE_CODES["solid"], NODE_CODES["slow"], NODE_CODES["unknown"])
_HAZARD_CODES = (NODE_CODES["lava"],)
_MOVES = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1))
_DYS = (0, 1, -1, -2, -3)
#: Planning arrays of at most this many grid cells at once (agents x cells of their grids).
_PLAN_CELLS = 1 << 18


def moves(
    agents: Sequence[str],
    dx: np.ndarray,
    dz: np.ndarray,
    where: np.ndarray,
    jump: np.ndarray | None = None,
    min_norm: float = 1e-9,
) -> DecisionColumns:
    """Per row: a ``move`` at speed 1 along the horizontal direction ``(dx, dz)`` (normalised
    here; ``dir.y`` 1 where ``jump``) where ``where`` holds and the direction is at least
    ``min_norm`` long, else ``wait`` for one tick. Confidence 1."""
    n = len(agents)
    dx = np.asarray(dx, dtype=np.float64).reshape(n)
    dz = np.asarray(dz, dtype=np.float64).reshape(n)
    # Python's hypot (correctly rounded, unlike the C library's one numpy calls)
    norm = np.fromiter(map(math.hypot, dx.tolist(), dz.tolist()), dtype=np.float64, count=n)
    move = np.asarray(where, dtype=bool) & ~(norm < min_norm)
    d = np.zeros((n, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        d[:, 0] = np.where(move, dx / norm, 0.0)
        d[:, 2] = np.where(move, dz / norm, 0.0)
    if jump is not None:
        d[:, 1] = np.where(move & jump, 1.0, 0.0)
    return DecisionColumns(agents, move, d, np.ones(n), np.ones(n))


def intercept_time(rx: Any, rz: Any, vx: Any, vz: Any, speed: float, max_t: float) -> np.ndarray:
    """Smallest ``t >= 0`` with ``|r + v t| = speed * t`` (clipped to ``max_t``), elementwise.

    ``max_t`` where the target cannot be caught (no non-negative solution)."""
    rx, rz, vx, vz = (np.asarray(a, dtype=np.float64) for a in (rx, rz, vx, vz))
    a = vx * vx + vz * vz - speed * speed
    b = 2 * (rx * vx + rz * vz)
    c = rx * rx + rz * rz
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        linear = np.abs(a) < 1e-9
        t_linear = np.where(b < 0, -c / b, max_t)
        disc = b * b - 4 * a * c
        root = np.sqrt(disc)
        r1 = (-b - root) / (2 * a)
        r2 = (-b + root) / (2 * a)
        p1, p2 = r1 >= 0, r2 >= 0
        t_quad = np.where(p1 & p2, np.where(r2 < r1, r2, r1), np.where(p1, r1, np.where(p2, r2, max_t)))
        t = np.where(linear, t_linear, t_quad)
        t = np.where(0.0 > t, 0.0, t)
        t = np.where(max_t < t, max_t, t)
    return np.where(~linear & (disc < 0), max_t, t)


class ColumnarPolicy(Policy):
    """A policy deciding a whole batch as columns; :meth:`decide` gives the same as objects."""

    def decide(self, observations: Sequence[Observation], memory: AgentMemory) -> list[Decision]:
        return self.decide_columns(observations, memory).decisions()  # type: ignore[no-any-return]

    def decide_columns(self, observations: Sequence[Observation], memory: AgentMemory) -> DecisionColumns:
        batch, cols = columns_of(observations)
        return self.decide_all(batch.agents, cols, memory)

    @abc.abstractmethod
    def decide_all(self, agents: list[str], cols: ObservationColumns, memory: AgentMemory) -> DecisionColumns:
        """The decisions of the observations ``cols`` (of ``agents``)."""


class _Targets:
    """Per row: its target (:func:`pick_targets`: ``entity``, ``-1`` for none; ``has``), the
    target's x/z relative to the agent (``rx``, ``rz``) and its x/z velocity (0 when unknown)."""

    def __init__(self, cols: ObservationColumns) -> None:
        self.entity = pick_targets(cols)
        self.has = self.entity >= 0
        e = cols.entities
        k = np.where(self.has, self.entity, 0)
        rel, vel = (e.rel[k], e.velocity[k]) if len(e.kind) else (np.zeros((len(k), 3)),) * 2
        self.rx, self.rz, self.vx, self.vz = rel[:, 0], rel[:, 2], vel[:, 0], vel[:, 2]


class PurePursuitPolicy(ColumnarPolicy):
    """Head straight for the target's current position."""

    name = "scripted-pure-pursuit"
    version = "1"

    def decide_all(self, agents: list[str], cols: ObservationColumns, memory: AgentMemory) -> DecisionColumns:
        t = _Targets(cols)
        return moves(agents, t.rx, t.rz, t.has)


class InterceptPolicy(ColumnarPolicy):
    """Aim at the interception point assuming the target keeps its velocity (lead pursuit)."""

    name = "scripted-intercept"
    version = "1"

    def __init__(self, own_speed: float = 4.0, max_lead_s: float = 2.5) -> None:
        self.own_speed = own_speed
        self.max_lead_s = max_lead_s

    def decide_all(self, agents: list[str], cols: ObservationColumns, memory: AgentMemory) -> DecisionColumns:
        t = _Targets(cols)
        lead = intercept_time(t.rx, t.rz, t.vx, t.vz, self.own_speed, self.max_lead_s)
        return moves(agents, t.rx + t.vx * lead, t.rz + t.vz * lead, t.has)


class TrajectoryInterceptPolicy(ColumnarPolicy):
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

    def decide_all(self, agents: list[str], cols: ObservationColumns, memory: AgentMemory) -> DecisionColumns:
        t = _Targets(cols)
        names = cols.entities.name
        ax = (cols.pos[:, 0] + t.rx).tolist()
        az = (cols.pos[:, 2] + t.rz).tolist()
        vx, vz = t.vx.copy(), t.vz.copy()
        for i in np.flatnonzero(t.has).tolist():  # the memory, agent by agent in batch order
            mem = memory.setdefault(agents[i], {})
            hist: list[tuple[float, float]] = mem.setdefault("hist", [])
            name = names[int(t.entity[i])]
            if mem.get("target") != name:
                hist.clear()
                mem["target"] = name
            hist.append((ax[i], az[i]))
            del hist[: -self.window]
            if len(hist) >= 2:
                span = (len(hist) - 1) * self.dt
                vx[i] = (hist[-1][0] - hist[0][0]) / span
                vz[i] = (hist[-1][1] - hist[0][1]) / span
        lead = intercept_time(t.rx, t.rz, vx, vz, self.own_speed, self.max_lead_s)
        return moves(agents, t.rx + vx * lead, t.rz + vz * lead, t.has)


class AStarNavigationPolicy(ColumnarPolicy):
    """Plan over the local ``nearby`` grid toward ``goal``; geometry only by default."""

    name = "scripted-astar"
    version = "1"

    def __init__(self, avoid_hazards: bool = False, max_drop: int = 3) -> None:
        self.avoid_hazards = avoid_hazards
        self.max_drop = max_drop

    def decide_all(self, agents: list[str], cols: ObservationColumns, memory: AgentMemory) -> DecisionColumns:
        n = len(agents)
        goals = cols.goal if cols.goal is not None else [None] * n
        has_goal = np.fromiter((g is not None for g in goals), dtype=bool, count=n)
        goal = np.array([(g.x, g.y, g.z) if g is not None else (0.0, 0.0, 0.0) for g in goals]).reshape(n, 3)
        rel = goal - cols.pos  # gx, gy, gz
        dx, dz = rel[:, 0].copy(), rel[:, 2].copy()
        jump = np.zeros(n, dtype=bool)
        nearby = cols.nearby
        if nearby is not None:
            by_radius: dict[int, list[int]] = {}
            for i in np.flatnonzero(has_goal).tolist():
                grid = nearby[i]
                if grid is not None:
                    by_radius.setdefault(int(grid.radius), []).append(i)
            for radius, rows_list in by_radius.items():
                side = 2 * radius + 1
                per = max(1, _PLAN_CELLS // side**3)
                for lo in range(0, len(rows_list), per):
                    rows = np.asarray(rows_list[lo : lo + per], dtype=np.intp)
                    codes = np.array([nearby[i].codes for i in rows.tolist()], dtype=np.int16)  # type: ignore[union-attr]
                    found, step = self.plan_many(radius, codes.reshape(len(rows), side, side, side), rel[rows])
                    hit = rows[found]
                    pos = cols.pos[hit]
                    cell_x, cell_z = np.floor(pos[:, 0] + 0.5), np.floor(pos[:, 2] + 0.5)
                    dx[hit] = (cell_x + step[found, 0]) - pos[:, 0]
                    dz[hit] = (cell_z + step[found, 2]) - pos[:, 2]
                    jump[hit] = step[found, 1] > 0
        return moves(agents, dx, dz, has_goal, jump)

    def plan(
        self, radius: int, codes: Sequence[int], goal_rel: tuple[float, float, float]
    ) -> tuple[int, int, int] | None:
        """First step ``(dx, dy, dz)`` of the best path inside the grid, ``None`` when stuck."""
        side = 2 * radius + 1
        grid = np.asarray(codes, dtype=np.int16).reshape(1, side, side, side)
        found, step = self.plan_many(radius, grid, np.asarray([goal_rel], dtype=np.float64))
        return (int(step[0, 0]), int(step[0, 1]), int(step[0, 2])) if found[0] else None

    def plan_many(self, radius: int, grids: np.ndarray, goal_rel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`plan` for ``B`` grids ``[B, y, z, x]`` and goals ``[B, 3]`` (x, y, z) at once:
        ``found [B]`` and the first steps ``[B, 3]`` (dx, dy, dz).

        The search is a uniform-cost search from the agent's cell (8 horizontal directions, a step
        up of 1 or a drop of up to ``max_drop``, no corner cutting). Its result is computed for
        every grid together: each cell's distance as the fixed point of relaxing every edge (the
        distances a search that settles cells in order of ``(distance, cell)`` finds), each cell's
        parent as the first such settled neighbour giving that distance, and the goal cell as the
        first settled cell of the lowest score ``h + 0.05 * distance`` (``h``: the distance to the
        goal, vertical distances at half weight). The first step leads from the agent's cell
        toward that one."""
        b, side = len(grids), 2 * radius + 1
        cells = side**3
        g = grids
        solid = np.isin(g, _SOLID_CODES)
        blocked = solid.copy()
        if self.avoid_hazards:
            hazard = np.isin(g, _HAZARD_CODES)
            blocked |= hazard
            blocked[:, 1:] |= hazard[:, :-1]  # do not stand right above lava either
        # standable: feet and head free, solid floor (or a liquid/ladder for geometry-only)
        free = ~blocked
        head_free = np.ones_like(free)
        head_free[:, :-1] = free[:, 1:]
        floor = np.zeros_like(free)
        floor[:, 1:] = solid[:, :-1] | (g[:, :-1] == NODE_CODES["climbable"])
        if not self.avoid_hazards:
            floor[:, 1:] |= np.isin(g[:, :-1], (NODE_CODES["water"], NODE_CODES["lava"]))
        stand = free & head_free & floor
        start = (radius * side + radius) * side + radius
        # the search leaves the start cell and standable cells only
        source = stand.reshape(b, cells).copy()
        source[:, start] = True
        # the edge of each (direction, cell): the first drop/step dy that lands on a standable cell
        head_room = _shifted(free, 2, 0, 0)
        dys = [dy for dy in _DYS if dy >= -self.max_drop]
        chosen = np.full((len(_MOVES), b, side, side, side), -1, dtype=np.int8)
        for m, (dz, dx) in enumerate(_MOVES):
            ok = source.reshape(b, side, side, side)
            if dz and dx:  # no corner cutting
                ok = ok & _shifted(free, 0, dz, 0) & _shifted(free, 0, 0, dx)
            pick = chosen[m]
            for j in range(len(dys) - 1, -1, -1):  # the last assignment wins: the first dy
                land = ok & _shifted(stand, dys[j], dz, dx)
                if dys[j] == 1:
                    land &= head_room
                pick[land] = j
        mi, bi, vi = np.nonzero(chosen.reshape(len(_MOVES), b, cells) >= 0)
        ji = chosen.reshape(len(_MOVES), b, cells)[mi, bi, vi]
        offsets = np.array([[(dy * side + dz) * side + dx for dy in dys] for dz, dx in _MOVES], dtype=np.intp)
        costs = np.array([[math.hypot(dx, dz) + (0.5 if dy > 0 else 0.0) for dy in dys] for dz, dx in _MOVES])
        src = bi * cells + vi
        dst = src + offsets[mi, ji]
        cost = costs[mi, ji]
        dist = np.full(b * cells, np.inf)
        dist[np.arange(b) * cells + start] = 0.0
        if len(src):
            while True:  # relax every edge until nothing changes
                new = dist.copy()
                np.minimum.at(new, dst, dist[src] + cost)
                if np.array_equal(new, dist):
                    break
                dist = new
            # parent: of the neighbours giving a cell its distance, the first settled one
            tight = np.flatnonzero(np.isfinite(dist[src]) & (dist[src] + cost == dist[dst]))
            order = np.lexsort((src[tight], dist[src[tight]], dst[tight]))
            d_sorted = dst[tight][order]
            first = np.ones(len(order), dtype=bool)
            first[1:] = d_sorted[1:] != d_sorted[:-1]
            parent = np.full(b * cells, -1, dtype=np.intp)
            parent[d_sorted[first]] = src[tight][order][first]
        else:
            parent = np.full(b * cells, -1, dtype=np.intp)
        # the goal cell: the lowest score, the first settled of equal ones (the start wins ties)
        reach = np.flatnonzero(np.isfinite(dist))
        agent, cell = np.divmod(reach, cells)
        y, zx = np.divmod(cell, side * side)
        z, x = np.divmod(zx, side)
        gx, gy, gz = (goal_rel[agent, k] for k in range(3))
        h = np.hypot(np.hypot(gz - (z - radius), gx - (x - radius)), (gy - (y - radius)) * 0.5)
        d = dist[reach]
        score = h + 0.05 * d
        order = np.lexsort((cell, d, score, agent))
        firsts = np.ones(len(order), dtype=bool)
        firsts[1:] = agent[order][1:] != agent[order][:-1]
        target = np.full(b, -1, dtype=np.intp)
        target[agent[order][firsts]] = reach[order][firsts]
        starts = np.arange(b) * cells + start
        found = target != starts
        # walk back from the goal cell to the step right after the start
        node = np.where(found, target, starts)
        walking = found.copy()
        for _ in range(cells):  # a path visits each cell at most once
            if not walking.any():
                break
            up = parent[node]
            walking &= up != starts
            node = np.where(walking, up, node)
        cell = node - np.arange(b) * cells
        y, zx = np.divmod(cell, side * side)
        z, x = np.divmod(zx, side)
        step = np.stack([x - radius, y - radius, z - radius], axis=1)
        return found, step


def _shifted(a: np.ndarray, dy: int, dz: int, dx: int) -> np.ndarray:
    """``out[:, y, z, x] = a[:, y + dy, z + dz, x + dx]`` (``False`` outside the grid)."""
    out = np.zeros_like(a)
    s = a.shape[1]

    def span(d: int) -> tuple[slice, slice]:
        return (slice(0, s - d), slice(d, s)) if d >= 0 else (slice(-d, s), slice(0, s + d))

    (ty, fy), (tz, fz), (tx, fx) = span(dy), span(dz), span(dx)
    out[:, ty, tz, tx] = a[:, fy, fz, fx]
    return out


class GreedyTeamPolicy(ColumnarPolicy):
    """Each member independently goes for its nearest item (no coordination)."""

    name = "scripted-greedy-team"
    version = "1"

    def decide_all(self, agents: list[str], cols: ObservationColumns, memory: AgentMemory) -> DecisionColumns:
        n = len(agents)
        item = nearest(cols, "item")
        has_item = item >= 0
        rel = cols.entities.rel[np.where(has_item, item, 0)] if len(cols.entities.kind) else np.zeros((n, 3))
        goals = cols.goal if cols.goal is not None else [None] * n
        has_goal = np.fromiter((g is not None for g in goals), dtype=bool, count=n)
        goal = np.array([(g.x, g.y, g.z) if g is not None else (0.0, 0.0, 0.0) for g in goals]).reshape(n, 3)
        to_goal = goal - cols.pos
        dx = np.where(has_item, rel[:, 0], to_goal[:, 0])
        dz = np.where(has_item, rel[:, 2], to_goal[:, 2])
        return moves(agents, dx, dz, has_item | has_goal)
