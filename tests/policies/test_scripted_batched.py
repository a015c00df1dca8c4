"""The batched scripted policies decide exactly what the per-agent implementations decided.

Below is a frozen copy of the per-agent ``scripted.py`` policies and ``ChaseOrWait`` as they were
before they decided whole batches as columns (a Python loop per agent, A* with a heap per agent).
Varied batches (targets listed or not, several entities of a name, unnamed players, mobs and
items only, nothing in view, standing on the agent, missing velocities, goals or none, grids of
several radii with walls, steps, drops, water, lava and ladders, typed, columnar and sliced
batches) must give the same actions: the same type, agent, speed and direction, bit for bit.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import pytest

from luanti_tune.inference.fallback import ChaseOrWait, default_fallbacks
from luanti_tune.policies.base import AgentMemory, Decision, Policy
from luanti_tune.policies.batch import ObservationBatch
from luanti_tune.policies.scripted import (
    AStarNavigationPolicy,
    GreedyTeamPolicy,
    InterceptPolicy,
    PurePursuitPolicy,
    TrajectoryInterceptPolicy,
)
from luanti_tune.schemas.agent import (
    Action,
    EntityView,
    MoveAction,
    MoveArgs,
    Observation,
    WaitAction,
    WaitArgs,
)
from luanti_tune.schemas.common import NODE_CODES, Vec3
from luanti_tune.serve.wire_columns import read_columns, rows_to_columns

# ----------------------------------------------------------------------------- frozen per-agent code

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


class RefPurePursuitPolicy(Policy):
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


class RefInterceptPolicy(Policy):
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


class RefTrajectoryInterceptPolicy(Policy):
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


class RefAStarNavigationPolicy(Policy):
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


class RefGreedyTeamPolicy(Policy):
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


_WAIT_ARGS = WaitArgs(ticks=1)


class RefChaseOrWait(Policy):
    """Move straight at the first targeted (else first player) entity in view; wait otherwise."""

    name = "chase_or_wait"
    version = "1"

    def decide(self, observations: Sequence[Observation], memory: AgentMemory) -> list[Decision]:
        out: list[Decision] = []
        for obs in observations:
            ent = None
            if obs.entities:
                wanted = set(obs.targets)
                ent = next((e for e in obs.entities if e.name in wanted), None) if wanted else None
                if ent is None:
                    ent = next((e for e in obs.entities if e.kind == "player"), None)
            if ent is None:
                out.append(Decision(WaitAction(agent=obs.agent, type="wait", args=_WAIT_ARGS), 1.0))
                continue
            dx, dz = ent.rel.x, ent.rel.z
            n = math.hypot(dx, dz)
            if n < 1e-6:
                out.append(Decision(WaitAction(agent=obs.agent, type="wait", args=_WAIT_ARGS), 1.0))
                continue
            args = MoveArgs(dir=Vec3(x=dx / n, y=0.0, z=dz / n), speed=1.0)
            out.append(Decision(MoveAction(agent=obs.agent, type="move", args=args), 1.0))
        return out


# ----------------------------------------------------------------------------- varied batches

NAMES = ["alice", "bob", "carol", "dave", "eve"]
CODES = sorted(NODE_CODES.values())


def _vec(rng: np.random.Generator, scale: float) -> dict[str, float]:
    x, y, z = (rng.normal(0, scale, 3) * rng.choice([1.0, 1.0, 1e-10])).tolist()
    return {"x": x, "y": y, "z": z}


def _entities(rng: np.random.Generator) -> list[dict[str, Any]]:
    style = rng.integers(0, 8)
    if style == 0:
        return []
    out: list[dict[str, Any]] = []
    for _ in range(int(rng.integers(1, 9))):
        e: dict[str, Any] = {
            "kind": str(rng.choice(["player", "player", "agent", "mob", "item"])),
            "rel": _vec(rng, 12),
        }
        if style == 1:
            e["kind"] = str(rng.choice(["mob", "item"]))
        if rng.random() < 0.75:
            e["name"] = str(rng.choice(NAMES))  # several entities of a name happen
        if rng.random() < 0.6:
            e["velocity"] = _vec(rng, 3)
        if rng.random() < 0.05:
            e["rel"] = {"x": 0.0, "y": 0.0, "z": 0.0}  # standing on the agent
        out.append(e)
    if len(out) >= 2 and rng.random() < 0.3:  # equally near: the first one counts
        r = dict(out[0]["rel"])
        out[1]["rel"] = {"x": -r["x"], "y": r["y"], "z": r["z"]} if rng.random() < 0.5 else r
    return out


def _grid(rng: np.random.Generator, radius: int) -> list[int]:
    side = 2 * radius + 1
    g = np.zeros((side, side, side), dtype=int)  # [y, z, x]
    g[:radius] = NODE_CODES["solid"]
    floor = rng.integers(max(0, radius - 3), radius + 2, size=(side, side))  # steps and drops
    for z in range(side):
        for x in range(side):
            g[: floor[z, x], z, x] = NODE_CODES["solid"]
            g[floor[z, x] :, z, x] = NODE_CODES["air"]
    noise = rng.random(g.shape)
    g[noise < 0.12] = rng.choice(CODES, size=int((noise < 0.12).sum()))
    return g.ravel().tolist()


def _obs(rng: np.random.Generator, i: int, tick: int) -> dict[str, Any]:
    pos = _vec(rng, 30)
    if rng.random() < 0.1:
        pos["x"] = float(np.round(pos["x"])) + 0.5  # on a cell boundary
    o: dict[str, Any] = {
        "agent": f"a{i}",
        "kind": str(rng.choice(["pursuit", "navigation", "team"])),
        "tick": tick,
        "pos": pos,
        "entities": _entities(rng),
    }
    if rng.random() < 0.7:
        o["targets"] = [str(t) for t in rng.choice(NAMES + ["zed"], size=int(rng.integers(1, 4)))]
    if rng.random() < 0.75:
        goal = _vec(rng, 10)
        goal = {k: pos[k] + v for k, v in goal.items()}
        if rng.random() < 0.05:
            goal = dict(pos)  # already there
        o["goal"] = goal
    if rng.random() < 0.7:
        radius = int(rng.choice([1, 1, 2, 3]))
        o["nearby"] = {"radius": radius, "codes": _grid(rng, radius)}
    return o


def raw_batches(seed: int, steps: int = 6, agents: int = 300) -> list[list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    out = []
    for step in range(steps):
        batch = [_obs(rng, i, 100 + step) for i in range(agents) if rng.random() < 0.9]
        if step % 2:  # an agent twice in a batch
            batch.append(_obs(rng, 0, 100 + step))
        out.append(batch)
    return out


def policies() -> list[tuple[Policy, Policy]]:
    return [
        (PurePursuitPolicy(), RefPurePursuitPolicy()),
        (InterceptPolicy(), RefInterceptPolicy()),
        (InterceptPolicy(own_speed=2.0, max_lead_s=1.0), RefInterceptPolicy(own_speed=2.0, max_lead_s=1.0)),
        (TrajectoryInterceptPolicy(), RefTrajectoryInterceptPolicy()),
        (TrajectoryInterceptPolicy(window=3, dt=0.2), RefTrajectoryInterceptPolicy(window=3, dt=0.2)),
        (AStarNavigationPolicy(), RefAStarNavigationPolicy()),
        (AStarNavigationPolicy(avoid_hazards=True), RefAStarNavigationPolicy(avoid_hazards=True)),
        (AStarNavigationPolicy(max_drop=1), RefAStarNavigationPolicy(max_drop=1)),
        (GreedyTeamPolicy(), RefGreedyTeamPolicy()),
        (ChaseOrWait(), RefChaseOrWait()),
    ]


def assert_same(got: list[Decision], want: list[Decision], what: str) -> None:
    assert len(got) == len(want), what
    for j, (g, w) in enumerate(zip(got, want, strict=True)):
        assert type(g.action) is type(w.action), (what, j, g.action, w.action)
        assert g.action == w.action, (what, j, g.action, w.action)
        assert orjson.dumps(g.action.model_dump(mode="json")) == orjson.dumps(w.action.model_dump(mode="json"))
        assert g.confidence == w.confidence


@pytest.mark.parametrize("seed", [0, 1])
def test_batched_policies_decide_what_the_per_agent_ones_decided(seed: int) -> None:
    pairs = policies()
    memories: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = [({}, {}, {}) for _ in pairs]
    kinds: dict[str, int] = {}
    for raw in raw_batches(seed):
        typed = [Observation.model_validate(o) for o in raw]
        wire = read_columns(orjson.dumps(rows_to_columns(raw)), msgpack=False, max_agents=1000)
        rows = ObservationBatch.from_observations(typed)
        assert wire.cols is not None and rows.cols is not None
        for (new, ref), (m_ref, m_typed, m_wire) in zip(pairs, memories, strict=True):
            want = ref.decide(typed, m_ref)
            assert_same(new.decide(typed, m_typed), want, f"{new.name} typed")
            cols = new.decide_columns(wire, m_wire)
            assert cols is not None
            assert cols.wire() == [d.action.model_dump(mode="json") for d in want], f"{new.name} columns"
            assert_same(cols.decisions(), want, f"{new.name} columns")
            if not isinstance(new, TrajectoryInterceptPolicy):  # no memory: any batch of the rows
                assert_same(new.decide(rows, {}), want, f"{new.name} rows")
                part = list(range(0, len(typed), 3))
                assert_same(new.decide(wire.take(part), {}), [want[j] for j in part], f"{new.name} sliced")
            for d in want:
                kinds[f"{new.name}:{d.action.type}"] = kinds.get(f"{new.name}:{d.action.type}", 0) + 1
    # every policy both moved and waited, A* jumped
    for new, _ in pairs:
        assert kinds.get(f"{new.name}:move", 0) > 100 and kinds.get(f"{new.name}:wait", 0) > 10, kinds


def test_astar_plans_equal_the_per_agent_search_on_many_grids() -> None:
    """The first step itself (and ``None`` when stuck), on grids of every radius the schema allows
    up to 4, with goals inside and outside the grid."""
    rng = np.random.default_rng(5)
    jumps = 0
    for radius in (1, 2, 3, 4):
        for new, ref in (
            (AStarNavigationPolicy(), RefAStarNavigationPolicy()),
            (
                AStarNavigationPolicy(avoid_hazards=True, max_drop=2),
                RefAStarNavigationPolicy(avoid_hazards=True, max_drop=2),
            ),
        ):
            grids = [_grid(rng, radius) for _ in range(60)]
            goals = rng.normal(0, 2 + 3 * radius, (60, 3)).round(rng.integers(0, 3))
            for k in range(0, 60, 2):  # mirror images left and right of the goal: cells tie
                g = np.asarray(grids[k]).reshape(2 * radius + 1, 2 * radius + 1, 2 * radius + 1)
                grids[k] = np.concatenate([g[..., : radius + 1], g[..., :radius][..., ::-1]], axis=-1).ravel().tolist()
                goals[k, 0] = 0.0
            side = 2 * radius + 1
            found, step = new.plan_many(radius, np.asarray(grids).reshape(60, side, side, side), goals)
            for k in range(60):
                want = ref.plan(radius, grids[k], tuple(goals[k].tolist()))
                got = tuple(step[k].tolist()) if found[k] else None
                assert got == want, (radius, k)
                assert new.plan(radius, grids[k], tuple(goals[k].tolist())) == want
                jumps += want is not None and want[1] > 0
    assert jumps > 10


def test_intercept_time_is_elementwise() -> None:
    rng = np.random.default_rng(9)
    r, v = rng.normal(0, 10, (500, 2)), rng.normal(0, 4, (500, 2))
    v[:50] = 0.0
    v[50:80, 0] = 4.0 * np.cos(np.linspace(0, 6, 30))  # |v| equal to the speed: the linear case
    v[50:80, 1] = 4.0 * np.sin(np.linspace(0, 6, 30))
    from luanti_tune.policies.scripted import intercept_time as batched

    got = batched(r[:, 0], r[:, 1], v[:, 0], v[:, 1], 4.0, 2.5)
    want = [intercept_time(a, b, c, d, 4.0, 2.5) for (a, b), (c, d) in zip(r.tolist(), v.tolist(), strict=True)]
    assert got.tolist() == want


def test_the_default_fallbacks_decide_in_columns() -> None:
    table = default_fallbacks()
    assert set(table) == {"pursuit", "navigation", "team"}
    obs = [Observation.model_validate(o) for o in raw_batches(3, steps=1, agents=20)[0]]
    for policy in [*table.values(), ChaseOrWait()]:
        cols = policy.decide_columns(obs, {})
        assert cols is not None and len(cols) == len(obs)


def test_many_target_names_take_the_sorted_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows x target names beyond the dense table: each name's position in a row's targets is
    found by sorting instead, with the same choices."""
    from luanti_tune.policies import targets

    monkeypatch.setattr(targets, "_TABLE_CELLS", 0)
    for raw in raw_batches(4, steps=2):
        typed = [Observation.model_validate(o) for o in raw]
        for new, ref in ((PurePursuitPolicy(), RefPurePursuitPolicy()), (ChaseOrWait(), RefChaseOrWait())):
            assert_same(new.decide(typed, {}), ref.decide(typed, {}), new.name)
