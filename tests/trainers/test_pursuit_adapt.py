"""Enemies learn players nobody scripted: movement patterns written here (none of the simulator's
styles), played through the real service at the mod's default rates, adapted to by the service's
own worker; and the gate that decides it reads no name and rejects what did not learn."""

from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from luanti_tune.bench.adapt import (
    PlayConfig,
    ServicePlay,
    chase_times,
    policy_decider,
    service_decider,
    wait_for_worker,
    wait_until_served,
)
from luanti_tune.bench.common import stop_process
from luanti_tune.bench.ingest import start_server
from luanti_tune.datasets import pursuit as pursuit_data
from luanti_tune.datasets.pursuit import PursuitSpec, build_from_events
from luanti_tune.policies.families import ModelPolicy
from luanti_tune.policies.scripted import PurePursuitPolicy
from luanti_tune.registry import Registry
from luanti_tune.sim.scenarios import PURSUIT_WORLD
from luanti_tune.sim.session import SessionConfig, generate_events, to_store
from luanti_tune.sim.styles import Intent
from luanti_tune.store import open_store
from luanti_tune.trainers import pursuit as tp
from luanti_tune.trainers.common import CycleContext, FitConfig, guarded_cycle


class _Walk:
    """Walks straight and turns by ``turn`` every ``period`` seconds, whatever chases it; with
    ``juke`` > 0 it cuts back past a chaser that comes closer than ``juke`` nodes (reactive)."""

    def __init__(self, rng: np.random.Generator, turn: float, period: float, juke: float) -> None:
        self.turn, self.period, self.juke = turn, period, juke
        self.heading = float(rng.uniform(-math.pi, math.pi))
        self.t, self.next, self.juke_left, self.juke_dir = 0.0, period, 0.0, np.zeros(2)

    def decide(
        self, pos: np.ndarray, dt: float, blocked: bool, threat: Any = None, bounds: Any = None
    ) -> tuple[np.ndarray, bool, float | None, list[Intent]]:
        self.t += dt
        if self.t >= self.next:
            self.heading += self.turn
            self.next = self.t + self.period
        d = np.array([math.cos(self.heading), math.sin(self.heading)])
        if threat is not None and self.juke > 0:
            away = pos[[0, 2]] - threat[[0, 2]]
            dist = float(np.hypot(*away))
            if self.juke_left <= 0 and 1e-6 < dist < self.juke:
                a = math.atan2(away[1], away[0]) + 2.2  # always to its left, past the chaser
                self.juke_dir, self.juke_left = np.array([math.cos(a), math.sin(a)]), 0.8
            if self.juke_left > 0:
                self.juke_left -= dt
                d = self.juke_dir
        if bounds is not None:  # stays off the walls
            x, z = float(pos[0]), float(pos[2])
            d = d + np.array(
                [max(0.0, 5 - x) - max(0.0, x - bounds[0] + 5), max(0.0, 5 - z) - max(0.0, z - bounds[1] + 5)]
            )
        move = d / max(float(np.hypot(*d)), 1e-9)
        return move, False, math.atan2(-move[0], move[1]), []


class Patroller:
    name = "patroller"

    def controller(self, rng: np.random.Generator, anchor: np.ndarray) -> _Walk:
        return _Walk(rng, turn=math.pi / 2, period=2.0, juke=0.0)


class Juker:
    name = "juker"

    def controller(self, rng: np.random.Generator, anchor: np.ndarray) -> _Walk:
        return _Walk(rng, turn=-2.0, period=2.5, juke=3.5)


def _service(base_registry_dir: Path, tmp_path: Path, interval: int) -> tuple[Any, str]:
    shutil.copytree(base_registry_dir, tmp_path / "models")
    env = {"LUANTI_TUNE_TRAINING_INTERVAL": str(interval), "LUANTI_TUNE_MIN_TRAINING_SECONDS": "0"}
    proc, port = start_server(f"sqlite:///{tmp_path / 'events.db'}", tmp_path, env, worker=True)
    return proc, f"http://127.0.0.1:{port}"


def _adapt_through_service(base_registry_dir: Path, tmp_path: Path, kind: Any) -> dict[str, Any]:
    """Play up to 5 game-minutes through the service (its worker trains between minutes), stop
    at the first promotion of alice's champion; then chase times of what is served to alice, the
    base champion and pure pursuit on fixed-seed episodes (not the ones played)."""
    interval = 400
    proc, url = _service(base_registry_dir, tmp_path, interval)
    reg = Registry(tmp_path / "models")
    out: dict[str, Any] = {"pattern": kind.name, "promoted_after_min": None}
    try:
        play = ServicePlay(url, kind, PlayConfig(player="alice", seed=3))
        for minute in range(1, 6):
            play.play(60.0)
            assert wait_for_worker(url, tmp_path, interval, timeout_s=300), "the worker did not train on the play"
            if any(h["action"] == "promote" for h in reg.history("pursuit@alice")):
                out["promoted_after_min"] = minute
                break
        play.close()
        out["verdicts"] = [
            h.get("reason") for h in reg.history("pursuit@alice") if h["action"] in ("promote", "reject")
        ]
        if out["promoted_after_min"] is not None:
            out["gate"] = reg.manifest("pursuit@alice")["gate"]
            out["track_sources"] = reg.manifest("pursuit@alice")["dataset"]["new"]["track_sources"]
            assert wait_until_served(url, "alice", "pursuit@alice")  # agents chasing alice get her champion
        decide, close = service_decider(url)
        try:
            out["served"] = float(np.mean(chase_times(decide, kind, player="alice", episodes=16, seed=7)))
        finally:
            close()
    finally:
        stop_process(proc)
    base = Registry(base_registry_dir).load("pursuit", "champion")
    base_policy = policy_decider(ModelPolicy(base.module, base.adapter))
    out["base"] = float(np.mean(chase_times(base_policy, kind, episodes=16, seed=7)))
    out["pure"] = float(np.mean(chase_times(policy_decider(PurePursuitPolicy()), kind, episodes=16, seed=7)))
    print(json.dumps({k: v for k, v in out.items() if k != "gate"}))
    return out


@pytest.mark.slow
def test_the_service_adapts_to_a_player_nobody_scripted(base_registry_dir: Path, tmp_path: Path) -> None:
    out = _adapt_through_service(base_registry_dir, tmp_path, Patroller())
    assert out["promoted_after_min"] is not None, out["verdicts"]
    names = {c["name"] for c in out["gate"]["checks"]}
    assert {"heldout_error", "replay_time"} <= names and "sim_time" not in names  # alice's play only
    assert out["track_sources"] == {"alice": "agent.track"}  # what the agent saw when it decided
    assert out["served"] < out["pure"], out
    assert out["served"] < 0.95 * out["base"], out  # measured 0.90 (target 0.9); margin for the worker's timing


@pytest.mark.slow
def test_a_reactive_player_never_gets_a_worse_agent(base_registry_dir: Path, tmp_path: Path) -> None:
    """A player who cuts back past a chaser that comes close: a candidate is served only when it
    catches them faster in closed loop against the model fitted on their play; else alice keeps
    the champion she had."""
    out = _adapt_through_service(base_registry_dir, tmp_path, Juker())
    assert out["verdicts"], "no candidate was trained for alice"
    assert out["served"] < out["pure"], out
    if out["promoted_after_min"] is None:
        assert all("model_time" in r or "replay_time" in r for r in out["verdicts"]), out["verdicts"]
        assert out["served"] <= 1.02 * out["base"], out  # the population champion (its own gate) or the base
    else:
        assert out["served"] < out["base"], out


# ----------------------------------------------------------------------------- the gate


def _events(names: tuple[str, ...], seed: int) -> list[dict[str, Any]]:
    cfg = SessionConfig(
        players=len(names),
        styles=(Patroller(), Juker()),
        names=names,
        minutes=3.0,
        seed=seed,
        enemy=True,
        agent_every=2,
        world=PURSUIT_WORLD,
        bridge_collapse_s=None,
        items=0,
    )
    events = list(generate_events(cfg))
    for ev in events:
        ev.pop("episode_id", None)  # one long session, as on a live server
    return events


def _rename(events: list[dict[str, Any]], mapping: dict[str, str]) -> list[dict[str, Any]]:
    out = json.loads(json.dumps(events))
    for ev in out:
        for holder in (ev.get("actor"), ev.get("target"), ev.get("payload")):
            if isinstance(holder, dict):
                for key in ("name", "target", "to"):
                    if isinstance(holder.get(key), str) and holder[key] in mapping:
                        holder[key] = mapping[holder[key]]
    return out


def _cycle(registry: Registry, events: list[dict[str, Any]], tmp: Path) -> Any:
    store = open_store(f"sqlite:///{tmp / 'events.db'}")
    try:
        to_store(events, store)
        opts = tp.CycleOptions(
            fit=FitConfig(steps=200, lr=2e-3, replay_fraction=0.0),
            sim=tp.SimEvalConfig(episodes=4, max_steps=150, seed=5),
            adapt_players=1,
        )
        ctx = CycleContext(store, registry, 0, store.max_id(), seed=0, options={"pursuit": opts})
        return guarded_cycle("pursuit", ctx, tp.run_cycle)
    finally:
        store.close()


def _verdict(registry: Registry, family: str, version: str | None) -> Any:
    if version is None:
        return None
    gate = registry.manifest(family, version)["gate"]
    return gate["passed"], [(c["name"], c["passed"], c["detail"]) for c in gate["checks"]]


def test_renaming_every_player_changes_no_verdict(registry: Registry, tmp_path: Path) -> None:
    events = _events(("alice", "bob"), seed=21)
    rnd = random.Random(5)
    mapping = {n: "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(7)) for n in ("alice", "bob")}
    second = Registry(tmp_path / "models2")
    shutil.copytree(registry.root, second.root)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _cycle(registry, events, tmp_path / "a")
    other = _cycle(second, _rename(events, mapping), tmp_path / "b")
    assert first.status == other.status and first.reason == other.reason
    assert _verdict(registry, "pursuit", first.version) == _verdict(second, "pursuit", other.version)
    scopes_a, scopes_b = first.figures["scopes"], other.figures["scopes"]
    assert len(scopes_a) == len(scopes_b) == 1
    (sa, ra), (sb, rb) = next(iter(scopes_a.items())), next(iter(scopes_b.items()))
    assert sb == "pursuit@" + mapping[sa.split("@")[1]]
    assert (ra["status"], ra["reason"]) == (rb["status"], rb["reason"])


def test_a_candidate_trained_on_time_shuffled_play_is_rejected(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    champ = registry.load("pursuit", "champion")
    arch = champ.manifest["architecture"]
    events = _events(("alice", "bob"), seed=22)
    data = build_from_events(events, PursuitSpec.from_arch(arch))
    # the same samples, their order in time shuffled within each player
    shuffled = json.loads(json.dumps(events))
    rng = np.random.default_rng(0)
    for name in ("alice", "bob"):
        moves = [e for e in shuffled if e["type"] == "player.move" and e["actor"]["name"] == name]
        states = [(moves[i]["pos"], moves[i]["payload"]) for i in rng.permutation(len(moves))]
        for ev, (pos, payload) in zip(moves, states, strict=True):
            ev["pos"], ev["payload"] = pos, payload
    # the builder cuts such tracks at every jump (a cycle on them skips: nothing to learn) ...
    assert len(build_from_events(shuffled, PursuitSpec.from_arch(arch))) == 0
    # ... so the control trains on them with the teleport cut switched off
    monkeypatch.setattr(pursuit_data, "MAX_SPEED", 1e9)
    noise = build_from_events(shuffled, PursuitSpec.from_arch(arch))
    assert len(noise.train()["hist"]) > 500
    cand, _ = tp.finetune(champ.module, noise.train(), FitConfig(steps=200, lr=2e-3, replay_fraction=0.0))
    verdict = tp.gate(cand, champ.module, data.val(), arch, tp.GateConfig(sim=False), tracks=tp.replay_tracks(data))
    assert not verdict.passed
    assert not next(c for c in verdict.checks if c.name == "heldout_error").passed


def test_adapting_one_player_keeps_the_population_champion(registry: Registry, tmp_path: Path) -> None:
    """A player's scope is judged on that player; the population champion only changes through the
    scripted-population guard, so everyone else keeps what they had within its tolerance."""
    base_version = registry.champion_version("pursuit")
    result = _cycle(registry, _events(("alice", "bob"), seed=23), tmp_path)
    pop = registry.load("pursuit", "champion")
    if pop.version != base_version:  # promoted: the guard held
        sim = pop.manifest["gate"]["figures"]["sim"]
        assert sim["candidate"]["mean_time"] <= sim["champion"]["mean_time"] * 1.05
    scope = next(iter(result.figures["scopes"]))
    if registry.champion_version(scope):
        assert registry.manifest(scope)["parent"].startswith("pursuit:")
        assert "sim_time" not in {c["name"] for c in registry.manifest(scope)["gate"]["checks"]}
