"""A throwaway PostgreSQL cluster (``initdb`` + ``pg_ctl`` in a temp dir) for tests and benchmarks.

PostgreSQL refuses to run as root, so when we are root the cluster directory belongs to an
unprivileged user (``postgres`` if it exists, else ``nobody``) and the binaries run as that user.
The cluster listens on 127.0.0.1 only, trusts local connections and is deleted by :meth:`destroy`.
"""

from __future__ import annotations

import glob
import logging
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def find_pg_bin(name: str) -> str | None:
    """Path of a PostgreSQL server binary (``initdb``, ``pg_ctl``): PATH, then Debian's layout."""
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and no unprivileged user (postgres/nobody) to run PostgreSQL")


@dataclass
class PgCluster:
    """One throwaway cluster; use :func:`start_cluster` to create it."""

    root: Path
    port: int
    initdb: str
    pg_ctl: str
    user: pwd.struct_passwd | None = None
    running: bool = field(default=False)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, args: list[str], timeout: float = 60.0) -> None:
        kwargs: dict[str, Any] = {}
        if self.user is not None:
            kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        env = dict(os.environ, LC_ALL="C", LANG="C")
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, cwd=self.root, **kwargs)
        if proc.returncode != 0:
            logfile = self.root / "postgres.log"
            tail = logfile.read_text(errors="replace")[-2000:] if logfile.exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}\n{tail}")

    def init(self) -> None:
        self._run([self.initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])

    def start(self) -> None:
        opts = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=on "
            "-c max_connections=40 -c shared_buffers=128MB -c wal_buffers=16MB -c max_wal_size=2GB"
        )
        self._run([self.pg_ctl, "-D", str(self.data), "-o", opts, "-l", str(self.root / "postgres.log"), "-w", "start"])
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast`` rolls back open transactions, ``immediate`` is a crash)."""
        if self.running:
            self._run([self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop"])
            self.running = False

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except (RuntimeError, subprocess.TimeoutExpired):
            log.exception("stopping the throwaway PostgreSQL cluster failed")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PgCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()


def start_cluster(port: int | None = None) -> PgCluster:
    """initdb + start a new cluster in a fresh temp dir; raises ``RuntimeError`` if impossible."""
    initdb, pg_ctl = find_pg_bin("initdb"), find_pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found")
    user = _run_as()
    root = Path(tempfile.mkdtemp(prefix="luanti-tune-pg-"))
    if user is not None:
        os.chown(root, user.pw_uid, user.pw_gid)
    cluster = PgCluster(root=root, port=port or _free_port(), initdb=initdb, pg_ctl=pg_ctl, user=user)
    try:
        cluster.init()
        cluster.start()
    except BaseException:
        cluster.destroy()
        raise
    return cluster
