"""``luanti-tune luanti serve`` for real: world + mod + config, minetestserver and the service,
events in the store, and a clean stop of both on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from luanti_harness import free_tcp_port, free_udp_port

from luanti_tune.errors import ConfigError
from luanti_tune.luanti.server import find_server_bin
from luanti_tune.luanti.service import service_healthy
from luanti_tune.store import EventQuery, open_store

pytestmark = pytest.mark.luanti


def test_luanti_serve_starts_server_and_service_and_stops_both(tmp_path: Path) -> None:
    try:
        find_server_bin()
    except ConfigError as exc:
        pytest.skip(str(exc))
    world = tmp_path / "myworld"
    db = f"sqlite:///{tmp_path / 'events.db'}"
    port, sport = free_udp_port(), free_tcp_port()
    cmd = [sys.executable, "-c", "from luanti_tune.cli.main import main; main()", "luanti", "serve"]
    cmd += ["--world", str(world), "--port", str(port), "--db", db, "--service-port", str(sport)]
    out = tmp_path / "cli.out"
    with open(out, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ})
    try:
        deadline = time.monotonic() + 60
        while "listening on" not in out.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, out.read_text()
            time.sleep(0.2)
        text = out.read_text()
        assert f"listening on 127.0.0.1:{port}" in text and "server log:" in text
        assert (world / "worldmods" / "luanti_tune" / "init.lua").is_file()
        conf = (world / "luanti_tune_server.conf").read_text()
        assert "secure.http_mods = luanti_tune" in conf
        assert f"luanti_tune.service_url = http://127.0.0.1:{sport}" in conf
        # the mod reached the service it started: its system.start event is stored
        events: list[dict[str, object]] = []
        while not events and time.monotonic() < deadline:
            time.sleep(0.3)
            store = open_store(db)
            try:
                events = list(store.iter_events(EventQuery(types=("system.start",))))
            finally:
                store.close()
        assert events and events[0]["payload"] == {"version": "0.1.0", "world": "myworld"}
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
    assert code == 0, out.read_text()[-2000:]
    assert not service_healthy(f"http://127.0.0.1:{sport}")
    log = (world / "luanti_tune_server.log").read_text()
    assert "Server: Shutting down" in log or "shutting down" in log.lower()


def test_bad_cli_input_is_refused_naming_the_option(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from luanti_tune.luanti.cli import luanti

    runner = CliRunner()
    result = runner.invoke(luanti, ["serve", "--world", str(tmp_path / "w"), "--set", "novalue"])
    assert result.exit_code == 2 and "--set" in result.output and "KEY=VALUE" in result.output
    result = runner.invoke(luanti, ["serve", "--world", str(tmp_path / "w"), "--game", "minecraft"])
    assert result.exit_code == 2 and "--game" in result.output
    result = runner.invoke(luanti, ["serve", "--world", str(tmp_path / "w"), "--server-bin", str(tmp_path / "nope")])
    assert isinstance(result.exception, ConfigError) and "--server-bin" in str(result.exception)
    assert not (tmp_path / "w").exists()  # nothing was created for a refused command
