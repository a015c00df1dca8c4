"""ONNX export of a registry version (the inference engine does its own parity checks)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from luanti_tune.errors import ModelError
from luanti_tune.registry.registry import LoadedModel

log = logging.getLogger(__name__)


def export_onnx(model: LoadedModel, out: Path | str, *, opset: int = 17, check: bool = True) -> dict[str, Any]:
    """Write ``model`` as ONNX to ``out`` (inputs/outputs named as the adapter's, dynamic batch).

    With ``check``, runs ONNX Runtime on the adapter's example inputs and reports the largest
    absolute difference to PyTorch. Returns ``{"path", "max_abs_diff"}``.
    """
    import torch

    inputs = model.adapter.example_inputs(4)
    if inputs is None or not hasattr(model.module, "forward"):
        raise ModelError(f"model family {model.family!r} does not support ONNX export")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    names_in = list(model.adapter.input_names)
    names_out = list(model.adapter.output_names)
    args = tuple(torch.from_numpy(inputs[n]) for n in names_in)
    axes = {n: {0: "batch"} for n in names_in + names_out}
    try:
        torch.onnx.export(
            model.module,
            args,
            str(out),
            input_names=names_in,
            output_names=names_out,
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
        )
    except Exception as exc:
        raise ModelError(f"ONNX export of {model.family}:{model.version} failed: {exc}") from exc
    report: dict[str, Any] = {"path": str(out), "max_abs_diff": None}
    if check:
        import onnxruntime as ort

        sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        got = sess.run(names_out, {n: inputs[n] for n in names_in})
        ref = model.forward(inputs)
        report["max_abs_diff"] = float(max(np.abs(g - ref[n]).max() for g, n in zip(got, names_out, strict=True)))
    log.info("exported %s:%s to %s", model.family, model.version, out)
    return report
