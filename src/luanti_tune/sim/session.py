"""Play sessions of scripted players and stream their events into a store or the HTTP service.

:func:`generate_events` yields schema-valid wire dicts in ``seq`` order; :func:`to_store` and
:func:`to_service` are the two sinks. The same :class:`SessionConfig` (seed included) always
produces the same stream, byte for byte.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from luanti_tune.sim.core import DEFAULT_EPOCH_US, Dynamics, Simulation
from luanti_tune.sim.physics import DT
from luanti_tune.sim.styles import PlayerKind, get_style
from luanti_tune.sim.world import World, WorldConfig

log = logging.getLogger(__name__)

ENEMY_NAME = "enemy-1"


@dataclass(frozen=True)
class SessionConfig:
    """What to simulate. ``styles`` are style names or :class:`PlayerKind` objects (a
    :class:`PlayerStyle` or one's own pattern), cycled over players."""

    players: int = 4
    styles: tuple[str | PlayerKind, ...] = ("strafer", "circler", "zigzag", "explorer")
    minutes: float = 1.0
    seed: int = 0
    source: str | None = None  # default "sim-<seed>"
    move_every: int = 1  # emit player.move every k steps (1 = every 0.09 s step)
    enemy: bool = True  # a scripted pursuit agent chasing the nearest player (agent.* events)
    agent_every: int = 5  # the enemy observes/acts every k steps
    episode_id: str | None = None
    start_wall_us: int = DEFAULT_EPOCH_US
    world: WorldConfig = field(default_factory=WorldConfig)
    lava_every: int = 0
    bridge_collapse_s: float | None = 30.0
    items: int = 12  # items lying around; walking over one emits inventory.action
    #: player names, in order (e.g. people's names); default ``p<i>-<style>`` (for analysis reports)
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        checks = {
            "players": 0 <= self.players <= 1000,
            "minutes": math.isfinite(self.minutes) and self.minutes > 0,
            "move_every": self.move_every >= 1,
            "agent_every": self.agent_every >= 1,
            "items": self.items >= 0,
            "lava_every": self.lava_every >= 0,
            "names": not self.names or (len(self.names) >= self.players and len(set(self.names)) == len(self.names)),
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"SessionConfig.{name} is out of range: {getattr(self, name)!r}")

    @property
    def steps(self) -> int:
        return int(math.ceil(self.minutes * 60.0 / DT))

    def resolved_source(self) -> str:
        return self.source or f"sim-{self.seed}"

    def style_objects(self) -> list[PlayerKind]:
        if not self.styles:
            raise ValueError("styles must name at least one style")
        return [get_style(s) if isinstance(s, str) else s for s in self.styles]


def player_name(i: int, style: PlayerKind) -> str:
    """Deterministic player names that reveal nothing but an index (and the style for analysis)."""
    return f"p{i:02d}-{style.name}"


def build_session(config: SessionConfig) -> Simulation:
    world = World(config.world, seed=config.seed)
    bridge_tick = int(config.bridge_collapse_s / DT) if config.bridge_collapse_s is not None else None
    sim = Simulation(
        world,
        seed=config.seed,
        source=config.resolved_source(),
        episode_id=config.episode_id or f"{config.resolved_source()}-ep0",
        start_wall_us=config.start_wall_us,
        move_every=config.move_every,
        dynamics=Dynamics(lava_every=config.lava_every, bridge_collapse_tick=bridge_tick),
    )
    sim.emit("system.start", "sim", "sim", {"version": "luanti-tune-sim/1", "world": f"seed={config.seed}"})
    styles = config.style_objects()
    for i in range(config.players):
        style = styles[i % len(styles)]
        sim.add_player(config.names[i] if config.names else player_name(i, style), style)
    if config.items > 0:
        cols = world.standable_columns()
        rng = np.random.default_rng([config.seed, 505])
        picks = cols[rng.choice(len(cols), size=min(config.items, len(cols)), replace=False)]
        sim.add_items(np.array([world.spawn_point(int(x), int(z)) + [0.0, 0.5, 0.0] for x, z in picks]))
    if config.enemy and config.players > 0:
        enemy = sim.add_agent(ENEMY_NAME, "pursuit", speed_mul=1.0, hostile=True)
        enemy.targets = [a.name for a in sim.order if a.kind == "player"]
    return sim


def generate_events(
    config: SessionConfig,
    *,
    policy: Any | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield every event of the session (wire dicts, schema-valid) in ``seq`` order.

    ``policy`` (a :class:`~luanti_tune.policies.base.Policy`) drives the enemy; default is the
    scripted pure-pursuit baseline. ``on_step(done, total)`` reports progress.
    """
    from luanti_tune.policies.scripted import PurePursuitPolicy

    sim = build_session(config)
    pol = policy if policy is not None else PurePursuitPolicy()
    memory: dict[str, dict[str, Any]] = {}
    enemy = sim.actors.get(ENEMY_NAME)
    total = config.steps
    yield from sim.drain_events()
    for step in range(total):
        if enemy is not None and step % max(1, config.agent_every) == 0:
            obs = sim.observe(ENEMY_NAME)
            decision = pol.decide([obs], memory)[0]
            before = _dist_to_nearest_player(sim)
            sim.apply_action(decision.action, model=getattr(pol, "name", None))
            sim.step()
            after = _dist_to_nearest_player(sim)
            sim.reward(ENEMY_NAME, before - after, "closer")
            if after < 1.2:
                sim.reward(ENEMY_NAME, 10.0, "caught")
                _respawn_enemy(sim)
        else:
            sim.step()
        yield from sim.drain_events()
        if on_step is not None:
            on_step(step + 1, total)
    for actor in sim.order:
        if actor.kind == "player":
            sim.emit("player.leave", "player", actor.name, {"timed_out": False}, pos=sim.pos_of(actor.name))
    yield from sim.drain_events()


def _dist_to_nearest_player(sim: Simulation) -> float:
    e = sim.pos_of(ENEMY_NAME)
    ps = [sim.pos_of(a.name) for a in sim.order if a.kind == "player"]
    return float(min(np.linalg.norm(np.asarray(ps) - e, axis=1))) if ps else 0.0


def _respawn_enemy(sim: Simulation) -> None:
    actor = sim.actors[ENEMY_NAME]
    sim.bodies.pos[actor.idx] = sim.world.spawn_point(*sim.random_cell())
    sim.bodies.vel[actor.idx] = 0.0


def batched(events: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for ev in events:
        batch.append(ev)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class SinkReport:
    """What a sink did: events sent, accepted as new, duplicates, batches."""

    events: int = 0
    accepted: int = 0
    duplicates: int = 0
    batches: int = 0
    by_type: dict[str, int] = field(default_factory=dict)

    def add(self, batch: Sequence[dict[str, Any]], accepted: int, duplicates: int) -> None:
        self.events += len(batch)
        self.accepted += accepted
        self.duplicates += duplicates
        self.batches += 1
        for ev in batch:
            self.by_type[ev["type"]] = self.by_type.get(ev["type"], 0) + 1


def to_store(events: Iterable[dict[str, Any]], store: Any, batch_size: int = 2000) -> SinkReport:
    """Validate and append events to a :class:`~luanti_tune.store.base.Store` in batches."""
    from luanti_tune.schemas.event import parse_event

    report = SinkReport()
    for batch in batched(events, batch_size):
        parsed = [parse_event(ev) for ev in batch]
        res = store.append(parsed)
        report.add(batch, res.accepted, res.duplicates)
    return report


def to_service(
    events: Iterable[dict[str, Any]],
    url: str,
    *,
    batch_size: int = 500,
    token: str | None = None,
    timeout: float = 30.0,
    retries: int = 5,
) -> SinkReport:
    """POST batches to ``{url}/v1/events`` with retries (idempotent by ``(source, seq)``)."""
    import time

    import httpx

    endpoint = url.rstrip("/")
    if not endpoint.endswith("/v1/events"):
        endpoint += "/v1/events"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    report = SinkReport()
    with httpx.Client(timeout=timeout, headers=headers) as client:
        for batch in batched(events, batch_size):
            for attempt in range(retries + 1):
                try:
                    resp = client.post(endpoint, json={"events": batch})
                except httpx.TransportError as exc:
                    if attempt == retries:
                        raise
                    log.warning("POST %s failed (%s); retrying", endpoint, exc)
                    time.sleep(min(2.0, 0.1 * 2**attempt))
                    continue
                if resp.status_code >= 500 and attempt < retries:
                    time.sleep(min(2.0, 0.1 * 2**attempt))
                    continue
                resp.raise_for_status()
                body = resp.json()
                report.add(batch, int(body.get("accepted", 0)), int(body.get("duplicates", 0)))
                break
    return report
