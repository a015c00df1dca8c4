"""Dashboard: ``GET /`` (a self-contained HTML page) and ``GET /v1/dashboard`` (its JSON feed).

The page needs no network beyond this service: plain JavaScript polls ``/v1/dashboard`` and
draws SVG charts of event counts, model versions and their gate figures, registry history and
serving counters (fallbacks, decisions, swaps). The page itself holds no data and is public;
the feed sits behind the service's bearer auth (the page forwards ``#token=...`` from its URL).
"""

from __future__ import annotations

import logging
import time
from importlib import resources
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from prometheus_client import CollectorRegistry

from luanti_tune.errors import ModelError
from luanti_tune.registry import Registry
from luanti_tune.serve.events import json_response
from luanti_tune.serve.state import AppState, get_state

log = logging.getLogger(__name__)

router = APIRouter(tags=["dashboard"])

#: Counters summarised on the dashboard: Prometheus family name -> label shown.
COUNTERS: dict[str, str] = {
    "luanti_tune_events_accepted": "events accepted",
    "luanti_tune_events_duplicate": "duplicates",
    "luanti_tune_events_rejected": "events rejected",
    "act_decisions": "agent decisions",
    "fallback": "fallback decisions",
    "act_agent_errors": "agent errors",
    "act_model_swaps": "model swaps",
}
HISTORY_ROWS = 25
_started = time.time()


def counter_totals(registry: CollectorRegistry) -> dict[str, dict[str, float]]:
    """``{counter: {label-string: value}}`` for the counters in :data:`COUNTERS` (``_total`` samples)."""
    out: dict[str, dict[str, float]] = {}
    for metric in registry.collect():
        if metric.name not in COUNTERS:
            continue
        rows: dict[str, float] = {}
        for sample in metric.samples:
            if not sample.name.endswith("_total"):
                continue
            key = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items())) or "all"
            rows[key] = rows.get(key, 0.0) + float(sample.value)
        out[metric.name] = rows
    return out


def registry_summary(reg: Registry) -> dict[str, Any]:
    """Per family and per-player scope: aliases, versions with gate verdict and metrics (an adapted
    player's time to catch per version among them), recent history rows."""
    families: dict[str, Any] = {}
    for family in reg.families(include_scopes=True):  # per-player champions too (pursuit@alice)
        try:
            versions = [
                {
                    "version": v.version,
                    "created": v.created,
                    "parent": v.parent,
                    "aliases": v.aliases,
                    "gate": v.gate,
                    "metrics": v.metrics,
                }
                for v in reg.info(family)
            ]
            aliases = reg.aliases(family)
            history = reg.history(family, limit=HISTORY_ROWS)
        except (ModelError, OSError, ValueError) as exc:
            log.warning("dashboard: cannot read registry family %s: %s", family, exc)
            families[family] = {"error": str(exc)}
            continue
        families[family] = {
            "champion": aliases.get("champion"),
            "candidate": aliases.get("candidate"),
            "versions": versions,
            "history": history,
        }
    return families


def snapshot(state: AppState) -> dict[str, Any]:
    """Everything the page shows, as one JSON-able dict."""
    stats = state.store.stats()
    reg = Registry(state.settings.resolved_model_path)
    return {
        "time": time.time(),
        "uptime_s": round(time.time() - _started, 1),
        "store": state.store.url.split(":", 1)[0],
        "events": {"total": stats.events, "by_type": stats.by_type, "sources": stats.sources},
        "models": registry_summary(reg),
        "counters": counter_totals(state.registry),
        "training_interval": state.settings.training_interval,
    }


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def dashboard_page() -> Response:
    html = resources.files("luanti_tune.serve").joinpath("static/dashboard.html").read_text(encoding="utf-8")
    return HTMLResponse(html)


@router.get("/v1/dashboard")
async def dashboard_data(request: Request) -> Response:
    return json_response(await run_in_threadpool(snapshot, get_state(request)))
