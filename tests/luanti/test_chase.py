"""``luanti-tune bench chase`` for real: the pursuit agent (decided by the real service) and a
mobs_redo dogfight mob chase a real headless client steered with real velocity on a real server;
with ``--adapt-minutes`` the service's worker first trains on what the agent saw while chasing the
client; and Ctrl-C stops every process the benchmark started. Plus the pure parts (plans, summary,
comparison)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from luanti_tune.bench import chase
from luanti_tune.bench.cli import bench
from luanti_tune.errors import ConfigError
from luanti_tune.luanti.server import find_server_bin

ROOT = Path(__file__).resolve().parents[2]


def _need_real_game() -> None:
    try:
        find_server_bin()
    except ConfigError as exc:
        pytest.skip(str(exc))
    if not chase.mobs_available():
        pytest.skip("mobs_redo not installed (apt-get install minetest-mod-mobs-redo)")
    if not (shutil.which("xvfb-run") and (shutil.which("minetest") or os.access("/usr/games/minetest", os.X_OK))):
        pytest.skip("real client not installed (apt-get install minetest xvfb xauth)")


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes whose command line or environment mentions ``text``."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (text in cmdline or text in environ):
            found.append(f"{pid}: {cmdline[:200]}")
    return found


def _left_over(work: Path, timeout: float = 10.0) -> list[str]:
    """The processes still mentioning ``work`` after up to ``timeout`` s (killed ones take a moment)."""
    deadline = time.monotonic() + timeout
    while (found := _processes_mentioning(str(work))) and time.monotonic() < deadline:
        time.sleep(0.3)
    return found


# ---------------------------------------------------------------------- pure parts


def test_plan_pairs_share_offset_and_seed_and_alternate_the_order() -> None:
    cfg = chase.ChaseConfig(episodes=4, offset=8.0, seed=3)
    plan = chase.episode_plan(cfg)
    assert [p["chaser"] for p in plan] == ["agent", "mob", "mob", "agent", "agent", "mob", "mob", "agent"]
    for i in range(4):
        a, m = (p for p in plan if p["pair"] == i)
        assert (a["dx"], a["dz"], a["seed"]) == (m["dx"], m["dz"], m["seed"])
        assert abs((a["dx"] ** 2 + a["dz"] ** 2) ** 0.5 - 8.0) < 1e-9
    assert len({p["seed"] for p in plan}) == 4
    assert chase.episode_plan(cfg) == plan  # seeded


def _record(chaser: str, caught: bool, time_s: float, start_s: float) -> dict[str, Any]:
    samples = [[t / 5, 8.0 - t / 5, 0, 0, 3.0, 1.0, 0, 0, 4.0, 0.0] for t in range(int(time_s * 5) + 1)]
    return {
        "chaser": chaser,
        "caught": caught,
        "time_s": time_s,
        "start_s": start_s,
        "appear_s": 0.1,
        "d0": 8.0,
        "min_d": 1.0,
        "dodges": 1,
        "samples": samples,
    }


def test_summary_counts_censored_episodes_at_the_limit() -> None:
    cfg = chase.ChaseConfig(episodes=3, limit_s=10.0)
    records = [
        _record("agent", True, 2.0, 0.2),
        _record("agent", True, 4.0, 0.2),
        _record("agent", False, 10.0, 0.2),
        _record("mob", True, 3.0, 1.0),
        _record("mob", False, 10.0, 1.0),
        _record("mob", False, 10.0, 1.0),
    ]
    s = chase.summarize(records, cfg)
    a, m = s["agent"], s["mob"]
    assert (a["caught"], a["catch_rate"], a["mean_catch_s"], a["median_catch_s"]) == (2, 0.667, 3.0, 4.0)
    assert a["restricted_mean_s"] == round(16 / 3, 2) and not a["median_censored"]
    assert m["median_catch_s"] == 10.0 and m["median_censored"]
    assert a["chase_s_mean"] == 2.8 and m["chase_s_mean"] == 2.0
    assert a["times_s"] == [2.0, 4.0, None]
    assert a["distance"]["running"][:3] == [3, 3, 3] and a["distance"]["running"][5] == 1
    assert a["distance"]["mean"][0] == 8.0
    assert s["ratio_agent_vs_mob"]["restricted_mean"] == round(a["restricted_mean_s"] / m["restricted_mean_s"], 3)
    assert s["ratio_agent_vs_mob"]["catch_rate_delta"] == round(2 / 3 - 1 / 3, 3)


def test_play_chunks_are_game_minutes_with_seeds_of_their_own() -> None:
    cfg = chase.ChaseConfig(episodes=8, seed=7, adapt_minutes=2.5)
    chunks = chase.play_plan(cfg)
    assert [c["seconds"] for c in chunks] == [60.0, 60.0, 30.0]
    assert [c["id"] for c in chunks] == ["adapt-0", "adapt-1", "adapt-2"]
    # the adaptation never plays a measured episode's steering schedule
    measured = {p["seed"] for p in chase.episode_plan(cfg)}
    assert len({c["seed"] for c in chunks}) == 3 and not measured & {c["seed"] for c in chunks}
    assert chase.play_plan(cfg) == chunks and chase.play_plan(chase.ChaseConfig()) == []


def test_comparison_pairs_the_same_episodes_of_base_adapted_and_mob() -> None:
    cfg = chase.ChaseConfig(episodes=2, limit_s=10.0)

    def phase(agent: list[tuple[bool, float]], mob: list[tuple[bool, float]]) -> dict[str, Any]:
        recs = [_record("agent", c, t, 0.2) for c, t in agent] + [_record("mob", c, t, 1.0) for c, t in mob]
        return chase.summarize(recs, cfg)

    base = phase([(True, 6.0), (False, 10.0)], [(True, 5.0), (True, 7.0)])
    adapted = phase([(True, 3.0), (True, 4.0)], [(True, 5.0), (False, 10.0)])
    cmp = chase.compare(base, adapted)
    assert cmp["pairs"] == [
        {"pair": 0, "base": 6.0, "adapted": 3.0, "mob": 5.0, "mob_base_phase": 5.0},
        {"pair": 1, "base": None, "adapted": 4.0, "mob": None, "mob_base_phase": 7.0},
    ]
    assert cmp["ratio_adapted_vs_mob"]["restricted_mean"] == round(3.5 / 7.5, 3)
    assert cmp["ratio_adapted_vs_base"]["restricted_mean"] == round(3.5 / 8.0, 3)
    assert cmp["ratio_adapted_vs_base"]["chase_after_start"] == round(3.3 / 5.8, 3)
    assert cmp["ratio_base_vs_mob"]["catch_rate_delta"] == -0.5
    assert cmp["pairs_adapted_faster_than_mob"] == 2 and cmp["pairs_adapted_faster_than_base"] == 2
    assert cmp["target"]["met"] and cmp["target"]["adapted_vs_mob_at_most"] == 0.9
    slow = chase.compare(base, phase([(True, 9.0), (True, 9.0)], [(True, 5.0), (True, 7.0)]))
    assert not slow["target"]["met"] and slow["ratio_adapted_vs_mob"]["restricted_mean"] == 1.5


def test_server_errors_count_refused_deliveries_during_restarts_apart() -> None:
    log = (
        "2026-12-07 21:42:27: ERROR[CurlFetch]: HTTPFetch for http://127.0.0.1:425/v1/events failed "
        "(Couldn't connect to server)\n"
        "2026-12-07 21:42:28: ERROR[Server]: something else\n"
    )
    assert chase.server_errors(log) == {"server_errors": 1, "deliveries_refused_while_restarting": 1}


def test_world_mt_enables_the_mobs_mod_once(tmp_path: Path) -> None:
    world = tmp_path / "w"
    chase.enable_world_mod(world, "mobs")
    chase.enable_world_mod(world, "mobs")
    lines = (world / "world.mt").read_text().splitlines()
    assert lines[0] == "gameid = minetest" and lines[-1] == "load_mod_mobs = true"
    assert "mod_storage_backend = sqlite3" in lines and len(lines) == 6
    (world / "world.mt").write_text("gameid = minetest\nload_mod_mobs = false\nload_mod_x = true\n")
    chase.enable_world_mod(world, "mobs")
    assert (world / "world.mt").read_text().splitlines() == [
        "gameid = minetest",
        "load_mod_x = true",
        "load_mod_mobs = true",
    ]


def test_the_mob_runs_at_the_agents_walk_speed() -> None:
    """Equal speeds by construction: the mob's run_velocity is the mod's agents.WALK_SPEED."""
    mod = (ROOT / "mods" / "luanti_tune_chase" / "init.lua").read_text()
    assert 'local SPEED = luanti_tune.require("agents").WALK_SPEED' in mod
    assert "run_velocity = SPEED," in mod
    agents = (ROOT / "mods" / "luanti_tune" / "src" / "agents.lua").read_text()
    assert "agents.WALK_SPEED = 4\n" in agents


# ---------------------------------------------------------------------- real server, service, client


@pytest.mark.luanti
def test_agent_and_mob_catch_a_steered_real_client(tmp_path: Path) -> None:
    _need_real_game()
    work, records_path, png = tmp_path / "run", tmp_path / "episodes.jsonl", tmp_path / "chase.png"
    args = ["chase", "--episodes", "2", "--limit", "12", "--train-minutes", "0.3", "--work-dir", str(work)]
    args += ["--records", str(records_path), "--plot", str(png)]
    out = CliRunner().invoke(bench, args, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    report = json.loads(out.output.strip().splitlines()[-1])
    records = [json.loads(line) for line in records_path.read_text().splitlines()]
    assert report["bench"] == "chase" and len(records) == 4
    assert not any(r.get("error") for r in records)
    summary = report["summary"]
    # both chasers catch the player at least once, from the same offsets
    for chaser in ("agent", "mob"):
        recs = [r for r in records if r["chaser"] == chaser]
        assert len(recs) == 2 and any(r["caught"] for r in recs), recs
        assert summary[chaser]["caught"] >= 1 and summary[chaser]["mean_catch_s"] is not None
        # appeared about --offset (8) nodes away (the player moves on while the chaser spawns)
        assert all(5.5 < r["d0"] < 10.5 for r in recs), [r["d0"] for r in recs]
    assert "ratio_agent_vs_mob" in summary
    # the mob really moves: it leaves where it appeared and the distance changes
    for r in (r for r in records if r["chaser"] == "mob"):
        s = r["samples"]
        moved = max(((x[6] - s[0][6]) ** 2 + (x[7] - s[0][7]) ** 2) ** 0.5 for x in s)
        assert moved > 2.0, r["id"]
        assert max(x[1] for x in s) - min(x[1] for x in s) > 2.0, r["id"]
        assert r["start_s"] is not None
    # the agent was decided by the pursuit champion of the real service, and moved too
    assert report["model"]["served"]["name"].startswith("pursuit"), report["model"]
    assert report["act"]["requests"] > 0 and report["act"]["failures"] == 0
    assert summary["agent"]["started"] == 2 and summary["agent"]["start_moving_s_mean"] < 3.0
    # equal speeds: both chasers run at the agents' walk speed (measured), the player at about its own
    assert report["chaser_speed"] == 4
    for chaser in ("agent", "mob"):
        assert 3.0 < summary[chaser]["chaser_speed_mean"] < 4.5, summary[chaser]
    # the player's reported velocity is non-zero while steered (real velocity, not teleports)
    for r in records:
        speeds = [(x[4] ** 2 + x[5] ** 2) ** 0.5 for x in r["samples"]]
        assert sum(v > 1.0 for v in speeds) >= 0.8 * len(speeds), (r["id"], speeds)
    assert 3.0 < summary["agent"]["player_speed_mean"] < 5.0
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["server_errors"] == 0
    assert not _left_over(work)


@pytest.mark.luanti
def test_adaptation_trains_on_what_the_agent_saw_of_the_client_and_reports_both_agents(tmp_path: Path) -> None:
    """A game minute of adaptation: what the agent saw of the real client is stored as agent.track
    events, the service's worker trains a pursuit cycle on them, and the report has the base and
    the adapted agent on the same episodes, and the mob."""
    _need_real_game()
    from luanti_tune.store import EventQuery, open_store

    work, records_path = tmp_path / "run", tmp_path / "episodes.jsonl"
    args = ["chase", "--episodes", "1", "--limit", "10", "--train-minutes", "0.2", "--adapt-minutes", "1"]
    args += ["--work-dir", str(work), "--records", str(records_path)]
    out = CliRunner().invoke(bench, args, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    report = json.loads(out.output.strip().splitlines()[-1])
    ad = report["adaptation"]
    # what the agent saw of the client while it played, in the adaptation's store
    store = open_store(f"sqlite:///{work / 'events-adapt.db'}")
    try:
        tracks = [
            e
            for e in store.iter_events(EventQuery(types=("agent.track",)))
            if e["payload"]["target"] == "runner" and e["actor"]["name"].startswith("pursuit")
        ]
    finally:
        store.close()
    knots = sum(len(e["payload"]["tick"]) for e in tracks)
    assert len(tracks) >= 5 and knots >= 150, (len(tracks), knots)  # a minute of decisions, ~5 a second
    assert (ad["track_events"], ad["track_knots"]) == (len(tracks), knots)
    assert ad["game_minutes"] == pytest.approx(1.0, abs=0.05) and len(ad["chunks"]) == 1
    assert ad["chunks"][0]["chases"] >= 3 and ad["chunks"][0]["worker_settled"]
    # the service's worker ran a pursuit cycle over them: trained on the client's decision track
    state = json.loads((work / "data" / "worker" / "state.json").read_text())
    last = state["last"]["pursuit"]
    assert state["cycles"] >= 1 and last["status"] in ("promoted", "rejected"), state
    assert state["cursors"]["pursuit"] >= min(e["_id"] for e in tracks) and ad["track_events_trained"] >= 5
    manifest = json.loads((work / "models" / "pursuit" / last["version"] / "manifest.json").read_text())
    counts = manifest["dataset"]["new"]["counts"]
    assert counts["decisions"] > 0 and counts["per_player"].get("runner", 0) >= 200, counts
    # the client's own champion was judged (its verdicts are in the report), or the reason it was not
    scope = work / "models" / "pursuit@runner" / "history.jsonl"
    history = [json.loads(line) for line in scope.read_text().splitlines()] if scope.exists() else []
    assert [h["action"] for h in ad["scope_history"]] == [h["action"] for h in history]
    # base and adapted agent on the same episode, and the mob; the adapted one decided by what is served now
    records = [json.loads(line) for line in records_path.read_text().splitlines()]
    assert [(r["phase"], r["chaser"]) for r in records] == [
        ("base", "agent"),
        ("base", "mob"),
        ("adapted", "agent"),
        ("adapted", "mob"),
    ]
    assert len({(r["dx"], r["dz"], r["seed"]) for r in records}) == 1 and not any(r.get("error") for r in records)
    base_agent, adapted_agent = records[0], records[2]
    assert base_agent["model"] == report["base"]["served"] == {"name": "pursuit", "version": "v0001"}
    assert adapted_agent["model"] == ad["after"]["model"] == report["model"]["served"]
    if ad["after"]["scope_champion"]:
        assert ad["after"]["scope_served"] and adapted_agent["model"]["name"] == "pursuit@runner"
    cmp = report["comparison"]
    for key in ("base", "adapted", "mob", "mob_base_phase"):
        assert cmp[key]["episodes"] == 1 and cmp[key]["restricted_mean_s"] is not None, cmp[key]
    assert cmp["adapted"]["times_s"] == [adapted_agent["time_s"] if adapted_agent["caught"] else None]
    for key in ("ratio_adapted_vs_mob", "ratio_adapted_vs_base", "ratio_base_vs_mob"):
        assert cmp[key]["restricted_mean"] is not None, cmp[key]
    assert isinstance(cmp["target"]["met"], bool)
    assert report["summary"]["agent"]["times_s"] == cmp["adapted"]["times_s"]
    assert report["base"]["summary"]["agent"]["times_s"] == cmp["base"]["times_s"]
    assert report["act"]["failures"] == 0 and report["base"]["act"]["failures"] == 0
    assert report["server_errors"] == 0
    assert not _left_over(work)


@pytest.mark.luanti
def test_ctrl_c_stops_every_process_the_benchmark_started(tmp_path: Path) -> None:
    _need_real_game()
    work = tmp_path / "run"
    cmd = [sys.executable, "-c", "from luanti_tune.cli.main import main; main()", "bench", "chase"]
    cmd += ["--episodes", "2", "--limit", "8", "--train-minutes", "0.2", "--work-dir", str(work)]
    log = tmp_path / "bench.out"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        episodes = work / "world" / "luanti_tune_chase_episodes.jsonl"
        deadline = time.monotonic() + 120
        while not (episodes.exists() and episodes.read_text().strip()) and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.3)
        assert episodes.exists(), log.read_text()[-3000:]
        # service, server, client (xvfb-run, Xvfb, minetest) run; then Ctrl-C in the middle of an episode
        assert len(_processes_mentioning(str(work))) >= 4, _processes_mentioning(str(work))
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not _left_over(work), log.read_text()[-2000:]
