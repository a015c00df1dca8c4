"""``luanti-tune dialogue``: simulate NPC conversations, build datasets, fine-tune, chat, roll back."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from luanti_tune.config import Settings, load_settings

_db_option = click.option("--db", "db_url", default=None, help="Store URL (sqlite:///PATH or postgresql://...).")
_config_option = click.option(
    "--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), default=None, help="TOML config file."
)
_style_option = click.option(
    "--style",
    "styles",
    multiple=True,
    help="Only conversations of players of this play style (`analyze players`; repeatable).",
)
_base_option = click.option(
    "--base", default=None, help="Base model: 'smollm2' or a model directory [default: setting dialogue_base]."
)


def _settings(config_file: Path | None, db_url: str | None = None) -> Settings:
    return load_settings(config_file, db_url=db_url)


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


@click.group()
def dialogue() -> None:
    """NPC dialogue: scripted conversations, SFT datasets, LoRA fine-tuning, chat."""


@dialogue.command()
@click.option("-n", "--conversations", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--seed", type=int, default=None, help="Seed [default: setting seed].")
@click.option("--source", default="sim-dialogue", show_default=True, help="Event source id.")
@_db_option
@_config_option
def simulate(conversations: int, seed: int | None, source: str, db_url: str | None, config_file: Path | None) -> None:
    """Store scripted player<->NPC conversations (context-dependent replies) as game events."""
    from luanti_tune.dialogue.scenario import conversation_events
    from luanti_tune.schemas.event import parse_event
    from luanti_tune.store.base import open_store

    settings = _settings(config_file, db_url)
    events = [
        parse_event(e)
        for e in conversation_events(conversations, seed=settings.seed if seed is None else seed, source=source)
    ]
    with open_store(settings.resolved_db_url) as store:
        result = store.append(events)
    click.echo(json.dumps({"events": len(events), "accepted": result.accepted, "duplicates": result.duplicates}))


@dialogue.command()
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=None, help="Dataset directory.")
@click.option("--after-id", type=int, default=0, show_default=True, help="Only events with id > this.")
@click.option("--heldout", type=click.FloatRange(0.05, 0.5), default=0.2, show_default=True, help="Held-out fraction.")
@_style_option
@_db_option
@_config_option
def build(
    out: Path | None,
    after_id: int,
    heldout: float,
    styles: tuple[str, ...],
    db_url: str | None,
    config_file: Path | None,
) -> None:
    """Build a chat-format SFT dataset (with manifest) from stored chat.msg events to NPCs."""
    from luanti_tune.analysis.players import styles_path
    from luanti_tune.dialogue.dataset import build_from_store
    from luanti_tune.store.base import open_store

    settings = _settings(config_file, db_url)
    out = out or settings.data_dir / "datasets" / f"dialogue-{time.strftime('%Y%m%dT%H%M%S')}"
    with open_store(settings.resolved_db_url) as store:
        manifest = build_from_store(
            store,
            out,
            after_id=after_id,
            seed=settings.seed,
            heldout_fraction=heldout,
            styles_file=styles_path(settings),
            style=styles,
        )
    click.echo(json.dumps({"dataset": str(out), **manifest["counts"]}))


@dialogue.command()
@click.option("--dataset", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None)
@_base_option
@click.option("--steps", type=click.IntRange(min=1), default=60, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--rank", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--eval-examples", type=click.IntRange(min=0), default=32, show_default=True)
@click.option("--no-promote", is_flag=True, help="Register the candidate but never promote it.")
@_style_option
@_db_option
@_config_option
def train(
    dataset: Path | None,
    base: str | None,
    steps: int,
    lr: float,
    rank: int,
    batch_size: int,
    eval_examples: int,
    no_promote: bool,
    styles: tuple[str, ...],
    db_url: str | None,
    config_file: Path | None,
) -> None:
    """One LoRA cycle: train on the dataset (or build one from the store), gate, register, promote.

    --style NAME: per-style adaptation, trained on the conversations of that style's players only.
    """
    if styles and dataset is not None:
        raise click.UsageError("--style builds the dataset from the store; use `dialogue build --style` for --dataset")
    import torch
    from rich.progress import Progress

    from luanti_tune.analysis.players import styles_path
    from luanti_tune.dialogue.dataset import build_from_store, load_dataset
    from luanti_tune.dialogue.gate import GateConfig, run_cycle
    from luanti_tune.dialogue.lora import LoraTrainConfig
    from luanti_tune.registry import Registry
    from luanti_tune.store.base import open_store

    settings = _settings(config_file, db_url)
    torch.set_num_threads(settings.torch_threads)
    if dataset is None:
        dataset = settings.data_dir / "datasets" / f"dialogue-{time.strftime('%Y%m%dT%H%M%S')}"
        with open_store(settings.resolved_db_url) as store:
            build_from_store(store, dataset, seed=settings.seed, styles_file=styles_path(settings), style=styles)
    train_rows, heldout_rows, manifest = load_dataset(dataset)
    cfg = LoraTrainConfig(steps=steps, lr=lr, rank=rank, alpha=2 * rank, batch_size=batch_size, seed=settings.seed)
    registry = Registry(settings.resolved_model_path)
    with Progress(transient=True) as bar:
        task = bar.add_task("LoRA steps", total=steps)
        report = run_cycle(
            base or settings.dialogue_base,
            train_rows,
            heldout_rows,
            registry,
            dataset_manifest=manifest,
            cfg=cfg,
            gate=GateConfig(max_grounding_examples=eval_examples),
            promote=not no_promote,
            progress=lambda step, loss: bar.update(task, completed=step, description=f"LoRA loss {loss:.3f}"),
        )
    _echo_json(report)


@dialogue.command()
@click.argument("message")
@click.option("--npc", default=None, help="NPC name: adds its persona and the player's context.")
@click.option("--player", default=None, help="Player name (context from the store).")
@click.option("--model", "model_name", default="luanti-npc", show_default=True, help="luanti-npc or luanti-npc:base")
@click.option("--max-tokens", type=click.IntRange(min=1), default=64, show_default=True)
@_base_option
@_db_option
@_config_option
def chat(
    message: str,
    npc: str | None,
    player: str | None,
    model_name: str,
    max_tokens: int,
    base: str | None,
    db_url: str | None,
    config_file: Path | None,
) -> None:
    """Ask the served dialogue model (base + champion adapter) one question, locally."""
    import asyncio

    from luanti_tune.analysis.players import styles_path
    from luanti_tune.dialogue.service import DialogueService, GenParams
    from luanti_tune.registry import Registry
    from luanti_tune.store.base import open_store

    settings = _settings(config_file, db_url)
    with open_store(settings.resolved_db_url) as store:
        service = DialogueService(
            base or settings.dialogue_base,
            registry=Registry(settings.resolved_model_path),
            store=store,
            styles_path=styles_path(settings),
        )
        try:
            messages = [{"role": "user", "content": message}]
            if npc:
                messages, _ = asyncio.run(service.npc_messages(messages, npc, player))
            result = service.generate_sync(
                messages, GenParams(max_tokens=max_tokens), use_adapter=service.uses_adapter(model_name)
            )
        finally:
            service.close()
    _echo_json(
        {
            "reply": result.text,
            "adapter": result.adapter,
            "finish_reason": result.finish_reason,
            "system": messages[0]["content"] if messages[0]["role"] == "system" else None,
        }
    )


@dialogue.command()
@click.option("--reason", default="operator rollback", show_default=True)
@_config_option
def rollback(reason: str, config_file: Path | None) -> None:
    """Restore the previous dialogue champion (the service hot-swaps within a second)."""
    from luanti_tune.registry import Registry

    registry = Registry(_settings(config_file).resolved_model_path)
    version = registry.rollback("dialogue", reason=reason)
    click.echo(json.dumps({"family": "dialogue", "champion": version}))
