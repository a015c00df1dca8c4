"""The compiled pursuit loops (``policies/pursuit_kernels.py``) against their definitions.

The track update is checked end to end against the per-agent reference in
``test_pursuit_batched.py``; here the intercept search, whose
segment skipping must never skip the answer, is checked against the plain definition: the first
point of the time grid, on the path through the predicted horizons, within the agent's reach.
"""

from __future__ import annotations

import numpy as np
import pytest

from luanti_tune.policies import pursuit as fam
from luanti_tune.policies import pursuit_kernels as kernels
from luanti_tune.schemas.agent import Observation


def plain_intercept(
    adapter: fam.PursuitAdapter, rel: np.ndarray, mean: np.ndarray, log_std: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Grid point by grid point, every row (no skipping), in float64."""
    idx, w, w0, reach2, _ = adapter._segments
    n = len(rel)
    aim, std = np.empty((n, 2)), np.empty(n)
    with np.errstate(invalid="ignore", over="ignore"):
        for i in range(n):
            d = np.concatenate([np.zeros((1, 2)), mean[i].astype(np.float64)])
            first = len(idx) - 1
            for g in range(len(idx)):
                p = rel[i] + (d[idx[g]] * w0[g] + d[idx[g] + 1] * w[g])
                if p[0] * p[0] + p[1] * p[1] <= reach2[g]:
                    first = g
                    break
            j = idx[first]
            aim[i] = rel[i] + (d[j] * w0[first] + d[j + 1] * w[first])
            e = np.exp(log_std[i].astype(np.float64))
            std[i] = (e[j - 1] if j > 0 else 0.0) * w0[first] + e[j] * w[first]
    return aim, std


def hard_cases(adapter: fam.PursuitAdapter, rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    """Targets near and far, paths through the reach boundary, targets exactly at the reach of
    a grid time, standing still on the agent, and non-finite predictions."""
    rel = rng.normal(0, 1, (n, 2)) * rng.choice([0.5, 3.0, 12.0, 60.0], (n, 1))
    mean = (rng.normal(0, 1, (n, len(adapter.horizons), 2)) * rng.choice([0.2, 3.0, 15.0], (n, 1, 1))).astype(
        np.float32
    )
    at_reach = rng.random(n) < 0.15
    g = rng.integers(0, len(adapter._grid), n)
    r = adapter.agent_speed * adapter._grid[g] + adapter.catch_radius
    ang = rng.uniform(0, 2 * np.pi, n)
    rel[at_reach] = np.stack([np.cos(ang) * r, np.sin(ang) * r], axis=1)[at_reach]
    mean[at_reach] = 0.0
    mean[rng.random(n) < 0.03] = 0.0
    rel[rng.random(n) < 0.03] = 0.0
    mean[rng.random(n) < 0.03, 1, 0] = np.nan
    mean[rng.random(n) < 0.02, -1, 1] = np.inf
    mean[rng.random(n) < 0.01, 0, 0] = -np.inf
    log_std = rng.normal(0, 1, (n, len(adapter.horizons))).astype(np.float32)
    return rel, mean, log_std


def test_intercept_kernel_finds_the_first_reachable_grid_point() -> None:
    rng = np.random.default_rng(0)
    for arch in ({}, {"horizons": [0.3, 0.6, 1.2, 2.4, 4.0], "agent_speed": 2.5, "catch_radius": 0.4}):
        adapter = fam.PursuitAdapter(arch)
        for _ in range(4):
            rel, mean, log_std = hard_cases(adapter, rng, 3000)
            aim, std = adapter.intercept(rel, mean, log_std)
            want_aim, want_std = plain_intercept(adapter, rel, mean, log_std)
            np.testing.assert_array_equal(aim, want_aim)  # the same grid point, the same arithmetic
            np.testing.assert_allclose(std, want_std, rtol=1e-14)  # libm's exp vs numpy's
        # the sample has many targets out of reach (where the search skips whole segments)
        assert (np.hypot(*rel.T) > 2 * (adapter.agent_speed * adapter._grid[-1] + adapter.catch_radius)).sum() > 300


def test_decide_rows_is_intercept_then_the_decision_rule() -> None:
    rng = np.random.default_rng(2)
    adapter = fam.PursuitAdapter()
    rel, mean, log_std = hard_cases(adapter, rng, 4000)
    has = rng.random(len(rel)) < 0.9
    move, d, conf = kernels.decide_rows(rel, has, mean, log_std, adapter._segments)
    aim, std = adapter.intercept(rel, mean, log_std)
    with np.errstate(invalid="ignore", divide="ignore"):
        vec = np.where((np.hypot(aim[:, 0], aim[:, 1]) > 1e-6)[:, None], aim, rel)
        norm = np.hypot(vec[:, 0], vec[:, 1])
        want_move = has & np.isfinite(norm) & ~(norm < 1e-9)
        want_conf = np.where(want_move, 1.0 / (1.0 + std / (1.0 + np.hypot(rel[:, 0], rel[:, 1]))), 0.5 * has)
        np.testing.assert_array_equal(move, want_move)
        np.testing.assert_array_equal(conf, want_conf)
        np.testing.assert_array_equal(d[:, 0], np.where(want_move, vec[:, 0] / norm, 0.0))
        np.testing.assert_array_equal(d[:, 2], np.where(want_move, vec[:, 1] / norm, 0.0))
    assert not d[:, 1].any()
    assert 0 < move.sum() < has.sum()  # both rules are exercised


def test_outputs_of_the_wrong_shape_are_refused() -> None:
    """A model with fewer horizons than the adapter's architecture: an error (the engine then
    answers with the fallback policy), never a read past the end of the outputs."""
    adapter = fam.PursuitAdapter()
    rel = np.full((4, 2), 50.0)
    mean, log_std = np.ones((4, 2, 2), np.float32), np.zeros((4, 2), np.float32)
    with pytest.raises(ValueError):
        adapter.intercept(rel, mean, log_std)
    obs = [
        Observation.model_validate(
            {
                "agent": f"e{i}",
                "kind": "pursuit",
                "tick": 1,
                "pos": {"x": 0, "y": 0, "z": 0},
                "entities": [{"kind": "player", "rel": {"x": 50, "y": 0, "z": 50}}],
            }
        )
        for i in range(4)
    ]
    with pytest.raises(ValueError):
        adapter.decode_columns(obs, {"mean": mean, "log_std": log_std})


def test_a_negative_agent_speed_is_refused() -> None:
    with pytest.raises(ValueError, match="agent_speed"):
        fam.architecture(agent_speed=-1.0)
    assert fam.architecture(agent_speed=0.0)["agent_speed"] == 0.0


def test_touch_rows_reads_one_value_per_cache_line_of_the_given_rows() -> None:
    rng = np.random.default_rng(5)
    xz = (rng.normal(size=(40, 32)) + 1j * rng.normal(size=(40, 32))).astype(np.complex128)
    knot = rng.random((40, 32)) < 0.5
    slots = rng.permutation(40)[:25].astype(np.intp)
    want = float(xz[slots][:, ::4].real.sum() + knot[slots, 0].sum())
    assert kernels.touch_rows(xz, knot, slots) == pytest.approx(want, rel=1e-12)
    assert kernels.touch_rows(xz, knot, slots[:0]) == 0.0
