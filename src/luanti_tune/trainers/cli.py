"""``luanti-tune train pursuit``: pre-train the base model or run one fine-tuning cycle by hand."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from luanti_tune.config.settings import Settings, load_settings

OptionsT = TypeVar("OptionsT")


@click.group()
def train() -> None:
    """Run training by hand (the worker does the same in the background)."""


def training_setup(
    config: Path | None, data_dir: Path | None, db_url: str | None, model_path: Path | None, seed: int | None
) -> tuple[Settings, Any]:
    """Settings of a ``train`` command, torch threads bounded by them, and the model registry."""
    from luanti_tune.registry import Registry
    from luanti_tune.trainers.common import configure_torch

    settings = load_settings(config, data_dir=data_dir, db_url=db_url, model_path=model_path, seed=seed)
    configure_torch(settings.torch_threads)
    return settings, Registry(settings.resolved_model_path)


def with_overrides(opts: OptionsT, *, steps: int | None = None, no_sim: bool = False) -> OptionsT:
    """A family's ``CycleOptions`` with the command-line ``--steps`` / ``--no-sim`` applied."""
    if steps is not None:
        opts = dataclasses.replace(opts, fit=dataclasses.replace(opts.fit, steps=steps))  # type: ignore[type-var, attr-defined]
    if no_sim:
        opts = dataclasses.replace(opts, gate=dataclasses.replace(opts.gate, sim=False))  # type: ignore[type-var, attr-defined]
    return opts


def run_cycle_once(
    settings: Settings,
    reg: Any,
    family: str,
    run_cycle: Callable[[Any], Any],
    opts: Any,
    *,
    after_id: int,
    until_id: int | None,
    prepare: Callable[[Any], None] | None = None,
) -> None:
    """One guarded cycle over ids ``(after_id, until_id or the store's max id]``, its result echoed
    as JSON; exits 1 if it failed. ``prepare(store)`` runs first (e.g. to store simulated events)."""
    from luanti_tune.store.base import open_store
    from luanti_tune.trainers.common import CycleContext, guarded_cycle

    with open_store(settings.resolved_db_url) as store:
        if prepare is not None:
            prepare(store)
        until = store.max_id() if until_id is None else until_id
        ctx = CycleContext(store, reg, after_id, until, seed=settings.seed, settings=settings, options={family: opts})
        result = guarded_cycle(family, ctx, run_cycle)
    click.echo(json.dumps(result.to_dict()))
    if result.status == "failed":
        raise SystemExit(1)


@train.command("pursuit")
@click.option("--config", type=click.Path(path_type=Path), default=None, help="TOML config file.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="Data directory.")
@click.option("--db", "db_url", default=None, help="Store URL (sqlite:///PATH or postgresql://...).")
@click.option("--model-path", type=click.Path(path_type=Path), default=None, help="Model registry root.")
@click.option("--base", is_flag=True, help="Pre-train the base model on simulated players and promote it.")
@click.option("--minutes", type=float, default=2.0, show_default=True, help="--base: simulated minutes per style.")
@click.option("--after-id", type=int, default=0, show_default=True, help="Cycle: learn from events with id > this.")
@click.option("--until-id", type=int, default=None, help="Cycle: up to this id (default: current max).")
@click.option("--player", "players", multiple=True, help="Adapt to these players only (repeatable).")
@click.option(
    "--style", "styles", multiple=True, help="Adapt to the players of this play style (`analyze players`; repeatable)."
)
@click.option("--per-player", is_flag=True, help="With --player: keep a separate champion pursuit@<player>.")
@click.option("--steps", type=int, default=None, help="Fine-tune steps.")
@click.option("--no-sim", is_flag=True, help="Gate on held-out data only (skip simulator episodes).")
@click.option("--seed", type=int, default=None, help="Seed (default: settings.seed).")
def train_pursuit(
    config: Path | None,
    data_dir: Path | None,
    db_url: str | None,
    model_path: Path | None,
    base: bool,
    minutes: float,
    after_id: int,
    until_id: int | None,
    players: tuple[str, ...],
    styles: tuple[str, ...],
    per_player: bool,
    steps: int | None,
    no_sim: bool,
    seed: int | None,
) -> None:
    """Pre-train (--base) or fine-tune the pursuit model once: dataset, fit, gate, promote/reject."""
    from luanti_tune.trainers import pursuit as tp

    settings, reg = training_setup(config, data_dir, db_url, model_path, seed)
    if base:
        version = tp.bootstrap_base(reg, minutes=minutes, seed=settings.seed)
        click.echo(
            json.dumps(
                {"status": "promoted", "version": version, "manifest": reg.manifest("pursuit", version)["metrics"]}
            )
        )
        return
    if styles:
        from luanti_tune.analysis.players import players_of_styles

        players = tuple(sorted(set(players) | set(players_of_styles(styles, settings))))
    opts = with_overrides(tp.CycleOptions(players=players, per_player_scope=per_player), steps=steps, no_sim=no_sim)
    run_cycle_once(settings, reg, "pursuit", tp.run_cycle, opts, after_id=after_id, until_id=until_id)


def _add_navigation() -> None:
    from luanti_tune.trainers.navigation import train_navigation

    train.add_command(train_navigation, "navigation")


_add_navigation()


def _add_team() -> None:
    from luanti_tune.trainers.team import train_team

    train.add_command(train_team, "team")


_add_team()
