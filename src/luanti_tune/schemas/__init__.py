"""Versioned wire contracts: events, observations, actions (docs/design.md)."""

from luanti_tune.schemas.agent import ACTION_TYPES, AGENT_KINDS, Action, Observation
from luanti_tune.schemas.common import NODE_CODES, Vec3
from luanti_tune.schemas.event import (
    EVENT_ADAPTER,
    EVENT_SCHEMA,
    EVENT_TYPES,
    PAYLOADS,
    Event,
    EventBase,
    EventBatch,
    parse_event,
)

__all__ = [
    "ACTION_TYPES",
    "AGENT_KINDS",
    "EVENT_ADAPTER",
    "EVENT_SCHEMA",
    "EVENT_TYPES",
    "NODE_CODES",
    "PAYLOADS",
    "Action",
    "Event",
    "EventBase",
    "EventBatch",
    "Observation",
    "Vec3",
    "parse_event",
]
