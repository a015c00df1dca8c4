"""Episode runners: policies see schema observations; predicting the target's motion pays off."""

from __future__ import annotations

from collections.abc import Sequence

from luanti_tune.policies.base import AgentMemory, Decision, Policy
from luanti_tune.policies.scripted import InterceptPolicy, PurePursuitPolicy, TrajectoryInterceptPolicy
from luanti_tune.schemas.agent import Observation, WaitAction, WaitArgs
from luanti_tune.sim.scenarios import PursuitScenario, run_pursuit_episodes


class Idle(Policy):
    name = "idle"

    def decide(self, observations: Sequence[Observation], memory: AgentMemory) -> list[Decision]:
        return [Decision(WaitAction(agent=o.agent, type="wait", args=WaitArgs(ticks=1))) for o in observations]


def test_pursuit_observation_carries_target() -> None:
    sc = PursuitScenario("strafer", 3)
    obs = sc.observe()
    assert obs.kind == "pursuit" and obs.targets == [sc.player]
    ent = [e for e in obs.entities if e.name == sc.player][0]
    assert ent.kind == "player" and ent.velocity is not None
    true_rel = sc.sim.pos_of(sc.player) - sc.sim.pos_of(sc.enemy)
    assert abs(ent.rel.x - true_rel[0]) < 1e-3 and abs(ent.rel.z - true_rel[2]) < 1e-3


def test_predicting_motion_beats_pure_pursuit() -> None:
    pure = run_pursuit_episodes(PurePursuitPolicy(), n=12, seed=0)
    lead = run_pursuit_episodes(TrajectoryInterceptPolicy(), n=12, seed=0)
    idle = run_pursuit_episodes(Idle(), n=4, seed=0)
    assert idle["catch_rate"] < pure["catch_rate"]
    assert lead["catch_rate"] >= pure["catch_rate"]
    assert lead["mean_time_censored_s"] < 0.95 * pure["mean_time_censored_s"]
    # circling players: chasing from behind rarely pays, cutting them off does
    circ_pure = run_pursuit_episodes(PurePursuitPolicy(), styles=("circler",), n=6, seed=1)
    circ_lead = run_pursuit_episodes(InterceptPolicy(), styles=("circler",), n=6, seed=1)
    assert circ_lead["mean_time_censored_s"] < 0.8 * circ_pure["mean_time_censored_s"]


def test_runner_is_deterministic() -> None:
    a = run_pursuit_episodes(PurePursuitPolicy(), styles=("zigzag", "spiral"), n=4, seed=5)
    b = run_pursuit_episodes(PurePursuitPolicy(), styles=("zigzag", "spiral"), n=4, seed=5)
    assert a == b
