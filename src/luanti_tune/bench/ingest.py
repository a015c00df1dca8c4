"""``luanti-tune bench ingest``: sustained durable ingest, end to end over HTTP and into the store.

Figures (events/s, all durable: a batch counts only once its commit returned):
- ``http_sqlite_eps``: concurrent clients POST batches of ``--batch`` events to a real
  ``luanti-tune serve`` subprocess (uvicorn, real socket) backed by SQLite;
- ``store_sqlite_eps``: the SQLite store alone, same batches (one commit each), rows prepared
  beforehand; ``store_sqlite_group8_eps``: the same with 8 batches per commit (group commit);
- ``naive_sqlite_eps``: baseline, the same store with one commit per event;
- the same three for PostgreSQL (a throwaway cluster is started unless ``--pg-url`` is given);
- ratios of each against its backend's naive baseline measured in the same run.
"""

from __future__ import annotations

import http.client
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import orjson

SOURCE_PREFIX = "bench"
#: Batches per transaction in the store-only group-commit figure.
GROUP = 8


def make_events(source: str, start_seq: int, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` valid wire events of mixed types (mostly ``player.move``) with seq from ``start_seq``."""
    rng = random.Random(f"{source}:{start_seq}:{seed}")
    players = ("alice", "bob", "carol", "dave")
    out: list[dict[str, Any]] = []
    for i in range(n):
        seq = start_seq + i
        name = players[seq % len(players)]
        ev: dict[str, Any] = {
            "schema": "luanti.event/1",
            "event_id": f"{source}-{seq}",
            "source": source,
            "seq": seq,
            "time": {"wall_us": 1_764_150_000_000_000 + seq * 50_000, "game_s": round(seq * 0.05, 3), "tick": seq},
            "actor": {"kind": "player", "name": name},
            "pos": {"x": round(rng.uniform(-100, 100), 2), "y": round(rng.uniform(0, 30), 2), "z": -3.25},
            "episode_id": f"ep-{seq // 1000}",
        }
        r = rng.random()
        if r < 0.85:
            ev["type"] = "player.move"
            ev["payload"] = {
                "velocity": {"x": round(rng.uniform(-4, 4), 3), "y": 0, "z": round(rng.uniform(-4, 4), 3)},
                "yaw": round(rng.uniform(0, 6.28), 3),
                "pitch": 0,
                "controls": {"up": rng.random() < 0.5, "jump": rng.random() < 0.1},
            }
        elif r < 0.92:
            ev["type"] = "node.dig"
            ev["payload"] = {"node": "default:stone", "item": "default:cobble"}
        elif r < 0.97:
            ev["type"] = "player.hp"
            ev["payload"] = {"hp": float(rng.randint(0, 20)), "delta": -1.0, "reason": "fall"}
        else:
            ev["type"] = "chat.msg"
            ev["payload"] = {"message": f"hello from {name} #{seq}"}
        out.append(ev)
    return out


def batch_body(events: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"events": events})


# ----------------------------------------------------------------------------- store-only


def _prepared_batches(n_events: int, batch: int, source: str) -> list[list[Any]]:
    from luanti_tune.schemas.event import EventBatch
    from luanti_tune.store.rows import event_row

    batches = []
    for start in range(0, n_events, batch):
        events = EventBatch.model_validate({"events": make_events(source, start, min(batch, n_events - start))}).events
        batches.append([event_row(e) for e in events])
    return batches


def bench_store(url: str, n_events: int, batch: int, naive_events: int, tag: str) -> dict[str, float]:
    """Store-only throughput with batches of ``batch`` and with one commit per event."""
    from luanti_tune.store.base import open_store
    from luanti_tune.store.rows import RowStore

    batches = _prepared_batches(n_events, batch, f"{SOURCE_PREFIX}-{tag}-store")
    grouped = _prepared_batches(n_events, batch, f"{SOURCE_PREFIX}-{tag}-group")
    naive = _prepared_batches(naive_events, 1, f"{SOURCE_PREFIX}-{tag}-naive")
    store = open_store(url)
    assert isinstance(store, RowStore)
    try:
        t0 = time.perf_counter()
        accepted = sum(store.append_rows(rows).accepted for rows in batches)
        batched_s = time.perf_counter() - t0
        # what the service's group commit does under concurrency: several batches per transaction
        t0 = time.perf_counter()
        for i in range(0, len(grouped), GROUP):
            accepted_g = sum(r.accepted for r in store.append_batches(grouped[i : i + GROUP]))
            if accepted_g != sum(len(b) for b in grouped[i : i + GROUP]):
                raise click.ClickException("store lost events in a group commit")
        grouped_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        naive_accepted = sum(store.append_rows(rows).accepted for rows in naive)
        naive_s = time.perf_counter() - t0
    finally:
        store.close()
    if accepted != n_events or naive_accepted != naive_events:
        raise click.ClickException(f"store lost events: {accepted}/{n_events}, {naive_accepted}/{naive_events}")
    return {
        "store_eps": accepted / batched_s,
        "store_group_eps": n_events / grouped_s,
        "naive_eps": naive_accepted / naive_s,
    }


# ----------------------------------------------------------------------------- HTTP


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise click.ClickException(f"server exited early with code {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            time.sleep(0.1)
    raise click.ClickException("server did not become ready")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    db_url: str,
    data_dir: Path,
    extra_env: dict[str, str] | None = None,
    host: str = "127.0.0.1",
    validate_workers: int | None = None,
    *,
    worker: bool = False,
) -> tuple[subprocess.Popen[bytes], int]:
    """Run ``luanti-tune serve`` in its own session on a free port; returns (process, port) once ready.
    ``worker``: with its training worker (benchmarks of serving alone run without)."""
    port = _free_port()
    env = dict(os.environ, LUANTI_TUNE_DATA_DIR=str(data_dir), **(extra_env or {}))
    cmd = [sys.executable, "-c", "from luanti_tune.cli.main import main; main()", "serve", "--db", db_url]
    cmd += ["--host", host, "--port", str(port), "--log-level", "warning"]
    if not worker:  # a training worker would compete for the CPU and train on the benchmark's events
        cmd.append("--no-worker")
    if validate_workers is not None:
        cmd += ["--validate-workers", str(validate_workers)]
    log_path = data_dir / f"serve-{port}.log"
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log_file, start_new_session=True)
    try:
        _wait_ready(port, proc)
    except BaseException as exc:
        proc.kill()
        proc.wait()
        tail = log_path.read_text(errors="replace")[-2000:]
        raise click.ClickException(f"luanti-tune serve did not start: {exc}\n{tail}") from exc
    return proc, port


def _client(port: int, bodies: list[bytes], n_events: list[int], stop: Callable[[], bool], out: list[int]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    sent = 0
    for body, n in zip(bodies, n_events, strict=True):
        if stop():
            break
        conn.request("POST", "/v1/events", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        payload = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {payload[:200]!r}")
        sent += n
    conn.close()
    out.append(sent)


def bench_http(port: int, clients: int, batch: int, seconds: float, tag: str) -> dict[str, float]:
    """Concurrent clients POST pre-encoded batches for ``seconds``; durable events/s."""
    per_client = max(4, int(100_000 * seconds / batch / clients) + 4)
    work: list[tuple[list[bytes], list[int]]] = []
    for c in range(clients):
        source = f"{SOURCE_PREFIX}-{tag}-http-{c}-{time.time_ns()}"
        bodies = [batch_body(make_events(source, i * batch, batch)) for i in range(per_client)]
        work.append((bodies, [batch] * per_client))
    deadline = [0.0]
    done: list[int] = []
    threads = [
        threading.Thread(
            target=_client, args=(port, b, n, lambda: time.perf_counter() > deadline[0], done), daemon=True
        )
        for b, n in work
    ]
    t0 = time.perf_counter()
    deadline[0] = t0 + seconds
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if len(done) != clients:
        raise click.ClickException("an HTTP client failed (see traceback above)")
    total = sum(done)
    return {"http_eps": total / elapsed, "http_events": float(total), "http_seconds": elapsed}


def group_cpu_seconds(pgid: int) -> float:
    """User+system CPU seconds of every live process in process group ``pgid`` (Linux /proc)."""
    total = 0
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # after "pid (comm)": state ppid pgrp ... utime is field 14, stime 15 (1-based, whole line)
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / tick


def _run_backend(tag: str, url: str, data_dir: Path, opts: dict[str, Any]) -> dict[str, float]:
    from luanti_tune.bench.common import stop_process

    figures = bench_store(url, opts["store_events"], opts["batch"], opts["naive_events"], tag)
    proc, port = start_server(url, data_dir, validate_workers=opts["validate_workers"])
    try:
        cpu0 = group_cpu_seconds(proc.pid)
        figures |= bench_http(port, opts["clients"], opts["batch"], opts["seconds"], tag)
        cpu = group_cpu_seconds(proc.pid) - cpu0
        figures["server_cpu_us_per_event"] = cpu / max(figures["http_events"], 1.0) * 1e6
    finally:
        stop_process(proc)
    return figures


@click.command()
@click.option("--batch", type=click.IntRange(1, 10_000), default=256, show_default=True, help="Events per batch.")
@click.option("--clients", type=click.IntRange(1, 64), default=4, show_default=True, help="Concurrent HTTP clients.")
@click.option("--seconds", type=click.FloatRange(0.5, 600), default=5.0, show_default=True, help="HTTP phase length.")
@click.option("--store-events", type=click.IntRange(256), default=200_000, show_default=True)
@click.option("--naive-events", type=click.IntRange(10), default=2_000, show_default=True)
@click.option("--pg-url", default=None, help="Use this PostgreSQL database instead of a throwaway cluster.")
@click.option("--no-pg", is_flag=True, help="Skip PostgreSQL.")
@click.option(
    "--validate-workers", type=click.IntRange(min=0), default=None, help="Server validation processes [default: auto]."
)
def ingest(
    batch: int,
    clients: int,
    seconds: float,
    store_events: int,
    naive_events: int,
    pg_url: str | None,
    no_pg: bool,
    validate_workers: int | None,
) -> None:
    """Durable ingest: HTTP end to end, store alone, naive one-commit-per-event baseline."""
    from luanti_tune.bench.common import emit

    opts = {
        "batch": batch,
        "clients": clients,
        "seconds": seconds,
        "store_events": store_events,
        "naive_events": naive_events,
        "validate_workers": validate_workers,
    }
    figures: dict[str, Any] = {
        "batch": batch,
        "clients": clients,
        "validate_workers": "auto" if validate_workers is None else validate_workers,
        "loadavg_1m_before": round(os.getloadavg()[0], 2),
    }
    with tempfile.TemporaryDirectory(prefix="luanti-tune-bench-") as tmp:
        data_dir = Path(tmp)
        sq = _run_backend("sqlite", f"sqlite:///{data_dir / 'bench.db'}", data_dir, opts)
        figures |= _figures("sqlite", sq)
        if not no_pg:
            figures |= _pg_figures(pg_url, data_dir, opts)
    figures["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
    emit("ingest", figures)


def _figures(tag: str, f: dict[str, float]) -> dict[str, Any]:
    naive = f["naive_eps"]
    return {
        f"http_{tag}_eps": round(f["http_eps"]),
        # CPU the server (with its validation workers) spent per event: a figure that does not
        # depend on how busy the machine was; 2 cores / this = the idle-machine ceiling
        f"http_{tag}_server_cpu_us_per_event": round(f["server_cpu_us_per_event"], 1),
        f"store_{tag}_eps": round(f["store_eps"]),
        f"store_{tag}_group{GROUP}_eps": round(f["store_group_eps"]),
        f"naive_{tag}_eps": round(naive),
        f"http_{tag}_vs_naive": round(f["http_eps"] / naive, 1),
        f"store_{tag}_vs_naive": round(f["store_eps"] / naive, 1),
    }


def _pg_figures(pg_url: str | None, data_dir: Path, opts: dict[str, Any]) -> dict[str, Any]:
    if pg_url is not None:
        return _figures("postgres", _run_backend("postgres", pg_url, data_dir, opts))
    from luanti_tune.store.pgcluster import start_cluster

    try:
        cluster = start_cluster()
    except RuntimeError as exc:
        return {"postgres_skipped": str(exc)}
    with cluster:
        return _figures("postgres", _run_backend("postgres", cluster.url, data_dir, opts))
