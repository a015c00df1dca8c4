"""``luanti-tune bench train``: one full fine-tuning cycle (dataset build + fine-tune + gate) on
10,000 and 100,000 new events, and store ingest throughput while the cycle runs vs idle.

Each size runs the cycle twice on the same events: alone (``cycle_alone_s``, on a copy of the
registry) and while this process ingests flat out (``cycle_s``; the niced cycle yields CPU to
ingest, which is the point, so it takes longer).

The cycle runs the way the worker runs it: in a separate (spawned) process with one torch thread
and lowered CPU priority, reading the same SQLite store the ingest loop writes to. Ingest is
measured in this process as validated events appended per second (``parse_event`` +
``store.append`` in batches of 500, the service's path without HTTP). The ingest load is
``player.move``-shaped events of a mob actor, so no pursuit dataset (players only) trains on it
and every measured cycle learns from exactly its simulated new events.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from luanti_tune.bench.common import emit


def _fresh_events(n: int, seed: int) -> list[dict[str, Any]]:
    """About ``n`` new simulated events (unseen styles, distinct seeds = distinct episodes)."""
    from luanti_tune.sim.styles import HELDOUT_STYLES
    from luanti_tune.trainers import pursuit as tp

    out: list[dict[str, Any]] = []
    k = 0
    while len(out) < n:
        out += tp.simulated_events(HELDOUT_STYLES, minutes=0.5, seed=seed + k, sessions=1)
        k += 1
    return out[:n]


def _cycle_child(db_url: str, model_root: str, after: int, until: int, seed: int, out: str) -> None:
    from luanti_tune.registry import Registry
    from luanti_tune.store import open_store
    from luanti_tune.trainers import pursuit as tp
    from luanti_tune.trainers.common import CycleContext, configure_torch, guarded_cycle

    configure_torch(1, nice=19)  # as the worker process
    t0 = time.perf_counter()
    with open_store(db_url) as store:
        ctx = CycleContext(store, Registry(model_root), after, until, seed=seed)
        result = guarded_cycle("pursuit", ctx, tp.run_cycle)
    data = result.to_dict()
    data["child_wall_s"] = time.perf_counter() - t0
    Path(out).write_text(json.dumps(data, default=str))


def _ingest_for(
    store: Any, pool: list[dict[str, Any]], seconds: float, seq0: int, until: Any = None
) -> tuple[float, int]:
    """Append batches until ``seconds`` pass (or ``until()`` is true); returns (events/s, next seq)."""
    from luanti_tune.schemas.event import parse_event

    n = 0
    seq = seq0
    start = time.perf_counter()
    i = 0
    while True:
        batch = []
        for _ in range(500):
            ev = dict(pool[i % len(pool)])
            i += 1
            ev["source"] = "bench-ingest"
            ev["actor"] = {"kind": "mob", "name": "bench-mob"}  # same shape; not a player: no dataset sees it
            ev["seq"] = seq
            ev.pop("episode_id", None)
            ev.pop("event_id", None)
            seq += 1
            batch.append(parse_event(ev))
        store.append(batch)
        n += len(batch)
        elapsed = time.perf_counter() - start
        if (until is not None and until()) or (until is None and elapsed >= seconds):
            break
    return n / max(elapsed, 1e-9), seq


@click.command()
@click.option("--events", "sizes", multiple=True, type=int, default=(10_000, 100_000), show_default=True)
@click.option("--ingest-seconds", type=float, default=5.0, show_default=True, help="Idle ingest measurement.")
@click.option("--seed", type=int, default=0, show_default=True)
def train(sizes: tuple[int, ...], ingest_seconds: float, seed: int) -> None:
    """Wall time of one fine-tuning cycle per size; ingest while training as a ratio of idle."""
    from rich.progress import Progress

    from luanti_tune.registry import Registry
    from luanti_tune.sim.session import to_store
    from luanti_tune.store import open_store
    from luanti_tune.trainers import pursuit as tp
    from luanti_tune.trainers.common import FitConfig, configure_torch

    configure_torch(1)
    tmp = Path(tempfile.mkdtemp(prefix="bench-train-"))
    db_url = f"sqlite:///{tmp / 'events.db'}"
    reg = Registry(tmp / "models")
    cycles: dict[str, Any] = {}
    figures: dict[str, Any] = {"cycles": cycles, "setup": {}}
    with Progress(transient=True) as progress:
        task = progress.add_task("base model + simulated players", total=None)
        t0 = time.perf_counter()
        tp.bootstrap_base(
            reg, minutes=0.75, seed=seed, sessions=1, cfg=FitConfig(steps=600, lr=3e-3, replay_fraction=0.0)
        )
        figures["setup"]["base_model_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        pool = tp.simulated_events(("circler",), minutes=1.0, seed=seed + 50, sessions=1)
        figures["setup"]["simulate_pool_s"] = round(time.perf_counter() - t0, 2)
        moves = [e for e in pool if e["type"] == "player.move"]
        progress.update(task, description="idle ingest")
        ctx = mp.get_context("spawn")
        with open_store(db_url) as store:
            idle_rate, seq = _ingest_for(store, moves, 1.0, 0)  # warm-up (page cache, WAL)
            ratios: list[float] = []
            for size in sizes:
                after = store.max_id()
                progress.update(task, description=f"simulating {size} new events")
                fresh = _fresh_events(size, seed + 100 + len(ratios) * 1000)
                to_store(fresh, store, batch_size=5000)
                until = store.max_id()
                out = tmp / f"cycle-{size}.json"
                # the same cycle with nothing else running here (on a copy of the registry)
                progress.update(task, description=f"cycle on {size} events, no ingest")
                alone_root = tmp / f"models-alone-{size}"
                shutil.copytree(reg.root, alone_root)
                alone_out = tmp / f"cycle-alone-{size}.json"
                proc = ctx.Process(
                    target=_cycle_child, args=(db_url, str(alone_root), after, until, seed, str(alone_out))
                )
                proc.start()
                proc.join()
                alone: dict[str, Any] = json.loads(alone_out.read_text()) if alone_out.exists() else {"timings": {}}
                # idle ingest right before the cycle, so both rates see the same machine load
                progress.update(task, description=f"idle ingest before the {size}-event cycle")
                idle_rate, seq = _ingest_for(store, moves, ingest_seconds, seq)
                progress.update(task, description=f"cycle on {size} events")
                proc = ctx.Process(target=_cycle_child, args=(db_url, str(reg.root), after, until, seed, str(out)))
                t0 = time.perf_counter()
                proc.start()
                busy_rate, seq = _ingest_for(store, moves, 0, seq, until=lambda p=proc: not p.is_alive())  # type: ignore[misc]
                proc.join()
                wall = time.perf_counter() - t0
                crashed: dict[str, Any] = {"status": "crashed", "timings": {}}
                res: dict[str, Any] = json.loads(out.read_text()) if out.exists() else crashed
                ratio = busy_rate / idle_rate if idle_rate else 0.0
                ratios.append(ratio)
                figures["cycles"][str(size)] = {
                    "status": res.get("status"),
                    "reason": res.get("reason"),
                    "cycle_s": round(float(res.get("timings", {}).get("total_s", float("nan"))), 2),
                    "timings": res.get("timings"),
                    "process_wall_s": round(wall, 2),
                    "cycle_alone_s": round(float(alone.get("timings", {}).get("total_s", float("nan"))), 2),
                    "alone_timings": alone.get("timings"),
                    "ingest_idle_events_per_s": round(idle_rate),
                    "ingest_events_per_s": round(busy_rate),
                    "ingest_ratio_vs_idle": round(ratio, 3),
                }
    c10: dict[str, Any] = cycles.get("10000", {})
    figures["cycle_10k_s"] = c10.get("cycle_s")
    figures["cycle_10k_alone_s"] = c10.get("cycle_alone_s")
    figures["target_cycle_10k_s"] = 30
    figures["ingest_ratio_min"] = round(min(ratios), 3) if ratios else None
    figures["target_ingest_ratio"] = 0.7
    figures["data_dir"] = str(tmp)
    emit("train", figures)
