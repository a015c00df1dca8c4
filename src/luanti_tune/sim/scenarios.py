"""Evaluation scenarios (pursuit, navigation, team) and their episode runners.

A scenario owns one :class:`~luanti_tune.sim.core.Simulation`; agents see schema
:class:`~luanti_tune.schemas.agent.Observation` objects and answer with schema actions, so
learned policies and scripted baselines are evaluated identically. The Gymnasium envs wrap
the same scenarios.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from luanti_tune.policies.base import AgentMemory, Policy
from luanti_tune.schemas.agent import Action, LastResult, Observation
from luanti_tune.sim.core import Dynamics, Simulation
from luanti_tune.sim.physics import DT
from luanti_tune.sim.styles import MOBILE_STYLES, PlayerKind, get_style
from luanti_tune.sim.world import World, WorldConfig

CATCH_RADIUS = 1.0
ENEMY_SPEED = 1.0
GOAL_RADIUS = 1.0

PURSUIT_WORLD = WorldConfig(size_x=40, size_y=12, size_z=40, terrain="flat", base_height=3, river=False)
NAV_WORLD = WorldConfig(size_x=32, size_y=20, size_z=32, terrain="hills", lava_pools=4, walls=6)
TEAM_WORLD = WorldConfig(
    size_x=32, size_y=16, size_z=32, terrain="hills", relief=2.0, lava_pools=0, walls=3, river=False
)


def _style(s: str | PlayerKind) -> PlayerKind:
    return get_style(s) if isinstance(s, str) else s


class PursuitScenario:
    """An enemy agent (``enemy-1``, 1.1x player speed) chases one scripted player in a walled arena."""

    enemy = "enemy-1"

    def __init__(
        self,
        style: str | PlayerKind,
        seed: int,
        *,
        max_steps: int = 150,
        record: bool = False,
        enemy_speed: float = ENEMY_SPEED,
        source: str = "sim-pursuit",
        player_name: str | None = None,
    ) -> None:
        self.style = _style(style)
        self.max_steps = max_steps
        rng = np.random.default_rng([seed, 101])
        world = World(PURSUIT_WORLD, seed=seed)
        self.sim = Simulation(world, seed=seed, source=source, episode_id=f"{source}-{seed}", record=record)
        c = PURSUIT_WORLD.size_x / 2.0
        center = np.array([c, 0.0, c])
        ppos = world.spawn_point(
            int(rng.integers(10, PURSUIT_WORLD.size_x - 10)), int(rng.integers(10, PURSUIT_WORLD.size_z - 10))
        )
        self.player = player_name or f"target-{self.style.name}"
        self.sim.add_player(self.player, self.style, pos=ppos, anchor=center)
        for _ in range(100):
            ang = rng.uniform(0, 2 * math.pi)
            d = rng.uniform(7.0, 11.0)
            ex, ez = int(round(ppos[0] + d * math.cos(ang))), int(round(ppos[2] + d * math.sin(ang)))
            if 2 <= ex < PURSUIT_WORLD.size_x - 2 and 2 <= ez < PURSUIT_WORLD.size_z - 2:
                break
        agent = self.sim.add_agent(
            self.enemy, "pursuit", pos=world.spawn_point(ex, ez), speed_mul=enemy_speed, hostile=True
        )
        agent.targets = [self.player]
        # let the player get going before the chase starts
        for _ in range(5):
            self.sim.step()
        self.steps = 0
        self.caught = False

    def distance(self) -> float:
        d = self.sim.pos_of(self.player) - self.sim.pos_of(self.enemy)
        return float(math.hypot(d[0], d[2]))

    def observe(self) -> Observation:
        return self.sim.observe(self.enemy)

    def act(self, action: Action | dict[str, Any]) -> LastResult:
        return self.sim.apply_action(action)

    def advance(self) -> tuple[float, bool]:
        """One step; returns ``(reward, done)``: closing distance, +10 on a catch."""
        before = self.distance()
        self.sim.step()
        self.steps += 1
        after = self.distance()
        reward = (before - after) / 0.4
        if after < CATCH_RADIUS:
            self.caught = True
            reward += 10.0
        if self.sim.record:
            self.sim.reward(self.enemy, reward, "caught" if self.caught else "closer")
        return reward, self.caught or self.steps >= self.max_steps


class NavigationScenario:
    """Reach a goal across hills, walls, water, lava; terrain changes while walking."""

    agent = "nav-1"

    def __init__(
        self,
        seed: int,
        *,
        max_steps: int = 400,
        terrain_changes: bool = True,
        record: bool = False,
        nearby_radius: int = 3,
        source: str = "sim-nav",
        min_goal_dist: float = 10.0,
        max_goal_dist: float = 18.0,
    ) -> None:
        self.max_steps = max_steps
        rng = np.random.default_rng([seed, 202])
        world = World(NAV_WORLD, seed=seed)
        dyn = Dynamics(
            lava_every=20 if terrain_changes else 0,
            lava_prob=0.25,
            bridge_collapse_tick=int(rng.integers(40, 160)) if terrain_changes else None,
        )
        self.sim = Simulation(
            world, seed=seed, source=source, episode_id=f"{source}-{seed}", record=record, dynamics=dyn
        )
        cols = world.standable_columns()
        start = cols[int(rng.integers(len(cols)))]
        d = np.linalg.norm(cols - start, axis=1)
        ok = np.nonzero((d >= min_goal_dist) & (d <= max_goal_dist))[0]
        if len(ok) == 0:
            ok = np.array([int(np.argmax(d))])
        goal_col = cols[int(ok[int(rng.integers(len(ok)))])]
        self.goal = world.spawn_point(int(goal_col[0]), int(goal_col[1]))
        actor = self.sim.add_agent(self.agent, "navigation", pos=world.spawn_point(int(start[0]), int(start[1])))
        actor.goal = self.goal
        actor.nearby_radius = nearby_radius
        if terrain_changes:
            # a builder working between start and goal digs and places nodes during the episode
            mid = (world.spawn_point(int(start[0]), int(start[1])) + self.goal) / 2
            mc = np.clip(np.round(mid[[0, 2]]).astype(int), 2, NAV_WORLD.size_x - 3)
            near = cols[np.argmin(np.linalg.norm(cols - mc, axis=1))]
            self.sim.add_player("builder-1", get_style("builder"), pos=world.spawn_point(int(near[0]), int(near[1])))
        self.steps = 0
        self.reached = False
        self.start_hp = float(self.sim.bodies.hp[actor.idx])

    def distance(self) -> float:
        d = self.sim.pos_of(self.agent) - self.goal
        return float(math.hypot(d[0], d[2]))

    def dead(self) -> bool:
        return not bool(self.sim.bodies.alive[self.sim.actors[self.agent].idx])

    def damage(self) -> float:
        return self.start_hp - float(self.sim.bodies.hp[self.sim.actors[self.agent].idx])

    def observe(self) -> Observation:
        return self.sim.observe(self.agent)

    def act(self, action: Action | dict[str, Any]) -> LastResult:
        return self.sim.apply_action(action)

    def advance(self) -> tuple[float, bool]:
        before, hp_before = self.distance(), self.damage()
        self.sim.step()
        self.steps += 1
        after = self.distance()
        dy = abs(float(self.sim.pos_of(self.agent)[1] - self.goal[1]))
        reward = (before - after) - 0.01 - 0.2 * (self.damage() - hp_before)
        if after < GOAL_RADIUS and dy < 1.6:
            self.reached = True
            reward += 10.0
        if self.dead():
            reward -= 5.0
        if self.sim.record:
            self.sim.reward(self.agent, reward, "goal" if self.reached else "progress")
        return reward, self.reached or self.dead() or self.steps >= self.max_steps


class TeamScenario:
    """``agents`` team members share one goal: collect every item on the map."""

    def __init__(
        self, seed: int, *, agents: int = 3, items: int = 9, max_steps: int = 400, record: bool = False
    ) -> None:
        self.max_steps = max_steps
        rng = np.random.default_rng([seed, 303])
        world = World(TEAM_WORLD, seed=seed)
        self.sim = Simulation(world, seed=seed, source="sim-team", episode_id=f"sim-team-{seed}", record=record)
        cols = world.standable_columns()
        center = np.array([TEAM_WORLD.size_x // 2, TEAM_WORLD.size_z // 2])
        near = cols[np.argsort(np.linalg.norm(cols - center, axis=1))[: max(agents * 4, 8)]]
        self.agents = [f"team-{i + 1}" for i in range(agents)]
        for i, name in enumerate(self.agents):
            c = near[(i * 3) % len(near)]
            self.sim.add_agent(name, "team", pos=world.spawn_point(int(c[0]), int(c[1])), team="blue")
        picks = cols[rng.choice(len(cols), size=min(items, len(cols)), replace=False)]
        cells = np.array([world.spawn_point(int(x), int(z)) + [0, 0.5, 0] for x, z in picks])
        self.sim.add_items(cells)
        self.total_items = len(cells)
        self.steps = 0

    def collected(self) -> int:
        return self.total_items - len(self.sim.items)

    def observe_all(self) -> list[Observation]:
        return [self.sim.observe(a) for a in self.agents]

    def act(self, action: Action | dict[str, Any]) -> LastResult:
        return self.sim.apply_action(action)

    def advance(self) -> tuple[float, bool]:
        before = self.collected()
        self.sim.step()
        self.steps += 1
        reward = float(self.collected() - before) - 0.01
        done = self.collected() >= self.total_items or self.steps >= self.max_steps
        if self.sim.record:
            for a in self.agents:
                self.sim.reward(a, reward, "items")
        return reward, done


# ----------------------------------------------------------------------------- runners


def run_pursuit_episodes(
    policy: Policy,
    styles: Sequence[str | PlayerKind] = MOBILE_STYLES,
    n: int = 20,
    seed: int = 0,
    max_steps: int = 150,
    enemy_speed: float = ENEMY_SPEED,
) -> dict[str, Any]:
    """``n`` episodes (styles cycled); catch rate, time to catch, per-style catch rates."""
    caught, times, final_d, invalid = [], [], [], 0
    per_style: dict[str, list[bool]] = {}
    per_style_time: dict[str, list[float]] = {}
    for ep in range(n):
        style = _style(styles[ep % len(styles)])
        sc = PursuitScenario(style, seed * 100_003 + ep, max_steps=max_steps, enemy_speed=enemy_speed)
        memory: AgentMemory = {}
        done = False
        while not done:
            decision = policy.decide([sc.observe()], memory)[0]
            if not sc.act(decision.action).ok:
                invalid += 1
            _, done = sc.advance()
        caught.append(sc.caught)
        per_style.setdefault(style.name, []).append(sc.caught)
        per_style_time.setdefault(style.name, []).append(sc.steps * DT if sc.caught else max_steps * DT)
        final_d.append(sc.distance())
        if sc.caught:
            times.append(sc.steps * DT)
    return {
        "episodes": n,
        "catch_rate": float(np.mean(caught)) if caught else 0.0,
        "mean_time_to_catch_s": float(np.mean(times)) if times else None,
        "mean_time_censored_s": float(np.mean(times + [max_steps * DT] * (n - len(times)))) if n else None,
        "mean_final_distance": float(np.mean(final_d)) if final_d else None,
        "per_style_catch_rate": {k: float(np.mean(v)) for k, v in per_style.items()},
        "per_style_mean_time_censored_s": {k: float(np.mean(v)) for k, v in per_style_time.items()},
        "failed_actions": invalid,
        "max_steps": max_steps,
        "enemy_speed": enemy_speed,
    }


def run_navigation_episodes(
    policy: Policy, n: int = 10, seed: int = 0, terrain_changes: bool = True, max_steps: int = 400
) -> dict[str, Any]:
    """``n`` navigation episodes: success rate, time to goal, damage, deaths."""
    success, times, damage, deaths, final_d = [], [], [], 0, []
    for ep in range(n):
        sc = NavigationScenario(seed * 100_003 + ep, max_steps=max_steps, terrain_changes=terrain_changes)
        memory: AgentMemory = {}
        done = False
        while not done:
            decision = policy.decide([sc.observe()], memory)[0]
            sc.act(decision.action)
            _, done = sc.advance()
        success.append(sc.reached)
        damage.append(sc.damage())
        deaths += int(sc.dead())
        final_d.append(sc.distance())
        if sc.reached:
            times.append(sc.steps * DT)
    return {
        "episodes": n,
        "success_rate": float(np.mean(success)) if success else 0.0,
        "mean_time_s": float(np.mean(times)) if times else None,
        "mean_damage": float(np.mean(damage)) if damage else 0.0,
        "deaths": deaths,
        "mean_final_distance": float(np.mean(final_d)) if final_d else None,
        "terrain_changes": terrain_changes,
    }


def run_team_episodes(
    policy: Policy, n: int = 5, seed: int = 0, agents: int = 3, items: int = 9, max_steps: int = 400
) -> dict[str, Any]:
    """``n`` team episodes; all members are decided in one batch per step."""
    got, completed, times = [], [], []
    for ep in range(n):
        sc = TeamScenario(seed * 100_003 + ep, agents=agents, items=items, max_steps=max_steps)
        memory: AgentMemory = {}
        done = False
        while not done:
            obs = sc.observe_all()
            for d in policy.decide(obs, memory):
                sc.act(d.action)
            _, done = sc.advance()
        got.append(sc.collected())
        full = sc.collected() >= sc.total_items
        completed.append(full)
        if full:
            times.append(sc.steps * DT)
    return {
        "episodes": n,
        "mean_items": float(np.mean(got)) if got else 0.0,
        "items_per_episode": items,
        "completion_rate": float(np.mean(completed)) if completed else 0.0,
        "mean_time_s": float(np.mean(times)) if times else None,
    }
