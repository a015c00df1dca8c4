"""Prometheus metrics of the inference engine, registered once per Prometheus registry.

The service passes its own registry (one per app instance); without one the process-wide
default registry is used.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

_lock = threading.Lock()
_by_registry: dict[int, tuple[Any, Metrics]] = {}


@dataclass(frozen=True)
class Metrics:
    fallback: Any  # Counter fallback_total{reason, family}
    decisions: Any  # Counter act_decisions_total{family, runtime}
    agent_errors: Any  # Counter act_agent_errors_total{family}
    swaps: Any  # Counter act_model_swaps_total{family}
    batch_seconds: Any  # Histogram act_batch_seconds
    batch_agents: Any  # Histogram act_batch_agents
    log_dropped: Any  # Counter act_log_dropped_total
    stage_seconds: Any  # Histogram act_stage_seconds{family, stage=featurize|forward|decode}


def metrics(registry: Any = None) -> Metrics:
    """The metric objects of ``registry`` (default: the process-wide registry), created on first use."""
    from prometheus_client import REGISTRY, Counter, Histogram

    reg = REGISTRY if registry is None else registry
    with _lock:
        found = _by_registry.get(id(reg))
        if found is not None and found[0] is reg:
            return found[1]
        m = Metrics(
            fallback=Counter(
                "fallback", "Decisions answered by the scripted fallback policy.", ["reason", "family"], registry=reg
            ),
            decisions=Counter("act_decisions", "Agent decisions served.", ["family", "runtime"], registry=reg),
            agent_errors=Counter("act_agent_errors", "Agents answered with an error entry.", ["family"], registry=reg),
            swaps=Counter("act_model_swaps", "Hot swaps of a served model.", ["family"], registry=reg),
            batch_seconds=Histogram(
                "act_batch_seconds",
                "Engine time per batch (featurize, forward, decode, fallback).",
                buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5),
                registry=reg,
            ),
            batch_agents=Histogram(
                "act_batch_agents",
                "Agents per engine batch.",
                buckets=(1, 10, 100, 500, 1000, 2000, 5000),
                registry=reg,
            ),
            log_dropped=Counter(
                "act_log_dropped", "Sampled agent.act events dropped (queue full/store error).", registry=reg
            ),
            stage_seconds=Histogram(
                "act_stage_seconds",
                "Time of one family's featurize, forward and decode per batch.",
                ["family", "stage"],
                buckets=(0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1),
                registry=reg,
            ),
        )
        _by_registry[id(reg)] = (reg, m)
        return m
