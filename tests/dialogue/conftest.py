"""Dialogue fixtures: scripted conversations, a tiny Llama chat model built once per session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from luanti_tune.dialogue.dataset import build_examples, split
from luanti_tune.dialogue.lora import LoraTrainConfig
from luanti_tune.dialogue.scenario import conversation_events

N_CONVERSATIONS = 400
TRAIN_CFG = LoraTrainConfig(steps=200, lr=1e-2, batch_size=16, rank=16, alpha=32, seed=0)


@pytest.fixture(scope="session")
def dialogue_events() -> list[dict[str, Any]]:
    return list(conversation_events(N_CONVERSATIONS, seed=1))


@pytest.fixture(scope="session")
def dialogue_split(dialogue_events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return split(build_examples(dialogue_events), seed=0, heldout_fraction=0.2)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory, dialogue_split: Any) -> str:
    """A tiny Llama chat model that talks like an NPC but ignores the context (the "base")."""
    import torch

    from luanti_tune.dialogue.tiny import build_tiny_model

    torch.set_num_threads(1)
    train, _ = dialogue_split
    out = tmp_path_factory.mktemp("tiny-base")
    return str(build_tiny_model(Path(out), train, seed=0, pretrain_steps=150))


@pytest.fixture(scope="session")
def first_cycle(tmp_path_factory: pytest.TempPathFactory, tiny_base: str, dialogue_split: Any) -> dict[str, Any]:
    """One real train -> gate -> register -> promote cycle on the tiny base (shared by the tests)."""
    from luanti_tune.dialogue.gate import run_cycle
    from luanti_tune.dialogue.model import load_base
    from luanti_tune.registry import Registry

    train, heldout = dialogue_split
    registry = Registry(tmp_path_factory.mktemp("models"))
    bm = load_base(tiny_base)
    before = {name: (p, p.detach().clone()) for name, p in bm.model.named_parameters()}
    report = run_cycle(
        tiny_base,
        train,
        heldout,
        registry,
        dataset_manifest={"kind": "dialogue-sft", "rows": len(train)},
        cfg=TRAIN_CFG,
        base_model=bm,
    )
    return {"report": report, "registry": registry, "before": before, "bm": bm}
