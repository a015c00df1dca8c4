"""``luanti-tune serve``: run the HTTP service with uvicorn."""

from __future__ import annotations

import gc
import logging
import os
import sys
from pathlib import Path

import click

from luanti_tune.config import load_settings

log = logging.getLogger(__name__)

#: Listen backlog: the Luanti mod and many agents connect in bursts.
#: Generation-0 collection threshold of the service process (CPython default: 700).
GC_THRESHOLD_GEN0 = 50_000
SWITCH_INTERVAL_S = 0.0005
BACKLOG = 2048


@click.command()
@click.option("--db", "db_url", default=None, help="Store URL: sqlite:///PATH or postgresql://... [default: data dir]")
@click.option("--host", default=None, help="Bind address [default 127.0.0.1]; off loopback a token is required.")
@click.option("--port", type=int, default=None, help="Port [default 8765].")
@click.option(
    "--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), default=None, help="TOML config file."
)
@click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info", show_default=True
)
@click.option(
    "--validate-workers",
    type=click.IntRange(min=0),
    default=None,
    help="Processes validating big event batches (0 = in the server process) [default: CPUs if > 1].",
)
@click.option(
    "--worker/--no-worker",
    default=True,
    show_default=True,
    help="Run the background fine-tuning worker in its own process (luanti-tune worker).",
)
def serve(
    db_url: str | None,
    host: str | None,
    port: int | None,
    config_file: Path | None,
    log_level: str,
    validate_workers: int | None,
    worker: bool,
) -> None:
    """Run the service: POST /v1/events, GET /v1/events/stats, /healthz, /metrics and more.

    The token comes from LUANTI_TUNE_TOKEN or the config file (never a flag: flags show in ps).
    """
    import uvicorn

    from luanti_tune.serve.app import create_app

    settings = load_settings(config_file, db_url=db_url, host=host, port=port)
    from luanti_tune.serve.events import configure_validation

    app = create_app(settings)
    if validate_workers is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        validate_workers = min(cpus, 4) if cpus > 1 else 0
    configure_validation(app.state.luanti, validate_workers).warm_up()
    from luanti_tune.serve.act import warm_up as warm_up_act

    warm_up_act(app)  # load and check the champions before the first /v1/act
    # A 1000-agent /v1/act call allocates many short-lived objects; the default generation-0
    # threshold (700) runs the collector dozens of times per call (~7 ms of a ~30 ms call).
    gc.set_threshold(GC_THRESHOLD_GEN0, 20, 20)
    # /v1/act parses on the event loop and decides on the engine thread; a short GIL switch
    # interval hands the GIL over sooner (paired `bench act` runs: 1000-agent p50 7.8 -> 6.2 ms
    # and 9.7 -> 7.7 ms, server CPU per call lower too).
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        backlog=BACKLOG,
        loop="auto",
        http="auto",
        access_log=False,
        log_level=log_level,
        timeout_keep_alive=30,
        server_header=False,
    )
    store_kind = settings.resolved_db_url.split(":", 1)[0]
    click.echo(
        f"luanti-tune serving on http://{settings.host}:{settings.port} (store: {store_kind}, "
        f"auth: {'bearer token' if settings.token else 'none, loopback only'})",
        err=True,
    )
    worker_proc = None
    if worker:
        from luanti_tune.worker.loop import WorkerConfig, start_worker_process

        # no base-model bootstrap here: `luanti-tune train pursuit --base` or `luanti-tune worker` does that
        worker_proc, worker_stop = start_worker_process(settings, WorkerConfig(bootstrap=False))
    try:
        uvicorn.Server(config).run()
    finally:
        if worker_proc is not None:
            worker_stop.set()
            worker_proc.join(10)
            if worker_proc.is_alive():
                worker_proc.terminate()
                worker_proc.join(5)
