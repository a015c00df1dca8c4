"""Scripted human-like players: named, parameterised play styles with seeded noise.

A :class:`PlayerStyle` is plain data (a movement ``pattern`` plus numbers); a
:class:`StyleController` turns it into per-step controls for one player. The training styles
are :data:`TRAIN_STYLES`; :data:`HELDOUT_STYLES` are never used to generate training data and
serve to evaluate generalisation. :func:`make_style` builds any variant (``make_style("strafer",
period_s=0.4)``), :func:`random_style` draws a fresh one from a seed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields, replace
from typing import Any, Literal, Protocol

import numpy as np

Pattern = Literal["strafe", "circle", "zigzag", "camp", "build", "explore", "chat", "spiral", "stopgo"]
_STYLE_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,48}")
PATTERNS: tuple[str, ...] = ("strafe", "circle", "zigzag", "camp", "build", "explore", "chat", "spiral", "stopgo")


@dataclass(frozen=True)
class PlayerStyle:
    """How a scripted player moves and acts. Rates are per second; angles in radians."""

    name: str
    pattern: Pattern
    speed: float = 1.0  # fraction of walk speed (4 nodes/s)
    period_s: float = 1.0  # strafe/zigzag switch period, spiral breathing, stop-and-go half cycle
    radius: float = 6.0  # circle/spiral radius (nodes)
    angle: float = 0.8  # zigzag half angle
    turn_rate: float = 0.6  # explorer heading drift (std, rad/s)
    back_bias: float = 0.35  # strafer: share of motion away from the threat
    pause_rate: float = 0.0  # pauses started per second
    pause_s: float = 1.0
    jump_rate: float = 0.1
    dig_rate: float = 0.0
    place_rate: float = 0.0
    chat_rate: float = 0.01
    noise: float = 0.15  # direction noise (rad, AR(1) smoothed)
    flee: float = 0.0  # weight of "run away from the threat" added to the pattern
    awareness: float = 24.0  # a threat closer than this is noticed (nodes)

    def __post_init__(self) -> None:
        if not _STYLE_NAME.fullmatch(self.name):
            raise ValueError(
                f"style name {self.name!r}: use 1-48 letters, digits, '_', '.', '-' (it becomes part of names)"
            )
        if self.pattern not in PATTERNS:
            raise ValueError(f"unknown pattern {self.pattern!r}; known: {', '.join(PATTERNS)}")
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float | int) and not isinstance(v, bool) and (not math.isfinite(v) or v < 0):
                raise ValueError(f"style parameter {f.name} must be a finite number >= 0, got {v!r}")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def controller(self, rng: np.random.Generator, anchor: np.ndarray) -> StyleController:
        return StyleController(self, rng, anchor)


STYLES: dict[str, PlayerStyle] = {
    s.name: s
    for s in (
        PlayerStyle("strafer", "strafe", period_s=0.9, back_bias=0.6, flee=0.4, noise=0.12),
        PlayerStyle("circler", "circle", radius=9.0, noise=0.08, flee=0.0),
        PlayerStyle("zigzag", "zigzag", period_s=0.7, angle=1.0, flee=0.4, noise=0.1),
        PlayerStyle("camper", "camp", speed=0.3, pause_rate=1.0, pause_s=4.0, jump_rate=0.02, noise=0.3),
        PlayerStyle("builder", "build", speed=0.6, dig_rate=0.25, place_rate=0.35, pause_rate=0.3, chat_rate=0.02),
        PlayerStyle("explorer", "explore", speed=1.0, turn_rate=0.5, jump_rate=0.15, flee=0.8, noise=0.1),
        PlayerStyle("chatter", "chat", speed=0.55, chat_rate=0.25, pause_rate=0.2, pause_s=1.5, noise=0.4),
        # held out: never used for training data, only for evaluation
        PlayerStyle("spiral", "spiral", radius=8.0, period_s=6.0, noise=0.08),
        PlayerStyle("stopgo", "stopgo", period_s=1.1, flee=0.7, noise=0.1),
    )
}
TRAIN_STYLES: tuple[str, ...] = ("strafer", "circler", "zigzag", "camper", "builder", "explorer", "chatter")
HELDOUT_STYLES: tuple[str, ...] = ("spiral", "stopgo")
#: Styles that keep moving (used by pursuit evaluation by default).
MOBILE_STYLES: tuple[str, ...] = ("strafer", "circler", "zigzag", "explorer")

CHAT_LINES: dict[str, tuple[str, ...]] = {
    "chat": (
        "hi all",
        "anyone want to trade iron?",
        "where is the lava lake",
        "gg",
        "lol",
        "brb",
        "who built that tower?",
        "can someone help me with the bridge",
        "nice base",
        "watch out for the mob near spawn",
    ),
    "build": ("building a house here", "need more wood", "don't touch my walls pls"),
    "default": ("hi", "ok", "where are you?", "help"),
}


def get_style(name: str) -> PlayerStyle:
    """A named style; raises ``KeyError`` listing the known names."""
    try:
        return STYLES[name]
    except KeyError:
        raise KeyError(f"unknown style {name!r}; known: {', '.join(STYLES)}") from None


def make_style(name: str, *, base: str | None = None, pattern: str | None = None, **params: Any) -> PlayerStyle:
    """A style variant or a brand-new style.

    ``make_style("strafer", period_s=0.4)`` is a faster strafer (name kept);
    ``make_style("fast-strafer", base="strafer", period_s=0.4)`` names the variant;
    ``make_style("wobbler", pattern="circle", radius=3)`` is a new style never seen in training.
    Unknown parameter names raise ``TypeError`` naming them.
    """
    if pattern is not None and pattern not in PATTERNS:
        raise ValueError(f"unknown pattern {pattern!r}; known: {', '.join(PATTERNS)}")
    if base is not None:
        start = get_style(base)
        extra: dict[str, Any] = {"pattern": pattern} if pattern is not None else {}
        return replace(start, name=name, **extra, **params)
    if pattern is None:
        return replace(get_style(name), **params)
    return PlayerStyle(name=name, pattern=pattern, **params)  # type: ignore[arg-type]


def random_style(seed: int, name: str | None = None) -> PlayerStyle:
    """A fresh mobile style with parameters drawn from ``seed`` (a held-out variant)."""
    rng = np.random.default_rng(seed)
    pattern = str(rng.choice(["strafe", "circle", "zigzag", "spiral", "stopgo"]))
    return PlayerStyle(
        name=name or f"random-{seed}",
        pattern=pattern,  # type: ignore[arg-type]
        speed=float(rng.uniform(0.7, 1.0)),
        period_s=float(rng.uniform(0.5, 2.0)),
        radius=float(rng.uniform(4.0, 9.0)),
        angle=float(rng.uniform(0.4, 1.1)),
        back_bias=float(rng.uniform(0.1, 0.5)),
        noise=float(rng.uniform(0.05, 0.25)),
        flee=float(rng.uniform(0.0, 0.6)),
    )


def resolve_styles(names: list[str] | tuple[str, ...]) -> list[PlayerStyle]:
    return [get_style(n) for n in names]


class PlayerController(Protocol):
    """What drives one simulated player, step by step (see :meth:`StyleController.decide`)."""

    def decide(
        self,
        pos: np.ndarray,
        dt: float,
        blocked: bool,
        threat: np.ndarray | None = None,
        bounds: tuple[float, float] | None = None,
    ) -> tuple[np.ndarray, bool, float | None, list[Intent]]:
        """``(move_xz, jump, yaw, intents)``: ``move_xz`` is the walk direction times the fraction
        of walk speed (length <= 1), ``threat`` the nearest hostile agent's position."""
        ...


class PlayerKind(Protocol):
    """Any way of playing the simulator can host: a :class:`PlayerStyle` or, e.g., a movement
    pattern a test writes itself. ``name`` only labels reports; nothing reads meaning into it."""

    @property
    def name(self) -> str: ...

    def controller(self, rng: np.random.Generator, anchor: np.ndarray) -> PlayerController:
        """A fresh controller for one player (``rng`` seeded by the simulation, ``anchor`` its home)."""
        ...


@dataclass
class Intent:
    """A non-movement action a scripted player wants this step."""

    kind: Literal["dig", "place", "chat"]
    cell: tuple[int, int, int] | None = None
    item: str | None = None
    message: str | None = None


class StyleController:
    """Per-player state machine producing ``(move_xz, jump, yaw, intents)`` each step."""

    def __init__(self, style: PlayerStyle, rng: np.random.Generator, anchor: np.ndarray) -> None:
        self.style = style
        self.rng = rng
        self.anchor = np.asarray(anchor, dtype=np.float64).copy()
        self.heading = float(rng.uniform(-math.pi, math.pi))
        self.sign = 1.0 if rng.random() < 0.5 else -1.0
        self.phase_t = 0.0
        self.next_switch = self._period()
        self.pause_left = 0.0
        self.noise = 0.0
        self.t = 0.0

    def _period(self) -> float:
        return float(self.style.period_s * self.rng.uniform(0.7, 1.3))

    def decide(
        self,
        pos: np.ndarray,
        dt: float,
        blocked: bool,
        threat: np.ndarray | None = None,
        bounds: tuple[float, float] | None = None,
    ) -> tuple[np.ndarray, bool, float | None, list[Intent]]:
        s, rng = self.style, self.rng
        self.t += dt
        self.phase_t += dt
        self.noise = 0.8 * self.noise + rng.normal(0.0, s.noise)
        intents: list[Intent] = []
        if s.chat_rate > 0 and rng.random() < s.chat_rate * dt:
            lines = CHAT_LINES.get(s.pattern, CHAT_LINES["default"])
            intents.append(Intent("chat", message=str(lines[int(rng.integers(len(lines)))])))
        if self.pause_left > 0:
            self.pause_left -= dt
            return np.zeros(2), False, None, intents
        if s.pause_rate > 0 and rng.random() < s.pause_rate * dt:
            self.pause_left = s.pause_s * float(rng.uniform(0.5, 1.5))
        if self.phase_t >= self.next_switch:
            self.phase_t = 0.0
            self.next_switch = self._period()
            if s.pattern in ("strafe", "zigzag", "stopgo"):
                self.sign = -self.sign
        if blocked:
            self.heading += math.pi * float(rng.uniform(0.5, 1.5))
            self.sign = -self.sign

        rel = pos[[0, 2]] - self.anchor[[0, 2]]
        away = None
        if threat is not None:
            d = pos[[0, 2]] - threat[[0, 2]]
            dist = float(np.hypot(*d))
            if dist < s.awareness and dist > 1e-6:
                away = d / dist
        direction = self._pattern_dir(pos, rel, away, intents)
        if away is not None and s.flee > 0:
            direction = direction + s.flee * away
        if away is not None and bounds is not None:
            # a fleeing player does not run into a wall: it turns along it
            x, z = float(pos[0]), float(pos[2])
            margin = 6.0
            push = np.array(
                [
                    max(0.0, margin - x) - max(0.0, x - (bounds[0] - margin)),
                    max(0.0, margin - z) - max(0.0, z - (bounds[1] - margin)),
                ]
            )
            direction = _unit(direction) + push / margin * 1.5
        n = float(np.hypot(*direction))
        if n > 1e-9:
            direction = direction / n
            c, sn = math.cos(self.noise), math.sin(self.noise)
            direction = np.array([c * direction[0] - sn * direction[1], sn * direction[0] + c * direction[1]])
            move = direction * s.speed * float(rng.uniform(0.9, 1.0))
        else:
            move = np.zeros(2)
        jump = bool(s.jump_rate > 0 and rng.random() < s.jump_rate * dt)
        yaw = None
        if away is not None and s.pattern in ("strafe",):
            yaw = math.atan2(away[0], -away[1])  # face the threat: look = -away
        elif n > 1e-9:
            yaw = math.atan2(-move[0], move[1])
        return move, jump, yaw, intents

    def _pattern_dir(
        self, pos: np.ndarray, rel: np.ndarray, away: np.ndarray | None, intents: list[Intent]
    ) -> np.ndarray:
        s, rng = self.style, self.rng
        p = s.pattern
        if p == "strafe":
            ref = away if away is not None else _unit(-rel) if np.hypot(*rel) > 1e-6 else np.array([1.0, 0.0])
            lateral = np.array([-ref[1], ref[0]]) * self.sign
            back = ref if away is not None else np.zeros(2)
            return np.asarray(lateral + s.back_bias * back)
        if p in ("circle", "spiral"):
            r = float(np.hypot(*rel))
            radius = s.radius
            if p == "spiral":
                radius = s.radius * (0.35 + 0.65 * abs(math.sin(self.t * math.pi / max(s.period_s, 1e-3))))
            radial = _unit(rel) if r > 1e-6 else np.array([1.0, 0.0])
            tangent = np.array([-radial[1], radial[0]]) * self.sign
            return np.asarray(tangent + 0.8 * np.clip(radius - r, -1.5, 1.5) / 1.5 * radial)
        if p == "zigzag":
            base = away if away is not None else np.array([math.cos(self.heading), math.sin(self.heading)])
            self.heading += float(rng.normal(0.0, 0.05))
            a = math.atan2(base[1], base[0]) + self.sign * s.angle
            return np.array([math.cos(a), math.sin(a)])
        if p == "stopgo":
            if self.sign < 0:
                return np.zeros(2)
            base = away if away is not None else np.array([math.cos(self.heading), math.sin(self.heading)])
            self.heading += float(rng.normal(0.0, 0.3))
            return np.asarray(base)
        if p in ("explore", "camp", "build", "chat"):
            self.heading += float(rng.normal(0.0, s.turn_rate * math.sqrt(0.09)))
            if p != "explore" and np.hypot(*rel) > 6.0:  # stay near home
                self.heading = math.atan2(-rel[1], -rel[0])
            if p == "build":
                self._build_intents(pos, intents)
            return np.array([math.cos(self.heading), math.sin(self.heading)])
        return np.zeros(2)

    def _build_intents(self, pos: np.ndarray, intents: list[Intent]) -> None:
        s, rng = self.style, self.rng
        front = np.array([math.cos(self.heading), math.sin(self.heading)])
        cell = (int(round(pos[0] + 1.6 * front[0])), int(math.floor(pos[1] + 0.5)), int(round(pos[2] + 1.6 * front[1])))
        if rng.random() < s.place_rate * 0.09:
            intents.append(Intent("place", cell=cell, item="default:wood"))
        if rng.random() < s.dig_rate * 0.09:
            down = (cell[0], cell[1] - 1, cell[2])
            intents.append(Intent("dig", cell=down if rng.random() < 0.5 else cell))


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.hypot(*v))
    return v / n if n > 1e-9 else np.zeros(2)
