"""Scripted, context-dependent player <-> NPC conversations as ``luanti.event/1`` events.

Each conversation: the player moves somewhere, digs/places/crafts with some item in hand, maybe
gets hurt, then says something to an NPC (``chat.msg`` with ``payload.to`` = the NPC); the NPC,
played by a scripted "teacher", answers (``chat.msg`` from an ``agent`` actor to the player) with
a reply that uses the context of that moment (held item, last action, place, time of day,
health). This is the demo's training data; a real server produces the same event shapes.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from luanti_tune.dialogue.context import DAY_SECONDS, ContextTracker, PlayerContext
from luanti_tune.dialogue.personas import DEFAULT_PERSONAS, Persona, persona_for
from luanti_tune.schemas.event import EVENT_SCHEMA

PLAYERS = ("alice", "bob", "carol", "dave", "erin", "frank")
TOOLS = (
    "default:pick_wood",
    "default:pick_stone",
    "default:pick_steel",
    "default:axe_stone",
    "default:axe_steel",
    "default:shovel_stone",
    "default:sword_stone",
    "default:sword_steel",
    "default:torch",
    "default:apple",
)
DIG_NODES = ("default:stone", "default:dirt_with_grass", "default:tree", "default:sand", "default:stone_with_coal")
PLACE_ITEMS = ("default:wood", "default:cobble", "default:glass", "default:ladder_wood")
CRAFT_ITEMS = ("default:furnace", "default:chest", "default:bread", "default:steel_ingot")

INTENTS: dict[str, tuple[str, ...]] = {
    "greet": ("hello", "hi there", "good day to you", "hey"),
    "tool": ("what do you think of my tool?", "is this any good?", "look what I have", "can you check this for me?"),
    "seen": ("did you see what I did?", "what have I been up to?", "guess what I just did"),
    "where": ("where am I?", "is it safe here?", "what is this place?"),
    "help": ("I need help", "I do not feel well", "can you help me?"),
    "advice": ("what should I do now?", "any advice?", "what next?"),
}


def teacher_reply(persona: Persona, ctx: PlayerContext, intent: str) -> str:
    """The scripted NPC's context-grounded answer (the target the model learns)."""
    p = ctx.player
    held = ctx.held or "bare hands"
    last = ctx.recent[-1] if ctx.recent else "rested"
    when = ctx.time_of_day or "day"
    place = ctx.place or "here"
    flavour = {"smith": "Hmph.", "mira": "Oh dear.", "guard": "Halt."}.get(persona.name, "Well.")
    if intent == "greet":
        if when == "night":
            return f"{flavour} Good night, {p}. It is dark, stay near the light."
        return f"{flavour} Good {when}, {p}."
    if intent == "tool":
        return f"{flavour} That {held} is fine work, {p}."
    if intent == "seen":
        return f"{flavour} I saw you. You {last}, {p}."
    if intent == "where":
        return f"{flavour} You are {place}, {p}. It is {when} now."
    if intent == "help":
        if ctx.hurt:
            return f"{flavour} You are hurt, {p}. Eat some bread and rest."
        return f"{flavour} You look fine, {p}. Keep your {held} close."
    if when == "night":
        return f"{flavour} It is night, {p}. Wait for morning before you go out."
    return f"{flavour} You {last}. Now use your {held} well, {p}."


@dataclass
class _Clock:
    source: str
    seq: int = 0
    game_s: float = 0.0
    wall0_us: int = 1_764_150_000_000_000

    def event(self, etype: str, actor: dict[str, str], payload: dict[str, Any], pos: dict[str, float] | None) -> dict:
        self.seq += 1
        ev: dict[str, Any] = {
            "schema": EVENT_SCHEMA,
            "event_id": f"{self.source}-{self.seq}",
            "source": self.source,
            "seq": self.seq,
            "type": etype,
            "time": {
                "wall_us": self.wall0_us + int(self.game_s * 1e6),
                "game_s": round(self.game_s, 3),
                "tick": int(self.game_s * 10),
            },
            "actor": actor,
            "payload": payload,
        }
        if pos is not None:
            ev["pos"] = pos
        self.game_s += 0.5
        return ev


def conversation_events(
    n: int,
    *,
    seed: int = 0,
    source: str = "sim-dialogue",
    npcs: tuple[str, ...] | None = None,
    players: tuple[str, ...] = PLAYERS,
) -> Iterator[dict[str, Any]]:
    """Yield the events of ``n`` conversations (valid ``luanti.event/1`` wire dicts), seeded."""
    rng = random.Random(seed)
    npc_names = npcs or tuple(DEFAULT_PERSONAS)
    clock = _Clock(source=source)
    tracker = ContextTracker()
    joined: set[str] = set()
    for i in range(n):
        player = rng.choice(players)
        npc = rng.choice(npc_names)
        persona = persona_for(npc)
        # spread conversations over all times of day
        clock.game_s = max(clock.game_s, i * DAY_SECONDS / 7.3 + rng.uniform(0, 60))
        actor = {"kind": "player", "name": player}
        y = rng.choice([rng.uniform(-60, -25), rng.uniform(-15, -4), rng.uniform(2, 20), rng.uniform(45, 80)])
        pos = {"x": round(rng.uniform(-200, 200), 1), "y": round(y, 1), "z": round(rng.uniform(-200, 200), 1)}
        out: list[dict[str, Any]] = []
        if player not in joined:
            joined.add(player)
            out.append(clock.event("player.join", actor, {"new_player": True}, pos))
        out.append(
            clock.event(
                "player.move", actor, {"velocity": {"x": 1.0, "y": 0.0, "z": 0.0}, "yaw": rng.uniform(0, 6)}, pos
            )
        )
        tool = rng.choice(TOOLS)
        for _ in range(rng.randint(0, 2)):
            kind = rng.random()
            if kind < 0.55:
                out.append(clock.event("node.dig", actor, {"node": rng.choice(DIG_NODES), "item": tool}, pos))
            elif kind < 0.8:
                out.append(clock.event("craft", actor, {"item": rng.choice(CRAFT_ITEMS), "count": 1}, pos))
            else:
                node = rng.choice(PLACE_ITEMS)
                out.append(clock.event("node.place", actor, {"node": node, "item": node}, pos))
        # the tool ends up in the player's hand: the last action uses it
        out.append(clock.event("node.dig", actor, {"node": rng.choice(DIG_NODES), "item": tool}, pos))
        if rng.random() < 0.35:
            hp = float(rng.randint(2, 20))
            out.append(clock.event("player.hp", actor, {"hp": hp, "delta": hp - 20.0, "reason": "fall"}, pos))
        intent = rng.choice(list(INTENTS))
        line = rng.choice(INTENTS[intent])
        out.append(clock.event("chat.msg", actor, {"message": line, "to": npc}, pos))
        tracker.update_all(out)
        reply = teacher_reply(persona, tracker.context(player), intent)
        out.append(clock.event("chat.msg", {"kind": "agent", "name": npc}, {"message": reply, "to": player}, pos))
        yield from out
