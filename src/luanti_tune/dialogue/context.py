"""A player's context at a moment of the game, rebuilt from events, and the NPC system prompt.

The same code runs when a dataset is built (context at the moment of each ``chat.msg``) and when
the service answers an NPC request (context from the player's most recent stored events), so the
prompt a model is trained on and the prompt it is served with are identical.

Context facts:

* ``held``: the item the player last used -- ``node.dig``/``node.place`` ``payload.item``,
  ``player.punch`` ``payload.tool``, ``inventory.action`` ``take`` of an item;
* ``recent``: the last few actions (dig/place/craft/die), e.g. ``"dug stone"``;
* ``pos`` and a place word (``deep underground``, ``underground``, ``on the surface``, ``high up``);
* ``time_of_day`` from ``time.game_s`` assuming Luanti's defaults (``time_speed`` 72, so one
  day is 1200 s; a new world starts at 06:00): ``morning``, ``afternoon``, ``evening``, ``night``;
* ``hp`` from ``player.hp`` (``hurt`` when below 8 of 20);
* ``style``: the player's stored play-style label (``luanti-tune analyze players``, the style book
  ``<data_dir>/analysis/styles.json``), only when a style book exists and labels the player.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from luanti_tune.dialogue.personas import Persona

#: Game seconds per in-game day with Luanti's default ``time_speed = 72``.
DAY_SECONDS = 1200.0
#: Time of day of a new world (06:00).
START_TIME_OF_DAY = 0.25
RECENT_ACTIONS = 3
HURT_BELOW = 8.0

_ITEM_WORDS: dict[str, str] = {
    "pick_wood": "wooden pickaxe",
    "pick_stone": "stone pickaxe",
    "pick_steel": "steel pickaxe",
    "pick_mese": "mese pickaxe",
    "pick_diamond": "diamond pickaxe",
    "axe_stone": "stone axe",
    "axe_steel": "steel axe",
    "shovel_stone": "stone shovel",
    "sword_stone": "stone sword",
    "sword_steel": "steel sword",
    "dirt_with_grass": "dirt",
    "stone_with_coal": "coal ore",
    "stone_with_iron": "iron ore",
    "coal_lump": "coal",
    "steel_ingot": "steel ingot",
    "water_source": "water",
    "lava_source": "lava",
    "ladder_wood": "ladder",
}


def item_words(item: str | None) -> str | None:
    """``default:pick_stone`` -> ``stone pickaxe``; ``mymod:blue_flower 3`` -> ``blue flower``."""
    if not item:
        return None
    name = item.split(" ")[0].split(":")[-1]
    if not name or name == "air":
        return None
    return _ITEM_WORDS.get(name, name.replace("_", " "))


def time_of_day(game_s: float) -> str:
    hour = ((START_TIME_OF_DAY + game_s / DAY_SECONDS) % 1.0) * 24.0
    if 5.5 <= hour < 12.0:
        return "morning"
    if 12.0 <= hour < 17.0:
        return "afternoon"
    if 17.0 <= hour < 19.5:
        return "evening"
    return "night"


def place_word(y: float) -> str:
    if y < -20:
        return "deep underground"
    if y < -2:
        return "underground"
    if y > 40:
        return "high up"
    return "on the surface"


@dataclass(frozen=True)
class PlayerContext:
    """What an NPC knows about a player at one moment (every field optional)."""

    player: str
    held: str | None = None
    recent: tuple[str, ...] = ()
    pos: tuple[float, float, float] | None = None
    time_of_day: str | None = None
    hp: float | None = None
    style: str | None = None

    @property
    def place(self) -> str | None:
        return place_word(self.pos[1]) if self.pos is not None else None

    @property
    def hurt(self) -> bool:
        return self.hp is not None and self.hp < HURT_BELOW

    def facts(self) -> dict[str, str]:
        """Named context facts as the words a grounded reply would use."""
        out: dict[str, str] = {"player": self.player}
        if self.held:
            out["held"] = self.held
        if self.recent:
            out["recent"] = self.recent[-1]
        if self.place:
            out["place"] = self.place
        if self.time_of_day:
            out["time_of_day"] = self.time_of_day
        if self.hurt:
            out["hurt"] = "hurt"
        return out

    def describe(self) -> str:
        parts = [f"Player: {self.player}."]
        if self.held:
            parts.append(f"Holding: {self.held}.")
        if self.recent:
            parts.append(f"Recently: {', '.join(self.recent)}.")
        if self.pos is not None:
            x, y, z = (int(math.floor(c)) for c in self.pos)
            parts.append(f"Place: {self.place} at {x},{y},{z}.")
        if self.time_of_day:
            parts.append(f"Time: {self.time_of_day}.")
        if self.hp is not None:
            parts.append(f"Health: {int(round(self.hp))} of 20{' (hurt)' if self.hurt else ''}.")
        if self.style:
            parts.append(f"Play style: {self.style}.")
        return " ".join(parts)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "player": self.player,
            "held": self.held,
            "recent": list(self.recent),
            "pos": list(self.pos) if self.pos is not None else None,
            "time_of_day": self.time_of_day,
            "hp": self.hp,
        }
        if self.style is not None:
            out["style"] = self.style
        return out


def player_styles(path: Path | None) -> dict[str, str]:
    """Player -> play-style label from the style book at ``path`` (``{}``: no path or no book yet)."""
    if path is None:
        return {}
    from luanti_tune.analysis.players import load_style_book

    book = load_style_book(path=Path(path))
    if book is None:
        return {}
    return {p: s for p in book.players if (s := book.style_of(p)) is not None}


def system_prompt(persona: Persona, context: PlayerContext | None) -> str:
    """The system message an NPC answers with: persona, then the player's context."""
    text = persona.describe() + " Reply in one or two short sentences and use what you know about the player."
    if context is not None:
        text += "\n" + context.describe()
    return text


@dataclass
class _PlayerState:
    held: str | None = None
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=RECENT_ACTIONS))
    pos: tuple[float, float, float] | None = None
    game_s: float | None = None
    hp: float | None = None


def _action_words(etype: str, payload: Mapping[str, Any]) -> str | None:
    if etype == "node.dig":
        return f"dug {item_words(payload.get('node')) or 'a block'}"
    if etype == "node.place":
        return f"placed {item_words(payload.get('item') or payload.get('node')) or 'a block'}"
    if etype == "craft":
        return f"crafted {item_words(payload.get('item')) or 'something'}"
    if etype == "player.die":
        return "died"
    return None


class ContextTracker:
    """Folds a stream of wire events (dicts, in stored order) into per-player context.

    ``styles``: player -> play-style label (:func:`player_styles`); labelled players' contexts
    carry it (training examples and served prompts alike).
    """

    def __init__(self, styles: Mapping[str, str] | None = None) -> None:
        self._players: dict[str, _PlayerState] = {}
        self._styles: dict[str, str] = dict(styles or {})

    def update(self, event: Mapping[str, Any]) -> None:
        actor = event.get("actor") or {}
        if actor.get("kind") != "player":
            return
        name = str(actor.get("name"))
        st = self._players.setdefault(name, _PlayerState())
        etype = str(event.get("type"))
        payload = event.get("payload") or {}
        pos = event.get("pos")
        if isinstance(pos, Mapping):
            st.pos = (float(pos["x"]), float(pos["y"]), float(pos["z"]))
        game_s = (event.get("time") or {}).get("game_s")
        if game_s is not None:
            st.game_s = float(game_s)
        if etype in ("node.dig", "node.place") and payload.get("item"):
            st.held = item_words(payload.get("item"))
        elif etype == "player.punch" and payload.get("tool"):
            st.held = item_words(payload.get("tool"))
        elif etype == "inventory.action" and payload.get("action") == "take" and payload.get("item"):
            st.held = item_words(payload.get("item"))
        elif etype == "player.hp":
            st.hp = float(payload["hp"])
        elif etype == "player.join":
            st.recent.clear()
        if etype == "player.die":
            st.hp = None
        words = _action_words(etype, payload)
        if words:
            st.recent.append(words)

    def update_all(self, events: Iterable[Mapping[str, Any]]) -> None:
        for ev in events:
            self.update(ev)

    def context(self, player: str) -> PlayerContext:
        st = self._players.get(player)
        style = self._styles.get(player)
        if st is None:
            return PlayerContext(player=player, style=style)
        return PlayerContext(
            player=player,
            held=st.held,
            recent=tuple(st.recent),
            pos=st.pos,
            time_of_day=time_of_day(st.game_s) if st.game_s is not None else None,
            hp=st.hp,
            style=style,
        )
