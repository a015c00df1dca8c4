"""``luanti-tune bench adapt``: do enemies learn players nobody scripted?

For seeded movement patterns that are none of the simulator's styles (each from a generator the
base model never trained on), a player of that pattern plays against one pursuit agent through a
real ``luanti-tune serve`` with its own training worker, sending what the mod sends by default
(:class:`PlayConfig`: ``player.move`` at 2 Hz, an ``agent.result`` and a ``POST /v1/act`` every 2
server steps, events posted in small batches). Play goes in game-minute chunks; after each the
worker is given time to train on it. Then fixed-seed episodes (not the ones played) measure the
time to catch of pure pursuit, the base champion and the champion served for that player.

The play loop and the episode runner are also what the adaptation tests drive.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import httpx
import numpy as np

from luanti_tune.policies.base import AgentMemory, Policy
from luanti_tune.schemas.agent import Observation
from luanti_tune.sim.physics import DT
from luanti_tune.sim.scenarios import PursuitScenario
from luanti_tune.sim.styles import Intent, PlayerKind

log = logging.getLogger(__name__)

#: What the mod sends to the service, of what the simulator records.
MOD_EVENT_TYPES = ("player.join", "player.move", "agent.result")


@dataclass(frozen=True)
class PlayConfig:
    """Rates of the mod's defaults: ``act_interval`` 2 steps, ``move_sample_rate`` 2/s (a sample
    every 6 steps of 0.09 s), ``flush_interval`` 0.25 s (3 steps)."""

    player: str = "alice"
    source: str = "srv1"
    act_every: int = 2
    move_every: int = 6
    flush_every: int = 3
    max_episode_steps: int = 300
    seed: int = 0


class ServicePlay:
    """One player of ``kind`` chased by ``enemy-1``, decided by the service at ``url``, as on a live
    server: the player keeps playing; when caught (or after ``max_episode_steps``) the agent
    reappears 7-11 nodes away and the chase starts over. :meth:`play` advances by game seconds and
    can be called again."""

    def __init__(self, url: str, kind: PlayerKind, cfg: PlayConfig = PlayConfig(), token: str | None = None) -> None:
        self.kind = kind
        self.cfg = cfg
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(base_url=url, headers=headers, timeout=60.0)
        self.sc = PursuitScenario(
            kind, cfg.seed, max_steps=cfg.max_episode_steps, record=True, player_name=cfg.player, source=cfg.source
        )
        self.sc.sim.move_every = cfg.move_every
        self.rng = np.random.default_rng([cfg.seed, 909])
        self.seq = 0
        self.chases = 0
        self.caught = 0
        self.pending: list[dict[str, Any]] = []
        self.wall0 = 1_764_150_000_000_000
        self._collect(self.sc.sim.drain_events())

    @property
    def game_s(self) -> float:
        return self.sc.sim.tick * DT

    def close(self) -> None:
        self.client.close()

    def play(self, seconds: float) -> None:
        sc, cfg = self.sc, self.cfg
        for _ in range(int(round(seconds / DT))):
            if sc.sim.tick % cfg.act_every == 0:
                sc.act(self._decide(sc.observe()))
            _, done = sc.advance()
            self._collect(sc.sim.drain_events())
            if sc.sim.tick % cfg.flush_every == 0:
                self._flush()
            if done:
                self.chases += 1
                self.caught += int(sc.caught)
                self._respawn_agent()
        self._flush()

    def _respawn_agent(self) -> None:
        sc = self.sc
        sim = sc.sim
        p = sim.pos_of(sc.player)
        size = sim.world.shape
        for _ in range(100):
            ang, d = self.rng.uniform(0, 2 * math.pi), self.rng.uniform(7.0, 11.0)
            x, z = int(round(p[0] + d * math.cos(ang))), int(round(p[2] + d * math.sin(ang)))
            if 2 <= x < size[0] - 2 and 2 <= z < size[2] - 2:
                break
        idx = sim.actors[sc.enemy].idx
        sim.bodies.pos[idx] = sim.world.spawn_point(x, z)
        sim.bodies.vel[idx] = 0.0
        sc.steps = 0
        sc.caught = False

    def _decide(self, obs: Observation) -> dict[str, Any]:
        body = obs.model_dump(mode="json", by_alias=True, exclude_none=True)
        r = self.client.post("/v1/act", json={"observations": [body]})
        r.raise_for_status()
        action: dict[str, Any] = r.json()["actions"][0]
        return action

    def _collect(self, events: list[dict[str, Any]]) -> None:
        for ev in events:
            if ev["type"] not in MOD_EVENT_TYPES:
                continue
            self.seq += 1
            ev = {**ev, "seq": self.seq, "event_id": f"{self.cfg.source}-{self.seq}"}
            ev["time"] = {**ev["time"], "wall_us": self.wall0 + int(ev["time"]["tick"] * DT * 1e6)}
            ev.pop("episode_id", None)  # a live server has no episodes
            self.pending.append(ev)

    def _flush(self) -> None:
        if self.pending:
            r = self.client.post("/v1/events", json={"events": self.pending})
            r.raise_for_status()
            self.pending = []


# ----------------------------------------------------------------------------- episodes

Decide = Callable[[Observation], Any]


def policy_decider(policy: Policy) -> Decide:
    memory: AgentMemory = {}
    return lambda obs: policy.decide([obs], memory)[0].action


def service_decider(url: str, token: str | None = None) -> tuple[Decide, Callable[[], None]]:
    """Decisions from the service's ``/v1/act`` (the champion it serves); returns (decide, close)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    client = httpx.Client(base_url=url, headers=headers, timeout=60.0)

    def decide(obs: Observation) -> Any:
        body = obs.model_dump(mode="json", by_alias=True, exclude_none=True)
        r = client.post("/v1/act", json={"observations": [body]})
        r.raise_for_status()
        return r.json()["actions"][0]

    return decide, client.close


def chase_times(
    decide: Decide,
    kind: PlayerKind,
    *,
    player: str = "alice",
    episodes: int = 16,
    seed: int = 7,
    act_every: int = 2,
    max_steps: int = 300,
    watch_s: float = 1.5,
) -> list[float]:
    """Time to catch (s; uncaught: ``max_steps`` steps) in fixed-seed episodes, deciding every
    ``act_every`` steps like the mod. Ticks keep increasing across episodes (one agent's memory).

    For ``watch_s`` before the chase the agent sees the player (its decisions are not carried
    out), as an agent in the game sees a player coming before it engages; the chase is timed from
    its end. ``0``: the agent sees the player first when the chase starts (a spawned agent)."""
    times = []
    tick0 = 10_000
    for ep in range(episodes):
        sc = PursuitScenario(kind, seed * 100_003 + ep, max_steps=max_steps, player_name=player)
        for step in range(int(round(watch_s / DT))):
            if step % act_every == 0:
                obs = sc.observe()
                decide(obs.model_copy(update={"tick": tick0 + obs.tick}))
            sc.sim.step()
        done = False
        while not done:
            if sc.steps % act_every == 0:
                obs = sc.observe()
                sc.act(decide(obs.model_copy(update={"tick": tick0 + obs.tick})))
            _, done = sc.advance()
        times.append(sc.steps * DT if sc.caught else max_steps * DT)
        tick0 += sc.sim.tick + 50
    return times


# ----------------------------------------------------------------------------- patterns


class _Habit:
    """A movement habit: walk a heading that turns by ``turn`` every ``period`` s (a square walk,
    a patrol line when ``turn`` is pi), optionally juking back past a chaser closer than ``juke``."""

    def __init__(self, rng: np.random.Generator, p: dict[str, float]) -> None:
        self.p = p
        self.rng = rng
        self.heading = float(rng.uniform(-math.pi, math.pi))
        self.t = 0.0
        self.next_turn = p["period"]
        self.juke_left = 0.0
        self.juke_dir = np.zeros(2)

    def decide(
        self,
        pos: np.ndarray,
        dt: float,
        blocked: bool,
        threat: np.ndarray | None = None,
        bounds: tuple[float, float] | None = None,
    ) -> tuple[np.ndarray, bool, float | None, list[Intent]]:
        p = self.p
        self.t += dt
        if self.t >= self.next_turn:
            self.heading += p["turn"]
            self.next_turn = self.t + p["period"] * float(self.rng.uniform(1 - p["jitter"], 1 + p["jitter"]))
        if blocked:
            self.heading += math.pi / 2
        d = np.array([math.cos(self.heading), math.sin(self.heading)])
        if threat is not None and p["juke"] > 0:
            away = pos[[0, 2]] - threat[[0, 2]]
            dist = float(np.hypot(*away))
            if self.juke_left <= 0 and 1e-6 < dist < p["juke"]:
                a = math.atan2(away[1], away[0]) + p["juke_angle"]
                self.juke_dir = np.array([math.cos(a), math.sin(a)])
                self.juke_left = p["juke_s"]
            if self.juke_left > 0:
                self.juke_left -= dt
                d = self.juke_dir
        if bounds is not None:  # turn along walls rather than into them
            x, z, m = float(pos[0]), float(pos[2]), 5.0
            push = np.array(
                [max(0.0, m - x) - max(0.0, x - (bounds[0] - m)), max(0.0, m - z) - max(0.0, z - (bounds[1] - m))]
            )
            d = d + push / m * 1.5
        n = float(np.hypot(*d))
        move = d / n if n > 1e-9 else np.zeros(2)
        return move, False, math.atan2(-move[0], move[1]) if n > 1e-9 else None, []


@dataclass(frozen=True)
class HabitPattern:
    """A :class:`~luanti_tune.sim.styles.PlayerKind` of :class:`_Habit` with fixed parameters."""

    name: str
    params: tuple[tuple[str, float], ...]

    def controller(self, rng: np.random.Generator, anchor: np.ndarray) -> _Habit:
        return _Habit(rng, dict(self.params))


def habit_patterns(n: int, seed: int = 0) -> list[HabitPattern]:
    """``n`` seeded movement habits (turn angle and period, juke distance/angle/duration)."""
    rng = np.random.default_rng([seed, 8080])
    out = []
    for i in range(n):
        params = {
            "turn": float(rng.choice([1.0, -1.0]) * rng.uniform(1.2, math.pi)),
            "period": float(rng.uniform(1.2, 3.0)),
            "jitter": float(rng.uniform(0.0, 0.15)),
            "juke": float(rng.choice([0.0, rng.uniform(2.5, 4.5)])),
            "juke_angle": float(rng.choice([1.0, -1.0]) * rng.uniform(1.6, 2.6)),
            "juke_s": float(rng.uniform(0.5, 1.0)),
        }
        out.append(HabitPattern(f"habit-{seed}-{i}", tuple(sorted(params.items()))))
    return out


# ----------------------------------------------------------------------------- the benchmark


def wait_for_worker(url: str, data_dir: Path, training_interval: int, timeout_s: float = 600.0) -> bool:
    """Wait until the service's worker has trained on what was played: no cycle running and fewer
    than ``training_interval`` events stored after the last pursuit cycle's range (it would not
    start another one), after at least one cycle since this call."""
    state_path = data_dir / "worker" / "state.json"

    def state() -> dict[str, Any]:
        try:
            return dict(json.loads(state_path.read_text()))
        except (OSError, ValueError):
            return {}

    cycles0 = state().get("cycles", 0)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        st = state()
        last = st.get("last", {}).get("pursuit") or {}
        max_id = int(httpx.get(f"{url}/v1/events/stats", timeout=30).json().get("max_id") or 0)
        if st.get("cycles", 0) > cycles0 and not st.get("in_cycle"):
            if max_id - int(last.get("until_id") or 0) < training_interval:
                return True
        time.sleep(0.5)
    return False


def wait_until_served(url: str, player: str, family: str, timeout_s: float = 120.0) -> bool:
    """Wait until the service decides for an agent chasing ``player`` with ``family``'s champion
    (a promotion is served after the engine's next registry poll and export check)."""
    obs = {
        "agent": "probe-1",
        "kind": "pursuit",
        "tick": 0,
        "pos": {"x": 0.0, "y": 0.0, "z": 0.0},
        "entities": [{"kind": "player", "name": player, "rel": {"x": 3.0, "y": 0.0, "z": 0.0}}],
        "targets": [player],
    }
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        r = httpx.post(f"{url}/v1/act", json={"observations": [obs]}, timeout=30)
        if r.status_code == 200 and (r.json().get("model") or {}).get("name") == family:
            return True
        time.sleep(0.5)
    return False


def _scope_promotions(registry: Any, player: str) -> list[str]:
    from luanti_tune.trainers.pursuit import scope_name

    scope = scope_name((player,))
    return [h["version"] for h in registry.history(scope) if h.get("action") == "promote"]


@click.command("adapt")
@click.option("--patterns", "n_patterns", default=8, show_default=True, help="Seeded movement patterns.")
@click.option("--minutes", default=5.0, show_default=True, help="Game minutes of play per pattern.")
@click.option("--episodes", default=16, show_default=True, help="Fixed-seed evaluation episodes per policy.")
@click.option("--seed", default=0, show_default=True)
@click.option("--training-interval", default=400, show_default=True, help="Worker: train after this many events.")
@click.option("--keep", type=click.Path(path_type=Path), default=None, help="Keep the data dirs here.")
def adapt(n_patterns: int, minutes: float, episodes: int, seed: int, training_interval: int, keep: Path | None) -> None:
    """Adaptation to unscripted players through the real service and worker (one JSON line)."""
    import tempfile

    from luanti_tune.bench.common import emit, stop_process
    from luanti_tune.bench.ingest import start_server
    from luanti_tune.policies.families import ModelPolicy
    from luanti_tune.policies.scripted import PurePursuitPolicy
    from luanti_tune.registry import Registry
    from luanti_tune.trainers import pursuit as tp
    from luanti_tune.trainers.common import FitConfig

    root = Path(keep or tempfile.mkdtemp(prefix="bench-adapt-"))
    base_dir = root / "base-models"
    if not (base_dir / "pursuit").exists():
        click.echo("pre-training the base model on the simulator's styles ...", err=True)
        tp.bootstrap_base(Registry(base_dir), minutes=3.0, seed=seed, sessions=2, cfg=FitConfig(steps=1500, lr=3e-3))
    base = Registry(base_dir).load("pursuit", "champion")
    pure = PurePursuitPolicy()
    rows = []
    for pattern in habit_patterns(n_patterns, seed):
        data_dir = root / pattern.name
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.copytree(base_dir, data_dir / "models")
        env = {"LUANTI_TUNE_TRAINING_INTERVAL": str(training_interval), "LUANTI_TUNE_MIN_TRAINING_SECONDS": "0"}
        proc, port = start_server(f"sqlite:///{data_dir / 'events.db'}", data_dir, env, worker=True)
        url = f"http://127.0.0.1:{port}"
        row: dict[str, Any] = {"pattern": dict(pattern.params)}
        try:
            play = ServicePlay(url, pattern, PlayConfig(seed=seed))
            promoted_at = None
            t0 = time.perf_counter()
            for minute in range(int(math.ceil(minutes))):
                play.play(60.0 * min(1.0, minutes - minute))
                if not wait_for_worker(url, data_dir, training_interval):
                    log.warning("the worker did not finish within 10 minutes (%s)", pattern.name)
                if promoted_at is None and _scope_promotions(Registry(data_dir / "models"), "alice"):
                    promoted_at = round(play.game_s / 60.0, 2)
            play.close()
            row["play_wall_s"] = round(time.perf_counter() - t0, 1)
            row["game_minutes"] = round(play.game_s / 60.0, 2)
            row["minutes_to_promotion"] = promoted_at
            row["served"] = promoted_at is not None and wait_until_served(url, "alice", "pursuit@alice")
            decide, close = service_decider(url)
            try:
                served = chase_times(decide, pattern, episodes=episodes, seed=seed + 7)
            finally:
                close()
        finally:
            stop_process(proc)
        times = {
            "pure": chase_times(policy_decider(pure), pattern, episodes=episodes, seed=seed + 7),
            "base": chase_times(
                policy_decider(ModelPolicy(base.module, base.adapter)), pattern, episodes=episodes, seed=seed + 7
            ),
            "adapted": served,
        }
        row.update({f"{k}_mean_s": round(float(np.mean(v)), 3) for k, v in times.items()})
        row["adapted_vs_base"] = round(row["adapted_mean_s"] / row["base_mean_s"], 3)
        row["adapted_vs_pure"] = round(row["adapted_mean_s"] / row["pure_mean_s"], 3)
        click.echo(json.dumps({pattern.name: row}), err=True)
        rows.append(row)
    ratios_b = [r["adapted_vs_base"] for r in rows]
    ratios_p = [r["adapted_vs_pure"] for r in rows]
    promo = [r["minutes_to_promotion"] for r in rows]
    emit(
        "adapt",
        {
            "patterns": len(rows),
            "game_minutes": minutes,
            "median_adapted_vs_base": float(np.median(ratios_b)),
            "median_adapted_vs_pure": float(np.median(ratios_p)),
            "promoted": sum(p is not None for p in promo),
            "median_minutes_to_promotion": float(np.median([p for p in promo if p is not None]))
            if any(promo)
            else None,
            "targets": {"adapted_vs_base": 0.85, "adapted_vs_pure": 0.85, "minutes_to_promotion": 5.0},
            "per_pattern": rows,
        },
    )
