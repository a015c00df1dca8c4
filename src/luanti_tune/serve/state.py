"""The shared state of one service instance, reachable from every router.

Routers get it with ``state = get_state(request)`` (or ``Depends(get_state)``): settings, the
event store, the Prometheus registry (register your own metrics on ``state.registry``), the
ingest group committer, a dict ``components`` for long-lived objects other layers attach (the
inference engine, the dialogue model) and ``shutdown_hooks`` run when the service stops.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from starlette.requests import HTTPConnection

from luanti_tune.config import Settings
from luanti_tune.serve.committer import GroupCommitter
from luanti_tune.serve.metrics import IngestMetrics
from luanti_tune.store.base import Store

log = logging.getLogger(__name__)


@dataclass
class AppState:
    settings: Settings
    store: Store
    registry: CollectorRegistry
    ingest_metrics: IngestMetrics
    committer: GroupCommitter | None
    owns_store: bool = False
    public_paths: set[str] = field(default_factory=lambda: {"/healthz", "/"})
    components: dict[str, Any] = field(default_factory=dict)
    shutdown_hooks: list[Callable[[], Any]] = field(default_factory=list)

    def shutdown(self) -> None:
        """Drain the committer, run the hooks (last added first), close the store if we opened it."""
        if self.committer is not None:
            self.committer.stop()
        for hook in reversed(self.shutdown_hooks):
            try:
                hook()
            except Exception:  # noqa: BLE001 - one failing hook must not keep the others from running
                log.exception("shutdown hook %r failed", hook)
        if self.owns_store:
            self.store.close()


def get_state(conn: HTTPConnection) -> AppState:
    """The :class:`AppState` of the app serving this request (usable as a FastAPI dependency)."""
    state: AppState = conn.app.state.luanti
    return state
