"""A real ``luanti-tune serve`` (uvicorn) subprocess on a real socket, and a tiny HTTP client for it."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from luanti_tune.bench.ingest import start_server


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        try:
            return resp.status, orjson.loads(data)
        except orjson.JSONDecodeError:
            return resp.status, data.decode(errors="replace")

    def post_events(self, events: list[dict[str, Any]], headers: dict[str, str] | None = None) -> tuple[int, Any]:
        return self.request("POST", "/v1/events", orjson.dumps({"events": events}), headers)

    def stats(self) -> dict[str, Any]:
        status, body = self.request("GET", "/v1/events/stats")
        assert status == 200, body
        result: dict[str, Any] = body
        return result

    def kill9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill9()


def launch(
    db_url: str, data_dir: Path, env: dict[str, str] | None = None, host: str = "127.0.0.1", workers: int = 0
) -> Server:
    proc, port = start_server(db_url, data_dir, env, host=host, validate_workers=workers)
    return Server(proc, port)
