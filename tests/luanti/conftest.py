"""Fixtures for the real-Luanti integration tests: a real service, a real minetestserver with the
mod (shared by the tests of a module), a scripted policy service and a real headless client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from luanti_harness import Harness, HeadlessClient


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """A shared service + server; small queue bound and short backoff so outages are quick to test."""
    h = Harness(
        tmp_path_factory.mktemp("luanti"),
        {
            "luanti_tune.queue_bound": 60,
            "luanti_tune.backoff_max": 2,
            "luanti_tune.move_sample_rate": 5,
            "luanti_tune.act_interval": 2,
            "luanti_tune.batch_size": 64,
            "luanti_tune.agent_events": True,
        },
    )
    try:
        h.train_pursuit_base()  # runs while the first tests run
        h.start()
        h.server.wait_state(lambda s: s.get("steps", 0) > 0)
        yield h
    finally:
        h.stop()


@pytest.fixture(scope="module")
def alice(harness: Harness, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HeadlessClient]:
    """A real headless client with random input (moves and digs), connected to the shared server."""
    c = HeadlessClient(tmp_path_factory.mktemp("alice"), harness.server.port, "alice", "pw", random_input=True)
    yield c
    c.stop()


@pytest.fixture
def client_factory(tmp_path: Path) -> Iterator[Callable[..., HeadlessClient]]:
    clients: list[HeadlessClient] = []

    def make(port: int, name: str, password: str = "pw", random_input: bool = True) -> HeadlessClient:
        c = HeadlessClient(tmp_path / f"client-{name}", port, name, password, random_input)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.stop()
