"""`make demo` end to end against the real service subprocess: every simulated event is stored,
the worker fine-tunes on new players (alice, bob) who play styles the base never saw, the gate
promotes, and the fine-tuned model predicts them better than the base model it started from."""

from __future__ import annotations

from pathlib import Path

from luanti_tune.cli.demo import DemoContext, run_demo
from luanti_tune.registry import Registry
from luanti_tune.store.base import EventQuery, open_store


def test_demo_runs_the_loop_end_to_end(tmp_path: Path) -> None:
    ctx = DemoContext(data_dir=tmp_path, players=3, minutes=0.1, seed=4)
    results = run_demo(ctx)
    assert ctx.proc is not None and ctx.proc.poll() is not None  # service stopped

    # stage "where the events went": the service stored exactly what the players sent
    sent = results["stream"]
    assert sent["accepted"] == sent["events"] > 50 and sent["duplicates"] == 0
    assert results["stats"]["events"] == sent["events"]
    assert results["stats"]["by_type"] == sent["by_type"]
    with open_store(ctx.db_url) as store:
        demo_events = sum(1 for _ in store.iter_events(EventQuery(sources=(sent["source"],))))
        assert demo_events == sent["events"]
        assert "demo-sim-4" in store.stats().sources

    # stages of the fine-tuning loop: the new players (named like people, each with a cycle of
    # their own) get champions that catch them faster than the base model did
    cycle = results["cycle"]
    assert cycle["status"] in ("promoted", "rejected"), cycle
    scopes = cycle["figures"]["scopes"]
    assert set(scopes) == {"pursuit@alice", "pursuit@bob"}
    reg = Registry(tmp_path / "models")
    adapted = [s for s in ("pursuit", *scopes) if reg.champion_version(s) and reg.manifest(s)["parent"]]
    assert adapted, (cycle["reason"], scopes)
    for family in adapted:
        parent = reg.manifest(family)["parent"]
        assert parent in (results["base"]["version"], f"pursuit:{results['base']['version']}")
        assert reg.manifest(family)["gate"]["passed"]
    rows = {r["policy"].split(" ")[0]: r for r in results["before_after"]}
    assert rows["served"]["mean_time"] < rows["base"]["mean_time"], rows
    assert Path(results["plot"]).stat().st_size > 10_000
