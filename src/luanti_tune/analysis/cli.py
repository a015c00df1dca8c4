"""``luanti-tune analyze players|agents``: play styles and emergent agent behaviour."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click


def _settings(config: Path | None, db: str | None, data_dir: Path | None) -> Any:
    from luanti_tune.config.settings import load_settings

    return load_settings(config, db_url=db, data_dir=data_dir)


def _common(fn: Any) -> Any:
    fn = click.option("--config", type=click.Path(path_type=Path, dir_okay=False), help="TOML config file.")(fn)
    fn = click.option("--db", help="Store URL (sqlite:///PATH or postgresql://...); default from settings.")(fn)
    fn = click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), help="Data directory.")(fn)
    fn = click.option(
        "--out", type=click.Path(path_type=Path, file_okay=False), help="Report dir (default DATA_DIR/analysis)."
    )(fn)
    fn = click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON line instead of a table.")(
        fn
    )
    return fn


@click.group()
def analyze() -> None:
    """Analyse how players play and how agents behave."""


@analyze.command()
@_common
@click.option("--k", type=click.IntRange(2, 50), help="Number of styles (default: chosen by silhouette score).")
@click.option("--seed", type=int, default=0, show_default=True, help="Clustering seed.")
@click.option("--min-moves", type=click.IntRange(3), default=20, show_default=True, help="Skip players with fewer.")
@click.option("--label-only", is_flag=True, help="Keep the stored style model; only (re)label players.")
def players(
    config: Path | None,
    db: str | None,
    data_dir: Path | None,
    out: Path | None,
    as_json: bool,
    k: int | None,
    seed: int,
    min_moves: int,
    label_only: bool,
) -> None:
    """Cluster players into play styles; store per-player labels (styles.json) and write plots."""
    from luanti_tune.analysis.players import (
        PLAYER_EVENT_TYPES,
        analyze_players,
        load_style_book,
        plot_styles,
        styles_path,
    )
    from luanti_tune.store.base import EventQuery, open_store

    settings = _settings(config, db, data_dir)
    existing = load_style_book(settings) if label_only else None
    if label_only and existing is None:
        raise click.ClickException("--label-only needs a stored style model: run `analyze players` first")
    with open_store(settings.resolved_db_url) as store:
        events = store.iter_events(EventQuery(types=PLAYER_EVENT_TYPES))
        report = analyze_players(events, k=k, seed=seed, min_moves=min_moves, existing=existing)
    path = styles_path(settings)
    report.book.save(path)
    out_dir = out or path.parent
    plots = plot_styles(report, out_dir)
    summary = {**report.summary(), "styles_file": str(path), "plots": [str(p) for p in plots]}
    if as_json:
        click.echo(json.dumps(summary))
        return
    _players_table(report)
    click.echo(f"styles: {path}\nplots: {', '.join(str(p) for p in plots)}")


def _players_table(report: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    from luanti_tune.analysis.players import FEATURES

    shown = ["speed_mean", "still_frac", "strafe_frac", "turn_consistency", "cells_per_min", "place_per_min"]
    shown += ["chat_per_min"]
    table = Table(title=f"Play styles ({len(report.players)} players, {len(report.skipped)} skipped)")
    table.add_column("style")
    table.add_column("players", justify="right")
    for f in shown:
        table.add_column(f, justify="right")
    cols = [FEATURES.index(f) for f in shown]
    for name in report.book.model.names:
        sel = [i for i, lab in enumerate(report.labels) if lab == name]
        means = report.X[sel][:, cols].mean(axis=0) if sel else [float("nan")] * len(cols)
        table.add_row(name, str(len(sel)), *(f"{m:.2f}" for m in means))
    Console().print(table)


@analyze.command()
@_common
@click.option("--window", type=click.FloatRange(1.0), default=60.0, show_default=True, help="Time bucket, seconds.")
@click.option("--n", "ngram", type=click.IntRange(1, 8), default=3, show_default=True, help="Action n-gram length.")
def agents(
    config: Path | None,
    db: str | None,
    data_dir: Path | None,
    out: Path | None,
    as_json: bool,
    window: float,
    ngram: int,
) -> None:
    """Behaviour per model version: action entropy, new n-grams, team spacing, roles, success."""
    from luanti_tune.analysis.agents import AGENT_EVENT_TYPES, BehaviourMonitor, plot_agents
    from luanti_tune.store.base import EventQuery, open_store

    settings = _settings(config, db, data_dir)
    monitor = BehaviourMonitor(n=ngram, window_s=window)
    with open_store(settings.resolved_db_url) as store:
        monitor.update(store.iter_events(EventQuery(types=AGENT_EVENT_TYPES)))
    rows = monitor.summary()
    plots = plot_agents(monitor, out or Path(settings.data_dir) / "analysis")
    if as_json:
        click.echo(json.dumps({"versions": rows, "plots": [str(p) for p in plots]}))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Agent behaviour by model version ({monitor.events_seen} events)")
    for col in ("model", "version", "acts", "entropy", "top n-grams", "new n-grams", "success", "reward"):
        table.add_column(col)
    for col in ("spacing", "role switch", "fallback"):
        table.add_column(col, justify="right")

    def fmt(v: Any) -> str:
        return "-" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)

    for r in rows:
        table.add_row(
            r["model"],
            r["version"],
            str(r["acts"]),
            fmt(r["entropy_bits"]),
            "\n".join(r["top_ngrams"]),
            "\n".join(r["new_ngrams"]) or "-",
            fmt(r["success_rate"]),
            fmt(r["reward_mean"]),
            fmt(r["team_spacing"]),
            fmt(r["role_switch_rate"]),
            fmt(r["fallback_rate"]),
        )
    Console().print(table)
    click.echo(f"plots: {', '.join(str(p) for p in plots)}")
