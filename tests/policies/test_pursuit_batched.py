"""The batched (vectorised) pursuit adapter gives exactly what the per-agent implementation gave.

``Reference`` below is a frozen copy of the per-agent ``featurize``/``decode`` the adapter had
before it was vectorised (one ``window_features`` call and dict/list memory per agent). A rich
randomised sequence of batches (agents coming and going, histories of every length, agents
without a target or with several, unnamed players, missing velocities, ticks repeating or going
backwards a little or a lot, one agent twice in a batch, more than 8 targets per agent, hot swaps
of the adapter over the same memory, small batches mixed with large ones) must give the same features
and the same actions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from luanti_tune.inference.sessions import SessionStore
from luanti_tune.policies import pursuit as fam
from luanti_tune.policies.base import Decision
from luanti_tune.policies.batch import ObservationBatch
from luanti_tune.schemas.agent import EntityView, MoveAction, MoveArgs, Observation, WaitAction
from luanti_tune.schemas.common import Vec3


def ref_select_target(obs: Observation) -> EntityView | None:
    by_name = {e.name: e for e in obs.entities if e.name}
    for name in obs.targets:
        if name in by_name:
            return by_name[name]
    players = [e for e in obs.entities if e.kind == "player"]
    if not players:
        return None
    return min(players, key=lambda e: e.rel.x**2 + e.rel.z**2)


class Reference(fam.PursuitAdapter):
    """The per-agent implementation (frozen copy), memory as ``{"tracks": {key: [(t, x, z), ...]}}``."""

    def featurize(self, observations: Sequence[Observation], memory: Any) -> dict[str, np.ndarray]:
        n = len(observations)
        hist = np.zeros((n, self.history, 2), dtype=np.float32)
        vel = np.zeros((n, 2), dtype=np.float32)
        threat = np.zeros((n, 3), dtype=np.float32)
        for i, obs in enumerate(observations):
            target = ref_select_target(obs)
            if target is None:
                continue
            if target.rel.x**2 + target.rel.z**2 <= fam.THREAT_RANGE**2:
                threat[i] = (-target.rel.x, -target.rel.z, 1.0)
            t = obs.tick * fam.TICK_S
            ax, az = obs.pos.x + target.rel.x, obs.pos.z + target.rel.z
            mem = memory.setdefault(obs.agent, {})
            tracks: dict[str, list[tuple[float, float, float]]] = mem.setdefault("tracks", {})
            key = target.name or "_nearest"
            track = tracks.setdefault(key, [])
            if track and t <= track[-1][0]:
                if t < track[-1][0] - self.keep_s:
                    track.clear()
                else:
                    track.pop()
            track.append((t, ax, az))
            while track and track[0][0] < t - self.keep_s:
                track.pop(0)
            if len(tracks) > 8:
                for k in [k for k, tr in tracks.items() if k != key and tr[-1][0] < t - self.keep_s]:
                    del tracks[k]
            arr = np.asarray(track, dtype=np.float64)
            hist[i] = fam.window_features(arr[:, 0], arr[:, 1:], np.array([t]), self.history, self.hist_dt)[0]
            if target.velocity is not None:
                vel[i] = (target.velocity.x, target.velocity.z)
            elif len(arr) >= 2 and arr[-1, 0] > arr[-2, 0]:
                vel[i] = (arr[-1, 1:] - arr[-2, 1:]) / (arr[-1, 0] - arr[-2, 0])
        return {"hist": hist, "vel": vel, "threat": threat}

    def decode(self, observations: Sequence[Observation], outputs: dict[str, np.ndarray]) -> list[Decision]:
        rel = np.zeros((len(observations), 2))
        has = np.zeros(len(observations), dtype=bool)
        for i, obs in enumerate(observations):
            target = ref_select_target(obs)
            if target is not None:
                rel[i] = (target.rel.x, target.rel.z)
                has[i] = True
        aim, std = self.intercept(rel, np.asarray(outputs["mean"]), np.asarray(outputs["log_std"]))
        decisions: list[Decision] = []
        for i, obs in enumerate(observations):
            if not has[i]:
                decisions.append(Decision(WaitAction(agent=obs.agent, type="wait"), confidence=0.0))
                continue
            vec = aim[i] if np.hypot(*aim[i]) > 1e-6 else rel[i]
            norm = float(np.hypot(*vec))
            if not math.isfinite(norm) or norm < 1e-9:
                decisions.append(Decision(WaitAction(agent=obs.agent, type="wait"), confidence=0.5))
                continue
            dist = float(np.hypot(*rel[i]))
            conf = 1.0 / (1.0 + float(std[i]) / (1.0 + dist))
            args = MoveArgs.model_construct(
                dir=Vec3.model_construct(x=float(vec[0] / norm), y=0.0, z=float(vec[1] / norm)), speed=1.0
            )
            decisions.append(Decision(MoveAction.model_construct(agent=obs.agent, type="move", args=args), conf))
        return decisions


# ----------------------------------------------------------------------------- random worlds

NAMES = ["alice", "bob", "carol", "dave", "eve", "frank", "grace", "heidi", "ivan", "judy", "mallory"]


def _vec(rng: np.random.Generator, scale: float) -> dict[str, float]:
    x, y, z = rng.normal(0, scale, 3).round(3).tolist()
    return {"x": x, "y": y, "z": z}


def _entities(rng: np.random.Generator) -> tuple[list[dict[str, Any]], list[str]]:
    style = rng.integers(0, 10)
    if style == 0:
        return [], []  # nothing in view
    if style == 1:  # only mobs/items: no target
        return [{"kind": str(rng.choice(["mob", "item"])), "rel": _vec(rng, 5)} for _ in range(rng.integers(1, 4))], []
    ents: list[dict[str, Any]] = []
    for _ in range(int(rng.integers(1, 6))):
        e: dict[str, Any] = {"kind": str(rng.choice(["player", "player", "agent", "mob"])), "rel": _vec(rng, 12)}
        if rng.random() < 0.8:
            e["name"] = str(rng.choice(NAMES))  # duplicates happen: the last one of a name wins
        if rng.random() < 0.7:
            e["velocity"] = _vec(rng, 3)
        if rng.random() < 0.05:
            e["rel"] = {"x": 0.0, "y": 0.0, "z": 0.0}  # standing on the agent
        ents.append(e)
    if style == 2:
        return ents, []  # nearest player (named or not)
    targets = [str(t) for t in rng.choice(NAMES, size=int(rng.integers(1, 4)), replace=False)]
    return ents, targets


def _obs(rng: np.random.Generator, agent: str, tick: int) -> Observation:
    ents, targets = _entities(rng)
    raw = {"agent": agent, "kind": "pursuit", "tick": tick, "pos": _vec(rng, 30), "entities": ents, "targets": targets}
    return Observation.model_validate(raw)


def _many_targets_obs(agent: str, tick: int, k: int) -> Observation:
    """An agent that sees a different named player every step (to exercise forgetting)."""
    name = f"p{k}"
    raw = {
        "agent": agent,
        "kind": "pursuit",
        "tick": tick,
        "pos": {"x": 1.0 * k, "y": 0, "z": 0},
        "entities": [{"kind": "player", "name": name, "rel": {"x": 2.0, "y": 0, "z": 1.0 + k}}],
        "targets": [name],
    }
    return Observation.model_validate(raw)


def batches(seed: int, steps: int = 60, agents: int = 120) -> list[list[Observation]]:
    rng = np.random.default_rng(seed)
    ticks = {f"e{i}": int(rng.integers(0, 50)) for i in range(agents)}
    out: list[list[Observation]] = []
    for step in range(steps):
        batch: list[Observation] = []
        for a in list(ticks):
            if rng.random() < 0.15:
                continue  # absent this step: histories of different lengths
            r = rng.random()
            if r < 0.75:
                ticks[a] += 1
            elif r < 0.82:
                ticks[a] += int(rng.integers(2, 8))  # skipped steps
            elif r < 0.86:
                pass  # same tick again
            elif r < 0.90:
                ticks[a] = max(0, ticks[a] - int(rng.integers(1, 6)))  # a little back
            elif r < 0.92:
                ticks[a] = max(0, ticks[a] - int(rng.integers(30, 60)))  # far back: new episode
            else:
                ticks[a] += 1
            batch.append(_obs(rng, a, ticks[a]))
        if step % 7 == 3:  # an agent twice in one batch (second one later in time)
            a = next(iter(ticks))
            batch.append(_obs(rng, a, ticks[a] + 1))
        if step % 11 == 5:  # new agents join
            for j in range(5):
                ticks[f"n{step}-{j}"] = int(rng.integers(0, 1000))
        batch.append(_many_targets_obs("hoarder", 10 * step, step))
        order = rng.permutation(len(batch))
        out.append([batch[i] for i in order])
    return out


def _outputs(rng: np.random.Generator, n: int, horizons: int) -> dict[str, np.ndarray]:
    mean = rng.normal(0, 3, (n, horizons, 2)).astype(np.float32)
    log_std = rng.normal(0, 1, (n, horizons)).astype(np.float32)
    mean[rng.random(n) < 0.05] = 0.0
    bad = rng.random(n) < 0.02
    mean[bad, 0, 0] = np.nan
    return {"mean": mean, "log_std": log_std}


def assert_same_decisions(got: list[Decision], want: list[Decision]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert type(g.action) is type(w.action)
        assert g.action.model_dump() == w.action.model_dump()
        assert g.action == w.action
        assert g.action.model_fields_set == w.action.model_fields_set
        assert g.confidence == w.confidence


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batched_adapter_equals_per_agent_reference(seed: int) -> None:
    """The reference decodes with the same ``intercept`` (tested on its own in ``test_pursuit_kernels.py``)."""
    new, ref = fam.PursuitAdapter(), Reference()
    mem_new: dict[str, Any] = {}
    mem_ref: dict[str, Any] = {}
    rng = np.random.default_rng(100 + seed)
    seen = 0
    for step, batch in enumerate(batches(seed)):
        if step == 30:  # hot swap: a fresh adapter takes over the same memory
            new = fam.PursuitAdapter()
        if step % 5 == 2:  # small batches (agent by agent inside the adapter), same memory
            parts = [new.featurize(batch[j : j + 3], mem_new) for j in range(0, len(batch), 3)]
            got = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        else:
            got = new.featurize(batch, mem_new)
        want = ref.featurize(batch, mem_ref)
        for k in want:
            assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape
            np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-6, err_msg=f"{k} at step {step}")
        outputs = _outputs(rng, len(batch), len(new.horizons))
        assert_same_decisions(new.decode(batch, outputs), ref.decode(batch, outputs))
        seen += len(batch)
        # the same tracks are remembered (per agent and target, the same knots)
        assert set(mem_new) == set(mem_ref)
        for agent, m in mem_ref.items():
            assert new.tracks_of(mem_new, agent) == m["tracks"], agent
    assert seen > 5000
    assert len(mem_ref["hoarder"]["tracks"]) <= 9
    assert len(new.tracks_of(mem_new, "hoarder")) <= 9


def test_decode_without_featurize_and_on_fresh_memory() -> None:
    """decode does not depend on a preceding featurize; a fresh memory means no history."""
    batch = batches(7, steps=1, agents=300)[0]
    new, ref = fam.PursuitAdapter(), Reference()
    outputs = _outputs(np.random.default_rng(3), len(batch), len(new.horizons))
    assert_same_decisions(new.decode(batch, outputs), ref.decode(batch, outputs))
    for _ in range(2):
        got, want = new.featurize(batch, {}), ref.featurize(batch, {})
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-6)
    assert new.featurize([], {})["hist"].shape == (0, new.history, 2)
    assert new.decode([], {"mean": np.zeros((0, 3, 2)), "log_std": np.zeros((0, 3))}) == []


def _namespaces(obs: Observation) -> Any:
    """``obs`` as plain attribute objects (like the fast wire decoder's structs: no pydantic)."""

    def conv(x: Any) -> Any:
        if isinstance(x, dict):
            return SimpleNamespace(**{k: conv(v) for k, v in x.items()})
        if isinstance(x, list):
            return [conv(v) for v in x]
        return x

    return conv(obs.model_dump())


def test_session_store_memory_struct_items_and_hot_swap() -> None:
    """Engine memory (a SessionStore), items that are not pydantic objects, a hot swap: same as the reference."""
    new, ref = fam.PursuitAdapter(), Reference()
    mem_new = SessionStore(max_agents=100_000)
    mem_ref: dict[str, Any] = {}
    rng = np.random.default_rng(11)
    for step, batch in enumerate(batches(3, steps=40, agents=150)):
        if step == 20:
            new = fam.PursuitAdapter()  # takes over the same memory
        items = ObservationBatch([_namespaces(o) for o in batch]) if step % 2 else ObservationBatch(batch)
        got = new.featurize(items, mem_new)
        want = ref.featurize(batch, mem_ref)
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-6, err_msg=f"{k} at step {step}")
        outputs = _outputs(rng, len(batch), len(new.horizons))
        cols = new.decode_columns(items, outputs)
        assert list(cols.agents) == [o.agent for o in batch]
        assert_same_decisions(cols.decisions(), ref.decode(batch, outputs))
        assert set(mem_new) == set(mem_ref)
        for agent, m in mem_ref.items():
            assert new.tracks_of(mem_new, agent) == m["tracks"], agent


def test_evicted_agents_release_their_tracks() -> None:
    """12,000 churning agent ids through a bounded SessionStore: the adapter's state stays flat."""
    adapter = fam.PursuitAdapter()
    store = SessionStore(max_agents=500, ttl_s=3600)
    base = batches(5, steps=1, agents=200)[0]
    base = [o for o in base if o.agent != "hoarder"]
    sizes = []
    for step in range(60):  # 60 x ~200 distinct agent ids (about half with a target: memory), 12x the bound
        obs = [o.model_copy(update={"agent": f"churn-{step}-{i}", "tick": step}) for i, o in enumerate(base)]
        store.touch(o.agent for o in obs)
        adapter.featurize(obs, store)
        store.enforce()
        table = fam._registered_table(store)
        assert table is not None
        sizes.append((len(table), table.capacity))
    assert store.evicted > 10 * 500
    in_use = {n for n, _ in sizes[5:]}
    assert max(in_use) <= 500 + len(base)  # tracks of live agents only (+ this batch before enforce)
    assert len({c for _, c in sizes[10:]}) == 1  # the table stopped growing: slots are reused
    # a returning agent that was evicted starts a fresh track
    again = [o.model_copy(update={"agent": "churn-0-0", "tick": 100}) for o in base[:1]]
    fresh = Reference().featurize(again, {})
    got = adapter.featurize(again, store)
    for k in fresh:
        np.testing.assert_allclose(got[k], fresh[k], rtol=0, atol=1e-6)


def test_hot_swap_to_a_longer_history_keeps_the_tracks() -> None:
    """A model with a longer window takes over the memory: the track table widens, nothing is lost."""
    arch = {"history": 16, "hist_dt": 0.3}
    new, ref = fam.PursuitAdapter(), Reference()
    mem_new = SessionStore(max_agents=100_000)
    mem_ref: dict[str, Any] = {}
    for step, batch in enumerate(batches(4, steps=24, agents=80)):
        if step == 12:
            new, ref = fam.PursuitAdapter(arch), Reference(arch)
        got, want = new.featurize(batch, mem_new), ref.featurize(batch, mem_ref)
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-6, err_msg=f"{k} at step {step}")
        for agent, m in mem_ref.items():
            assert new.tracks_of(mem_new, agent) == m["tracks"], agent


def test_a_repeated_agent_list_is_found_by_identity_from_the_next_batch_on() -> None:
    """The slot lookup keeps the lists of a batch whose agents and targets only *equal* the cached
    ones, so the following batches (handed that list by ``SessionStore.touch``) skip comparing
    every name; features stay those of a fresh lookup."""
    adapter = fam.PursuitAdapter()
    memory = SessionStore(1000, 600.0)
    names = [f"e{i}" for i in range(50)]
    obs = [
        Observation.model_validate(
            {
                "agent": a,
                "kind": "pursuit",
                "tick": 10,
                "pos": {"x": float(i), "y": 0.0, "z": 0.0},
                "entities": [{"kind": "player", "name": "alice", "rel": {"x": 3.0, "y": 0.0, "z": 1.0}}],
                "targets": ["alice"],
            }
        )
        for i, a in enumerate(names)
    ]
    table = None
    for step in range(4):
        batch = ObservationBatch([o.model_copy(update={"tick": 10 + step}) for o in obs])
        batch.share_agents(memory.touch(batch.agents))
        feats = adapter.featurize(batch, memory)
        reference = Reference(adapter.arch).featurize(batch, {}) if step == 0 else None
        if reference is not None:
            np.testing.assert_array_equal(feats["hist"], reference["hist"])
        table = fam._registered_table(memory)
        assert table is not None and table.lookup is not None
        if step >= 1:  # the first batch created the agents' memories: the store handed out a new list once
            assert table.lookup[1] is batch.agents, step


def test_a_repeated_or_slightly_older_tick_takes_the_batched_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client retrying a request sends a tick again (the target may have moved since), or one a
    little older than the last after a skipped step: the ring replaces the last knot, as the
    per-agent algorithm does, and no row is updated one by one (a repeated tick costs what a new
    one costs). Only a tick going back over an earlier knot too leaves the ring."""
    slow: list[int] = []
    scalar_row = fam.PursuitAdapter._scalar_row

    def counted(self: fam.PursuitAdapter, *args: Any) -> None:
        slow.append(1)
        scalar_row(self, *args)

    monkeypatch.setattr(fam.PursuitAdapter, "_scalar_row", counted)
    new, ref = fam.PursuitAdapter(), Reference()
    mem_new = SessionStore(max_agents=10_000)
    mem_ref: dict[str, Any] = {}
    rng = np.random.default_rng(21)
    ticks = {f"a{i}": int(rng.integers(0, 100)) for i in range(300)}
    pos = {a: rng.normal(0, 20, 2) for a in ticks}
    rows = 0
    for step in range(60):
        batch: list[Observation] = []
        for a in ticks:
            r = rng.random()
            if r < 0.45 or step == 0:
                ticks[a] += int(rng.integers(1, 4))  # a new tick (steps skipped now and then)
            elif r < 0.9:
                pass  # the same tick again: a retry
            else:  # one tick older than the last, which came after a skipped step
                ticks[a] += 3
                batch.append(_target_obs(a, ticks[a], pos[a], rng))
                ticks[a] -= 1
            pos[a] = pos[a] + rng.normal(0, 0.5, 2)
            batch.append(_target_obs(a, ticks[a], pos[a], rng))
        # an agent twice in a batch is updated in rounds: each round's rows are distinct agents
        got, want = new.featurize(batch, mem_new), ref.featurize(batch, mem_ref)
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-6, err_msg=f"{k} at step {step}")
        for agent, m in mem_ref.items():
            assert new.tracks_of(mem_new, agent) == m["tracks"], agent
        rows += len(batch)
    assert rows > 15_000 and not slow
    # a tick back over the earlier knot as well: the track becomes a plain list, one by one
    again = [_target_obs("a0", ticks["a0"] - 1, pos["a0"], rng) for _ in range(1)]
    back = [_target_obs("a0", ticks["a0"] + 1, pos["a0"], rng)]
    for b in (back, again):
        got, want = new.featurize(b, mem_new), ref.featurize(b, mem_ref)
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-6)
        assert new.tracks_of(mem_new, "a0") == mem_ref["a0"]["tracks"]
    assert slow


def _target_obs(agent: str, tick: int, target_xz: np.ndarray, rng: np.random.Generator) -> Observation:
    """``agent`` at a random place, its named target at ``target_xz`` (with a velocity half the time)."""
    x, z = rng.normal(0, 10, 2).tolist()
    tx, tz = target_xz.tolist()
    entity: dict[str, Any] = {"kind": "player", "name": "alice", "rel": {"x": tx - x, "y": 0.0, "z": tz - z}}
    if rng.random() < 0.5:
        entity["velocity"] = _vec(rng, 2)
    raw = {
        "agent": agent,
        "kind": "pursuit",
        "tick": tick,
        "pos": {"x": x, "y": 0.0, "z": z},
        "entities": [entity],
        "targets": ["alice"],
    }
    return Observation.model_validate(raw)
