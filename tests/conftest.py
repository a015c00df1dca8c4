"""Shared fixtures: isolated data dirs, a real uvicorn server (``serve``), offline model hub."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pgcluster import pg_url  # noqa: F401  (session-scoped throwaway PostgreSQL cluster)
from uvicorn_thread import ServerThread

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test reads or writes the user's data dir or config."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    for key in list(os.environ):
        if key.startswith("LUANTI_TUNE_"):
            monkeypatch.delenv(key)
    yield


@pytest.fixture
def serve() -> Iterator[Callable[[Any], ServerThread]]:
    """``serve(app)`` runs ``app`` on a real uvicorn socket until the test ends."""
    servers: list[ServerThread] = []

    def start(app: Any) -> ServerThread:
        s = ServerThread(app)
        servers.append(s)
        return s.start()

    yield start
    for s in servers:
        s.stop()
