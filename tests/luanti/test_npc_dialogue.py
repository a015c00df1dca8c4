"""NPC dialogue in game: a real minetestserver with the mod, the real service serving a tiny local
dialogue model. A chat line addressed to an NPC agent goes through the engine's chat handlers (via
the ctl mod); the NPC's reply arrives asynchronously and is recorded as a chat.msg from the NPC."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from luanti_harness import Harness

pytestmark = pytest.mark.luanti

REQUESTS_200 = re.compile(r'^luanti_tune_dialogue_requests_total\{status="200"\} (\S+)$', re.M)


def _tiny_dialogue_model(out: Path) -> Path:
    import torch

    from luanti_tune.dialogue.dataset import build_examples
    from luanti_tune.dialogue.scenario import conversation_events
    from luanti_tune.dialogue.tiny import build_tiny_model

    torch.set_num_threads(1)
    examples = build_examples(list(conversation_events(40, seed=1)))
    return build_tiny_model(out, examples, seed=0, pretrain_steps=20)


@pytest.fixture(scope="module")
def npc_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    root = tmp_path_factory.mktemp("npc-dialogue")
    base = _tiny_dialogue_model(root / "tiny-base")
    h = Harness(
        root,
        {"luanti_tune.dialogue_max_tokens": 12, "luanti_tune.dialogue_timeout": 30, "luanti_tune.flush_interval": 0.1},
    )
    assert h.service.env is not None
    h.service.env["LUANTI_TUNE_DIALOGUE_BASE"] = str(base)
    try:
        h.start()
        h.server.wait_state(lambda s: s.get("steps", 0) > 0)
        yield h
    finally:
        h.stop()


def _chat_completions_ok(url: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    m = REQUESTS_200.search(text)
    return float(m.group(1)) if m else 0.0


def _chats(h: Harness) -> list[dict[str, Any]]:
    return h.events("chat.msg")


def test_npc_answers_chat_addressed_to_it_asynchronously(npc_harness: Harness) -> None:
    h = npc_harness
    h.server.ctl("spawn npc 0 9 0")
    state = h.server.wait_state(lambda s: any(k.startswith("npc-") for k in s.get("agents", {})))
    npc = next(k for k in state["agents"] if k.startswith("npc-"))
    assert _chat_completions_ok(h.service.url) == 0
    # a line to everyone and one to an NPC that does not exist: recorded without `to`, no request
    h.server.ctl("chat bob hello everyone", "chat bob @npc-999 are you there?", f"chat bob @{npc} hello, who are you?")
    sent = h.server.wait_state(lambda s: s["status"]["dialogue"]["requests"] >= 1)
    assert sent["status"]["dialogue"]["requests"] == 1

    def replied(evs: list[dict[str, Any]]) -> bool:
        return any(e["actor"]["kind"] == "agent" for e in evs)

    evs = h.wait_events(replied, "chat.msg", timeout=30)
    mine = [e for e in evs if e["actor"] == {"kind": "player", "name": "bob"}]
    assert [e["payload"]["message"] for e in mine] == [
        "hello everyone",
        "@npc-999 are you there?",
        f"@{npc} hello, who are you?",
    ]
    assert [e["payload"].get("to") for e in mine] == [None, None, npc]
    # the reply: a chat.msg from the NPC agent to the player, with a real (non-empty) generation
    replies = [e for e in evs if e["actor"]["kind"] == "agent"]
    assert len(replies) == 1
    reply = replies[0]
    assert reply["actor"]["name"] == npc and reply["payload"]["to"] == "bob"
    assert reply["payload"]["message"].strip()
    assert reply["seq"] > mine[-1]["seq"] and "pos" in reply
    # the service really generated it (one completion answered 200)
    assert _chat_completions_ok(h.service.url) == 1
    # (the ctl state is written every 0.2 s: it may lag the stored event by a step or two)
    st = h.server.wait_state(lambda s: s["status"]["dialogue"]["replies"] >= 1)
    assert st["status"]["dialogue"]["replies"] == 1 and st["status"]["dialogue"]["failures"] == 0
    # the game kept stepping while the reply was generated (the request never blocks a step)
    assert reply["time"]["tick"] >= mine[-1]["time"]["tick"] + 2
    log = h.server.log_text()
    assert "step failed" not in log and "bad NPC reply" not in log
