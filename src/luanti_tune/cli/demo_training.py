"""Demo stages of the continuous fine-tuning loop (appended to :data:`luanti_tune.cli.demo.STAGES`).

1. base model: pre-trained on simulated players of the training styles, promoted as champion;
2. new players, alice and bob, play the way the base never saw (the simulator's held-out
   styles; nothing in the data says so), chased by an enemy, and their events stream to the service;
3. the worker (``luanti-tune worker --once``, its own process) builds the dataset, fine-tunes
   from the champion with replay, runs the gate (their recorded behaviour; the scripted population
   as a guard), then adapts a champion per player (``pursuit@alice``, ``pursuit@bob``);
4. before/after: prediction error and pursuit episodes of base vs fine-tuned vs the model served
   to each player vs pure pursuit, printed as a table and saved as a plot.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from luanti_tune.cli.demo import DemoContext


#: The demo's new players; they play the simulator's held-out styles, in this order (only the demo knows).
PLAYERS = ("alice", "bob")


def _registry(ctx: DemoContext) -> Any:
    from luanti_tune.registry import Registry

    return Registry(ctx.data_dir / "models")


def base_model(ctx: DemoContext) -> None:
    """Pre-train the pursuit base model on simulated players (training styles only)."""
    from luanti_tune.trainers import pursuit as tp
    from luanti_tune.trainers.common import configure_torch

    configure_torch(1)
    reg = _registry(ctx)
    if reg.champion_version("pursuit") is None:
        tp.bootstrap_base(reg, minutes=1.0, seed=ctx.seed, sessions=1)
    m = reg.manifest("pursuit", "champion")
    ctx.results["base"] = {"version": m["version"], "styles": m["dataset"].get("simulated", {}).get("styles")}
    ctx.echo(f"base pursuit model {m['version']} trained on styles {', '.join(ctx.results['base']['styles'] or [])}")


def new_players(ctx: DemoContext) -> None:
    """Players with styles the base model never saw play against the enemy; events go to the service."""
    import httpx

    from luanti_tune.sim.session import to_service
    from luanti_tune.sim.styles import HELDOUT_STYLES
    from luanti_tune.trainers import pursuit as tp

    # events streamed so far (training styles) are what the base model already covers
    ctx.results["heldout_after_id"] = int(
        httpx.get(f"{ctx.base_url}/v1/events/stats", timeout=10).json().get("max_id") or 0
    )
    events = tp.simulated_events(HELDOUT_STYLES, minutes=1.0, seed=ctx.seed + 50, sessions=3, names=PLAYERS)
    report = to_service(events, ctx.base_url, batch_size=500)
    ctx.results["heldout_stream"] = {
        "players": dict(zip(PLAYERS, HELDOUT_STYLES, strict=True)),
        "events": report.events,
        "accepted": report.accepted,
    }
    ctx.echo(
        f"new players {', '.join(PLAYERS)} (styles {', '.join(HELDOUT_STYLES)}, unseen by the base model):"
        f" {report.accepted} new events stored"
    )


def worker_cycle(ctx: DemoContext) -> None:
    """The fine-tuning worker runs one cycle in its own process: dataset, fine-tune, gate, promote."""
    from luanti_tune.cli.demo import _cli_cmd
    from luanti_tune.worker.loop import WorkerState

    # the worker's cursor starts after the events the base model already covers
    state_path = ctx.data_dir / "worker" / "state.json"
    state = WorkerState.load(state_path)
    state.cursors.setdefault("pursuit", int(ctx.results.get("heldout_after_id") or 0))
    state.save(state_path)

    env = {k: v for k, v in os.environ.items() if not k.startswith("LUANTI_TUNE_")}
    env.update({"LUANTI_TUNE_DATA_DIR": str(ctx.data_dir), "HF_HUB_OFFLINE": "1"})
    cmd = [
        *_cli_cmd(),
        "worker",
        "--once",
        "--no-bootstrap",
        "--family",
        "pursuit",
        "--db",
        ctx.db_url or f"sqlite:///{ctx.data_dir / 'events.db'}",
    ]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    if out.returncode != 0:
        raise click.ClickException(f"worker failed ({out.returncode}): {out.stderr[-2000:]}")
    results = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    cycle: dict[str, Any] = next((r for r in results if r.get("family") == "pursuit"), {})
    ctx.results["cycle"] = {**cycle, "wall_s": round(time.perf_counter() - t0, 2)}
    for scope, res in ((cycle.get("figures") or {}).get("scopes") or {}).items():
        ctx.echo(f"  {scope}: {res['status']} {res.get('version') or ''} ({res['reason']})")
    gate_sim = (cycle.get("figures") or {}).get("sim", {})
    ctx.echo(f"worker cycle: {cycle.get('status')} {cycle.get('version') or ''} ({cycle.get('reason')})")
    gate_val = cycle.get("figures") or {}
    if gate_val.get("candidate"):
        ctx.echo(
            f"  gate held-out error: candidate {gate_val['candidate']['ade']:.3f} vs champion "
            f"{gate_val['champion']['ade']:.3f} nodes on {gate_val.get('val_windows')} windows"
        )
    if gate_sim:
        c, h = gate_sim["candidate"], gate_sim["champion"]
        ctx.echo(f"  gate sim: candidate {c['mean_time']:.2f}s vs champion {h['mean_time']:.2f}s mean time to catch")


def before_after(ctx: DemoContext) -> None:
    """Base vs fine-tuned vs scripted pursuit on the unseen styles: table + plot."""
    from rich.console import Console
    from rich.table import Table

    from luanti_tune.datasets.pursuit import PursuitSpec, build_from_store
    from luanti_tune.policies import pursuit as fam
    from luanti_tune.policies.families import ModelPolicy
    from luanti_tune.policies.scripted import InterceptPolicy, PurePursuitPolicy
    from luanti_tune.sim.styles import HELDOUT_STYLES
    from luanti_tune.store import open_store
    from luanti_tune.trainers import pursuit as tp

    reg = _registry(ctx)
    tuned = reg.load("pursuit", "champion")
    base_version = ctx.results.get("base", {}).get("version") or reg.versions("pursuit")[0]
    base = reg.load("pursuit", base_version)
    with open_store(ctx.db_url or f"sqlite:///{ctx.data_dir / 'events.db'}") as store:
        spec = PursuitSpec.from_arch(tuned.manifest["architecture"])
        val = build_from_store(store, spec, after_id=int(ctx.results.get("heldout_after_id") or 0)).val()
    episodes = 6  # per player, fixed seeds

    def chase(policy_of: Any) -> dict[str, float]:
        """Mean over the players of episodes against each, ``policy_of(player)`` chasing."""
        runs = [
            tp.simulate(
                policy_of(player),
                tp.SimEvalConfig(styles=(style,), episodes=episodes, max_steps=300, seed=ctx.seed + 7),
            )
            for player, style in zip(PLAYERS, HELDOUT_STYLES, strict=True)
        ]
        return {k: sum(r[k] for r in runs) / len(runs) for k in ("catch_rate", "mean_time")}

    # what each player meets: their own champion where one was promoted, else the population's
    def served(player: str) -> Any:
        scope = tp.scope_name((player,))
        m = reg.load(scope, "champion") if reg.champion_version(scope) else tuned
        return ModelPolicy(m.module, m.adapter, f"{m.family} {m.version}")

    scopes = ", ".join(f"{p}: {served(p).name}" for p in PLAYERS)
    rows: list[dict[str, Any]] = []
    policies: list[tuple[str, Any, Any]] = [
        ("pure pursuit (scripted)", lambda _p: PurePursuitPolicy(), None),
        ("constant-velocity intercept (scripted)", lambda _p: InterceptPolicy(), None),
        (f"base model {base.version}", lambda _p: ModelPolicy(base.module, base.adapter), base.module),
        (f"population model {tuned.version}", lambda _p: ModelPolicy(tuned.module, tuned.adapter), tuned.module),
        (f"served per player ({scopes})", served, None),
    ]
    for name, policy_of, module in policies:
        err = fam.evaluate(module, val)["ade"] if module is not None else None
        rows.append({"policy": name, "prediction_error": err, **chase(policy_of)})
    cv = fam.baseline_metrics(val, tuned.manifest["architecture"]["horizons"])["ade"]
    rows[1]["prediction_error"] = cv
    table = Table(title=f"pursuit vs the new players {', '.join(PLAYERS)} ({episodes} episodes each, fixed seeds)")
    for col in ("policy", "mean error (nodes)", "catch rate", "mean time to catch (s)"):
        table.add_column(col)
    for r in rows:
        e = r["prediction_error"]
        table.add_row(r["policy"], "-" if e is None else f"{e:.3f}", f"{r['catch_rate']:.2f}", f"{r['mean_time']:.2f}")
    Console().print(table)
    ctx.results["before_after"] = rows
    path = ctx.data_dir / "pursuit_before_after.png"
    _plot(rows, path)
    ctx.results["plot"] = str(path)
    ctx.echo(f"plot saved to {path}")


def _plot(rows: list[dict[str, Any]], path: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["policy"].split(" (")[0] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].bar(names, [r["mean_time"] for r in rows], color=["#999", "#bbb", "#69c", "#2a7", "#c72"][: len(rows)])
    axes[0].set_ylabel("mean time to catch (s, lower is better)")
    errs = [(n, r["prediction_error"]) for n, r in zip(names, rows, strict=True) if r["prediction_error"] is not None]
    axes[1].bar([n for n, _ in errs], [e for _, e in errs], color=["#bbb", "#69c", "#2a7"][-len(errs) :])
    axes[1].set_ylabel("mean displacement error (nodes)")
    for ax in axes:
        ax.tick_params(axis="x", labelrotation=15, labelsize=8)
    fig.suptitle("Pursuit against player styles the base model never saw")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


STAGES = [
    ("pursuit base model (simulated training styles)", base_model),
    ("new players with unseen styles", new_players),
    ("worker fine-tunes, gate decides", worker_cycle),
    ("before / after", before_after),
]
