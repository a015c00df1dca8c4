"""The wire contracts of docs/design.md: the documented examples pass, bad input is named."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from luanti_tune.cli.schema_cmd import json_schema
from luanti_tune.schemas import EVENT_TYPES, Action, Observation, parse_event

MOVE_EVENT = json.loads("""{"schema": "luanti.event/1", "event_id": "srv1-42", "source": "srv1", "seq": 42,
 "type": "player.move", "time": {"wall_us": 1764150000000000, "game_s": 3.78, "tick": 42},
 "actor": {"kind": "player", "name": "alice"}, "pos": {"x": 1.5, "y": 8, "z": -3.25},
 "payload": {"velocity": {"x": 4, "y": 0, "z": 0}, "yaw": 1.57, "pitch": 0,
             "controls": {"up": true}}}""")

OBSERVATION = json.loads("""{"agent": "enemy-1", "kind": "pursuit", "tick": 42, "pos": {"x": 0, "y": 8, "z": 0},
 "yaw": 0, "pitch": 0, "hp": 20, "velocity": {"x": 0, "y": 0, "z": 0},
 "entities": [{"kind": "player", "name": "alice", "rel": {"x": 3, "y": 0, "z": -2},
               "velocity": {"x": 4, "y": 0, "z": 0}}],
 "targets": ["alice"]}""")

ACTION = {"agent": "enemy-1", "type": "move", "args": {"dir": {"x": 0.8, "y": 0, "z": -0.6}, "speed": 1}}


def _locs(exc: ValidationError) -> list[str]:
    return [".".join(str(p) for p in e["loc"]) for e in exc.errors()]


def test_design_examples_are_accepted_exactly_as_written() -> None:
    ev = parse_event(copy.deepcopy(MOVE_EVENT))
    assert ev.to_json_dict()["payload"]["controls"] == {"up": True}
    assert ev.seq == 42 and ev.source == "srv1"
    obs = Observation.model_validate(OBSERVATION)
    assert obs.entities[0].name == "alice"
    act = TypeAdapter(Action).validate_python(ACTION)
    assert act.type == "move"


def test_round_trip_preserves_event() -> None:
    ev = parse_event(copy.deepcopy(MOVE_EVENT))
    again = parse_event(ev.to_json_dict())
    assert again == ev


@pytest.mark.parametrize(
    ("mutate", "expected_loc"),
    [
        (lambda e: e.update(seq="42"), "seq"),
        (lambda e: e.update(seq=4.5), "seq"),
        (lambda e: e.pop("source"), "source"),
        (lambda e: e.update(bogus=1), "bogus"),
        (lambda e: e["pos"].update(x=float("nan")), "pos.x"),
        (lambda e: e["pos"].update(y=float("inf")), "pos.y"),
        (lambda e: e["payload"].update(yaw="east"), "payload.yaw"),
        (lambda e: e["payload"]["velocity"].pop("z"), "payload.velocity.z"),
        (lambda e: e["payload"].update(extra_field=True), "payload.extra_field"),
        (lambda e: e.update(schema="luanti.event/2"), "schema"),
        (lambda e: e["actor"].update(kind="wizard"), "actor.kind"),
        (lambda e: e["pos"].update(z=1e9), "pos.z"),
    ],
)
def test_bad_events_name_the_field(mutate: Any, expected_loc: str) -> None:
    ev = copy.deepcopy(MOVE_EVENT)
    mutate(ev)
    with pytest.raises(ValidationError) as info:
        parse_event(ev)
    assert any(loc.endswith(expected_loc) for loc in _locs(info.value)), _locs(info.value)


def test_unknown_type_lists_the_allowed_types() -> None:
    with pytest.raises(ValidationError) as info:
        parse_event(dict(MOVE_EVENT, type="player.teleport"))
    assert "player.teleport" in str(info.value) and "player.move" in str(info.value)


def test_lua_style_integral_floats_are_integers() -> None:
    ev = copy.deepcopy(MOVE_EVENT)
    ev["seq"] = 42.0
    ev["time"]["tick"] = 42.0
    parsed = parse_event(ev)
    assert parsed.seq == 42 and isinstance(parsed.seq, int)


@pytest.mark.parametrize(
    ("action", "loc"),
    [
        ({"agent": "a", "type": "fly", "args": {}}, ""),
        ({"agent": "a", "type": "move", "args": {"dir": {"x": 9, "y": 0, "z": 0}}}, "move.args"),
        ({"agent": "a", "type": "move", "args": {"dir": {"x": 1, "y": 0, "z": 0}, "speed": 2}}, "args.speed"),
        ({"agent": "a", "type": "turn", "args": {"yaw": 99}}, "args.yaw"),
        ({"agent": "a", "type": "chat", "args": {"message": ""}}, "args.message"),
        ({"agent": "a b", "type": "jump"}, "agent"),
    ],
)
def test_bad_actions_are_refused(action: dict[str, Any], loc: str) -> None:
    with pytest.raises(ValidationError) as info:
        TypeAdapter(Action).validate_python(action)
    assert any(loc in x for x in _locs(info.value))


def test_nearby_grid_size_is_checked() -> None:
    obs = dict(OBSERVATION, nearby={"radius": 1, "codes": [0] * 26})
    with pytest.raises(ValidationError, match="27"):
        Observation.model_validate(obs)
    Observation.model_validate(dict(OBSERVATION, nearby={"radius": 1, "codes": [0] * 27}))


def test_json_schema_covers_every_event_type() -> None:
    schema = json_schema("event")
    text = json.dumps(schema)
    for t in EVENT_TYPES:
        assert f'"{t}"' in text
    assert schema["$schema"].endswith("2020-12/schema")
    for name in ("observation", "action", "batch"):
        assert json_schema(name)["$schema"]
