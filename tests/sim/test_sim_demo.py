"""`make demo` stages against the real service subprocess: every simulated event ends up stored."""

from __future__ import annotations

from pathlib import Path

from luanti_tune.cli.demo import DemoContext, run_demo
from luanti_tune.store.base import open_store


def test_demo_streams_into_real_service_and_stops_it(tmp_path: Path) -> None:
    ctx = DemoContext(data_dir=tmp_path, players=3, minutes=0.1, seed=4)
    results = run_demo(ctx)
    assert ctx.proc is not None and ctx.proc.poll() is not None  # service stopped
    sent = results["stream"]
    assert sent["accepted"] == sent["events"] > 50 and sent["duplicates"] == 0
    assert results["stats"]["events"] == sent["events"]
    with open_store(ctx.db_url) as store:
        stats = store.stats()
    assert stats.events == sent["events"]
    assert stats.by_type == sent["by_type"]
    assert set(stats.sources) == {"demo-sim-4"}
