"""Team trainer: learning from team episodes is real, the team beats independent greedy members in
Team-v0, and a worker cycle gates, promotes or skips without touching the champion on failure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from luanti_tune.datasets.common import Dataset
from luanti_tune.policies import team as fam
from luanti_tune.policies.families import ModelPolicy
from luanti_tune.registry import Registry
from luanti_tune.trainers import team as tt
from luanti_tune.trainers.common import CycleContext, FitConfig, guarded_cycle

FIT = FitConfig(steps=300, batch_size=128, lr=3e-3, replay_fraction=0.0, time_budget_s=60.0, seed=0)
EVAL = tt.SimEvalConfig(episodes=6, seed=777, max_steps=300)  # held-out worlds: other seeds than training


@pytest.fixture(scope="module")
def base() -> tuple[Any, dict[str, Any], Dataset]:
    torch.set_num_threads(1)
    arch = fam.architecture()
    data = tt.simulated_dataset(arch, episodes=6, seed=0, max_steps=300)
    module, _ = tt.pretrain_base(data, arch, FIT)
    return module, arch, data


def test_learning_from_team_episodes_is_real(base: tuple[Any, dict[str, Any], Dataset]) -> None:
    module, arch, data = base
    assert data.manifest["counts"]["episodes"] == 6 and data.manifest["counts"]["val"] > 0
    trained = fam.evaluate(module, data.val())  # held-out episodes
    prior = fam.evaluate(fam.build_module(arch), data.val())  # the untrained geometric prior
    assert trained["loss"] < 0.7 * prior["loss"], (trained, prior)
    assert trained["log_t_mae"] < prior["log_t_mae"]


def test_team_completes_shared_goal_clearly_faster_than_greedy_members(
    base: tuple[Any, dict[str, Any], Dataset],
) -> None:
    module, arch, _ = base
    team = tt.evaluate_team(tt.policy_of(module, arch), EVAL)
    greedy = tt.evaluate_team(tt.greedy_policy(), EVAL)
    assert team["mean_time"] < 0.85 * greedy["mean_time"], (team, greedy)
    assert team["item_share"] >= greedy["item_share"]
    # the gain is coordination, not only the model: the same model without assignment is slower
    independent = tt.evaluate_team(ModelPolicy(module, fam.TeamAdapter(arch, coordinate=False)), EVAL)
    assert team["mean_time"] < independent["mean_time"], (team, independent)


def _registry_with_base(root: Path, module: Any, arch: dict[str, Any]) -> Registry:
    reg = Registry(root)
    v = reg.save(
        "team",
        module=module,
        architecture=arch,
        parent=None,
        dataset={},
        metrics={},
        gate={"passed": True, "reason": "test base"},
        training={},
    )
    reg.promote("team", v, reason="test base")
    return reg


def test_cycle_fine_tunes_and_gates_on_stored_team_episodes(
    tmp_path: Path, base: tuple[Any, dict[str, Any], Dataset]
) -> None:
    from luanti_tune.sim.session import to_store
    from luanti_tune.store.base import open_store

    module, arch, _ = base
    reg = _registry_with_base(tmp_path / "models", module, arch)
    champion_before = reg.champion_version("team")
    events = tt.team_episode_events(tt.policy_of(module, arch, "team"), episodes=3, seed=50, max_steps=250)
    opts = tt.CycleOptions(min_train_pairs=50, sim=tt.SimEvalConfig(episodes=2, seed=900, max_steps=250))
    with open_store(f"sqlite:///{tmp_path / 'e.db'}") as store:
        to_store(events, store)
        ctx = CycleContext(store, reg, 0, store.max_id(), seed=0, options={"team": opts})
        result = guarded_cycle("team", ctx, tt.run_cycle)
        assert result.status in ("promoted", "rejected"), result
        manifest = reg.manifest("team", result.version)
        names = [c["name"] for c in manifest["gate"]["checks"]]
        assert "heldout_loss" in names
        sim = manifest["gate"]["figures"].get("sim")
        if result.status == "promoted":
            assert reg.champion_version("team") == result.version != champion_before
            assert sim is not None and sim["candidate"]["mean_time"] < sim["greedy"]["mean_time"]
        else:
            assert reg.champion_version("team") == champion_before
        # nothing new since: the next cycle skips with a reason and the champion stays
        champion = reg.champion_version("team")
        ctx2 = CycleContext(store, reg, store.max_id(), store.max_id(), seed=0, options={"team": opts})
        skipped = guarded_cycle("team", ctx2, tt.run_cycle)
    assert skipped.status == "skipped" and "too small" in skipped.reason
    assert reg.champion_version("team") == champion


def test_cycle_without_champion_skips(tmp_path: Path) -> None:
    from luanti_tune.store.base import open_store

    reg = Registry(tmp_path / "models")
    with open_store(f"sqlite:///{tmp_path / 'e.db'}") as store:
        result = guarded_cycle("team", CycleContext(store, reg, 0, 0), tt.run_cycle)
    assert result.status == "skipped" and "train team --base" in result.reason
