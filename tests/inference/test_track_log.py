"""What agents saw when they decided is recorded as ``agent.track`` events, and the pursuit dataset
built from them gives exactly the feature windows the adapter served (train like you serve)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from luanti_tune.datasets.pursuit import PursuitSpec, build_from_events
from luanti_tune.inference.decision_log import DecisionLogger
from luanti_tune.inference.track_log import TrackRecorder
from luanti_tune.policies.pursuit import TICK_S, PursuitAdapter
from luanti_tune.schemas.agent import Observation
from luanti_tune.schemas.event import parse_event
from luanti_tune.store import open_store


def _player(name: str, t: float) -> tuple[float, float, float, float]:
    """A wiggly path (position, velocity) that no constant-velocity window explains."""
    phase = 0.7 if name == "bob" else 0.0
    x = 3.0 * t + 2.0 * math.sin(1.3 * t + phase)
    z = 1.5 * math.cos(0.9 * t + phase) * (1 + 0.2 * t)
    vx = 3.0 + 2.6 * math.cos(1.3 * t + phase)
    vz = -1.35 * math.sin(0.9 * t + phase) * (1 + 0.2 * t) + 0.3 * math.cos(0.9 * t + phase)
    return x, z, vx, vz


def _obs(agent: str, player: str, tick: int, agent_xz: tuple[float, float], with_velocity: bool) -> Observation:
    x, z, vx, vz = _player(player, tick * TICK_S)
    ent: dict[str, Any] = {
        "kind": "player",
        "name": player,
        "rel": {"x": x - agent_xz[0], "y": 0.0, "z": z - agent_xz[1]},
    }
    if with_velocity:
        ent["velocity"] = {"x": vx, "y": 0.0, "z": vz}
    return Observation.model_validate(
        {
            "agent": agent,
            "kind": "pursuit",
            "tick": tick,
            "pos": {"x": agent_xz[0], "y": 8.0, "z": agent_xz[1]},
            "entities": [ent],
            "targets": [player],
        }
    )


def _serve(with_velocity: bool) -> tuple[dict[tuple[str, int], dict[str, np.ndarray]], list[dict[str, Any]]]:
    """Two agents chase two players, deciding every 2 ticks (a retried tick in between); returns
    the served features by (player, tick) and the recorded events."""
    adapter = PursuitAdapter()
    memory: dict[str, dict[str, Any]] = {}
    rec = TrackRecorder(flush_s=1e-9)
    served: dict[tuple[str, int], dict[str, np.ndarray]] = {}
    events: list[dict[str, Any]] = []
    pairs = [("enemy-1", "alice"), ("enemy-2", "bob")]
    for step, tick in enumerate(list(range(100, 400, 2)) + [398]):
        if tick == 398 and step != 150:
            continue
        batch = []
        for k, (agent, player) in enumerate(pairs):
            t = tick * TICK_S
            ax, az = -6.0 + 2.9 * t + k, 4.0 * math.sin(0.2 * t) - 3 * k  # the agent moves too
            batch.append(_obs(agent, player, tick, (ax, az), with_velocity))
        feats = adapter.featurize(batch, memory)
        for k, (_agent, player) in enumerate(pairs):
            served[(player, tick)] = {name: arr[k].copy() for name, arr in feats.items()}
        seen = adapter.sightings()
        assert seen is not None and list(seen.targets) == ["alice", "bob"]
        rec.offer(seen)
        if step % 40 == 39:  # several flushes: tracks continue across events
            events += rec.events("act.test", len(events) + 1, 1_764_150_000_000_000 + tick * 90_000)
    events += rec.events("act.test", len(events) + 1, 1_764_150_000_000_000 + 400 * 90_000)
    return served, events


@pytest.mark.parametrize("with_velocity", [True, False], ids=["observed-velocity", "estimated-velocity"])
def test_dataset_windows_equal_the_served_features(with_velocity: bool) -> None:
    served, events = _serve(with_velocity)
    assert {e["type"] for e in events} == {"agent.track"}
    for e in events:
        parse_event(e)  # schema-valid as written
    ticks = [k for e in events if e["payload"]["target"] == "alice" for k in e["payload"]["tick"]]
    assert ticks == sorted(set(ticks)) and len(ticks) == 150  # the retried tick is recorded once

    data = build_from_events(events, PursuitSpec(val_fraction=0.0))
    assert data.manifest["track_sources"] == {"alice": "agent.track", "bob": "agent.track"}
    assert data.manifest["counts"]["decisions"] == 300
    names = data.manifest["players"]
    rows = data.arrays
    assert len(rows["hist"]) > 200
    compared = 0
    for i in range(len(rows["hist"])):
        tick = int(round(float(rows["t"][i]) / TICK_S))
        feats = served[(names[int(rows["player"][i])], tick)]
        if tick == 398:
            continue  # the retry decided again with the same knot: not a new window
        np.testing.assert_allclose(rows["hist"][i], feats["hist"], atol=2e-6)
        np.testing.assert_allclose(rows["vel"][i], feats["vel"], atol=2e-6)
        np.testing.assert_allclose(rows["threat"][i], feats["threat"], atol=2e-6)
        compared += 1
    assert compared > 200


def test_player_move_stays_the_source_for_unwatched_players() -> None:
    _served, events = _serve(True)
    move = {
        "schema": "luanti.event/1",
        "source": "srv1",
        "type": "player.move",
        "actor": {"kind": "player", "name": "carol"},
        "payload": {"velocity": {"x": 4.0, "y": 0.0, "z": 0.0}, "yaw": 0.0},
    }
    moves = [
        {
            **move,
            "seq": i,
            "time": {"wall_us": i * 500_000, "game_s": i * 0.5, "tick": i * 5},
            "pos": {"x": 2.0 * i, "y": 8.0, "z": 0.0},
        }
        for i in range(40)
    ]
    # alice's player.move samples are ignored: agents recorded her
    alice = [{**m, "seq": 100 + m["seq"], "actor": {"kind": "player", "name": "alice"}} for m in moves]
    data = build_from_events(events + moves + alice, PursuitSpec(val_fraction=0.0))
    assert data.manifest["track_sources"] == {"alice": "agent.track", "bob": "agent.track", "carol": "player.move"}
    carol = data.manifest["players"].index("carol")
    assert (data.arrays["player"] == carol).sum() > 50


def test_recorder_bounds_and_drops() -> None:
    rec = TrackRecorder(flush_s=1e-9, max_tracks=1, max_pending=3)
    adapter = PursuitAdapter()
    memory: dict[str, dict[str, Any]] = {}
    adapter.featurize([_obs("a1", "alice", 10, (0.0, 0.0), True), _obs("a2", "bob", 10, (1.0, 0.0), True)], memory)
    seen = adapter.sightings()
    assert seen is not None
    rec.offer(seen)
    rec.offer(seen)  # 4 > max_pending: dropped whole
    assert rec.dropped == 2
    out = rec.events("s", 1, 0)
    assert len(out) == 1  # one pair per flush
    assert rec.events("s", 2, 0) == []
    with pytest.raises(ValueError, match="flush_s"):
        TrackRecorder(flush_s=0)


def test_decision_logger_writes_tracks_into_the_store(tmp_path: Any) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'events.db'}")
    try:
        logger = DecisionLogger(store, 0.0, source="act.test")
        adapter = PursuitAdapter()
        memory: dict[str, dict[str, Any]] = {}
        for tick in range(0, 40, 2):
            adapter.featurize([_obs("a1", "alice", tick, (0.0, 0.0), True)], memory)
            seen = adapter.sightings()
            assert seen is not None
            logger.offer_sightings(seen)
        logger.close()
        assert (logger.written, logger.tracks_written) == (0, 1)  # agent.act and agent.track counted apart
        stored = list(store.iter_events())
        assert [e["type"] for e in stored] == ["agent.track"]
        assert stored[0]["payload"]["tick"] == list(range(0, 40, 2))
        assert stored[0]["actor"] == {"kind": "agent", "name": "a1"}
    finally:
        store.close()


def test_ticks_starting_over_make_a_new_track_not_a_mixed_one() -> None:
    """A restarted server (or a new episode with the same agent name) counts ticks from 0 again:
    its sightings become a separate run and a separate track, never interleaved with the old one."""
    adapter = PursuitAdapter()
    memory: dict[str, dict[str, Any]] = {}
    rec = TrackRecorder(flush_s=1e-9)
    events: list[dict[str, Any]] = []
    for ticks in (range(300, 420, 2), range(0, 120, 2)):
        for tick in ticks:
            adapter.featurize([_obs("enemy-1", "alice", tick, (0.0, 0.0), True)], memory)
            seen = adapter.sightings()
            assert seen is not None
            rec.offer(seen)
        events += rec.events("act.test", len(events) + 1, 1_764_150_000_000_000 + len(events))
    events += rec.events("act.test", len(events) + 1, 1)
    runs = [e["payload"]["tick"] for e in events]
    assert [r[0] for r in runs] == [300, 0] and all(r == sorted(r) for r in runs)
    data = build_from_events(events, PursuitSpec(val_fraction=0.0))
    assert data.manifest["counts"]["tracks"] == 0 and data.manifest["counts"]["segments"] == 2
    # every window lies inside one run: its history never reaches across the restart (27 s apart,
    # ~80 nodes; within a run the target moves at most ~15 nodes in the 1.4 s window)
    assert np.abs(data.arrays["hist"]).max() < 20.0


def test_bad_tracks_are_skipped_with_a_reason(caplog: pytest.LogCaptureFixture) -> None:
    """Teleports cut a track, a player standing still gives no windows, events without a velocity
    are counted, times out of order are sorted: a finite dataset and the reasons in the manifest."""
    base = {"schema": "luanti.event/1", "source": "srv1", "type": "player.move", "episode_id": "e1"}
    events = []
    for i in range(120):
        t = (i * 37 % 120) * 0.5  # out of order
        x = 2.0 * t + (500.0 if t >= 30 else 0.0)  # a teleport at 30 s
        for name, pos in (("runner", x), ("statue", 5.0)):
            ev = {
                **base,
                "seq": 2 * i + (name == "statue"),
                "time": {"wall_us": int(t * 1e6), "game_s": t, "tick": int(t / 0.09)},
                "actor": {"kind": "player", "name": name},
                "pos": {"x": pos, "y": 8.0, "z": 1.0},
                "payload": {"velocity": {"x": 2.0 if name == "runner" else 0.0, "y": 0.0, "z": 0.0}, "yaw": 0.0},
            }
            events.append(ev)
    events.append({**events[0], "seq": 999, "payload": {"yaw": 0.0}})  # no velocity
    with caplog.at_level("INFO", logger="luanti_tune.datasets.pursuit"):
        data = build_from_events(events, PursuitSpec(val_fraction=0.0))
    skipped = data.manifest["counts"]["skipped"]
    assert skipped["teleports"] == 1 and skipped["still_segments"] == 1 and skipped["no_position_or_velocity"] == 1
    assert data.manifest["counts"]["per_player"] == {"runner": len(data)} and len(data) > 100
    assert all(np.isfinite(v).all() for v in data.arrays.values() if v.dtype.kind == "f")
    assert np.abs(data.arrays["target"]).max() < 2.0 * 2.0 + 1e-3  # no window spans the teleport
    assert "teleports 1" in caplog.text and "still_segments 1" in caplog.text
