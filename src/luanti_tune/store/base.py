"""Opening a store by URL; the interface itself is :mod:`luanti_tune.store.interface` (its names
are importable from here too).

Backends: :mod:`luanti_tune.store.sqlite` (embedded default) and :mod:`luanti_tune.store.postgres`;
they import the interface, not this module, so nothing imports back.
"""

from __future__ import annotations

from luanti_tune.store.interface import AppendResult, EventQuery, Store, StoreStats

__all__ = ["AppendResult", "EventQuery", "Store", "StoreStats", "open_store"]


def open_store(url: str) -> Store:
    """Open the backend named by ``url`` (``sqlite:///PATH`` or ``postgresql://...``)."""
    if url.startswith("sqlite:///"):
        from luanti_tune.store.sqlite import SQLiteStore

        return SQLiteStore(url)
    if url.startswith(("postgresql://", "postgres://")):
        from luanti_tune.store.postgres import PostgresStore

        return PostgresStore(url)
    from luanti_tune.errors import ConfigError

    raise ConfigError(f"unsupported store URL {url!r}: use sqlite:///PATH or postgresql://...")
