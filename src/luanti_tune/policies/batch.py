"""Columnar batches: observations in, decisions out, without one Python object per field.

A 1000-agent ``/v1/act`` call must be decided in about a millisecond, which leaves no room for
building (and later reading back) thousands of pydantic objects. The engine therefore hands
family adapters an :class:`ObservationBatch` and accepts :class:`DecisionColumns` back:

* :class:`ObservationBatch` is a ``Sequence[Observation]`` (so every adapter and scripted policy
  works unchanged) with its columns computed once and shared (``agents``, ``ticks``, ``pos`` ...).
  A batch ``/v1/act`` decoded (either wire format) also carries ``cols``
  (:class:`~luanti_tune.policies.columns.ObservationColumns`: every field as an array), which an
  adapter can read without touching a Python object per agent (see the pursuit adapter); its rows
  are ``Observation`` objects built on first access.
* :class:`DecisionColumns` holds one decision per row as arrays (``move`` along ``dir`` at
  ``speed``, else ``wait``); it turns into typed :class:`~luanti_tune.policies.base.Decision`
  objects or wire dicts only when somebody asks.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, overload

import numpy as np
import orjson

from luanti_tune.policies.columns import LazyRows, ObservationColumns
from luanti_tune.schemas.agent import MoveAction, MoveArgs, Observation, WaitAction
from luanti_tune.schemas.common import Vec3, trusted

_POS = attrgetter("pos.x", "pos.y", "pos.z")


class ObservationBatch(Sequence[Observation]):
    """Validated observations of one batch, with columns computed once and shared.

    ``items`` holds the observations (a list, or the lazy rows of ``cols``); objects with the
    attribute names of :class:`Observation` (``items[i].pos.x`` ...) work too.
    """

    __slots__ = ("items", "cols", "_agents", "_kinds", "_ticks", "_pos")

    def __init__(self, items: Sequence[Any], *, agents: list[str] | None = None) -> None:
        """``agents``: ``[item.agent for item in items]`` when the caller has it already."""
        self.items: Sequence[Any] = items if isinstance(items, (list, LazyRows)) else list(items)
        self._agents: list[str] | None = agents
        self._kinds: list[str] | None = None
        self._ticks: np.ndarray | None = None
        self._pos: np.ndarray | None = None
        #: The batch as columns (every batch ``/v1/act`` decodes; else ``None``).
        self.cols: ObservationColumns | None = None

    @classmethod
    def from_columns(cls, cols: ObservationColumns, rows: Sequence[Observation] | None = None) -> ObservationBatch:
        """A batch over ``cols``: ``batch[i]`` is ``rows[i]`` when given (the observations ``cols``
        were made of), else an Observation built on first access."""
        out = cls(LazyRows(cols, rows), agents=cols.agent)
        out.cols = cols
        out._kinds = cols.kind
        out._ticks = cols.tick
        out._pos = cols.pos
        return out

    @classmethod
    def from_observations(cls, observations: Sequence[Observation]) -> ObservationBatch:
        """Validated observations as a columnar batch (:meth:`ObservationColumns.of`), the very
        objects as its rows; a plain batch of them when columns cannot hold them."""
        cols = ObservationColumns.of(observations)
        return cls(observations) if cols is None else cls.from_columns(cols, observations)

    @classmethod
    def of(cls, observations: Sequence[Observation]) -> ObservationBatch:
        """``observations`` as a batch (itself when it already is one)."""
        if isinstance(observations, ObservationBatch):
            return observations
        return cls(list(observations))

    @classmethod
    def concat(cls, batches: Sequence[ObservationBatch]) -> ObservationBatch:
        """One batch of all rows of ``batches`` (in order): columnar when they all are."""
        if len(batches) == 1:
            return batches[0]
        if batches and all(b.cols is not None for b in batches):
            return cls.from_columns(ObservationColumns.concat([b.cols for b in batches]))  # type: ignore[misc]
        return cls([o for b in batches for o in b])

    # ------------------------------------------------------------------ sequence of Observation
    def __len__(self) -> int:
        return len(self.items)

    @overload
    def __getitem__(self, i: int) -> Observation: ...

    @overload
    def __getitem__(self, i: slice) -> ObservationBatch: ...

    def __getitem__(self, i: int | slice) -> Observation | ObservationBatch:
        if isinstance(i, slice):
            return self.take(range(len(self.items))[i])
        return self.items[i]  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[Observation]:
        return iter(self.items)

    def take(self, idx: Sequence[int]) -> ObservationBatch:
        """The rows ``idx`` (in that order) as a new batch over the same items."""
        if self.cols is not None:
            return ObservationBatch.from_columns(self.cols.take(idx))
        items = self.items
        out = ObservationBatch([items[i] for i in idx])
        if self._agents is not None:
            agents = self._agents
            out._agents = [agents[i] for i in idx]
        return out

    # ------------------------------------------------------------------ columns (cached)
    @property
    def agents(self) -> list[str]:
        if self._agents is None:
            self._agents = list(map(attrgetter("agent"), self.items))
        return self._agents

    def share_agents(self, agents: list[str]) -> None:
        """Use ``agents``, a list the caller knows equals :attr:`agents` (e.g. the previous batch's,
        see :meth:`SessionStore.touch`), as this batch's: equality checks against it then compare
        identical strings. Only the ends are checked here (a full comparison is what this saves)."""
        mine = self.agents
        if agents is not mine:
            if len(agents) != len(mine) or (mine and (agents[0] != mine[0] or agents[-1] != mine[-1])):
                raise ValueError("share_agents needs a list equal to the batch's agents")
            self._agents = agents

    @property
    def kinds(self) -> list[str]:
        if self._kinds is None:
            self._kinds = list(map(attrgetter("kind"), self.items))
        return self._kinds

    @property
    def ticks(self) -> np.ndarray:
        """``int64 [N]``."""
        if self._ticks is None:
            self._ticks = np.fromiter(map(attrgetter("tick"), self.items), dtype=np.int64, count=len(self.items))
        return self._ticks

    @property
    def pos(self) -> np.ndarray:
        """``float64 [N, 3]`` (x, y, z)."""
        if self._pos is None:
            n = len(self.items)
            self._pos = np.array(list(map(_POS, self.items)), dtype=np.float64).reshape(n, 3)
        return self._pos


# ----------------------------------------------------------------------------- decisions

_VEC3_FIELDS = frozenset({"x", "y", "z"})
# the constant pieces of one row of DecisionColumns.wire_json (a move, and a wait in its slots)
_MOVE_PIECES = (b',{"agent":"', b'","type":"move","args":{"dir":{"x":', b',"y":', b',"z":', b'},"speed":', b"}}")
_ROW_PARTS = 11  # 6 pieces around the agent's name and 4 numbers
_WAIT_TAIL = [b'","type":"wait","args":{"ticks":1}}'] + [b""] * (_ROW_PARTS - 3)
_ARGS_FIELDS = frozenset({"dir", "speed"})
_ACT_FIELDS = frozenset({"agent", "type", "args"})


@dataclass(frozen=True)
class DecisionColumns:
    """One decision per row: ``move[i]`` -> walk along ``dir[i]`` at ``speed[i]``, else wait 1 tick.

    ``confidence[i]`` in 0..1 as in :class:`~luanti_tune.policies.base.Decision`. Arrays are
    float64 ``[N]``/``[N, 3]`` and bool ``[N]``; ``agents[i]`` names the row's agent.
    """

    agents: Sequence[str]
    move: np.ndarray
    dir: np.ndarray
    speed: np.ndarray
    confidence: np.ndarray

    def __len__(self) -> int:
        return len(self.agents)

    def take(self, idx: np.ndarray | Sequence[int]) -> DecisionColumns:
        ix = np.asarray(idx, dtype=np.intp)
        agents = self.agents
        return DecisionColumns(
            [agents[i] for i in ix.tolist()], self.move[ix], self.dir[ix], self.speed[ix], self.confidence[ix]
        )

    def decisions(self) -> list[Any]:
        """Typed decisions (``MoveAction``/``WaitAction``), equal to building them one by one."""
        from luanti_tune.policies.base import Decision

        move = self.move.tolist()
        d = self.dir.tolist()
        speed = self.speed.tolist()
        conf = self.confidence.tolist()
        out: list[Decision] = []
        for i, agent in enumerate(self.agents):
            if not move[i]:
                out.append(Decision(WaitAction(agent=agent, type="wait"), confidence=conf[i]))
                continue
            x, y, z = d[i]
            v = trusted(Vec3, {"x": x, "y": y, "z": z}, _VEC3_FIELDS)
            a = trusted(MoveArgs, {"dir": v, "speed": speed[i]}, _ARGS_FIELDS)
            act = trusted(MoveAction, {"agent": agent, "type": "move", "args": a}, _ACT_FIELDS)
            out.append(Decision(act, conf[i]))
        return out

    def wire_json(self) -> bytes:
        """``orjson.dumps(self.wire())``, byte for byte, without a Python object per row and field.

        Each column is serialised once by orjson (numbers as orjson writes Python floats) and cut
        into its values; the rows are the constant pieces around them, joined once."""
        n = len(self.agents)
        if n == 0:
            return b"[]"
        names = orjson.dumps(list(self.agents))[2:-2].split(b'","')  # escaped; '","' is never inside
        cols = [_json_values(self.dir[:, k]) for k in range(3)]
        cols.append(_json_values(self.speed))
        parts: list[bytes] = [b""] * (_ROW_PARTS * n)
        m0, m1, m2, m3, m4, m5 = _MOVE_PIECES
        parts[0::_ROW_PARTS] = [m0] * n
        parts[1::_ROW_PARTS] = names
        parts[2::_ROW_PARTS] = [m1] * n
        parts[4::_ROW_PARTS] = [m2] * n
        parts[6::_ROW_PARTS] = [m3] * n
        parts[8::_ROW_PARTS] = [m4] * n
        parts[10::_ROW_PARTS] = [m5] * n
        for k, values in enumerate(cols):
            parts[3 + 2 * k :: _ROW_PARTS] = values
        for i in np.flatnonzero(~np.asarray(self.move, dtype=bool)).tolist():  # waits: no numbers
            base = _ROW_PARTS * i
            parts[base + 2 : base + _ROW_PARTS] = _WAIT_TAIL
        out = b"".join(parts)
        return b"[" + out[1:] + b"]"

    def wire(self, rows: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """The JSON form of rows ``rows`` (default all), as ``Action.model_dump(mode="json")`` gives."""
        agents = self.agents
        move = self.move.tolist()
        d = self.dir.tolist()
        speed = self.speed.tolist()
        if rows is None and all(move):  # every row moves: one comprehension, no branches
            return [
                {"agent": a, "type": "move", "args": {"dir": {"x": x, "y": y, "z": z}, "speed": sp}}
                for a, (x, y, z), sp in zip(agents, d, speed, strict=True)
            ]
        idx: Sequence[int] = range(len(agents)) if rows is None else rows
        wait = {"ticks": 1}
        out: list[dict[str, Any]] = []
        append = out.append
        for i in idx:
            if move[i]:
                x, y, z = d[i]
                args = {"dir": {"x": x, "y": y, "z": z}, "speed": speed[i]}
                append({"agent": agents[i], "type": "move", "args": args})
            else:
                append({"agent": agents[i], "type": "wait", "args": dict(wait)})
        return out


def _json_values(column: np.ndarray) -> list[bytes]:
    """The JSON text of each value of a float64 ``[N]`` column (as orjson writes Python floats)."""
    text = orjson.dumps(np.ascontiguousarray(column, dtype=np.float64), option=orjson.OPT_SERIALIZE_NUMPY)
    return text[1:-1].split(b",")
