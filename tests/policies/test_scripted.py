"""Scripted baselines: A* on geometry, interception maths, greedy team members."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from luanti_tune.policies.base import AgentMemory, Decision, Policy
from luanti_tune.policies.scripted import (
    AStarNavigationPolicy,
    GreedyTeamPolicy,
    PurePursuitPolicy,
    intercept_time,
)
from luanti_tune.schemas.agent import Observation, WaitAction, WaitArgs
from luanti_tune.schemas.common import NODE_CODES
from luanti_tune.sim.scenarios import run_navigation_episodes, run_team_episodes


class Idle(Policy):
    name = "idle"

    def decide(self, observations: Sequence[Observation], memory: AgentMemory) -> list[Decision]:
        return [Decision(WaitAction(agent=o.agent, type="wait", args=WaitArgs(ticks=1))) for o in observations]


def grid(radius: int) -> np.ndarray:
    side = 2 * radius + 1
    g = np.zeros((side, side, side), dtype=int)  # [y, z, x]
    g[:radius, :, :] = NODE_CODES["solid"]  # floor below the agent's feet level
    return g


def test_astar_goes_around_a_wall() -> None:
    r = 3
    g = grid(r)
    g[r : r + 3, 1:6, r + 1] = NODE_CODES["solid"]  # a tall wall at dx=+1 spanning dz=-2..+2
    step = AStarNavigationPolicy().plan(r, g.ravel().tolist(), (3.0, 0.0, 0.0))
    assert step is not None
    dx, dy, dz = step
    assert dx <= 0 or dz != 0  # never straight into the wall
    assert abs(dz) >= 1 or dx < 0


def test_astar_geometry_only_walks_through_lava_unless_told() -> None:
    r = 3
    g = grid(r)
    g[r - 1, :, r + 1] = NODE_CODES["lava"]  # a lava strip in the floor at dx=+1
    codes = g.ravel().tolist()
    assert AStarNavigationPolicy().plan(r, codes, (3.0, 0.0, 0.0)) == (1, 0, 0)
    careful = AStarNavigationPolicy(avoid_hazards=True).plan(r, codes, (3.0, 0.0, 0.0))
    assert careful != (1, 0, 0)


def test_intercept_time() -> None:
    # target 10 ahead running away at 3, chaser at 4: meets after 10 s
    assert abs(intercept_time(10, 0, 3, 0, 4, 100) - 10.0) < 1e-6
    # a target that cannot be caught gives the cap
    assert intercept_time(10, 0, 5, 0, 4, 2.5) == 2.5
    # coming straight at us: meet in the middle
    assert abs(intercept_time(8, 0, -4, 0, 4, 100) - 1.0) < 1e-6


def test_astar_reaches_goals_far_better_than_idle() -> None:
    astar = run_navigation_episodes(AStarNavigationPolicy(), n=4, seed=3, max_steps=250)
    idle = run_navigation_episodes(Idle(), n=2, seed=3, max_steps=30)
    assert astar["success_rate"] >= 0.5 > idle["success_rate"]
    assert astar["mean_final_distance"] < idle["mean_final_distance"]


def test_greedy_team_collects_items() -> None:
    greedy = run_team_episodes(GreedyTeamPolicy(), n=2, seed=0, max_steps=200)
    idle = run_team_episodes(Idle(), n=1, seed=0, max_steps=20)
    assert greedy["mean_items"] >= 3 > idle["mean_items"]


def test_pure_pursuit_moves_toward_target() -> None:
    obs = Observation.model_validate(
        {
            "agent": "enemy-1",
            "kind": "pursuit",
            "pos": {"x": 0, "y": 8, "z": 0},
            "entities": [{"kind": "player", "name": "alice", "rel": {"x": 3, "y": 0, "z": -4}}],
            "targets": ["alice"],
        }
    )
    d = PurePursuitPolicy().decide([obs], {})[0].action
    assert d.type == "move" and abs(d.args.dir.x - 0.6) < 1e-6 and abs(d.args.dir.z + 0.8) < 1e-6
