"""A service killed with SIGKILL (only the service process, not its group) leaves no validation
worker processes behind: they get SIGTERM when their parent dies."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any


def children(pid: int) -> list[int]:
    out: list[int] = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            out += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
        except OSError:
            continue
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_validation_workers_exit_with_a_killed_service(server_factory: Any) -> None:
    server = server_factory(workers=2)
    deadline = time.monotonic() + 20
    while len(children(server.proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = children(server.proc.pid)
    assert len(workers) >= 2, workers
    os.kill(server.proc.pid, signal.SIGKILL)  # the service only: its workers are not signalled
    server.proc.wait(timeout=10)
    deadline = time.monotonic() + 15
    while any(alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [w for w in workers if alive(w)], "validation workers outlived the killed service"
