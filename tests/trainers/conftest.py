"""A base pursuit model pre-trained once per test session on simulated training styles."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from luanti_tune.registry import Registry
from luanti_tune.trainers import pursuit as tp
from luanti_tune.trainers.common import FitConfig


@pytest.fixture(scope="session")
def base_registry_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("base-models")
    reg = Registry(root)
    tp.bootstrap_base(
        reg, minutes=1.0, seed=0, sessions=1, cfg=FitConfig(steps=800, lr=3e-3, replay_fraction=0.0, seed=0)
    )
    return root


@pytest.fixture()
def registry(base_registry_dir: Path, tmp_path: Path) -> Iterator[Registry]:
    """A private copy of the registry whose champion is the base model."""
    root = tmp_path / "models"
    shutil.copytree(base_registry_dir, root)
    yield Registry(root)
