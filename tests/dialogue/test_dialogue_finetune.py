"""LoRA fine-tuning is real: held-out loss and grounding beat the base, only adapter weights change,
versions are gated, promoted and rolled back in the registry."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from luanti_tune.dialogue.gate import GateConfig, run_cycle
from luanti_tune.dialogue.lora import LoraTrainConfig, evaluate
from luanti_tune.dialogue.model import load_base
from luanti_tune.errors import TrainingSkipped
from luanti_tune.registry import Registry


def test_tuned_adapter_beats_base_on_heldout_loss_and_grounding(first_cycle: dict[str, Any]) -> None:
    rep = first_cycle["report"]
    base, cand = rep["base"], rep["candidate"]
    assert math.isfinite(cand["loss"])
    assert cand["loss"] < base["loss"] * 0.9
    assert cand["perplexity"] < base["perplexity"]
    assert cand["grounding"] > base["grounding"] + 0.1
    assert rep["gate"]["passed"] and rep["promoted"]
    registry: Registry = first_cycle["registry"]
    assert registry.champion_version("dialogue") == rep["version"]


def test_only_adapter_weights_change(first_cycle: dict[str, Any]) -> None:
    bm = first_cycle["bm"]
    for name, (param, original) in first_cycle["before"].items():
        assert not param.requires_grad, name
        assert torch.equal(param.detach(), original), f"base parameter {name} changed"
    lora = {n: p for n, p in bm.model.named_parameters() if "lora_" in n}
    assert lora, "no LoRA parameters were injected"
    assert any(float(p.detach().abs().sum()) > 0 for n, p in lora.items() if "lora_B" in n)


def test_registered_adapter_reloads_on_a_fresh_base_with_the_same_loss(
    first_cycle: dict[str, Any], tiny_base: str, dialogue_split: Any
) -> None:
    from peft import PeftModel

    registry: Registry = first_cycle["registry"]
    version = first_cycle["report"]["version"]
    manifest = registry.verify("dialogue", version)
    assert {"adapter_model.safetensors", "adapter_config.json"} <= set(manifest["files"])
    assert manifest["architecture"]["base"] == tiny_base
    assert manifest["gate"]["passed"] is True
    loaded = registry.load("dialogue", version)
    assert loaded.module.path == registry.version_dir("dialogue", version)
    fresh = load_base(tiny_base)
    tuned = PeftModel.from_pretrained(fresh.model, str(loaded.module.path))
    _, heldout = dialogue_split
    again = evaluate(tuned, fresh.tokenizer, heldout[:16], max_grounding_examples=0)
    ref = evaluate(first_cycle["bm"].model, first_cycle["bm"].tokenizer, heldout[:16], max_grounding_examples=0)
    assert again["loss"] == pytest.approx(ref["loss"], rel=1e-4)


def test_weaker_candidate_is_rejected_then_rollback_restores_previous(
    first_cycle: dict[str, Any], tiny_base: str, dialogue_split: Any
) -> None:
    registry: Registry = first_cycle["registry"]
    champion = registry.champion_version("dialogue")
    train, heldout = dialogue_split
    weak = LoraTrainConfig(steps=3, lr=1e-3, batch_size=8, rank=2, alpha=2, seed=1)
    rep = run_cycle(tiny_base, train, heldout[:24], registry, cfg=weak, gate=GateConfig(max_grounding_examples=8))
    assert not rep["gate"]["passed"] and not rep["promoted"]
    assert "reference" in rep["gate"]["reason"]
    assert registry.champion_version("dialogue") == champion
    assert registry.history("dialogue")[-1]["action"] == "reject"
    # an operator forces it in anyway, then rolls back: the good adapter serves again
    registry.promote("dialogue", rep["version"], force=True, reason="operator")
    assert registry.champion_version("dialogue") == rep["version"]
    assert registry.rollback("dialogue", reason="test") == champion
    assert registry.champion_version("dialogue") == champion


def test_too_small_dataset_skips_and_leaves_champion(
    first_cycle: dict[str, Any], tiny_base: str, dialogue_split: Any
) -> None:
    registry: Registry = first_cycle["registry"]
    champion = registry.champion_version("dialogue")
    train, heldout = dialogue_split
    with pytest.raises(TrainingSkipped):
        run_cycle(tiny_base, train[:5], heldout, registry, cfg=LoraTrainConfig(steps=1))
    assert registry.champion_version("dialogue") == champion
    assert registry.history("dialogue")[-1]["action"] == "skip"


def test_worker_cycle_trains_on_stored_conversations_and_skips_without_new_ones(
    tmp_path: Any, tiny_base: str, dialogue_events: Any
) -> None:
    from luanti_tune.config import Settings
    from luanti_tune.dialogue.gate import worker_cycle
    from luanti_tune.schemas.event import parse_event
    from luanti_tune.store.base import open_store
    from luanti_tune.trainers.common import CycleContext, guarded_cycle

    registry = Registry(tmp_path / "models")
    settings = Settings(data_dir=tmp_path)
    opts = {"dialogue": {"base": tiny_base, "steps": 20, "lr": 1e-2, "eval_examples": 8}}
    with open_store(f"sqlite:///{tmp_path / 'e.db'}") as store:
        store.append([parse_event(e) for e in dialogue_events])
        top = store.max_id()
        ctx = CycleContext(store=store, registry=registry, after_id=0, until_id=top, settings=settings, options=opts)
        result = guarded_cycle("dialogue", ctx, worker_cycle)
        assert result.status in ("promoted", "rejected"), result.reason
        manifest = registry.manifest("dialogue", result.version)
        assert manifest["dataset"]["event_range"]["last_id"] <= top
        assert manifest["dataset"]["counts"]["examples"] > 100
        idle = CycleContext(store=store, registry=registry, after_id=top, until_id=top, settings=settings, options=opts)
        skipped = guarded_cycle("dialogue", idle, worker_cycle)
    assert skipped.status == "skipped" and "new NPC conversations" in skipped.reason
