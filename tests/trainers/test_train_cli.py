"""``luanti-tune train pursuit``: a cycle by hand, and per-player adaptation in its own scope."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from luanti_tune.cli.main import cli
from luanti_tune.registry import Registry
from luanti_tune.sim.session import to_store
from luanti_tune.store import open_store
from luanti_tune.trainers import pursuit as tp


def test_train_cli_cycle_and_per_player_scope(registry: Registry, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'events.db'}"
    with open_store(db) as store:
        to_store(tp.simulated_events(("spiral",), minutes=1.0, seed=90, sessions=3), store)
    champion = registry.champion_version("pursuit")
    args = ["--db", db, "--model-path", str(registry.root), "--data-dir", str(tmp_path), "--no-sim", "--steps", "200"]
    player = "p00-spiral"
    r = CliRunner().invoke(cli, ["train", "pursuit", *args, "--player", player, "--per-player"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output.strip().splitlines()[-1])
    scope = f"pursuit@{player}"
    assert out["family"] == scope and out["status"] in ("promoted", "rejected"), out
    assert registry.versions(scope) == [out["version"]]
    manifest = registry.manifest(scope, out["version"])
    assert manifest["parent"] == f"pursuit:{champion}" and manifest["dataset"]["new"]["filters"]["players"] == [player]
    assert registry.champion_version("pursuit") == champion  # the global champion is untouched
    if out["status"] == "promoted":
        assert registry.load(scope).version == out["version"]
