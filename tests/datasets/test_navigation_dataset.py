"""Traversal experience dataset: labels from real schema events, episode/time split, store view."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from luanti_tune.datasets.common import Dataset
from luanti_tune.datasets.navigation import NavigationSpec, build_from_events, build_from_store
from luanti_tune.errors import TrainingSkipped
from luanti_tune.policies import navigation as nav
from luanti_tune.schemas.event import parse_event
from luanti_tune.store import open_store
from luanti_tune.trainers import navigation as tn

R = 3
SIDE = 2 * R + 1


def flat_codes(center: tuple[int, int, int], lava: set[tuple[int, int, int]] = frozenset()) -> list[int]:  # type: ignore[assignment]
    """A flat world: solid at y <= 0, air above, lava at the given world cells."""
    cx, cy, cz = center
    codes = np.zeros((SIDE, SIDE, SIDE), dtype=int)
    for iy in range(SIDE):
        for iz in range(SIDE):
            for ix in range(SIDE):
                x, y, z = cx + ix - R, cy + iy - R, cz + iz - R
                codes[iy, iz, ix] = nav.LAVA if (x, y, z) in lava else (nav.SOLID if y <= 0 else nav.AIR)
    return [int(v) for v in codes.ravel()]


class Stream:
    """Builds a valid luanti.event/1 stream of one navigating agent."""

    def __init__(self, source: str = "t", episode: str = "ep-1", agent: str = "nav-1") -> None:
        self.source, self.episode, self.agent = source, episode, agent
        self.seq = 0
        self.tick = 0
        self.events: list[dict[str, Any]] = []

    def _ev(self, type_: str, payload: dict[str, Any]) -> None:
        self.seq += 1
        ev = {
            "schema": "luanti.event/1",
            "source": self.source,
            "seq": self.seq,
            "type": type_,
            "time": {
                "wall_us": 1_764_150_000_000_000 + self.tick * 90_000,
                "game_s": round(self.tick * 0.09, 3),
                "tick": self.tick,
            },
            "actor": {"kind": "agent", "name": self.agent},
            "payload": payload,
            "episode_id": self.episode,
        }
        parse_event(ev)  # the real contract: every event here would be accepted by ingest
        self.events.append(ev)

    def step(
        self,
        pos: tuple[float, float, float],
        hp: float,
        move: tuple[float, float] | None,
        *,
        ok: bool = True,
        lava: set[tuple[int, int, int]] = frozenset(),  # type: ignore[assignment]
        last: dict[str, Any] | None = None,
    ) -> None:
        obs: dict[str, Any] = {
            "agent": self.agent,
            "kind": "navigation",
            "tick": self.tick,
            "pos": {"x": pos[0], "y": pos[1], "z": pos[2]},
            "hp": hp,
            "goal": {"x": 20.0, "y": 1.0, "z": 0.0},
            "nearby": {"radius": R, "codes": flat_codes(nav.cell_of(pos), lava)},
        }
        if last is not None:
            obs["last_result"] = last
        self._ev("agent.obs", obs)
        if move is not None:
            action = {"agent": self.agent, "type": "move", "args": {"dir": {"x": move[0], "y": 0.0, "z": move[1]}}}
            self._ev("agent.act", {"action": action})
            self._ev("agent.result", {"action": "move", "ok": ok} | ({} if ok else {"reason": "blocked by a wall"}))
        self.tick += 1


def with_ids(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**ev, "_id": i + 1} for i, ev in enumerate(events)]


def test_labels_speed_blocked_damage_and_experience_map() -> None:
    s = Stream()
    lava = {(2, 1, 0)}
    x = 0.0
    for _ in range(4):  # walking +x at full speed on flat ground
        s.step((x, 0.5, 0.0), 20.0, (1.0, 0.0))
        x += 0.36
    s.step((x, 0.5, 0.0), 20.0, (1.0, 0.0), ok=False)  # the move fails: no progress
    s.step((x, 0.5, 0.0), 20.0, (1.0, 0.0), last={"action": "move", "ok": False, "reason": "blocked by a wall"})
    s.step((x + 0.36, 0.5, 0.0), 20.0, (1.0, 0.0), lava=lava)  # walks in the lava cell x=2
    s.step((x + 0.5, 0.5, 0.0), 19.28, None, lava=lava)  # burnt 0.72 hp, then no move (wait)
    ds = build_from_events(with_ids(s.events), NavigationSpec(radius=R, val_fraction=0.0))
    a = ds.arrays
    assert len(ds) == 7  # every decision that asked to move and has a next observation
    np.testing.assert_allclose(a["speed"][:3], 1.0, atol=1e-3)
    assert a["blocked"][:4].tolist() == [0, 0, 0, 0] and a["blocked"][4] == 1 and a["speed_mask"][4] == 0
    assert a["ahead_off"][4].tolist() == [0, 0, 1]  # (dy, dz, dx): the cell in +x
    assert a["damage"][6] == pytest.approx(0.72) and a["damage"][:6].max() == 0
    assert a["hit_off"][6].tolist() == [0, 0, 0]
    # the window around the damaging cell shows lava at its centre
    assert a["win_codes"][6, 1, 2, 2, 2] == nav.LAVA
    # experience map: after the failed move, the blocked cell (+x of the agent) is marked in the next
    # sample's input; once the agent does get through, the mark is taken back
    assert a["win_exp"][5, 0, 0, 2, 2, 3] > 0
    assert a["win_exp"][6, 0, 0].max() == 0
    assert a["win_exp"][:5, :, 0].max() == 0  # nothing known before it happened
    m = ds.manifest
    assert m["schema"] == "luanti.dataset/1" and m["kind"] == "navigation"
    assert m["counts"]["samples"] == 7 and m["counts"]["blocked"] == 1 and m["counts"]["damaged"] == 1
    assert m["feature_spec"]["radius"] == R and m["event_range"]["first_id"] == 1


def test_other_kinds_respawns_and_non_moves_are_not_samples() -> None:
    s = Stream()
    s.step((0.0, 0.5, 0.0), 20.0, (1.0, 0.0))
    s.step((0.36, 0.5, 0.0), 1.0, (1.0, 0.0))
    s.step((9.0, 0.5, 9.0), 20.0, (1.0, 0.0))  # respawned: teleport + full hp, not a traversal outcome
    s.step((9.36, 0.5, 9.0), 20.0, None)
    other = Stream(agent="enemy-1")
    other.step((0.0, 0.5, 0.0), 20.0, (1.0, 0.0))
    for ev in other.events:
        if ev["type"] == "agent.obs":
            ev["payload"]["kind"] = "pursuit"
    events = s.events + [{**ev, "seq": ev["seq"] + 1000} for ev in other.events]
    ds = build_from_events(with_ids(events), NavigationSpec(radius=R, val_fraction=0.0))
    assert len(ds) == 2  # step 0 -> 1, and 2 -> 3; the respawn transition is skipped
    assert ds.manifest["counts"]["skipped"] == {"respawn": 1}


@pytest.fixture(scope="module")
def sim_events() -> list[dict[str, Any]]:
    cfg = tn.ExperienceConfig(world="live", episodes=3, agents=2, steps=60, seed=3)
    return tn.simulated_events(cfg)


def test_split_by_episode_and_time_and_store_view(sim_events: list[dict[str, Any]], tmp_path: Path) -> None:
    from luanti_tune.sim.session import to_store

    store = open_store(f"sqlite:///{tmp_path / 'events.db'}")
    try:
        to_store(sim_events, store)
        spec = NavigationSpec(radius=R, val_fraction=0.34)
        ds = build_from_store(store, spec)
        a = ds.arrays
        assert len(ds) > 200
        train_units, val_units = set(a["unit"][~a["is_val"]]), set(a["unit"][a["is_val"]])
        assert train_units and val_units and not train_units & val_units  # no episode on both sides
        # validation is the most recent episode(s)
        assert a["event_id"][a["is_val"]].max() == a["event_id"].max()
        assert a["event_id"][a["is_val"]].min() > a["event_id"][~a["is_val"]].min()
        assert len(ds.manifest["split"]["val_units"]) == len(val_units)
        # the same view built from the in-memory stream is identical (reproducible)
        again = build_from_store(store, spec, after_id=0, until_id=store.max_id())
        assert again.manifest["hash"] == ds.manifest["hash"]
        # a later range holds only the later events
        half = store.max_id() // 2
        later = build_from_store(store, spec, after_id=half)
        assert 0 < len(later) < len(ds) and later.arrays["event_id"].min() > half
        # too small -> a skip with the reason, not a crash
        with pytest.raises(TrainingSkipped, match="too small"):
            build_from_store(store, spec, after_id=store.max_id() - 5, min_samples=50)
        # save -> load round trip verifies the hash; a corrupted file is refused
        path = ds.save(tmp_path / "ds")
        loaded = Dataset.load(path)
        assert loaded.manifest["hash"] == ds.manifest["hash"]
        np.testing.assert_array_equal(loaded.arrays["win_codes"], a["win_codes"])
    finally:
        store.close()
