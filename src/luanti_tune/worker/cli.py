"""``luanti-tune worker``: run the background fine-tuning worker in this process."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import click

from luanti_tune.config.settings import load_settings


@click.command()
@click.option("--config", type=click.Path(path_type=Path), default=None, help="TOML config file.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="Data directory.")
@click.option("--db", "db_url", default=None, help="Store URL (sqlite:///PATH or postgresql://...).")
@click.option("--model-path", type=click.Path(path_type=Path), default=None, help="Model registry root.")
@click.option("--training-interval", type=int, default=None, help="Train after this many new events.")
@click.option("--min-training-seconds", type=float, default=None, help="Minimum wall time between cycles.")
@click.option("--torch-threads", type=int, default=None, help="Torch threads of the worker.")
@click.option("--family", "families", multiple=True, help="Families to train (repeatable) [default: all].")
@click.option("--poll", "poll_s", type=float, default=2.0, show_default=True, help="Seconds between polls.")
@click.option("--once", is_flag=True, help="Run one cycle now over all new events, print the results, exit.")
@click.option("--bootstrap/--no-bootstrap", default=True, show_default=True, help="Pre-train base models if missing.")
def worker(
    config: Path | None,
    data_dir: Path | None,
    db_url: str | None,
    model_path: Path | None,
    training_interval: int | None,
    min_training_seconds: float | None,
    torch_threads: int | None,
    families: tuple[str, ...],
    poll_s: float,
    once: bool,
    bootstrap: bool,
) -> None:
    """Fine-tune models every training_interval new events; gate, promote, monitor, roll back."""
    from luanti_tune.worker.loop import Worker, WorkerConfig, configure_process

    settings = load_settings(
        config,
        data_dir=data_dir,
        db_url=db_url,
        model_path=model_path,
        training_interval=training_interval,
        min_training_seconds=min_training_seconds,
        torch_threads=torch_threads,
    )
    from luanti_tune.trainers import CYCLES

    unknown = sorted(set(families) - set(CYCLES))
    if unknown:
        raise click.BadParameter(f"unknown {', '.join(unknown)}; known: {', '.join(CYCLES)}", param_hint="--family")
    cfg = WorkerConfig(families=families or tuple(CYCLES), poll_s=poll_s, bootstrap=bootstrap, nice=0 if once else 19)
    configure_process(settings, cfg.nice)
    w = Worker(settings, cfg)
    try:
        if once:
            if bootstrap:
                w.bootstrap()
            for result in w.poll_once(force=True):
                click.echo(json.dumps(result.to_dict()))
            return
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        click.echo(f"worker: store {settings.resolved_db_url}, models {settings.resolved_model_path}", err=True)
        w.run(stop)
    finally:
        w.close()
