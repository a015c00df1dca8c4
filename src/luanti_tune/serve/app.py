"""``create_app(settings, store=None) -> FastAPI``: the luanti-tune HTTP service.

Other components plug in with ONE line in :data:`ROUTERS` (``"module.path:router"``, imported
when the app is built) and reach the shared state through
``luanti_tune.serve.state.get_state(request)``: settings, store, Prometheus registry,
``components`` and ``shutdown_hooks``. Auth covers every route (see :mod:`luanti_tune.serve.auth`);
add to ``state.public_paths`` for routes that must stay open. A
:class:`~luanti_tune.errors.StoreUnavailable` raised by any route becomes a 503 JSON answer.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from luanti_tune.config import Settings, load_settings
from luanti_tune.errors import StoreUnavailable
from luanti_tune.serve.auth import BearerAuth
from luanti_tune.serve.committer import GroupCommitter
from luanti_tune.serve.events import json_response
from luanti_tune.serve.metrics import IngestMetrics
from luanti_tune.serve.state import AppState, get_state
from luanti_tune.store.base import Store, open_store
from luanti_tune.store.rows import RowStore

log = logging.getLogger(__name__)

#: Routers of the service, ``"module:attribute"``; add yours with one line.
ROUTERS: tuple[str, ...] = (
    "luanti_tune.serve.events:router",
    "luanti_tune.serve.chat:router",
    "luanti_tune.serve.act:router",
    "luanti_tune.serve.dashboard:router",
)

core = APIRouter(tags=["service"])


@core.get("/healthz")
async def healthz(request: Request) -> Response:
    """200 ``{"status": "ok"}`` when the store answers, else 503 with the reason."""
    state = get_state(request)
    try:
        await run_in_threadpool(state.store.ping)
    except StoreUnavailable as exc:
        return json_response({"status": "unavailable", "detail": str(exc)}, 503)
    return json_response({"status": "ok", "store": state.store.url.split(":", 1)[0]})


@core.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus text exposition of this service's registry (+ the training worker's metrics file)."""
    state = get_state(request)
    # off the event loop: collectors read the store (e.g. new agent events for the behaviour metrics)
    return Response(await run_in_threadpool(_exposition, state), media_type=CONTENT_TYPE_LATEST)


def _exposition(state: AppState) -> bytes:
    body: bytes = generate_latest(state.registry)
    try:  # written by the worker process after every poll (luanti_tune.worker.loop)
        body += (state.settings.data_dir / "metrics" / "worker.prom").read_bytes()
    except OSError:
        pass
    return body


def _open_store(settings: Settings) -> Store:
    url = settings.resolved_db_url
    if url.startswith(("postgresql://", "postgres://")):
        from luanti_tune.store.postgres import PostgresStore

        # start even if PostgreSQL is down: requests get 503 until it is back
        return PostgresStore(url, require_connection=False)
    return open_store(url)


def include(app: FastAPI, spec: str) -> None:
    """Include the router named ``"module.path:attribute"``."""
    module, attr = spec.split(":")
    app.include_router(getattr(importlib.import_module(module), attr))


def create_app(settings: Settings | None = None, store: Store | None = None) -> FastAPI:
    """Build the service. ``store`` defaults to ``settings.resolved_db_url`` (closed on shutdown)."""
    settings = settings or load_settings()
    owns_store = store is None
    if store is None:
        store = _open_store(settings)
    registry = CollectorRegistry()
    ingest_metrics = IngestMetrics(registry)
    from luanti_tune.analysis.agents import BehaviourCollector

    registry.register(BehaviourCollector(store=store))  # agent behaviour per model version (issue 8)
    committer = GroupCommitter(store, ingest_metrics) if isinstance(store, RowStore) else None
    state = AppState(
        settings=settings,
        store=store,
        registry=registry,
        ingest_metrics=ingest_metrics,
        committer=committer,
        owns_store=owns_store,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(state.shutdown)

    from luanti_tune import __version__

    app = FastAPI(title="luanti-tune", version=__version__, lifespan=lifespan)
    app.state.luanti = state

    @app.exception_handler(StoreUnavailable)
    async def _store_unavailable(request: Request, exc: StoreUnavailable) -> Response:
        return json_response({"detail": f"event store unavailable: {exc}"}, 503)

    app.include_router(core)
    for spec in ROUTERS:
        include(app, spec)
    app.add_middleware(BearerAuth, token=settings.token, public_paths=state.public_paths)
    return app
