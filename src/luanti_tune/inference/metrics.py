"""Prometheus metrics of the inference engine (registered once in the default registry)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

_lock = threading.Lock()
_metrics: Metrics | None = None


@dataclass(frozen=True)
class Metrics:
    fallback: Any  # Counter fallback_total{reason, family}
    decisions: Any  # Counter act_decisions_total{family, runtime}
    agent_errors: Any  # Counter act_agent_errors_total{family}
    swaps: Any  # Counter act_model_swaps_total{family}
    batch_seconds: Any  # Histogram act_batch_seconds
    batch_agents: Any  # Histogram act_batch_agents
    log_dropped: Any  # Counter act_log_dropped_total


def metrics() -> Metrics:
    """The process-wide metric objects (created on first use)."""
    global _metrics
    with _lock:
        if _metrics is None:
            from prometheus_client import Counter, Histogram

            _metrics = Metrics(
                fallback=Counter(
                    "fallback", "Decisions answered by the scripted fallback policy.", ["reason", "family"]
                ),
                decisions=Counter("act_decisions", "Agent decisions served.", ["family", "runtime"]),
                agent_errors=Counter("act_agent_errors", "Agents answered with an error entry.", ["family"]),
                swaps=Counter("act_model_swaps", "Hot swaps of a served model.", ["family"]),
                batch_seconds=Histogram(
                    "act_batch_seconds",
                    "Engine time per batch (featurize, forward, decode, fallback).",
                    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5),
                ),
                batch_agents=Histogram(
                    "act_batch_agents", "Agents per engine batch.", buckets=(1, 10, 100, 500, 1000, 2000, 5000)
                ),
                log_dropped=Counter("act_log_dropped", "Sampled agent.act events dropped (queue full/store error)."),
            )
        return _metrics
