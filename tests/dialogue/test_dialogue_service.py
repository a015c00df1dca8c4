"""The generation service bounds time and tokens and refuses work beyond its queue."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from luanti_tune.dialogue.service import DialogueService, GenParams, Overloaded

MESSAGES = [
    {"role": "system", "content": "You are smith, the village blacksmith.\nPlayer: alice. Holding: stone pickaxe."},
    {"role": "user", "content": "hello"},
]


def test_time_bound_cuts_a_reply_short(tiny_base: str) -> None:
    free = DialogueService(tiny_base)
    bounded = DialogueService(tiny_base, timeout_s=1e-4)
    try:
        full = free.generate_sync(MESSAGES, GenParams(max_tokens=64), use_adapter=False)
        cut = bounded.generate_sync(MESSAGES, GenParams(max_tokens=64), use_adapter=False)
    finally:
        free.close()
        bounded.close()
    assert full.finish_reason == "stop" and full.completion_tokens > 2
    assert cut.finish_reason == "length"
    assert cut.completion_tokens < full.completion_tokens


def test_token_bound_and_stop_strings(tiny_base: str) -> None:
    service = DialogueService(tiny_base)
    try:
        full = service.generate_sync(MESSAGES, GenParams(max_tokens=64), use_adapter=False)
        two = service.generate_sync(MESSAGES, GenParams(max_tokens=2), use_adapter=False)
        assert two.completion_tokens == 2 and two.finish_reason == "length"
        word = full.text.split()[1]
        stopped = service.generate_sync(MESSAGES, GenParams(max_tokens=64, stop=(word,)), use_adapter=False)
        assert word not in stopped.text and stopped.finish_reason == "stop"
        assert full.text.startswith(stopped.text.strip())
    finally:
        service.close()


def test_queue_limit_refuses_extra_work(tiny_base: str, monkeypatch: pytest.MonkeyPatch) -> None:
    service = DialogueService(tiny_base, max_pending=1)
    release = threading.Event()
    real = service._generate_ids

    def slow(model: Any, **kwargs: Any) -> Any:
        release.wait(30)
        return real(model, **kwargs)

    monkeypatch.setattr(service, "_generate_ids", slow)
    t = threading.Thread(target=service.generate_sync, args=(MESSAGES, GenParams(max_tokens=2)), kwargs={})
    t.start()
    try:
        for _ in range(3000):
            if service._pending:
                break
            threading.Event().wait(0.01)
        with pytest.raises(Overloaded):
            service.generate_sync(MESSAGES, GenParams(max_tokens=2))
    finally:
        release.set()
        t.join(30)
        service.close()
    assert service._pending == 0
