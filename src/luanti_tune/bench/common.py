"""Helpers shared by benchmarks: percentiles, the one-line JSON report, stopping a server."""

from __future__ import annotations

import json
import platform
import subprocess
import time
from collections.abc import Sequence
from typing import Any

import click
import numpy as np


def percentiles_ms(samples_s: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/max of durations given in seconds, reported in milliseconds."""
    arr = np.asarray(samples_s, dtype=float) * 1000.0
    if arr.size == 0:
        return {
            "p50_ms": float("nan"),
            "p90_ms": float("nan"),
            "p99_ms": float("nan"),
            "max_ms": float("nan"),
        }
    p50, p90, p99 = np.percentile(arr, [50, 90, 99])
    return {
        "p50_ms": round(float(p50), 3),
        "p90_ms": round(float(p90), 3),
        "p99_ms": round(float(p99), 3),
        "max_ms": round(float(arr.max()), 3),
    }


def cpu_probe_ms(repeat: int = 3) -> float:
    """Milliseconds of a fixed workload (a Python loop and small numpy products), median of
    ``repeat``: how fast this machine is right now. A virtual machine's speed drifts
    (here: about 2x slower after minutes of load on both cores, fast again after an idle minute),
    so reports carry it, taken before and after their runs."""
    a = np.linspace(-1.0, 1.0, 64 * 64, dtype=np.float32).reshape(64, 64)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        x = 0
        for i in range(1_000_000):
            x += i & 7
        for _ in range(1000):
            a = np.tanh(a @ a)
        times.append(time.perf_counter() - t0)
    return round(float(np.median(times)) * 1000.0, 1)


def emit(bench: str, figures: dict[str, Any]) -> dict[str, Any]:
    """Print the benchmark's single JSON line (with machine context) and return it."""
    report = {
        "bench": bench,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"python": platform.python_version(), "cpu_count": _cpus()},
        **figures,
    }
    click.echo(json.dumps(report, sort_keys=False))
    return report


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Terminate ``proc`` and wait for it (killed if it has not exited after 15 s)."""
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
