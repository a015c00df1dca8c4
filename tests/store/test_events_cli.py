"""``luanti-tune events stats|query|export`` on a real SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from click.testing import CliRunner

from luanti_tune.bench.ingest import make_events
from luanti_tune.cli.main import cli
from luanti_tune.schemas.event import EventBatch, parse_event
from luanti_tune.store import open_store


def test_events_cli_stats_query_export(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ev.db'}"
    events = EventBatch.model_validate({"events": make_events("srv", 0, 120)}).events
    with open_store(url) as store:
        store.append(events)
    runner = CliRunner()

    res = runner.invoke(cli, ["events", "stats", "--db", url])
    assert res.exit_code == 0, res.output
    stats = json.loads(res.output)
    assert stats["events"] == 120 and stats["sources"] == {"srv": 120}

    res = runner.invoke(
        cli, ["events", "query", "--db", url, "--type", "player.move", "--actor", "bob", "--limit", "5"]
    )
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.output.splitlines()]
    assert 0 < len(rows) <= 5 and all(r["type"] == "player.move" and r["actor"]["name"] == "bob" for r in rows)
    assert [r["_id"] for r in rows] == sorted(r["_id"] for r in rows)

    out = tmp_path / "all.jsonl"
    res = runner.invoke(cli, ["events", "export", "--db", url, "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert [parse_event(json.loads(line)) for line in out.read_text().splitlines()] == events

    pq_out = tmp_path / "late.parquet"
    res = runner.invoke(cli, ["events", "export", "--db", url, "--after-id", "100", "-o", str(pq_out)])
    assert res.exit_code == 0, res.output
    table = pq.read_table(pq_out)
    assert table.column("id").to_pylist() == list(range(101, 121))

    res = runner.invoke(cli, ["events", "stats", "--db", "mysql://nope"])
    assert res.exit_code != 0
