"""The simulation: a world, bodies (scripted players and agents), actions, observations, events.

Every change is reported as a ``luanti.event/1`` wire dict (the same types the Lua mod emits),
buffered in :attr:`Simulation.events`; ``(source, seq)`` numbers them, ``time`` is simulated
(``start_wall_us`` + game time), so the same seed always gives the same event stream.
Actions arrive as schema :class:`~luanti_tune.schemas.agent.Action` objects or raw dicts; an
action that cannot be performed never raises but yields a ``LastResult`` with a reason (and an
``agent.result`` event). The ``agent.obs``, ``agent.act``, ``agent.result`` and ``reward``
events of one decision share ``corr_id = "<agent>@<tick>"``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import TypeAdapter, ValidationError

from luanti_tune.schemas.agent import Action, LastResult, Observation
from luanti_tune.schemas.event import EVENT_SCHEMA
from luanti_tune.sim.physics import DT, EYE_HEIGHT, MAX_HP, Bodies, StepInfo
from luanti_tune.sim.styles import Intent, PlayerController, PlayerKind
from luanti_tune.sim.world import AIR, DIGGABLE, LAVA, LIQUID, NODE_NAMES, PLACEABLE, SOLID, World

DEFAULT_EPOCH_US = 1_764_150_000_000_000
REACH = 4.5
ATTACK_RANGE = 3.0
ATTACK_DAMAGE = 2.0
VIEW_RADIUS = 32.0
PICKUP_RADIUS = 1.0
ACTION_ADAPTER: TypeAdapter[Any] = TypeAdapter(Action)


@dataclass
class Actor:
    """A named body in the simulation."""

    name: str
    kind: Literal["player", "agent"]
    idx: int
    style: PlayerKind | None = None
    controller: PlayerController | None = None
    agent_kind: str | None = None
    team: str | None = None
    home: np.ndarray = field(default_factory=lambda: np.zeros(3))
    inventory: dict[str, int] = field(default_factory=dict)
    targets: list[str] = field(default_factory=list)
    goal: np.ndarray | None = None
    nearby_radius: int | None = None
    move_target: np.ndarray | None = None
    move_speed: float = 1.0
    wait_left: int = 0
    blocked: bool = False
    danger: bool = False
    corr: str | None = None
    hostile: bool = False
    last_result: LastResult | None = None
    chat_inbox: list[dict[str, str]] = field(default_factory=list)
    hp_reported: int = int(MAX_HP)
    deaths: int = 0


@dataclass(frozen=True)
class Dynamics:
    """Node changes during an episode (all seeded)."""

    lava_every: int = 0  # spread lava every k ticks (0 = never)
    lava_prob: float = 0.35
    bridge_collapse_tick: int | None = None
    respawn: bool = True


def _v(a: np.ndarray | tuple[float, float, float]) -> dict[str, float]:
    return {"x": round(float(a[0]), 4), "y": round(float(a[1]), 4), "z": round(float(a[2]), 4)}


class Simulation:
    """One running world with its actors; :meth:`step` advances it by one 0.09 s server step."""

    def __init__(
        self,
        world: World,
        seed: int = 0,
        *,
        source: str = "sim",
        episode_id: str | None = None,
        start_wall_us: int = DEFAULT_EPOCH_US,
        record: bool = True,
        move_every: int = 1,
        dynamics: Dynamics | None = None,
        dt: float = DT,
    ) -> None:
        self.world = world
        self.seed = seed
        self.rng = np.random.default_rng([seed, 7])
        self.source = source
        self.episode_id = episode_id
        self.start_wall_us = start_wall_us
        self.record = record
        self.move_every = max(1, move_every)
        self.dynamics = dynamics or Dynamics()
        self.dt = dt
        self.tick = 0
        self.seq = 0
        self.bodies = Bodies(0)
        self.actors: dict[str, Actor] = {}
        self.order: list[Actor] = []
        self.events: list[dict[str, Any]] = []
        self.items = np.zeros((0, 3))
        self.item_names: list[str] = []
        self._columns = world.standable_columns()
        self._last_info: StepInfo | None = None

    # ------------------------------------------------------------------ events

    @property
    def game_s(self) -> float:
        return self.tick * self.dt

    def emit(
        self,
        type_: str,
        actor_kind: str,
        actor_name: str,
        payload: Mapping[str, Any],
        *,
        pos: np.ndarray | None = None,
        target: Mapping[str, Any] | None = None,
        corr_id: str | None = None,
    ) -> None:
        """Append one wire event (no-op when ``record`` is off)."""
        if not self.record:
            return
        self.seq += 1
        ev: dict[str, Any] = {
            "schema": EVENT_SCHEMA,
            "event_id": f"{self.source}-{self.seq}",
            "source": self.source,
            "seq": self.seq,
            "type": type_,
            "time": {
                "wall_us": self.start_wall_us + int(round(self.game_s * 1e6)),
                "game_s": round(self.game_s, 3),
                "tick": self.tick,
            },
            "actor": {"kind": actor_kind, "name": actor_name},
            "payload": dict(payload),
        }
        if pos is not None:
            ev["pos"] = _v(pos)
        if target is not None:
            ev["target"] = dict(target)
        if self.episode_id is not None:
            ev["episode_id"] = self.episode_id
        if corr_id is not None:
            ev["corr_id"] = corr_id
        self.events.append(ev)

    def drain_events(self) -> list[dict[str, Any]]:
        out, self.events = self.events, []
        return out

    # ------------------------------------------------------------------ actors

    def random_cell(self, rng: np.random.Generator | None = None) -> tuple[int, int]:
        r = rng if rng is not None else self.rng
        x, z = self._columns[int(r.integers(len(self._columns)))]
        return int(x), int(z)

    def _add_body(self, pos: np.ndarray, speed_mul: float) -> int:
        b = self.bodies
        nb = Bodies(b.n + 1)
        for name in ("pos", "vel", "yaw", "pitch", "hp", "on_ground", "speed_mul", "autojump", "alive", "move", "jump"):
            getattr(nb, name)[:-1] = getattr(b, name)
        nb.pos[-1] = pos
        nb.speed_mul[-1] = speed_mul
        self.bodies = nb
        return nb.n - 1

    def add_player(
        self, name: str, style: PlayerKind, pos: np.ndarray | None = None, anchor: np.ndarray | None = None
    ) -> Actor:
        """A scripted player of ``style`` (a :class:`PlayerStyle` or any :class:`PlayerKind`); emits ``player.join``."""
        if name in self.actors:
            raise ValueError(f"actor {name!r} already exists")
        if pos is None:
            pos = self.world.spawn_point(*self.random_cell())
        idx = self._add_body(np.asarray(pos, dtype=float), 1.0)
        rng = np.random.default_rng([self.seed, 11, len(self.order)])
        ctrl = style.controller(rng, anchor if anchor is not None else np.asarray(pos, dtype=float))
        actor = Actor(name=name, kind="player", idx=idx, style=style, controller=ctrl, home=np.asarray(pos, float))
        actor.inventory = {"default:wood": 20, "default:dirt_with_grass": 5}
        self.actors[name] = actor
        self.order.append(actor)
        self.emit("player.join", "player", name, {"new_player": False}, pos=np.asarray(pos))
        return actor

    def add_agent(
        self,
        name: str,
        kind: str,
        pos: np.ndarray | None = None,
        *,
        speed_mul: float = 1.0,
        team: str | None = None,
        nearby_radius: int | None = None,
        hostile: bool = False,
    ) -> Actor:
        """An agent driven by actions (:meth:`apply_action`)."""
        if name in self.actors:
            raise ValueError(f"actor {name!r} already exists")
        if pos is None:
            pos = self.world.spawn_point(*self.random_cell())
        idx = self._add_body(np.asarray(pos, dtype=float), speed_mul)
        actor = Actor(
            name=name,
            kind="agent",
            idx=idx,
            agent_kind=kind,
            team=team,
            home=np.asarray(pos, float),
            nearby_radius=nearby_radius,
            hostile=hostile,
        )
        actor.inventory = {"default:wood": 10}
        self.actors[name] = actor
        self.order.append(actor)
        return actor

    def add_items(self, cells: np.ndarray, name: str = "default:mese_crystal") -> None:
        cells = np.atleast_2d(np.asarray(cells, dtype=float))
        self.items = np.concatenate([self.items, cells])
        self.item_names += [name] * len(cells)

    def pos_of(self, name: str) -> np.ndarray:
        return self.bodies.pos[self.actors[name].idx]

    # ------------------------------------------------------------------ actions

    def apply_action(self, action: Action | Mapping[str, Any], *, model: str | None = None) -> LastResult:
        """Validate and start one agent action; never raises. Records agent.act/agent.result."""
        if not isinstance(action, Mapping):
            parsed = action
        else:
            try:
                parsed = ACTION_ADAPTER.validate_python(dict(action))
            except ValidationError as exc:
                err = exc.errors()[0]
                loc = ".".join(str(p) for p in err["loc"]) or "action"
                name = action.get("agent") if isinstance(action.get("agent"), str) else None
                return self._result(name, "invalid", False, f"invalid action: {loc}: {err['msg']}")
        actor = self.actors.get(parsed.agent)
        act_dict = parsed.model_dump(mode="json", by_alias=True, exclude_none=True)
        if actor is None or actor.kind != "agent":
            return self._result(None, parsed.type, False, f"unknown agent {parsed.agent!r}")
        payload: dict[str, Any] = {"action": act_dict}
        if model:
            payload["model"] = model
        self.emit("agent.act", "agent", actor.name, payload, pos=self.bodies.pos[actor.idx], corr_id=self._corr(actor))
        if not self.bodies.alive[actor.idx]:
            return self._result(actor, parsed.type, False, "agent is dead")
        handler = getattr(self, f"_act_{parsed.type}")
        ok, reason = handler(actor, parsed.args)
        return self._result(actor, parsed.type, ok, reason)

    def _corr(self, actor: Actor) -> str:
        """``<agent>@<tick>``: links the obs, act, result and following reward of one decision."""
        actor.corr = f"{actor.name}@{self.tick}"
        return actor.corr

    def _result(self, actor: Actor | str | None, action: str, ok: bool, reason: str | None) -> LastResult:
        res = LastResult(action=action, ok=ok, reason=reason)
        name = actor.name if isinstance(actor, Actor) else actor
        a = self.actors.get(name) if name else None
        if a is not None:
            a.last_result = res
        payload: dict[str, Any] = {"action": action, "ok": ok}
        if reason is not None:
            payload["reason"] = reason
        safe = name if isinstance(name, str) and a is not None else "unknown"
        self.emit("agent.result", "agent", safe, payload, corr_id=self._corr(a) if a is not None else None)
        return res

    def _act_move(self, actor: Actor, args: Any) -> tuple[bool, str | None]:
        d = np.array([args.dir.x, args.dir.z])
        n = float(np.hypot(*d))
        b = self.bodies
        actor.move_target = None
        actor.wait_left = 0
        if n < 1e-6:
            b.move[actor.idx] = 0.0
            return True, None
        d = d / n
        b.move[actor.idx] = d * args.speed
        b.yaw[actor.idx] = math.atan2(-d[0], d[1])
        if args.dir.y > 0.5:
            b.jump[actor.idx] = True
        probe = b.pos[actor.idx].copy()
        probe[0] += d[0] * 0.75  # body radius 0.3 plus a little: the node right in front
        probe[2] += d[1] * 0.75
        head = self.world.solid_at_points(np.array([[probe[0], probe[1] + 1.2, probe[2]]]))[0]
        if head:
            return False, "blocked by a wall"
        return True, None

    def _act_move_to(self, actor: Actor, args: Any) -> tuple[bool, str | None]:
        target = np.array(args.pos.as_tuple())
        if not self.world.in_bounds(np.floor(target + 0.5)):
            return False, "target outside the world"
        actor.move_target = target
        actor.move_speed = args.speed
        actor.wait_left = 0
        return True, None

    def _act_turn(self, actor: Actor, args: Any) -> tuple[bool, str | None]:
        self.bodies.yaw[actor.idx] = args.yaw
        self.bodies.pitch[actor.idx] = args.pitch
        return True, None

    def _act_jump(self, actor: Actor, args: Any) -> tuple[bool, str | None]:
        b = self.bodies
        inside = self.world.node_at(np.floor(b.pos[actor.idx] + np.array([0.5, 0.8, 0.5])))
        if not b.on_ground[actor.idx] and not LIQUID[int(inside)]:
            return False, "not on ground"
        b.jump[actor.idx] = True
        return True, None

    def _reach_cell(self, actor: Actor, pos: Any) -> tuple[np.ndarray | None, str | None]:
        cell = np.floor(np.array(pos.as_tuple()) + 0.5).astype(np.int64)
        if not self.world.in_bounds(cell):
            return None, "position outside the world"
        eye = self.bodies.pos[actor.idx] + np.array([0.0, EYE_HEIGHT, 0.0])
        if float(np.linalg.norm(cell - eye)) > REACH:
            return None, f"out of reach (> {REACH} nodes)"
        return cell, None

    def _act_dig(self, actor: Actor, args: Any) -> tuple[bool, str | None]:
        cell, why = self._reach_cell(actor, args.pos)
        if cell is None:
            return False, why
        return self._dig(actor, cell)

    def _dig(self, actor: Actor, cell: np.ndarray) -> tuple[bool, str | None]:
        node = int(self.world.node_at(cell))
        if node == AIR:
            return False, "nothing to dig: air"
        if not DIGGABLE[node]:
            return False, f"node not diggable: {NODE_NAMES[node]}"
        self.world.set_nodes(cell, AIR)
        item = NODE_NAMES[node]
        actor.inventory[item] = actor.inventory.get(item, 0) + 1
        self._emit_node("node.dig", actor, item, cell)
        return True, None

    def _emit_node(self, type_: str, actor: Actor, item: str, cell: np.ndarray) -> None:
        """``node.dig`` / ``node.place`` by ``actor`` of ``item`` at ``cell``."""
        self.emit(
            type_,
            actor.kind,
            actor.name,
            {"node": item, "item": item},
            pos=self.bodies.pos[actor.idx],
            target={"kind": "node", "name": item, "pos": _v(cell)},
        )

    def _act_place(self, actor: Actor, args: Any) -> tuple[bool, str | None]:
        cell, why = self._reach_cell(actor, args.pos)
        if cell is None:
            return False, why
        return self._place(actor, cell, args.item)

    def _place(self, actor: Actor, cell: np.ndarray, item: str) -> tuple[bool, str | None]:
        if actor.inventory.get(item, 0) <= 0:
            return False, f"item not in inventory: {item}"
        if item not in PLACEABLE:
            return False, f"item not placeable: {item}"
        node = int(self.world.node_at(cell))
        if SOLID[node]:
            return False, f"position occupied by {NODE_NAMES[node]}"
        body_cells = self.bodies.cells()
        occupied = (
            np.all(body_cells == cell, axis=1) | np.all(body_cells + [0, 1, 0] == cell, axis=1)
        ) & self.bodies.alive
        if occupied.any():
            return False, "position occupied by a body"
        nbrs = cell[None, :] + np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])
        if not SOLID[self.world.node_at(nbrs)].any():
            return False, "nothing to place against"
        self.world.set_nodes(cell, PLACEABLE[item])
        actor.inventory[item] -= 1
        self._emit_node("node.place", actor, item, cell)
        return True, None

    def _act_attack(self, actor: Actor, args: Any) -> tuple[bool, str | None]:
        target = self.actors.get(args.target)
        if target is None or target is actor:
            return False, f"unknown target {args.target!r}"
        b = self.bodies
        if not b.alive[target.idx]:
            return False, "target is dead"
        d = float(np.linalg.norm(b.pos[target.idx] - b.pos[actor.idx]))
        if d > ATTACK_RANGE:
            return False, f"target out of range ({d:.1f} > {ATTACK_RANGE} nodes)"
        if not self.world.line_of_sight(b.eyes()[[actor.idx]], b.eyes()[[target.idx]])[0]:
            return False, "no line of sight"
        self._damage(target, ATTACK_DAMAGE, "punch", attacker=actor)
        return True, None

    def _act_chat(self, actor: Actor, args: Any) -> tuple[bool, str | None]:
        if args.to is not None and args.to not in self.actors:
            return False, f"unknown recipient {args.to!r}"
        self._chat(actor, args.message, args.to)
        return True, None

    def _act_wait(self, actor: Actor, args: Any) -> tuple[bool, str | None]:
        actor.wait_left = int(args.ticks)
        actor.move_target = None
        self.bodies.move[actor.idx] = 0.0
        return True, None

    def _chat(self, actor: Actor, message: str, to: str | None) -> None:
        payload: dict[str, Any] = {"message": message}
        if to:
            payload["to"] = to
        self.emit("chat.msg", actor.kind, actor.name, payload, pos=self.bodies.pos[actor.idx])
        for other in self.order:
            if other is not actor and (to is None or other.name == to):
                other.chat_inbox = (other.chat_inbox + [{"from": actor.name, "message": message}])[-16:]

    def _damage(self, actor: Actor, amount: float, reason: str, attacker: Actor | None = None) -> None:
        b = self.bodies
        b.hp[actor.idx] = max(0.0, float(b.hp[actor.idx]) - amount)
        if attacker is not None and actor.kind == "player":
            self.emit(
                "player.punch",
                "player",
                actor.name,
                {"damage": amount},
                pos=b.pos[actor.idx],
                target={"kind": "agent" if attacker.kind == "agent" else "player", "name": attacker.name},
            )
        self._report_hp(actor, reason)

    def _report_hp(self, actor: Actor, reason: str) -> None:
        b = self.bodies
        hp = int(math.ceil(float(b.hp[actor.idx])))
        if hp != actor.hp_reported:
            if actor.kind == "player":
                self.emit(
                    "player.hp",
                    "player",
                    actor.name,
                    {"hp": float(hp), "delta": float(hp - actor.hp_reported), "reason": reason},
                    pos=b.pos[actor.idx],
                )
            actor.hp_reported = hp
        if b.hp[actor.idx] <= 0 and b.alive[actor.idx]:
            b.alive[actor.idx] = False
        if not b.alive[actor.idx] and actor.hp_reported <= 0:
            self._die(actor, reason)

    def _die(self, actor: Actor, reason: str) -> None:
        actor.deaths += 1
        b = self.bodies
        if actor.kind == "player":
            self.emit("player.die", "player", actor.name, {"reason": reason}, pos=b.pos[actor.idx])
        if self.dynamics.respawn and actor.kind == "player":
            b.pos[actor.idx] = actor.home
            b.vel[actor.idx] = 0.0
            b.hp[actor.idx] = MAX_HP
            b.alive[actor.idx] = True
            actor.hp_reported = int(MAX_HP)
            self.emit(
                "player.hp",
                "player",
                actor.name,
                {"hp": MAX_HP, "delta": MAX_HP, "reason": "respawn"},
                pos=b.pos[actor.idx],
            )

    # ------------------------------------------------------------------ stepping

    def _threat_positions(self) -> np.ndarray | None:
        hostile = [a.idx for a in self.order if a.kind == "agent" and a.hostile]
        if not hostile:
            return None
        return self.bodies.pos[hostile]

    def _drive_players(self) -> None:
        b = self.bodies
        threats = self._threat_positions()
        bounds = (float(self.world.shape[0] - 1), float(self.world.shape[2] - 1))
        for actor in self.order:
            if actor.controller is None or not b.alive[actor.idx]:
                continue
            pos = b.pos[actor.idx]
            threat = None
            if threats is not None:
                d = np.linalg.norm(threats - pos, axis=1)
                threat = threats[int(np.argmin(d))]
            stuck = actor.blocked or actor.danger
            move, jump, yaw, intents = actor.controller.decide(pos, self.dt, stuck, threat, bounds)
            actor.danger = self._looks_dangerous(pos, move)
            if actor.danger:
                # people see lava and cliffs: stop and let the controller pick another way
                move = np.zeros(2)
            b.move[actor.idx] = move
            b.jump[actor.idx] = jump
            if yaw is not None:
                b.yaw[actor.idx] = yaw
            for intent in intents:
                self._player_intent(actor, intent)

    def _looks_dangerous(self, pos: np.ndarray, move: np.ndarray) -> bool:
        n = float(np.hypot(*move))
        if n < 1e-6:
            return False
        ahead = pos + np.array([move[0] / n * 0.9, 0.0, move[1] / n * 0.9])
        cell = np.floor(ahead + 0.5).astype(np.int64)
        column = self.world.node_at(cell[None, :] - np.array([[0, k, 0] for k in range(5)]))
        if (column[:2] == LAVA).any():
            return True
        below = np.nonzero(SOLID[column] | LIQUID[column])[0]
        return bool(len(below) == 0 or column[below[0]] == LAVA)

    def _player_intent(self, actor: Actor, intent: Intent) -> None:
        if intent.kind == "chat" and intent.message:
            self._chat(actor, intent.message, None)
        elif intent.kind == "dig" and intent.cell is not None:
            self._dig(actor, np.array(intent.cell, dtype=np.int64))
        elif intent.kind == "place" and intent.cell is not None and intent.item:
            self._place(actor, np.array(intent.cell, dtype=np.int64), intent.item)

    def _drive_agents(self) -> None:
        b = self.bodies
        for actor in self.order:
            if actor.kind != "agent":
                continue
            if actor.wait_left > 0:
                actor.wait_left -= 1
                b.move[actor.idx] = 0.0
            elif actor.move_target is not None:
                d = actor.move_target[[0, 2]] - b.pos[actor.idx, [0, 2]]
                dist = float(np.hypot(*d))
                if dist < 0.25:
                    actor.move_target = None
                    b.move[actor.idx] = 0.0
                else:
                    b.move[actor.idx] = d / dist * actor.move_speed * min(1.0, dist / 0.4)
                    b.yaw[actor.idx] = math.atan2(-d[0], d[1])
                    b.jump[actor.idx] = bool(actor.move_target[1] > b.pos[actor.idx, 1] + 0.6)

    def step(self) -> StepInfo:
        """Advance one server step: scripted players decide, physics, damage, node changes, events."""
        self._drive_players()
        self._drive_agents()
        b = self.bodies
        info = b.step(self.world, self.dt)
        b.jump[:] = False
        self.tick += 1
        self._last_info = info
        for actor in self.order:
            actor.blocked = bool(info.blocked[actor.idx])
            if info.fall_damage[actor.idx] > 0:
                self._report_hp(actor, "fall")
            elif info.hazard_damage[actor.idx] > 0:
                self._report_hp(actor, "lava")
        self._world_dynamics()
        self._pickups()
        if self.record and self.tick % self.move_every == 0:
            self._emit_moves()
        return info

    def _emit_moves(self) -> None:
        b = self.bodies
        players = [a for a in self.order if a.kind == "player" and b.alive[a.idx]]
        if not players:
            return
        controls = b.controls()
        for a in players:
            i = a.idx
            self.emit(
                "player.move",
                "player",
                a.name,
                {
                    "velocity": _v(b.vel[i]),
                    "yaw": round(float(b.yaw[i]), 4),
                    "pitch": round(float(b.pitch[i]), 4),
                    "controls": controls[i],
                },
                pos=b.pos[i],
            )

    def _world_dynamics(self) -> None:
        d = self.dynamics
        if d.bridge_collapse_tick is not None and self.tick == d.bridge_collapse_tick:
            for cell in self.world.collapse_bridge():
                self.emit(
                    "node.dig",
                    "server",
                    "world",
                    {"node": "sim:bridge"},
                    pos=cell,
                    target={"kind": "node", "name": "sim:bridge", "pos": _v(cell)},
                )
        if d.lava_every and self.tick % d.lava_every == 0:
            for cell in self.world.spread_lava(self.rng, d.lava_prob):
                self.emit(
                    "node.place",
                    "server",
                    "world",
                    {"node": "default:lava_flowing"},
                    pos=cell,
                    target={"kind": "node", "name": "default:lava_flowing", "pos": _v(cell)},
                )

    def _pickups(self) -> None:
        if len(self.items) == 0:
            return
        b = self.bodies
        d = np.linalg.norm(self.items[None, :, :] - (b.pos[:, None, :] + [0, 0.5, 0]), axis=2)
        close = (d < PICKUP_RADIUS + 0.5) & b.alive[:, None]
        if not close.any():
            return
        taken = np.zeros(len(self.items), dtype=bool)
        for bi, ii in zip(*np.nonzero(close), strict=True):
            if taken[ii]:
                continue
            taken[ii] = True
            actor = self.order[int(bi)]
            name = self.item_names[int(ii)]
            actor.inventory[name] = actor.inventory.get(name, 0) + 1
            self.emit(
                "inventory.action",
                actor.kind,
                actor.name,
                {"action": "take", "list": "main", "item": name, "count": 1},
                pos=b.pos[actor.idx],
            )
        self.items = self.items[~taken]
        self.item_names = [n for n, t in zip(self.item_names, taken, strict=True) if not t]

    # ------------------------------------------------------------------ observations

    def observe(self, name: str, *, view_radius: float = VIEW_RADIUS) -> Observation:
        """The schema observation of agent ``name`` (entities, targets, goal, nearby grid, chat)."""
        actor = self.actors[name]
        b = self.bodies
        i = actor.idx
        pos = b.pos[i]
        entities: list[dict[str, Any]] = []
        others = [a for a in self.order if a is not actor and b.alive[a.idx]]
        if others:
            idxs = np.array([a.idx for a in others])
            rel = b.pos[idxs] - pos
            dist = np.linalg.norm(rel, axis=1)
            for k in np.argsort(dist, kind="stable")[:48]:
                if dist[k] > view_radius:
                    break
                o = others[int(k)]
                ent: dict[str, Any] = {
                    "kind": "player" if o.kind == "player" else "agent",
                    "name": o.name,
                    "rel": _v(rel[k]),
                    "velocity": _v(b.vel[o.idx]),
                    "hp": float(b.hp[o.idx]),
                }
                if o.team:
                    ent["team"] = o.team
                entities.append(ent)
        if len(self.items):
            rel_items = self.items - pos
            dist = np.linalg.norm(rel_items, axis=1)
            for k in np.argsort(dist, kind="stable")[: 64 - len(entities)]:
                if dist[k] > view_radius:
                    break
                entities.append({"kind": "item", "name": self.item_names[int(k)], "rel": _v(rel_items[k])})
        obs: dict[str, Any] = {
            "agent": actor.name,
            "kind": actor.agent_kind or "npc",
            "tick": self.tick,
            "pos": _v(pos),
            "yaw": round(float(b.yaw[i]), 4),
            "pitch": round(float(b.pitch[i]), 4),
            "hp": float(b.hp[i]),
            "velocity": _v(b.vel[i]),
            "inventory": {k: v for k, v in actor.inventory.items() if v > 0},
            "entities": entities,
            "targets": list(actor.targets),
            "chat": actor.chat_inbox[-16:],
        }
        actor.chat_inbox = []
        if actor.nearby_radius:
            codes = self.world.nearby_codes(b.cells()[[i]], actor.nearby_radius)[0]
            obs["nearby"] = {"radius": actor.nearby_radius, "codes": codes.tolist()}
        if actor.goal is not None:
            obs["goal"] = _v(actor.goal)
        if actor.team:
            obs["team"] = actor.team
        if actor.last_result is not None:
            obs["last_result"] = actor.last_result.model_dump(exclude_none=True)
        observation = Observation.model_validate(obs)
        if self.record:
            self.emit(
                "agent.obs",
                "agent",
                actor.name,
                observation.model_dump(mode="json", by_alias=True, exclude_none=True),
                corr_id=self._corr(actor),
            )
        return observation

    def reward(self, name: str, value: float, reason: str | None = None) -> None:
        payload: dict[str, Any] = {"value": round(float(value), 5)}
        if reason:
            payload["reason"] = reason
        actor = self.actors[name]
        self.emit("reward", "agent", name, payload, pos=self.bodies.pos[actor.idx], corr_id=actor.corr)
