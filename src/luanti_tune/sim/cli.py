"""``luanti-tune sim``: play headless sessions into a store or the service, render episodes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
import numpy as np


@click.group()
def sim() -> None:
    """Run or render the built-in voxel simulator."""


@sim.command("run")
@click.option("--players", default=4, show_default=True, type=click.IntRange(1, 256), help="Scripted players.")
@click.option(
    "--styles",
    default="strafer,circler,zigzag,explorer",
    show_default=True,
    help="Comma-separated style names, cycled over players (see `sim styles`).",
)
@click.option("--minutes", default=1.0, show_default=True, type=click.FloatRange(0.01, 24 * 60), help="Game minutes.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--source", default=None, help="Event source id (default sim-<seed>).")
@click.option(
    "--move-every", default=1, show_default=True, type=click.IntRange(1, 1000), help="player.move every k steps."
)
@click.option("--no-enemy", is_flag=True, help="No scripted pursuit agent (no agent.* events).")
@click.option("--ingest", "ingest_url", default=None, help="POST batches to this service URL (…/v1/events).")
@click.option("--db", "db_url", default=None, help="Write straight into this store (sqlite:///PATH or postgresql://…).")
@click.option("--token", default=None, envvar="LUANTI_TUNE_TOKEN", help="Bearer token for --ingest.")
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--now", is_flag=True, help="Stamp events with the current wall clock instead of a fixed epoch.")
def run(
    players: int,
    styles: str,
    minutes: float,
    seed: int,
    source: str | None,
    move_every: int,
    no_enemy: bool,
    ingest_url: str | None,
    db_url: str | None,
    token: str | None,
    batch_size: int,
    now: bool,
) -> None:
    """Play a session headless; events go to --ingest, --db or (default) the configured store."""
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per POST would drown the progress bar
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from luanti_tune.sim.core import DEFAULT_EPOCH_US
    from luanti_tune.sim.session import SessionConfig, generate_events, to_service, to_store
    from luanti_tune.sim.styles import STYLES

    names = tuple(s.strip() for s in styles.split(",") if s.strip())
    unknown = [n for n in names if n not in STYLES]
    if not names or unknown:
        raise click.BadParameter(f"unknown style(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(STYLES)}")
    if ingest_url and db_url:
        raise click.BadParameter("give either --ingest or --db, not both")
    config = SessionConfig(
        players=players,
        styles=names,
        minutes=minutes,
        seed=seed,
        source=source,
        move_every=move_every,
        enemy=not no_enemy,
        start_wall_us=int(time.time() * 1e6) if now else DEFAULT_EPOCH_US,
    )
    started = time.perf_counter()
    with Progress(
        TextColumn("[bold]simulating"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"), TimeElapsedColumn()
    ) as progress:
        task = progress.add_task("sim", total=config.steps)
        events = generate_events(config, on_step=lambda done, total: progress.update(task, completed=done))
        if ingest_url:
            report = to_service(events, ingest_url, batch_size=batch_size, token=token)
            where = ingest_url
        else:
            from luanti_tune.config.settings import load_settings
            from luanti_tune.store.base import open_store

            url = db_url or load_settings().resolved_db_url
            if url.startswith("sqlite:///"):
                Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            with open_store(url) as store:
                report = to_store(events, store, batch_size=max(batch_size, 2000))
            where = url
    elapsed = time.perf_counter() - started
    click.echo(
        f"{report.events} events ({report.accepted} new, {report.duplicates} duplicates) "
        f"from {players} players, {minutes:g} game minutes, source {config.resolved_source()} -> {where} "
        f"in {elapsed:.1f}s"
    )
    for t, n in sorted(report.by_type.items()):
        click.echo(f"  {t:18s} {n}")


@sim.command("styles")
def styles_cmd() -> None:
    """List the scripted player styles and their parameters."""
    from luanti_tune.sim.styles import HELDOUT_STYLES, STYLES

    for name, style in STYLES.items():
        tag = " (held out)" if name in HELDOUT_STYLES else ""
        params = ", ".join(f"{k}={v}" for k, v in style.to_dict().items() if k not in ("name", "pattern"))
        click.echo(f"{name}{tag}: pattern={style.pattern}, {params}")


@sim.command("render")
@click.option("--scenario", type=click.Choice(["pursuit", "navigate", "team", "session"]), default="pursuit")
@click.option("--style", default="circler", show_default=True, help="Player style (pursuit).")
@click.option("--policy", type=click.Choice(["scripted", "intercept"]), default="scripted", show_default=True)
@click.option("--steps", default=150, show_default=True, type=click.IntRange(1, 5000))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--every", default=2, show_default=True, type=click.IntRange(1, 100), help="Keep every k-th frame.")
@click.option("--scale", default=6, show_default=True, type=click.IntRange(1, 32), help="Pixels per node.")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help=".png or .gif")
def render_cmd(
    scenario: str, style: str, policy: str, steps: int, seed: int, every: int, scale: int, out: Path
) -> None:
    """Write a top-view PNG (last frame) or GIF of an episode."""
    from luanti_tune.sim.render import save_frames
    from luanti_tune.sim.styles import STYLES

    if style not in STYLES:
        raise click.BadParameter(f"unknown style {style!r}; known: {', '.join(STYLES)}")
    frames = episode_frames(scenario, style, policy, steps, seed, every, scale)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_frames(frames, out)
    what = "last frame" if out.suffix.lower() == ".png" else f"{len(frames)} frames"
    click.echo(f"wrote {out} ({what} of a {scenario} episode)")


def episode_frames(
    scenario: str, style: str, policy: str, steps: int, seed: int, every: int, scale: int
) -> list[np.ndarray]:
    """Top-view frames of one scripted episode (every ``every``-th step and the last one)."""
    from luanti_tune.policies.scripted import (
        AStarNavigationPolicy,
        GreedyTeamPolicy,
        InterceptPolicy,
        PurePursuitPolicy,
    )
    from luanti_tune.sim.render import top_view
    from luanti_tune.sim.scenarios import NavigationScenario, PursuitScenario, TeamScenario
    from luanti_tune.sim.session import SessionConfig, build_session

    memory: dict[str, dict[str, Any]] = {}
    goal = None
    if scenario == "pursuit":
        sc: Any = PursuitScenario(style, seed, max_steps=steps)
        pol: Any = InterceptPolicy() if policy == "intercept" else PurePursuitPolicy()
    elif scenario == "navigate":
        sc = NavigationScenario(seed, max_steps=steps)
        pol, goal = AStarNavigationPolicy(), sc.goal
    elif scenario == "team":
        sc = TeamScenario(seed, max_steps=steps)
        pol = GreedyTeamPolicy()
    else:
        sc, pol = None, None
    sim = sc.sim if sc is not None else build_session(SessionConfig(players=6, seed=seed, enemy=False))
    frames = []
    for k in range(steps):
        done = False
        if sc is None:
            sim.step()
        else:
            obs = sc.observe_all() if scenario == "team" else [sc.observe()]
            for d in pol.decide(obs, memory):
                sc.act(d.action)
            _, done = sc.advance()
        if k % every == 0 or done:
            frames.append(top_view(sim, scale, goal=goal))
        if done:
            break
    return frames
