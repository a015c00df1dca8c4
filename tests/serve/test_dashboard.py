"""The dashboard, rendered for real in headless Chromium against a live service."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from luanti_tune.registry import Registry

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _event(seq: int, etype: str = "player.move") -> dict[str, Any]:
    ev: dict[str, Any] = {
        "schema": "luanti.event/1",
        "source": "dash",
        "seq": seq,
        "type": etype,
        "time": {"wall_us": 1_764_150_000_000_000 + seq, "game_s": seq * 0.09, "tick": seq},
        "actor": {"kind": "player", "name": "alice"},
        "pos": {"x": 1.5, "y": 8, "z": -3.25},
    }
    if etype == "player.move":
        ev["payload"] = {"velocity": {"x": 4, "y": 0, "z": 0}, "yaw": 1.57}
    return ev


def _populate_registry(root: Path) -> None:
    torch = pytest.importorskip("torch")
    reg = Registry(root)
    for i, err in enumerate([0.91, 0.42], start=1):
        net = torch.nn.Linear(3, 2)
        v = reg.save(
            "pursuit",
            module=net,
            architecture={"kind": "test-linear", "in": 3, "out": 2},
            metrics={"val_error": err},
            gate={"passed": True, "reason": f"gate run {i}"},
        )
        reg.promote("pursuit", v, reason=f"promotion {i}")


def _dump_dom(url: str, tmp_path: Path) -> str:
    assert CHROMIUM is not None
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chrome'}",
        "--virtual-time-budget=4000",
        "--dump-dom",
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=True)
    return out.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make test installs it)")
def test_dashboard_shows_events_and_champion(server_factory: Any, tmp_path: Path) -> None:
    _populate_registry(tmp_path / "models")
    server = server_factory()
    status, body = server.post_events([_event(i) for i in range(5)] + [_event(5, "player.join")])
    assert status == 200 and body["accepted"] == 6

    status, data = server.request("GET", "/v1/dashboard")
    assert status == 200
    assert data["events"]["total"] == 6 and data["events"]["by_type"]["player.move"] == 5
    fam = data["models"]["pursuit"]
    assert fam["champion"] == "v0002"
    assert [r["action"] for r in fam["history"]].count("promote") == 2

    dom = _dump_dom(f"http://127.0.0.1:{server.port}/", tmp_path)
    assert 'data-loaded="1"' in dom, dom[:2000]
    assert 'id="card-events">6<' in dom
    assert 'data-family="pursuit"' in dom
    assert 'data-key="champion">v0002<' in dom
    assert "promotion 2" in dom
    # the chart of the selected figure carries both versions' values
    assert ">0.4200<" in dom and ">0.9100<" in dom


def test_dashboard_feed_needs_the_token_off_loopback(server_factory: Any) -> None:
    server = server_factory(env={"LUANTI_TUNE_TOKEN": "s3cret"})
    status, _ = server.request("GET", "/")
    assert status == 200  # the page holds no data
    status, _ = server.request("GET", "/v1/dashboard")
    assert status == 401
    status, data = server.request("GET", "/v1/dashboard", headers={"Authorization": "Bearer s3cret"})
    assert status == 200 and data["events"]["total"] == 0 and data["models"] == {}
