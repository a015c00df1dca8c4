"""Team family: shared blackboard, target splitting, bookkeeping, registry round trip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from luanti_tune.policies import team as fam
from luanti_tune.policies.families import ModelPolicy, get_family
from luanti_tune.schemas.agent import Observation


def obs(
    agent: str,
    pos: tuple[float, float],
    entities: list[dict[str, Any]],
    team: str = "blue",
    tick: int = 10,
    targets: list[str] | None = None,
) -> Observation:
    return Observation.model_validate(
        {
            "agent": agent,
            "kind": "team",
            "tick": tick,
            "team": team,
            "pos": {"x": pos[0], "y": 5, "z": pos[1]},
            "entities": entities,
            "targets": targets or [],
        }
    )


def item(rel: tuple[float, float]) -> dict[str, Any]:
    return {"kind": "item", "name": "default:mese_crystal", "rel": {"x": rel[0], "y": 0, "z": rel[1]}}


def player(name: str, rel: tuple[float, float], vel: tuple[float, float] = (0, 0)) -> dict[str, Any]:
    return {
        "kind": "player",
        "name": name,
        "rel": {"x": rel[0], "y": 0, "z": rel[1]},
        "velocity": {"x": vel[0], "y": 0, "z": vel[1]},
    }


@pytest.fixture(scope="module")
def policy() -> ModelPolicy:
    import torch

    torch.manual_seed(0)
    arch = fam.architecture()
    return ModelPolicy(fam.build_module(arch), fam.TeamAdapter(arch), "team")


def test_teammates_share_what_they_see() -> None:
    adapter = fam.TeamAdapter()
    memory: dict[str, dict[str, Any]] = {}
    # a sees an item 5 nodes east of itself (x=15); b, 20 nodes away, sees nothing
    a = obs("a", (10, 0), [item((5, 0))])
    b = obs("b", (30, 0), [])
    loner = obs("c", (30, 0), [], team="red")
    out, teams = adapter.featurize_with_columns([a, b, loner], memory)
    assert out["mask"][0].sum() == 1 and out["mask"][1].sum() == 1  # b knows the item through a
    assert out["mask"][2].sum() == 0  # another team does not
    # b's features place the item 15 nodes west of b
    assert out["pair"][1, 0, 0] * fam.POS_SCALE == pytest.approx(-15.0)
    # the blackboard remembers it on the next step although nobody sees it now (far from both)
    out2 = adapter.featurize([obs("a", (40, 0), [], tick=11), obs("b", (30, 0), [], tick=11)], memory)
    assert out2["mask"][0].sum() == 1


def test_collected_item_disappears_from_the_blackboard() -> None:
    adapter = fam.TeamAdapter()
    memory: dict[str, dict[str, Any]] = {}
    adapter.featurize([obs("a", (10, 0), [item((3, 0))]), obs("b", (0, 0), [])], memory)
    # a now stands next to where the item was and does not see it: picked up
    out = adapter.featurize([obs("a", (12, 0), [], tick=11), obs("b", (0, 0), [], tick=11)], memory)
    assert out["mask"].sum() == 0


def test_caught_player_leaves_the_target_list() -> None:
    adapter = fam.TeamAdapter()
    memory: dict[str, dict[str, Any]] = {}
    adapter.featurize([obs("a", (0, 0), [player("p1", (20, 0))], targets=["p1", "p2"])], memory)
    out = adapter.featurize([obs("a", (0, 0), [], tick=11, targets=["p2"])], memory)
    assert out["mask"].sum() == 0


def test_team_splits_targets_where_greedy_members_pile_up(policy: ModelPolicy) -> None:
    # items at x=10 and x=-6; both agents are closer to the east one, b only a little
    a = obs("a", (4, 0), [item((6, 0)), item((-10, 0))])
    b = obs("b", (3, 0), [item((7, 0)), item((-9, 0))])
    decisions = policy.decide([a, b], {})
    dir_a = decisions[0].action.args.dir.x  # type: ignore[union-attr]
    dir_b = decisions[1].action.args.dir.x  # type: ignore[union-attr]
    assert dir_a > 0.9 and dir_b < -0.9  # a takes the east item, b the west one

    greedy = ModelPolicy(policy.module, fam.TeamAdapter(policy.adapter.arch, coordinate=False), "indep")  # type: ignore[attr-defined]
    g = greedy.decide([a, b], {})
    assert g[0].action.args.dir.x > 0.9 and g[1].action.args.dir.x > 0.9  # type: ignore[union-attr]


def test_two_agents_two_fleeing_players_one_each(policy: ModelPolicy) -> None:
    # p1 is nearer to both agents, but p2 runs towards b: the team sends a to p1 and b to p2
    a = obs("a", (0, 0), [player("p1", (6, 0)), player("p2", (-14, 0), (4, 0))], targets=["p1", "p2"])
    b = obs("b", (-2, 0), [player("p1", (8, 0)), player("p2", (-12, 0), (4, 0))], targets=["p1", "p2"])
    d = policy.decide([a, b], {})
    assert d[0].action.args.dir.x > 0.5  # type: ignore[union-attr]
    assert d[1].action.args.dir.x < -0.5  # type: ignore[union-attr]
    assert {policy.adapter.last_assignment["a"], policy.adapter.last_assignment["b"]} == {"p1", "p2"}  # type: ignore[attr-defined]


def test_attacks_an_assigned_player_in_reach(policy: ModelPolicy) -> None:
    a = obs("a", (0, 0), [player("p1", (1.0, 0.5))], targets=["p1"])
    d = policy.decide([a], {})
    assert d[0].action.type == "attack" and d[0].action.args.target == "p1"  # type: ignore[union-attr]


def test_nothing_to_do_waits_with_zero_confidence(policy: ModelPolicy) -> None:
    d = policy.decide([obs("a", (0, 0), [])], {})
    assert d[0].action.type == "wait" and d[0].confidence == 0.0


def test_assignment_minimises_completion_time() -> None:
    cost = np.array([[1.0, 2.0], [1.1, 10.0]])
    assert fam.assign(cost).tolist() == [1, 0]
    assert fam.greedy_assign(cost).tolist() == [0, 0]
    three = np.array([[1.0], [2.0], [3.0]])  # more agents than targets: all of them go
    assert fam.assign(three).tolist() == [0, 0, 0]
    valid = np.array([[False, True], [False, False]])
    assert fam.assign(cost, valid).tolist() == [1, -1]


def test_family_is_registered_and_round_trips_through_the_registry(tmp_path: Path, policy: ModelPolicy) -> None:
    from luanti_tune.registry import Registry

    spec = get_family("team")
    assert spec.name == "team"
    reg = Registry(tmp_path / "models")
    arch = fam.architecture()
    version = reg.save(
        "team",
        module=policy.module,
        architecture=arch,
        parent=None,
        dataset={},
        metrics={},
        gate={"passed": True},
        training={},
    )
    loaded = reg.load("team", version)
    adapter = fam.TeamAdapter(arch)
    feats = adapter.example_inputs(6)
    import torch

    with torch.inference_mode():
        before = policy.module(*(torch.from_numpy(feats[n]) for n in adapter.input_names))
        after = loaded.module(*(torch.from_numpy(feats[n]) for n in adapter.input_names))
    for x, y in zip(before, after, strict=True):
        assert torch.equal(x, y)


def test_hindsight_label_of_a_fleeing_target() -> None:
    t = np.arange(0, 20, 0.1)
    track = np.stack([10 + 2.0 * t, np.zeros_like(t)], axis=1)  # runs away at 2 nodes/s
    tau, disp, reached = fam.hindsight_labels(np.array([0.0, 0.0]), 0.0, t, track, 4.0, 1.0, 12.0)
    assert reached and tau == pytest.approx(4.5, abs=0.1)  # 10 + 2*tau = 4*tau + 1
    assert disp[0] == pytest.approx(2.0 * tau, abs=0.05)
    tau, _, reached = fam.hindsight_labels(np.array([0.0, 0.0]), 0.0, t, track, 1.0, 1.0, 12.0)
    assert not reached and tau == pytest.approx(12.0, abs=0.1)  # too slow: censored at the horizon
