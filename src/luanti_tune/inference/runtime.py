"""Forward runners (eager PyTorch, ONNX Runtime) and the checked ONNX export.

A runner maps the adapter's named float32 input arrays to named output arrays. At export the
ONNX graph is run next to the PyTorch module on sample inputs (several batch sizes); when any
output differs beyond the tolerance, or decoding picks a different action, or the export itself
fails, the engine keeps serving eager PyTorch and the report says why.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray]


class Runner(Protocol):
    """``runner(inputs) -> outputs``; thread-compatible, called by one thread at a time."""

    kind: str

    def __call__(self, inputs: Arrays) -> Arrays: ...


def _outputs_to_arrays(result: Any, output_names: Sequence[str]) -> Arrays:
    import torch

    if isinstance(result, torch.Tensor):
        result = (result,)
    if isinstance(result, dict):
        return {n: result[n].detach().cpu().numpy() for n in output_names}
    if len(result) != len(output_names):
        raise ValueError(f"module returned {len(result)} outputs, adapter names {len(output_names)}")
    return {n: t.detach().cpu().numpy() for n, t in zip(output_names, result, strict=True)}


class TorchRunner:
    """Eager PyTorch in inference mode; inputs are passed positionally in ``input_names`` order."""

    kind = "torch"

    def __init__(self, module: Any, input_names: Sequence[str], output_names: Sequence[str]) -> None:
        self.module = module.eval()
        self.input_names = tuple(input_names)
        self.output_names = tuple(output_names)

    def __call__(self, inputs: Arrays) -> Arrays:
        import torch

        with torch.inference_mode():
            args = [torch.from_numpy(np.ascontiguousarray(inputs[n], dtype=np.float32)) for n in self.input_names]
            return _outputs_to_arrays(self.module(*args), self.output_names)


class OnnxRunner:
    """ONNX Runtime session with bounded threads (intra-op ``threads``, inter-op 1, sequential)."""

    kind = "onnx"

    def __init__(self, model_bytes: bytes, input_names: Sequence[str], output_names: Sequence[str], threads: int = 1):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(model_bytes, sess_options=opts, providers=["CPUExecutionProvider"])
        self.input_names = tuple(input_names)
        self.output_names = tuple(output_names)
        self.model_bytes = model_bytes

    def __call__(self, inputs: Arrays) -> Arrays:
        feeds = {n: np.ascontiguousarray(inputs[n], dtype=np.float32) for n in self.input_names}
        outs = self.session.run(list(self.output_names), feeds)
        return dict(zip(self.output_names, outs, strict=True))


@dataclass
class ExportReport:
    """What the export check found; ``runtime`` is the runner the engine serves with."""

    runtime: str = "torch"
    exported: bool = False
    max_abs_diff: float = float("nan")
    same_actions: bool | None = None
    samples: int = 0
    reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def export_onnx(module: Any, sample: Arrays, input_names: Sequence[str], output_names: Sequence[str]) -> bytes:
    """Export ``module`` to ONNX bytes with a dynamic batch dimension on every input and output."""
    import torch

    module = module.eval()
    args = tuple(torch.from_numpy(np.ascontiguousarray(sample[n], dtype=np.float32)) for n in input_names)
    buf = io.BytesIO()
    dyn = {n: {0: "batch"} for n in (*input_names, *output_names)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                module,
                args,
                buf,  # type: ignore[arg-type]  # file-like objects are accepted at run time
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_axes=dyn,
                dynamo=False,
                opset_version=17,
            )
        except Exception as exc:  # noqa: BLE001 - fall back to the dynamo exporter
            log.info("TorchScript ONNX export failed (%s); trying the dynamo exporter", exc)
            buf = io.BytesIO()
            batch = torch.export.Dim("batch", min=1, max=1_000_000)
            torch.onnx.export(
                module,
                args,
                buf,  # type: ignore[arg-type]  # file-like objects are accepted at run time
                input_names=list(input_names),
                output_names=list(output_names),
                dynamo=True,
                dynamic_shapes=tuple({0: batch} for _ in input_names),
            )
    return buf.getvalue()


def checked_runner(
    module: Any,
    samples: Sequence[Arrays],
    input_names: Sequence[str],
    output_names: Sequence[str],
    *,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    threads: int = 1,
    same_decisions: Callable[[int, Arrays, Arrays], bool] | None = None,
    prefer_onnx: bool = True,
) -> tuple[Runner, ExportReport]:
    """Export to ONNX and verify against eager PyTorch on ``samples``; return the runner to serve.

    ``same_decisions(sample_index, torch_out, onnx_out)`` optionally compares the decoded actions.
    """
    torch_runner = TorchRunner(module, input_names, output_names)
    report = ExportReport(samples=sum(len(next(iter(s.values()))) for s in samples if s))
    if not prefer_onnx:
        report.reason = "onnx disabled"
        return torch_runner, report
    if not samples:
        report.reason = "no sample inputs to check the export against"
        return torch_runner, report
    try:
        model_bytes = export_onnx(module, samples[0], input_names, output_names)
        onnx_runner = OnnxRunner(model_bytes, input_names, output_names, threads=threads)
        report.exported = True
    except Exception as exc:  # noqa: BLE001 - any export/load failure means serve PyTorch
        report.reason = f"export failed: {type(exc).__name__}: {exc}"[:500]
        log.warning("ONNX export failed, serving PyTorch: %s", report.reason)
        return torch_runner, report
    worst = 0.0
    same = True
    for idx, inputs in enumerate(samples):
        ref = torch_runner(inputs)
        got = onnx_runner(inputs)
        for n in output_names:
            a, b = ref[n].astype(np.float64), got[n].astype(np.float64)
            if a.shape != b.shape:
                report.reason = f"output {n}: shape {b.shape} != {a.shape}"
                return torch_runner, report
            if not np.all(np.isfinite(b) == np.isfinite(a)):
                report.reason = f"output {n}: non-finite values differ"
                return torch_runner, report
            diff = np.abs(a - b)
            worst = max(worst, float(np.nanmax(diff)) if diff.size else 0.0)
            if not np.allclose(b, a, atol=atol, rtol=rtol, equal_nan=True):
                report.max_abs_diff = worst
                report.reason = f"output {n} differs from PyTorch (max abs diff {worst:.3g})"
                log.warning("ONNX check failed, serving PyTorch: %s", report.reason)
                return torch_runner, report
        if same_decisions is not None and not same_decisions(idx, ref, got):
            same = False
    report.max_abs_diff = worst
    report.same_actions = same if same_decisions is not None else None
    if not same:
        report.reason = "decoded actions differ between ONNX Runtime and PyTorch"
        log.warning("ONNX check failed, serving PyTorch: %s", report.reason)
        return torch_runner, report
    report.runtime = "onnx"
    return onnx_runner, report
