"""Invalid actions never raise: they come back as agent.result with a reason, and the step goes on."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from luanti_tune.schemas.event import parse_event
from luanti_tune.sim.core import Simulation
from luanti_tune.sim.styles import get_style
from luanti_tune.sim.world import AIR, STONE, WALL, World, WorldConfig

FLAT = WorldConfig(size_x=24, size_y=16, size_z=24, terrain="flat", base_height=3, river=False)
H = FLAT.base_height


@pytest.fixture()
def sim() -> Simulation:
    world = World(FLAT, seed=0)
    world.nodes[10, H + 1 : H + 4, :] = STONE  # a wall at x=10
    s = Simulation(world, seed=0, source="t")
    s.add_agent("a1", "navigation", pos=np.array([9.0, H + 0.5, 12.0]))
    s.add_player("p1", get_style("camper"), pos=np.array([4.0, H + 0.5, 4.0]))
    s.drain_events()
    return s


def results(s: Simulation) -> list[dict[str, Any]]:
    return [e for e in s.drain_events() if e["type"] == "agent.result"]


CASES = [
    ({"agent": "a1", "type": "fly", "args": {}}, "invalid action"),
    ({"agent": "a1", "type": "move", "args": {"dir": {"x": 1, "y": 0, "z": 0}, "speed": 3}}, "args.speed"),
    ({"agent": "a1", "type": "move", "args": {"dir": {"x": "east", "y": 0, "z": 0}}}, "dir.x"),
    ({"agent": "a1", "type": "dig", "args": {"pos": {"x": 9, "y": H + 1, "z": 12}}}, "air"),
    ({"agent": "a1", "type": "dig", "args": {"pos": {"x": 0, "y": H + 1, "z": 12}}}, "out of reach"),
    ({"agent": "a1", "type": "move", "args": {"dir": {"x": 1, "y": 0, "z": 0}}}, "wall"),
    (
        {"agent": "a1", "type": "place", "args": {"pos": {"x": 8, "y": H + 1, "z": 12}, "item": "default:gold"}},
        "inventory",
    ),
    ({"agent": "a1", "type": "attack", "args": {"target": "p1"}}, "out of range"),
    ({"agent": "a1", "type": "attack", "args": {"target": "nobody"}}, "unknown target"),
    ({"agent": "ghost", "type": "wait", "args": {"ticks": 1}}, "unknown agent"),
    ({"agent": "a1", "type": "chat", "args": {"message": "hi", "to": "nobody"}}, "unknown recipient"),
]


@pytest.mark.parametrize(("action", "why"), CASES)
def test_invalid_action_gives_reason_and_step_continues(sim: Simulation, action: dict[str, Any], why: str) -> None:
    res = sim.apply_action(action)
    assert not res.ok and res.reason and why in res.reason
    evs = results(sim)
    assert len(evs) == 1 and evs[0]["payload"]["ok"] is False and why in evs[0]["payload"]["reason"]
    parse_event(evs[0])
    tick = sim.tick
    sim.step()
    assert sim.tick == tick + 1
    if action["agent"] == "a1":
        assert sim.observe("a1").last_result is not None


def test_valid_dig_and_place_change_the_world_and_emit(sim: Simulation) -> None:
    res = sim.apply_action({"agent": "a1", "type": "dig", "args": {"pos": {"x": 10, "y": H + 1, "z": 12}}})
    assert res.ok and sim.world.nodes[10, H + 1, 12] == AIR
    assert sim.actors["a1"].inventory["default:stone"] == 1
    res = sim.apply_action(
        {"agent": "a1", "type": "place", "args": {"pos": {"x": 8, "y": H + 1, "z": 12}, "item": "default:wood"}}
    )
    assert res.ok and sim.world.nodes[8, H + 1, 12] != AIR
    types = [e["type"] for e in sim.drain_events()]
    assert types.count("node.dig") == 1 and types.count("node.place") == 1 and types.count("agent.act") == 2
    # walls of the map cannot be dug
    sim.bodies.pos[sim.actors["a1"].idx] = [1.5, H + 0.5, 12.0]
    res = sim.apply_action({"agent": "a1", "type": "dig", "args": {"pos": {"x": 0, "y": H + 1, "z": 12}}})
    assert not res.ok and "not diggable" in (res.reason or "")
    assert sim.world.nodes[0, H + 1, 12] == WALL


def test_env_invalid_indices_and_digging_air_do_not_raise() -> None:
    from luanti_tune.sim.envs import NavigateEnv, PursuitEnv

    env = NavigateEnv(terrain_changes=False)
    env.reset(seed=1)
    for bad in (99, -1, "x", None):
        _, _, _, _, info = env.step(bad)
        assert info["result"]["ok"] is False and info["result"]["reason"]
    found_air = False
    for _ in range(5):
        _, _, _, _, info = env.step(10)  # dig ahead: usually air at feet level
        if not info["result"]["ok"]:
            found_air = found_air or "air" in info["result"]["reason"]
    assert found_air
    penv = PursuitEnv()
    penv.reset(seed=1)
    _, _, _, _, info = penv.step(np.array([np.nan, 0.0]))
    assert info["result"]["ok"] is False and "dir" in info["result"]["reason"]
