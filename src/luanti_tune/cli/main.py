"""``luanti-tune`` command line. Each subcommand lives in its layer and is imported lazily."""

from __future__ import annotations

import logging
import sys

import click

from luanti_tune.cli.lazy import LazyGroup
from luanti_tune.errors import LuantiTuneError

COMMANDS: dict[str, tuple[str, str]] = {
    "schema": ("luanti_tune.cli.schema_cmd:schema", "Print the JSON Schema of a wire contract."),
    "serve": ("luanti_tune.serve.cli:serve", "Run the HTTP service (ingest, act, chat, metrics)."),
    "events": ("luanti_tune.store.cli:events", "Count, query and export stored events."),
    "sim": ("luanti_tune.sim.cli:sim", "Run or render the built-in voxel simulator."),
    "datasets": ("luanti_tune.datasets.cli:datasets", "Build reproducible datasets from the store."),
    "models": ("luanti_tune.registry.cli:models", "List, show, promote, roll back, export models."),
    "train": ("luanti_tune.trainers.cli:train", "Run one training cycle by hand."),
    "worker": ("luanti_tune.worker.cli:worker", "Run the background fine-tuning worker."),
    "luanti": ("luanti_tune.luanti.cli:luanti", "Run a real Luanti server with the mod installed."),
    "analyze": ("luanti_tune.analysis.cli:analyze", "Analyse players and agent behaviour."),
    "dialogue": ("luanti_tune.dialogue.cli:dialogue", "NPC dialogue datasets and LoRA fine-tuning."),
    "bench": ("luanti_tune.bench.cli:bench", "Benchmarks (print JSON with figure and baseline ratio)."),
    "demo": ("luanti_tune.cli.demo:demo", "Run the whole loop end to end on the simulator."),
}


@click.group(cls=LazyGroup, lazy_subcommands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.version_option(package_name="luanti-tune")
def cli(verbose: int) -> None:
    """luanti-tune: Luanti agents that learn from the people who play with them."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main() -> None:
    try:
        cli(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except LuantiTuneError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
