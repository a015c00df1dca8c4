"""What one engine batch decided, per agent, without building a Python object per action.

Agents answered by a columnar family adapter stay in :class:`~luanti_tune.policies.batch.DecisionColumns`
blocks; agents answered by a policy that returns typed decisions (scripted fallbacks, adapters
without ``decode_columns``) hold their typed action. ``wire()`` gives the JSON entries the HTTP
layer sends; ``actions`` gives typed actions (built on first access) for in-process callers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from pydantic import TypeAdapter

from luanti_tune.policies.batch import DecisionColumns
from luanti_tune.schemas.agent import Action

#: ``(name, version)`` of whatever decided an agent (a model or ``scripted:<policy>``).
ModelRef = tuple[str, str]

_ACTIONS: TypeAdapter[list[Any]] = TypeAdapter(list[Action])

#: Rows (sorted, increasing) of a batch decided by one columnar block, and the block.
Block = tuple[np.ndarray, DecisionColumns]


@dataclass
class BatchResult:
    """Per-agent outcome of one batch, as parallel per-row lists plus columnar blocks.

    Row ``i`` is either in a block (``blocks``), or has a typed action in ``typed[i]``, or an
    error in ``errors[i]`` (then ``typed[i]`` is ``None``). ``refs[i]`` names the model that decided
    it; ``fallback[i]`` is the reason when a fallback policy decided it.
    """

    typed: list[Any]
    refs: list[ModelRef | None]
    fallback: dict[int, str] = field(default_factory=dict)
    errors: dict[int, dict[str, str]] = field(default_factory=dict)
    generation: int = 0
    versions: dict[str, ModelRef] = field(default_factory=dict)
    seconds: float = 0.0
    blocks: list[Block] = field(default_factory=list)
    _actions: list[Any] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def empty(cls, n: int, generation: int = 0) -> BatchResult:
        return cls(typed=[None] * n, refs=[None] * n, generation=generation)

    def __len__(self) -> int:
        return len(self.refs)

    def main_ref(self) -> ModelRef | None:
        """The model that decided most agents (the response's top-level ``model``)."""
        refs = self.refs
        if refs and refs[0] is not None and refs.count(refs[0]) == len(refs):
            return refs[0]  # one model decided every agent (the common case): no counting
        counts = Counter(refs)
        counts.pop(None, None)
        return max(counts, key=lambda r: counts[r]) if counts else None  # type: ignore[arg-type]

    # ------------------------------------------------------------------ reading
    @property
    def actions(self) -> list[Any]:
        """Typed actions per row (``None`` for errors), built once on first access."""
        if self._actions is None:
            out = list(self.typed)
            for rows, cols in self.blocks:
                for i, d in zip(rows.tolist(), cols.decisions(), strict=True):
                    out[i] = d.action
            self._actions = out
        return self._actions

    def wire(self) -> list[dict[str, Any] | None]:
        """The JSON form of every row's action (``None`` for errors), in row order."""
        typed = self.typed
        if len(self.blocks) == 1 and not self.errors:
            rows, cols = self.blocks[0]
            if len(rows) == len(typed):  # one columnar block decided every row (rows are 0..n-1)
                return list(cols.wire())
        present = [a for a in typed if a is not None]
        out: list[Any] = [None] * len(typed)
        if present:
            dumped = iter(_ACTIONS.dump_python(present, mode="json", warnings=False))
            out = [None if a is None else next(dumped) for a in typed]
        for rows, cols in self.blocks:
            for i, d in zip(rows.tolist(), cols.wire(), strict=True):
                out[i] = d
        return out

    def wire_json(self) -> bytes:
        """``orjson.dumps(self.wire())``, byte for byte; when one columnar block decided every row,
        without building a dict per row (:meth:`DecisionColumns.wire_json`)."""
        if len(self.blocks) == 1 and not self.errors:
            rows, cols = self.blocks[0]
            if len(rows) == len(self.typed):
                return cols.wire_json()
        return orjson.dumps(self.wire())

    def wire_rows(self, rows: Sequence[int]) -> list[dict[str, Any] | None]:
        """:meth:`wire` of a few rows only (e.g. the sampled decisions that are logged)."""
        out: list[dict[str, Any] | None] = [None] * len(rows)
        in_blocks: list[int] = []
        for j, i in enumerate(rows):
            a = self.typed[i]
            if a is not None:
                out[j] = a.model_dump(mode="json")
            else:
                in_blocks.append(j)
        if in_blocks and self.blocks:
            want = np.asarray([rows[j] for j in in_blocks], dtype=np.intp)
            for block_rows, cols in self.blocks:
                k = np.minimum(np.searchsorted(block_rows, want), len(block_rows) - 1)
                hit = block_rows[k] == want
                if hit.any():
                    for j, d in zip(np.flatnonzero(hit).tolist(), cols.take(k[hit]).wire(), strict=True):
                        out[in_blocks[j]] = d
        return out

    # ------------------------------------------------------------------ reshaping
    def slice(self, start: int, stop: int) -> BatchResult:
        """Rows ``start:stop`` renumbered from 0 (one request of a micro-batch)."""
        blocks: list[Block] = []
        for rows, cols in self.blocks:
            lo, hi = np.searchsorted(rows, [start, stop])
            if hi > lo:
                blocks.append((rows[lo:hi] - start, cols.take(np.arange(lo, hi))))
        return BatchResult(
            typed=self.typed[start:stop],
            refs=self.refs[start:stop],
            fallback={i - start: r for i, r in self.fallback.items() if start <= i < stop},
            errors={
                i - start: {**e, "loc": f"observations[{i - start}]"}
                for i, e in self.errors.items()
                if start <= i < stop
            },
            generation=self.generation,
            versions=self.versions,
            seconds=self.seconds,
            blocks=blocks,
        )

    def spread(self, n: int, positions: Sequence[int]) -> BatchResult:
        """A result of ``n`` rows where row ``j`` of this one becomes row ``positions[j]``
        (increasing); the other rows are left empty for the caller to fill (e.g. with errors)."""
        pos = np.asarray(positions, dtype=np.intp)
        out = BatchResult.empty(n, self.generation)
        out.versions = self.versions
        out.seconds = self.seconds
        for j, i in enumerate(positions):
            out.typed[i] = self.typed[j]
            out.refs[i] = self.refs[j]
        out.fallback = {positions[j]: r for j, r in self.fallback.items()}
        out.errors = {positions[j]: {**e, "loc": f"observations[{positions[j]}]"} for j, e in self.errors.items()}
        out.blocks = [(pos[rows], cols) for rows, cols in self.blocks]
        return out
