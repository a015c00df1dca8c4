"""Fixtures of the service tests: real server subprocesses, stopped at teardown."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from live_server import Server, launch


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Any]:
    """``server_factory(db_url=None, env=None, host=..., workers=0)`` starts a server (``workers``
    validation processes); all are stopped at teardown."""
    started: list[Server] = []

    def make(
        db_url: str | None = None, env: dict[str, str] | None = None, host: str = "127.0.0.1", workers: int = 0
    ) -> Server:
        server = launch(db_url or f"sqlite:///{tmp_path / 'events.db'}", tmp_path, env, host, workers)
        started.append(server)
        return server

    yield make
    for s in started:
        s.stop()
