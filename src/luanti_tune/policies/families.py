"""Registry of learned model families: how a family's model is rebuilt from a manifest alone.

A :class:`FamilySpec` tells the model registry, the trainers and the inference engine everything
family-specific they need, so none of them imports training code to serve a model:

* ``build(architecture) -> torch.nn.Module``: a fresh, untrained module from the manifest's
  ``architecture`` dict (weights are loaded afterwards from ``weights.safetensors``);
* ``adapter(architecture) -> FamilyAdapter``: observation <-> tensor translation;
* ``loader(version_dir, manifest) -> object`` (optional): for families whose versions are not
  a single safetensors state dict (e.g. ``dialogue`` stores LoRA adapter files); when given it
  replaces ``build`` + weights loading;
* ``evaluate(module, dataset) -> dict[str, float]`` (optional): offline metrics on a dataset
  (lower ``loss``/``error`` is better), used by gates and live monitoring.

Module calling convention (also the ONNX export convention): ``module(*inputs)`` with the
arrays named by ``adapter.input_names`` in that order, returning a tuple aligned with
``adapter.output_names``.

Built-in families are looked up lazily by name (:data:`BUILTIN_FAMILIES`, ``module:attribute``
of a zero-argument function returning the spec), so importing this module imports no torch.
Other families register with :func:`register_family` or by adding their entry below.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from luanti_tune.errors import ModelError
from luanti_tune.policies.base import Decision, Policy

if TYPE_CHECKING:
    from luanti_tune.policies.base import AgentMemory, FamilyAdapter
    from luanti_tune.schemas.agent import Observation

#: family name -> ``"module.path:function"`` returning its :class:`FamilySpec` (imported on first use).
BUILTIN_FAMILIES: dict[str, str] = {
    "pursuit": "luanti_tune.policies.pursuit:pursuit_family",
    "navigation": "luanti_tune.policies.navigation:navigation_family",
    "team": "luanti_tune.policies.team:team_family",
    "dialogue": "luanti_tune.dialogue.family:dialogue_family",
}

WEIGHTS_FILE = "weights.safetensors"


@dataclass(frozen=True)
class FamilySpec:
    """Everything family-specific the registry, trainers and engine need (see module doc)."""

    name: str
    adapter: Callable[[Mapping[str, Any]], FamilyAdapter]
    build: Callable[[Mapping[str, Any]], Any] | None = None
    loader: Callable[[Path, Mapping[str, Any]], Any] | None = None
    evaluate: Callable[..., dict[str, float]] | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.build is None and self.loader is None:
            raise ValueError(f"family {self.name!r}: needs a build or a loader function")


_REGISTERED: dict[str, FamilySpec] = {}
_LOCK = threading.Lock()


def register_family(spec: FamilySpec, *, replace: bool = False) -> None:
    """Make ``spec`` available under ``spec.name``; refuses silent replacement."""
    with _LOCK:
        if spec.name in _REGISTERED and not replace and _REGISTERED[spec.name] is not spec:
            raise ModelError(f"model family {spec.name!r} is already registered")
        _REGISTERED[spec.name] = spec


def get_family(name: str) -> FamilySpec:
    """The spec of family ``name``; imports a built-in family on first use."""
    with _LOCK:
        spec = _REGISTERED.get(name)
    if spec is not None:
        return spec
    target = BUILTIN_FAMILIES.get(name)
    if target is None:
        raise ModelError(f"unknown model family {name!r}; known: {', '.join(family_names())}")
    module_name, attr = target.split(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ModelError(f"model family {name!r} is not available ({target}: {exc})") from exc
    spec = factory()
    if not isinstance(spec, FamilySpec) or spec.name != name:
        raise ModelError(f"{target} did not return the FamilySpec of {name!r}")
    with _LOCK:
        _REGISTERED.setdefault(name, spec)
        return _REGISTERED[name]


def family_names() -> list[str]:
    """Names of registered and built-in families (built-ins are not imported)."""
    with _LOCK:
        return sorted(set(_REGISTERED) | set(BUILTIN_FAMILIES))


class ModelPolicy(Policy):
    """A :class:`~luanti_tune.policies.base.Policy` around a family module + adapter.

    ``featurize -> module(*inputs) -> decode``; used by simulator evaluations and gates (the
    inference engine has its own batched runtime). Satisfies the ``Policy`` protocol.
    """

    def __init__(self, module: Any, adapter: FamilyAdapter, name: str = "model", version: str = "0") -> None:
        self.module = module
        self.adapter = adapter
        self.name = name
        self.version = version

    def decide(self, observations: Sequence[Observation], memory: AgentMemory) -> list[Decision]:
        import numpy as np
        import torch

        if not observations:
            return []
        feats = self.adapter.featurize(observations, memory)
        with torch.inference_mode():
            out = self.module(*[torch.from_numpy(np.ascontiguousarray(feats[n])) for n in self.adapter.input_names])
        if not isinstance(out, tuple | list):
            out = (out,)
        arrays = {n: o.numpy() for n, o in zip(self.adapter.output_names, out, strict=True)}
        return list(self.adapter.decode(observations, arrays))
