"""Pursuit dataset builder: exact windows/targets, episode+time split, manifest, reproducibility."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from luanti_tune.cli.main import cli
from luanti_tune.datasets.common import Dataset, DatasetError
from luanti_tune.datasets.pursuit import PursuitSpec, build_from_events, build_from_store
from luanti_tune.schemas.event import parse_event
from luanti_tune.store import open_store

DT = 0.09


def move_events(
    name: str,
    *,
    source: str = "srv",
    episode: str | None = "ep1",
    t0: float = 0.0,
    seconds: float = 10.0,
    vel: tuple[float, float] = (3.0, 0.0),
    start: tuple[float, float] = (0.0, 0.0),
    seq0: int = 0,
    circle: float | None = None,
) -> list[dict[str, Any]]:
    out = []
    for i in range(int(seconds / DT)):
        t = t0 + i * DT
        if circle:
            w = 3.0 / circle
            x, z = start[0] + circle * math.cos(w * t), start[1] + circle * math.sin(w * t)
            vx, vz = -circle * w * math.sin(w * t), circle * w * math.cos(w * t)
        else:
            x, z = start[0] + vel[0] * (t - t0), start[1] + vel[1] * (t - t0)
            vx, vz = vel
        ev: dict[str, Any] = {
            "schema": "luanti.event/1",
            "source": source,
            "seq": seq0 + i,
            "type": "player.move",
            "time": {"wall_us": int(1e15 + t * 1e6), "game_s": t, "tick": int(round(t / DT))},
            "actor": {"kind": "player", "name": name},
            "pos": {"x": x, "y": 8.0, "z": z},
            "payload": {"velocity": {"x": vx, "y": 0.0, "z": vz}, "yaw": 0.0},
        }
        if episode:
            ev["episode_id"] = episode
        out.append(ev)
    return out


def test_windows_and_targets_are_exact_for_straight_motion() -> None:
    spec = PursuitSpec(val_fraction=0.0)
    ds = build_from_events(move_events("alice", vel=(3.0, -1.0)), spec)
    a = ds.arrays
    assert len(ds) > 10 and ds.manifest["counts"]["windows"] == len(ds)
    np.testing.assert_allclose(
        a["target"],
        np.broadcast_to(np.array([[3.0, -1.0]]) * np.array(spec.horizons)[:, None], a["target"].shape),
        atol=1e-4,
    )
    expected_hist = -np.arange(spec.history)[:, None] * spec.hist_dt * np.array([3.0, -1.0])
    np.testing.assert_allclose(a["hist"], np.broadcast_to(expected_hist, a["hist"].shape), atol=1e-4)
    np.testing.assert_allclose(a["vel"], np.broadcast_to([3.0, -1.0], a["vel"].shape))
    assert not a["threat"][:, 2].any()  # no agent events -> no pursuer


def test_split_never_shares_an_episode_and_holds_out_the_latest() -> None:
    events = []
    for k in range(5):
        events += move_events("alice", episode=f"ep{k}", t0=100.0 * k, seq0=1000 * k)
    ds = build_from_events(events, PursuitSpec(val_fraction=0.4))
    a = ds.arrays
    train_units, val_units = set(a["unit"][~a["is_val"]]), set(a["unit"][a["is_val"]])
    assert train_units and val_units and not train_units & val_units
    assert a["t"][a["is_val"]].min() > a["t"][~a["is_val"]].max()  # validation is the most recent
    assert ds.manifest["split"]["val_units"] == 2 and ds.manifest["counts"]["val"] == int(a["is_val"].sum())


def test_without_episode_ids_time_chunks_are_the_split_units() -> None:
    ds = build_from_events(move_events("bob", episode=None, seconds=50.0), PursuitSpec(unit_s=10.0, val_fraction=0.3))
    a = ds.arrays
    assert not set(a["unit"][~a["is_val"]]) & set(a["unit"][a["is_val"]])
    assert a["is_val"].any() and (~a["is_val"]).any()


def test_gaps_cut_segments_and_filters_apply() -> None:
    events = move_events("alice", seconds=6.0) + move_events("alice", t0=20.0, seconds=6.0, seq0=500)
    events += move_events("carol", source="srv2", seconds=6.0)
    ds = build_from_events(events, PursuitSpec(val_fraction=0.0))
    assert ds.manifest["counts"]["segments"] == 3
    only = build_from_events(events, PursuitSpec(players=("carol",), val_fraction=0.0))
    assert only.manifest["players"] == ["carol"] and only.manifest["counts"]["per_player"] == {"carol": len(only)}
    excl = build_from_events(events, PursuitSpec(exclude_players=("carol",), val_fraction=0.0))
    assert excl.manifest["players"] == ["alice"]
    # a 6 s segment needs history 1.4 s + horizon 2 s: the first windows end before the gap
    assert np.all(np.isfinite(ds.arrays["target"]))


def test_pursuer_position_comes_from_agent_events() -> None:
    events = move_events("alice", vel=(2.0, 0.0))
    for i in range(0, 100, 2):
        t = i * DT
        events.append(
            {
                "source": "srv",
                "type": "agent.act",
                "time": {"wall_us": 0, "game_s": t, "tick": i},
                "actor": {"kind": "agent", "name": "enemy-1"},
                "pos": {"x": 2.0 * t - 5.0, "y": 8.0, "z": 3.0},
            }
        )
    ds = build_from_events(events, PursuitSpec(val_fraction=0.0))
    th = ds.arrays["threat"]
    present = th[:, 2] == 1
    assert present.sum() > 0.5 * len(th)
    np.testing.assert_allclose(th[present, :2], np.broadcast_to([-5.0, 3.0], th[present, :2].shape), atol=1e-3)


def test_empty_input_gives_an_empty_dataset() -> None:
    ds = build_from_events([], PursuitSpec())
    assert len(ds) == 0 and ds.manifest["counts"]["windows"] == 0 and ds.arrays["hist"].shape[1:] == (8, 2)


def test_store_build_is_reproducible_and_records_its_range(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'e.db'}")
    try:
        store.append(
            [parse_event(e) for e in move_events("alice", circle=5.0) + move_events("bob", seq0=9000, episode="ep2")]
        )
        top = store.max_id()
        a = build_from_store(store, PursuitSpec(), after_id=0, until_id=top)
        b = build_from_store(store, PursuitSpec(), after_id=0, until_id=top)
        part = build_from_store(store, PursuitSpec(), after_id=0, until_id=top // 2)
    finally:
        store.close()
    assert a.manifest["hash"] == b.manifest["hash"] and len(a) > 0
    assert a.manifest["event_range"]["until_id"] == top and a.manifest["event_range"]["last_id"] == top
    assert part.manifest["hash"] != a.manifest["hash"] and part.manifest["event_range"]["last_id"] <= top // 2
    assert a.manifest["schema"] == "luanti.dataset/1" and "feature_spec" in a.manifest and "filters" in a.manifest


def test_save_load_round_trip_and_corruption(tmp_path: Path) -> None:
    ds = build_from_events(move_events("alice"), PursuitSpec())
    ds.save(tmp_path / "d")
    back = Dataset.load(tmp_path / "d")
    assert back.manifest["hash"] == ds.manifest["hash"]
    for k in ds.arrays:
        np.testing.assert_array_equal(back.arrays[k], ds.arrays[k])
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    manifest["hash"] = "0" * 64
    (tmp_path / "d" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match="does not match its manifest hash"):
        Dataset.load(tmp_path / "d")


def test_datasets_cli_builds_and_saves(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'e.db'}"
    with open_store(db) as store:
        store.append([parse_event(e) for e in move_events("alice", seconds=20.0)])
    out = tmp_path / "out"
    r = CliRunner().invoke(
        cli, ["datasets", "build", "pursuit", "--db", db, "--out", str(out), "--data-dir", str(tmp_path)]
    )
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["counts"]["windows"] > 0 and Dataset.load(out).manifest["hash"] == info["hash"]
    r = CliRunner().invoke(cli, ["datasets", "build", "pursuit", "--db", db, "--val-fraction", "1.5"])
    assert r.exit_code != 0 and "--val-fraction" in r.output
