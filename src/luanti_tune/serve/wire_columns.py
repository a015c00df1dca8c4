"""The ``columns`` format of ``POST /v1/act``: one array per field instead of one object per agent.

The format the mod sends by default (``luanti_tune.act_format = columns``): every agent's
observation of one step as columns, parsed into numpy arrays without one Python object per agent
and per field (JSON or msgpack, same shape). This is the one fast decoder of ``/v1/act``; JSON rows
(``{"observations": [...]}``) stay accepted through the pydantic models (``serve/act.py``)::

    {"columns": {
      "agent": ["enemy-0", "enemy-1"],
      "kind": "pursuit",                          # one value for every row, or one per row
      "tick": 42,                                 # idem
      "pos": {"x": [0, 5], "y": [8, 8], "z": [0, 1]},
      "yaw": [0, 0], "pitch": [0, 0], "hp": [20, 20],          # optional (schema defaults)
      "velocity": {"x": [0, 0], "y": [0, 0], "z": [0, 0]},     # optional
      "targets": [["alice"], ["alice"]],                        # optional
      "entities": {                                             # optional, flattened:
        "count": [1, 1],                          # entities per row; rows' entities follow in order
        "kind": "player",                         # one value for all, or one per entity
        "rel": {"x": [3, -2], "y": [0, 0], "z": [-2, 4]},
        "name": ["alice", "alice"],               # optional, like velocity/hp/team (null = absent)
        "velocity": {"x": [4, 4], "y": [0, 0], "z": [0, 0]}},
      "team": [...], "goal": [...], "inventory": [...], "nearby": [...], "chat": [...],
      "last_result": [...]                        # optional, one row value each (null = absent)
    }}

Row ``i`` is exactly the observation ``{"agent": agent[i], "kind": kind[i], ...}`` of the row
format (:func:`columns_to_rows` spells that out and is the reference the tests compare against):
the same values are valid, and they decode to equal :class:`Observation` objects. Integers may be
sent as integral floats (``42.0``, as Luanti's ``write_json`` writes numbers); ticks go up to
``2**53 - 1``.

A columnar request is answered with columns (:func:`~luanti_tune.serve.answer.render_columns`)::

    {"columns": {"agent": [...], "type": ["move", "wait", ...],
                 "dir": {"x": [...], "y": [...], "z": [...]}, "speed": [...]},
     "rows": {"7": {"agent": ..., "type": "dig", "args": ..., "fallback": ...}},
     "model": {"name", "version"}}

``type``/``dir``/``speed`` hold the move and wait (1 tick) actions the top-level model decided;
every other row (another action type or model, a fallback, an error) is given whole in ``rows``
(keyed by its row index as a string, the entry exactly as the row format would send it; its
``type`` column entry is its action type, or ``"error"``).

An invalid request is refused whole: 422 naming the first offending value
(``columns.pos.x[17]``, ``columns.entities.count``), 413 above ``act_max_agents`` rows. With
``?partial=1`` a structurally sound request (every column of the right length) is answered for
its valid rows instead, the invalid ones answered with errors naming their ``observations[i]`` field.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Sequence
from itertools import chain
from typing import Annotated, Any

import msgspec
import numpy as np
from msgspec import Meta

from luanti_tune.policies.batch import ObservationBatch
from luanti_tune.policies.columns import MAX_TICK, EntityColumns, ObservationColumns
from luanti_tune.schemas import agent as schema
from luanti_tune.schemas.agent import MAX_CHAT_LINES, MAX_ENTITIES, MAX_MESSAGE_CHARS, MAX_NEARBY_RADIUS, AgentKind
from luanti_tune.schemas.common import MAP_LIMIT, NAME_PATTERN, NODE_CODES

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- the schema as structs
# Types, kinds, unknown keys, list/string lengths and numeric bounds are checked by msgspec in C
# (``Meta`` constraints, the schema's own constants and literals). Unbounded floats carry
# ``+-DBL_MAX`` bounds so that NaN and infinities (msgpack can carry them; JSON ``1e999`` is
# refused by msgspec) are refused like pydantic's ``allow_inf_nan=False``. Name characters are
# checked for the whole request at once (:func:`names_ok`), grid sizes after decoding.

_MAX = sys.float_info.max
#: A finite float (ints accepted): the bounds refuse NaN and +-inf in C.
WFloat = Annotated[float, Meta(ge=-_MAX, le=_MAX)]
WCoord = Annotated[float, Meta(ge=-MAP_LIMIT, le=MAP_LIMIT)]
WHp = Annotated[float, Meta(ge=0.0, le=1000.0)]
#: Characters are checked for the whole request at once (see :func:`names_ok`).
WName = Annotated[str, Meta(min_length=1, max_length=64)]
WItemName = Annotated[str, Meta(max_length=128)]
WNonNegInt = Annotated[int, Meta(ge=0)]
WCode = Annotated[int, Meta(ge=0, le=max(NODE_CODES.values()))]
WRadius = Annotated[int, Meta(ge=1, le=MAX_NEARBY_RADIUS)]
WMessage = Annotated[str, Meta(max_length=MAX_MESSAGE_CHARS)]
#: Ticks as numbers (integral floats accepted); checked integral after decoding.
WTick = Annotated[float, Meta(ge=0, le=MAX_TICK)]
WCount = Annotated[float, Meta(ge=0, le=MAX_ENTITIES)]
#: The schema's entity kinds (its ``Literal``, read from the model: not a copy).
EntityKind = schema.EntityView.model_fields["kind"].annotation

_NUMBER_TYPES = frozenset((int, float))
_NAME_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-"


class Vec3(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    x: WCoord
    y: WCoord
    z: WCoord


class Nearby(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    radius: WRadius
    codes: list[WCode]


class ChatLine(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    sender: WName = msgspec.field(name="from")
    message: WMessage


class LastResult(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    action: str
    ok: bool
    reason: str | None = None


class XYZ(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    x: list[WCoord]
    y: list[WCoord]
    z: list[WCoord]


class OptXYZ(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    """Like :class:`XYZ`; ``null`` in all three marks an absent vector."""

    x: list[WCoord | None]
    y: list[WCoord | None]
    z: list[WCoord | None]


class EntityCols(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    count: list[WCount]
    kind: list[EntityKind] | EntityKind  # type: ignore[valid-type]  # a Literal read at run time
    rel: XYZ
    name: list[WName | None] | None = None
    velocity: OptXYZ | None = None
    hp: list[WFloat | None] | None = None
    team: list[WName | None] | None = None


class Columns(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    agent: list[WName]
    kind: list[AgentKind] | AgentKind
    pos: XYZ
    tick: list[WTick] | WTick = 0
    yaw: list[WFloat] | None = None
    pitch: list[WFloat] | None = None
    hp: list[WHp] | None = None
    velocity: XYZ | None = None
    entities: EntityCols | None = None
    targets: list[Annotated[list[WName], Meta(max_length=MAX_ENTITIES)]] | None = None
    team: list[WName | None] | None = None
    goal: list[Vec3 | None] | None = None
    inventory: list[dict[WItemName, WNonNegInt]] | None = None
    nearby: list[Nearby | None] | None = None
    chat: list[Annotated[list[ChatLine], Meta(max_length=MAX_CHAT_LINES)]] | None = None
    last_result: list[LastResult | None] | None = None


class ColumnsRequest(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    columns: Columns


_JSON = msgspec.json.Decoder(ColumnsRequest)
_MSGPACK = msgspec.msgpack.Decoder(ColumnsRequest)
_JSON_ANY = msgspec.json.Decoder()
_MSGPACK_ANY = msgspec.msgpack.Decoder()


class ColumnsError(ValueError):
    """An invalid columnar request: ``loc`` names the offending value; ``status`` is 422 or 413.

    ``structural``: the columns do not line up (wrong lengths, undecodable body ...), so the
    request cannot be read row by row either.
    """

    def __init__(self, loc: str, msg: str, *, status: int = 422, structural: bool = False) -> None:
        super().__init__(f"{loc}: {msg}")
        self.loc = loc
        self.msg = msg
        self.status = status
        self.structural = structural


def is_columns_body(body: bytes, msgpack: bool) -> bool:
    """Whether ``body`` is a columnar request (its one top-level key is ``columns``)."""
    if msgpack:
        return body[:9] == b"\x81\xa7columns"
    head = body[:64].lstrip()
    return head.startswith(b"{") and head[1:].lstrip().startswith(b'"columns"')


# ----------------------------------------------------------------------------- decoding


def read_columns(body: bytes, *, msgpack: bool, max_agents: int) -> ObservationBatch:
    """The observations of a columnar request body; :class:`ColumnsError` when it is invalid."""
    try:
        req = (_MSGPACK if msgpack else _JSON).decode(body)
    except msgspec.ValidationError:
        req = _decode_lax(body, msgpack, max_agents)
    except Exception as exc:  # noqa: BLE001 - not JSON/msgpack at all
        raise ColumnsError("body", f"not valid {'msgpack' if msgpack else 'JSON'}: {exc}", structural=True) from None
    return ObservationBatch.from_columns(build_columns(req.columns, max_agents))


def decode_untyped(body: bytes, *, msgpack: bool) -> Any:
    """``body`` as plain Python values, read by the same parser as :func:`read_columns`."""
    return (_MSGPACK_ANY if msgpack else _JSON_ANY).decode(body)


def _decode_lax(body: bytes, msgpack: bool, max_agents: int) -> ColumnsRequest:
    """The request with integral floats at integer positions (inventory, nearby) accepted
    (too many rows: 413 first, as the row format answers)."""
    try:
        raw = (_MSGPACK_ANY if msgpack else _JSON_ANY).decode(body)
    except Exception as exc:  # noqa: BLE001 - malformed after the first invalid value, nested too deep ...
        raise ColumnsError("body", f"not valid {'msgpack' if msgpack else 'JSON'}: {exc}", structural=True) from None
    cols = raw.get("columns") if type(raw) is dict else None
    if type(cols) is dict:
        agents = cols.get("agent")
        if type(agents) is list and len(agents) > max_agents:
            raise ColumnsError("columns.agent", f"too many observations: at most {max_agents} per request", status=413)
        for key, fix in (("inventory", _ints_of_floats_inventory), ("nearby", _ints_of_floats_nearby)):
            values = cols.get(key)
            if type(values) is list:
                for value in values:
                    fix(value)
    try:
        return msgspec.convert(raw, ColumnsRequest)
    except msgspec.ValidationError as exc:
        raise _error_of(exc) from None


def _error_of(exc: msgspec.ValidationError) -> ColumnsError:
    """``Expected ... - at `$.columns.pos.x[3]``` -> loc ``columns.pos.x[3]`` and the message."""
    text = str(exc)
    msg, sep, where = text.rpartition(" - at `")
    if not sep:  # msgspec names no path at the top level
        msg, where = text, "$`"
    key, _, where = where.rpartition("` in `")  # "key` in `$.columns.inventory[0]`": a dict key
    loc = where.rstrip("`").removeprefix("$.").removeprefix("$") or "body"
    if key:
        msg = f"{key}: {msg}"
    field = _FIELD_MSG.match(msg)
    if field:  # an unknown or missing field: name it (``columns.pos``), as the row format does
        loc = f"{loc}.{field[1]}" if loc != "body" else field[1]
    # outside the columns (``extra``, ``columns`` itself) there are no rows to answer one by one
    return ColumnsError(loc, msg, structural=not loc.startswith("columns."))


_FIELD_MSG = re.compile(r"^Object (?:contains unknown|missing required) field `([^`]*)`$")


def _length(loc: str, values: Sequence[Any] | None, n: int) -> None:
    if values is not None and len(values) != n:
        raise ColumnsError(loc, f"must hold {n} values (one per row), got {len(values)}", structural=True)


def _xyz_lengths(loc: str, v: XYZ | OptXYZ | None, n: int) -> None:
    if v is not None:
        for axis in ("x", "y", "z"):
            _length(f"{loc}.{axis}", getattr(v, axis), n)


def _integral(loc: str, values: np.ndarray) -> np.ndarray:
    bad = np.flatnonzero(values != np.floor(values))
    if len(bad):
        raise ColumnsError(f"{loc}[{int(bad[0])}]", f"must be an integer, got {values[bad[0]]!r}")
    return values.astype(np.int64)


def _broadcast(value: Any, n: int) -> list[Any]:
    return value if type(value) is list else [value] * n


def _xyz(v: XYZ, n: int) -> np.ndarray:
    out = np.empty((n, 3))
    if n:
        out[:, 0] = v.x
        out[:, 1] = v.y
        out[:, 2] = v.z
    return out


def build_columns(c: Columns, max_agents: int) -> ObservationColumns:
    """:class:`ObservationColumns` of decoded columns, after the checks msgspec cannot do."""
    n = len(c.agent)
    if n > max_agents:
        raise ColumnsError("columns.agent", f"too many observations: at most {max_agents} per request", status=413)
    _length("columns.kind", c.kind if type(c.kind) is list else None, n)
    _length("columns.tick", c.tick if type(c.tick) is list else None, n)
    _xyz_lengths("columns.pos", c.pos, n)
    _xyz_lengths("columns.velocity", c.velocity, n)
    for name in ("yaw", "pitch", "hp", "targets", "team", "goal", "inventory", "nearby", "chat", "last_result"):
        _length(f"columns.{name}", getattr(c, name), n)
    entities = _entities(c.entities, n)
    _check_names(c)
    if c.nearby is not None:
        for i, nb in enumerate(c.nearby):
            if nb is not None and len(nb.codes) != (2 * nb.radius + 1) ** 3:
                side = (2 * nb.radius + 1) ** 3
                raise ColumnsError(
                    f"columns.nearby[{i}].codes", f"must hold (2*radius+1)**3 = {side} entries, got {len(nb.codes)}"
                )
    tick = np.asarray(_broadcast(c.tick, n), dtype=np.float64).reshape(n)
    return ObservationColumns(
        agent=c.agent,
        kind=_broadcast(c.kind, n),
        tick=_integral("columns.tick", tick),
        pos=_xyz(c.pos, n),
        yaw=np.zeros(n) if c.yaw is None else np.asarray(c.yaw, dtype=np.float64),
        pitch=np.zeros(n) if c.pitch is None else np.asarray(c.pitch, dtype=np.float64),
        hp=np.full(n, 20.0) if c.hp is None else np.asarray(c.hp, dtype=np.float64),
        velocity=np.zeros((n, 3)) if c.velocity is None else _xyz(c.velocity, n),
        entities=entities,
        targets=c.targets,
        team=c.team,
        goal=c.goal,  # the structs: the schema's objects are made when a row is built
        inventory=c.inventory,
        nearby=c.nearby,
        chat=c.chat,
        last_result=c.last_result,
    )


def _entities(e: EntityCols | None, n: int) -> EntityColumns:
    if e is None:
        return EntityColumns.empty(n)
    _length("columns.entities.count", e.count, n)
    counts = _integral("columns.entities.count", np.asarray(e.count, dtype=np.float64))
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    m = int(offsets[-1])
    where = "(the sum of columns.entities.count)"
    for loc, values in (
        ("kind", e.kind if type(e.kind) is list else None),
        ("name", e.name),
        ("hp", e.hp),
        ("team", e.team),
    ):
        if values is not None and len(values) != m:
            raise ColumnsError(
                f"columns.entities.{loc}", f"must hold {m} values {where}, got {len(values)}", structural=True
            )
    for loc, v in (("rel", e.rel), ("velocity", e.velocity)):
        if v is not None:
            for axis in ("x", "y", "z"):
                got = len(getattr(v, axis))
                if got != m:
                    raise ColumnsError(
                        f"columns.entities.{loc}.{axis}", f"must hold {m} values {where}, got {got}", structural=True
                    )
    if e.velocity is None:
        velocity, has_v = np.zeros((m, 3)), np.zeros(m, dtype=bool)
    else:
        v = e.velocity
        velocity = np.empty((m, 3))
        if m:
            velocity[:, 0] = np.asarray(v.x, dtype=np.float64)  # null -> nan
            velocity[:, 1] = np.asarray(v.y, dtype=np.float64)
            velocity[:, 2] = np.asarray(v.z, dtype=np.float64)
        nan = np.isnan(velocity)
        has_v = ~nan[:, 0]
        mixed = np.flatnonzero(nan.any(axis=1) & ~nan.all(axis=1))
        if len(mixed):
            raise ColumnsError(
                f"columns.entities.velocity[{int(mixed[0])}]", "x, y and z must all be numbers or all be null"
            )
        velocity[~has_v] = 0.0
    none: list[Any] = [None] * m
    return EntityColumns(
        offsets=offsets,
        kind=_broadcast(e.kind, m),
        name=e.name if e.name is not None else none,
        rel=_xyz(e.rel, m),
        velocity=velocity,
        has_velocity=has_v,
        hp=e.hp if e.hp is not None else none,
        team=e.team if e.team is not None else none,
    )


def _check_names(c: Columns) -> None:
    """Every name matches the schema's pattern (lengths were checked by msgspec)."""
    e = c.entities
    groups: list[tuple[str, Sequence[Any], bool]] = [
        ("columns.agent", c.agent, False),
        ("columns.team", c.team or (), False),
        ("columns.entities.name", (e.name or ()) if e else (), False),
        ("columns.entities.team", (e.team or ()) if e else (), False),
        ("columns.targets", c.targets or (), True),
    ]
    names = list(
        chain(
            c.agent,
            filter(None, c.team or ()),
            filter(None, (e.name or ()) if e else ()),
            filter(None, (e.team or ()) if e else ()),
            chain.from_iterable(c.targets or ()),
            (line.sender for lines in (c.chat or ()) for line in lines),
        )
    )
    if names_ok(names):
        return
    for loc, values, nested in groups:
        for i, v in enumerate(values):
            for j, name in enumerate(v if nested else [v]):
                if name is not None and not names_ok([name]):
                    where = f"{loc}[{i}][{j}]" if nested else f"{loc}[{i}]"
                    raise ColumnsError(where, f"name {name!r} must match {NAME_PATTERN}")
    for i, lines in enumerate(c.chat or ()):
        for j, line in enumerate(lines):
            if not names_ok([line.sender]):
                raise ColumnsError(f"columns.chat[{i}][{j}].from", f"name {line.sender!r} must match {NAME_PATTERN}")
    raise ColumnsError("columns", "a name does not match the name pattern")  # pragma: no cover - found above


def names_ok(names: list[str]) -> bool:
    """Whether every one of ``names`` is made of ``[A-Za-z0-9_.:-]`` only (one pass for all of them)."""
    if not names:
        return True
    joined = "\n".join(names)
    if not joined.isascii():
        return False
    rest = joined.encode("ascii").translate(None, _NAME_CHARS)
    # only the separators may remain: a name holding "\n" (or any other character) shows up here
    return len(rest) == len(names) - 1 and rest.count(b"\n") == len(rest)


def _int(value: Any) -> Any:
    """``value`` as an ``int`` if it is an integral finite float, else unchanged (refused later)."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


def _ints_of_floats_inventory(inv: Any) -> None:
    """In place: an untyped inventory's integral float counts become ``int`` (other shapes left alone)."""
    if type(inv) is dict:
        for k, v in inv.items():
            inv[k] = _int(v)


def _ints_of_floats_nearby(nb: Any) -> None:
    """In place: an untyped nearby grid's integral float radius and codes become ``int``."""
    if type(nb) is dict:
        if "radius" in nb:
            nb["radius"] = _int(nb["radius"])
        codes = nb.get("codes")
        if type(codes) is list:
            nb["codes"] = _ints(codes)


def _ints(values: list[Any]) -> list[Any]:
    """``[_int(v) for v in values]``, vectorised when all are small integral numbers (voxel codes)."""
    if values and set(map(type, values)) <= _NUMBER_TYPES:  # no bools, strings ... (left to msgspec)
        try:
            a = np.array(values, dtype=np.float64)
        except OverflowError:  # an int beyond float range: refused later anyway
            a = None
        if a is not None and np.all((a == np.floor(a)) & (np.abs(a) <= 2.0**53)):
            return a.astype(np.int64).tolist()  # type: ignore[no-any-return]
    return [_int(v) for v in values]


# ----------------------------------------------------------------------------- reference: rows


def columns_to_rows(raw: Any, max_agents: int | None = None) -> list[dict[str, Any]]:
    """The row-format observations of an (undecoded) columnar request's ``columns`` object.

    Row ``i`` takes value ``i`` of every column that is present (broadcasting ``kind``, ``tick``
    and ``entities.kind``; ``null`` meaning absent for optional values and columns). Used for
    ``?partial=1`` (the row path then names each row's errors) and as the reference in the tests.
    Raises :class:`ColumnsError` when the columns do not line up (413 beyond ``max_agents`` rows),
    before building any row.
    """
    if type(raw) is not dict:
        raise ColumnsError("columns", "must be an object of columns", structural=True)
    agents = raw.get("agent")
    if type(agents) is not list:
        raise ColumnsError("columns.agent", "must be a list of agent names", structural=True)
    n = len(agents)
    if max_agents is not None and n > max_agents:
        raise ColumnsError("columns.agent", f"too many observations: at most {max_agents} per request", status=413)
    _check_lengths(raw, n)
    rows: list[dict[str, Any]] = [{"agent": a} for a in agents]
    for key, value in raw.items():
        if key in ("agent", "entities") or (value is None and key not in _REQUIRED):
            continue
        if key in ("kind", "tick") and type(value) is not list:
            for r in rows:
                r[key] = value
            continue
        if key in ("pos", "velocity"):
            for r, (x, y, z) in zip(rows, _xyz_rows(value), strict=True):
                r[key] = {"x": x, "y": y, "z": z}
            continue
        for r, v in zip(rows, value, strict=True):
            if v is not None or key not in _NULLABLE:
                r[key] = v
    ents = raw.get("entities")
    if ents is not None:
        for r, views in zip(rows, _entity_rows(ents), strict=True):
            r["entities"] = views
    return rows


_NULLABLE = frozenset({"team", "goal", "nearby", "last_result"})
_REQUIRED = frozenset({"kind", "pos", "tick"})


def _check_lengths(raw: dict[str, Any], n: int) -> None:
    """Every column of ``raw`` lines up with ``n`` rows, entities with their counts (nothing built)."""
    for key, value in raw.items():
        if key in ("agent", "entities") or (value is None and key not in _REQUIRED):
            continue
        if key in ("kind", "tick") and type(value) is not list:
            continue
        if key in ("pos", "velocity"):
            _axes(f"columns.{key}", value, n)
        else:
            _row_list(f"columns.{key}", value, n)
    ents = raw.get("entities")
    if ents is None:
        return
    if type(ents) is not dict or "count" not in ents:
        raise ColumnsError("columns.entities", "must be an object with a count list", structural=True)
    counts = ents["count"]
    _row_list("columns.entities.count", counts, n)
    for i, k in enumerate(counts):
        if not (type(k) in (int, float) and 0 <= k <= MAX_ENTITIES and float(k).is_integer()):
            raise ColumnsError(
                f"columns.entities.count[{i}]", f"must be an integer in 0..{MAX_ENTITIES}", structural=True
            )
    m = int(sum(counts))
    for key, value in ents.items():
        if key == "count" or value is None or (key == "kind" and type(value) is not list):
            continue
        loc = f"columns.entities.{key}"
        if key in ("rel", "velocity"):
            _axes(loc, value, m)
        else:
            _row_list(loc, value, m)


_ROW_DEFAULTS: dict[str, Any] = {"yaw": 0.0, "pitch": 0.0, "hp": 20.0, "targets": [], "inventory": {}, "chat": []}
_ENTITY_KEYS = ("kind", "name", "hp", "team")


def rows_to_columns(observations: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The columnar request (``{"columns": ...}``) of row-format observations (valid ones).

    What a Python client sends instead of ``{"observations": observations}``: optional fields
    become columns only when some row has them (the others get the schema default or ``null``);
    ``kind``, ``tick`` and ``entities.kind`` are sent once when every row has the same.
    """
    n = len(observations)
    cols: dict[str, Any] = {"agent": [o["agent"] for o in observations], "kind": [o["kind"] for o in observations]}
    cols["tick"] = [o.get("tick", 0) for o in observations]
    for key in ("kind", "tick"):
        cols[key] = _uniform(cols[key])
    cols["pos"] = _vec_columns([o["pos"] for o in observations])
    present = {k for o in observations for k in o}
    if "velocity" in present:
        zero = {"x": 0.0, "y": 0.0, "z": 0.0}
        cols["velocity"] = _vec_columns([o.get("velocity", zero) for o in observations])
    for key in ("yaw", "pitch", "hp", "targets", "inventory", "chat", *sorted(_NULLABLE)):
        if key in present:
            cols[key] = [o.get(key, _ROW_DEFAULTS.get(key)) for o in observations]
    if "entities" in present:
        ents = [e for o in observations for e in o.get("entities", ())]
        ec: dict[str, Any] = {"count": [len(o.get("entities", ())) for o in observations]}
        for key in _ENTITY_KEYS:
            if key == "kind" or any(key in e for e in ents):
                ec[key] = [e.get(key) for e in ents]
        ec["rel"] = _vec_columns([e["rel"] for e in ents])
        if any("velocity" in e for e in ents):
            ec["velocity"] = _vec_columns([e.get("velocity") for e in ents])
        ec["kind"] = _uniform(ec["kind"])
        cols["entities"] = ec
    assert all(len(v) == n for k, v in cols.items() if isinstance(v, list)), "ragged rows"
    return {"columns": cols}


def _uniform(values: list[Any]) -> Any:
    """``values[0]`` when every value is that same one (sent once), else ``values``."""
    if values and values.count(values[0]) == len(values) and type(values[0]) is not list:
        return values[0]
    return values


def _vec_columns(vecs: Sequence[dict[str, float] | None]) -> dict[str, list[float | None]]:
    return {a: [None if v is None else v[a] for v in vecs] for a in ("x", "y", "z")}


def _row_list(loc: str, value: Any, n: int) -> None:
    if type(value) is not list or len(value) != n:
        raise ColumnsError(loc, f"must be a list of {n} values (one per row)", structural=True)


def _axes(loc: str, value: Any, n: int) -> None:
    if type(value) is not dict or set(value) != {"x", "y", "z"}:
        raise ColumnsError(loc, "must be an object of x, y and z lists", structural=True)
    for axis in ("x", "y", "z"):
        _row_list(f"{loc}.{axis}", value[axis], n)


def _xyz_rows(value: dict[str, list[Any]]) -> zip[tuple[Any, Any, Any]]:
    """``(x, y, z)`` per row of a vector column (already checked by :func:`_axes`)."""
    return zip(value["x"], value["y"], value["z"], strict=True)


def _entity_rows(ents: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """Each row's entity dicts (every column already checked by :func:`_check_lengths`)."""
    counts = ents["count"]  # integers in 0..MAX_ENTITIES
    m = int(sum(counts))
    flat: list[dict[str, Any]] = [{} for _ in range(m)]
    for key, value in ents.items():
        if key == "count" or value is None:
            continue
        if key == "kind" and type(value) is not list:
            for f in flat:
                f[key] = value
        elif key in ("rel", "velocity"):
            for f, (x, y, z) in zip(flat, _xyz_rows(value), strict=True):
                if not (key == "velocity" and x is None and y is None and z is None):
                    f[key] = {"x": x, "y": y, "z": z}
        else:
            for f, v in zip(flat, value, strict=True):
                if v is not None:
                    f[key] = v
    out: list[list[dict[str, Any]]] = []
    start = 0
    for k in counts:
        out.append(flat[start : start + int(k)])
        start += int(k)
    return out


__all__ = [
    "Columns",
    "ColumnsError",
    "ColumnsRequest",
    "columns_to_rows",
    "decode_untyped",
    "is_columns_body",
    "names_ok",
    "read_columns",
    "rows_to_columns",
]
