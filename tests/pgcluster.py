"""Throwaway PostgreSQL clusters for tests (``initdb``/``pg_ctl`` in a temp dir, real server).

``pg_url`` (session scope, exposed by ``tests/conftest.py``) is one cluster shared by the whole
run; each test that uses it should work on its own database (:func:`fresh_database`) or table
contents it owns. :func:`own_cluster` starts a private cluster for tests that stop the server.
Tests skip (with the reason) only when the PostgreSQL server binaries are absent.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from luanti_tune.store.pgcluster import PgCluster, find_pg_bin, start_cluster

_counter = itertools.count()


def require_pg_binaries() -> None:
    if find_pg_bin("initdb") is None or find_pg_bin("pg_ctl") is None:
        pytest.skip("PostgreSQL server binaries (initdb/pg_ctl) not installed; .ci/run installs them")


def own_cluster() -> PgCluster:
    """A private running cluster; the caller must ``destroy()`` it (or use it as a context manager)."""
    require_pg_binaries()
    return start_cluster()


def fresh_database(url: str) -> str:
    """Create a new empty database on the cluster of ``url`` and return its URL."""
    import psycopg

    name = f"t{next(_counter)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of a throwaway PostgreSQL cluster shared by the test session."""
    cluster = own_cluster()
    try:
        yield cluster.url
    finally:
        cluster.destroy()
