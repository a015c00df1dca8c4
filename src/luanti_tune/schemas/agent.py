"""Observation (what an agent sees each decision) and Action (what it does), docs/design.md contracts."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field, model_validator

from luanti_tune.schemas.common import (
    NODE_CODES,
    Bool,
    Float,
    Int,
    ItemName,
    Name,
    NonNegInt,
    Str,
    Strict,
    Vec3,
    float_in,
    int_in,
)

AgentKind = Literal["pursuit", "navigation", "npc", "team"]
AGENT_KINDS: tuple[str, ...] = ("pursuit", "navigation", "npc", "team")

#: Seconds of one Luanti server step (the engine's default ``dedicated_server_step``): an
#: observation's ``tick`` counts these, so ``tick * TICK_S`` is the game time of a decision.
TICK_S = 0.09
MAX_NEARBY_RADIUS = 8
MAX_ENTITIES = 64
MAX_CHAT_LINES = 16
MAX_MESSAGE_CHARS = 512


class Nearby(Strict):
    """Local voxel grid around the agent, ``(2r+1)**3`` codes from :data:`NODE_CODES`.

    Order: y outermost, then z, then x fastest; index of offset ``(dx, dy, dz)`` is
    ``((dy+r)*(2r+1) + (dz+r))*(2r+1) + (dx+r)``.
    """

    radius: int_in(1, MAX_NEARBY_RADIUS)  # type: ignore[valid-type]
    codes: list[int_in(0, max(NODE_CODES.values()))]  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _check_size(self) -> Nearby:
        side = 2 * self.radius + 1
        if len(self.codes) != side**3:
            raise ValueError(f"codes must hold (2*radius+1)**3 = {side**3} entries, got {len(self.codes)}")
        return self


class EntityView(Strict):
    kind: Literal["player", "agent", "mob", "item"]
    name: Name | None = None
    rel: Vec3
    velocity: Vec3 | None = None
    hp: Float | None = None
    team: Name | None = None


class ChatLine(Strict):
    sender: Name = Field(alias="from")
    message: Annotated[Str, Field(max_length=MAX_MESSAGE_CHARS)]


class LastResult(Strict):
    action: Str
    ok: Bool
    reason: Str | None = None


class Observation(Strict):
    agent: Name
    kind: AgentKind
    tick: NonNegInt = 0
    pos: Vec3
    yaw: Float = 0.0
    pitch: Float = 0.0
    hp: float_in(0, 1000) = 20.0  # type: ignore[valid-type]
    velocity: Vec3 = Vec3(x=0, y=0, z=0)
    inventory: dict[ItemName, NonNegInt] = Field(default_factory=dict)
    nearby: Nearby | None = None
    entities: Annotated[list[EntityView], Field(max_length=MAX_ENTITIES)] = Field(default_factory=list)
    targets: Annotated[list[Name], Field(max_length=MAX_ENTITIES)] = Field(default_factory=list)
    chat: Annotated[list[ChatLine], Field(max_length=MAX_CHAT_LINES)] = Field(default_factory=list)
    last_result: LastResult | None = None
    goal: Vec3 | None = None
    team: Name | None = None


# ----------------------------------------------------------------------------- actions


class MoveArgs(Strict):
    dir: Vec3
    speed: float_in(0, 1) = 1.0  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _unit(self) -> MoveArgs:
        n = math.sqrt(self.dir.x**2 + self.dir.y**2 + self.dir.z**2)
        if n > 1.5:
            raise ValueError(f"dir must be a direction (length <= 1.5), got length {n:.3g}")
        return self


class MoveToArgs(Strict):
    pos: Vec3
    speed: float_in(0, 1) = 1.0  # type: ignore[valid-type]


class TurnArgs(Strict):
    yaw: float_in(-2 * math.pi, 2 * math.pi)  # type: ignore[valid-type]
    pitch: float_in(-math.pi / 2, math.pi / 2) = 0.0  # type: ignore[valid-type]


class NoArgs(Strict):
    pass


class NodeArgs(Strict):
    pos: Vec3


class PlaceArgs(Strict):
    pos: Vec3
    item: ItemName


class AttackArgs(Strict):
    target: Name


class ChatArgs(Strict):
    message: Annotated[Str, Field(min_length=1, max_length=MAX_MESSAGE_CHARS)]
    to: Name | None = None


class WaitArgs(Strict):
    ticks: int_in(1, 1000) = 1  # type: ignore[valid-type]


class _ActionBase(Strict):
    agent: Name


class MoveAction(_ActionBase):
    type: Literal["move"]
    args: MoveArgs


class MoveToAction(_ActionBase):
    type: Literal["move_to"]
    args: MoveToArgs


class TurnAction(_ActionBase):
    type: Literal["turn"]
    args: TurnArgs


class JumpAction(_ActionBase):
    type: Literal["jump"]
    args: NoArgs = NoArgs()


class DigAction(_ActionBase):
    type: Literal["dig"]
    args: NodeArgs


class PlaceAction(_ActionBase):
    type: Literal["place"]
    args: PlaceArgs


class AttackAction(_ActionBase):
    type: Literal["attack"]
    args: AttackArgs


class ChatAction(_ActionBase):
    type: Literal["chat"]
    args: ChatArgs


class WaitAction(_ActionBase):
    type: Literal["wait"]
    args: WaitArgs = WaitArgs()


Action = Annotated[
    MoveAction
    | MoveToAction
    | TurnAction
    | JumpAction
    | DigAction
    | PlaceAction
    | AttackAction
    | ChatAction
    | WaitAction,
    Field(discriminator="type"),
]

ACTION_TYPES: tuple[str, ...] = ("move", "move_to", "turn", "jump", "dig", "place", "attack", "chat", "wait")

__all__ = [
    "TICK_S",
    "ACTION_TYPES",
    "AGENT_KINDS",
    "Action",
    "AgentKind",
    "Bool",
    "ChatLine",
    "EntityView",
    "Int",
    "LastResult",
    "Nearby",
    "Observation",
]
