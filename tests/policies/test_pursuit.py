"""Pursuit family: adapter memory/featurize, intercept decoding, rotation equivariance."""

from __future__ import annotations

import math

import numpy as np
import torch

from luanti_tune.policies import pursuit as fam
from luanti_tune.policies.families import ModelPolicy, get_family
from luanti_tune.schemas.agent import Observation


def obs(
    tick: int, target_pos: tuple[float, float], vel: tuple[float, float] = (0.0, 0.0), me=(0.0, 0.0)
) -> Observation:
    return Observation.model_validate(
        {
            "agent": "enemy-1",
            "kind": "pursuit",
            "tick": tick,
            "pos": {"x": me[0], "y": 8, "z": me[1]},
            "entities": [
                {
                    "kind": "player",
                    "name": "alice",
                    "rel": {"x": target_pos[0] - me[0], "y": 0, "z": target_pos[1] - me[1]},
                    "velocity": {"x": vel[0], "y": 0, "z": vel[1]},
                }
            ],
            "targets": ["alice"],
        }
    )


def test_family_is_registered_lazily() -> None:
    spec = get_family("pursuit")
    assert spec.adapter({}).input_names == ("hist", "vel", "threat") and spec.build is not None


def test_featurize_keeps_each_agents_target_track() -> None:
    ad = fam.PursuitAdapter()
    memory: dict = {}
    feats = None
    for k in range(30):  # the target walks +x at 3 nodes/s, sampled every server step
        t = k * fam.TICK_S
        feats = ad.featurize([obs(k, (3.0 * t, 0.0), (3.0, 0.0))], memory)
    assert feats is not None
    expected = -np.arange(ad.history) * ad.hist_dt * 3.0
    np.testing.assert_allclose(feats["hist"][0, :, 0], expected, atol=1e-4)
    np.testing.assert_allclose(feats["hist"][0, :, 1], 0.0, atol=1e-6)
    np.testing.assert_allclose(feats["vel"][0], [3.0, 0.0])
    assert feats["threat"][0, 2] == 1.0  # the deciding agent is the pursuer
    track = ad.tracks_of(memory, "enemy-1")["alice"]
    assert track[-1][0] - track[0][0] <= ad.keep_s + 1e-9  # bounded memory
    # a fresh agent has no history: all positions equal the current one
    fresh = ad.featurize([obs(5, (1.0, 1.0))], {})
    assert np.all(fresh["hist"] == 0)


def test_decode_leads_a_crossing_target_and_waits_without_one() -> None:
    ad = fam.PursuitAdapter()
    o = obs(0, (0.0, 10.0), (4.0, 0.0))
    mean = np.array([[[2.0, 0.0], [4.0, 0.0], [8.0, 0.0]]], dtype=np.float32)  # keeps going +x
    d = ad.decode([o], {"mean": mean, "log_std": np.zeros((1, 3), np.float32)})[0]
    assert d.action.type == "move"
    direction = d.action.args.dir
    assert direction.x > 0.3 and direction.z > 0.3  # aims ahead of the target, not at it
    assert math.isclose(direction.x**2 + direction.z**2, 1.0, rel_tol=1e-5)
    unsure = ad.decode([o], {"mean": mean, "log_std": np.full((1, 3), 2.5, np.float32)})[0]
    assert unsure.confidence < d.confidence
    empty = Observation.model_validate({"agent": "e", "kind": "pursuit", "pos": {"x": 0, "y": 0, "z": 0}})
    w = ad.decode([empty], {"mean": np.zeros((1, 3, 2), np.float32), "log_std": np.zeros((1, 3), np.float32)})[0]
    assert w.action.type == "wait" and w.confidence == 0.0


def test_model_is_rotation_equivariant() -> None:
    torch.manual_seed(0)
    module = fam.build_module(fam.architecture())
    for p in module.parameters():
        torch.nn.init.normal_(p, 0, 0.3)
    x = fam.PursuitAdapter().example_inputs(6)
    ang = 0.7
    rot = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]], dtype=np.float32)
    xr = {"hist": x["hist"] @ rot.T, "vel": x["vel"] @ rot.T, "threat": x["threat"].copy()}
    xr["threat"][:, :2] = x["threat"][:, :2] @ rot.T
    with torch.inference_mode():
        m, s = module(*[torch.from_numpy(x[k]) for k in fam.INPUTS])
        mr, sr = module(*[torch.from_numpy(xr[k]) for k in fam.INPUTS])
    np.testing.assert_allclose(mr.numpy(), m.numpy() @ rot.T, atol=1e-2)  # eps in the heading
    np.testing.assert_allclose(sr.numpy(), s.numpy(), atol=1e-2)


def test_model_policy_drives_an_agent() -> None:
    module = fam.build_module(fam.architecture())  # untrained = constant-velocity prediction
    pol = ModelPolicy(module, fam.PursuitAdapter(), "pursuit", "v0")
    memory: dict = {}
    decisions = [pol.decide([obs(k, (5.0, 5.0 + 0.1 * k), (0.0, 1.1))], memory)[0] for k in range(5)]
    assert all(d.action.type == "move" for d in decisions)
    assert pol.decide([], memory) == []
