"""Where the engine gets its models: a small interface the registry plugs into.

The engine polls :meth:`ModelSource.revision` (cheap; must change whenever any champion is
promoted or rolled back) and, when it changed, calls :meth:`ModelSource.load` per family off the
hot path, exports and checks the new models, then swaps them in atomically.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from luanti_tune.policies.base import FamilyAdapter
from luanti_tune.schemas.agent import Observation


@dataclass(frozen=True)
class ModelCandidate:
    """One loaded champion: a torch module plus its family adapter and identity.

    ``kinds`` are the observation kinds it decides (default: the family name).
    ``sample_observations`` (optional) feed the ONNX export check; ``min_confidence`` overrides
    the engine's threshold for this model (e.g. from the manifest).
    """

    family: str
    name: str
    version: str
    module: Any
    adapter: FamilyAdapter
    kinds: tuple[str, ...] = ()
    sample_observations: Sequence[Observation] = ()
    min_confidence: float | None = None
    #: Content identity (e.g. the weights' sha256): a version prepared before is reused on a swap
    #: back (rollback) without re-export. ``None``: identity of the module object.
    identity: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def served_kinds(self) -> tuple[str, ...]:
        """The kinds it decides; a per-player scope (``pursuit@alice``) decides its family's kind."""
        return self.kinds or (self.family.split("@", 1)[0],)

    @property
    def players(self) -> tuple[str, ...]:
        """The players a per-player scope is for (``pursuit@alice+bob`` -> alice, bob), else ``()``."""
        return tuple(self.family.split("@", 1)[1].split("+")) if "@" in self.family else ()


class ModelSource(abc.ABC):
    """Read-only view of the current champions."""

    @abc.abstractmethod
    def families(self) -> tuple[str, ...]:
        """Families that may have a champion."""

    @abc.abstractmethod
    def revision(self) -> Hashable:
        """A cheap token that changes whenever any champion changes."""

    @abc.abstractmethod
    def load(self, family: str) -> ModelCandidate | None:
        """The current champion of ``family``, or ``None`` when there is none."""


class StaticModelSource(ModelSource):
    """In-memory source: tests, benchmarks and embedding (``set``/``remove`` act as promote/rollback)."""

    def __init__(self, candidates: Sequence[ModelCandidate] = ()) -> None:
        self._lock = threading.Lock()
        self._models: dict[str, ModelCandidate] = {c.family: c for c in candidates}
        self._rev = 0

    def set(self, candidate: ModelCandidate) -> None:
        with self._lock:
            self._models[candidate.family] = candidate
            self._rev += 1

    def remove(self, family: str) -> None:
        with self._lock:
            self._models.pop(family, None)
            self._rev += 1

    def families(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._models)

    def revision(self) -> Hashable:
        return self._rev

    def load(self, family: str) -> ModelCandidate | None:
        with self._lock:
            return self._models.get(family)
