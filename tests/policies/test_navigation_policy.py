"""Navigation family: cost model, planner, adapter contract, registry round trip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from luanti_tune.errors import ModelError
from luanti_tune.policies import navigation as nav
from luanti_tune.policies.families import get_family
from luanti_tune.registry import Registry
from luanti_tune.schemas.agent import Observation

R = 3
S = 2 * R + 1


def obs_on(
    codes: np.ndarray, goal: tuple[float, float, float], *, pos: tuple[float, float, float] = (0.0, 0.5, 0.0), **kw: Any
) -> Observation:
    return Observation.model_validate(
        {
            "agent": kw.pop("agent", "nav-1"),
            "kind": "navigation",
            "pos": {"x": pos[0], "y": pos[1], "z": pos[2]},
            "goal": {"x": goal[0], "y": goal[1], "z": goal[2]},
            "nearby": {"radius": R, "codes": [int(c) for c in codes.ravel()]},
            **kw,
        }
    )


def flat() -> np.ndarray:
    """Codes (y, z, x): ground below the agent's feet level (grid y index R), air above."""
    g = np.full((S, S, S), nav.AIR, dtype=np.int8)
    g[:R] = nav.SOLID
    return g


def test_window_training_path_equals_full_grid_forward() -> None:
    torch.manual_seed(0)
    model = nav.build_navigation_model({})
    rng = np.random.default_rng(1)
    codes = rng.integers(0, nav.N_CODES, size=(S, S, S)).astype(np.int8)
    exp = (rng.random((2, S, S, S)) < 0.2).astype(np.float16)
    offsets = np.array([(dy, dz, dx) for dy in (-1, 0, 1) for dz in (-1, 0, 1) for dx in (-1, 0, 1)])
    wc, we = nav.cell_windows(codes, exp, offsets)
    grid = np.concatenate([nav.one_hot(codes), exp.astype(np.float32)])[None]
    with torch.no_grad():
        full, _ = model(torch.from_numpy(grid), torch.zeros(1, S, S))
        win = model.windows(torch.from_numpy(wc.astype(np.float32)), torch.from_numpy(we.astype(np.float32)))
    expect = np.stack([full[0, :, R + dy, R + dz, R + dx].numpy() for dy, dz, dx in offsets])
    np.testing.assert_allclose(win.numpy(), expect, rtol=1e-5, atol=1e-6)


def test_stand_levels_follow_the_body_rules() -> None:
    g = flat()
    g[R, R, R + 1] = nav.SOLID  # a one-node step in +x: stand on top of it
    g[R : R + 2, R, R - 1] = nav.SOLID  # a two-node wall in -x: stand on top (not reachable in one step)
    g[R - 2 : R, R + 1, R] = nav.WATER  # a 2-deep pool in +z: the surface is not ground
    g[R - 1, R + 2, R] = nav.LAVA  # a 1-deep lava pool: one wades in it
    lv = nav.stand_levels(g[None])[0]
    assert lv[R, R] == R and lv[R, R + 1] == R + 1 and lv[R, R - 1] == R + 2
    assert lv[R + 1, R] == R - 2  # bottom of the pool (ground below), not its surface
    assert lv[R + 2, R] == R - 1
    # the planner may step up one node but not two
    cost = nav.geometry_cell_cost(lv[None])
    goal_x = nav.plan_first_steps(lv[None], cost, np.array([[R, 0.0, 0.0]]))
    goal_mx = nav.plan_first_steps(lv[None], cost, np.array([[-1, 0.0, 0.0]]))
    assert goal_x.step[0].tolist() == [1, 0]
    assert goal_mx.step[0].tolist() != [-1, 0]


def test_learned_costs_detour_around_lava_geometry_walks_through() -> None:
    g = flat()
    g[R - 1, 1:6, R + 1] = nav.LAVA  # a lava strip across the direct line in +x (wading depth)
    lv = nav.stand_levels(g[None])
    lava_cols = g[R - 1] == nav.LAVA
    learned = nav.geometry_cell_cost(lv) + np.where(lava_cols, 6.0, 0.0)[None]
    o = obs_on(g, goal=(3.0, 0.5, 0.0))
    walk = nav.plan_actions([o], g[None], nav.geometry_cell_cost(lv), lv)[0].action
    avoid = nav.plan_actions([o], g[None], learned, lv)[0].action
    assert walk.type == avoid.type == "move"
    assert walk.args.dir.x > 0.99  # straight into the lava
    assert abs(avoid.args.dir.z) > 0.5  # heads for the gap around the strip


def test_adapter_contract_and_goal_handling() -> None:
    spec = get_family("navigation")
    adapter = spec.adapter(nav.DEFAULT_ARCHITECTURE)
    model = spec.build(nav.DEFAULT_ARCHITECTURE)
    g = flat()
    batch = [obs_on(g, (5.0, 0.5, 2.0), agent=f"a{i}") for i in range(3)] + [obs_on(g, (0.2, 0.5, 0.1), agent="home")]
    memory: dict[str, dict[str, Any]] = {}
    feats = adapter.featurize(batch, memory)
    assert set(feats) == set(adapter.input_names)
    assert feats["grid"].shape == (4, nav.IN_CHANNELS, S, S, S) and feats["grid"].dtype == np.float32
    assert feats["visits"].shape == (4, S, S)
    with torch.no_grad():
        out = model(*[torch.from_numpy(feats[n]) for n in adapter.input_names])
    outputs = {n: o.numpy() for n, o in zip(adapter.output_names, out, strict=True)}
    assert outputs["cells"].shape == (4, 4, S, S, S) and np.isfinite(outputs["cells"]).all()
    decisions = adapter.decode(batch, outputs)
    assert [d.action.agent for d in decisions] == ["a0", "a1", "a2", "home"]
    assert all(d.action.type == "move" for d in decisions[:3]) and decisions[3].action.type == "wait"
    assert all(0.0 < d.confidence <= 1.0 for d in decisions)
    assert adapter.decode([], {"cells": outputs["cells"][:0], "penalty": outputs["penalty"][:0]}) == []


def test_experience_map_marks_failed_moves_even_without_recorded_decisions() -> None:
    """On the engine path nobody calls note_decision: the yaw of the body tells where it went."""
    g = flat()
    mem: dict[str, Any] = {}
    nav.update_experience(mem, obs_on(g, (5.0, 0.5, 0.0), tick=1))
    blocked = obs_on(
        g, (5.0, 0.5, 0.0), tick=2, yaw=-np.pi / 2, last_result={"action": "move", "ok": False, "reason": "wall"}
    )  # yaw -pi/2 looks along +x
    nav.update_experience(mem, blocked)
    assert mem["blocked"] == {(1, 1, 0): 1.0}
    ch = nav.experience_channels(mem, (0, 1, 0), R)
    assert ch[0, R, R, R + 1] > 0 and ch[0].sum() == ch[0, R, R, R + 1]


def test_registry_save_load_gives_identical_predictions_and_refuses_tampering(tmp_path: Path) -> None:
    torch.manual_seed(3)
    arch = dict(nav.DEFAULT_ARCHITECTURE)
    model = nav.build_navigation_model(arch)
    with torch.no_grad():  # not the init distribution: make the heads matter
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    reg = Registry(tmp_path / "models")
    version = reg.save("navigation", module=model, architecture=arch, metrics={"val": {"loss": 1.0}})
    loaded = reg.load("navigation", version)
    from luanti_tune.sim.scenarios import NavigationScenario

    sc = NavigationScenario(5)
    observations = [sc.observe()]
    for o in (observations, observations * 3):
        feats = nav.NavigationAdapter(arch).featurize(o, {})
        a = nav.NavigationPolicy.from_module(model, arch).forward(feats)
        b = loaded.forward(feats)
        for k in ("cells", "penalty"):
            np.testing.assert_array_equal(a[k], b[k])
    policy = nav.NavigationPolicy.from_module(model, arch)
    d1 = policy.decide(observations, {})
    d2 = loaded.decide(observations, {})
    assert [d.action for d in d1] == [d.action for d in d2]
    # the manifest alone rebuilds it: architecture is all that is needed
    assert loaded.manifest["architecture"]["kind"] == "navcost-cnn3d"
    weights = tmp_path / "models" / "navigation" / version / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        reg.load("navigation", version)


def test_onnx_export_matches_pytorch(tmp_path: Path) -> None:
    from luanti_tune.registry.export import export_onnx

    torch.manual_seed(4)
    reg = Registry(tmp_path / "models")
    version = reg.save("navigation", module=nav.build_navigation_model({}), architecture=nav.DEFAULT_ARCHITECTURE)
    report = export_onnx(reg.load("navigation", version), tmp_path / "nav.onnx")
    assert report["max_abs_diff"] is not None and report["max_abs_diff"] < 1e-4
