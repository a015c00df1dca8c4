"""Fast validated decoding of ``POST /v1/act`` bodies with msgspec (the pydantic schema, ~5x faster).

:func:`decode_observations` decodes ``{"observations": [...]}`` (JSON or msgpack) into light, frozen
msgspec structs with the attribute names of :class:`~luanti_tune.schemas.agent.Observation` and
its nested models, wrapped in an :class:`~luanti_tune.policies.batch.ObservationBatch`.

Invariant (the whole point): when :func:`decode_observations` returns a batch, the pydantic request
model accepts the same body and ``to_observation(batch.items[i]) == pydantic_observations[i]``.
Whenever this fast path cannot prove validity it returns ``None`` and the caller runs the pydantic
path, which accepts the body or words the 422/413 errors. Returning ``None`` for a valid body is
allowed (only slower); accepting an invalid one is a bug.

How the schema is mirrored, cheaply:

* types, ``Literal`` kinds, unknown keys, list/string lengths and numeric bounds are checked by
  msgspec in C (``Meta`` constraints). Unbounded floats carry ``+-DBL_MAX`` bounds so that NaN and
  infinities (msgpack can carry them; JSON ``1e999`` is refused by msgspec) are refused like
  pydantic's ``allow_inf_nan=False``.
* name patterns (``^[A-Za-z0-9_.:\\-]{1,64}$``): lengths in C, the characters of all names of the
  request at once (joined, one ``bytes.translate``) instead of one regex call per name.
* ``nearby`` sizes ``(2r+1)**3``: one Python check per observation that carries a grid.
* integers: the struct fields are strict ``int``. A body with integral floats for integer fields
  (``42.0``, as Luanti's ``write_json`` emits) fails that first decode; it is then decoded
  untyped, its integral floats at integer positions are turned into ``int`` (as pydantic does)
  and the result is validated by :func:`msgspec.convert` against the same structs: slower, but
  still exact, and the structs always hold ``int`` there.

Structs: same attribute names and defaults as the pydantic models (``ChatLine.sender`` is ``"from"``
on the wire), required fields first (so positional construction differs), lists and dicts as
decoded (frozen structs, but the lists are plain lists: do not mutate them). :func:`to_observation`
builds the pydantic objects without validating again; they compare equal (``==`` and ``repr``) to
pydantic's, but their ``model_fields_set`` holds every field (as after ``model_validate`` of a
full dict), not only the keys the client sent.
"""

from __future__ import annotations

import logging
import sys
from itertools import chain
from operator import attrgetter
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
from msgspec import Meta

from luanti_tune.policies.batch import ObservationBatch
from luanti_tune.schemas import agent as schema
from luanti_tune.schemas.agent import (
    MAX_CHAT_LINES,
    MAX_ENTITIES,
    MAX_MESSAGE_CHARS,
    MAX_NEARBY_RADIUS,
    Observation,
)
from luanti_tune.schemas.common import MAP_LIMIT, NODE_CODES, trusted
from luanti_tune.schemas.common import Vec3 as PVec3

log = logging.getLogger(__name__)

_MAX = sys.float_info.max
#: A finite float (ints accepted): the bounds refuse NaN and +-inf in C.
WFloat = Annotated[float, Meta(ge=-_MAX, le=_MAX)]
WCoord = Annotated[float, Meta(ge=-MAP_LIMIT, le=MAP_LIMIT)]
WHp = Annotated[float, Meta(ge=0.0, le=1000.0)]
#: Characters are checked for the whole request at once (see :func:`_names_ok`).
WName = Annotated[str, Meta(min_length=1, max_length=64)]
WItemName = Annotated[str, Meta(max_length=128)]
WNonNegInt = Annotated[int, Meta(ge=0)]
WCode = Annotated[int, Meta(ge=0, le=max(NODE_CODES.values()))]
WRadius = Annotated[int, Meta(ge=1, le=MAX_NEARBY_RADIUS)]
WMessage = Annotated[str, Meta(max_length=MAX_MESSAGE_CHARS)]

_NUMBER_TYPES = frozenset((int, float))
_NAME_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-"


class Vec3(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    x: WCoord
    y: WCoord
    z: WCoord


class Nearby(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    radius: WRadius
    codes: list[WCode]


class EntityView(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    kind: Literal["player", "agent", "mob", "item"]
    rel: Vec3
    name: WName | None = None
    velocity: Vec3 | None = None
    hp: WFloat | None = None
    team: WName | None = None


class ChatLine(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    sender: WName = msgspec.field(name="from")
    message: WMessage


class LastResult(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    action: str
    ok: bool
    reason: str | None = None


_ZERO = Vec3(0.0, 0.0, 0.0)


class WireObservation(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    """:class:`~luanti_tune.schemas.agent.Observation` as a struct (same attributes and defaults)."""

    agent: WName
    kind: Literal["pursuit", "navigation", "npc", "team"]
    pos: Vec3
    tick: WNonNegInt = 0
    yaw: WFloat = 0.0
    pitch: WFloat = 0.0
    hp: WHp = 20.0
    velocity: Vec3 = _ZERO
    inventory: dict[WItemName, WNonNegInt] = msgspec.field(default_factory=dict)
    nearby: Nearby | None = None
    entities: Annotated[list[EntityView], Meta(max_length=MAX_ENTITIES)] = msgspec.field(default_factory=list)
    targets: Annotated[list[WName], Meta(max_length=MAX_ENTITIES)] = msgspec.field(default_factory=list)
    chat: Annotated[list[ChatLine], Meta(max_length=MAX_CHAT_LINES)] = msgspec.field(default_factory=list)
    last_result: LastResult | None = None
    goal: Vec3 | None = None
    team: WName | None = None


class ActRequest(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    observations: list[WireObservation]


_JSON = msgspec.json.Decoder(ActRequest)
_MSGPACK = msgspec.msgpack.Decoder(ActRequest)
_JSON_ANY = msgspec.json.Decoder()
_MSGPACK_ANY = msgspec.msgpack.Decoder()

_AGENT = attrgetter("agent")
_TEAM = attrgetter("team")
_NAME = attrgetter("name")
_TARGETS = attrgetter("targets")
_ENTITIES = attrgetter("entities")
_CHAT = attrgetter("chat")
_SENDER = attrgetter("sender")
_NEARBY = attrgetter("nearby")


_OBS_FIELDS = frozenset(Observation.model_fields)
_VEC3_FIELDS = frozenset(PVec3.model_fields)
_NEARBY_FIELDS = frozenset(schema.Nearby.model_fields)
_ENTITY_FIELDS = frozenset(schema.EntityView.model_fields)
_CHAT_FIELDS = frozenset(schema.ChatLine.model_fields)
_RESULT_FIELDS = frozenset(schema.LastResult.model_fields)


def _vec3(v: Vec3) -> PVec3:
    return trusted(PVec3, {"x": v.x, "y": v.y, "z": v.z}, _VEC3_FIELDS)


def _entity(e: EntityView) -> schema.EntityView:
    values = {
        "kind": e.kind,
        "name": e.name,
        "rel": _vec3(e.rel),
        "velocity": None if e.velocity is None else _vec3(e.velocity),
        "hp": e.hp,
        "team": e.team,
    }
    return trusted(schema.EntityView, values, _ENTITY_FIELDS)


def _chat(c: ChatLine) -> schema.ChatLine:
    return trusted(schema.ChatLine, {"sender": c.sender, "message": c.message}, _CHAT_FIELDS)


def _nearby(nb: Nearby) -> schema.Nearby:
    return trusted(schema.Nearby, {"radius": nb.radius, "codes": list(nb.codes)}, _NEARBY_FIELDS)


def _last(lr: LastResult) -> schema.LastResult:
    return trusted(schema.LastResult, {"action": lr.action, "ok": lr.ok, "reason": lr.reason}, _RESULT_FIELDS)


def to_observation(item: WireObservation) -> Observation:
    """The pydantic :class:`Observation` of one decoded struct.

    Built from the already validated values without validating them again: equal (values, types,
    field order, so ``==`` and ``repr``) to ``Observation.model_validate(msgspec.to_builtins(item))``
    and to what the pydantic request model gives for the same body, about 10x faster.
    """
    nb = item.nearby
    lr = item.last_result
    goal = item.goal
    values = {
        "agent": item.agent,
        "kind": item.kind,
        "tick": item.tick,
        "pos": _vec3(item.pos),
        "yaw": item.yaw,
        "pitch": item.pitch,
        "hp": item.hp,
        "velocity": _vec3(item.velocity),
        "inventory": dict(item.inventory),
        "nearby": None if nb is None else _nearby(nb),
        "entities": [_entity(e) for e in item.entities] if item.entities else [],
        "targets": list(item.targets),
        "chat": [_chat(c) for c in item.chat] if item.chat else [],
        "last_result": None if lr is None else _last(lr),
        "goal": None if goal is None else _vec3(goal),
        "team": item.team,
    }
    return trusted(Observation, values, _OBS_FIELDS)


def to_observation_validated(item: WireObservation) -> Observation:
    """:func:`to_observation` through full pydantic validation (slow; the reference in tests)."""
    return Observation.model_validate(msgspec.to_builtins(item))


def decode_observations(body: bytes, *, msgpack: bool, max_agents: int) -> ObservationBatch | None:
    """The observations of an act request body, or ``None`` when validity is not proven here.

    ``None`` means "run the pydantic path" (invalid body, too many observations, or a valid but
    unusual body); see the module documentation for the invariant.
    """
    req: ActRequest | None
    try:
        req = (_MSGPACK if msgpack else _JSON).decode(body)
    except msgspec.ValidationError:
        req = _decode_lax(body, msgpack)
    except Exception as exc:  # noqa: BLE001 - malformed body (bad JSON/msgpack, bad UTF-8 ...): pydantic words it
        log.debug("act body not decodable on the fast path: %s", exc)
        return None
    if req is None:
        return None
    obs = req.observations
    if len(obs) > max_agents:
        return None
    agents = list(map(_AGENT, obs))
    if not _names_ok(obs, agents) or not _nearby_ok(obs):
        log.debug("act body refused on the fast path (names or grid sizes)")
        return None
    return ObservationBatch(obs, materialize=to_observation, agents=agents)


def _decode_lax(body: bytes, msgpack: bool) -> ActRequest | None:
    """The request with integral floats at integer positions accepted (``None`` if invalid)."""
    try:
        raw = (_MSGPACK_ANY if msgpack else _JSON_ANY).decode(body)
        _ints_of_floats(raw)
        return msgspec.convert(raw, ActRequest)
    except Exception as exc:  # noqa: BLE001 - invalid or not decodable (e.g. nested too deep): pydantic words it
        log.debug("act body refused on the fast path: %s", exc)
        return None


def _int(value: Any) -> Any:
    """``value`` as an ``int`` if it is an integral finite float, else unchanged (refused later)."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


def _ints_of_floats(raw: Any) -> None:
    """In place: integral floats at the integer positions of an untyped request become ``int``.

    Anything of an unexpected shape is left alone for :func:`msgspec.convert` to refuse.
    """
    if type(raw) is not dict:
        return
    items = raw.get("observations")
    if type(items) is not list:
        return
    for o in items:
        if type(o) is not dict:
            continue
        if "tick" in o:
            o["tick"] = _int(o["tick"])
        ints_of_floats_inventory(o.get("inventory"))
        ints_of_floats_nearby(o.get("nearby"))


def ints_of_floats_inventory(inv: Any) -> None:
    """In place: an untyped inventory's integral float counts become ``int`` (other shapes left alone)."""
    if type(inv) is dict:
        for k, v in inv.items():
            inv[k] = _int(v)


def ints_of_floats_nearby(nb: Any) -> None:
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


def _names_ok(obs: list[WireObservation], agents: list[str]) -> bool:
    """Whether every name of the request matches ``[A-Za-z0-9_.:-]+`` (lengths checked by msgspec)."""
    entities = list(chain.from_iterable(map(_ENTITIES, obs)))
    names = list(
        chain(
            agents,
            filter(None, map(_TEAM, obs)),
            chain.from_iterable(map(_TARGETS, obs)),
            filter(None, map(_NAME, entities)),
            filter(None, map(_TEAM, entities)),
            map(_SENDER, chain.from_iterable(map(_CHAT, obs))),
        )
    )
    return names_ok(names)


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


def _nearby_ok(obs: list[WireObservation]) -> bool:
    """Whether every grid holds ``(2r+1)**3`` codes."""
    for nb in map(_NEARBY, obs):
        if nb is not None and len(nb.codes) != (2 * nb.radius + 1) ** 3:
            return False
    return True


__all__ = [
    "ActRequest",
    "ChatLine",
    "EntityView",
    "LastResult",
    "Nearby",
    "Vec3",
    "WireObservation",
    "decode_observations",
    "names_ok",
    "to_observation",
    "to_observation_validated",
]
