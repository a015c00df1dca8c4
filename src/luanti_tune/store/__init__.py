"""Durable event storage: one interface, SQLite and PostgreSQL backends."""

from luanti_tune.store.base import AppendResult, EventQuery, Store, StoreStats, open_store

__all__ = ["AppendResult", "EventQuery", "Store", "StoreStats", "open_store"]
