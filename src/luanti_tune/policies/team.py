"""The ``team`` model family: teammates share what they see and a learned model splits the targets.

Blackboard (shared observation, kept by the service per team). All observations of one team
(``Observation.team``; no team = a team of one) that arrive in a batch are merged: every target
any teammate sees - items (keyed by name and position), players named in ``targets`` (or any
player when the list is empty) - is written with its absolute position, velocity and tick to the
team's blackboard in the adapter memory (key ``"@team:<team>"``, bounded like every memory entry).
An agent therefore knows where a target is even when only a teammate sees it. Entries go when
older than ``ttl_ticks``, when a teammate within ``sight`` no longer sees an item (collected), or
when no member lists a player in ``targets`` any more (caught).

Columns: the team's live blackboard entries, sorted by key (the ``max_targets`` nearest to the
team when there are more), identical for every member of the team in the batch.

Model (:func:`build_module`, torch): inputs ``pair`` ``[B, K, F]`` (features of agent b and
target column k: relative position, distance, height difference, target velocity split into
radial/tangential parts, staleness, whether b itself sees it, b's distance rank in the team and
margin to the closest teammate, team and target counts, hp) and ``mask`` ``[B, K]``. A per-pair
MLP plus a mean-pooled team-context embedding, on top of a geometric prior (straight run at
``agent_speed`` against the target's closing speed), outputs for every pair

* ``log_t`` ``[B, K]``: log of the time (s) agent b needs to reach target k if it goes for it
  (masked pairs get :data:`MASKED_LOG_T`), and
* ``aim`` ``[B, K, 2]``: where to run to (relative x/z): the target's position plus its predicted
  displacement over that time (an intercept point for a moving target).

Both are learned from team episodes (:mod:`luanti_tune.datasets.team`): actual pickup times of the
agent that collected an item, censored lower bounds for items nobody reached (e.g. high above),
and hindsight intercept labels for moving targets (:func:`hindsight_labels`).

Decode (:class:`TeamAdapter`): per team, the agents x targets matrix of predicted times becomes an
assignment minimising the sum of squared times (:func:`assign`; targets replicated when agents
outnumber them), so teammates split targets instead of all going for the nearest one. Each agent
runs to its pair's aim point (sliding sideways when a wall blocked its last move) and attacks an
assigned player within ``attack_range``. ``TeamAdapter.last_assignment`` records each agent's
target (its role); decisions depend only on observations and outputs, so decode is repeatable.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from luanti_tune.policies.base import AgentMemory, Decision, FamilyAdapter
from luanti_tune.policies.families import FamilySpec
from luanti_tune.schemas.agent import (
    TICK_S,
    AttackAction,
    AttackArgs,
    EntityView,
    MoveAction,
    MoveArgs,
    Observation,
    WaitAction,
)
from luanti_tune.schemas.common import Vec3

FAMILY = "team"
N_FEATURES = 15
POS_SCALE = 16.0
VEL_SCALE = 4.0
WALL_SLIDE_RAD = 1.2  # turn away from a wall that blocked the last move
MASKED_LOG_T = 30.0  # log-time of pairs with no known target: never chosen when anything else is
DEFAULT_ARCH: dict[str, Any] = {
    "kind": "pairmlp",
    "max_targets": 16,
    "hidden": 64,
    "layers": 2,
    "agent_speed": 4.0,
    "catch_radius": 1.0,
    "attack_range": 1.8,
    "ttl_ticks": 60,
    "sight": 8.0,
    "horizon_s": 12.0,
}


def architecture(**overrides: Any) -> dict[str, Any]:
    """A complete architecture dict (what the manifest stores) with ``overrides`` applied."""
    arch = {**DEFAULT_ARCH, **overrides}
    for key in ("max_targets", "hidden", "layers", "ttl_ticks"):
        arch[key] = int(arch[key])
        if arch[key] < 1:
            raise ValueError(f"architecture.{key} must be >= 1")
    for key in ("agent_speed", "catch_radius", "attack_range", "horizon_s", "sight"):
        arch[key] = float(arch[key])
        if not arch[key] > 0:
            raise ValueError(f"architecture.{key} must be > 0")
    if arch["kind"] != "pairmlp":
        raise ValueError(f"architecture.kind {arch['kind']!r} is not supported (use 'pairmlp')")
    return arch


# ----------------------------------------------------------------------------- blackboard

#: Blackboard entry: ``(x, z, vx, vz, tick, seen_by, kind, y)`` in absolute coordinates.
Entry = tuple[float, float, float, float, int, frozenset[str], str, float]


def _team_key(obs: Observation) -> str:
    return obs.team or f"solo:{obs.agent}"


def target_key(obs: Observation, e: EntityView) -> str | None:
    """Blackboard key of a target entity, ``None`` when ``e`` is not a target for ``obs``.

    Named targets (``obs.targets``) and, without a list, players are keyed by name; items (static,
    names shared by many) by name and absolute position rounded to half a node.
    """
    if e.kind == "item":
        x = round((obs.pos.x + e.rel.x) * 2) / 2
        z = round((obs.pos.z + e.rel.z) * 2) / 2
        return f"{e.name or 'item'}@{x:g},{z:g}"
    if e.name is None:
        return None
    if obs.targets:
        return e.name if e.name in obs.targets else None
    return e.name if e.kind == "player" else None


def group_by_team(observations: Sequence[Observation]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for i, obs in enumerate(observations):
        groups.setdefault(_team_key(obs), []).append(i)
    return groups


def update_blackboard(
    board: dict[str, Any], group: Sequence[Observation], ttl_ticks: int, sight: float
) -> dict[str, Entry]:
    """Merge what every member of ``group`` sees into ``board`` and return its live entries.

    An entry disappears when it is older than ``ttl_ticks``, when a teammate closer than ``sight``
    to it no longer sees it (an item was picked up), or when no member lists it in ``targets``
    any more (a target was caught) - whatever any member saw is known to all.
    """
    targets: dict[str, Entry] = board.setdefault("targets", {})
    tick = max(obs.tick for obs in group)
    if board.get("tick", -1) > tick + ttl_ticks:  # ticks went backwards: a new episode
        targets.clear()
    board["tick"] = tick
    seen_now: set[str] = set()
    for obs in group:
        for e in obs.entities:
            key = target_key(obs, e)
            if key is None:
                continue
            x, z = obs.pos.x + e.rel.x, obs.pos.z + e.rel.z
            vx, vz = (e.velocity.x, e.velocity.z) if e.velocity is not None else (0.0, 0.0)
            prev = targets.get(key)
            seen_by = frozenset({obs.agent}) | (prev[5] if prev is not None and prev[4] == obs.tick else frozenset())
            targets[key] = (x, z, vx, vz, obs.tick, seen_by, e.kind, obs.pos.y + e.rel.y)
            seen_now.add(key)
    listed = {n for obs in group for n in obs.targets}
    for key, v in list(targets.items()):
        gone = tick - v[4] > ttl_ticks
        if not gone and key not in seen_now:
            gone = any(math.hypot(o.pos.x - v[0], o.pos.z - v[1]) < sight for o in group)
        if not gone and v[6] != "item" and listed and key not in listed:
            gone = True
        if gone:
            del targets[key]
    if len(targets) > 256:  # bounded: keep the freshest
        for key in sorted(targets, key=lambda n: targets[n][4])[: len(targets) - 256]:
            del targets[key]
    return targets


def team_columns(group: Sequence[Observation], board: Mapping[str, Entry], max_targets: int) -> list[str]:
    """The target keys of one team: every live blackboard entry, nearest to the team first when
    there are more than ``max_targets``; sorted by key so that every member sees the same order."""
    keys = list(board)
    if len(keys) > max_targets:
        pos = np.array([[o.pos.x, o.pos.z] for o in group])
        near = {k: float(np.min(np.hypot(pos[:, 0] - board[k][0], pos[:, 1] - board[k][1]))) for k in keys}
        keys = sorted(keys, key=lambda k: (near[k], k))[:max_targets]
    return sorted(keys)


# ----------------------------------------------------------------------------- features


def pair_features(
    group: Sequence[Observation],
    columns: Sequence[str],
    board: Mapping[str, Entry],
    ttl_ticks: int,
    max_targets: int,
) -> tuple[np.ndarray, np.ndarray]:
    """``pair [n, K, F]`` and ``mask [n, K]`` for the members of one team (see module doc)."""
    n, k = len(group), max_targets
    pair = np.zeros((n, k, N_FEATURES), dtype=np.float32)
    mask = np.zeros((n, k), dtype=np.float32)
    if n == 0 or not columns:
        return pair, mask
    agents = np.array([[o.pos.x, o.pos.z] for o in group], dtype=np.float64)
    known = [c in board for c in columns]
    tpos = np.array([board[c][:2] if c in board else (0.0, 0.0) for c in columns], dtype=np.float64)
    tvel = np.array([board[c][2:4] if c in board else (0.0, 0.0) for c in columns], dtype=np.float64)
    rel = tpos[None, :, :] - agents[:, None, :]  # [n, m, 2]
    dist = np.sqrt((rel**2).sum(-1))  # [n, m]
    unit = rel / np.maximum(dist, 1e-6)[..., None]
    radial = (unit * tvel[None]).sum(-1)  # > 0: the target runs away from this agent
    tangential = np.abs(unit[..., 0] * tvel[None, :, 1] - unit[..., 1] * tvel[None, :, 0])
    rank = dist.argsort(0).argsort(0).astype(np.float64)  # 0 = this agent is the team's closest
    other_best = np.zeros_like(dist)
    if n > 1:
        for i in range(n):
            other_best[i] = np.delete(dist, i, axis=0).min(0)
    margin = np.where(n > 1, dist - other_best, 0.0)
    tick = max(o.tick for o in group)
    m = len(columns)
    for j, c in enumerate(columns):
        if not known[j]:
            continue
        entry = board[c]
        stale = min(max(tick - entry[4], 0), ttl_ticks) / ttl_ticks
        for i, obs in enumerate(group):
            pair[i, j] = (
                rel[i, j, 0] / POS_SCALE,
                rel[i, j, 1] / POS_SCALE,
                dist[i, j] / POS_SCALE,
                tvel[j, 0] / VEL_SCALE,
                tvel[j, 1] / VEL_SCALE,
                radial[i, j] / VEL_SCALE,
                tangential[i, j] / VEL_SCALE,
                stale,
                1.0 if obs.agent in entry[5] else 0.0,
                rank[i, j] / max(n - 1, 1),
                margin[i, j] / POS_SCALE,
                n / 8.0,
                m / 8.0,
                obs.hp / 20.0,
                (entry[7] - obs.pos.y) / 4.0,
            )
            mask[i, j] = 1.0
    return pair, mask


# ----------------------------------------------------------------------------- assignment


def assign(cost: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Column index per agent (``-1``: nothing to do) minimising the team's completion time.

    Targets are replicated ``ceil(n/m)`` times so extra agents double up (second copies cost a
    little more, so doubling happens only when every target has someone). The objective is the
    sum of squared times, which favours a short slowest catch (the shared goal's completion).
    """
    from scipy.optimize import linear_sum_assignment

    n, m = cost.shape
    out = np.full(n, -1, dtype=np.int64)
    if valid is None:
        valid = np.ones_like(cost, dtype=bool)
    cols = [j for j in range(m) if valid[:, j].any()]
    if n == 0 or not cols:
        return out
    reps = math.ceil(n / len(cols))
    big = 1e6
    c = np.where(valid[:, cols], np.square(np.clip(cost[:, cols], 0.0, 1e3)), big)
    tiled = np.concatenate([c + 1e-3 * r * (1.0 + c) for r in range(reps)], axis=1)
    rows, picked = linear_sum_assignment(tiled)
    for r, p in zip(rows, picked, strict=True):
        j = cols[p % len(cols)]
        if valid[r, j]:
            out[r] = j
    return out


def greedy_assign(cost: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Every agent independently takes its own cheapest column (the uncoordinated baseline)."""
    if valid is None:
        valid = np.ones_like(cost, dtype=bool)
    c = np.where(valid, cost, np.inf)
    out = np.where(np.isfinite(c).any(1), c.argmin(1) if c.size else -1, -1)
    return np.asarray(out, dtype=np.int64)


# ----------------------------------------------------------------------------- torch model


def build_module(arch: Mapping[str, Any]) -> Any:
    """A fresh :class:`TeamNet` (torch imported here, not at module import)."""
    import torch
    from torch import nn

    a = architecture(**dict(arch))

    class TeamNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            h = a["hidden"]
            self.embed = nn.Sequential(nn.Linear(N_FEATURES, h), nn.SiLU())
            layers: list[nn.Module] = []
            width = 2 * h
            for _ in range(a["layers"]):
                layers += [nn.Linear(width, h), nn.SiLU()]
                width = h
            head = nn.Linear(width, 3)
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
            layers.append(head)
            self.mlp = nn.Sequential(*layers)
            self.speed = float(a["agent_speed"])
            self.radius = float(a["catch_radius"])
            self.horizon = float(a["horizon_s"])

        def forward(self, pair: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            e = self.embed(pair)  # [B, K, H]
            w = mask.unsqueeze(-1)
            ctx = (e * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp(min=1.0)
            out = self.mlp(torch.cat([e, ctx.expand_as(e)], dim=-1))  # [B, K, 3]
            rel = pair[..., 0:2] * POS_SCALE
            vel = pair[..., 3:5] * VEL_SCALE
            dist = pair[..., 2] * POS_SCALE
            # prior: time for a straight run to a target that keeps its velocity (closing speed)
            closing = (self.speed - pair[..., 5] * VEL_SCALE).clamp(min=0.5)
            prior_t = ((dist - self.radius).clamp(min=0.0) / closing).clamp(max=self.horizon)
            log_t = torch.log(prior_t + 0.1) + out[..., 0]
            t = torch.exp(log_t).clamp(max=self.horizon)
            aim = rel + vel * t.unsqueeze(-1) + out[..., 1:3] * 2.0
            log_t = torch.where(mask > 0, log_t, torch.full_like(log_t, MASKED_LOG_T))
            return log_t, aim

    return TeamNet()


# ----------------------------------------------------------------------------- adapter


class TeamAdapter(FamilyAdapter):
    """Team observations + shared blackboard <-> ``pair``/``mask``; assignment and intercept decoding."""

    family = FAMILY
    input_names = ("pair", "mask")
    output_names = ("log_t", "aim")

    def __init__(self, arch: Mapping[str, Any] | None = None, coordinate: bool = True) -> None:
        self.arch = architecture(**dict(arch or {}))
        self.max_targets = int(self.arch["max_targets"])
        self.ttl_ticks = int(self.arch["ttl_ticks"])
        self.attack_range = float(self.arch["attack_range"])
        self.sight = float(self.arch["sight"])
        #: ``False`` turns the team into independent greedy members (for ablations/baselines).
        self.coordinate = coordinate
        #: agent -> target key chosen by the last :meth:`decode` (its "role"; bounded). Only a record:
        #: decisions depend on the observations and model outputs alone (decode is repeatable).
        self.last_assignment: dict[str, str | None] = {}
        # team -> (columns, kinds) of the last featurize: decode maps column indices back to names
        self._columns: dict[str, tuple[list[str], list[str]]] = {}

    def example_inputs(self, batch: int = 4) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(0)
        pair = rng.normal(0, 0.5, (batch, self.max_targets, N_FEATURES)).astype(np.float32)
        mask = (rng.random((batch, self.max_targets)) < 0.7).astype(np.float32)
        return {"pair": pair, "mask": mask}

    def featurize(self, observations: Sequence[Observation], memory: AgentMemory) -> dict[str, np.ndarray]:
        arrays, _ = self.featurize_with_columns(observations, memory)
        return arrays

    def featurize_with_columns(
        self, observations: Sequence[Observation], memory: AgentMemory
    ) -> tuple[dict[str, np.ndarray], dict[str, tuple[list[int], list[str], dict[str, Entry]]]]:
        """Arrays plus, per team, ``(row indices, column keys, blackboard entries)`` (datasets use it)."""
        n = len(observations)
        pair = np.zeros((n, self.max_targets, N_FEATURES), dtype=np.float32)
        mask = np.zeros((n, self.max_targets), dtype=np.float32)
        teams: dict[str, tuple[list[int], list[str], dict[str, Entry]]] = {}
        for team, idx in group_by_team(observations).items():
            group = [observations[i] for i in idx]
            board = memory.setdefault(f"@team:{team}", {})
            entries = update_blackboard(board, group, self.ttl_ticks, self.sight)
            cols = team_columns(group, entries, self.max_targets)
            p, m = pair_features(group, cols, entries, self.ttl_ticks, self.max_targets)
            pair[idx] = p
            mask[idx] = m
            teams[team] = (idx, cols, dict(entries))
            self._columns[team] = (cols, [entries[c][6] for c in cols])
        if len(self._columns) > 4096:
            self._columns.pop(next(iter(self._columns)))
        return {"pair": pair, "mask": mask}, teams

    def decode(self, observations: Sequence[Observation], outputs: dict[str, np.ndarray]) -> list[Decision]:
        log_t = np.asarray(outputs["log_t"], dtype=np.float64)
        aim = np.asarray(outputs["aim"], dtype=np.float64)
        decisions: list[Decision] = []
        choice_of: dict[int, int] = {}
        for idx in group_by_team(observations).values():
            lt = log_t[idx]
            valid = lt < MASKED_LOG_T - 1.0
            cost = np.exp(np.minimum(lt, 10.0))
            choice = assign(cost, valid) if self.coordinate else greedy_assign(cost, valid)
            for row, i in enumerate(idx):
                choice_of[i] = int(choice[row])
        for i, obs in enumerate(observations):
            j = choice_of.get(i, -1)
            cols, kinds = self._columns.get(_team_key(obs), ([], []))
            key = cols[j] if 0 <= j < len(cols) else None
            self._remember(obs.agent, key)
            kind = kinds[j] if 0 <= j < len(kinds) else "item"
            decisions.append(self._act(obs, key, kind, aim[i, j] if j >= 0 else None, log_t[i]))
        return decisions

    def _remember(self, agent: str, key: str | None) -> None:
        if len(self.last_assignment) >= 100_000 and agent not in self.last_assignment:
            self.last_assignment.pop(next(iter(self.last_assignment)))
        self.last_assignment[agent] = key

    def _act(self, obs: Observation, key: str | None, kind: str, aim: np.ndarray | None, lt: np.ndarray) -> Decision:
        if aim is None or not np.all(np.isfinite(aim)):
            return Decision(_wait(obs.agent), 0.0)
        if key is not None and kind != "item":
            seen = next((e for e in obs.entities if e.name == key), None)
            if seen is not None and math.hypot(seen.rel.x, seen.rel.z) <= self.attack_range:
                action = AttackAction.model_construct(
                    agent=obs.agent, type="attack", args=AttackArgs.model_construct(target=key)
                )
                return Decision(action, 1.0)
        norm = float(np.hypot(aim[0], aim[1]))
        if norm < 1e-6:
            return Decision(_wait(obs.agent), 0.5)
        lr = obs.last_result
        if lr is not None and not lr.ok and lr.reason is not None and lr.reason.startswith("blocked"):
            # slide along the obstacle (always the same side for one agent) and hop
            a = WALL_SLIDE_RAD if zlib.crc32(obs.agent.encode()) % 2 else -WALL_SLIDE_RAD
            c, s = math.cos(a), math.sin(a)
            aim = np.array([c * aim[0] - s * aim[1], s * aim[0] + c * aim[1]])
        # confidence: a clear best pair (gap to the second best) means a clear role
        finite = np.sort(lt[lt < MASKED_LOG_T - 1.0])
        conf = 1.0 if finite.size < 2 else float(1.0 - math.exp(-(finite[1] - finite[0]) - 0.5))
        args = MoveArgs.model_construct(
            dir=Vec3.model_construct(x=float(aim[0] / norm), y=0.0, z=float(aim[1] / norm)), speed=1.0
        )
        return Decision(MoveAction.model_construct(agent=obs.agent, type="move", args=args), conf)


def _wait(agent: str) -> WaitAction:
    return WaitAction.model_construct(agent=agent, type="wait")


# ----------------------------------------------------------------------------- hindsight labels


def hindsight_labels(
    agent_xz: np.ndarray,
    t_now: float,
    track_t: np.ndarray,
    track_xz: np.ndarray,
    agent_speed: float,
    catch_radius: float,
    horizon_s: float,
    dt: float = TICK_S,
) -> tuple[float, np.ndarray, bool]:
    """From the target's real future track: ``(time to intercept, displacement by then, reached)``.

    The intercept time is the earliest ``tau`` with ``|target(t+tau) - agent| <= speed*tau + r``;
    when no such ``tau <= horizon_s`` exists the label is censored at the horizon (``reached`` False).
    """
    taus = np.arange(0.0, horizon_s + 1e-9, dt)
    tq = np.clip(t_now + taus, track_t[0], track_t[-1])
    px = np.interp(tq, track_t, track_xz[:, 0])
    pz = np.interp(tq, track_t, track_xz[:, 1])
    d = np.hypot(px - agent_xz[0], pz - agent_xz[1])
    ok = d <= agent_speed * taus + catch_radius
    k = int(ok.argmax()) if ok.any() else len(taus) - 1
    x0 = np.interp(t_now, track_t, track_xz[:, 0])
    z0 = np.interp(t_now, track_t, track_xz[:, 1])
    return float(taus[k]), np.array([px[k] - x0, pz[k] - z0]), bool(ok.any())


def evaluate(module: Any, data: Mapping[str, np.ndarray], batch_size: int = 4096) -> dict[str, float]:
    """Offline metrics on arrays ``pair, mask, log_t, aim, weight[, cens]``.

    ``log_t_mae``: error of the log time on exact labels; ``aim_err``: aim error (nodes);
    ``censored_violation``: how far below a censored lower bound predictions fall; ``loss`` sums them.
    """
    import torch

    n = len(data["pair"])
    if n == 0:
        return {"n": 0.0}
    lts, aims = [], []
    module.eval()
    with torch.inference_mode():
        for i in range(0, n, batch_size):
            lt, aim = module(
                torch.from_numpy(np.ascontiguousarray(data["pair"][i : i + batch_size], dtype=np.float32)),
                torch.from_numpy(np.ascontiguousarray(data["mask"][i : i + batch_size], dtype=np.float32)),
            )
            lts.append(lt.numpy())
            aims.append(aim.numpy())
    lt = np.concatenate(lts)
    aim = np.concatenate(aims)
    cens = data["cens"] > 0 if "cens" in data else np.zeros_like(data["weight"], dtype=bool)
    exact = (data["weight"] > 0) & ~cens
    censored = (data["weight"] > 0) & cens
    out: dict[str, float] = {"n": float(exact.sum()), "n_censored": float(censored.sum())}
    out["log_t_mae"] = float(np.abs(lt - data["log_t"])[exact].mean()) if exact.any() else 0.0
    out["aim_err"] = float(np.sqrt(((aim - data["aim"]) ** 2).sum(-1))[exact].mean()) if exact.any() else 0.0
    viol = np.maximum(data["log_t"] - lt, 0.0)[censored]
    out["censored_violation"] = float(viol.mean()) if censored.any() else 0.0
    out["loss"] = out["log_t_mae"] + out["aim_err"] / POS_SCALE + out["censored_violation"]
    if not all(math.isfinite(v) for v in out.values()):
        out["nonfinite"] = 1.0
    return out


def team_family() -> FamilySpec:
    return FamilySpec(
        name=FAMILY,
        adapter=TeamAdapter,
        build=build_module,
        evaluate=evaluate,
        description="Shared blackboard + learned catch times and intercept points; team-wide target assignment.",
    )
