"""Both real store backends (SQLite file, throwaway PostgreSQL cluster) behave the same."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from luanti_tune.bench.ingest import make_events
from luanti_tune.errors import StoreUnavailable
from luanti_tune.schemas.event import EventBatch, parse_event
from luanti_tune.store import EventQuery, open_store
from luanti_tune.store.export import export_jsonl, export_parquet
from luanti_tune.store.rows import EventRow, RowStore, event_row
from pgcluster import fresh_database


def _events(source: str, start: int, n: int) -> list[Any]:
    return list(EventBatch.model_validate({"events": make_events(source, start, n)}).events)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    pg_url: str = request.getfixturevalue("pg_url")
    return fresh_database(pg_url)


@pytest.fixture
def store(store_url: str) -> Iterator[RowStore]:
    s = open_store(store_url)
    assert isinstance(s, RowStore)
    yield s
    s.close()


def test_append_counts_new_and_duplicates(store: RowStore) -> None:
    evs = _events("srv1", 0, 300)
    first = store.append(evs)
    assert (first.accepted, first.duplicates) == (300, 0)
    # a client retry stores nothing new
    again = store.append(evs)
    assert (again.accepted, again.duplicates) == (0, 300)
    # overlapping batch: 100 old + 50 new, plus a duplicate inside the batch itself
    mixed = evs[200:] + _events("srv1", 300, 50)
    mixed.append(mixed[-1])
    r = store.append_rows([event_row(e) for e in mixed])
    assert (r.accepted, r.duplicates) == (50, 101)
    new_types: dict[str, int] = {}
    for e in _events("srv1", 300, 50):
        new_types[e.type] = new_types.get(e.type, 0) + 1
    assert r.accepted_by_type == new_types
    # the same seq from another source is a different event
    assert store.append(_events("srv2", 0, 10)).accepted == 10
    stats = store.stats()
    assert stats.events == 360 and stats.sources == {"srv1": 350, "srv2": 10}
    assert sum(stats.by_type.values()) == 360 and stats.max_id >= 360


def test_failed_batch_stores_nothing(store: RowStore) -> None:
    good = [event_row(e) for e in _events("srv1", 0, 20)]
    bad = list(good)
    bad[10] = EventRow(*bad[10][:-1], None)  # type: ignore[arg-type]  # NOT NULL body: fails mid-batch
    with pytest.raises(StoreUnavailable):
        store.append_rows(bad)
    assert store.stats().events == 0
    # a group commit is one transaction too: a failing batch takes the whole group with it
    with pytest.raises(StoreUnavailable):
        store.append_batches([good[:5], bad])
    assert store.stats().events == 0
    # and the store still works afterwards
    assert store.append_rows(good).accepted == 20


def test_group_commit_reports_each_batch(store: RowStore) -> None:
    a = [event_row(e) for e in _events("a", 0, 10)]
    b = [event_row(e) for e in _events("b", 0, 7)]
    results = store.append_batches([a, b, a[:3] + b[:1], []])
    assert [(r.accepted, r.duplicates) for r in results] == [(10, 0), (7, 0), (0, 4), (0, 0)]
    assert store.stats().events == 17


def test_queries_stream_in_id_order(store: RowStore) -> None:
    evs = _events("srv1", 0, 2500)
    store.append(evs[:1200])
    store.append(_events("srv2", 0, 100))
    store.append(evs[1200:])
    everything = list(store.iter_events(batch_size=333))
    ids = [e["_id"] for e in everything]
    assert ids == sorted(ids) and len(set(ids)) == len(ids) == 2600

    def q(**kw: Any) -> list[dict[str, Any]]:
        return list(store.iter_events(EventQuery(**kw), batch_size=97))

    def wire(e: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in e.items() if k != "_id"}

    digs = q(types=("node.dig",))
    assert digs and all(e["type"] == "node.dig" for e in digs)
    assert len(digs) == sum(1 for e in everything if e["type"] == "node.dig")
    alice = q(actor_name="alice", sources=("srv1",))
    assert len(alice) == sum(1 for e in evs if e.actor.name == "alice")
    ep = q(episode_id="ep-1")
    assert {e["seq"] for e in ep if e["source"] == "srv1"} == set(range(1000, 2000))
    t0 = evs[100].time.wall_us
    t1 = evs[200].time.wall_us
    window = q(since_us=t0, until_us=t1, sources=("srv1",))
    assert [e["seq"] for e in window] == list(range(100, 200))
    # cursor: after_id + limit pages through everything exactly once
    seen: list[int] = []
    cursor = 0
    while True:
        page = q(after_id=cursor, limit=450)
        if not page:
            break
        seen += [e["_id"] for e in page]
        cursor = page[-1]["_id"]
    assert seen == ids
    assert q(until_id=ids[9]) == everything[:10]
    assert store.max_id() == ids[-1]
    # rows keep the full wire event: each re-validates to exactly what was stored
    by_key = {(e.source, e.seq): e for e in evs}
    for e in everything[:50]:
        assert parse_event(wire(e)) == by_key[(e["source"], e["seq"])]


def test_export_round_trips(store: RowStore, tmp_path: Path) -> None:
    evs = _events("srv1", 0, 700)
    store.append(evs)
    buf = io.StringIO()
    assert export_jsonl(store, buf, EventQuery(types=("player.move",))) == sum(e.type == "player.move" for e in evs)
    buf = io.StringIO()
    assert export_jsonl(store, buf) == 700
    lines = buf.getvalue().splitlines()
    assert [parse_event(orjson.loads(line)) for line in lines] == evs
    # re-importing the export into a fresh store reproduces it byte for byte
    other = open_store(f"sqlite:///{tmp_path / 'copy.db'}")
    assert isinstance(other, RowStore)
    other.append([parse_event(orjson.loads(line)) for line in lines])
    buf2 = io.StringIO()
    export_jsonl(other, buf2)
    other.close()
    assert buf2.getvalue() == buf.getvalue()

    import pyarrow.parquet as pq

    path = tmp_path / "events.parquet"
    assert export_parquet(store, path, row_group=256) == 700
    table = pq.read_table(path)
    assert table.num_rows == 700
    assert table.column("seq").to_pylist() == list(range(700))
    assert [parse_event(orjson.loads(b)) for b in table.column("body").to_pylist()] == evs
    assert table.column("type").to_pylist() == [e.type for e in evs]


def test_data_survives_reopen(store_url: str) -> None:
    s = open_store(store_url)
    s.append(_events("srv1", 0, 50))
    s.close()
    with pytest.raises(StoreUnavailable):
        s.stats()
    s = open_store(store_url)
    assert s.stats().events == 50
    assert s.append(_events("srv1", 0, 60)).accepted == 10
    s.close()
