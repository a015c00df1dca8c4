"""Many navigation agents in one world, stepped as arrays (the fast path for RL and benchmarks).

:class:`BatchAgents` is the vectorised counterpart of ``Navigate-v0``: ``n`` agents share one
world; :meth:`BatchAgents.step` takes one action index per agent (the ``Navigate-v0`` action
set minus dig) and returns ``(obs, reward, done)`` arrays with the same 134-float observation
layout. No Python loop runs over agents or voxels inside a step.
"""

from __future__ import annotations

import math

import numpy as np

from luanti_tune.sim.physics import DT, Bodies
from luanti_tune.sim.scenarios import NAV_WORLD
from luanti_tune.sim.world import World, WorldConfig

_DIRS = np.array([[math.cos(k * math.pi / 4), math.sin(k * math.pi / 4)] for k in range(8)] + [[0.0, 0.0]] * 2)


class BatchAgents:
    """``n`` agents with individual goals in one shared world."""

    def __init__(self, n: int, seed: int = 0, world: WorldConfig = NAV_WORLD, nearby_radius: int = 2) -> None:
        self.n = n
        self.rng = np.random.default_rng([seed, 404])
        self.world = World(world, seed=seed)
        self.radius = nearby_radius
        self.cols = self.world.standable_columns()
        self.heights = self.world.surface_heights()
        self.bodies = Bodies(n)
        self.goals = np.zeros((n, 3))
        self.steps = np.zeros(n, dtype=np.int64)
        self.reset_agents(np.ones(n, dtype=bool))

    def _spawn(self, k: int) -> np.ndarray:
        c = self.cols[self.rng.integers(0, len(self.cols), size=k)]
        return np.stack([c[:, 0].astype(float), self.heights[c[:, 0], c[:, 1]] + 0.5, c[:, 1].astype(float)], axis=1)

    def reset_agents(self, mask: np.ndarray) -> None:
        k = int(mask.sum())
        if k == 0:
            return
        b = self.bodies
        b.pos[mask] = self._spawn(k)
        b.vel[mask] = 0.0
        b.hp[mask] = 20.0
        b.alive[mask] = True
        b.on_ground[mask] = False
        self.goals[mask] = self._spawn(k)
        self.steps[mask] = 0

    def observe(self) -> np.ndarray:
        b = self.bodies
        rel = self.goals - b.pos
        dist = np.hypot(rel[:, 0], rel[:, 2])
        head = np.column_stack([rel / 16, dist / 20, b.vel / 4, b.hp / 20, b.on_ground.astype(float)])
        grid = self.world.nearby_codes(b.cells(), self.radius) / 6.0
        return np.clip(np.concatenate([head, grid], axis=1), -5, 5).astype(np.float32)

    def step(self, actions: np.ndarray, max_steps: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Apply one action per agent (0-7 move, 8 jump, 9 wait); auto-resets finished agents."""
        a = np.clip(np.asarray(actions, dtype=np.int64), 0, 9)
        b = self.bodies
        before = np.hypot(*(self.goals - b.pos)[:, [0, 2]].T)
        b.move = _DIRS[a].copy()
        b.jump = a == 8
        hp_before = b.hp.copy()
        b.step(self.world, DT)
        self.steps += 1
        after = np.hypot(*(self.goals - b.pos)[:, [0, 2]].T)
        reached = (after < 1.0) & (np.abs(self.goals[:, 1] - b.pos[:, 1]) < 1.6)
        reward = before - after - 0.01 - 0.2 * (hp_before - b.hp) + 10.0 * reached - 5.0 * ~b.alive
        done = reached | ~b.alive | (self.steps >= max_steps)
        obs = self.observe()
        self.reset_agents(done)
        return obs, reward, done
