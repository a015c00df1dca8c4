"""``luanti-tune bench luanti``: real server step time with the mod and 0/10/100 agents versus the
same server without the mod, and event delivery latency from hook to commit (p50/p99).

One run, in this order on one world: no mod (baseline), mod + 0 agents, mod + 10, mod + 100
agents. Agents are navigation agents with a goal, decided by the real service's ``/v1/act``
(started here with a throwaway SQLite store). Per configuration, after a warm-up, a window of
``--seconds`` is measured:

* ``step_ms``: the mean server step interval (the ``dtime`` the engine passes to globalsteps),
  counted by the tiny ``luanti_tune_timing`` helper mod present in every configuration;
* ``work_ms_per_step``: CPU time the server process used per step (``/proc/PID/stat``), i.e. the
  work a step costs, without the idle sleep up to ``dedicated_server_step``.

Ratios are against the no-mod baseline. Delivery latency is measured by the mod itself: from
the hook that built an event to the service's answer, which comes only after the commit.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from luanti_tune.bench.common import emit

log = logging.getLogger(__name__)


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


def _timing(world: Path) -> tuple[int, float]:
    try:
        steps, dsum, _ = (world / "luanti_tune_timing.txt").read_text().split()
        return int(steps), float(dsum)
    except (FileNotFoundError, ValueError):
        return 0, 0.0


def _measure(server: Any, seconds: float) -> dict[str, float]:
    assert server.proc is not None
    pid = server.proc.pid
    time.sleep(0.6)  # a fresh timing sample
    s0, d0 = _timing(server.world)
    c0 = _cpu_seconds(pid)
    time.sleep(seconds)
    s1, d1 = _timing(server.world)
    c1 = _cpu_seconds(pid)
    steps = max(1, s1 - s0)
    return {
        "steps": steps,
        "step_ms": round((d1 - d0) / steps * 1000, 3),
        "work_ms_per_step": round((c1 - c0) / steps * 1000, 3),
    }


@click.command()
@click.option("--seconds", type=float, default=15.0, show_default=True, help="Measured window per configuration.")
@click.option("--warmup", type=float, default=4.0, show_default=True, help="Seconds before each window.")
@click.option("--agents", "agent_counts", default="0,10,100", show_default=True, help="Agent counts with the mod.")
@click.option("--server-bin", type=click.Path(dir_okay=False, path_type=Path), default=None)
def luanti(seconds: float, warmup: float, agent_counts: str, server_bin: Path | None) -> None:
    """Step time with the mod and N agents vs without the mod; delivery latency p50/p99."""
    from rich.progress import Progress

    from luanti_tune.luanti.server import TIMING_MOD_NAME, LuantiServer, find_server_bin
    from luanti_tune.luanti.service import ServiceProcess

    counts = [int(x) for x in agent_counts.split(",") if x.strip()]
    binary = find_server_bin(server_bin)
    with tempfile.TemporaryDirectory(prefix="luanti-bench-") as tmp:
        root = Path(tmp)
        service = ServiceProcess(
            db_url=f"sqlite:///{root / 'events.db'}", port=_free_port(socket.SOCK_STREAM), log_path=root / "service.log"
        )
        service.start()
        results: dict[str, Any] = {}
        try:
            configs: list[tuple[str, bool, int]] = [("no_mod", False, 0)] + [(f"mod_{n}", True, n) for n in counts]
            with Progress(transient=True) as progress:
                task = progress.add_task("bench luanti", total=len(configs))
                for name, with_mod, n in configs:
                    server = LuantiServer(
                        world=root / f"world-{name}",  # fresh world: no agents left from a previous run
                        port=_free_port(socket.SOCK_DGRAM),
                        service_url=service.url,
                        server_bin=binary,
                        with_mod=with_mod,
                        with_ctl=with_mod,
                        extra_mods=(TIMING_MOD_NAME,),
                        settings={"mg_name": "flat", "luanti_tune.stats_interval": 1},
                    )
                    server.start()
                    try:
                        if with_mod and n:
                            server.ctl(f"spawn_many navigation {n} 0 9 0 40 9 40")
                            server.wait_state(lambda s, n=n: s["status"]["agents"] >= n, timeout=60)
                        time.sleep(warmup)
                        figures = _measure(server, seconds)
                        if with_mod:
                            status = server.ctl_state().get("status", {})
                            figures["agents"] = status.get("agents", 0)
                            figures["act_requests"] = status.get("act", {}).get("requests", 0)
                            figures["act_failures"] = status.get("act", {}).get("failures", 0)
                            figures["events_sent"] = status.get("delivery", {}).get("sent", 0)
                            figures["latency_p50_ms"] = status.get("steps", {}).get("latency_p50_ms")
                            figures["latency_p99_ms"] = status.get("steps", {}).get("latency_p99_ms")
                            server.ctl("clear")
                            server.wait_state(lambda s: s["status"]["agents"] == 0, timeout=30)
                        results[name] = figures
                    finally:
                        server.stop()
                    progress.advance(task)
        finally:
            service.stop()
    base = results["no_mod"]
    for name, fig in results.items():
        if name != "no_mod":
            fig["step_ratio"] = round(fig["step_ms"] / base["step_ms"], 4)
            fig["work_ratio"] = round(fig["work_ms_per_step"] / max(base["work_ms_per_step"], 1e-6), 3)
    top = f"mod_{max(counts)}" if counts else None
    summary: dict[str, Any] = {}
    if top:
        t = results[top]
        summary = {
            "agents": max(counts),
            "step_time_added_pct": round((t["step_ms"] / base["step_ms"] - 1) * 100, 2),
            "work_added_ms_per_step": round(t["work_ms_per_step"] - base["work_ms_per_step"], 3),
            # the CPU work the mod and its agents add, as a share of the server's step interval
            "work_added_pct_of_step": round(
                (t["work_ms_per_step"] - base["work_ms_per_step"]) / base["step_ms"] * 100, 2
            ),
            "delivery_p50_ms": t.get("latency_p50_ms"),
            "delivery_p99_ms": t.get("latency_p99_ms"),
            "target_step_added_pct_max": 10,
            "target_delivery_p99_ms_max": 1000,
        }
    emit("luanti", {"seconds": seconds, "configs": results, "summary": summary})
