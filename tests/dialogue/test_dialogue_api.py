"""The OpenAI-compatible endpoint on a real uvicorn socket: official client, streaming, NPC context,
OpenAI-style errors, generation errors, no blocking of other routes, adapter hot-swap."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from luanti_tune.config import Settings
from luanti_tune.dialogue.context import ContextTracker
from luanti_tune.dialogue.service import DialogueService
from luanti_tune.registry import Registry
from luanti_tune.schemas.event import parse_event
from luanti_tune.serve.app import create_app
from luanti_tune.store.base import open_store
from uvicorn_thread import ServerThread

MODEL = "luanti-npc"


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, tiny_base: str, first_cycle: dict[str, Any], dialogue_events: Any
) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("api")
    models = root / "models"
    shutil.copytree(first_cycle["registry"].root, models)
    registry = Registry(models)
    store = open_store(f"sqlite:///{root / 'events.db'}")
    store.append([parse_event(e) for e in dialogue_events])
    service = DialogueService(
        tiny_base, registry=registry, store=store, max_tokens_limit=64, max_prompt_tokens=300, poll_interval_s=0.0
    )
    app = create_app(Settings(data_dir=root, dialogue_base=tiny_base), store=store)
    app.state.luanti.components["dialogue"] = service
    server = ServerThread(app).start()
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)
    yield {"url": server.url, "client": client, "service": service, "registry": registry, "events": dialogue_events}
    server.stop()
    service.close()
    store.close()


def test_openai_client_lists_models(stack: dict[str, Any]) -> None:
    ids = [m.id for m in stack["client"].models.list()]
    assert ids == [MODEL, f"{MODEL}:base"]
    assert stack["client"].models.retrieve(MODEL).id == MODEL


def test_openai_client_completion_and_stream_agree(stack: dict[str, Any]) -> None:
    client: openai.OpenAI = stack["client"]
    messages: Any = [{"role": "system", "content": "You are smith."}, {"role": "user", "content": "hello"}]
    done = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=24)
    choice = done.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    assert done.usage is not None and 0 < done.usage.completion_tokens <= 24
    assert done.system_fingerprint == stack["registry"].champion_version("dialogue")

    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=messages, max_tokens=24, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) >= 2  # really incremental
    assert text.strip() == choice.message.content  # greedy: streaming yields the same reply
    assert finishes == [choice.finish_reason]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == done.usage.completion_tokens


def test_npc_request_gets_the_players_current_context(stack: dict[str, Any]) -> None:
    tracker = ContextTracker()
    tracker.update_all(stack["events"])
    expected = tracker.context("alice")
    assert expected.held is not None
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "what do you think of my tool?"}],
        "npc": "smith",
        "user": "alice",
        "max_tokens": 16,
    }
    r = httpx.post(f"{stack['url']}/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    ctx = r.json()["luanti"]["context"]
    assert ctx["held"] == expected.held and ctx["time_of_day"] == expected.time_of_day
    assert ctx["recent"] == list(expected.recent)


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": MODEL, "messages": []}, 400, "messages"),
        ({"model": MODEL}, 400, "messages"),
        ({"model": MODEL, "messages": [{"role": "tool", "content": "x"}]}, 400, "messages.0.role"),
        ({"model": MODEL, "messages": [{"role": "system", "content": "only system"}]}, 400, "messages"),
        ({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}, 404, "model"),
        ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 65}, 400, "max_tokens"),
        ({"model": MODEL, "messages": [{"role": "user", "content": "hi " * 2000}]}, 400, "messages"),
        ({"model": MODEL, "messages": [{"role": "user", "content": "x" * 40000}]}, 400, "messages"),
        ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "temperature": 3}, 400, "temperature"),
    ],
)
def test_bad_requests_get_openai_style_4xx(
    stack: dict[str, Any], body: dict[str, Any], status: int, param: str
) -> None:
    before = stack["service"].stats["requests"]
    r = httpx.post(f"{stack['url']}/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["message"] and err["type"] == "invalid_request_error" and err["param"] == param
    if len(str(body)) < 1000:  # all but the too-long-prompt case are refused before queueing a generation
        assert stack["service"].stats["requests"] == before


def test_openai_client_raises_typed_errors(stack: dict[str, Any]) -> None:
    client: openai.OpenAI = stack["client"]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=1000)
    assert "max_tokens" in str(info.value)


def test_generation_error_is_a_500_and_the_server_keeps_serving(
    stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    service: DialogueService = stack["service"]
    real = service._generate_ids
    calls = {"n": 0}

    def flaky(model: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("simulated failure inside generate")
        return real(model, **kwargs)

    monkeypatch.setattr(service, "_generate_ids", flaky)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    r = httpx.post(f"{stack['url']}/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 500
    assert r.json()["error"]["type"] == "server_error" and "simulated failure" in r.json()["error"]["message"]
    r = httpx.post(f"{stack['url']}/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] is not None


def test_generation_does_not_block_other_routes(stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    service: DialogueService = stack["service"]
    real = service._generate_ids
    release = threading.Event()

    def slow(model: Any, **kwargs: Any) -> Any:
        release.wait(30)  # a long generation holds the worker thread
        return real(model, **kwargs)

    monkeypatch.setattr(service, "_generate_ids", slow)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    result: dict[str, Any] = {}
    t = threading.Thread(
        target=lambda: result.update(r=httpx.post(f"{stack['url']}/v1/chat/completions", json=body, timeout=60))
    )
    t.start()
    try:
        deadline = time.monotonic() + 20
        while service._pending == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert service._pending == 1
        for path in ("/healthz", "/v1/models", "/v1/events/stats"):
            r = httpx.get(f"{stack['url']}{path}", timeout=10)
            assert r.status_code == 200, path
        assert "r" not in result  # the chat request is still generating
    finally:
        release.set()
        t.join(60)
    assert result["r"].status_code == 200


def test_promotion_and_rollback_hot_swap_the_served_adapter(stack: dict[str, Any]) -> None:
    registry: Registry = stack["registry"]
    champion = registry.champion_version("dialogue")
    vdir: Path = registry.version_dir("dialogue", champion)
    files = {p.name: p for p in vdir.iterdir() if p.name != "manifest.json"}
    new = registry.save("dialogue", files=files, architecture=registry.manifest("dialogue", champion)["architecture"])
    registry.promote("dialogue", new, force=True, reason="test")
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    r = httpx.post(f"{stack['url']}/v1/chat/completions", json=body, timeout=60)
    assert r.json()["luanti"]["adapter"] == new
    registry.rollback("dialogue", reason="test")
    r = httpx.post(f"{stack['url']}/v1/chat/completions", json=body, timeout=60)
    assert r.json()["luanti"]["adapter"] == champion
    base = httpx.post(f"{stack['url']}/v1/chat/completions", json={**body, "model": f"{MODEL}:base"}, timeout=60)
    assert base.json()["luanti"]["adapter"] is None


def test_metrics_count_requests_by_status(stack: dict[str, Any]) -> None:
    url = stack["url"]
    httpx.post(f"{url}/v1/chat/completions", json={"model": MODEL, "messages": []}, timeout=30)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)
    text = httpx.get(f"{url}/metrics", timeout=10).text
    counts = {
        line.split("{")[1].split("}")[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("luanti_tune_dialogue_requests_total{")
    }
    assert counts['status="400"'] >= 1 and counts['status="200"'] >= 1
    assert "luanti_tune_dialogue_reply_seconds_count" in text


def test_missing_base_model_is_a_503_naming_the_model(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'e.db'}")
    app = create_app(Settings(data_dir=tmp_path, dialogue_base=str(tmp_path / "no-such-model")), store=store)
    server = ServerThread(app).start()
    try:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
        r = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=30)
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "model_unavailable" and "no-such-model" in r.json()["error"]["message"]
        assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
    finally:
        server.stop()
        store.close()
