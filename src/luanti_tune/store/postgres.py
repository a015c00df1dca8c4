"""PostgreSQL backend (psycopg 3): for several writers or big data.

A batch (or a group of batches) is one transaction. Each batch is one ``INSERT ... SELECT FROM
json_array_elements(rows) ON CONFLICT (source, seq) DO NOTHING RETURNING type`` statement, so the
server gets a handful of round trips per commit. Writers take a transaction-scoped advisory lock, so ids
become visible in increasing order and an ``id > cursor`` reader never skips a late commit.
A lost connection (server stopped or restarted) raises :class:`StoreUnavailable`; the next call
reconnects.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from luanti_tune.errors import StoreUnavailable
from luanti_tune.store.interface import EventQuery
from luanti_tune.store.rows import COLUMNS, CommitResult, EventRow, SQLRowStore, paged, where_clause

log = logging.getLogger(__name__)

#: Advisory lock key serialising writers (and schema creation) across processes.
LOCK_KEY = 0x4C54_0001

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source TEXT NOT NULL,
    seq BIGINT NOT NULL,
    type TEXT NOT NULL,
    wall_us BIGINT NOT NULL,
    actor_kind TEXT NOT NULL,
    actor_name TEXT NOT NULL,
    episode_id TEXT,
    body TEXT NOT NULL,
    UNIQUE (source, seq)
);
CREATE INDEX IF NOT EXISTS events_type ON events (type, id);
CREATE INDEX IF NOT EXISTS events_episode ON events (episode_id, id) WHERE episode_id IS NOT NULL;
"""

# A batch travels as ONE JSON text parameter (rows as arrays, encoded by orjson in C) and is
# unpacked server-side in order; binding per-row array parameters is ~10x slower in psycopg.
INSERT = (
    f"INSERT INTO events ({', '.join(COLUMNS)}) "
    "SELECT r->>0, (r->>1)::bigint, r->>2, (r->>3)::bigint, r->>4, r->>5, r->>6, r->>7 "
    "FROM json_array_elements(%s::json) WITH ORDINALITY AS t(r, ord) ORDER BY ord "
    "ON CONFLICT (source, seq) DO NOTHING RETURNING type"
)


class _StaleConnection(Exception):
    """The write connection broke (server stopped or restarted)."""


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}@{host}"


class PostgresStore(SQLRowStore):
    """Append-only events in a PostgreSQL table ``events``."""

    def __init__(self, url: str, *, connect_timeout: float = 5.0, require_connection: bool = True) -> None:
        """Connect and create the schema; with ``require_connection=False`` an unreachable server
        is only logged and every call raises :class:`StoreUnavailable` until it is back."""
        import psycopg  # lazy: only PostgreSQL users need it

        self._psycopg = psycopg
        self.url = url
        self._connect_timeout = connect_timeout
        self._wlock = threading.Lock()
        self._rlock = threading.Lock()
        self._w: Any = None
        self._r: Any = None
        self._closed = False
        self._schema_ready = False
        try:
            with self._wlock:
                self._writer()
        except StoreUnavailable as exc:
            if require_connection:
                raise
            log.warning("%s; will retry on each request", exc)

    # ------------------------------------------------------------------ connections

    def _connect(self, autocommit: bool) -> Any:
        if self._closed:
            raise StoreUnavailable(f"PostgreSQL store {_redact(self.url)} is closed")
        url = self.url.replace("postgres://", "postgresql://", 1)
        try:
            return self._psycopg.connect(url, autocommit=autocommit, connect_timeout=max(1, int(self._connect_timeout)))
        except self._psycopg.Error as exc:
            raise StoreUnavailable(f"PostgreSQL store {_redact(self.url)} is unreachable: {exc}") from exc

    def _writer(self) -> Any:
        """The write connection (caller holds ``_wlock``); (re)connects and ensures the schema."""
        if self._w is None or self._w.closed:
            conn = self._connect(autocommit=False)
            if not self._schema_ready:
                try:
                    with conn.transaction():
                        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
                        conn.execute(SCHEMA)
                except self._psycopg.Error as exc:
                    conn.close()
                    raise StoreUnavailable(
                        f"PostgreSQL store {_redact(self.url)}: cannot create schema: {exc}"
                    ) from exc
                self._schema_ready = True
            self._w = conn
        return self._w

    def _drop_writer(self) -> None:
        if self._w is not None:
            try:
                self._w.close()
            except self._psycopg.Error:
                pass
            self._w = None

    # ------------------------------------------------------------------ writes

    def append_batches(self, batches: Sequence[Sequence[EventRow]]) -> list[CommitResult]:
        with self._wlock:
            fresh = self._w is None or self._w.closed
            try:
                return self._append_locked(batches)
            except _StaleConnection as stale:
                if fresh:
                    raise StoreUnavailable(str(stale)) from stale.__cause__
                # the server restarted since our last use: the transaction never reached it or was
                # rolled back with the connection; retrying once is safe ((source, seq) is unique)
                log.info("PostgreSQL connection was stale; reconnecting once")
                try:
                    return self._append_locked(batches)
                except _StaleConnection as again:
                    raise StoreUnavailable(str(again)) from again.__cause__

    def _append_locked(self, batches: Sequence[Sequence[EventRow]]) -> list[CommitResult]:
        results: list[CommitResult] = []
        conn = self._writer()
        try:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
                for rows in batches:
                    if not rows:
                        results.append(CommitResult(0, 0, {}))
                        continue
                    cur.execute(INSERT, (orjson.dumps(rows, default=tuple).decode(),))
                    by_type: dict[str, int] = {}
                    for (t,) in cur.fetchall():
                        by_type[t] = by_type.get(t, 0) + 1
                    accepted = sum(by_type.values())
                    results.append(CommitResult(accepted, len(rows) - accepted, by_type))
        except self._psycopg.Error as exc:
            message = f"PostgreSQL store {_redact(self.url)} failed to commit: {exc}"
            if conn.closed or conn.broken:
                self._drop_writer()
                raise _StaleConnection(message) from exc
            raise StoreUnavailable(message) from exc
        return results

    # ------------------------------------------------------------------ reads

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        if not self._schema_ready:
            with self._wlock:
                self._writer()
        with self._rlock:
            for attempt in (1, 2):  # a stale connection (server restarted) gets one fresh retry
                reused = self._r is not None and not self._r.closed
                if not reused:
                    self._r = self._connect(autocommit=True)
                try:
                    rows: list[tuple[Any, ...]] = self._r.execute(sql, params).fetchall()
                    return rows
                except self._psycopg.Error as exc:
                    broken = self._r.closed or self._r.broken
                    try:
                        self._r.close()
                    except self._psycopg.Error:
                        pass
                    self._r = None
                    if not (reused and broken and attempt == 1):
                        raise StoreUnavailable(f"PostgreSQL store {_redact(self.url)} failed to read: {exc}") from exc
        raise AssertionError("unreachable")

    def iter_rows(self, query: EventQuery | None = None, batch_size: int = 5000) -> Iterator[tuple[int, str]]:
        query = query or EventQuery()
        where, params = where_clause(query, "%s")
        sql = "SELECT id, body FROM events WHERE id > %s" + (f" AND {where}" if where else "") + " ORDER BY id LIMIT %s"

        def fetch(after: int, n: int) -> list[tuple[int, str]]:
            return [(int(i), b) for i, b in self._read(sql, [after, *params, n])]

        return paged(fetch, query, batch_size)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._wlock, self._rlock:
            for conn in (self._w, self._r):
                if conn is not None:
                    try:
                        conn.close()
                    except self._psycopg.Error:
                        log.exception("closing PostgreSQL connection failed")
            self._w = self._r = None
