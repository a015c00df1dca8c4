"""Helpers of the real-Luanti integration tests: a scripted policy service (real HTTP server),
the service + server harness and a real headless client."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from luanti_tune.errors import ConfigError
from luanti_tune.luanti.server import LuantiServer, find_server_bin
from luanti_tune.luanti.service import ServiceProcess
from luanti_tune.serve.wire_columns import columns_to_rows
from luanti_tune.store import EventQuery, open_store


def invalid_actions(obs: dict[str, Any], protected: dict[str, float] | None) -> list[dict[str, Any]]:
    agent = obs["agent"]
    pos = obs["pos"]
    out: list[dict[str, Any]] = [
        {"agent": "ghost-404", "type": "move", "args": {"dir": {"x": 1, "y": 0, "z": 0}}},
        {"agent": agent, "type": "teleport", "args": {"pos": {"x": 0, "y": 100, "z": 0}}},
        {"agent": agent, "type": "move", "args": {"dir": {"x": 1, "y": 0, "z": 0}, "speed": 5}},
        {"agent": agent, "type": "move_to", "args": {"pos": {"x": pos["x"] + 5000, "y": pos["y"], "z": pos["z"]}}},
        {"agent": agent, "type": "turn", "args": {"yaw": "north"}},
        {"agent": agent, "type": "chat", "args": {"message": "x" * 5000}},
    ]
    if protected is not None:
        out.append({"agent": agent, "type": "dig", "args": {"pos": protected}})
    return out


def build_actions(obs: dict[str, Any]) -> list[dict[str, Any]]:
    """Valid one-shot actions: place a stone two nodes east and two up, dig it, chat, turn, jump.

    Two nodes up, not at foot height: where the ground east is a node higher (or the agent is
    landing from its jump) a foot-height place fails on the terrain and the dig then takes the
    terrain's node instead of the stone."""
    agent, pos = obs["agent"], obs["pos"]
    node = {"x": math.floor(pos["x"] + 0.5) + 2, "y": math.floor(pos["y"] + 0.5) + 2, "z": math.floor(pos["z"] + 0.5)}
    return [
        {"agent": agent, "type": "place", "args": {"pos": node, "item": "basenodes:stone"}},
        {"agent": agent, "type": "dig", "args": {"pos": node}},
        {"agent": agent, "type": "chat", "args": {"message": "hello from " + agent}},
        {"agent": agent, "type": "turn", "args": {"yaw": 1.0}},
        {"agent": agent, "type": "jump"},
    ]


def observations(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The observations of a ``/v1/act`` request as rows, whichever format the mod sent (columns
    by default, ``{"observations": [...]}`` with ``act_format = rows``)."""
    if "columns" in request:
        return columns_to_rows(request["columns"])
    return list(request.get("observations", []))


def actions(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """The action entries of a ``/v1/act`` answer, in row order, whichever format it came in (a
    columnar answer's move/wait columns spelled out as the rows format gives them)."""
    if "columns" not in answer:
        return list(answer.get("actions", []))
    cols, whole = answer["columns"], answer.get("rows") or {}
    out = []
    for i, agent in enumerate(cols["agent"]):
        entry = whole.get(str(i))
        if entry is None:
            if cols["type"][i] == "move":
                d = {a: cols["dir"][a][i] for a in "xyz"}
                entry = {"agent": agent, "type": "move", "args": {"dir": d, "speed": cols["speed"][i]}}
            else:
                entry = {"agent": agent, "type": cols["type"][i], "args": {"ticks": 1}}
        out.append(entry)
    return out


class PolicyServer:
    def __init__(self) -> None:
        self.mode = "none"
        self.proxy_to: str | None = None
        self.protected: dict[str, float] | None = None
        self.requests: list[dict[str, Any]] = []
        self.answers: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                data = json.loads(body)
                with outer.lock:
                    outer.requests.append(data)
                    mode = outer.mode
                if mode == "proxy" and outer.proxy_to:
                    headers = {"Content-Type": "application/json"}
                    req = urllib.request.Request(outer.proxy_to, data=body, headers=headers)
                    with urllib.request.urlopen(req, timeout=5) as resp:
                        answer = resp.read()
                    with outer.lock:
                        outer.answers.append(json.loads(answer))
                    self._answer(answer)
                    return
                actions: list[dict[str, Any]] = []
                for obs in observations(data):  # answered with rows: the mod reads them in both formats
                    if mode == "plus_x":
                        actions.append(
                            {"agent": obs["agent"], "type": "move", "args": {"dir": {"x": 1, "y": 0, "z": 0}}}
                        )
                    elif mode == "invalid":
                        actions += invalid_actions(obs, outer.protected)
                    elif mode == "build":
                        actions += build_actions(obs)
                model = {"name": "test-policy", "version": mode}
                self._answer(json.dumps({"actions": actions, "model": model}).encode())

            def _answer(self, out: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 128
            daemon_threads = True

            def server_bind(self) -> None:
                self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                super().server_bind()

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/act"

    def start(self) -> PolicyServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_bin() -> Path:
    try:
        return find_server_bin()
    except ConfigError as exc:
        pytest.skip(f"real Luanti server not installed: {exc}")
        raise


class Harness:
    """One service (real store) + one Luanti server + a policy service, with helpers."""

    def __init__(self, root: Path, settings: dict[str, Any]) -> None:
        self.root = root
        self.db_url = f"sqlite:///{root / 'events.db'}"
        self.models = root / "models"
        self.service = ServiceProcess(
            db_url=self.db_url,
            port=free_tcp_port(),
            log_path=root / "service.log",
            env={"LUANTI_TUNE_MODEL_PATH": str(self.models)},
        )
        self.trainer: subprocess.Popen[bytes] | None = None
        self.policy = PolicyServer().start()
        self.server = LuantiServer(
            world=root / "world",
            port=free_udp_port(),
            service_url=self.service.url,
            server_bin=_server_bin(),
            with_ctl=True,
            settings={
                # flat and the same every run: no caves or dungeons cut into the surface (an
                # agent walking into a random cave mouth got stuck in one CI run)
                "mg_name": "flat",
                "fixed_map_seed": "20261127",
                "mg_flags": "nocaves,nodungeons,light,nodecorations,biomes,ores",
                "mgflat_spflags": "nolakes,nohills,nocaverns",
                "luanti_tune.act_url": self.policy.url,
                "luanti_tune.stats_interval": 0.5,
                **settings,
            },
        )

    def start(self) -> None:
        self.service.start()
        self.server.start()

    def train_pursuit_base(self) -> None:
        """Pre-train and promote a real pursuit champion in the background (the service picks it up)."""
        cmd = [sys.executable, "-c", "from luanti_tune.cli.main import main; main()", "train", "pursuit", "--base"]
        cmd += ["--minutes", "0.3", "--model-path", str(self.models), "--data-dir", str(self.root / "train-data")]
        with open(self.root / "train.log", "wb") as out:
            self.trainer = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out)

    def stop(self) -> None:
        if self.trainer is not None and self.trainer.poll() is None:
            self.trainer.kill()
            self.trainer.wait(10)
        self.server.stop()
        self.service.stop()
        self.policy.stop()

    def events(self, *types: str, **kw: Any) -> list[dict[str, Any]]:
        store = open_store(self.db_url)
        try:
            return list(store.iter_events(EventQuery(types=tuple(types), **kw)))
        finally:
            store.close()

    def wait_events(
        self, pred: Callable[[list[dict[str, Any]]], bool], *types: str, timeout: float = 20.0
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        evs: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            evs = self.events(*types)
            if pred(evs):
                return evs
            time.sleep(0.3)
        raise AssertionError(f"condition on {types} events not met within {timeout} s; got {len(evs)} events")

    def status(self) -> dict[str, Any]:
        return dict(self.server.ctl_state().get("status", {}))


class HeadlessClient:
    """The real Luanti client under Xvfb: ``xvfb-run -a minetest --go ... [--random-input]``."""

    def __init__(self, home: Path, port: int, name: str, password: str, random_input: bool = True) -> None:
        binary = shutil.which("minetest") or "/usr/games/minetest"
        xvfb = shutil.which("xvfb-run")
        if not (xvfb and os.access(binary, os.X_OK)):
            pytest.skip("real client not installed (apt-get install minetest xvfb xauth)")
        home.mkdir(parents=True, exist_ok=True)
        cmd = [xvfb, "-a", binary, "--go", "--address", "127.0.0.1", "--port", str(port)]
        cmd += ["--name", name, "--password", password]
        if random_input:
            cmd.append("--random-input")
        self.log = home / "client.log"
        env = {**os.environ, "HOME": str(home)}
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, start_new_session=True
            )

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
