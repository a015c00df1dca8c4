"""``luanti-tune events stats|query|export``: inspect and export the event store."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from luanti_tune.config import load_settings
from luanti_tune.store.base import EventQuery, Store, open_store

_db_option = click.option("--db", "db_url", default=None, help="Store URL (sqlite:///PATH or postgresql://...).")
_config_option = click.option(
    "--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), default=None, help="TOML config file."
)


def _filters(f: click.decorators.FC) -> click.decorators.FC:
    options = [
        click.option("--type", "types", multiple=True, help="Event type (repeatable)."),
        click.option("--source", "sources", multiple=True, help="Source id (repeatable)."),
        click.option("--actor", "actor_name", default=None, help="Actor name."),
        click.option("--actor-kind", default=None, help="Actor kind (player, agent, ...)."),
        click.option("--episode", "episode_id", default=None, help="Episode id."),
        click.option("--since-us", type=int, default=None, help="time.wall_us >= this (microseconds)."),
        click.option("--until-us", type=int, default=None, help="time.wall_us < this (microseconds)."),
        click.option("--after-id", type=int, default=0, show_default=True, help="Only events with id > this."),
        click.option("--limit", type=click.IntRange(min=0), default=None, help="At most this many events."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _query(**kw: object) -> EventQuery:
    return EventQuery(
        types=tuple(kw["types"]),  # type: ignore[arg-type]
        sources=tuple(kw["sources"]),  # type: ignore[arg-type]
        actor_name=kw["actor_name"],  # type: ignore[arg-type]
        actor_kind=kw["actor_kind"],  # type: ignore[arg-type]
        episode_id=kw["episode_id"],  # type: ignore[arg-type]
        since_us=kw["since_us"],  # type: ignore[arg-type]
        until_us=kw["until_us"],  # type: ignore[arg-type]
        after_id=kw["after_id"],  # type: ignore[arg-type]
        limit=kw["limit"],  # type: ignore[arg-type]
    )


def _open(db_url: str | None, config_file: Path | None) -> Store:
    settings = load_settings(config_file, db_url=db_url)
    return open_store(settings.resolved_db_url)


@click.group()
def events() -> None:
    """Count, query and export stored game events."""


@events.command()
@_db_option
@_config_option
def stats(db_url: str | None, config_file: Path | None) -> None:
    """Print totals by type and by source as JSON."""
    with _open(db_url, config_file) as store:
        s = store.stats()
    click.echo(json.dumps({"events": s.events, "by_type": s.by_type, "sources": s.sources, "max_id": s.max_id}))


@events.command()
@_db_option
@_config_option
@_filters
def query(db_url: str | None, config_file: Path | None, **filters: object) -> None:
    """Print matching events as JSON lines (with their store ``_id``), in id order."""
    q = _query(**filters)
    with _open(db_url, config_file) as store:
        for event in store.iter_events(q):
            click.echo(json.dumps(event, separators=(",", ":")))


@events.command()
@_db_option
@_config_option
@_filters
@click.option("--format", "fmt", type=click.Choice(["jsonl", "parquet"]), default=None, help="Default: from suffix.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="'-' = stdout.")
def export(db_url: str | None, config_file: Path | None, fmt: str | None, output: Path, **filters: object) -> None:
    """Export matching events to JSONL or Parquet (streaming, bounded memory)."""
    from luanti_tune.store.export import export_jsonl, export_parquet

    q = _query(**filters)
    if fmt is None:
        fmt = "parquet" if output.suffix == ".parquet" else "jsonl"
    with _open(db_url, config_file) as store:
        if fmt == "parquet":
            if str(output) == "-":
                raise click.UsageError("Parquet cannot be written to stdout; give a file name")
            n = export_parquet(store, output, q)
        elif str(output) == "-":
            n = export_jsonl(store, sys.stdout, q)
        else:
            tmp = output.with_name(output.name + ".part")
            with open(tmp, "w", encoding="utf-8") as fh:
                n = export_jsonl(store, fh, q)
            tmp.replace(output)
    click.echo(f"exported {n} events to {output} ({fmt})", err=True)
