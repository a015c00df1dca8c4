"""Fixtures of the inference tests: the toy family, a real uvicorn server on a real socket."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from uvicorn_thread import ServerThread


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[ServerThread] = []

    def start(app: Any) -> ServerThread:
        s = ServerThread(app)
        servers.append(s)
        return s.__enter__()

    yield start
    for s in servers:
        s.__exit__()
