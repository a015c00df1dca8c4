"""The engine over the real model registry and the real pursuit family: promote, swap, rollback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from toyfamily import obs_dict

from luanti_tune.inference.engine import InferenceEngine, actions_match, same_actions
from luanti_tune.inference.registry_source import RegistrySource
from luanti_tune.inference.runtime import TorchRunner
from luanti_tune.policies.pursuit import architecture, build_module
from luanti_tune.registry import Registry
from luanti_tune.schemas.agent import Observation


def steps(n_agents: int, n_steps: int, seed: int) -> list[list[Observation]]:
    """Observations of the same agents over consecutive ticks (targets moving), for memory-based features."""
    rng = np.random.default_rng(seed)
    base = [obs_dict(i, rng) for i in range(n_agents)]
    out = []
    for t in range(n_steps):
        batch = []
        for o in base:
            e = o["entities"][0]
            rel = {k: e["rel"][k] + 0.3 * t * e["velocity"][k] for k in "xyz"}
            batch.append(Observation.model_validate({**o, "tick": 100 + 2 * t, "entities": [{**e, "rel": rel}]}))
        out.append(batch)
    return out


def save(reg: Registry, seed: int) -> str:
    torch.manual_seed(seed)
    arch = architecture(hidden=32)
    return reg.save("pursuit", module=build_module(arch), architecture=arch, name="pursuit-mlp")


def test_registry_champion_is_served_swapped_and_rolled_back(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    v1, v2 = save(reg, 1), save(reg, 2)
    reg.promote("pursuit", v1, force=True)
    engine = InferenceEngine(RegistrySource(reg), fallbacks={})
    served = engine.models.by_family["pursuit"]
    assert served.ref == ("pursuit-mlp", v1) and served.report.runtime == "onnx", served.report

    # engine == the registry model's own offline prediction, step after step (per-agent tracks)
    offline = reg.load("pursuit", "champion")
    memory: dict = {}
    for obs in steps(64, 4, seed=1):
        got = engine.decide(obs)
        want = offline.decide(obs, memory)
        assert not got.errors and not got.fallback
        # ONNX vs eager float rounding (~1e-7) is the only allowed difference
        assert actions_match(got.actions, [d.action for d in want], tol=1e-5)

    # ONNX Runtime and PyTorch pick the same actions for the real family on a test set
    adapter = offline.adapter
    test = steps(500, 3, seed=7)
    mem: dict = {}
    for obs in test:
        feats = adapter.featurize(obs, mem)
        ref = TorchRunner(offline.module, adapter.input_names, adapter.output_names)(feats)
        got = served.runner(feats)
        assert same_actions(adapter.decode(obs, ref), adapter.decode(obs, got))

    assert engine.refresh() is False  # nothing changed: cheap no-op
    reg.promote("pursuit", v2, force=True)
    assert engine.refresh() is True
    assert engine.decide(steps(3, 1, seed=2)[0]).main_ref() == ("pursuit-mlp", v2)
    prepared = engine.models.by_family["pursuit"]
    reg.rollback("pursuit", reason="test")
    assert engine.refresh() is True
    back = engine.models.by_family["pursuit"]
    assert back.ref == ("pursuit-mlp", v1) and back is served  # recently served: swapped back without re-export
    assert prepared is not back


def test_unloadable_champion_keeps_serving_the_previous_one(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    v1, v2 = save(reg, 1), save(reg, 2)
    reg.promote("pursuit", v1, force=True)
    engine = InferenceEngine(RegistrySource(reg), fallbacks={})
    reg.promote("pursuit", v2, force=True)
    (tmp_path / "models" / "pursuit" / v2 / "weights.safetensors").write_bytes(b"tampered")
    engine.refresh()
    assert engine.models.by_family["pursuit"].version == v1
    assert "sha256" in engine.load_errors["pursuit"]
    obs = steps(5, 1, seed=3)[0]
    assert engine.decide(obs).main_ref() == ("pursuit-mlp", v1)


def test_no_champion_means_scripted_fallback(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    save(reg, 1)  # a candidate only
    engine = InferenceEngine(RegistrySource(reg))
    r = engine.decide(steps(10, 1, seed=4)[0])
    assert set(r.fallback.values()) == {"no_model"} and r.main_ref()[0].startswith("scripted:")


def test_every_built_in_action_family_is_served_through_checked_onnx(tmp_path: Path) -> None:
    import importlib

    from luanti_tune.inference.synthetic import synthetic_observations
    from luanti_tune.policies.families import get_family

    reg = Registry(tmp_path / "models")
    families = ("pursuit", "navigation", "team")
    for fam in families:
        torch.manual_seed(0)
        mod = importlib.import_module(f"luanti_tune.policies.{fam}")
        arch = mod.architecture() if hasattr(mod, "architecture") else {}
        reg.promote(fam, reg.save(fam, module=get_family(fam).build(arch), architecture=arch), force=True)
    engine = InferenceEngine(RegistrySource(reg))
    assert not engine.load_errors
    for fam in families:
        served = engine.models.by_family[fam]
        assert served.report.runtime == "onnx", (fam, served.report)
        obs = synthetic_observations(fam, 40, np.random.default_rng(5), served.adapter)
        assert obs, fam
        r = engine.decide(obs)
        assert not r.errors and set(r.refs) == {served.ref}, (fam, r.fallback, r.errors)
        # ONNX decisions equal eager PyTorch decisions of the registry's own model
        m = reg.load(fam, "champion")
        assert actions_match(r.actions, [d.action for d in m.decide(obs, {})], tol=1e-4), fam


def test_champion_exported_in_a_child_process_serves_the_same_actions(tmp_path: Path) -> None:
    """``export_process``: the ONNX graphs come from a child process (no GIL stalls in the service
    during a swap) and are checked and served exactly like an export made in the engine's process."""
    from luanti_tune.inference.engine import EngineConfig

    reg = Registry(tmp_path / "models")
    reg.promote("pursuit", save(reg, 5), force=True)
    here = InferenceEngine(RegistrySource(reg), fallbacks={})
    child = InferenceEngine(RegistrySource(reg), config=EngineConfig(export_process=True), fallbacks={})
    a, b = here.models.by_family["pursuit"], child.models.by_family["pursuit"]
    assert a.report.runtime == b.report.runtime == "onnx", (a.report, b.report)
    # the child exported the split's core too: both serve ONNX Runtime on the MLP alone
    assert a.report.extra.get("graph") == b.report.extra.get("graph") == "split", (a.report, b.report)
    for batch in steps(60, 4, seed=9):
        assert actions_match(here.decide(batch).actions, child.decide(batch).actions, tol=0.0)
    # a version the child cannot load (files gone) -> exported in the engine's process instead
    v2 = save(reg, 6)
    reg.promote("pursuit", v2, force=True)
    source = RegistrySource(reg)
    cand = source.load("pursuit")
    assert cand is not None
    cand.meta["registry_root"] = str(tmp_path / "missing")
    assert child._export_elsewhere(cand, [a.adapter.example_inputs(4)], True) is None


def test_agents_chasing_a_player_with_their_own_champion_are_decided_by_it(tmp_path: Path) -> None:
    """``pursuit@alice`` decides for the agents whose target is alice, the population champion for
    the rest, in one batch; alice's promotions and rollbacks are served like any champion's."""
    reg = Registry(tmp_path / "models")
    pop = save(reg, 1)
    reg.promote("pursuit", pop, force=True)
    torch.manual_seed(2)
    arch = architecture(hidden=32)
    alice = reg.save("pursuit@alice", module=build_module(arch), architecture=arch, name="pursuit@alice")
    reg.promote("pursuit@alice", alice, force=True)
    engine = InferenceEngine(RegistrySource(reg), fallbacks={})
    assert set(engine.models.by_player["pursuit"]) == {"alice"}

    rng = np.random.default_rng(3)
    rows = []
    for i in range(40):
        o = obs_dict(i, rng)
        name = "alice" if i % 3 == 0 else f"bob{i}"
        o["entities"][0]["name"] = name
        o["targets"] = [name]
        rows.append(Observation.model_validate(o))
    got = engine.decide(rows)
    assert not got.errors and not got.fallback
    assert [r[0] for r in got.refs] == ["pursuit@alice" if i % 3 == 0 else "pursuit-mlp" for i in range(40)]
    # each agent gets exactly what its model decides offline
    for family, idx in (("pursuit@alice", range(0, 40, 3)), ("pursuit", [i for i in range(40) if i % 3])):
        m = reg.load(family, "champion")
        want = m.decide([rows[i] for i in idx], {})
        assert actions_match([got.actions[i] for i in idx], [d.action for d in want], tol=1e-5)

    # a new champion of alice's is served at the next refresh; a rollback brings the old one back
    torch.manual_seed(4)
    alice2 = reg.save("pursuit@alice", module=build_module(arch), architecture=arch, name="pursuit@alice")
    reg.promote("pursuit@alice", alice2, force=True)
    engine.refresh()
    assert {r for r in engine.decide(rows).refs if r[0] == "pursuit@alice"} == {("pursuit@alice", alice2)}
    reg.rollback("pursuit@alice")
    engine.refresh()
    assert {r for r in engine.decide(rows).refs if r[0] == "pursuit@alice"} == {("pursuit@alice", alice)}
