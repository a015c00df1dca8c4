"""Learning is real: fine-tuning on a style absent from base training lowers prediction error
and makes the pursuit enemy catch such players faster than pure pursuit and the base model."""

from __future__ import annotations

from pathlib import Path

import pytest

from luanti_tune.datasets.pursuit import PursuitSpec, build_from_store
from luanti_tune.policies import pursuit as fam
from luanti_tune.policies.families import ModelPolicy
from luanti_tune.policies.scripted import PurePursuitPolicy
from luanti_tune.registry import Registry
from luanti_tune.sim.session import to_store
from luanti_tune.sim.styles import HELDOUT_STYLES, TRAIN_STYLES
from luanti_tune.store import open_store
from luanti_tune.trainers import pursuit as tp
from luanti_tune.trainers.common import CycleContext, FitConfig, guarded_cycle


@pytest.fixture()
def heldout_store(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = open_store(f"sqlite:///{tmp_path / 'events.db'}")
    to_store(tp.simulated_events(HELDOUT_STYLES, minutes=1.0, seed=50, sessions=3), store)
    yield store
    store.close()


def test_finetuning_on_unseen_styles_beats_base_and_pure_pursuit(registry: Registry, heldout_store) -> None:  # type: ignore[no-untyped-def]
    base = registry.load("pursuit", "champion")
    assert not set(HELDOUT_STYLES) & set(base.manifest["dataset"]["simulated"]["styles"])
    assert set(base.manifest["dataset"]["simulated"]["styles"]) == set(TRAIN_STYLES)
    # the gate knows nothing of styles: it judges on the recorded players' held-out behaviour and
    # guards the scripted population (its default), never the styles hidden in the data
    opts = tp.CycleOptions(
        fit=FitConfig(steps=400, lr=2e-3, replay_fraction=0.3),
        sim=tp.SimEvalConfig(episodes=6, max_steps=250, seed=11),
        adapt_players=0,
    )
    ctx = CycleContext(heldout_store, registry, 0, heldout_store.max_id(), seed=0, options={"pursuit": opts})
    result = guarded_cycle("pursuit", ctx, tp.run_cycle)
    assert result.status == "promoted", result.reason
    tuned = registry.load("pursuit", "champion")
    assert tuned.version == result.version and tuned.manifest["parent"] == base.version
    gate = tuned.manifest["gate"]
    assert gate["passed"] and {c["name"] for c in gate["checks"]} >= {
        "heldout_error",
        "replay_time",
        "sim_time",
        "candidate_finite",
    }

    # prediction error on held-out episodes of the unseen styles (never trained on)
    val = build_from_store(heldout_store, PursuitSpec.from_arch(tuned.manifest["architecture"])).val()
    assert len(val["hist"]) > 100
    err_base = fam.evaluate(base.module, val)["ade"]
    err_tuned = fam.evaluate(tuned.module, val)["ade"]
    assert err_tuned < 0.93 * err_base, (err_tuned, err_base)

    # pursuit episodes against players of the unseen styles (fixed seeds, not the gate's)
    cfg = tp.SimEvalConfig(styles=HELDOUT_STYLES, episodes=12, max_steps=300, seed=7)
    pure = tp.simulate(PurePursuitPolicy(), cfg)
    before = tp.simulate(ModelPolicy(base.module, base.adapter), cfg)
    after = tp.simulate(ModelPolicy(tuned.module, tuned.adapter), cfg)
    assert after["catch_rate"] >= max(pure["catch_rate"], before["catch_rate"])
    assert after["mean_time"] < pure["mean_time"], (after, pure)
    assert after["mean_time"] < before["mean_time"], (after, before)
