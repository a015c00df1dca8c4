"""Gymnasium environments over the simulator scenarios (and a PettingZoo parallel Team env).

Spaces are derived from the shared schemas: each vector observation is a fixed featurisation
of the schema :class:`~luanti_tune.schemas.agent.Observation` the agent gets, and each action
index maps to one schema :class:`~luanti_tune.schemas.agent.Action`; the env applies it with
:meth:`Simulation.apply_action`, so an impossible action (digging air, walking into a wall, an
out-of-range index) yields a failed ``agent.result`` with a reason in ``info["result"]`` and
never raises.

* ``luanti_tune/Pursuit-v0``: observation ``Box(12)``: target rel x/y/z (/20), target velocity
  x/z (/4), own velocity x/z (/4), distance (/20), last two per-step target displacements x/z
  (/0.5). Action ``Box(-1, 1, (2,))``: a ``move`` direction (x, z); length = speed, < 0.05 waits.
* ``luanti_tune/Navigate-v0``: observation ``Box(134)``: goal rel x/y/z (/16), distance (/20),
  velocity (/4), hp (/20), on-ground flag, ``nearby`` grid of radius 2 (125 codes / 6).
  Action ``Discrete(11)``: 0-7 ``move`` toward +x, +x+z, +z, -x+z, -x, -x-z, -z, +x-z;
  8 ``jump``; 9 ``wait``; 10 ``dig`` the node ahead (feet level, last move direction).
* ``luanti_tune/Team-v0``: ``n`` agents, observation ``Box(14 n)`` (per agent: position from the
  map centre (/16), velocity (/4), three nearest items rel (/16), two teammates rel (/16)),
  action ``MultiDiscrete([9] * n)`` (0-7 moves, 8 wait); the reward is shared.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from luanti_tune.schemas.agent import LastResult
from luanti_tune.sim.render import top_view
from luanti_tune.sim.scenarios import ENEMY_SPEED, NavigationScenario, PursuitScenario, TeamScenario
from luanti_tune.sim.styles import MOBILE_STYLES, PlayerStyle, get_style

DIRS = np.array([[math.cos(k * math.pi / 4), math.sin(k * math.pi / 4)] for k in range(8)])


def _move(agent: str, d: np.ndarray, speed: float = 1.0) -> dict[str, Any]:
    return {
        "agent": agent,
        "type": "move",
        "args": {"dir": {"x": float(d[0]), "y": 0.0, "z": float(d[1])}, "speed": speed},
    }


def _result_dict(res: LastResult) -> dict[str, Any]:
    return res.model_dump(exclude_none=True)


class _Base(gym.Env):  # type: ignore[type-arg]
    metadata = {"render_modes": ["rgb_array"], "render_fps": 11}

    def __init__(self, render_mode: str | None = None, record_events: bool = False) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.render_mode = render_mode
        self.record_events = record_events

    def _episode_seed(self) -> int:
        return int(self.np_random.integers(0, 2**31 - 1))

    def drain_events(self) -> list[dict[str, Any]]:
        """Wire events of the current episode so far (``record_events=True``)."""
        return self._sim().drain_events()

    def _sim(self) -> Any:
        raise NotImplementedError

    def render(self) -> np.ndarray | None:  # type: ignore[override]
        if self.render_mode != "rgb_array":
            return None
        return top_view(self._sim(), goal=getattr(self, "_goal", None))


class PursuitEnv(_Base):
    """An enemy agent chases one scripted player (style drawn per episode from ``styles``)."""

    def __init__(
        self,
        render_mode: str | None = None,
        styles: tuple[str | PlayerStyle, ...] = MOBILE_STYLES,
        max_steps: int = 150,
        enemy_speed: float = ENEMY_SPEED,
        record_events: bool = False,
    ) -> None:
        super().__init__(render_mode, record_events)
        self.styles = [s if isinstance(s, PlayerStyle) else get_style(s) for s in styles]
        self.max_steps = max_steps
        self.enemy_speed = enemy_speed
        self.observation_space = spaces.Box(-5.0, 5.0, shape=(12,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.scenario: PursuitScenario | None = None
        self._hist: list[np.ndarray] = []

    def _sim(self) -> Any:
        assert self.scenario is not None, "call reset() first"
        return self.scenario.sim

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:  # type: ignore[override]
        super().reset(seed=seed)
        options = options or {}
        style = options.get("style") or self.styles[int(self.np_random.integers(len(self.styles)))]
        self.scenario = PursuitScenario(
            style,
            self._episode_seed(),
            max_steps=self.max_steps,
            record=self.record_events,
            enemy_speed=self.enemy_speed,
        )
        tp = self.scenario.sim.pos_of(self.scenario.player).copy()
        self._hist = [tp, tp]
        return self._obs(), {"style": self.scenario.style.name}

    def _obs(self) -> np.ndarray:
        sc = self.scenario
        assert sc is not None
        sim = sc.sim
        ep, tp = sim.pos_of(sc.enemy), sim.pos_of(sc.player)
        b = sim.bodies
        rel = tp - ep
        tv = b.vel[sim.actors[sc.player].idx]
        ev = b.vel[sim.actors[sc.enemy].idx]
        d1 = (self._hist[-1] - self._hist[-2])[[0, 2]]
        d0 = (tp - self._hist[-1])[[0, 2]]
        vec = np.array(
            [
                rel[0] / 20,
                rel[1] / 20,
                rel[2] / 20,
                tv[0] / 4,
                tv[2] / 4,
                ev[0] / 4,
                ev[2] / 4,
                sc.distance() / 20,
                d0[0] / 0.5,
                d0[1] / 0.5,
                d1[0] / 0.5,
                d1[1] / 0.5,
            ]
        )
        return np.clip(vec, -5, 5).astype(np.float32)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:  # type: ignore[override]
        sc = self.scenario
        assert sc is not None, "call reset() first"
        if self.record_events:
            sc.observe()
        try:
            a = np.asarray(action, dtype=np.float64).reshape(2)
            ok_shape = bool(np.all(np.isfinite(a)))
        except (ValueError, TypeError):
            a, ok_shape = np.zeros(2), False
        if not ok_shape:
            res = sc.act({"agent": sc.enemy, "type": "move", "args": {"dir": "bad"}})
        else:
            a = np.clip(a, -1, 1)
            n = float(np.hypot(*a))
            if n < 0.05:
                res = sc.act({"agent": sc.enemy, "type": "wait", "args": {"ticks": 1}})
            else:
                res = sc.act(_move(sc.enemy, a / n, min(1.0, n)))
        prev = sc.sim.pos_of(sc.player).copy()
        reward, done = sc.advance()
        self._hist = [self._hist[-1], prev]
        terminated = sc.caught
        truncated = done and not terminated
        info = {"caught": sc.caught, "distance": sc.distance(), "result": _result_dict(res), "style": sc.style.name}
        return self._obs(), float(reward), terminated, truncated, info


class NavigateEnv(_Base):
    """Reach the goal across changing terrain (lava spreads, a bridge collapses, a builder digs)."""

    def __init__(
        self,
        render_mode: str | None = None,
        max_steps: int = 200,
        terrain_changes: bool = True,
        record_events: bool = False,
        min_goal_dist: float = 6.0,
        max_goal_dist: float = 14.0,
    ) -> None:
        super().__init__(render_mode, record_events)
        self.max_steps = max_steps
        self.terrain_changes = terrain_changes
        self.min_goal_dist, self.max_goal_dist = min_goal_dist, max_goal_dist
        self.observation_space = spaces.Box(-5.0, 5.0, shape=(134,), dtype=np.float32)
        self.action_space = spaces.Discrete(11)
        self.scenario: NavigationScenario | None = None
        self._facing = np.array([1.0, 0.0])

    def _sim(self) -> Any:
        assert self.scenario is not None, "call reset() first"
        return self.scenario.sim

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:  # type: ignore[override]
        super().reset(seed=seed)
        self.scenario = NavigationScenario(
            self._episode_seed(),
            max_steps=self.max_steps,
            terrain_changes=self.terrain_changes,
            record=self.record_events,
            min_goal_dist=self.min_goal_dist,
            max_goal_dist=self.max_goal_dist,
        )
        self._goal = self.scenario.goal
        self._facing = np.array([1.0, 0.0])
        return self._obs(), {"goal": self.scenario.goal.tolist()}

    def _obs(self) -> np.ndarray:
        sc = self.scenario
        assert sc is not None
        sim = sc.sim
        i = sim.actors[sc.agent].idx
        b = sim.bodies
        rel = sc.goal - b.pos[i]
        head = np.array(
            [
                rel[0] / 16,
                rel[1] / 16,
                rel[2] / 16,
                sc.distance() / 20,
                *(b.vel[i] / 4),
                b.hp[i] / 20,
                float(b.on_ground[i]),
            ]
        )
        grid = sim.world.nearby_codes(b.cells()[[i]], 2)[0] / 6.0
        return np.clip(np.concatenate([head, grid]), -5, 5).astype(np.float32)

    def action_to_schema(self, action: Any) -> dict[str, Any]:
        """The schema action (a dict) for a discrete action index; bad indices give a bad dict."""
        sc = self.scenario
        assert sc is not None
        name = sc.agent
        try:
            k = int(action)
        except (TypeError, ValueError):
            return {"agent": name, "type": f"invalid action {action!r}"}
        if 0 <= k < 8:
            self._facing = DIRS[k]
            return _move(name, DIRS[k])
        if k == 8:
            return {"agent": name, "type": "jump", "args": {}}
        if k == 9:
            return {"agent": name, "type": "wait", "args": {"ticks": 1}}
        if k == 10:
            p = sc.sim.pos_of(name)
            cell = np.floor(p + 0.5) + np.array([round(self._facing[0]), 0.0, round(self._facing[1])])
            return {"agent": name, "type": "dig", "args": {"pos": {"x": cell[0], "y": cell[1], "z": cell[2]}}}
        return {"agent": name, "type": f"invalid action index {k}"}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:  # type: ignore[override]
        sc = self.scenario
        assert sc is not None, "call reset() first"
        if self.record_events:
            sc.observe()
        res = sc.act(self.action_to_schema(action))
        reward, done = sc.advance()
        terminated = sc.reached or sc.dead()
        truncated = done and not terminated
        info = {
            "reached": sc.reached,
            "dead": sc.dead(),
            "distance": sc.distance(),
            "damage": sc.damage(),
            "result": _result_dict(res),
        }
        return self._obs(), float(reward), terminated, truncated, info


def _team_features(sc: TeamScenario, name: str, n_agents: int) -> np.ndarray:
    sim = sc.sim
    b = sim.bodies
    i = sim.actors[name].idx
    pos = b.pos[i]
    center = np.array(sim.world.shape, dtype=float)[[0, 2]] / 2
    feats = [(pos[[0, 2]] - center) / 16, b.vel[i, [0, 2]] / 4]
    if len(sim.items):
        rel = sim.items[:, [0, 2]] - pos[[0, 2]]
        order = np.argsort(np.hypot(rel[:, 0], rel[:, 1]), kind="stable")[:3]
        near = rel[order] / 16
    else:
        near = np.zeros((0, 2))
    near = np.concatenate([near, np.zeros((3 - len(near), 2))])
    feats.append(near.ravel())
    mates = [sim.pos_of(m)[[0, 2]] - pos[[0, 2]] for m in sc.agents if m != name][:2]
    mates += [np.zeros(2)] * (2 - len(mates))
    feats.append(np.concatenate(mates) / 16)
    return np.clip(np.concatenate(feats), -5, 5).astype(np.float32)


class TeamEnv(_Base):
    """``n_agents`` team members collect every item; one shared reward (Gymnasium, joint action)."""

    def __init__(
        self,
        render_mode: str | None = None,
        n_agents: int = 3,
        items: int = 9,
        max_steps: int = 400,
        record_events: bool = False,
    ) -> None:
        super().__init__(render_mode, record_events)
        self.n_agents, self.items, self.max_steps = n_agents, items, max_steps
        self.observation_space = spaces.Box(-5.0, 5.0, shape=(14 * n_agents,), dtype=np.float32)
        self.action_space = spaces.MultiDiscrete([9] * n_agents)
        self.scenario: TeamScenario | None = None

    def _sim(self) -> Any:
        assert self.scenario is not None, "call reset() first"
        return self.scenario.sim

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:  # type: ignore[override]
        super().reset(seed=seed)
        self.scenario = TeamScenario(
            self._episode_seed(),
            agents=self.n_agents,
            items=self.items,
            max_steps=self.max_steps,
            record=self.record_events,
        )
        return self._obs(), {}

    def _obs(self) -> np.ndarray:
        sc = self.scenario
        assert sc is not None
        return np.concatenate([_team_features(sc, a, self.n_agents) for a in sc.agents])

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:  # type: ignore[override]
        sc = self.scenario
        assert sc is not None, "call reset() first"
        results = _apply_team_actions(sc, dict(zip(sc.agents, np.asarray(action).reshape(-1).tolist(), strict=False)))
        reward, done = sc.advance()
        terminated = sc.collected() >= sc.total_items
        info = {"collected": sc.collected(), "results": results}
        return self._obs(), float(reward), terminated, done and not terminated, info


def _apply_team_actions(sc: TeamScenario, actions: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    if sc.sim.record:
        sc.observe_all()
    for name in sc.agents:
        a = actions.get(name, 8)
        try:
            k = int(a)
        except (TypeError, ValueError):
            k = -1
        if 0 <= k < 8:
            res = sc.act(_move(name, DIRS[k]))
        elif k == 8:
            res = sc.act({"agent": name, "type": "wait", "args": {"ticks": 1}})
        else:
            res = sc.act({"agent": name, "type": f"invalid action index {a!r}"})
        out[name] = _result_dict(res)
    return out


def team_parallel_env(**kwargs: Any) -> Any:
    """The PettingZoo parallel version of Team-v0 (imports pettingzoo lazily)."""
    return TeamParallelEnv(**kwargs)


try:  # pettingzoo is part of the train extra; keep the Gymnasium envs usable without it
    from pettingzoo import ParallelEnv as _ParallelEnv
except ImportError:  # pragma: no cover
    _ParallelEnv = object


class TeamParallelEnv(_ParallelEnv):  # type: ignore[misc,valid-type]
    """PettingZoo ``ParallelEnv``: agents ``team-1..n``, ``Box(14)`` observations, ``Discrete(9)`` actions."""

    metadata = {"name": "luanti_tune_team_v0", "render_modes": ["rgb_array"], "render_fps": 11}

    def __init__(self, n_agents: int = 3, items: int = 9, max_steps: int = 400, render_mode: str | None = None) -> None:
        self.n_agents, self.items, self.max_steps = n_agents, items, max_steps
        self.render_mode = render_mode
        self.possible_agents = [f"team-{i + 1}" for i in range(n_agents)]
        self.agents: list[str] = []
        self._obs_space = spaces.Box(-5.0, 5.0, shape=(14,), dtype=np.float32)
        self._act_space = spaces.Discrete(9)
        self.scenario: TeamScenario | None = None
        self._rng = np.random.default_rng()

    def observation_space(self, agent: str) -> spaces.Box:
        return self._obs_space

    def action_space(self, agent: str) -> spaces.Discrete:
        return self._act_space

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.scenario = TeamScenario(
            int(self._rng.integers(0, 2**31 - 1)), agents=self.n_agents, items=self.items, max_steps=self.max_steps
        )
        self.agents = list(self.possible_agents)
        obs = {a: _team_features(self.scenario, a, self.n_agents) for a in self.agents}
        return obs, {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        sc = self.scenario
        assert sc is not None, "call reset() first"
        results = _apply_team_actions(sc, actions)
        reward, done = sc.advance()
        terminated = sc.collected() >= sc.total_items
        truncated = done and not terminated
        obs = {a: _team_features(sc, a, self.n_agents) for a in self.agents}
        rewards = {a: float(reward) for a in self.agents}
        terms = {a: terminated for a in self.agents}
        truncs = {a: truncated for a in self.agents}
        infos = {a: {"result": results[a], "collected": sc.collected()} for a in self.agents}
        if terminated or truncated:
            self.agents = []
        return obs, rewards, terms, truncs, infos

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array" or self.scenario is None:
            return None
        return top_view(self.scenario.sim)

    def close(self) -> None:
        self.scenario = None
