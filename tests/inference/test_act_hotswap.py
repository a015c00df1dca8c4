"""100 hot swaps under concurrent HTTP load: no request lost, one version per batch, right answers."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import numpy as np
import torch
from toyfamily import ToyAdapter, make_candidate, make_module, obs_dict

from luanti_tune.config.settings import Settings
from luanti_tune.inference.engine import BatchResult, EngineConfig, InferenceEngine
from luanti_tune.inference.source import StaticModelSource
from luanti_tune.schemas.agent import Observation
from luanti_tune.serve.act import ActService, attach_service
from luanti_tune.serve.app import create_app

SEEDS = {"v1": 1, "v2": 2, "v3": 3}


def predictions(version: str, obs: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    parsed = [Observation.model_validate(o) for o in obs]
    adapter = ToyAdapter()
    feats = adapter.featurize(parsed, {})
    with torch.no_grad():
        logits = MODULES[version](torch.from_numpy(feats["x"])).numpy()
    return [
        (d.action.type, d.action.model_dump(mode="json")["args"]) for d in adapter.decode(parsed, {"logits": logits})
    ]


MODULES = {v: make_module(s) for v, s in SEEDS.items()}


def test_hundred_swaps_under_concurrent_load(serve: Any) -> None:
    cands = {v: make_candidate(s, version=v) for v, s in SEEDS.items()}
    source = StaticModelSource([cands["v1"]])
    engine = InferenceEngine(source, config=EngineConfig(), fallbacks={})
    swaps_before = engine.stats["swaps"]
    batches: list[set[Any]] = []
    inner = engine.decide

    def recording(observations: Any) -> BatchResult:
        result = inner(observations)
        batches.append(set(result.refs))
        return result

    engine.decide = recording  # type: ignore[method-assign]
    app = create_app(Settings(act_batch_window_ms=2.0))
    service = attach_service(app, ActService(app.state.luanti.settings, app.state.luanti.store, engine=engine))
    srv = serve(app)

    done = threading.Event()
    failures: list[str] = []
    answered: list[tuple[str, list[dict[str, Any]], list[dict[str, Any]]]] = []
    sent = [0]
    lock = threading.Lock()

    def client(cid: int) -> None:
        rng = np.random.default_rng(cid)
        with httpx.Client(timeout=10) as http:
            k = 0
            while not done.is_set() or k < 5:
                obs = [{**obs_dict(i, rng), "agent": f"c{cid}-r{k}-{i}"} for i in range(40)]
                with lock:
                    sent[0] += 1
                try:
                    r = http.post(f"{srv.url}/v1/act", json={"observations": obs})
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if r.status_code != 200:
                    failures.append(f"{r.status_code} {r.text[:200]}")
                    continue
                body = r.json()
                with lock:
                    answered.append((body["model"]["version"], obs, body["actions"]))
                k += 1

    def swapper() -> None:
        order = ["v2", "v3", "v1"]
        for i in range(100):
            source.set(cands[order[i % 3]])
            assert engine.refresh()
            done.wait(0.01)
        done.set()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(4)]
    for t in threads:
        t.start()
    swap = threading.Thread(target=swapper)
    swap.start()
    swap.join(60)
    done.set()
    for t in threads:
        t.join(60)

    assert not failures, failures[:3]
    assert len(answered) == sent[0] and len(answered) >= 20  # nothing lost
    assert engine.stats["swaps"] == swaps_before + 100
    # never two versions inside one engine batch (merged requests included)
    assert all(len(refs) == 1 for refs in batches), [r for r in batches if len(r) != 1][:3]
    assert service.batcher.merged_requests > service.batcher.batches  # requests really were merged
    # each response decided wholly by the version it names, exactly as that model predicts
    versions = set()
    for version, obs, actions in answered:
        versions.add(version)
        assert all("model" not in a and "fallback" not in a for a in actions)
        assert [(a["type"], a["args"]) for a in actions] == predictions(version, obs)
    assert versions == {"v1", "v2", "v3"}
