"""Which entity each agent of a batch acts on, chosen for the whole batch with array operations.

Every rule here reads an :class:`~luanti_tune.policies.columns.ObservationColumns` (entities
flattened with per-row offsets, see :class:`~luanti_tune.policies.columns.EntityColumns`) and
returns, per row, the index of the chosen entity in ``cols.entities`` (``-1``: none), so that a
1000-agent batch costs a few dozen numpy operations instead of a Python loop per agent:

* :func:`pick_targets` - the first of the row's ``targets`` that is in view (by name; of several
  entities with that name the last one), else the nearest player (the first of equally near ones);
* :func:`first_listed` - the first entity in view whose name is one of the row's ``targets``;
* :func:`nearest` / :func:`first_of_kind` - the nearest entity / the first entity of a kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain, repeat

import numpy as np

from luanti_tune.policies.batch import ObservationBatch
from luanti_tune.policies.columns import ObservationColumns
from luanti_tune.schemas.agent import Observation

_NONE = np.iinfo(np.intp).max
#: Rows x target names up to which a dense table finds each name's position in a row's targets.
_TABLE_CELLS = 1 << 22


def columns_of(observations: Sequence[Observation]) -> tuple[ObservationBatch, ObservationColumns]:
    """``observations`` as a batch and its columns (computed when the batch has none)."""
    batch = ObservationBatch.of(observations)
    if batch.cols is not None:
        return batch, batch.cols
    items = list(batch)
    cols = ObservationColumns.of(items)
    if cols is None:  # a tick beyond what columns hold: the rules here never read ticks
        cols = ObservationColumns.of([o.model_copy(update={"tick": 0}) for o in items])
        assert cols is not None
    return batch, cols


def entity_rows(cols: ObservationColumns) -> np.ndarray:
    """The row of each entity of ``cols.entities`` (``intp [M]``)."""
    counts = np.diff(cols.entities.offsets)
    return np.repeat(np.arange(len(cols), dtype=np.intp), counts)


def _per_row_min(n: int, rows: np.ndarray, values: np.ndarray, fill: float) -> np.ndarray:
    out = np.full(n, fill, dtype=values.dtype)
    np.minimum.at(out, rows, values)
    return out


def _first(n: int, rows: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Per row, the smallest entity index where ``candidates`` holds (``-1``: none)."""
    k = np.flatnonzero(candidates)
    out = np.full(n, _NONE, dtype=np.intp)
    np.minimum.at(out, rows[k], k)
    out[out == _NONE] = -1
    return out


def first_of_kind(cols: ObservationColumns, kind: str) -> np.ndarray:
    """Per row, the first entity of ``kind`` (``-1``: none)."""
    e = cols.entities
    is_kind = np.fromiter(map(kind.__eq__, e.kind), dtype=bool, count=len(e.kind))
    return _first(len(cols), entity_rows(cols), is_kind)


def nearest(cols: ObservationColumns, kind: str, rows: np.ndarray | None = None) -> np.ndarray:
    """Per row, the entity of ``kind`` nearest to the agent horizontally (``rel.x**2 + rel.z**2``;
    the first of equally near ones), ``-1`` when none is in view. ``rows``: :func:`entity_rows`."""
    e = cols.entities
    n, m = len(cols), len(e.kind)
    if m == 0:
        return np.full(n, -1, dtype=np.intp)
    er = entity_rows(cols) if rows is None else rows
    of_kind = np.fromiter(map(kind.__eq__, e.kind), dtype=bool, count=m)
    d2 = e.rel[:, 0] * e.rel[:, 0] + e.rel[:, 2] * e.rel[:, 2]
    d2 = np.where(of_kind, d2, np.inf)
    best = _per_row_min(n, er, d2, np.inf)
    return _first(n, er, of_kind & (d2 == best[er]))


def _target_ranks(cols: ObservationColumns, rows: np.ndarray) -> np.ndarray | None:
    """Per entity, the position in its row's ``targets`` of its name (first occurrence; ``-1``:
    unnamed or not a target of the row), or ``None`` when no row has targets."""
    targets = cols.targets
    if targets is None or not any(targets):
        return None
    names = cols.entities.name
    n, m = len(cols), len(names)
    flat = list(chain.from_iterable(targets))
    ids: dict[str | None, int] = {name: i for i, name in enumerate(dict.fromkeys(flat))}
    width = len(ids)
    counts = np.fromiter(map(len, targets), dtype=np.intp, count=n)
    starts = np.zeros(n, dtype=np.intp)
    np.cumsum(counts[:-1], out=starts[1:])
    t_pos = np.arange(len(flat), dtype=np.intp) - np.repeat(starts, counts)
    t_key = np.repeat(np.arange(n, dtype=np.intp), counts) * width
    t_key += np.fromiter(map(ids.__getitem__, flat), dtype=np.intp, count=len(flat))
    e_id = np.fromiter(map(ids.get, names, repeat(-1)), dtype=np.intp, count=m)  # unnamed: -1
    e_key = rows * width + e_id
    if n * width <= _TABLE_CELLS:  # each (row, name)'s first position, in a table
        table = np.full(n * width, _NONE, dtype=np.intp)
        np.minimum.at(table, t_key, t_pos)
        rank = table[np.where(e_id >= 0, e_key, 0)]
        return np.where((e_id >= 0) & (rank != _NONE), rank, -1)
    keys, first = np.unique(t_key, return_index=True)  # first: each (row, name)'s first position
    at = np.minimum(np.searchsorted(keys, e_key), len(keys) - 1)
    return np.where((e_id >= 0) & (keys[at] == e_key), t_pos[first[at]], -1)


def pick_targets(cols: ObservationColumns) -> np.ndarray:
    """Per row, its target: the first of its ``targets`` in view (by name; the last entity of that
    name), else the nearest player (:func:`nearest`); ``-1`` when neither is in view."""
    e = cols.entities
    n, m = len(cols), len(e.kind)
    if m == n and bool((e.offsets == np.arange(n + 1)).all()) and e.kind.count("player") == n:
        return np.arange(n, dtype=np.intp)  # the common case: one player in view, always the target
    rows = entity_rows(cols)
    ranks = _target_ranks(cols, rows)
    if ranks is None:
        return nearest(cols, "player", rows)
    listed = ranks >= 0
    best = _per_row_min(n, rows[listed], ranks[listed], _NONE)
    hit = np.flatnonzero(listed & (ranks == best[rows]))
    chosen = np.full(n, -1, dtype=np.intp)
    np.maximum.at(chosen, rows[hit], hit)
    if (chosen < 0).any():  # no listed target in view: the nearest player
        chosen = np.where(chosen >= 0, chosen, nearest(cols, "player", rows))
    return chosen


def first_listed(cols: ObservationColumns) -> np.ndarray:
    """Per row, the first entity whose name is one of the row's ``targets`` (``-1``: none)."""
    n = len(cols)
    rows = entity_rows(cols)
    ranks = _target_ranks(cols, rows)
    if ranks is None:
        return np.full(n, -1, dtype=np.intp)
    return _first(n, rows, ranks >= 0)


__all__ = ["columns_of", "entity_rows", "first_listed", "first_of_kind", "nearest", "pick_targets"]
