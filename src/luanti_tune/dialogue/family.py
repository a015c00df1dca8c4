"""The ``dialogue`` model family for the registry: a version is a PEFT LoRA adapter directory.

Files of a version: ``adapter_model.safetensors`` + ``adapter_config.json`` (PEFT's format) and
the registry's ``manifest.json`` whose ``architecture`` names the ``base`` model and the LoRA
hyper-parameters. Loading through the registry verifies every sha256 and returns an
:class:`AdapterFiles` handle; the dialogue service attaches it to its base model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from luanti_tune.errors import ModelError
from luanti_tune.policies.base import AgentMemory, Decision, FamilyAdapter
from luanti_tune.policies.families import FamilySpec
from luanti_tune.schemas.agent import Observation

ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")


@dataclass(frozen=True)
class AdapterFiles:
    path: Path
    base: str | None
    manifest: Mapping[str, Any]


class _ChatOnly(FamilyAdapter):
    """Dialogue models answer chat, not observations: the act path must not route to them."""

    family = "dialogue"
    input_names: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()

    def featurize(self, observations: Sequence[Observation], memory: AgentMemory) -> dict[str, np.ndarray]:
        raise ModelError("dialogue models serve /v1/chat/completions, not /v1/act")

    def decode(self, observations: Sequence[Observation], outputs: dict[str, np.ndarray]) -> list[Decision]:
        raise ModelError("dialogue models serve /v1/chat/completions, not /v1/act")


def _load(version_dir: Path, manifest: Mapping[str, Any]) -> AdapterFiles:
    for name in ADAPTER_FILES:
        if not (version_dir / name).is_file():
            raise ModelError(f"dialogue version {version_dir.name} lacks {name}")
    arch = manifest.get("architecture") or {}
    return AdapterFiles(path=version_dir, base=arch.get("base"), manifest=manifest)


def dialogue_family() -> FamilySpec:
    return FamilySpec(
        name="dialogue",
        adapter=lambda arch: _ChatOnly(),
        loader=_load,
        description="NPC dialogue: LoRA adapter on a small causal LM (PEFT files)",
    )
