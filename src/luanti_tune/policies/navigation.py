"""Navigation family: agents that learn the terrain from their own experience.

Before (the brief's example 3) agents used a fixed algorithm: A* on geometry only, every
walkable cell costs the same. Here a small fully convolutional 3-D CNN looks at the local
voxel grid (``Observation.nearby``, one-hot node codes) plus two channels of the agent's own
*experience map* (cells where it was blocked, cells where it got hurt) and predicts, for
every cell, what stepping into it costs:

* ``speed``: achieved fraction of the walk speed while there (sand/snow/water/lava are slow),
* ``damage``: hp lost per decision step there (lava; fall damage on landing),
* ``blocked``: probability that moving into it fails,
* ``fell``: probability of falling when stepping there (collapsed bridge, edge).

A batched planner (:func:`plan_first_steps`) then runs a backward Bellman-Ford on the 2.5-D
surface of the observed grid with those learned costs and walks the first step of the
cheapest path. Terrain that changes during an episode (lava spreading, a bridge collapsing)
changes the observed grid, so the plan changes with it; the experience map remembers what
geometry cannot show, and a per-column count of the steps already spent there makes dead ends
the agent keeps returning to expensive (LRTA*-like), so it does not loop in local minima.

The family is split as the contract in :mod:`luanti_tune.policies.base` asks:
:class:`NavigationAdapter` (``featurize`` -> ``{"grid", "visits"}``, module ->
``{"cells", "penalty"}``, ``decode`` -> move actions) and :class:`NavigationPolicy` for the
simulator runners; :class:`GeometryNavigationPolicy` is the same planner with geometry-only
costs (the ablation). Torch is imported lazily (only :func:`build_navigation_model` needs it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from luanti_tune.policies.base import AgentMemory, Decision, FamilyAdapter, Policy
from luanti_tune.schemas.agent import Action, MoveAction, MoveArgs, Observation, WaitAction
from luanti_tune.schemas.common import NODE_CODES, Vec3

FAMILY = "navigation"
N_CODES = len(NODE_CODES)
AIR, SOLID, WATER, LAVA, SLOW, CLIMB, UNKNOWN = (
    NODE_CODES["air"],
    NODE_CODES["solid"],
    NODE_CODES["water"],
    NODE_CODES["lava"],
    NODE_CODES["slow"],
    NODE_CODES["climbable"],
    NODE_CODES["unknown"],
)
#: Codes a body stands on (the simulator's sand/snow are solid *and* slow).
SUPPORT_CODES = (SOLID, SLOW)
#: Input channels: one-hot node codes, then the experience map.
MEMORY_CHANNELS = ("exp_blocked", "exp_hurt")
IN_CHANNELS = N_CODES + len(MEMORY_CHANNELS)
#: Output channels of the cost model, per cell.
OUTPUT_CHANNELS = ("speed", "damage", "blocked", "fell")
SPEED, DAMAGE, BLOCKED, FELL = range(4)
MAX_SPEED_RATIO = 1.25
#: Cells of context on each side that the cost of one cell depends on (two 3x3x3 convolutions).
CONTEXT = 2

#: Nominal seconds to cross one node at walk speed (Luanti: 4 nodes/s).
NODE_SECONDS = 0.25
#: Seconds between two decisions of a simulated agent (the simulator's step).
DECISION_SECONDS = 0.09
#: Cost of one hp of damage, in seconds of walking.
HP_SECONDS = 3.0
BLOCKED_SECONDS = 1.0
FELL_SECONDS = 2.0
#: A cell predicted blocked with more than this probability is not entered at all.
BLOCKED_CUTOFF = 0.9
#: Experience map bounds (per agent) and the displacement below which a move counts as blocked.
MAX_EXPERIENCE_CELLS = 256
BLOCKED_PROGRESS = 0.03
#: Planner penalty per decision step already spent in a column (breaks local-minimum loops,
#: like LRTA*: a dead end the agent keeps returning to becomes expensive), and its cap.
VISIT_SECONDS = 0.1
MAX_VISITS = 100.0
GOAL_REACHED = 0.6

DEFAULT_ARCHITECTURE: dict[str, Any] = {
    "kind": "navcost-cnn3d",
    "radius": 3,
    "hidden": 16,
    "in_channels": IN_CHANNELS,
    "out_channels": len(OUTPUT_CHANNELS),
}

Cell = tuple[int, int, int]


# ----------------------------------------------------------------------------- grids


def cell_of(pos: Vec3 | Sequence[float]) -> Cell:
    """The node containing a body's feet (Luanti: node ``n`` spans ``[n-0.5, n+0.5)``)."""
    x, y, z = pos.as_tuple() if isinstance(pos, Vec3) else tuple(pos)
    return (math.floor(x + 0.5), math.floor(y + 0.5 + 1e-6), math.floor(z + 0.5))


def grid_codes(obs: Observation, radius: int) -> np.ndarray:
    """``(s, s, s)`` int8 codes in ``(y, z, x)`` order around the agent, cropped or padded to ``radius``.

    Cells the observation does not cover are ``unknown``.
    """
    side = 2 * radius + 1
    out = np.full((side, side, side), UNKNOWN, dtype=np.int8)
    if obs.nearby is None:
        return out
    r0 = obs.nearby.radius
    src = np.asarray(obs.nearby.codes, dtype=np.int8).reshape(2 * r0 + 1, 2 * r0 + 1, 2 * r0 + 1)
    k = min(r0, radius)
    out[radius - k : radius + k + 1, radius - k : radius + k + 1, radius - k : radius + k + 1] = src[
        r0 - k : r0 + k + 1, r0 - k : r0 + k + 1, r0 - k : r0 + k + 1
    ]
    return out


def one_hot(codes: np.ndarray) -> np.ndarray:
    """``(..., s, s, s)`` codes -> ``(..., N_CODES, s, s, s)`` float32."""
    eye = np.eye(N_CODES, dtype=np.float32)
    oh = eye[np.clip(codes.astype(np.int64), 0, N_CODES - 1)]
    return np.moveaxis(oh, -1, -4)


# ----------------------------------------------------------------------------- experience map


def _bounded_add(table: dict[Cell, float], cell: Cell, value: float) -> None:
    table[cell] = table.pop(cell, 0.0) + value  # re-insert: most recent last
    while len(table) > MAX_EXPERIENCE_CELLS:
        table.pop(next(iter(table)))


def update_experience(mem: dict[str, Any], obs: Observation) -> None:
    """Fold the outcome of the agent's previous decision into its experience map.

    ``mem`` is the agent's own dict from :data:`AgentMemory`. The previous decision's move
    direction is recorded by :func:`note_decision`. Used identically by the dataset builder,
    so the experience channels seen in training are those the agent sees when it runs.
    """
    blocked: dict[Cell, float] = mem.setdefault("blocked", {})
    hurt: dict[Cell, float] = mem.setdefault("hurt", {})
    prev = mem.get("prev")
    here = obs.pos.as_tuple()
    if prev is not None and prev.get("tick", -1) != obs.tick:
        px, py, pz = prev["pos"]
        loss = float(prev["hp"]) - float(obs.hp)
        if loss > 0:
            _bounded_add(hurt, cell_of(here), loss)
        d = prev.get("dir")
        if d is None and obs.last_result is not None and obs.last_result.action == "move":
            # the decision was not recorded (e.g. the inference engine path): the simulator and
            # the mod turn the body to the move direction, so the yaw tells where it went
            d = (-math.sin(obs.yaw), math.cos(obs.yaw))
            px0, py0, pz0 = cell_of(prev["pos"])
            prev["ahead"] = (px0 + int(round(d[0] * 1.41)), py0, pz0 + int(round(d[1] * 1.41)))
        if d is not None:
            progress = (here[0] - px) * d[0] + (here[2] - pz) * d[1]
            failed = obs.last_result is not None and not obs.last_result.ok
            ahead = prev.get("ahead")
            if ahead is not None and (failed or progress < BLOCKED_PROGRESS):
                _bounded_add(blocked, tuple(ahead), 1.0)
            elif ahead is not None and tuple(ahead) in blocked and progress > 2 * BLOCKED_PROGRESS:
                blocked[tuple(ahead)] = max(0.0, blocked[tuple(ahead)] - 1.0)
    visits: dict[tuple[int, int], float] = mem.setdefault("visits", {})
    cx, _, cz = cell_of(here)
    visits[(cx, cz)] = visits.pop((cx, cz), 0.0) + 1.0
    while len(visits) > MAX_EXPERIENCE_CELLS:
        visits.pop(next(iter(visits)))
    mem["prev"] = {"pos": here, "hp": float(obs.hp), "tick": obs.tick, "dir": None, "ahead": None}


def note_decision(mem: dict[str, Any], obs: Observation, action: Action) -> None:
    """Remember the horizontal direction the agent was told to move (for blocked detection)."""
    d = action_direction(obs, action)
    prev = mem.setdefault("prev", {"pos": obs.pos.as_tuple(), "hp": float(obs.hp), "tick": obs.tick})
    if d is None:
        prev["dir"], prev["ahead"] = None, None
        return
    cx, cy, cz = cell_of(obs.pos)
    step = (int(round(d[0] * 1.41)), int(round(d[1] * 1.41)))
    prev["dir"] = d
    prev["ahead"] = (cx + max(-1, min(1, step[0])), cy, cz + max(-1, min(1, step[1])))


def action_direction(obs: Observation, action: Action) -> tuple[float, float] | None:
    """Unit horizontal ``(x, z)`` direction of a move/move_to action, else ``None``."""
    if isinstance(action, MoveAction):
        dx, dz = action.args.dir.x, action.args.dir.z
        if action.args.speed <= 0:
            return None
    elif action.type == "move_to":
        tgt = action.args.pos  # type: ignore[union-attr]
        dx, dz = tgt.x - obs.pos.x, tgt.z - obs.pos.z
    else:
        return None
    n = math.hypot(dx, dz)
    if n < 1e-6:
        return None
    return (dx / n, dz / n)


def visit_grid(mem: Mapping[str, Any] | None, center: Cell, radius: int) -> np.ndarray:
    """``(s, s)`` float32 decision steps spent in each column ``(z, x)`` around ``center``."""
    side = 2 * radius + 1
    out = np.zeros((side, side), dtype=np.float32)
    if not mem:
        return out
    cx, _, cz = center
    for (x, z), v in (mem.get("visits") or {}).items():
        ix, iz = x - cx + radius, z - cz + radius
        if 0 <= ix < side and 0 <= iz < side:
            out[iz, ix] = v
    return out


def experience_channels(mem: Mapping[str, Any] | None, center: Cell, radius: int) -> np.ndarray:
    """``(2, s, s, s)`` float32: blocked counts and damage taken, per cell around ``center``."""
    side = 2 * radius + 1
    out = np.zeros((len(MEMORY_CHANNELS), side, side, side), dtype=np.float32)
    if not mem:
        return out
    cx, cy, cz = center
    for ch, key, scale in ((0, "blocked", 3.0), (1, "hurt", 5.0)):
        for (x, y, z), v in (mem.get(key) or {}).items():
            ix, iy, iz = x - cx + radius, y - cy + radius, z - cz + radius
            if 0 <= ix < side and 0 <= iy < side and 0 <= iz < side and v > 0:
                out[ch, iy, iz, ix] = min(1.0, v / scale)
    return out


# ----------------------------------------------------------------------------- model


def build_navigation_model(architecture: Mapping[str, Any]) -> Any:
    """A fresh cost model (``torch.nn.Module``): ``grid (B, C, s, s, s) -> cells (B, 4, s, s, s)``.

    Fully convolutional, so it runs on any grid side; outputs are already in their units:
    ``speed`` in ``[0, 1.25]``, ``damage`` >= 0 hp/step, ``blocked``/``fell`` probabilities.
    """
    import torch
    from torch import nn

    arch = {**DEFAULT_ARCHITECTURE, **dict(architecture)}
    hidden = int(arch["hidden"])
    in_ch, out_ch = int(arch["in_channels"]), int(arch["out_channels"])
    if in_ch != IN_CHANNELS or out_ch != len(OUTPUT_CHANNELS):
        from luanti_tune.errors import ModelError

        raise ModelError(f"navigation architecture: channels must be {IN_CHANNELS} -> {len(OUTPUT_CHANNELS)}")

    class NavCostNet(nn.Module):
        """Valid 3x3x3 convolutions after one zero pad of :data:`CONTEXT` cells.

        The output at a cell depends only on the ``(2*CONTEXT+1)**3`` input window around it,
        so training can run :meth:`core` on small windows and get exactly the values the full
        grid produces.
        """

        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv3d(in_ch, hidden, 3),
                nn.ReLU(),
                nn.Conv3d(hidden, hidden, 3),
                nn.ReLU(),
                nn.Conv3d(hidden, hidden, 1),
                nn.ReLU(),
                nn.Conv3d(hidden, out_ch, 1),
            )

        @staticmethod
        def _heads(z: torch.Tensor) -> torch.Tensor:
            speed = torch.sigmoid(z[:, 0:1]) * MAX_SPEED_RATIO
            damage = nn.functional.softplus(z[:, 1:2])
            probs = torch.sigmoid(z[:, 2:4])
            return torch.cat([speed, damage, probs], dim=1)

        def core(self, grid: torch.Tensor) -> torch.Tensor:
            """Outputs for the cells ``CONTEXT`` away from every border of an (already padded) grid."""
            return self._heads(self.body(grid))

        def windows(self, codes: torch.Tensor, exp: torch.Tensor) -> torch.Tensor:
            """Outputs at the centres of ``(m, w, w, w)`` code windows (-1 = off grid) with their
            ``(m, 2, w, w, w)`` experience channels -> ``(m, 4)``.

            Same weights and result as :meth:`core` on the one-hot window, computed without
            ``conv3d`` (slow on many tiny inputs): the first layer is a product of the one-hot
            (kernel offset, code) patch of each position with the rearranged kernel, the second a
            matrix product over the 27 positions.
            """
            c1, c2, c3, c4 = (cast(Any, self.body[i]) for i in (0, 2, 4, 6))
            m = codes.shape[0]
            k1 = c1.weight  # (h, C, 3, 3, 3)
            h = k1.shape[0]
            table = k1[:, :N_CODES].permute(2, 3, 4, 1, 0).reshape(27, N_CODES, h)
            table = torch.cat([table.new_zeros(27, 1, h), table], dim=1).reshape(27 * (N_CODES + 1), h)
            cpatch = (codes.long() + 1).unfold(1, 3, 1).unfold(2, 3, 1).unfold(3, 3, 1).reshape(m * 27, 27)
            idx = cpatch + torch.arange(27) * (N_CODES + 1)
            onehot = torch.zeros(m * 27, 27 * (N_CODES + 1), dtype=table.dtype).scatter_(1, idx, 1.0)
            first = onehot @ table
            epatch = exp.float().unfold(2, 3, 1).unfold(3, 3, 1).unfold(4, 3, 1)  # m, 2, 3,3,3, 3,3,3
            epatch = epatch.permute(0, 2, 3, 4, 1, 5, 6, 7).reshape(m * 27, -1)
            first = first + nn.functional.linear(epatch, k1[:, N_CODES:].reshape(h, -1), c1.bias)
            h1 = torch.relu(first).reshape(m, 27, h)
            h2 = torch.relu(
                nn.functional.linear(h1.transpose(1, 2).reshape(m, -1), c2.weight.reshape(c2.out_channels, -1), c2.bias)
            )
            h3 = torch.relu(nn.functional.linear(h2, c3.weight.reshape(c3.out_channels, -1), c3.bias))
            return self._heads(nn.functional.linear(h3, c4.weight.reshape(c4.out_channels, -1), c4.bias))

        def forward(self, grid: torch.Tensor, visits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """``cells`` per cell of the grid and the planner's revisit ``penalty`` per column (seconds)."""
            cells = self.core(nn.functional.pad(grid, (CONTEXT,) * 6))
            return cells, visits.clamp(0.0, MAX_VISITS) * VISIT_SECONDS

    return NavCostNet()


# ----------------------------------------------------------------------------- planner


@dataclass(frozen=True)
class PlanResult:
    """Per agent: chosen neighbour ``(dx, dz)`` (0, 0 = none), its cost-to-go and reachability."""

    step: np.ndarray  # (B, 2) int
    value: np.ndarray  # (B,) float, inf when no path
    height: np.ndarray  # (B,) int, stand level (grid y index) of the chosen neighbour


_DIRS = ((0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (1, -1), (-1, 1), (-1, -1))  # (dz, dx)


def stand_levels(codes: np.ndarray) -> np.ndarray:
    """``(B, s, s, s)`` codes -> ``(B, s, s)`` highest y index a body can stand at per column, -1 if none.

    Standing at y needs a non-solid cell at y and y+1 (above the grid counts as open) and
    ground (solid/slow) at y-1; a liquid cell with ground below also counts (you wade in it).
    """
    solid = np.isin(codes, SUPPORT_CODES)
    free = ~solid
    side = codes.shape[1]
    head = np.ones_like(free)
    head[:, :-1] = free[:, 1:]
    below = np.zeros_like(solid)
    below[:, 1:] = solid[:, :-1]
    ok = free & head & below & (codes != UNKNOWN)
    ys = np.arange(side)[None, :, None, None]
    lvl = np.where(ok, ys, -1).max(axis=1)
    return np.asarray(lvl, dtype=np.int64)


def _shift(a: np.ndarray, dz: int, dx: int, fill: float) -> np.ndarray:
    """``out[..., z, x] = a[..., z+dz, x+dx]`` with ``fill`` outside."""
    out = np.full_like(a, fill)
    s = a.shape[-1]
    zs_dst = slice(max(0, -dz), s - max(0, dz))
    zs_src = slice(max(0, dz), s - max(0, -dz))
    xs_dst = slice(max(0, -dx), s - max(0, dx))
    xs_src = slice(max(0, dx), s - max(0, -dx))
    out[..., zs_dst, xs_dst] = a[..., zs_src, xs_src]
    return out


def plan_first_steps(levels: np.ndarray, cell_cost: np.ndarray, goal_rel: np.ndarray) -> PlanResult:
    """Batched shortest paths on the observed surface; returns the first step of each.

    ``levels`` (B, s, s) stand levels (-1 = none); ``cell_cost`` (B, s, s) seconds to enter
    each column at its stand level (inf = never); ``goal_rel`` (B, 3) goal minus the agent's
    cell ``(x, y, z)``. A goal outside the grid is reached through the border columns with a
    straight-line estimate of the remaining time. Cost-to-go is computed backwards from the
    goal by value iteration over 8 neighbours (step up at most one node, diagonals only when
    both sides are passable), so every agent in the batch is planned by the same array ops.
    """
    b, side, _ = levels.shape
    r = side // 2
    valid = (levels >= 0) & np.isfinite(cell_cost)
    zz, xx = np.meshgrid(np.arange(side) - r, np.arange(side) - r, indexing="ij")
    gx, gz = goal_rel[:, 0][:, None, None], goal_rel[:, 2][:, None, None]
    inside = (np.abs(goal_rel[:, 0]) <= r) & (np.abs(goal_rel[:, 2]) <= r)
    value = np.full((b, side, side), np.inf)
    # goal inside the grid: its column (nearest valid column if the goal's own is invalid)
    dist_goal = np.hypot(xx[None] - gx, zz[None] - gz)
    for i in np.nonzero(inside)[0]:
        d = np.where(valid[i], dist_goal[i], np.inf)
        j = np.unravel_index(int(np.argmin(d)), d.shape)
        if np.isfinite(d[j]):
            value[i][j] = d[j] * NODE_SECONDS
    ring = np.zeros((side, side), dtype=bool)
    ring[[0, -1], :] = True
    ring[:, [0, -1]] = True
    # beyond the grid, assume the typical cost of this neighbourhood per node (a consistent estimate
    # keeps the local plans of successive steps from contradicting each other)
    finite = np.where(valid, cell_cost, np.nan)
    typical = np.nanmedian(finite.reshape(b, -1), axis=1) if valid.any() else np.full(b, NODE_SECONDS)
    typical = np.maximum(np.nan_to_num(typical, nan=NODE_SECONDS), NODE_SECONDS)
    # the border is always an exit (a goal in view may be reachable only around something out of view)
    exits = np.where(ring[None] & valid, dist_goal * typical[:, None, None], np.inf)
    value = np.minimum(value, exits)

    # edge costs E[d][c] of moving from column c to c + d
    lv = levels.astype(np.float64)
    edges = []
    for dz, dx in _DIRS:
        n_lv = _shift(lv, dz, dx, -1.0)
        n_cost = _shift(cell_cost, dz, dx, np.inf)
        n_valid = _shift(valid.astype(np.float64), dz, dx, 0.0) > 0
        ok = valid & n_valid & (n_lv - lv <= 1.0)
        if dz and dx:
            for sz, sx in ((dz, 0), (0, dx)):
                s_lv = _shift(lv, sz, sx, -1.0)
                s_valid = _shift(valid.astype(np.float64), sz, sx, 0.0) > 0
                ok &= s_valid & (s_lv - lv <= 1.0) & (s_lv >= n_lv - 1.0)
        length = math.sqrt(2.0) if dz and dx else 1.0
        edges.append(np.where(ok, n_cost * length, np.inf))
    for _ in range(side * side):
        best = value
        for (dz, dx), e in zip(_DIRS, edges, strict=True):
            best = np.minimum(best, e + _shift(value, dz, dx, np.inf))
        if np.array_equal(best, value):
            break
        value = best
    q = np.stack(
        [e[:, r, r] + _shift(value, dz, dx, np.inf)[:, r, r] for (dz, dx), e in zip(_DIRS, edges, strict=True)], axis=1
    )
    k = np.argmin(q, axis=1)
    best_q = q[np.arange(b), k]
    steps = np.array([(_DIRS[i][1], _DIRS[i][0]) for i in k], dtype=np.int64)  # (dx, dz)
    steps[~np.isfinite(best_q)] = 0
    heights = np.array([levels[i, r + steps[i, 1], r + steps[i, 0]] for i in range(b)], dtype=np.int64)
    return PlanResult(step=steps, value=best_q, height=heights)


def learned_cell_cost(cells: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Seconds to enter each column at its stand level, from the model's ``(B, 4, s, s, s)`` outputs."""
    b, _, side, _, _ = cells.shape
    lv = np.clip(levels, 0, side - 1)
    bi, zi, xi = np.meshgrid(np.arange(b), np.arange(side), np.arange(side), indexing="ij")
    at = cells[bi, :, lv, zi, xi]  # (B, s, s, 4)
    speed = np.clip(at[..., SPEED], 0.05, MAX_SPEED_RATIO)
    seconds = NODE_SECONDS / speed
    steps_in_cell = seconds / DECISION_SECONDS
    hp = np.maximum(at[..., DAMAGE], 0.0) * steps_in_cell
    cost = seconds + HP_SECONDS * hp + BLOCKED_SECONDS * at[..., BLOCKED] + FELL_SECONDS * at[..., FELL]
    cost = np.where(at[..., BLOCKED] > BLOCKED_CUTOFF, np.inf, cost)
    return np.where(levels >= 0, cost, np.inf)


def geometry_cell_cost(levels: np.ndarray) -> np.ndarray:
    """Geometry only: every standable column costs one node of walking."""
    return np.where(levels >= 0, NODE_SECONDS, np.inf)


def plan_actions(
    observations: Sequence[Observation], codes: np.ndarray, cell_cost: np.ndarray, levels: np.ndarray
) -> list[Decision]:
    """Move each agent toward the centre of its plan's first cell (wait at the goal).

    When no path to the goal (or the grid border toward it) exists, the agent heads for the
    reachable column closest to the goal instead; it jumps to step up and to swim in liquids.
    """
    b = len(observations)
    radius = codes.shape[-1] // 2
    goal_rel = np.zeros((b, 3))
    for i, obs in enumerate(observations):
        c = cell_of(obs.pos)
        g = obs.goal.as_tuple() if obs.goal is not None else obs.pos.as_tuple()
        goal_rel[i] = (g[0] - c[0], g[1] - c[1], g[2] - c[2])
    plan = plan_first_steps(levels, cell_cost, goal_rel)
    stuck = ~np.isfinite(plan.value)
    if stuck.any():
        idx = np.nonzero(stuck)[0]
        sub = _plan_to_closest_reachable(levels[idx], cell_cost[idx], goal_rel[idx])
        plan.step[idx], plan.value[idx], plan.height[idx] = sub.step, sub.value, sub.height
    centre = codes[:, radius, radius, radius]
    in_liquid = np.isin(centre, (WATER, LAVA))
    return [_decision(obs, plan, i, radius, bool(in_liquid[i])) for i, obs in enumerate(observations)]


def _reachable(levels: np.ndarray, cell_cost: np.ndarray) -> np.ndarray:
    """``(B, s, s)`` columns reachable from the centre column under the planner's moves."""
    b, side, _ = levels.shape
    r = side // 2
    valid = (levels >= 0) & np.isfinite(cell_cost)
    lv = levels.astype(np.float64)
    reach = np.zeros((b, side, side), dtype=bool)
    reach[:, r, r] = True
    for _ in range(side * side):
        new = reach.copy()
        for dz, dx in _DIRS[:4]:
            # column c is reached from neighbour p = c - d if p is reached and the step p -> c is allowed
            src = _shift(reach.astype(np.float64), -dz, -dx, 0.0) > 0
            src_lv = _shift(lv, -dz, -dx, -1.0)
            new |= src & valid & (lv - src_lv <= 1.0)
        if np.array_equal(new, reach):
            break
        reach = new
    return reach


def _plan_to_closest_reachable(levels: np.ndarray, cell_cost: np.ndarray, goal_rel: np.ndarray) -> PlanResult:
    b, side, _ = levels.shape
    r = side // 2
    reach = _reachable(levels, cell_cost)
    zz, xx = np.meshgrid(np.arange(side) - r, np.arange(side) - r, indexing="ij")
    d = np.hypot(xx[None] - goal_rel[:, 0][:, None, None], zz[None] - goal_rel[:, 2][:, None, None])
    d = np.where(reach, d, np.inf)
    flat = d.reshape(b, -1).argmin(axis=1)
    tz, tx = np.unravel_index(flat, (side, side))
    target = np.stack([tx - r, np.zeros(b), tz - r], axis=1).astype(np.float64)
    at_centre = (tx == r) & (tz == r)
    res = plan_first_steps(levels, cell_cost, target)
    res.step[at_centre] = 0
    res.value[at_centre] = np.inf
    return res


def _decision(obs: Observation, plan: PlanResult, i: int, radius: int, in_liquid: bool) -> Decision:
    if obs.goal is None:
        return Decision(WaitAction(agent=obs.agent, type="wait"), confidence=1.0)
    gx, gz = obs.goal.x - obs.pos.x, obs.goal.z - obs.pos.z
    dist = math.hypot(gx, gz)
    if dist < GOAL_REACHED:
        return Decision(WaitAction(agent=obs.agent, type="wait"), confidence=1.0)
    c = cell_of(obs.pos)
    sx, sz = int(plan.step[i, 0]), int(plan.step[i, 1])
    if sx == 0 and sz == 0:
        # nowhere better to go in view: head straight for the goal (low confidence: the engine may fall back)
        return Decision(_move(obs, gx / dist, gz / dist, jump=in_liquid), confidence=0.2)
    tx, tz = float(c[0] + sx), float(c[2] + sz)
    if abs(obs.goal.x - tx) < 0.5 and abs(obs.goal.z - tz) < 0.5:
        tx, tz = obs.goal.x, obs.goal.z
    dx, dz = tx - obs.pos.x, tz - obs.pos.z
    n = math.hypot(dx, dz)
    if n < 1e-6:
        dx, dz, n = gx, gz, dist
    jump = in_liquid or int(plan.height[i]) > radius
    value = float(plan.value[i])
    if math.isfinite(value):
        conf = 1.0 / (1.0 + max(0.0, value - NODE_SECONDS * dist) / (NODE_SECONDS * (dist + 4.0)))
    else:
        conf = 0.3
    return Decision(_move(obs, dx / n, dz / n, jump=jump), confidence=float(max(0.05, min(1.0, conf))))


def _move(obs: Observation, dx: float, dz: float, *, jump: bool = False) -> MoveAction:
    return MoveAction(
        agent=obs.agent, type="move", args=MoveArgs(dir=Vec3(x=dx, y=1.0 if jump else 0.0, z=dz), speed=1.0)
    )


# ----------------------------------------------------------------------------- adapter and policies


class NavigationAdapter(FamilyAdapter):
    """Inputs ``grid (B, 9, s, s, s)`` and ``visits (B, s, s)``; outputs ``cells (B, 4, s, s, s)`` and
    ``penalty (B, s, s)``; ``decode`` plans over the learned costs and moves."""

    family = FAMILY
    input_names = ("grid", "visits")
    output_names = ("cells", "penalty")

    def __init__(self, architecture: Mapping[str, Any] | None = None) -> None:
        arch = {**DEFAULT_ARCHITECTURE, **dict(architecture or {})}
        self.radius = int(arch["radius"])

    def featurize(self, observations: Sequence[Observation], memory: AgentMemory) -> dict[str, np.ndarray]:
        side = 2 * self.radius + 1
        grid = np.zeros((len(observations), IN_CHANNELS, side, side, side), dtype=np.float32)
        visits = np.zeros((len(observations), side, side), dtype=np.float32)
        for i, obs in enumerate(observations):
            mem = memory.get(obs.agent)
            if mem is None:
                mem = {}
                memory[obs.agent] = mem
            update_experience(mem, obs)
            grid[i, :N_CODES] = one_hot(grid_codes(obs, self.radius))
            grid[i, N_CODES:] = experience_channels(mem, cell_of(obs.pos), self.radius)
            visits[i] = visit_grid(mem, cell_of(obs.pos), self.radius)
        return {"grid": grid, "visits": visits}

    def example_inputs(self, batch: int = 4) -> dict[str, np.ndarray]:
        side = 2 * self.radius + 1
        grid = np.zeros((batch, IN_CHANNELS, side, side, side), dtype=np.float32)
        grid[:, AIR] = 1.0
        grid[:, SOLID, : self.radius] = 1.0
        grid[:, AIR, : self.radius] = 0.0
        return {"grid": grid, "visits": np.zeros((batch, side, side), dtype=np.float32)}

    def decode(self, observations: Sequence[Observation], outputs: dict[str, np.ndarray]) -> list[Decision]:
        cells = np.asarray(outputs["cells"], dtype=np.float64)
        codes = np.stack([grid_codes(o, self.radius) for o in observations]) if observations else np.zeros((0,))
        if not observations:
            return []
        levels = stand_levels(codes)
        cost = learned_cell_cost(cells, levels) + np.asarray(outputs["penalty"], dtype=np.float64)
        return plan_actions(observations, codes, cost, levels)


Forward = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]


class NavigationPolicy(Policy):
    """A learned navigation model as a :class:`Policy` (featurize -> forward -> decode)."""

    def __init__(self, adapter: NavigationAdapter, forward: Forward, *, name: str = FAMILY, version: str = "0") -> None:
        self.adapter = adapter
        self.forward = forward
        self.name = name
        self.version = version

    @classmethod
    def from_module(cls, module: Any, architecture: Mapping[str, Any], **kw: Any) -> NavigationPolicy:
        """Wrap a torch module (e.g. a freshly trained one) without going through the registry."""

        def forward(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            import torch

            with torch.inference_mode():
                cells, penalty = module(
                    torch.from_numpy(np.ascontiguousarray(inputs["grid"], dtype=np.float32)),
                    torch.from_numpy(np.ascontiguousarray(inputs["visits"], dtype=np.float32)),
                )
            return {"cells": cells.detach().cpu().numpy(), "penalty": penalty.detach().cpu().numpy()}

        return cls(NavigationAdapter(architecture), forward, **kw)

    def decide(self, observations: Sequence[Observation], memory: AgentMemory) -> list[Decision]:
        if not observations:
            return []
        feats = self.adapter.featurize(observations, memory)
        decisions = self.adapter.decode(observations, self.forward(feats))
        for obs, dec in zip(observations, decisions, strict=True):
            note_decision(memory[obs.agent], obs, dec.action)
        return decisions


class GeometryNavigationPolicy(Policy):
    """Geometry only, same planner and revisit memory: every walkable cell costs the same.

    The ablation of the learned model: it differs from :class:`NavigationPolicy` only in the
    cell costs, so comparing the two isolates what learning the terrain brings.
    """

    name = "geometry-planner"

    def __init__(self, radius: int = 3, *, revisit_memory: bool = True) -> None:
        self.radius = radius
        self.revisit_memory = revisit_memory

    def decide(self, observations: Sequence[Observation], memory: AgentMemory) -> list[Decision]:
        if not observations:
            return []
        codes = np.stack([grid_codes(o, self.radius) for o in observations])
        levels = stand_levels(codes)
        cost = geometry_cell_cost(levels)
        if self.revisit_memory:
            for i, obs in enumerate(observations):
                mem = memory.setdefault(obs.agent, {})
                update_experience(mem, obs)
                cost[i] += np.minimum(visit_grid(mem, cell_of(obs.pos), self.radius), MAX_VISITS) * VISIT_SECONDS
        return plan_actions(observations, codes, cost, levels)


# ----------------------------------------------------------------------------- training helpers (arrays -> loss)

#: Loss weights of the four heads (speed is a small-valued regression, so it is up-weighted).
LOSS_WEIGHTS = {"speed": 4.0, "damage": 5.0, "fell": 0.5, "blocked": 0.5}


#: Arrays (as float32 tensors) a loss batch needs.
LOSS_KEYS = ("win_codes", "win_exp", "speed", "speed_mask", "damage", "fell", "blocked")
#: Side of the input window one cell's outputs depend on.
WINDOW = 2 * CONTEXT + 1


def label_offsets(hit_off: Sequence[int], ahead_off: Sequence[int]) -> np.ndarray:
    """``(3, 3)`` offsets ``(dy, dz, dx)`` of a sample's labelled cells: own cell, hit, ahead."""
    return np.array([[0, 0, 0], list(hit_off), list(ahead_off)], dtype=np.int64)


def cell_windows(codes: np.ndarray, exp: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Windows of one grid around cells at ``offsets`` (k, 3) from its centre.

    Returns ``(k, w, w, w)`` int8 codes (-1 beyond the grid) and ``(k, 2, w, w, w)`` float16
    experience channels (0 beyond the grid), i.e. exactly what the full-grid forward sees there.
    """
    side = codes.shape[-1]
    r = side // 2
    pc = np.full((side + 2 * CONTEXT,) * 3, -1, dtype=np.int8)
    pc[CONTEXT:-CONTEXT, CONTEXT:-CONTEXT, CONTEXT:-CONTEXT] = codes
    pe = np.zeros((exp.shape[0],) + (side + 2 * CONTEXT,) * 3, dtype=np.float16)
    pe[:, CONTEXT:-CONTEXT, CONTEXT:-CONTEXT, CONTEXT:-CONTEXT] = exp
    wc = np.empty((len(offsets), WINDOW, WINDOW, WINDOW), dtype=np.int8)
    we = np.empty((len(offsets), exp.shape[0], WINDOW, WINDOW, WINDOW), dtype=np.float16)
    for k, (dy, dz, dx) in enumerate(offsets):
        y, z, x = r + dy, r + dz, r + dx  # padded start of the window centred on cell r + offset
        wc[k] = pc[y : y + WINDOW, z : z + WINDOW, x : x + WINDOW]
        we[k] = pe[:, y : y + WINDOW, z : z + WINDOW, x : x + WINDOW]
    return wc, we


def head_losses(module: Any, batch: Mapping[str, Any]) -> dict[str, Any]:
    """Per-head mean losses (torch scalars) and the total ``loss`` on a batch of tensors."""
    from torch.nn import functional as F

    n = batch["win_codes"].shape[0]
    codes = batch["win_codes"].reshape(n * 3, WINDOW, WINDOW, WINDOW)
    exp = batch["win_exp"].reshape(n * 3, len(MEMORY_CHANNELS), WINDOW, WINDOW, WINDOW)
    out = module.windows(codes, exp).reshape(n, 3, len(OUTPUT_CHANNELS))
    here, hit, ahead = out[:, 0], out[:, 1], out[:, 2]
    mask = batch["speed_mask"]
    speed = ((here[:, SPEED] - batch["speed"]) ** 2 * mask).sum() / mask.sum().clamp(min=1.0)
    damage = F.smooth_l1_loss(hit[:, DAMAGE], batch["damage"].clamp(max=10.0))
    eps = 1e-5
    fell = F.binary_cross_entropy(hit[:, FELL].clamp(eps, 1 - eps), batch["fell"])
    blocked = F.binary_cross_entropy(ahead[:, BLOCKED].clamp(eps, 1 - eps), batch["blocked"])
    total = (
        LOSS_WEIGHTS["speed"] * speed
        + LOSS_WEIGHTS["damage"] * damage
        + LOSS_WEIGHTS["fell"] * fell
        + LOSS_WEIGHTS["blocked"] * blocked
    )
    return {"loss": total, "speed": speed, "damage": damage, "fell": fell, "blocked": blocked, "out": out}


def loss_fn(module: Any, batch: Mapping[str, Any]) -> Any:
    """Training objective (the ``fit`` loop's ``loss_fn``)."""
    return head_losses(module, batch)["loss"]


def evaluate(module: Any, data: Mapping[str, np.ndarray], batch_size: int = 2048) -> dict[str, float]:
    """Offline metrics on navigation dataset arrays; lower is better.

    ``loss`` is the training objective; ``speed_mae`` (fraction of walk speed) and
    ``damage_mae`` (hp per step) are in label units.
    """
    import torch

    n = int(len(data["speed"]))
    if n == 0:
        return {"n": 0.0}
    sums = dict.fromkeys(("loss", "speed", "damage", "fell", "blocked"), 0.0)
    abs_speed = abs_dmg = mask_sum = 0.0
    module.eval()
    with torch.inference_mode():
        for i in range(0, n, batch_size):
            batch = {k: torch.from_numpy(np.asarray(data[k][i : i + batch_size], dtype=np.float32)) for k in LOSS_KEYS}
            m = int(batch["speed"].shape[0])
            res = head_losses(module, batch)
            for k in sums:
                sums[k] += float(res[k]) * m
            out = res["out"]
            abs_speed += float(((out[:, 0, SPEED] - batch["speed"]).abs() * batch["speed_mask"]).sum())
            mask_sum += float(batch["speed_mask"].sum())
            abs_dmg += float((out[:, 1, DAMAGE] - batch["damage"]).abs().sum())
    metrics = {k: v / n for k, v in sums.items()}
    metrics["speed_mae"] = abs_speed / max(mask_sum, 1.0)
    metrics["damage_mae"] = abs_dmg / n
    metrics["n"] = float(n)
    if not all(math.isfinite(v) for v in metrics.values()):
        metrics["nonfinite"] = 1.0
    return metrics


def navigation_family() -> Any:
    """The :class:`~luanti_tune.policies.families.FamilySpec` of this family (registry entry point)."""
    from luanti_tune.policies.families import FamilySpec

    return FamilySpec(
        name=FAMILY,
        adapter=NavigationAdapter,
        build=build_navigation_model,
        evaluate=evaluate,
        description="Learned traversal costs/hazards of voxel cells (3-D CNN) + batched planner over them.",
    )
