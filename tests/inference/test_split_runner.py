"""The pursuit module split for serving: compiled heading-frame ends around an ONNX MLP.

The split must compute what the whole PyTorch module computes; ``checked_runner`` serves it only
when it does, and the whole graph otherwise.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from test_onnx_rewrite import OUTPUTS, _inputs, _pursuit

from luanti_tune.inference.runtime import SplitRunner, TorchRunner, checked_runner
from luanti_tune.policies.base import SplitForward
from luanti_tune.policies.pursuit import INPUTS, PursuitAdapter, architecture, build_module


def _split(module: Any) -> SplitForward:
    split = PursuitAdapter(architecture()).split_forward(module)
    assert split is not None
    return split


def _through_torch_core(split: SplitForward, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``post(core(pre(x)))`` with the core in eager PyTorch (no ONNX involved)."""
    core_in, frame = split.pre(feeds)
    return split.post(TorchRunner(split.core, split.core_inputs, split.core_outputs)(core_in), frame)


def test_compiled_ends_around_the_core_equal_the_whole_module() -> None:
    module = _pursuit()
    whole = TorchRunner(module, INPUTS, OUTPUTS)
    split = _split(module)
    for n in (1, 7, 500):
        feeds = _inputs(n, seed=n)
        if n > 1:
            feeds["threat"][0, 2] = 0.0  # no threat: its features are zero
            feeds["vel"][1] = [-1e-3, 0.0]  # with a standing history: a heading of zero length -> NaN
            feeds["hist"][1] = 0.0
        ref, got = whole(feeds), _through_torch_core(split, feeds)
        for name in OUTPUTS:
            assert got[name].shape == ref[name].shape and got[name].dtype == np.float32
            np.testing.assert_array_equal(np.isfinite(got[name]), np.isfinite(ref[name]))
            np.testing.assert_allclose(got[name], ref[name], rtol=1e-5, atol=2e-5, equal_nan=True)
        if n > 1:
            assert np.isnan(got["mean"][1]).all() and np.isfinite(got["mean"][2:]).all()


def test_checked_runner_serves_the_split_and_it_decides_like_pytorch() -> None:
    module = _pursuit()
    split = _split(module)
    samples = [_inputs(64), _inputs(1, seed=1)]
    runner, report = checked_runner(module, samples, INPUTS, OUTPUTS, split=split)
    assert isinstance(runner, SplitRunner) and report.runtime == "onnx" and report.extra["graph"] == "split"
    assert report.max_abs_diff < 1e-4
    adapter = PursuitAdapter(architecture())
    feeds = _inputs(400, seed=11)
    rel = feeds["threat"][:, :2].astype(np.float64) + 3.0
    a, b = TorchRunner(module, INPUTS, OUTPUTS)(feeds), runner(feeds)
    aim_a, _ = adapter.intercept(rel, a["mean"], a["log_std"])
    aim_b, _ = adapter.intercept(rel, b["mean"], b["log_std"])
    assert np.abs(aim_a - aim_b).max() < 1e-3  # the same grid point for every agent


def test_a_split_that_computes_something_else_is_refused_and_the_whole_graph_serves() -> None:
    module = _pursuit()
    split = _split(module)

    def unclamped_post(outputs: dict[str, np.ndarray], frame: np.ndarray) -> dict[str, np.ndarray]:
        out = split.post(outputs, frame)
        return {"mean": out["mean"], "log_std": out["log_std"] + 0.01}  # a small, systematic error

    wrong = dataclasses.replace(split, post=unclamped_post)
    runner, report = checked_runner(module, [_inputs(64)], INPUTS, OUTPUTS, split=wrong)
    assert not isinstance(runner, SplitRunner)
    assert report.runtime == "onnx" and report.extra["graph"] == "rewritten"


@pytest.mark.parametrize("case", ["numpy adapter", "other history", "not a PursuitNet"])
def test_no_split_without_the_kernels_or_for_another_module(case: str) -> None:
    import torch

    adapter = PursuitAdapter(architecture(), compiled=case != "numpy adapter")
    module = {
        "numpy adapter": _pursuit(),
        "other history": build_module(architecture(history=5)),
        "not a PursuitNet": torch.nn.Linear(3, 3),
    }[case]
    assert adapter.split_forward(module) is None


def test_the_split_refuses_inputs_of_the_wrong_shape() -> None:
    split = _split(_pursuit())
    feeds = _inputs(4)
    feeds["hist"] = feeds["hist"][:, :5]
    with pytest.raises(ValueError, match="hist"):
        split.pre(feeds)
    core_in, frame = split.pre(_inputs(4))
    with pytest.raises(ValueError, match="MLP"):
        split.post({"out": np.zeros((4, 5), dtype=np.float32)}, frame)
