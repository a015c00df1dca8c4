"""``luanti-tune train pursuit``: pre-train the base model or run one fine-tuning cycle by hand."""

from __future__ import annotations

import json
from pathlib import Path

import click

from luanti_tune.trainers.command import run_cycle_once, training_setup, with_overrides


@click.group()
def train() -> None:
    """Run training by hand (the worker does the same in the background)."""


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
