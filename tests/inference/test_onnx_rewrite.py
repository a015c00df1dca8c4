"""The exact ONNX graph rewrites served by ``checked_runner``: same outputs, checked, plain export as fallback."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from luanti_tune.inference import runtime
from luanti_tune.inference.runtime import OnnxRunner, checked_runner, export_onnx, rewrite_onnx
from luanti_tune.policies.pursuit import INPUTS, architecture, build_module

OUTPUTS = ("mean", "log_std")


def _pursuit() -> Any:
    import torch

    torch.manual_seed(3)
    module = build_module(architecture())
    with torch.no_grad():  # the head starts at zero; give it weights so every output depends on the MLP
        torch.nn.init.normal_(module.mlp[-1].weight, std=0.3)
        torch.nn.init.normal_(module.mlp[-1].bias, std=0.3)
    return module.eval()


def _inputs(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    hist = np.cumsum(rng.normal(0, 0.5, (n, 8, 2)), axis=1).astype(np.float32)
    threat = np.concatenate([rng.normal(0, 5, (n, 2)), rng.integers(0, 2, (n, 1))], axis=1).astype(np.float32)
    return {"hist": hist, "vel": rng.normal(0, 1, (n, 2)).astype(np.float32), "threat": threat}


def test_rewritten_pursuit_graph_gives_the_plain_exports_outputs() -> None:
    module = _pursuit()
    plain_bytes = export_onnx(module, _inputs(16), INPUTS, OUTPUTS)
    rewritten_bytes, counts = rewrite_onnx(plain_bytes)
    assert rewritten_bytes != plain_bytes
    # the slow constant-index Gathers of x[:, 0] / x[..., 1] are gone, as is the [N,1]*[1,K] broadcast
    assert all(counts[k] > 0 for k in ("split", "slice", "squeeze", "outer", "expand")), counts

    import onnx

    ops = [n.op_type for n in onnx.load_from_string(rewritten_bytes).graph.node]
    assert "Gather" not in ops
    plain = OnnxRunner(plain_bytes, INPUTS, OUTPUTS)
    fast = OnnxRunner(rewritten_bytes, INPUTS, OUTPUTS)
    for n in (1, 2, 37, 1000):
        feeds = _inputs(n, seed=n)
        feeds["hist"][0] = np.inf if n > 1 else feeds["hist"][0]  # non-finite rows propagate the same way
        a, b = plain(feeds), fast(feeds)
        for name in OUTPUTS:
            assert a[name].shape == b[name].shape
            np.testing.assert_array_equal(a[name], b[name])


def test_gathers_on_the_batch_axis_and_negative_indices_keep_their_meaning() -> None:
    import torch

    class Picks(torch.nn.Module):
        def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            first_row = x[0]  # Gather on the symbolic batch axis: must stay a Gather
            last = x[..., -1]  # negative constant index on a static axis
            col = (y[:, 1] * 2.0)[:, None]
            return last * first_row[:, -1] + col[:, 0][:, None] * y, x[:, 2, 0][:, None] * y[:, :1].T[:, :1]

    module = Picks().eval()
    rng = np.random.default_rng(1)
    sample = {"x": rng.normal(size=(5, 3, 4)).astype(np.float32), "y": rng.normal(size=(5, 3)).astype(np.float32)}
    plain_bytes = export_onnx(module, sample, ("x", "y"), ("a", "b"))
    rewritten_bytes, counts = rewrite_onnx(plain_bytes)
    assert counts["slice"] == 5 and counts["squeeze"] >= 1 and counts["outer"] == 1 and counts["expand"] == 1, counts
    import onnx

    assert [n.op_type for n in onnx.load_from_string(rewritten_bytes).graph.node].count("Gather") == 1
    with torch.inference_mode():
        ref = [t.numpy() for t in module(*(torch.from_numpy(sample[k]) for k in ("x", "y")))]
    got = OnnxRunner(rewritten_bytes, ("x", "y"), ("a", "b"))(sample)
    np.testing.assert_allclose(got["a"], ref[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got["b"], ref[1], rtol=1e-6, atol=1e-6)


def test_widened_columns_keep_operand_order_and_row_broadcasts() -> None:
    import torch

    class Columns(torch.nn.Module):
        def forward(self, col: torch.Tensor, m: torch.Tensor, row: torch.Tensor) -> tuple[torch.Tensor, ...]:
            c = col * 3.0 - 1.0  # [N, 1]
            return c - m, m / c, c + row, row / c, (c * m) * (m - c)  # [N,K] both orders, [1,K] rows, c reused

    module = Columns().eval()
    rng = np.random.default_rng(2)
    names, outs = ("col", "m", "row"), ("a", "b", "c", "d", "e")
    sample = {
        "col": rng.normal(size=(6, 1)).astype(np.float32),
        "m": rng.normal(size=(6, 4)).astype(np.float32),
        "row": rng.normal(size=(1, 4)).astype(np.float32),
    }
    rewritten_bytes, counts = rewrite_onnx(export_onnx(module, sample, names, outs))
    assert counts["expand"] == 6, counts
    import onnx

    ops = [n.op_type for n in onnx.load_from_string(rewritten_bytes).graph.node]
    assert ops.count("MatMul") == 1  # the column is widened once for all six ops
    for n in (1, 6, 50):
        feeds = {k: rng.normal(size=(n if k != "row" else 1, v.shape[1])).astype(np.float32) for k, v in sample.items()}
        with torch.inference_mode():
            ref = [t.numpy() for t in module(*(torch.from_numpy(feeds[k]) for k in names))]
        got = OnnxRunner(rewritten_bytes, names, outs)(feeds)
        for name, r in zip(outs, ref, strict=True):
            assert got[name].shape == r.shape
            np.testing.assert_allclose(got[name], r, rtol=1e-6, atol=1e-6)


def test_checked_runner_serves_the_rewritten_graph_and_reports_it() -> None:
    runner, report = checked_runner(_pursuit(), [_inputs(64), _inputs(1, seed=1)], INPUTS, OUTPUTS)
    assert report.runtime == "onnx" and report.reason is None
    assert isinstance(runner, OnnxRunner) and sum(report.extra["rewrites"].values()) > 0
    assert b"__lt_rw_" in runner.model_bytes


def test_a_rewritten_graph_that_fails_the_check_falls_back_to_the_plain_export(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnx
    from onnx import helper, numpy_helper

    def corrupting(model_bytes: bytes) -> tuple[bytes, dict[str, int]]:
        """A valid graph whose ``mean`` is off by 1 (a rewrite bug the check must catch)."""
        model = onnx.load_from_string(model_bytes)
        g = model.graph
        g.initializer.append(numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"))
        for n in g.node:
            n.output[:] = ["mean_raw" if o == "mean" else o for o in n.output]
        g.node.append(helper.make_node("Add", ["mean_raw", "one"], ["mean"]))
        return model.SerializeToString(), {"split": 1}

    monkeypatch.setattr(runtime, "rewrite_onnx", corrupting)
    runner, report = checked_runner(_pursuit(), [_inputs(32)], INPUTS, OUTPUTS)
    assert report.runtime == "onnx" and "rewrites" not in report.extra
    assert isinstance(runner, OnnxRunner) and b"mean_raw" not in runner.model_bytes

    def broken(model_bytes: bytes) -> tuple[bytes, dict[str, int]]:
        raise ValueError("rewrite bug")

    monkeypatch.setattr(runtime, "rewrite_onnx", broken)
    runner, report = checked_runner(_pursuit(), [_inputs(32)], INPUTS, OUTPUTS)
    assert report.runtime == "onnx" and "rewrites" not in report.extra
