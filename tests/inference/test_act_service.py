"""The real service end to end: registry champion picked up by polling, metrics, agent.act logging."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch
from toyfamily import obs_dict

from luanti_tune.config.settings import Settings
from luanti_tune.policies.pursuit import architecture, build_module
from luanti_tune.registry import Registry
from luanti_tune.serve.app import create_app
from luanti_tune.store.base import EventQuery


def test_service_serves_promotions_logs_decisions_and_counts_fallbacks(serve: Any, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", act_poll_s=0.1, act_log_sample_rate=1.0)
    app = create_app(settings)
    srv = serve(app)
    rng = np.random.default_rng(0)
    obs = [obs_dict(i, rng) for i in range(20)]

    r = httpx.post(f"{srv.url}/v1/act", json={"observations": obs}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"]["name"].startswith("scripted:")
    assert {a["fallback"] for a in body["actions"]} == {"no_model"}

    reg = Registry(settings.resolved_model_path)
    torch.manual_seed(0)
    arch = architecture(hidden=16)
    version = reg.save("pursuit", module=build_module(arch), architecture=arch, name="pursuit-mlp")
    reg.promote("pursuit", version, force=True)
    deadline = time.monotonic() + 60  # a swap exports in a child process: slow on a loaded machine
    fallback_calls = 1
    while True:  # the engine polls the registry and swaps without a restart
        body = httpx.post(f"{srv.url}/v1/act", json={"observations": obs}, timeout=30).json()
        if body["model"] == {"name": "pursuit-mlp", "version": version}:
            break
        fallback_calls += 1
        assert time.monotonic() < deadline, body["model"]
        time.sleep(0.1)
    assert all("fallback" not in a for a in body["actions"])

    text = httpx.get(f"{srv.url}/metrics").text
    assert f'fallback_total{{family="pursuit",reason="no_model"}} {20.0 * fallback_calls}' in text
    assert "act_batch_seconds_bucket" in text
    assert 'act_stage_seconds_count{family="pursuit",stage="featurize"}' in text

    store = app.state.luanti.store
    service = app.state.luanti.components["act"]
    logger = service.engine.decision_log
    deadline = time.monotonic() + 10
    while logger.written < 20 * (fallback_calls + 1) and time.monotonic() < deadline:
        time.sleep(0.05)
    rows = list(store.iter_events(EventQuery(types=("agent.act",))))
    assert len(rows) == 20 * (fallback_calls + 1)  # sample rate 1.0: every decision
    assert {r["payload"].get("fallback") for r in rows} >= {"no_model", None}
    assert any(r["payload"].get("version") == version for r in rows)
