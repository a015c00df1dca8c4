"""Safety: NaN loss, empty/too-small data, a failing cycle and a worse candidate all leave the
champion serving, and the reason is recorded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from luanti_tune.datasets.pursuit import PursuitSpec, build_from_store
from luanti_tune.errors import ModelError
from luanti_tune.registry import Registry
from luanti_tune.schemas.event import parse_event
from luanti_tune.sim.session import to_store
from luanti_tune.store import open_store
from luanti_tune.trainers import pursuit as tp
from luanti_tune.trainers.common import CycleContext, FitConfig, clone_module, finish_candidate, guarded_cycle

NO_SIM = tp.GateConfig(sim=False)


@pytest.fixture(scope="module")
def events() -> list[dict]:
    return tp.simulated_events(("spiral",), minutes=1.0, seed=70, sessions=2)


@pytest.fixture()
def store(tmp_path: Path, events: list[dict]):  # type: ignore[no-untyped-def]
    s = open_store(f"sqlite:///{tmp_path / 'events.db'}")
    to_store(events, s)
    yield s
    s.close()


def _cycle(store, registry: Registry, opts: tp.CycleOptions):  # type: ignore[no-untyped-def]
    ctx = CycleContext(store, registry, 0, store.max_id(), seed=0, options={"pursuit": opts})
    return guarded_cycle("pursuit", ctx, tp.run_cycle)


def test_nan_loss_fails_and_keeps_champion(registry: Registry, store) -> None:  # type: ignore[no-untyped-def]
    champion = registry.champion_version("pursuit")
    versions = registry.versions("pursuit")
    result = _cycle(store, registry, tp.CycleOptions(fit=FitConfig(steps=60, lr=1e30), gate=NO_SIM))
    assert result.status == "failed" and "non-finite" in result.reason
    assert registry.champion_version("pursuit") == champion and registry.versions("pursuit") == versions
    last = registry.history("pursuit")[-1]
    assert last["action"] == "fail" and "non-finite" in last["reason"]
    registry.load("pursuit", "champion")  # still serving


def test_empty_and_too_small_datasets_skip_with_reason(registry: Registry, tmp_path: Path) -> None:
    champion = registry.champion_version("pursuit")
    with open_store(f"sqlite:///{tmp_path / 'empty.db'}") as empty:
        chat = {
            "schema": "luanti.event/1", "source": "s", "seq": 1, "type": "chat.msg",
            "time": {"wall_us": 1, "game_s": 0.0, "tick": 0}, "actor": {"kind": "player", "name": "a"},
            "payload": {"message": "hi"},
        }  # fmt: skip
        empty.append([parse_event(chat)])
        result = _cycle(empty, registry, tp.CycleOptions(gate=NO_SIM))
    assert result.status == "skipped" and "dataset too small" in result.reason
    assert registry.history("pursuit")[-1]["action"] == "skip"
    assert registry.champion_version("pursuit") == champion


def test_too_few_windows_for_the_threshold_skip(registry: Registry, store) -> None:  # type: ignore[no-untyped-def]
    result = _cycle(store, registry, tp.CycleOptions(min_train_windows=10**6, gate=NO_SIM))
    assert result.status == "skipped" and "training windows" in result.reason


def test_crash_inside_a_cycle_is_recorded(registry: Registry, tmp_path: Path) -> None:
    champion = registry.champion_version("pursuit")
    s = open_store(f"sqlite:///{tmp_path / 'x.db'}")
    s.close()  # the store goes away under the cycle
    ctx = CycleContext(s, registry, 0, 100, options={"pursuit": tp.CycleOptions(gate=NO_SIM)})
    result = guarded_cycle("pursuit", ctx, tp.run_cycle)
    assert result.status == "failed" and registry.history("pursuit")[-1]["action"] == "fail"
    assert registry.champion_version("pursuit") == champion


def test_worse_candidate_is_rejected_and_recorded(registry: Registry, store) -> None:  # type: ignore[no-untyped-def]
    champ = registry.load("pursuit", "champion")
    arch = champ.manifest["architecture"]
    data = build_from_store(store, PursuitSpec.from_arch(arch))
    worse = clone_module(champ.module)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in worse.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.3)
    verdict = tp.gate(worse, champ.module, data.val(), arch, NO_SIM)
    assert not verdict.passed and "heldout_error" in verdict.reason
    ctx = CycleContext(store, registry, 0, store.max_id())
    result = finish_candidate(
        ctx, "pursuit", worse, arch, verdict, parent=champ.version, dataset=data.manifest, metrics={}, training={}
    )
    assert result.status == "rejected" and registry.champion_version("pursuit") == champ.version
    manifest = registry.manifest("pursuit", result.version)
    assert (
        manifest["gate"]["passed"] is False
        and manifest["gate"]["figures"]["candidate"]["ade"] > manifest["gate"]["figures"]["champion"]["ade"]
    )
    assert registry.history("pursuit")[-1]["action"] == "reject"
    with pytest.raises(ModelError, match="failed its gate"):
        registry.promote("pursuit", result.version)


def test_gate_refuses_a_candidate_with_nan_outputs(registry: Registry, store) -> None:  # type: ignore[no-untyped-def]
    champ = registry.load("pursuit", "champion")
    arch = champ.manifest["architecture"]
    val = build_from_store(store, PursuitSpec.from_arch(arch)).val()
    broken = clone_module(champ.module)
    with torch.no_grad():
        next(broken.parameters()).fill_(float("nan"))
    verdict = tp.gate(broken, champ.module, val, arch, NO_SIM)
    assert not verdict.passed and "non-finite" in verdict.reason
    assert np.isnan(verdict.figures["candidate"]["ade"])
