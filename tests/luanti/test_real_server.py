"""Integration tests against a real minetestserver, the real service and a real headless client.

The tests of this module share one server (see conftest.harness) and run in file order.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from luanti_harness import Harness, HeadlessClient, actions, observations

from luanti_tune.schemas import Observation

pytestmark = pytest.mark.luanti

DIG_LINE = re.compile(r"ACTION\[Server\]: (\w+) digs ([\w:]+) at \((-?\d+),(-?\d+),(-?\d+)\)")


@pytest.fixture(autouse=True)
def _idle_policy_and_no_agents_after_each_test(harness: Harness) -> Iterator[None]:
    """A failed test must not leave its policy mode or agents to the next (they share one server)."""
    yield
    harness.policy.mode = "none"
    if harness.server.running():
        harness.server.ctl("clear")


def _by_actor(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e["actor"]["name"] == name]


def test_real_client_join_move_dig_become_stored_events(harness: Harness, alice: HeadlessClient) -> None:
    # wait for a join, movement and at least two digs by alice, as stored by the real service
    harness.wait_events(
        lambda evs: (
            len(_by_actor([e for e in evs if e["type"] == "node.dig"], "alice")) >= 2
            and any(e["type"] == "player.move" and e["actor"]["name"] == "alice" for e in evs)
        ),
        "node.dig",
        "player.move",
        "player.join",
        timeout=60,
    )
    joins = _by_actor(harness.events("player.join"), "alice")
    assert len(joins) == 1 and joins[0]["actor"]["kind"] == "player"
    assert joins[0]["payload"]["new_player"] is True
    moves = _by_actor(harness.events("player.move"), "alice")
    assert moves, "no player.move events"
    assert all(set(m["payload"]) >= {"velocity", "yaw"} for m in moves)
    # flat world: the player walks on the ground (y = 8.5), not somewhere random
    assert any(abs(m["pos"]["y"] - 8.5) < 3 for m in moves)
    # every dig the server logged is a stored node.dig with the same node name and position
    logged = {
        (m.group(2), int(m.group(3)), int(m.group(4)), int(m.group(5)))
        for m in DIG_LINE.finditer(harness.server.log_text())
        if m.group(1) == "alice"
    }
    assert logged, "the server logged no digs"

    def stored_digs(evs: list[dict[str, Any]]) -> set[tuple[str, int, int, int]]:
        return {
            (e["payload"]["node"], int(e["pos"]["x"]), int(e["pos"]["y"]), int(e["pos"]["z"]))
            for e in _by_actor(evs, "alice")
        }

    # the client keeps digging: wait for the batches carrying the digs logged so far
    stored = stored_digs(harness.wait_events(lambda evs: logged <= stored_digs(evs), "node.dig", timeout=15))
    assert all(name.startswith("basenodes:") for name, *_ in stored)


def _hdist(a: dict[str, float], b: dict[str, float]) -> float:
    return float(((a["x"] - b["x"]) ** 2 + (a["z"] - b["z"]) ** 2) ** 0.5)


def _wait_for_champion(url: str, kind: str, timeout: float = 60.0) -> None:
    """Until the service answers a probe observation with its champion (no fallback)."""
    probe = {"agent": "probe-1", "kind": kind, "pos": {"x": 0, "y": 8, "z": 0}, "targets": ["bob"]}
    probe["entities"] = [{"kind": "player", "name": "bob", "rel": {"x": 5, "y": 0, "z": 0}}]
    deadline = time.monotonic() + timeout
    answer: dict[str, Any] = {}
    while time.monotonic() < deadline:
        req = urllib.request.Request(
            url, data=json.dumps({"observations": [probe]}).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            answer = json.loads(resp.read())
        if answer["actions"] and "fallback" not in answer["actions"][0]:
            return
        time.sleep(0.5)
    raise AssertionError(f"the service never served a {kind} champion: {answer}")


def test_pursuit_agent_driven_by_the_real_service_closes_distance(harness: Harness, alice: HeadlessClient) -> None:
    h = harness
    # a real pursuit model: pre-trained on simulated players and promoted (in the background since
    # the harness started); the service serves the registry's champion
    assert h.trainer is not None
    assert h.trainer.wait(180) == 0, (h.root / "train.log").read_text()[-3000:]
    _wait_for_champion(h.service.url + "/v1/act", "pursuit")
    h.policy.proxy_to = h.service.url + "/v1/act"
    h.policy.mode = "proxy"  # decisions come from the real service's /v1/act
    state = h.server.wait_state(lambda s: "alice" in s.get("players", {}))
    p = state["players"]["alice"]["pos"]
    h.server.ctl(f"spawn pursuit {p['x'] + 10:.1f} 9 {p['z']:.1f}")
    state = h.server.wait_state(lambda s: any(k.startswith("pursuit") for k in s.get("agents", {})))
    agent_id = next(k for k in state["agents"] if k.startswith("pursuit"))
    d0 = _hdist(state["agents"][agent_id]["pos"], state["players"]["alice"]["pos"])
    closest = d0
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline and closest >= 0.4 * d0:
        time.sleep(0.3)
        st = h.server.ctl_state()
        if agent_id in st["agents"] and "alice" in st["players"]:
            closest = min(closest, _hdist(st["agents"][agent_id]["pos"], st["players"]["alice"]["pos"]))
    h.policy.mode = "none"
    h.server.ctl("clear")
    alice.stop()
    assert d0 > 7
    assert closest < 0.5 * d0, f"pursuit agent did not close in: {d0:.1f} -> {closest:.1f}"
    answered = [r for r in h.policy.requests if any(o["agent"] == agent_id for o in observations(r))]
    assert answered and any("alice" in o.get("targets", []) for r in answered for o in observations(r))
    # the decisions came from the pursuit champion, not from the scripted fallback
    served = [a for ans in h.policy.answers for a in actions(ans) if a.get("agent") == agent_id]
    by_model = [a for a in served if "fallback" not in a]
    assert len(by_model) >= 0.8 * len(served), served[:5]
    assert any((ans.get("model") or {}).get("name", "").startswith("pursuit") for ans in h.policy.answers)


def test_agent_moves_as_the_policy_decides(harness: Harness) -> None:
    harness.policy.mode = "plus_x"
    # far away from any player: the mod must keep the agent's area loaded by itself
    harness.server.ctl("spawn navigation 300 9 300")
    state = harness.server.wait_state(lambda s: any(k.startswith("navigation") for k in s.get("agents", {})))
    agent_id = next(k for k in state["agents"] if k.startswith("navigation"))
    start = state["agents"][agent_id]["pos"]
    state = harness.server.wait_state(lambda s: s["agents"][agent_id]["pos"]["x"] > start["x"] + 6, timeout=20)
    end = state["agents"][agent_id]["pos"]
    dx, dz = end["x"] - start["x"], end["z"] - start["z"]
    assert dx > 6 and abs(dz) < 0.2 * dx, (start, end)
    # the observations the mod sent are valid Observations, and outcomes are stored as agent.result
    obs = [o for r in harness.policy.requests for o in observations(r) if o["agent"] == agent_id]
    assert obs and all(Observation.model_validate(o) for o in obs[:20])
    results = harness.wait_events(
        lambda evs: any(e["actor"]["name"] == agent_id and e["payload"]["ok"] for e in evs), "agent.result"
    )
    assert all(e["payload"]["action"] == "move" for e in results if e["actor"]["name"] == agent_id)
    harness.policy.mode = "none"
    harness.server.ctl("clear")


def test_invalid_actions_are_refused_with_reason(harness: Harness) -> None:
    harness.server.ctl("spawn pursuit -300 9 -300", "protect -305 0 -305 -295 20 -295")
    state = harness.server.wait_state(lambda s: any(k.startswith("pursuit") for k in s.get("agents", {})))
    agent_id = next(k for k in state["agents"] if k.startswith("pursuit"))
    pos = state["agents"][agent_id]["pos"]
    harness.policy.protected = {"x": round(pos["x"]), "y": 8, "z": round(pos["z"])}
    before = len(harness.events("agent.result"))
    harness.policy.mode = "invalid"
    expected = {
        "unknown agent": "ghost-404",
        "unknown action type": agent_id,
        "args.speed": agent_id,
        "nodes away": agent_id,
        "args.yaw": agent_id,
        "args.message": agent_id,
        "protected": agent_id,
    }

    def all_refused(evs: list[dict[str, Any]]) -> bool:
        reasons = [(e["actor"]["name"], e["payload"].get("reason") or "") for e in evs[before:]]
        return all(any(k in r and n == who for n, r in reasons) for k, who in expected.items())

    evs = harness.wait_events(all_refused, "agent.result", timeout=20)
    harness.policy.mode = "none"
    assert not any(e["payload"]["ok"] for e in evs[before:] if e["actor"]["name"] in (agent_id, "ghost-404"))
    log = harness.server.log_text()
    assert "refused action" in log
    assert "Runtime error" not in log and "ERROR[Main]" not in log
    assert harness.server.running()
    # nothing happened: the protected node is still there, the agent did not teleport or move away
    state = harness.server.ctl_state()
    end = state["agents"][agent_id]["pos"]
    assert abs(end["x"] - pos["x"]) < 0.5 and abs(end["y"] - pos["y"]) < 1
    harness.server.ctl("clear")


def test_valid_world_actions_are_applied_and_recorded(harness: Harness) -> None:
    h = harness
    h.server.ctl("spawn npc -400 9 -400")
    state = h.server.wait_state(lambda s: any(k.startswith("npc") for k in s.get("agents", {})))
    agent_id = next(k for k in state["agents"] if k.startswith("npc"))
    h.policy.mode = "build"
    wanted = {"place", "dig", "chat", "turn", "jump"}

    def all_ok(evs: list[dict[str, Any]]) -> bool:
        return wanted <= {e["payload"]["action"] for e in evs if e["actor"]["name"] == agent_id and e["payload"]["ok"]}

    h.wait_events(all_ok, "agent.result", timeout=20)
    h.policy.mode = "none"
    built = [e for e in h.events("node.place", "node.dig") if e["actor"] == {"kind": "agent", "name": agent_id}]
    assert {e["type"] for e in built} == {"node.place", "node.dig"}
    assert all(e["payload"]["node"] == "basenodes:stone" for e in built)
    # the observations were recorded too (luanti_tune.agent_events), valid as stored by the service
    obs = [e for e in h.events("agent.obs") if e["actor"]["name"] == agent_id]
    assert obs and all(e["payload"]["agent"] == agent_id and e["payload"]["kind"] == "npc" for e in obs)
    h.server.ctl("clear")


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_service_outage_is_survived_without_loss_accounting_errors(harness: Harness) -> None:
    h = harness
    bound = 60
    h.policy.mode = "plus_x"  # the agents keep acting (and producing events) during the outage
    h.server.ctl("spawn_many navigation 3 500 9 500")
    h.server.wait_state(lambda s: s["status"]["agents"] >= 3 and s["status"]["delivery"]["sent"] > 0)
    h.server.wait_state(lambda s: s["status"]["pending"] < bound // 2)
    assert h.server.proc is not None
    rss_before = _rss_kb(h.server.proc.pid)
    log_offset = len(h.server.log_text())
    s0 = h.server.ctl_state()
    h.service.stop()
    t_stop = time.time()
    max_pending = 0
    while time.time() - t_stop < 30:
        time.sleep(1)
        st = h.status()
        max_pending = max(max_pending, st.get("pending", 0))
    s1 = h.server.ctl_state()
    rss_during = _rss_kb(h.server.proc.pid)
    h.service.start()
    assert s1["status"]["service_down"] is True
    # bounded: never more than the queue bound plus one batch in flight
    assert max_pending <= bound + 64
    assert s1["status"]["delivery"]["dropped"] > 0
    assert rss_during < rss_before * 1.5 + 20_000
    # no stalled steps: the server kept stepping at its normal pace (ratio, generous margin)
    steps = s1["steps"] - s0["steps"]
    assert steps > 0.5 * 30 / 0.09 * 0.5
    per_second = s1["status"]["steps"]["dtime_max_per_second"]
    worst = max(v for t, v in per_second if t >= t_stop)
    normal = max([v for t, v in per_second if t < t_stop] or [0.09])
    # a step waiting for the HTTP timeout (5 s) would show; machine noise is tolerated
    assert worst < max(1.5, 4 * normal), f"a server step took {worst:.2f} s during the outage"
    # no error spam: the mod warns once, the engine's failed fetches are limited by the backoff
    outage_log = h.server.log_text()[log_offset:]
    assert outage_log.count("[luanti_tune]") <= 8, outage_log[-2000:]
    assert outage_log.count("ERROR[") <= 40
    # after it returns: events flow again, the drops are reported once as system.dropped
    dropped_evs = h.wait_events(lambda evs: len(evs) >= 1, "system.dropped", timeout=30)
    h.server.ctl("clear")
    h.policy.mode = "none"
    st = h.server.wait_state(lambda s: s["status"]["agents"] == 0 and s["status"]["pending"] == 0, timeout=30)
    time.sleep(1)
    st = h.server.wait_state(lambda s: s["status"]["pending"] == 0, timeout=30)
    # accounting: every seq of this run is either stored exactly once or reported as dropped
    source = st["status"]["source"]
    run_start = max(e["seq"] for e in h.events("system.start") if e["source"] == source)
    seqs = [e["seq"] for e in h.events(sources=(source,)) if e["seq"] >= run_start]
    assert len(seqs) == len(set(seqs))
    dropped = sum(e["payload"]["dropped"] for e in dropped_evs if e["source"] == source)
    assigned = st["status"]["next_seq"] - run_start
    assert len(seqs) + dropped == assigned, (len(seqs), dropped, assigned)


def test_server_restart_and_crash_never_reuse_seq(harness: Harness) -> None:
    h = harness
    source = h.status()["source"]

    def stored_max() -> int:
        return max(e["seq"] for e in h.events(sources=(source,)))

    # an agent far from any player survives a clean restart and is active again by itself
    h.server.ctl("spawn npc 700 9 700")
    state = h.server.wait_state(lambda s: any(k.startswith("npc") for k in s.get("agents", {})))
    agent_id = next(k for k in state["agents"] if k.startswith("npc"))
    time.sleep(5.5)  # the agent's blocks are remembered every 5 s (and at shutdown)
    h.wait_events(lambda evs: True, "system.start")
    before = stored_max()
    h.server.stop()
    h.server.start()
    starts = h.wait_events(lambda evs: len([e for e in evs if e["source"] == source]) >= 2, "system.start")
    assert max(e["seq"] for e in starts) > before
    h.server.wait_state(lambda s: agent_id in s.get("agents", {}) and not s.get("players"), timeout=20)
    # a crash: SIGKILL right after some activity, no shutdown callbacks run
    time.sleep(1)
    before = stored_max()
    h.server.kill()
    h.server.start()
    starts = h.wait_events(lambda evs: len([e for e in evs if e["source"] == source]) >= 3, "system.start")
    assert max(e["seq"] for e in starts) > before
    seqs = [e["seq"] for e in h.events(sources=(source,))]
    assert len(seqs) == len(set(seqs))


def test_pursuit_agents_driven_through_the_columnar_format_close_distance(
    harness: Harness, client_factory: Callable[..., HeadlessClient]
) -> None:
    """``luanti_tune.act_format = columns``: the mod sends columnar requests, reads the columnar
    answers of the real service and pursuit agents close in as with rows (last test: it restarts
    the server with the setting)."""
    h = harness
    assert h.trainer is not None and h.trainer.wait(180) == 0  # the champion of the rows test
    _wait_for_champion(h.service.url + "/v1/act", "pursuit")
    h.server.stop()
    h.server.settings["luanti_tune.act_format"] = "columns"
    h.server.start()
    with h.policy.lock:
        h.policy.requests.clear()
        h.policy.answers.clear()
    h.policy.proxy_to = h.service.url + "/v1/act"
    h.policy.mode = "proxy"
    carol = client_factory(h.server.port, "carol")
    state = h.server.wait_state(lambda s: "carol" in s.get("players", {}), timeout=40)
    p = state["players"]["carol"]["pos"]
    # two pursuit agents: the pursuit model decides most rows (an NPC restored by the restart test
    # may be there too), so its moves come back as plain columns, not as whole rows
    h.server.ctl(f"spawn pursuit {p['x'] + 10:.1f} 9 {p['z']:.1f}", f"spawn pursuit {p['x'] - 10:.1f} 9 {p['z']:.1f}")
    state = h.server.wait_state(lambda s: sum(k.startswith("pursuit") for k in s.get("agents", {})) == 2)
    ids = [k for k in state["agents"] if k.startswith("pursuit")]
    d0 = {a: _hdist(state["agents"][a]["pos"], state["players"]["carol"]["pos"]) for a in ids}
    closest = dict(d0)
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline and any(closest[a] >= 0.4 * d0[a] for a in ids):
        time.sleep(0.3)
        st = h.server.ctl_state()
        for a in ids:
            if a in st["agents"] and "carol" in st["players"]:
                closest[a] = min(closest[a], _hdist(st["agents"][a]["pos"], st["players"]["carol"]["pos"]))
    h.policy.mode = "none"
    h.server.ctl("clear")
    carol.stop()
    assert all(d > 7 for d in d0.values()), d0
    assert all(closest[a] < 0.5 * d0[a] for a in ids), f"pursuit agents did not close in: {d0} -> {closest}"
    with h.policy.lock:
        requests, answers = list(h.policy.requests), list(h.policy.answers)
    # every request was columnar; the agents' rows carried carol as a target
    assert requests and all(set(r) == {"columns"} for r in requests), requests[:1]
    targets = [
        r["columns"]["targets"][r["columns"]["agent"].index(a)]
        for r in requests
        for a in ids
        if a in r["columns"]["agent"]
    ]
    assert targets and any("carol" in t for t in targets)
    # the answers were columnar, and the agents were moved by the pursuit champion: plain move/wait
    # columns under a pursuit top-level model (an agent close to carol may wait for her, so the
    # share of moves depends on timing), or whole rows naming the pursuit model
    assert answers and all("columns" in a and "actions" not in a for a in answers)
    plain, moves, by_model, decided = 0, 0, 0, 0
    for ans in answers:
        cols, top = ans["columns"], (ans.get("model") or {}).get("name", "")
        for a in ids:
            if a not in cols["agent"]:
                continue
            i = cols["agent"].index(a)
            decided += 1
            row = ans["rows"].get(str(i))
            if row is None:
                plain += top.startswith("pursuit") and cols["type"][i] in ("move", "wait")
                moves += top.startswith("pursuit") and cols["type"][i] == "move"
                by_model += top.startswith("pursuit")
            else:
                by_model += "fallback" not in row and str(row.get("model", top)).startswith("pursuit")
    assert decided and by_model >= 0.8 * decided and plain >= 0.5 * decided and moves > 0, (
        decided,
        by_model,
        plain,
        moves,
        answers[:2],
    )
    act = h.status()["act"]
    assert act["actions"] > 0 and act["refused"] <= 0.2 * act["actions"], act
