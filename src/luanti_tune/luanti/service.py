"""Run the luanti-tune HTTP service (``luanti-tune serve``) as a child process."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from luanti_tune.luanti.server import LuantiError

log = logging.getLogger(__name__)

_MAIN = "from luanti_tune.cli.main import main; main()"


def service_healthy(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/healthz", timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class ServiceProcess:
    """``luanti-tune serve --db DB --host HOST --port PORT`` in a child process."""

    db_url: str
    port: int
    host: str = "127.0.0.1"
    log_path: Path | None = None
    extra_args: tuple[str, ...] = ()
    env: dict[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        cmd = [sys.executable, "-c", _MAIN, "serve", "--db", self.db_url, "--host", self.host, "--port", str(self.port)]
        cmd += list(self.extra_args)
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            env = {**os.environ, **self.env} if self.env else None
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, start_new_session=True
            )
        finally:
            if self.log_path:
                out.close()  # type: ignore[union-attr]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if service_healthy(self.url):
                return
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-3000:] if self.log_path else ""
                raise LuantiError(f"luanti-tune serve exited with code {self.proc.returncode}\n{tail}")
            time.sleep(0.1)
        self.stop()
        raise LuantiError(f"luanti-tune serve did not become healthy within {timeout:.0f} s")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("service did not stop within %.0f s; killing it", timeout)
            self.proc.kill()
            self.proc.wait(10)
