"""Observations stored column by column: what ``/v1/act`` requests decode into (both formats).

One array (or list) per field for the whole batch, entities flattened with per-row offsets.
:class:`~luanti_tune.policies.batch.ObservationBatch` wraps an :class:`ObservationColumns`
(``batch.cols``); columnar family adapters read the arrays, everything else sees ordinary
:class:`~luanti_tune.schemas.agent.Observation` objects, built row by row on demand
(:meth:`ObservationColumns.observation`), equal to what the pydantic schema builds from the same
observation sent as a JSON row.

Every value here is already valid (the decoder checked it); nothing validates again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from luanti_tune.schemas import agent as schema
from luanti_tune.schemas.common import Vec3, trusted

_VEC3_FIELDS = frozenset(Vec3.model_fields)
_ENTITY_FIELDS = frozenset(schema.EntityView.model_fields)
_OBS_FIELDS = frozenset(schema.Observation.model_fields)
_ZERO = Vec3(x=0.0, y=0.0, z=0.0)
#: The largest tick columns hold (the columnar format's limit: ticks travel as JSON numbers).
MAX_TICK = 2**53 - 1


def _vec3(x: float, y: float, z: float) -> Vec3:
    return trusted(Vec3, {"x": x, "y": y, "z": z}, _VEC3_FIELDS)


def _pick(values: list[Any] | None, idx: list[int]) -> list[Any] | None:
    return None if values is None else [values[i] for i in idx]


_NEARBY_FIELDS = frozenset(schema.Nearby.model_fields)
_CHAT_FIELDS = frozenset(schema.ChatLine.model_fields)
_RESULT_FIELDS = frozenset(schema.LastResult.model_fields)


def _goal(v: Any) -> Vec3 | None:
    if v is None or type(v) is Vec3:
        return v  # type: ignore[no-any-return]
    return _vec3(v.x, v.y, v.z)


def _nearby(nb: Any) -> schema.Nearby | None:
    if nb is None or type(nb) is schema.Nearby:
        return nb  # type: ignore[no-any-return]
    return trusted(schema.Nearby, {"radius": nb.radius, "codes": list(nb.codes)}, _NEARBY_FIELDS)


def _chat(line: Any) -> schema.ChatLine:
    if type(line) is schema.ChatLine:
        return line
    return trusted(schema.ChatLine, {"sender": line.sender, "message": line.message}, _CHAT_FIELDS)


def _last_result(r: Any) -> schema.LastResult | None:
    if r is None or type(r) is schema.LastResult:
        return r  # type: ignore[no-any-return]
    return trusted(schema.LastResult, {"action": r.action, "ok": r.ok, "reason": r.reason}, _RESULT_FIELDS)


def _xyz_of(vecs: Sequence[Vec3]) -> np.ndarray:
    """``float64 [N, 3]`` of ``vecs``."""
    return np.array([(v.x, v.y, v.z) for v in vecs], dtype=np.float64).reshape(len(vecs), 3)


def _present(values: list[Any]) -> list[Any] | None:
    """``values`` (one per row), or ``None`` when every one is empty or ``None`` (the field's
    default: the column is left out, as a client leaves it out)."""
    return values if any(values) else None


def _join(parts: Sequence[list[Any] | None], sizes: Sequence[int], default: Any) -> list[Any] | None:
    """Concatenate optional per-row lists; a missing part counts as ``default`` per row."""
    if all(p is None for p in parts):
        return None
    out: list[Any] = []
    for p, size in zip(parts, sizes, strict=True):
        out.extend(p if p is not None else [default] * size)
    return out


@dataclass(frozen=True)
class EntityColumns:
    """Every entity of a batch, row after row: row ``i`` sees entities ``offsets[i]:offsets[i+1]``.

    ``rel``/``velocity`` are ``float64 [M, 3]``; ``has_velocity[k]`` tells whether entity ``k``
    carried a velocity (``velocity[k]`` is zero otherwise). ``name``/``hp``/``team`` hold ``None``
    where absent.
    """

    offsets: np.ndarray
    kind: list[str]
    name: list[str | None]
    rel: np.ndarray
    velocity: np.ndarray
    has_velocity: np.ndarray
    hp: list[float | None]
    team: list[str | None]

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)

    @classmethod
    def empty(cls, n: int) -> EntityColumns:
        return cls(
            np.zeros(n + 1, dtype=np.int64), [], [], np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0, bool), [], []
        )

    def views(self, i: int) -> list[schema.EntityView]:
        """Row ``i``'s entities as :class:`~luanti_tune.schemas.agent.EntityView` objects."""
        lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
        out: list[schema.EntityView] = []
        rel = self.rel[lo:hi].tolist()
        vel = self.velocity[lo:hi].tolist()
        has_v = self.has_velocity[lo:hi].tolist()
        for j, k in enumerate(range(lo, hi)):
            values = {
                "kind": self.kind[k],
                "name": self.name[k],
                "rel": _vec3(*rel[j]),
                "velocity": _vec3(*vel[j]) if has_v[j] else None,
                "hp": self.hp[k],
                "team": self.team[k],
            }
            out.append(trusted(schema.EntityView, values, _ENTITY_FIELDS))
        return out

    def take(self, idx: np.ndarray) -> EntityColumns:
        """The entities of rows ``idx`` (in that order)."""
        counts = self.counts[idx]
        offsets = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        starts = self.offsets[:-1][idx]
        # entity k of the new order: start of its row + its rank within the row
        ent = np.repeat(starts - offsets[:-1], counts) + np.arange(int(offsets[-1]))
        el = ent.tolist()
        return EntityColumns(
            offsets,
            [self.kind[k] for k in el],
            [self.name[k] for k in el],
            self.rel[ent],
            self.velocity[ent],
            self.has_velocity[ent],
            [self.hp[k] for k in el],
            [self.team[k] for k in el],
        )

    @classmethod
    def concat(cls, parts: Sequence[EntityColumns]) -> EntityColumns:
        shift = 0
        offsets = [np.zeros(1, dtype=np.int64)]
        for p in parts:
            offsets.append(p.offsets[1:] + shift)
            shift += int(p.offsets[-1])
        return cls(
            np.concatenate(offsets),
            [k for p in parts for k in p.kind],
            [k for p in parts for k in p.name],
            np.concatenate([p.rel for p in parts]),
            np.concatenate([p.velocity for p in parts]),
            np.concatenate([p.has_velocity for p in parts]),
            [k for p in parts for k in p.hp],
            [k for p in parts for k in p.team],
        )


@dataclass(frozen=True)
class ObservationColumns:
    """The observations of a batch as columns (row ``i`` = ``agent[i]`` ...).

    Numbers are numpy arrays (``tick`` int64 ``[N]``; ``pos``/``velocity`` float64 ``[N, 3]``;
    ``yaw``/``pitch``/``hp`` float64 ``[N]``); names are lists. Fields that are rare in a batch
    are ``None`` when no row has them, else per-row lists of their validated values
    (``inventory``: dicts, ``nearby``/``last_result``/``goal``: objects or ``None``, ``chat``:
    lists of lines): the schema's objects, or any objects with their attribute names (the
    columnar decoder's own structs), turned into the schema's when a row is built.
    """

    agent: list[str]
    kind: list[str]
    tick: np.ndarray
    pos: np.ndarray
    yaw: np.ndarray
    pitch: np.ndarray
    hp: np.ndarray
    velocity: np.ndarray
    entities: EntityColumns
    targets: list[list[str]] | None = None
    team: list[str | None] | None = None
    goal: list[Any] | None = None
    inventory: list[dict[str, int]] | None = None
    nearby: list[Any] | None = None
    chat: list[list[Any]] | None = None
    last_result: list[Any] | None = None

    def __len__(self) -> int:
        return len(self.agent)

    @classmethod
    def of(cls, observations: Sequence[schema.Observation]) -> ObservationColumns | None:
        """The columns of validated observations: what the columnar decoder gives for the same
        observations sent as columns (row ``i``'s :meth:`observation` equals ``observations[i]``).

        ``None`` when a tick is beyond :data:`MAX_TICK`, which columns do not hold (the columnar
        format refuses such ticks; a row may carry any non-negative integer).
        """
        n = len(observations)
        ticks = [o.tick for o in observations]
        if ticks and max(ticks) > MAX_TICK:
            return None
        vec = _xyz_of
        ents = [e for o in observations for e in o.entities]
        m = len(ents)
        offsets = np.zeros(n + 1, dtype=np.int64)
        if m:
            np.cumsum([len(o.entities) for o in observations], out=offsets[1:])
        velocities = [e.velocity for e in ents]
        has_v = np.fromiter((v is not None for v in velocities), dtype=bool, count=m)
        entities = EntityColumns(
            offsets,
            [e.kind for e in ents],
            [e.name for e in ents],
            vec([e.rel for e in ents]),
            vec([_ZERO if v is None else v for v in velocities]),
            has_v,
            [e.hp for e in ents],
            [e.team for e in ents],
        )
        return cls(
            agent=[o.agent for o in observations],
            kind=[o.kind for o in observations],
            tick=np.array(ticks, dtype=np.int64).reshape(n),
            pos=vec([o.pos for o in observations]),
            yaw=np.array([o.yaw for o in observations], dtype=np.float64).reshape(n),
            pitch=np.array([o.pitch for o in observations], dtype=np.float64).reshape(n),
            hp=np.array([o.hp for o in observations], dtype=np.float64).reshape(n),
            velocity=vec([o.velocity for o in observations]),
            entities=entities,
            targets=_present([o.targets for o in observations]),
            team=_present([o.team for o in observations]),
            goal=_present([o.goal for o in observations]),
            inventory=_present([o.inventory for o in observations]),
            nearby=_present([o.nearby for o in observations]),
            chat=_present([o.chat for o in observations]),
            last_result=_present([o.last_result for o in observations]),
        )

    def observation(self, i: int) -> schema.Observation:
        """Row ``i`` as an :class:`Observation` (equal to pydantic's for the same row)."""
        p = self.pos[i].tolist()
        v = self.velocity[i].tolist()
        values = {
            "agent": self.agent[i],
            "kind": self.kind[i],
            "tick": int(self.tick[i]),
            "pos": _vec3(*p),
            "yaw": float(self.yaw[i]),
            "pitch": float(self.pitch[i]),
            "hp": float(self.hp[i]),
            "velocity": _vec3(*v),
            "inventory": dict(self.inventory[i]) if self.inventory is not None else {},
            "nearby": _nearby(self.nearby[i]) if self.nearby is not None else None,
            "entities": self.entities.views(i),
            "targets": list(self.targets[i]) if self.targets is not None else [],
            "chat": list(map(_chat, self.chat[i])) if self.chat is not None else [],
            "last_result": _last_result(self.last_result[i]) if self.last_result is not None else None,
            "goal": _goal(self.goal[i]) if self.goal is not None else None,
            "team": self.team[i] if self.team is not None else None,
        }
        return trusted(schema.Observation, values, _OBS_FIELDS)

    def take(self, idx: Sequence[int] | np.ndarray) -> ObservationColumns:
        """Rows ``idx`` (in that order)."""
        ix = np.asarray(idx, dtype=np.intp).reshape(-1)
        il = ix.tolist()
        return ObservationColumns(
            agent=[self.agent[i] for i in il],
            kind=[self.kind[i] for i in il],
            tick=self.tick[ix],
            pos=self.pos[ix],
            yaw=self.yaw[ix],
            pitch=self.pitch[ix],
            hp=self.hp[ix],
            velocity=self.velocity[ix],
            entities=self.entities.take(ix),
            targets=_pick(self.targets, il),
            team=_pick(self.team, il),
            goal=_pick(self.goal, il),
            inventory=_pick(self.inventory, il),
            nearby=_pick(self.nearby, il),
            chat=_pick(self.chat, il),
            last_result=_pick(self.last_result, il),
        )

    @classmethod
    def concat(cls, parts: Sequence[ObservationColumns]) -> ObservationColumns:
        """All rows of ``parts``, in order."""
        if len(parts) == 1:
            return parts[0]
        sizes = [len(p) for p in parts]
        return cls(
            agent=[a for p in parts for a in p.agent],
            kind=[k for p in parts for k in p.kind],
            tick=np.concatenate([p.tick for p in parts]),
            pos=np.concatenate([p.pos for p in parts]),
            yaw=np.concatenate([p.yaw for p in parts]),
            pitch=np.concatenate([p.pitch for p in parts]),
            hp=np.concatenate([p.hp for p in parts]),
            velocity=np.concatenate([p.velocity for p in parts]),
            entities=EntityColumns.concat([p.entities for p in parts]),
            targets=_join([p.targets for p in parts], sizes, []),
            team=_join([p.team for p in parts], sizes, None),
            goal=_join([p.goal for p in parts], sizes, None),
            inventory=_join([p.inventory for p in parts], sizes, {}),
            nearby=_join([p.nearby for p in parts], sizes, None),
            chat=_join([p.chat for p in parts], sizes, []),
            last_result=_join([p.last_result for p in parts], sizes, None),
        )


class LazyRows(Sequence[schema.Observation]):
    """``columns``' rows as :class:`Observation` objects, each built on first access (then kept);
    ``rows``: the observations the columns were made of (:meth:`ObservationColumns.of`), kept as
    they are."""

    __slots__ = ("columns", "_rows")

    def __init__(self, columns: ObservationColumns, rows: Sequence[schema.Observation] | None = None) -> None:
        self.columns = columns
        self._rows: list[schema.Observation | None] = [None] * len(columns) if rows is None else list(rows)

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(len(self._rows))[i]]
        if i < 0:
            i += len(self._rows)
            if i < 0:
                raise IndexError("observation index out of range")
        o = self._rows[i]
        if o is None:
            o = self._rows[i] = self.columns.observation(i)
        return o


__all__ = ["MAX_TICK", "EntityColumns", "LazyRows", "ObservationColumns"]
