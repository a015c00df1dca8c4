"""From game events to SFT examples: context at the moment of the message, pairing, manifest, store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from luanti_tune.dialogue.context import ContextTracker, time_of_day
from luanti_tune.dialogue.dataset import BuildStats, build_examples, build_from_store, load_dataset, write_dataset
from luanti_tune.schemas.event import parse_event
from luanti_tune.store.base import open_store


def ev(seq: int, etype: str, actor: tuple[str, str], payload: dict[str, Any], game_s: float = 0.0) -> dict[str, Any]:
    return {
        "schema": "luanti.event/1",
        "source": "t",
        "seq": seq,
        "type": etype,
        "time": {"wall_us": 1_000_000 + seq, "game_s": game_s, "tick": seq},
        "actor": {"kind": actor[0], "name": actor[1]},
        "pos": {"x": 1, "y": -30, "z": 2},
        "payload": payload,
    }


ALICE = ("player", "alice")
SMITH = ("agent", "smith")


def test_scenario_events_are_valid_wire_events(dialogue_events: list[dict[str, Any]]) -> None:
    for e in dialogue_events[:400]:
        parse_event(e)  # raises on any contract violation
    keys = [(e["source"], e["seq"]) for e in dialogue_events]
    assert len(set(keys)) == len(keys)


def test_example_uses_context_at_the_moment_of_the_message() -> None:
    events = [
        ev(1, "node.dig", ALICE, {"node": "default:stone", "item": "default:pick_stone"}, 0.0),
        ev(2, "chat.msg", ALICE, {"message": "nice tool?", "to": "smith"}, 1.0),
        # after the message: must not leak into the example's context
        ev(3, "node.dig", ALICE, {"node": "default:tree", "item": "default:axe_steel"}, 2.0),
        ev(4, "chat.msg", SMITH, {"message": "That stone pickaxe is fine work, alice.", "to": "alice"}, 3.0),
        ev(5, "chat.msg", ALICE, {"message": "hello everyone"}, 4.0),  # not addressed: ignored
        ev(6, "chat.msg", ALICE, {"message": "anyone?", "to": "smith"}, 5.0),  # never answered
    ]
    stats = BuildStats()
    (ex,) = build_examples(events, stats=stats)
    assert ex["context"]["held"] == "stone pickaxe"
    assert ex["context"]["recent"] == ["dug stone"]
    assert ex["facts"] == {"held": "stone pickaxe", "player": "alice"}
    system, user, assistant = ex["messages"]
    assert system["role"] == "system" and "Holding: stone pickaxe." in system["content"]
    assert "underground" in system["content"] and "blacksmith" in system["content"]
    assert user == {"role": "user", "content": "nice tool?"}
    assert assistant["content"].startswith("That stone pickaxe")
    assert stats.unanswered == 1 and stats.player_messages == 2


def test_time_of_day_follows_luanti_default_day() -> None:
    assert time_of_day(0) == "morning"  # a new world starts at 06:00
    assert time_of_day(300) == "afternoon"  # +6 h
    assert time_of_day(600) == "evening"  # 18:00
    assert time_of_day(700) == "night"  # 20:00
    assert time_of_day(1200) == "morning"


def test_tracker_keeps_players_apart() -> None:
    t = ContextTracker()
    t.update(ev(1, "node.dig", ALICE, {"node": "default:stone", "item": "default:pick_stone"}))
    t.update(ev(2, "node.place", ("player", "bob"), {"node": "default:wood", "item": "default:wood"}))
    t.update(ev(3, "player.hp", ALICE, {"hp": 3, "delta": -17}))
    assert t.context("alice").held == "stone pickaxe" and t.context("alice").hurt
    assert t.context("bob").held == "wood" and not t.context("bob").hurt
    assert t.context("nobody").held is None


def test_dataset_manifest_split_and_tamper_check(tmp_path: Path, dialogue_events: list[dict[str, Any]]) -> None:
    examples = build_examples(dialogue_events)
    m1 = write_dataset(tmp_path / "a", examples, seed=3)
    m2 = write_dataset(tmp_path / "b", examples, seed=3)
    assert m1["files"] == m2["files"]  # reproducible
    assert m1["counts"]["train"] + m1["counts"]["heldout"] == len(examples)
    train, held, _ = load_dataset(tmp_path / "a")
    assert not {e["id"] for e in train} & {e["id"] for e in held}
    with open(tmp_path / "a" / "train.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(train[0]) + "\n")
    with pytest.raises(ValueError, match="sha256"):
        load_dataset(tmp_path / "a")


def test_build_from_store_records_event_range(tmp_path: Path, dialogue_events: list[dict[str, Any]]) -> None:
    with open_store(f"sqlite:///{tmp_path / 'e.db'}") as store:
        store.append([parse_event(e) for e in dialogue_events[:600]])
        m = build_from_store(store, tmp_path / "ds", seed=0)
    assert m["event_range"]["first_id"] == 1
    assert m["counts"]["examples"] == len(build_examples(dialogue_events[:600]))
    assert m["counts"]["examples"] > 50
    assert m["source"]["store"].startswith("sqlite:///")
