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
from luanti_tune.policies.pursuit import INPUTS, LOG_STD_MAX, LOG_STD_MIN, PursuitAdapter, architecture, build_module

fam_min, fam_max = np.float32(LOG_STD_MIN), np.float32(LOG_STD_MAX)


def _split(module: Any) -> SplitForward:
    split = PursuitAdapter(architecture()).split_forward(module)
    assert split is not None
    return split


def _through_torch_core(split: SplitForward, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``post(core(pre(x)))`` with the core in eager PyTorch (no ONNX involved)."""
    core_in, frame = split.pre(feeds)
    return split.post(TorchRunner(split.core, split.core_inputs, split.core_outputs)(core_in), frame)


@pytest.mark.parametrize("head_std", [0.3, 30.0])
def test_compiled_ends_around_the_core_equal_the_whole_module(head_std: float) -> None:
    """Also with a head so large that ``log_std`` is clamped at both ends (``head_std=30``), and
    for headings of zero, underflowing and overflowing length (float32, as in the graph)."""
    import torch

    module = _pursuit()
    with torch.no_grad():
        torch.nn.init.normal_(module.mlp[-1].weight, std=head_std)
    whole = TorchRunner(module, INPUTS, OUTPUTS)
    split = _split(module)
    for n in (1, 7, 500):
        feeds = _inputs(n, seed=n)
        if n > 1:
            feeds["threat"][0, 2] = 0.0  # no threat: its features are zero
            feeds["hist"][1:4] = 0.0  # standing histories, headings from the velocity alone:
            feeds["vel"][1] = [-1e-3, 0.0]  # zero length -> NaN
            feeds["vel"][2] = [-1e-3, 1e-25]  # a length whose square underflows in float32 -> NaN
            feeds["vel"][3] = [3e19, 0.0]  # a square that overflows: c = s = 0
        ref, got = whole(feeds), _through_torch_core(split, feeds)
        for name in OUTPUTS:
            assert got[name].shape == ref[name].shape and got[name].dtype == np.float32
            np.testing.assert_array_equal(np.isfinite(got[name]), np.isfinite(ref[name]))
            np.testing.assert_allclose(got[name], ref[name], rtol=1e-5, atol=2e-5, equal_nan=True)
        if n > 1:
            assert np.isnan(got["mean"][1:3]).all() and np.isfinite(got["mean"][3:]).all()
        if head_std > 1:
            finite = got["log_std"][np.isfinite(got["log_std"])]
            assert finite.min() == fam_min and finite.max() == fam_max  # both bounds reached


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

    def biased_post(outputs: dict[str, np.ndarray], frame: np.ndarray) -> dict[str, np.ndarray]:
        out = split.post(outputs, frame)
        return {"mean": out["mean"], "log_std": out["log_std"] + 0.01}  # a small, systematic error

    wrong = dataclasses.replace(split, post=biased_post)
    runner, report = checked_runner(module, [_inputs(64)], INPUTS, OUTPUTS, split=wrong)
    assert not isinstance(runner, SplitRunner)
    assert report.runtime == "onnx" and report.extra["graph"] == "rewritten"


@pytest.mark.parametrize("case", ["other history", "not a PursuitNet"])
def test_no_split_for_another_module(case: str) -> None:
    import torch

    adapter = PursuitAdapter(architecture())
    module = {
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


def test_a_split_that_fails_on_a_sample_is_skipped_and_the_whole_graph_serves() -> None:
    module = _pursuit()
    split = _split(module)

    def fragile_pre(inputs: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], Any]:
        if len(inputs["hist"]) == 1:
            raise FloatingPointError("cannot do one row")
        return split.pre(inputs)

    fragile = dataclasses.replace(split, pre=fragile_pre)
    runner, report = checked_runner(module, [_inputs(64), _inputs(1, seed=1)], INPUTS, OUTPUTS, split=fragile)
    assert not isinstance(runner, SplitRunner)
    assert report.runtime == "onnx" and report.extra["graph"] == "rewritten"
