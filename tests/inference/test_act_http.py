"""POST /v1/act over a real uvicorn socket: contract, field-naming 4xx, size limits, formats."""

from __future__ import annotations

import json
from typing import Any

import httpx
import msgpack
import numpy as np
import pytest
import torch
from fastapi import FastAPI
from toyfamily import ToyAdapter, make_candidate, make_module, obs_dict

from luanti_tune.config.settings import Settings
from luanti_tune.inference.engine import EngineConfig, InferenceEngine
from luanti_tune.inference.source import StaticModelSource
from luanti_tune.schemas.agent import Observation
from luanti_tune.serve.act import ActService, attach_service
from luanti_tune.serve.app import create_app

DESIGN_OBS = {
    "agent": "enemy-1",
    "kind": "pursuit",
    "tick": 42,
    "pos": {"x": 0, "y": 8, "z": 0},
    "yaw": 0,
    "pitch": 0,
    "hp": 20,
    "velocity": {"x": 0, "y": 0, "z": 0},
    "entities": [
        {"kind": "player", "name": "alice", "rel": {"x": 3, "y": 0, "z": -2}, "velocity": {"x": 4, "y": 0, "z": 0}}
    ],
    "targets": ["alice"],
}


@pytest.fixture(scope="module")
def engine() -> InferenceEngine:
    return InferenceEngine(StaticModelSource([make_candidate(1)]), config=EngineConfig(), fallbacks={})


def make_app(engine: InferenceEngine, **settings: Any) -> FastAPI:
    app = create_app(Settings(**settings))
    attach_service(app, ActService(app.state.luanti.settings, app.state.luanti.store, engine=engine))
    return app


def batch(n: int, seed: int = 0, prefix: str = "enemy") -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return [{**obs_dict(i, rng), "agent": f"{prefix}-{i}"} for i in range(n)]


def test_design_example_is_accepted_and_answered_by_the_model(serve: Any, engine: InferenceEngine) -> None:
    srv = serve(make_app(engine))
    r = httpx.post(f"{srv.url}/v1/act", json={"observations": [DESIGN_OBS]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == {"name": "toy-pursuit", "version": "v1"}
    (action,) = body["actions"]
    assert action["agent"] == "enemy-1" and action["type"] in ("move", "wait")
    # same answer as the model offline
    obs = Observation.model_validate(DESIGN_OBS)
    feats = ToyAdapter().featurize([obs], {})
    with torch.no_grad():
        logits = make_module(1)(torch.from_numpy(feats["x"])).numpy()
    want = ToyAdapter().decode([obs], {"logits": logits})[0].action.model_dump(mode="json")
    assert {k: action[k] for k in ("agent", "type", "args")} == want


def test_batch_answers_in_order_and_mixed_kinds_carry_their_model(serve: Any, engine: InferenceEngine) -> None:
    srv = serve(make_app(engine))
    obs = batch(400, seed=3)  # > INLINE_PARSE_BYTES: validated off the event loop
    obs[10] = {**obs[10], "kind": "team", "agent": "worker-10"}
    bad = [dict(o) for o in obs]
    bad[399] = {**bad[399], "hp": "full"}
    r = httpx.post(f"{srv.url}/v1/act", json={"observations": bad})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == "observations[399].hp"
    r = httpx.post(f"{srv.url}/v1/act", json={"observations": obs})
    assert r.status_code == 200, r.text
    acts = r.json()["actions"]
    assert [a["agent"] for a in acts] == [o["agent"] for o in obs]
    assert acts[10]["fallback"] == "no_model" and acts[10]["model"].startswith("scripted:")
    assert all("fallback" not in a and "model" not in a for i, a in enumerate(acts) if i != 10)


@pytest.mark.parametrize(
    ("mutate", "loc"),
    [
        (lambda o: o[3]["pos"].__setitem__("x", "12"), "observations[3].pos.x"),
        (lambda o: o[5].pop("pos"), "observations[5].pos"),
        (lambda o: o[0].__setitem__("kind", "dragon"), "observations[0].kind"),
        (lambda o: o[2]["entities"][0]["rel"].__setitem__("z", 1e9), "observations[2].entities[0].rel.z"),
        (lambda o: o[1].__setitem__("surprise", 1), "observations[1].surprise"),
    ],
)
def test_malformed_observation_is_refused_naming_the_field(serve: Any, engine: InferenceEngine, mutate, loc) -> None:  # type: ignore[no-untyped-def]
    srv = serve(make_app(engine))
    obs = batch(8)
    mutate(obs)
    before = engine.stats["agents"]
    r = httpx.post(f"{srv.url}/v1/act", json={"observations": obs})
    assert r.status_code == 422, r.text
    assert loc in [e["loc"] for e in r.json()["errors"]]
    assert engine.stats["agents"] == before  # nothing was decided


def test_request_level_errors(serve: Any, engine: InferenceEngine) -> None:
    srv = serve(make_app(engine, act_max_agents=100, max_batch_bytes=200_000))
    url = f"{srv.url}/v1/act"
    r = httpx.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code in (400, 422)
    r = httpx.post(url, json={"obs": []})
    assert r.status_code == 422 and {"observations", "obs"} <= {e["loc"] for e in r.json()["errors"]}
    r = httpx.post(url, json={"observations": batch(101)})
    assert r.status_code == 413 and "100" in r.json()["error"]
    big = {"observations": batch(100), "pad": "x" * 200_000}
    r = httpx.post(url, content=json.dumps(big).encode(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    chunked = iter([b'{"observations": [', b" " * 150_000, b" " * 100_000, b"]}"])  # no content-length
    r = httpx.post(url, content=chunked, headers={"content-type": "application/json"})
    assert r.status_code == 413
    r = httpx.post(url, json={"observations": batch(100)})
    assert r.status_code == 200 and len(r.json()["actions"]) == 100


def test_partial_mode_answers_the_valid_agents(serve: Any, engine: InferenceEngine) -> None:
    srv = serve(make_app(engine))
    obs = batch(20, seed=7, prefix="partial")
    obs[4]["pos"]["y"] = None
    obs[9]["hp"] = -5
    r = httpx.post(f"{srv.url}/v1/act?partial=1", json={"observations": obs})
    assert r.status_code == 200, r.text
    acts = r.json()["actions"]
    assert len(acts) == 20
    assert acts[4]["error"]["loc"] == "observations[4].pos.y" and acts[9]["error"]["loc"] == "observations[9].hp"
    assert acts[4]["agent"] == obs[4]["agent"] and "agent" not in acts[4]["error"]  # named as sent
    assert all("type" in a for i, a in enumerate(acts) if i not in (4, 9))
    # identical answers to a strict request of the valid agents alone (fresh agent ids: no memory)
    good = [{**o, "agent": f"again-{i}"} for i, o in enumerate(obs) if i not in (4, 9)]
    r2 = httpx.post(f"{srv.url}/v1/act", json={"observations": good})
    kept = [a for i, a in enumerate(acts) if i not in (4, 9)]
    assert [(a["type"], a["args"]) for a in kept] == [(a["type"], a["args"]) for a in r2.json()["actions"]]


def test_msgpack_wire_format(serve: Any, engine: InferenceEngine) -> None:
    srv = serve(make_app(engine))
    obs = batch(50, seed=11, prefix="packed")
    body = msgpack.packb({"observations": obs})
    r = httpx.post(
        f"{srv.url}/v1/act",
        content=body,
        headers={"content-type": "application/msgpack", "accept": "application/msgpack"},
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/msgpack")
    got = msgpack.unpackb(r.content)
    renamed = [{**o, "agent": f"json-{o['agent']}"} for o in obs]
    ref = httpx.post(f"{srv.url}/v1/act", json={"observations": renamed}).json()
    assert [(a["type"], a["args"]) for a in got["actions"]] == [(a["type"], a["args"]) for a in ref["actions"]]
    bad = msgpack.packb({"observations": [{**obs[0], "tick": "soon"}]})
    r = httpx.post(f"{srv.url}/v1/act", content=bad, headers={"content-type": "application/msgpack"})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == "observations[0].tick"


def test_a_client_that_hangs_up_mid_body_is_not_an_error_and_the_next_call_is_answered(
    serve: Any, engine: InferenceEngine, caplog: pytest.LogCaptureFixture
) -> None:
    """A server whose HTTP timeout fires while it sends (a real socket closed mid-body): no error
    logged, nothing decided, and the next request is answered as usual."""
    import socket
    import time

    srv = serve(make_app(engine))
    body = json.dumps({"observations": batch(200)}).encode()
    decided = engine.stats["agents"]
    with caplog.at_level("DEBUG", logger="luanti_tune.serve.act"):
        with socket.create_connection(("127.0.0.1", srv.port)) as s:
            head = "POST /v1/act HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            head += f"Content-Length: {len(body)}\r\n\r\n"
            s.sendall(head.encode() + body[: len(body) // 3])
        deadline = time.monotonic() + 10
        while "disconnected" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        r = httpx.post(f"{srv.url}/v1/act", content=body, headers={"content-type": "application/json"})
    assert "client disconnected" in caplog.text
    assert not [rec for rec in caplog.records if rec.levelno >= 40], caplog.text
    assert r.status_code == 200 and len(r.json()["actions"]) == 200
    assert engine.stats["agents"] == decided + 200  # only the complete request was decided
