"""Navigation learns the terrain: fine-tuned on experience of a changing, hazardous world it
predicts held-out experience better than the base model and, after terrain changes, reaches
goals more often with less damage than geometry-only A* (fixed seeds, simulator episodes)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

from luanti_tune.datasets.navigation import NavigationSpec, build_from_events
from luanti_tune.policies import navigation as nav
from luanti_tune.policies.scripted import AStarNavigationPolicy
from luanti_tune.registry import Registry
from luanti_tune.sim.session import to_store
from luanti_tune.store import open_store
from luanti_tune.trainers import navigation as tn
from luanti_tune.trainers.common import CycleContext, FitConfig, guarded_cycle

CALM = tn.ExperienceConfig(world="calm", terrain_changes=False, episodes=2, agents=4, steps=150, seed=0)
LIVE = tn.ExperienceConfig(world="live", terrain_changes=True, episodes=4, agents=4, steps=200, seed=1)
HELDOUT = tn.ExperienceConfig(world="live", terrain_changes=True, episodes=2, agents=4, steps=150, seed=2)


@pytest.fixture(scope="module")
def cycle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Base pre-trained on calm-world experience, then one worker cycle on live-world experience."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("nav")
    reg = Registry(root / "models")
    store = open_store(f"sqlite:///{root / 'events.db'}")
    try:
        calm = tn.simulated_events(CALM)
        to_store(calm, store)
        base_fit = FitConfig(steps=250, batch_size=128, lr=3e-3, replay_fraction=0.0)
        base_version = tn.bootstrap_base(reg, seed=0, experience=CALM, cfg=base_fit, events=calm)
        calm_until = store.max_id()
        to_store(tn.simulated_events(LIVE), store)
        opts = tn.CycleOptions(
            fit=FitConfig(steps=300, batch_size=128, lr=2e-3, replay_fraction=0.3),
            sim=tn.SimEvalConfig(episodes=3, seed=500),
        )
        ctx = CycleContext(store, reg, calm_until, store.max_id(), seed=0, options={"navigation": opts})
        result = guarded_cycle("navigation", ctx, tn.run_cycle)
        yield {"registry": reg, "store": store, "base": base_version, "result": result, "calm_until": calm_until}
    finally:
        store.close()
        torch.set_num_threads(threads)


def test_cycle_fine_tunes_from_champion_with_replay_and_promotes(cycle: dict[str, Any]) -> None:
    reg: Registry = cycle["registry"]
    result = cycle["result"]
    assert result.status == "promoted", result.reason
    tuned = reg.load("navigation", "champion")
    assert tuned.version == result.version and tuned.manifest["parent"] == cycle["base"]
    gate = tuned.manifest["gate"]
    assert gate["passed"] and {c["name"] for c in gate["checks"]} >= {"candidate_finite", "heldout_loss", "sim_cost"}
    assert gate["figures"]["candidate"]["loss"] < gate["figures"]["champion"]["loss"]
    assert {"candidate", "champion", "geometry_astar"} <= set(gate["figures"]["sim"])
    ds = tuned.manifest["dataset"]
    assert ds["new"]["event_range"]["after_id"] == cycle["calm_until"]
    assert ds["replay"]["counts"]["samples"] > 0 and tuned.manifest["training"]["replay_fraction"] == 0.3


def test_fine_tuned_beats_base_on_heldout_experience(cycle: dict[str, Any]) -> None:
    reg: Registry = cycle["registry"]
    base = reg.load("navigation", cycle["base"])
    tuned = reg.load("navigation", "champion")
    rows = [{**ev, "_id": i + 1} for i, ev in enumerate(tn.simulated_events(HELDOUT))]  # episodes never trained on
    held = build_from_events(rows, NavigationSpec(radius=3, val_fraction=0.0)).arrays
    assert len(held["speed"]) > 500 and held["damage"].max() > 0
    mb, mt = nav.evaluate(base.module, held), nav.evaluate(tuned.module, held)
    assert mt["loss"] < 0.9 * mb["loss"], (mt, mb)
    assert mt["damage_mae"] < mb["damage_mae"], (mt, mb)


def test_after_terrain_changes_fine_tuned_agent_beats_geometry_astar(cycle: dict[str, Any]) -> None:
    reg: Registry = cycle["registry"]
    tuned = reg.load("navigation", "champion")
    cfg = tn.SimEvalConfig(episodes=10, seed=7, terrain_changes=True)  # not the gate's seeds
    astar = tn.simulate(AStarNavigationPolicy(), cfg)
    learned = tn.simulate(nav.NavigationPolicy.from_module(tuned.module, tuned.manifest["architecture"]), cfg)
    assert learned["success_rate"] >= astar["success_rate"], (learned, astar)
    assert learned["mean_damage"] < astar["mean_damage"], (learned, astar)
    assert learned["cost"] < astar["cost"], (learned, astar)


def test_too_small_dataset_skips_and_keeps_the_champion(cycle: dict[str, Any]) -> None:
    reg: Registry = cycle["registry"]
    store = cycle["store"]
    before = reg.champion_version("navigation")
    ctx = CycleContext(store, reg, store.max_id() - 30, store.max_id(), seed=0)
    result = guarded_cycle("navigation", ctx, tn.run_cycle)
    assert result.status == "skipped" and "too small" in result.reason
    assert reg.champion_version("navigation") == before
    assert reg.history("navigation")[-1]["action"] == "skip"
