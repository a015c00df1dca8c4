"""Other components plug routers into create_app and share its state, metrics and auth."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.testclient import TestClient
from prometheus_client import Counter

from luanti_tune.config import load_settings
from luanti_tune.errors import StoreUnavailable
from luanti_tune.serve.app import create_app
from luanti_tune.serve.state import get_state


def test_a_router_added_later_shares_state_auth_and_errors(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, token="t0k")
    app = create_app(settings)
    state = get_state_from(app)
    hits = Counter("luanti_tune_test_hits", "test", registry=state.registry)
    router = APIRouter()

    @router.get("/v1/extra")
    async def extra(request: Request) -> dict[str, object]:
        s = get_state(request)
        hits.inc()
        return {"events": s.store.stats().events, "data_dir": str(s.settings.data_dir)}

    @router.get("/v1/broken")
    async def broken() -> None:
        raise StoreUnavailable("disk gone")

    app.include_router(router)
    auth = {"Authorization": "Bearer t0k"}
    with TestClient(app) as client:
        assert client.get("/v1/extra").status_code == 401  # new routes are protected too
        assert client.get("/v1/extra", headers=auth).json() == {"events": 0, "data_dir": str(tmp_path)}
        r = client.get("/v1/broken", headers=auth)
        assert r.status_code == 503 and "disk gone" in r.json()["detail"]
        state.public_paths.add("/v1/extra")
        assert client.get("/v1/extra").status_code == 200
        assert "luanti_tune_test_hits_total 2.0" in client.get("/metrics", headers=auth).text
        ev = {
            "schema": "luanti.event/1", "source": "s", "seq": 1, "type": "player.join",
            "time": {"wall_us": 1, "game_s": 0, "tick": 0}, "actor": {"kind": "player", "name": "alice"},
        }  # fmt: skip
        assert client.post("/v1/events", json={"events": [ev]}, headers=auth).json() == {"accepted": 1, "duplicates": 0}
        assert client.get("/v1/extra", headers=auth).json()["events"] == 1
    # shutdown closed the store the app opened itself
    try:
        state.store.stats()
        raise AssertionError("store still open after shutdown")
    except StoreUnavailable:
        pass


def get_state_from(app: object) -> object:
    return app.state.luanti  # type: ignore[attr-defined]
