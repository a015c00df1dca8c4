"""``luanti-tune demo`` (``make demo``): the whole loop end to end on the built-in simulator.

The demo is a list of named stages (:data:`STAGES`), each a function taking the shared
:class:`DemoContext`. Later stages (training, promotion, before/after evaluation) are added by
appending to the list or with :func:`add_stage`; every stage can read what earlier ones put into
``ctx.results``. The service always runs as a real subprocess (``luanti-tune serve``) on a free
port and is stopped at the end, whatever happens.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click


@dataclass
class DemoContext:
    """State shared by the demo stages."""

    data_dir: Path
    seed: int = 0
    players: int = 6
    minutes: float = 1.5
    styles: tuple[str, ...] = ("strafer", "circler", "zigzag", "camper", "builder", "explorer", "chatter")
    port: int = 0
    base_url: str = ""
    db_url: str = ""
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    results: dict[str, Any] = field(default_factory=dict)

    def echo(self, msg: str) -> None:
        click.echo(msg)


Stage = tuple[str, Callable[[DemoContext], None]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli_cmd() -> list[str]:
    exe = shutil.which("luanti-tune", path=str(Path(sys.executable).parent)) or shutil.which("luanti-tune")
    return [exe] if exe else [sys.executable, "-c", "from luanti_tune.cli.main import main; main()"]


def start_service(ctx: DemoContext) -> None:
    """Start ``luanti-tune serve`` on a free loopback port with the demo's SQLite store."""
    import httpx

    ctx.port = free_port()
    ctx.base_url = f"http://127.0.0.1:{ctx.port}"
    ctx.db_url = f"sqlite:///{ctx.data_dir / 'events.db'}"
    ctx.log_path = ctx.data_dir / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUANTI_TUNE_")}
    env.update({"LUANTI_TUNE_DATA_DIR": str(ctx.data_dir), "HF_HUB_OFFLINE": "1"})
    # --no-worker: the demo runs the fine-tuning worker itself, as a visible stage
    cmd = [*_cli_cmd(), "serve", "--db", ctx.db_url, "--host", "127.0.0.1", "--port", str(ctx.port), "--no-worker"]
    with open(ctx.log_path, "wb") as log:
        ctx.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if ctx.proc.poll() is not None:
            raise click.ClickException(f"service exited with code {ctx.proc.returncode}; see {ctx.log_path}")
        try:
            if httpx.get(f"{ctx.base_url}/healthz", timeout=1.0).status_code == 200:
                ctx.echo(f"service up at {ctx.base_url} (pid {ctx.proc.pid}, store {ctx.db_url})")
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise click.ClickException(f"service did not become healthy within 60 s; see {ctx.log_path}")


def stream_players(ctx: DemoContext) -> None:
    """Simulated players stream their events to the service over HTTP, as the Luanti mod does."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from luanti_tune.sim.session import SessionConfig, generate_events, to_service

    config = SessionConfig(
        players=ctx.players, styles=ctx.styles, minutes=ctx.minutes, seed=ctx.seed, source=f"demo-sim-{ctx.seed}"
    )
    started = time.perf_counter()
    with Progress(
        TextColumn("[bold]players playing"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"), TimeElapsedColumn()
    ) as progress:
        task = progress.add_task("sim", total=config.steps)
        events = generate_events(config, on_step=lambda done, total: progress.update(task, completed=done))
        report = to_service(events, ctx.base_url, batch_size=500)
    ctx.results["stream"] = {
        "events": report.events,
        "accepted": report.accepted,
        "duplicates": report.duplicates,
        "batches": report.batches,
        "by_type": report.by_type,
        "seconds": round(time.perf_counter() - started, 2),
        "source": config.resolved_source(),
    }
    ctx.echo(
        f"{ctx.players} simulated players x {ctx.minutes:g} game minutes: sent {report.events} events in "
        f"{report.batches} batches, {report.accepted} accepted, {report.duplicates} duplicates"
    )


def report_storage(ctx: DemoContext) -> None:
    """Ask the service what it stored and print where the events went."""
    import httpx

    stats = httpx.get(f"{ctx.base_url}/v1/events/stats", timeout=10).json()
    ctx.results["stats"] = stats
    ctx.echo(f"events stored: {stats.get('events')} in {ctx.db_url}")
    for t, n in sorted((stats.get("by_type") or {}).items()):
        ctx.echo(f"  {t:18s} {n}")
    sent = ctx.results.get("stream", {}).get("accepted")
    if sent is not None and stats.get("events", 0) < sent:
        raise click.ClickException(f"store holds {stats.get('events')} events but {sent} were accepted")


STAGES: list[Stage] = [
    ("start service", start_service),
    ("simulated players stream events", stream_players),
    ("where the events went", report_storage),
]


def _training_stages() -> list[Stage]:
    from luanti_tune.cli.demo_training import STAGES as TRAINING

    return list(TRAINING)


STAGES += _training_stages()


def add_stage(name: str, fn: Callable[[DemoContext], None], after: str | None = None) -> None:
    """Insert a stage after the stage named ``after`` (default: at the end)."""
    if after is None:
        STAGES.append((name, fn))
        return
    names = [n for n, _ in STAGES]
    STAGES.insert(names.index(after) + 1, (name, fn))


def stop_service(ctx: DemoContext) -> None:
    proc = ctx.proc
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def run_demo(ctx: DemoContext, stages: list[Stage] | None = None) -> dict[str, Any]:
    """Run every stage in order (service always stopped at the end); returns ``ctx.results``."""
    todo = list(STAGES if stages is None else stages)
    started = time.perf_counter()
    try:
        for i, (name, fn) in enumerate(todo, 1):
            ctx.echo(click.style(f"[{i}/{len(todo)}] {name}", bold=True))
            t0 = time.perf_counter()
            fn(ctx)
            ctx.results.setdefault("stage_seconds", {})[name] = round(time.perf_counter() - t0, 2)
    finally:
        stop_service(ctx)
    ctx.results["total_seconds"] = round(time.perf_counter() - started, 2)
    return ctx.results


@click.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the demo's store lives [default: a fresh temporary directory, kept for inspection].",
)
@click.option("--players", default=6, show_default=True, type=click.IntRange(1, 64))
@click.option("--minutes", default=1.5, show_default=True, type=click.FloatRange(0.05, 30), help="Game minutes.")
@click.option("--seed", default=0, show_default=True, type=int)
def demo(data_dir: Path | None, players: int, minutes: float, seed: int) -> None:
    """Run the loop end to end on the simulator: service, simulated players, stored events."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per POST would drown the output
    if data_dir is None:
        data_dir = Path(tempfile.mkdtemp(prefix="luanti-tune-demo-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    ctx = DemoContext(data_dir=data_dir.resolve(), seed=seed, players=players, minutes=minutes)
    results = run_demo(ctx)
    click.echo(f"demo finished in {results['total_seconds']:.1f}s; data in {ctx.data_dir}")
