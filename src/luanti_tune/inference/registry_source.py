""":class:`ModelSource` over the file-system model registry (champion alias per family)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Hashable, Sequence
from typing import Any

from luanti_tune.inference.source import ModelCandidate, ModelSource

log = logging.getLogger(__name__)

#: Families the act engine does not serve (dialogue has its own OpenAI-compatible endpoint).
NOT_SERVED = ("dialogue",)


class RegistrySource(ModelSource):
    """Champions of a :class:`~luanti_tune.registry.Registry`; ``revision`` reads one small file per family."""

    def __init__(self, registry: Any, families: Sequence[str] | None = None) -> None:
        self.registry = registry
        self._families = tuple(families) if families is not None else None

    def families(self) -> tuple[str, ...]:
        if self._families is not None:
            return self._families
        scopes = self.registry.families(include_scopes=True)  # per-player champions too (pursuit@alice)
        return tuple(f for f in scopes if f.split("@", 1)[0] not in NOT_SERVED)

    def revision(self) -> Hashable:
        rev = []
        for f in self.families():
            try:
                al = self.registry.aliases(f)
            except Exception as exc:  # noqa: BLE001 - unreadable aliases: treat as a change next time
                rev.append((f, "error", str(exc)))
                continue
            rev.append((f, al.get("generation"), al.get("champion")))
        return tuple(rev)

    def load(self, family: str) -> ModelCandidate | None:
        if self.registry.champion_version(family) is None:
            return None
        m = self.registry.load(family, "champion")
        serving = (m.manifest or {}).get("serving") or {}
        min_conf = serving.get("min_confidence")
        files = (m.manifest or {}).get("files") or {}
        identity = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest() if files else None
        return ModelCandidate(
            family=family,
            name=str(m.name),
            version=str(m.version),
            module=m.module,
            adapter=m.adapter,
            min_confidence=float(min_conf) if min_conf is not None else None,
            identity=identity,
            meta={"path": str(m.path), "registry_root": str(self.registry.root)},
        )
