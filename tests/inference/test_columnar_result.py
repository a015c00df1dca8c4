"""The columnar decision path (``decode_columns`` -> blocks in :class:`BatchResult`) answers exactly
like the typed path, through fallbacks, per-agent errors, micro-batch slicing and partial mode."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from toyfamily import _DIRS, ToyAdapter, make_module, observations

from luanti_tune.inference.engine import EngineConfig, InferenceEngine
from luanti_tune.inference.result import BatchResult
from luanti_tune.inference.source import ModelCandidate, StaticModelSource
from luanti_tune.policies.batch import DecisionColumns, ObservationBatch
from luanti_tune.schemas.agent import Observation

_DIR_ARRAY = np.array([[d.dir.x, d.dir.y, d.dir.z] for d in _DIRS] + [[0.0, 0.0, 0.0]])


class ColumnarToy(ToyAdapter):
    """The toy family with a columnar decode (same decisions as ``ToyAdapter.decode``)."""

    def decode_columns(self, observations: Sequence[Observation], outputs: dict[str, np.ndarray]) -> DecisionColumns:
        logits = np.asarray(outputs["logits"], dtype=np.float64)
        z = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        best = logits.argmax(axis=1)
        agents = ObservationBatch.of(observations).agents
        return DecisionColumns(agents, best != 8, _DIR_ARRAY[best], np.ones(len(best)), p.max(axis=1))


class FlakyColumnarToy(ColumnarToy):
    """Refuses agents whose name ends in 7 (their observation 'cannot be used')."""

    def featurize(self, observations: Sequence[Observation], memory: Any) -> dict[str, np.ndarray]:
        for o in ObservationBatch.of(observations).agents:
            if o.endswith("7"):
                raise ValueError(f"cannot use {o}")
        return super().featurize(observations, memory)


def _engine(adapter: ToyAdapter, min_confidence: float) -> InferenceEngine:
    cand = ModelCandidate("pursuit", "toy-pursuit", "v1", make_module(4), adapter)
    return InferenceEngine(StaticModelSource([cand]), config=EngineConfig(min_confidence=min_confidence))


def _model_rows(result: BatchResult) -> list[int]:
    """The rows of ``result``'s columnar blocks that the model decided."""
    return [i for rows, _ in result.blocks for i in rows.tolist() if result.refs[i] == ("toy-pursuit", "v1")]


def _dumps(result: BatchResult) -> list[Any]:
    return [None if a is None else a.model_dump(mode="json") for a in result.actions]


@pytest.mark.parametrize("min_confidence", [0.0, 0.35])
def test_columnar_decode_answers_like_typed_decode(min_confidence: float) -> None:
    typed, columnar = _engine(ToyAdapter(), min_confidence), _engine(ColumnarToy(), min_confidence)
    for step in range(3):
        obs = observations(400, seed=50 + step)
        want, got = typed.decide(obs), columnar.decide(ObservationBatch.of(list(obs)))
        assert _model_rows(got) and not _model_rows(want)  # (the scripted fallback decides in columns)
        assert _dumps(got) == _dumps(want)
        assert got.refs == want.refs and got.fallback == want.fallback and got.errors == want.errors
        assert got.wire() == want.wire() == _dumps(want)
        assert got.wire_rows([0, 17, 399]) == [want.wire()[i] for i in (0, 17, 399)]
    if min_confidence:  # the threshold really sent agents to the scripted policy
        assert 20 < len(got.fallback) < 380 and set(got.fallback.values()) == {"low_confidence"}
    typed.close()
    columnar.close()


def test_slices_and_spreads_of_a_mixed_result_keep_every_row() -> None:
    engine = _engine(FlakyColumnarToy(), 0.35)
    obs = observations(300, seed=9)
    r = engine.decide(obs)
    # every row is answered exactly once: by the model block, by the fallback or as an error
    in_blocks = sorted(i for rows, _ in r.blocks for i in rows.tolist())
    typed = [i for i, a in enumerate(r.typed) if a is not None]
    assert sorted(in_blocks + typed + sorted(r.errors)) == list(range(300))
    assert r.errors and r.fallback and in_blocks
    assert all(o.agent.endswith("7") for i, o in enumerate(obs) if i in r.errors)
    full = r.wire()
    assert [i for i, w in enumerate(full) if w is None] == sorted(r.errors)
    for start, stop in [(0, 300), (0, 1), (17, 18), (5, 150), (150, 300), (299, 300), (40, 40)]:
        part = r.slice(start, stop)
        assert part.wire() == full[start:stop]
        assert _dumps(part) == _dumps(r)[start:stop]
        assert part.refs == r.refs[start:stop]
        assert part.fallback == {i - start: f for i, f in r.fallback.items() if start <= i < stop}
        assert {i: e["loc"] for i, e in part.errors.items()} == {
            i - start: f"observations[{i - start}]" for i in r.errors if start <= i < stop
        }
    positions = list(range(0, 600, 2))  # every other row of a 600-row request
    wide = r.spread(600, positions)
    assert [wide.wire()[p] for p in positions] == full
    assert all(wide.wire()[p] is None for p in range(1, 600, 2))
    assert {positions[i] for i in r.errors} == set(wide.errors)
    engine.close()


def test_a_model_unsure_of_every_agent_leaves_no_empty_block() -> None:
    """Every row below the confidence threshold: all answered by the fallback (one block of its
    own), no empty block of the model left behind (readers such as the decision log look rows up
    in the blocks)."""
    engine = _engine(ColumnarToy(), 1.0)
    r = engine.decide(observations(30, seed=3))
    assert set(r.fallback.values()) == {"low_confidence"} and len(r.fallback) == 30
    assert not _model_rows(r) and all(len(rows) for rows, _ in r.blocks)
    assert r.wire() == _dumps(r) and None not in r.wire()
    engine.close()


def test_json_answers_are_the_dict_answers_byte_for_byte(monkeypatch: pytest.MonkeyPatch) -> None:
    """``render_json``/``wire_json`` write what ``orjson.dumps`` of the dict answer gives: one model
    for every agent (written from the columns, no dict per row), fallbacks, errors, slices."""
    import orjson

    from luanti_tune.serve.act import render, render_json

    cases = []
    for engine in (_engine(ColumnarToy(), 0.0), _engine(ColumnarToy(), 0.35), _engine(FlakyColumnarToy(), 0.0)):
        obs = ObservationBatch.of(list(observations(300, seed=11)))
        r = engine.decide(obs)
        cases += [(r, obs), (r.slice(5, 150), obs[5:150]), (r.slice(40, 40), obs[40:40])]
        engine.close()
    common = cases[0][0]
    assert not common.fallback and not common.errors and len(common.blocks) == 1
    assert {w["type"] for w in common.wire()} == {"move", "wait"}  # both kinds of rows written
    assert cases[3][0].fallback and cases[6][0].errors
    for r, obs in cases:
        assert r.wire_json() == orjson.dumps(r.wire())
        assert render_json(r, obs) == orjson.dumps(render(r, obs))
    # the common answer really is written from the columns: no dict per row is built
    monkeypatch.setattr(DecisionColumns, "wire", lambda *a, **k: pytest.fail("built dicts"))
    assert orjson.loads(render_json(common, cases[0][1]))["actions"][0]["agent"] == cases[0][1].agents[0]


@pytest.mark.parametrize("n", [0, 1, 2, 57])
def test_decision_columns_json_is_the_dicts_json(n: int) -> None:
    import orjson

    rng = np.random.default_rng(n)
    agents = [f"a-{i}" for i in range(n)]
    if n >= 2:  # names orjson must escape, and ones that look like the row separator
        agents[0], agents[1] = 'we"ird\\","x', "\u00e9\u4e2d"
    d = rng.normal(0, 1, (n, 3))
    speed = rng.random(n)
    if n:
        d[0] = [np.nan, -0.0, 1e-7]
        speed[-1] = np.inf
    mixed = rng.random(n) < 0.5
    for move in (np.ones(n, bool), np.zeros(n, bool), mixed, mixed.astype(np.int8)):  # 0/1 read as bools
        cols = DecisionColumns(agents, move, d, speed, np.ones(n))
        assert cols.wire_json() == orjson.dumps(cols.wire())
