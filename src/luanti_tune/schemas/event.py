"""The game event contract, ``schema: "luanti.event/1"`` (docs/design.md).

Every event type has its own typed payload; the union is discriminated on ``type`` so that
an unknown type or a wrong payload field is reported with its exact location.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, model_validator

from luanti_tune.schemas.agent import MAX_MESSAGE_CHARS, Action, LastResult, Observation
from luanti_tune.schemas.common import (
    Bool,
    Float,
    ItemName,
    Name,
    NonNegInt,
    Str,
    Strict,
    Vec3,
    float_in,
    int_in,
)

EVENT_SCHEMA = "luanti.event/1"

SourceId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:\-]{1,128}$")]
OptionalId = Annotated[str, Field(min_length=1, max_length=128)] | None


class EventTime(Strict):
    wall_us: NonNegInt
    game_s: float_in(0, 1e12)  # type: ignore[valid-type]
    tick: NonNegInt


class Actor(Strict):
    kind: Literal["player", "agent", "server", "sim", "mob"]
    name: Name


class Target(Strict):
    kind: Literal["player", "agent", "mob", "node", "item", "server"]
    name: Annotated[Str, Field(max_length=128)] | None = None
    pos: Vec3 | None = None


# ----------------------------------------------------------------------------- payloads


class JoinPayload(Strict):
    new_player: Bool = False


class LeavePayload(Strict):
    timed_out: Bool = False


class MovePayload(Strict):
    velocity: Vec3
    yaw: Float
    pitch: Float = 0.0
    controls: dict[Annotated[str, Field(max_length=32)], Bool] = Field(default_factory=dict)


class DiePayload(Strict):
    reason: Annotated[Str, Field(max_length=64)] | None = None
    killer: Name | None = None


class HpPayload(Strict):
    hp: float_in(0, 1000)  # type: ignore[valid-type]
    delta: Float
    reason: Annotated[Str, Field(max_length=64)] | None = None


class PunchPlayerPayload(Strict):
    damage: Float = 0.0
    tool: ItemName | None = None


class NodePayload(Strict):
    node: ItemName
    item: ItemName | None = None


class ChatPayload(Strict):
    message: Annotated[Str, Field(max_length=MAX_MESSAGE_CHARS * 8)]
    to: Name | None = None


class CraftPayload(Strict):
    item: ItemName
    count: int_in(1, 65535) = 1  # type: ignore[valid-type]


class InventoryPayload(Strict):
    action: Literal["move", "put", "take"]
    list: Annotated[Str, Field(max_length=64)] = "main"
    item: ItemName | None = None
    count: int_in(0, 65535) = 0  # type: ignore[valid-type]


class AgentActPayload(Strict):
    action: Action
    model: Annotated[Str, Field(max_length=128)] | None = None
    version: Annotated[Str, Field(max_length=64)] | None = None
    fallback: Annotated[Str, Field(max_length=64)] | None = None


#: Most decisions one ``agent.track`` event carries.
MAX_TRACK_KNOTS = 256
_Knots = Annotated[list[Float], Field(min_length=1, max_length=MAX_TRACK_KNOTS)]


class TrackPayload(Strict):
    """What one agent saw of its target at each of its decisions, as columns (knot ``k`` is the
    decision at server step ``tick[k]``): the target's position ``x``/``z`` and velocity
    ``vx``/``vz`` (observed, or estimated from the track when the observation had none) and the
    agent's own position ``ax``/``az``. Ticks increase strictly. Written by the service from the
    decisions it serves, so pursuit models train on the features they are served."""

    target: Name
    tick: Annotated[list[NonNegInt], Field(min_length=1, max_length=MAX_TRACK_KNOTS)]
    x: _Knots
    z: _Knots
    vx: _Knots
    vz: _Knots
    ax: _Knots
    az: _Knots

    @model_validator(mode="after")
    def _columns(self) -> TrackPayload:
        n = len(self.tick)
        for name in ("x", "z", "vx", "vz", "ax", "az"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} must hold one value per tick ({n}), got {len(getattr(self, name))}")
        if any(b <= a for a, b in zip(self.tick, self.tick[1:], strict=False)):
            raise ValueError("tick must increase strictly")
        return self


class RewardPayload(Strict):
    value: Float
    reason: Annotated[Str, Field(max_length=128)] | None = None


class DroppedPayload(Strict):
    dropped: NonNegInt
    reason: Annotated[Str, Field(max_length=128)] | None = None


class StartPayload(Strict):
    version: Annotated[Str, Field(max_length=64)] | None = None
    world: Annotated[Str, Field(max_length=256)] | None = None


PAYLOADS: dict[str, type[Strict]] = {
    "player.join": JoinPayload,
    "player.leave": LeavePayload,
    "player.move": MovePayload,
    "player.die": DiePayload,
    "player.hp": HpPayload,
    "player.punch": PunchPlayerPayload,
    "node.dig": NodePayload,
    "node.place": NodePayload,
    "node.punch": NodePayload,
    "chat.msg": ChatPayload,
    "craft": CraftPayload,
    "inventory.action": InventoryPayload,
    "agent.obs": Observation,
    "agent.act": AgentActPayload,
    "agent.track": TrackPayload,
    "agent.result": LastResult,
    "reward": RewardPayload,
    "system.start": StartPayload,
    "system.dropped": DroppedPayload,
}
"""The closed set of event types and their payload models."""

EVENT_TYPES: tuple[str, ...] = tuple(PAYLOADS)


class EventBase(Strict):
    schema_: Literal["luanti.event/1"] = Field(alias="schema")
    event_id: OptionalId = None
    source: SourceId
    seq: NonNegInt
    time: EventTime
    actor: Actor
    pos: Vec3 | None = None
    target: Target | None = None
    episode_id: OptionalId = None
    corr_id: OptionalId = None

    model_config = Strict.model_config | {"populate_by_name": True}

    def to_json_dict(self) -> dict[str, Any]:
        """The event as its wire JSON object (aliases, no unset optional fields)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def _event_class(type_name: str, payload: type[Strict]) -> type[EventBase]:
    cls_name = "".join(p.capitalize() for p in type_name.replace(".", "_").split("_")) + "Event"
    annotations = {"type": Literal[type_name], "payload": payload}  # type: ignore[valid-type]
    namespace: dict[str, Any] = {"__annotations__": annotations, "__module__": __name__}
    if not payload.model_fields or all(not f.is_required() for f in payload.model_fields.values()):
        namespace["payload"] = Field(default_factory=payload)
    return type(cls_name, (EventBase,), namespace)


EVENT_CLASSES: dict[str, type[EventBase]] = {t: _event_class(t, p) for t, p in PAYLOADS.items()}

Event = Annotated[
    Any,  # replaced below by the real union for validation and JSON Schema
    Field(discriminator="type"),
]
_UNION: Any = EVENT_CLASSES["player.join"]
for _cls in list(EVENT_CLASSES.values())[1:]:
    _UNION = _UNION | _cls
Event = Annotated[_UNION, Field(discriminator="type")]  # type: ignore[misc]

EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(Event)


class EventBatch(Strict):
    events: list[Event]  # type: ignore[valid-type]


def parse_event(data: Any) -> EventBase:
    """Validate one event (a dict) and return its typed model; raises ``ValidationError``."""
    result: EventBase = EVENT_ADAPTER.validate_python(data)
    return result
