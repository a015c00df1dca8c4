"""Team coordination in a real Luanti server: two agent entities of one team, two real players,
decisions from the real service's /v1/act serving a trained team champion -> they split targets.

Both agents start closer to alice than to bob, so independent greedy members would both chase
alice; the team model assigns one of them to bob.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from luanti_harness import Harness, HeadlessClient, actions, observations

pytestmark = pytest.mark.luanti

Y = 9.0
ALICE = (0.0, 0.0)
BOB = (16.0, 0.0)
AGENTS = ((-5.0, 3.0), (-5.0, -3.0))


def _train_team_champion(models: Path) -> str:
    import torch

    from luanti_tune.policies import team as fam
    from luanti_tune.registry import Registry
    from luanti_tune.trainers import team as tt
    from luanti_tune.trainers.common import FitConfig

    torch.set_num_threads(1)
    arch = fam.architecture()
    data = tt.simulated_dataset(arch, episodes=3, seed=0, max_steps=200)
    module, info = tt.pretrain_base(data, arch, FitConfig(steps=150, batch_size=128, lr=3e-3, seed=0))
    reg = Registry(models)
    version = reg.save(
        "team",
        module=module,
        architecture=arch,
        parent=None,
        dataset=data.manifest,
        metrics={},
        gate={"passed": True, "reason": "integration test base"},
        training=info,
    )
    reg.promote("team", version, reason="integration test base")
    return version


@pytest.fixture(scope="module")
def team_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    h = Harness(
        tmp_path_factory.mktemp("luanti-team"),
        {"luanti_tune.act_interval": 2, "luanti_tune.agent_events": True, "luanti_tune.move_sample_rate": 5},
    )
    try:
        _train_team_champion(h.models)
        h.start()
        h.server.wait_state(lambda s: s.get("steps", 0) > 0)
        yield h
    finally:
        h.stop()


def _hdist(a: dict[str, float], b: tuple[float, float] | dict[str, float]) -> float:
    bx, bz = (b["x"], b["z"]) if isinstance(b, dict) else b
    return math.hypot(a["x"] - bx, a["z"] - bz)


def _wait_for_team_model(url: str, timeout: float = 60.0) -> None:
    import httpx

    obs = {
        "agent": "probe",
        "kind": "team",
        "team": "probe",
        "pos": {"x": 0, "y": 9, "z": 0},
        "entities": [{"kind": "player", "name": "x", "rel": {"x": 3, "y": 0, "z": 0}}],
        "targets": ["x"],
    }
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = httpx.post(url, json={"observations": [obs]}, timeout=5)
            if r.status_code == 200 and (r.json().get("model") or {}).get("name", "").startswith("team"):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError("the service did not serve the team champion in time")


def test_two_team_agents_split_two_players(team_harness: Harness, tmp_path: Path) -> None:
    h = team_harness
    clients = [HeadlessClient(tmp_path / n, h.server.port, n, "pw", random_input=False) for n in ("alice", "bob")]
    try:
        h.server.wait_state(lambda s: {"alice", "bob"} <= set(s.get("players", {})), timeout=60)
        _wait_for_team_model(h.service.url + "/v1/act")
        h.server.ctl(f"teleport alice {ALICE[0]} {Y} {ALICE[1]}", f"teleport bob {BOB[0]} {Y} {BOB[1]}")
        h.server.wait_state(
            lambda s: _hdist(s["players"]["alice"]["pos"], ALICE) < 1 and _hdist(s["players"]["bob"]["pos"], BOB) < 1
        )
        h.policy.proxy_to = h.service.url + "/v1/act"
        h.policy.mode = "proxy"  # every decision comes from the real service
        h.server.ctl(*(f"spawn team {x} {Y} {z}" for x, z in AGENTS))
        state = h.server.wait_state(lambda s: sum(k.startswith("team") for k in s.get("agents", {})) == 2)
        ids = sorted(k for k in state["agents"] if k.startswith("team"))
        start = {i: state["agents"][i]["pos"] for i in ids}
        assert all(_hdist(start[i], ALICE) < _hdist(start[i], BOB) for i in ids)  # greedy would chase alice twice
        nearest: dict[str, str] = {}
        pos: dict[str, Any] = {}
        deadline = time.monotonic() + 45  # a loaded CI machine: left at once when they have split
        while time.monotonic() < deadline:
            time.sleep(0.3)
            st = h.server.ctl_state()
            pos = {i: st["agents"][i]["pos"] for i in ids if i in st.get("agents", {})}
            players = st.get("players", {})
            if len(pos) < 2 or not {"alice", "bob"} <= set(players):
                continue
            nearest = {
                i: min(("alice", "bob"), key=lambda n, p=p: _hdist(p, players[n]["pos"])) for i, p in pos.items()
            }
            if sorted(nearest.values()) == ["alice", "bob"] and all(
                _hdist(p, players[nearest[i]]["pos"]) < 3.0 for i, p in pos.items()
            ):
                break
        h.policy.mode = "none"
        h.server.ctl("clear")
    finally:
        for c in clients:
            c.stop()
    served = [a for ans in h.policy.answers for a in actions(ans) if a.get("agent") in ids]
    fallbacks: dict[str, int] = {}
    for a in served:
        fallbacks[str(a.get("fallback"))] = fallbacks.get(str(a.get("fallback")), 0) + 1
    assert sorted(nearest.values()) == ["alice", "bob"], (nearest, start, pos, len(served), fallbacks, served[-2:])
    # the decisions for these agents were the team model's (not the scripted fallback)
    assert served and sum("fallback" not in a for a in served) >= 0.8 * len(served)
    assert any((ans.get("model") or {}).get("name", "").startswith("team") for ans in h.policy.answers)
    # the observations carried the team, so the service could pool them on one blackboard
    team_obs: list[dict[str, Any]] = [o for r in h.policy.requests for o in observations(r) if o["agent"] in ids]
    assert team_obs and all(o.get("team") == "team" for o in team_obs)
