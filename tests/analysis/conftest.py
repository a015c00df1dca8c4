"""Session-wide simulated populations (simulating is the slow part, so it is done once)."""

from __future__ import annotations

from typing import Any

import pytest
from analysis_population import population


@pytest.fixture(scope="session")
def train_population() -> list[dict[str, Any]]:
    return population(range(0, 6), minutes=1.0)


@pytest.fixture(scope="session")
def heldout_population() -> list[dict[str, Any]]:
    # other seeds (other worlds, noise, starting points) and a coarser move sampling than training
    return population(range(100, 104), minutes=1.0, move_every=2)
