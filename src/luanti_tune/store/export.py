"""Streaming export of stored events to JSONL and Parquet for outside tools.

JSONL: one event per line, exactly the stored wire JSON (re-validating a line gives back the
stored event). Parquet: flat columns for analysis plus ``body``, the same wire JSON, so nothing is
lost. Both stream in ``id`` order with bounded memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from luanti_tune.store.interface import EventQuery, Store

FORMATS = ("jsonl", "parquet")


def iter_bodies(store: Store, query: EventQuery | None = None, batch_size: int = 5000) -> Iterator[tuple[int, str]]:
    """``(id, wire JSON)`` of matching events in id order, for any :class:`Store`."""
    from luanti_tune.store.rows import RowStore

    if isinstance(store, RowStore):
        yield from store.iter_rows(query, batch_size)
        return
    for event in store.iter_events(query, batch_size):
        row_id = int(event.pop("_id"))
        yield row_id, orjson.dumps(event).decode()


def export_jsonl(store: Store, out: IO[str], query: EventQuery | None = None) -> int:
    """Write matching events to ``out`` (one JSON object per line); returns the count."""
    n = 0
    lines: list[str] = []
    for _, body in iter_bodies(store, query):
        lines.append(body)
        n += 1
        if len(lines) >= 5000:
            out.write("\n".join(lines) + "\n")
            lines.clear()
    if lines:
        out.write("\n".join(lines) + "\n")
    return n


def _parquet_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("id", pa.int64()),
            ("source", pa.string()),
            ("seq", pa.int64()),
            ("type", pa.string()),
            ("wall_us", pa.int64()),
            ("game_s", pa.float64()),
            ("tick", pa.int64()),
            ("actor_kind", pa.string()),
            ("actor_name", pa.string()),
            ("episode_id", pa.string()),
            ("corr_id", pa.string()),
            ("event_id", pa.string()),
            ("body", pa.string()),
        ]
    )


def export_parquet(
    store: Store, path: str | os.PathLike[str], query: EventQuery | None = None, row_group: int = 50_000
) -> int:
    """Write matching events to a Parquet file (written to a temp name, then renamed)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _parquet_schema()
    target = Path(path)
    tmp = target.with_name(target.name + ".part")
    cols: dict[str, list[Any]] = {name: [] for name in schema.names}
    n = 0

    def flush(writer: Any) -> None:
        writer.write_table(pa.table(cols, schema=schema))
        for v in cols.values():
            v.clear()

    with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        for row_id, body in iter_bodies(store, query):
            ev = orjson.loads(body)
            t = ev["time"]
            cols["id"].append(row_id)
            cols["source"].append(ev["source"])
            cols["seq"].append(ev["seq"])
            cols["type"].append(ev["type"])
            cols["wall_us"].append(t["wall_us"])
            cols["game_s"].append(t["game_s"])
            cols["tick"].append(t["tick"])
            cols["actor_kind"].append(ev["actor"]["kind"])
            cols["actor_name"].append(ev["actor"]["name"])
            cols["episode_id"].append(ev.get("episode_id"))
            cols["corr_id"].append(ev.get("corr_id"))
            cols["event_id"].append(ev.get("event_id"))
            cols["body"].append(body)
            n += 1
            if len(cols["id"]) >= row_group:
                flush(writer)
        if cols["id"] or n == 0:
            flush(writer)
    os.replace(tmp, target)
    return n
