"""The engine on columnar batches (the ``columns`` wire format) decides and logs exactly as on rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from luanti_tune.inference.decision_log import DecisionLogger
from luanti_tune.inference.engine import EngineConfig, InferenceEngine
from luanti_tune.inference.registry_source import RegistrySource
from luanti_tune.policies.batch import ObservationBatch
from luanti_tune.registry import Registry
from luanti_tune.schemas.agent import Observation
from luanti_tune.serve.wire_columns import read_columns, rows_to_columns
from luanti_tune.store.base import EventQuery, open_store


@pytest.fixture(scope="module")
def registry_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from luanti_tune.policies.pursuit import architecture, build_module

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(3)
    arch = architecture()
    reg = Registry(root)
    version = reg.save("pursuit", module=build_module(arch), architecture=arch, name="pursuit-cols")
    reg.promote("pursuit", version, reason="test", force=True)
    return root


def step(n: int, tick: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """``n`` agents at ``tick``: mostly one targeted player, some unusual views and a navigation agent."""

    def vec(scale: float) -> dict[str, float]:
        x, y, z = rng.normal(0, scale, 3).round(3).tolist()
        return {"x": x, "y": y, "z": z}

    out = []
    for i in range(n):
        o: dict[str, Any] = {"agent": f"e{i}", "kind": "pursuit", "tick": tick, "pos": vec(20), "velocity": vec(1)}
        shape = i % 7
        if shape == 1:  # two players, the named one targeted
            o["entities"] = [
                {"kind": "player", "name": "bob", "rel": vec(3)},
                {"kind": "player", "name": "alice", "rel": vec(6), "velocity": vec(2)},
            ]
            o["targets"] = ["alice"]
        elif shape == 2:  # a mob only: no target
            o["entities"] = [{"kind": "mob", "rel": vec(4)}]
        elif shape == 3:  # nothing in view
            pass
        elif shape == 4:  # unnamed player without velocity (estimated from the track)
            o["entities"] = [{"kind": "player", "rel": vec(5)}]
        elif shape == 5 and i % 2:
            o["kind"] = "navigation"  # no model: the scripted fallback answers
            o["goal"] = vec(10)
        else:
            o["entities"] = [{"kind": "player", "name": "alice", "rel": vec(6), "velocity": vec(2)}]
            o["targets"] = ["alice"]
        out.append(o)
    return out


def test_columns_rows_and_typed_batches_decide_and_log_the_same(registry_dir: Path, tmp_path: Path) -> None:
    engines, stores = [], []
    for name in ("cols", "rows", "typed"):
        store = open_store(f"sqlite:///{tmp_path / name}.db")
        log = DecisionLogger(store, sample_rate=0.3, seed=7, source="engine-test")
        eng = InferenceEngine(RegistrySource(Registry(registry_dir)), config=EngineConfig(onnx=True), decision_log=log)
        engines.append(eng)
        stores.append(store)
    rng = np.random.default_rng(0)
    try:
        for tick in range(100, 112):
            obs = step(60, tick, rng)
            cols = read_columns(orjson.dumps(rows_to_columns(obs)), msgpack=False, max_agents=100)
            typed = [Observation.model_validate(o) for o in obs]
            rows = ObservationBatch.from_observations(typed)  # a rows request: pydantic, then columns
            assert cols.cols is not None and rows.cols is not None
            results = [engines[0].decide(cols), engines[1].decide(rows), engines[2].decide(typed)]
            wires = [r.wire() for r in results]
            assert wires[0] == wires[1] == wires[2]
            assert results[0].refs == results[1].refs == results[2].refs
            assert results[0].fallback == results[1].fallback == results[2].fallback
            assert any(r is not None and r[0].startswith("scripted:") for r in results[0].refs)
            assert sum(1 for w in wires[0] if w and w["type"] == "move") > 30
        for eng in engines:
            eng.close()
        logged = [
            [
                (e["actor"], e["pos"], e["time"]["tick"], e["payload"])
                for e in s.iter_events(EventQuery(types=("agent.act",)))
            ]
            for s in stores
        ]
        assert len(logged[0]) > 100 and logged[0] == logged[1] == logged[2]  # same seed: same sample
    finally:
        for s in stores:
            s.close()


def test_take_and_concat_of_column_batches_decide_like_typed(registry_dir: Path) -> None:
    a, b = (InferenceEngine(RegistrySource(Registry(registry_dir)), config=EngineConfig(onnx=False)) for _ in "ab")
    rng = np.random.default_rng(1)
    try:
        for tick in range(10, 14):
            first, second = step(30, tick, rng), step(20, tick, rng)
            for o in second:
                o["agent"] = "x" + o["agent"]
            parts = [
                read_columns(orjson.dumps(rows_to_columns(p)), msgpack=False, max_agents=100) for p in (first, second)
            ]
            merged = ObservationBatch.concat(parts)
            order = list(range(49, -1, -1))
            picked = merged.take(order)
            assert picked.cols is not None
            typed = [Observation.model_validate(o) for o in first + second]
            assert list(picked) == [typed[i] for i in order]
            assert a.decide(picked).wire() == b.decide([typed[i] for i in order]).wire()
    finally:
        a.close()
        b.close()


def test_a_server_stream_decides_like_the_adapter_on_its_own(registry_dir: Path) -> None:
    """Step after step the same agents, each chasing one named player (the engine then reuses the
    last step's agent list, target keys and track slots): the engine's actions equal the adapter's
    own featurize -> forward -> decode on a plain memory, also when targets and order change."""
    from luanti_tune.policies.pursuit import PursuitAdapter

    eng = InferenceEngine(RegistrySource(Registry(registry_dir)), config=EngineConfig(onnx=True))
    served = eng.models.by_family["pursuit"]
    alone, memory = PursuitAdapter(served.adapter.arch), {}  # type: ignore[attr-defined]
    rng = np.random.default_rng(4)
    agents = [f"e{i}" for i in range(200)]
    try:
        for tick in range(50, 62):
            if tick == 55:
                agents = agents[::-1]  # the same agents in another order
            obs = []
            for i, agent in enumerate(agents):
                name = "bob" if tick >= 58 and i % 3 == 0 else "alice"  # some switch targets
                rel = rng.normal(0, 6, 3).round(3).tolist()
                obs.append(
                    {
                        "agent": agent,
                        "kind": "pursuit",
                        "tick": tick,
                        "pos": {"x": float(i), "y": 0.0, "z": 0.0},
                        "entities": [{"kind": "player", "name": name, "rel": dict(zip("xyz", rel, strict=True))}],
                        "targets": [name],
                    }
                )
            body = orjson.dumps(rows_to_columns(obs))
            got = eng.decide(read_columns(body, msgpack=False, max_agents=1000)).wire()
            typed = [Observation.model_validate(o) for o in obs]
            want = alone.decode_columns(typed, served.runner(alone.featurize(typed, memory))).wire()
            assert got == want, tick
    finally:
        eng.close()
