"""Shared fixtures: isolated data dirs, free ports, offline model hub."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgcluster import pg_url  # noqa: F401  (session-scoped throwaway PostgreSQL cluster)

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
