"""``luanti-tune datasets build pursuit ...``: build a dataset from the store and save it."""

from __future__ import annotations

import json
from pathlib import Path

import click

from luanti_tune.config.settings import load_settings


@click.group()
def datasets() -> None:
    """Build reproducible datasets (arrays + JSON manifest) from stored events."""


@datasets.group("build")
def build() -> None:
    """Build a dataset of one kind."""


@build.command("pursuit")
@click.option("--config", type=click.Path(path_type=Path), default=None, help="TOML config file.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="Data directory.")
@click.option("--db", "db_url", default=None, help="Store URL (sqlite:///PATH or postgresql://...).")
@click.option("--after-id", type=int, default=0, show_default=True, help="Only events with id > this.")
@click.option("--until-id", type=int, default=None, help="Only events with id <= this (default: current max).")
@click.option("--player", "players", multiple=True, help="Only these players (repeatable).")
@click.option("--exclude-player", "exclude", multiple=True, help="Leave these players out (repeatable).")
@click.option("--val-fraction", type=float, default=0.2, show_default=True, help="Share of recent episodes held out.")
@click.option("--stride", "stride_s", type=float, default=0.25, show_default=True, help="Seconds between windows.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Directory (default data_dir/datasets/...).")
def build_pursuit(
    config: Path | None,
    data_dir: Path | None,
    db_url: str | None,
    after_id: int,
    until_id: int | None,
    players: tuple[str, ...],
    exclude: tuple[str, ...],
    val_fraction: float,
    stride_s: float,
    out: Path | None,
) -> None:
    """Player trajectory windows -> future displacement (train/val split by episode and time)."""
    from luanti_tune.datasets.pursuit import PursuitSpec, build_from_store
    from luanti_tune.store.base import open_store

    if not 0 <= val_fraction < 1:
        raise click.BadParameter("must be in [0, 1)", param_hint="--val-fraction")
    if stride_s <= 0:
        raise click.BadParameter("must be > 0", param_hint="--stride")
    settings = load_settings(config, data_dir=data_dir, db_url=db_url)
    spec = PursuitSpec(players=players, exclude_players=exclude, val_fraction=val_fraction, stride_s=stride_s)
    with open_store(settings.resolved_db_url) as store:
        until = store.max_id() if until_id is None else until_id
        ds = build_from_store(store, spec, after_id=after_id, until_id=until)
    target = out or settings.data_dir / "datasets" / "pursuit" / ds.manifest["hash"][:16]
    ds.save(target)
    click.echo(json.dumps({"path": str(target), "hash": ds.manifest["hash"], "counts": ds.manifest["counts"]}))
