"""Without a batch window (the default), a lone request is decided at once and requests that queue
behind a running batch are merged into the next one, each still getting its own agents' answers.
A lone request to a fast engine is decided on the event loop; the engine never runs two calls at
once either way."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import numpy as np
import pytest
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
    assert service.batcher.inline == 0  # a slow engine keeps the loop free to queue requests


@pytest.mark.parametrize("inline_ms", [50.0, 0.0])
def test_lone_requests_to_a_fast_engine_are_decided_on_the_loop_and_calls_never_overlap(
    serve: Any, inline_ms: float
) -> None:
    engine = InferenceEngine(StaticModelSource([make_candidate(1, version="v1")]), config=EngineConfig(), fallbacks={})
    inner = engine.decide
    threads: list[str] = []
    running, overlaps, slow_calls = [0], [0], [0]
    lock = threading.Lock()

    def watched(observations: Any) -> BatchResult:
        with lock:
            running[0] += 1
            overlaps[0] += running[0] > 1
        try:
            threads.append(threading.current_thread().name)
            slow = slow_calls[0] > 0
            slow_calls[0] -= slow
            time.sleep(0.3 if slow else 0.0005)  # a window for another call to overlap, were it possible
            return inner(observations)
        finally:
            with lock:
                running[0] -= 1

    engine.decide = watched  # type: ignore[method-assign]
    rng = np.random.default_rng  # new agents every step: the toy family's memory stays empty
    # a limit far above a fast call (0.5 ms, a few ms on a loaded machine), so that which calls go
    # inline does not depend on the machine's load
    app = create_app(Settings(act_inline_max_ms=inline_ms))
    service = attach_service(app, ActService(app.state.luanti.settings, app.state.luanti.store, engine=engine))
    srv = serve(app)
    with httpx.Client(timeout=10) as http:  # one server, one request after another
        for step in range(6):
            obs = [{**obs_dict(i, rng(step)), "agent": f"solo{step}-{i}"} for i in range(4)]
            body = http.post(f"{srv.url}/v1/act", json={"observations": obs}).json()
            assert [(a["type"], a["args"]) for a in body["actions"]] == predictions("v1", obs)
    on_engine_thread = [t.startswith("act-engine") for t in threads]
    if inline_ms:  # the first call measures the engine; the others are decided on the loop
        assert on_engine_thread == [True] + [False] * 5 and service.batcher.inline == 5
    else:
        assert all(on_engine_thread) and service.batcher.inline == 0

    # eight servers at once, while a large request (1000 agents: at >= 0.125 ms per agent, too
    # large to decide on the loop) is decided slowly on the engine thread. Their small requests
    # arrive meanwhile: they must queue and be merged into the next batch. Were a running batch
    # ignored, the loop would decide them inline (the per-agent estimate is small) at the same
    # time: the overlap count catches that.
    slow_calls[0] = 1
    del threads[:]
    errors: list[BaseException] = []
    big = [{**obs_dict(i, rng(7)), "agent": f"big-{i}"} for i in range(1000)]

    def big_client() -> None:
        try:
            with httpx.Client(timeout=10) as http:
                body = http.post(f"{srv.url}/v1/act", json={"observations": big}).json()
                assert [(a["type"], a["args"]) for a in body["actions"]] == predictions("v1", big)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    big_thread = threading.Thread(target=big_client)
    big_thread.start()
    deadline = time.monotonic() + 10
    while not running[0] and time.monotonic() < deadline:  # until the large batch is being decided
        time.sleep(0.001)
    assert running[0] and threads == ["act-engine_0"]

    def client(cid: int) -> None:
        try:
            with httpx.Client(timeout=10) as http:
                for step in range(5):
                    obs = [{**obs_dict(i, rng(100 * cid + step)), "agent": f"c{cid}.{step}-{i}"} for i in range(3)]
                    body = http.post(f"{srv.url}/v1/act", json={"observations": obs}).json()
                    assert [a["agent"] for a in body["actions"]] == [o["agent"] for o in obs]
                    assert [(a["type"], a["args"]) for a in body["actions"]] == predictions("v1", obs)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    workers = [threading.Thread(target=client, args=(c,)) for c in range(8)]
    for t in workers:
        t.start()
    for t in [*workers, big_thread]:
        t.join(30)
    assert not errors, errors[:1]
    assert overlaps[0] == 0  # inline or not, one engine call at a time
    assert service.batcher.merged_requests == 6 + 1 + 8 * 5
    assert service.batcher.merged_requests > service.batcher.batches  # requests really were merged


def test_a_large_request_after_small_ones_is_not_decided_on_the_loop(serve: Any) -> None:
    """The inline decision is estimated per agent: a 1-agent call being fast says little about a
    400-agent one, which goes to the engine thread (the loop stays free meanwhile)."""
    engine = InferenceEngine(StaticModelSource([make_candidate(1, version="v1")]), config=EngineConfig(), fallbacks={})
    inner = engine.decide
    threads: list[tuple[int, bool]] = []

    def per_agent(observations: Any) -> BatchResult:
        threads.append((len(observations), threading.current_thread().name.startswith("act-engine")))
        time.sleep(2e-4 * len(observations))  # 80 ms for 400 agents: over act_inline_max_ms
        return inner(observations)

    engine.decide = per_agent  # type: ignore[method-assign]
    app = create_app(Settings(act_inline_max_ms=20.0))  # a 1-agent call stays under it on a busy machine
    attach_service(app, ActService(app.state.luanti.settings, app.state.luanti.store, engine=engine))
    srv = serve(app)
    rng = np.random.default_rng(3)
    with httpx.Client(timeout=10) as http:
        for step, n in enumerate((1, 1, 400, 4)):
            obs = [{**obs_dict(i, rng), "agent": f"s{step}-{i}"} for i in range(n)]
            body = http.post(f"{srv.url}/v1/act", json={"observations": obs}).json()
            assert [(a["type"], a["args"]) for a in body["actions"]] == predictions("v1", obs)
    # first call: nothing measured yet; then inline; 400 agents: on the engine thread; 4: inline
    assert threads == [(1, True), (1, False), (400, True), (4, False)]
