"""Without a batch window (the default), a lone request is decided at once and requests that queue
behind a running batch are merged into the next one, each still getting its own agents' answers."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import numpy as np
from test_act_hotswap import predictions
from toyfamily import make_candidate, obs_dict

from luanti_tune.config.settings import Settings
from luanti_tune.inference.engine import BatchResult, EngineConfig, InferenceEngine
from luanti_tune.inference.source import StaticModelSource
from luanti_tune.serve.act import ActService, attach_service
from luanti_tune.serve.app import create_app


def test_requests_queued_behind_a_batch_share_the_next_one(serve: Any) -> None:
    engine = InferenceEngine(StaticModelSource([make_candidate(1, version="v1")]), config=EngineConfig(), fallbacks={})
    sizes: list[int] = []
    inner = engine.decide

    def slow(observations: Any) -> BatchResult:
        time.sleep(0.05)  # a busy engine: the other clients' requests queue up meanwhile
        sizes.append(len(observations))
        return inner(observations)

    engine.decide = slow  # type: ignore[method-assign]
    settings = Settings()
    assert settings.act_batch_window_ms == 0.0
    app = create_app(settings)
    service = attach_service(app, ActService(app.state.luanti.settings, app.state.luanti.store, engine=engine))
    srv = serve(app)

    with httpx.Client(timeout=10) as http:  # alone: one request, one batch of its own agents
        obs = [{**obs_dict(i, np.random.default_rng(0)), "agent": f"solo-{i}"} for i in range(3)]
        body = http.post(f"{srv.url}/v1/act", json={"observations": obs}).json()
        assert [(a["type"], a["args"]) for a in body["actions"]] == predictions("v1", obs)
    assert sizes == [3]

    answers: dict[int, tuple[list[dict[str, Any]], dict[str, Any]]] = {}

    def client(cid: int) -> None:
        rng = np.random.default_rng(cid)
        obs = [{**obs_dict(i, rng), "agent": f"c{cid}-{i}"} for i in range(5 + cid)]
        with httpx.Client(timeout=10) as http:
            answers[cid] = (obs, http.post(f"{srv.url}/v1/act", json={"observations": obs}).json())

    threads = [threading.Thread(target=client, args=(c,)) for c in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert sorted(answers) == list(range(8))
    for obs, body in answers.values():  # every request answered for its own agents, in order
        assert [a["agent"] for a in body["actions"]] == [o["agent"] for o in obs]
        assert [(a["type"], a["args"]) for a in body["actions"]] == predictions("v1", obs)
    assert sum(sizes[1:]) == sum(5 + c for c in range(8))
    assert len(sizes) - 1 < 8 and service.batcher.merged_requests > service.batcher.batches
