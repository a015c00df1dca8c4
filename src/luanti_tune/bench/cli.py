"""``luanti-tune bench <name>``: every benchmark prints JSON with its figure and baseline ratio."""

from __future__ import annotations

import click

from luanti_tune.cli.lazy import LazyGroup

BENCHES: dict[str, tuple[str, str]] = {
    "ingest": ("luanti_tune.bench.ingest:ingest", "Durable ingest over HTTP and into the store."),
    "sim": ("luanti_tune.bench.sim:sim", "Simulator agent-steps per second."),
    "train": ("luanti_tune.bench.train:train", "One fine-tuning cycle; ingest while training."),
    "act": ("luanti_tune.bench.act:act", "Batched inference latency for N agents."),
    "dialogue": ("luanti_tune.bench.dialogue:dialogue", "Dialogue model latency and LoRA step time."),
    "luanti": ("luanti_tune.bench.luanti:luanti", "Real server step time with the mod; delivery latency."),
    "team": ("luanti_tune.bench.team:team", "Team model vs independent greedy agents."),
    "navigation": ("luanti_tune.bench.navigation:navigation", "Learned terrain costs vs geometry-only A*."),
    "chase": ("luanti_tune.bench.chase:chase", "Pursuit agent vs a mobs_redo mob chasing a real client."),
    "adapt": ("luanti_tune.bench.adapt:adapt", "Adaptation to unscripted players through the service and worker."),
}


@click.group(cls=LazyGroup, lazy_subcommands=BENCHES)
def bench() -> None:
    """Benchmarks; each prints one JSON line."""
