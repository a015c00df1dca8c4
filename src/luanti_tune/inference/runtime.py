"""Forward runners (eager PyTorch, ONNX Runtime) and the checked ONNX export.

A runner maps the adapter's named float32 input arrays to named output arrays. At export the
ONNX graph is run next to the PyTorch module on sample inputs (several batch sizes); when any
output differs beyond the tolerance, or decoding picks a different action, or the export itself
fails, the engine keeps serving eager PyTorch and the report says why.

Before serving, the exported graph gets a few exact peephole rewrites (:func:`rewrite_onnx`) that
replace ops ONNX Runtime's CPU kernels run slowly on small batched tensors: ``Gather`` of one
constant index (``x[:, 0]``, ``x[..., 1]``) becomes a ``Split``/``Slice`` + ``Squeeze`` (ORT's Gather
copies one element at a time along an inner axis), ``Gather`` right after an ``Unsqueeze`` of the
same axis disappears, an outer-product ``Mul`` of ``[N, 1]`` by ``[1, K]`` becomes a ``MatMul``, and a
``[N, 1]`` column broadcast over ``[M, K]`` rows is widened to ``[N, K]`` first (a ``MatMul`` by ones).
They only move values or multiply them by one, so the outputs are the same values (a ``-0.0`` may come
out as ``+0.0``); the rewritten graph is checked against PyTorch like the plain export, and the plain
export is the fallback if the rewritten one fails.

When the adapter splits the module (``split_forward``, :class:`~luanti_tune.policies.base.SplitForward`),
only the learned core is exported too, and a :class:`SplitRunner` (compiled pre-processing -> ONNX
core -> compiled post-processing) is the first candidate: checked against the whole PyTorch module
like the others, the whole-graph exports behind it.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import numpy as np

from luanti_tune.policies.base import FamilyAdapter, SplitForward

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


class SplitRunner:
    """``split.post(core(split.pre(inputs)))``: the whole module's inputs and outputs, with ONNX
    Runtime running only the split's learned core."""

    kind = "onnx"

    def __init__(self, split: SplitForward, core: OnnxRunner) -> None:
        self.split = split
        self.core = core

    def __call__(self, inputs: Arrays) -> Arrays:
        feeds, context = self.split.pre(inputs)
        return self.split.post(self.core(feeds), context)


def _attr(node: Any, name: str, default: Any = None) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _float_shapes(model: Any) -> dict[str, list[int | str | None]]:
    """Shapes of the float32 values of ``model`` after ONNX shape inference: a static size, the name of a
    symbolic dim (``"batch"``), or None when unknown."""
    from onnx import TensorProto, shape_inference

    inferred = shape_inference.infer_shapes(model)
    out: dict[str, list[int | str | None]] = {}
    for vi in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        t = vi.type.tensor_type
        if t.elem_type == TensorProto.FLOAT and t.HasField("shape"):
            out[vi.name] = [
                d.dim_value if d.HasField("dim_value") else (d.dim_param or None) if d.HasField("dim_param") else None
                for d in t.shape.dim
            ]
    return out


class _Rewriter:
    """One pass of :func:`rewrite_onnx` over a loaded ``onnx.ModelProto`` (nodes stay in topological order)."""

    def __init__(self, model: Any) -> None:
        from onnx import numpy_helper

        self.graph = model.graph
        self.consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in self.graph.initializer}
        for n in self.graph.node:
            if n.op_type == "Constant" and len(n.attribute) == 1 and n.attribute[0].name == "value":
                self.consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
        self.dims = _float_shapes(model)
        self.shapes = {k: [d if isinstance(d, int) else None for d in v] for k, v in self.dims.items()}
        self.producer = {o: n for n in self.graph.node for o in n.output}
        self.graph_outputs = {o.name for o in self.graph.output}
        self.counts = {"split": 0, "slice": 0, "squeeze": 0, "outer": 0, "expand": 0}
        self.expanded: dict[tuple[str, int], str] = {}
        self.alias: dict[str, str] = {}
        self.serial = 0
        # One Split per (input, static axis) when at least half of that axis's indices are gathered.
        used: dict[tuple[str, int], set[int]] = {}
        for n in self.graph.node:
            g = self.scalar_gather(n)
            if g is not None and g[3] is not None and g[3] > 1:
                used.setdefault((g[0], g[1]), set()).add(g[2])
        self.split_outs = {
            key: [self.name("split") for _ in range(dim)]
            for key, idx in used.items()
            if 2 * len(idx) >= (dim := self.shapes[key[0]][key[1]] or 0)
        }
        self.split_emitted: set[tuple[str, int]] = set()

    def name(self, what: str) -> str:
        self.serial += 1
        return f"__lt_rw_{what}{self.serial}"

    def const(self, arr: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.name("c")
        self.graph.initializer.append(numpy_helper.from_array(arr, name))
        return name

    def scalar_gather(self, n: Any) -> tuple[str, int, int, int | None] | None:
        """(input, axis, index, axis size) of a Gather of one constant index from a float tensor of known rank."""
        if n.op_type != "Gather" or len(n.input) != 2:
            return None
        idx, shape = self.consts.get(n.input[1]), self.shapes.get(n.input[0])
        if idx is None or idx.ndim != 0 or idx.dtype.kind not in "iu" or not shape:
            return None
        axis = int(_attr(n, "axis", 0))
        if not -len(shape) <= axis < len(shape):
            return None
        axis %= len(shape)
        d, i = shape[axis], int(idx)
        if d is None:
            return (n.input[0], axis, i, None) if i >= 0 else None
        return (n.input[0], axis, i % d, d) if -d <= i < d else None

    def gather(self, n: Any) -> list[Any] | None:
        """Replacement nodes for a constant-index Gather ([] when it is an alias), None to keep it."""
        from onnx import helper

        g = self.scalar_gather(n)
        if g is None or g[3] is None:
            return None
        x, axis, idx, d = g
        out = n.output[0]
        if d == 1:
            self.counts["squeeze"] += 1
            p = self.producer.get(x)
            if p is not None and p.op_type == "Unsqueeze" and len(p.input) == 2 and out not in self.graph_outputs:
                p_axes = self.consts.get(p.input[1])
                if p_axes is not None and [int(a) % len(self.shapes[x]) for a in p_axes.ravel()] == [axis]:
                    self.alias[out] = p.input[0]
                    return []
            return [
                helper.make_node(
                    "Squeeze", [x, self.const(np.array([axis], dtype=np.int64))], [out], name=f"{n.name}__lt_sq"
                )
            ]
        axes = self.const(np.array([axis], dtype=np.int64))
        if (x, axis) in self.split_outs:
            self.counts["split"] += 1
            outs = self.split_outs[(x, axis)]
            nodes = []
            if (x, axis) not in self.split_emitted:
                self.split_emitted.add((x, axis))
                sizes = self.const(np.ones(len(outs), dtype=np.int64))
                nodes.append(helper.make_node("Split", [x, sizes], outs, axis=axis, name=f"{n.name}__lt_split"))
            return [*nodes, helper.make_node("Squeeze", [outs[idx], axes], [out], name=f"{n.name}__lt_sq")]
        self.counts["slice"] += 1
        start, end = self.const(np.array([idx], dtype=np.int64)), self.const(np.array([idx + 1], dtype=np.int64))
        sliced = self.name("slice")
        return [
            helper.make_node("Slice", [x, start, end, axes], [sliced], name=f"{n.name}__lt_slice"),
            helper.make_node("Squeeze", [sliced, axes], [out], name=f"{n.name}__lt_sq"),
        ]

    def binary(self, n: Any) -> list[Any] | None:
        """Replacement nodes for a float elementwise op broadcasting a column over rows, None to keep it.

        ``Mul`` of ``[N, 1]`` by ``[1, K]`` becomes the MatMul outer product; ``Mul/Add/Sub/Div`` of ``[N, 1]``
        and ``[M, K]`` gets the column widened to ``[N, K]`` by a MatMul with ones first (shared by all ops
        widening that column to K), which leaves the rows' broadcast as it was: ORT broadcasts a column
        over a row one row at a time, ~10 ns a row.
        """
        from onnx import helper

        if n.op_type not in ("Mul", "Add", "Sub", "Div") or len(n.input) != 2 or n.output[0] not in self.shapes:
            return None
        a, b = self.dims.get(n.input[0]), self.dims.get(n.input[1])
        if a is None or b is None or not len(a) == len(b) == 2:
            return None
        if n.op_type == "Mul" and ((a[1] == 1 and b[0] == 1) or (b[1] == 1 and a[0] == 1)):
            pair = [n.input[0], n.input[1]] if a[1] == 1 else [n.input[1], n.input[0]]
            self.counts["outer"] += 1
            return [helper.make_node("MatMul", pair, [n.output[0]], name=f"{n.name}__lt_outer")]
        for col, (c, o) in enumerate(((a, b), (b, a))):  # noqa: B007 - col is used after the break
            k = o[1]
            if c[1] == 1 and isinstance(k, int) and k > 1 and c[0] != 1:
                break
        else:
            return None
        nodes = []
        x = n.input[col]
        wide = self.expanded.get((x, k))
        if wide is None:
            wide = self.expanded[(x, k)] = self.name("wide")
            ones = self.const(np.ones((1, k), dtype=np.float32))
            nodes.append(helper.make_node("MatMul", [x, ones], [wide], name=f"{n.name}__lt_widen"))
        n.input[col] = wide
        self.counts["expand"] += 1
        return [*nodes, n]

    def run(self) -> bool:
        """Rewrite the graph in place; True when anything changed."""
        nodes: list[Any] = []
        for n in self.graph.node:
            for k, name in enumerate(n.input):
                if name in self.alias:
                    n.input[k] = self.alias[name]
            new = self.gather(n)
            if new is None:
                new = self.binary(n)
            nodes.extend([n] if new is None else new)
        if not any(self.counts.values()):
            return False
        del self.graph.node[:]
        self.graph.node.extend(nodes)
        return True


def rewrite_onnx(model_bytes: bytes) -> tuple[bytes, dict[str, int]]:
    """Exact peephole rewrites of an exported graph for ONNX Runtime's CPU kernels; returns (bytes, counts).

    * ``Gather(x, c, axis)`` of a scalar constant ``c`` on a static axis of size ``d`` > 1: one ``Split`` for
      all such gathers of ``(x, axis)`` plus a ``Squeeze`` each when they take at least half of the ``d``
      indices, else ``Slice`` + ``Squeeze`` (``split`` / ``slice`` counts);
    * on an axis of size 1: the input of the ``Unsqueeze`` it undoes, else a ``Squeeze`` (``squeeze``);
    * ``Mul`` of float ``[N, 1]`` by ``[1, K]``: ``MatMul``, the same single products (``outer``);
    * ``Mul/Add/Sub/Div`` of a float ``[N, 1]`` column and ``[M, K]``: the column widened to ``[N, K]`` by a
      ``MatMul`` with ones, shared per (column, K) (``expand``).

    Graphs with subgraphs or a default-domain opset below 13 are returned unchanged.
    """
    import onnx

    model = onnx.load_from_string(model_bytes)
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    subgraphs = any(
        a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in model.graph.node for a in n.attribute
    )
    if opset < 13 or subgraphs:
        return model_bytes, {}
    rewriter = _Rewriter(model)
    if not rewriter.run():
        return model_bytes, rewriter.counts
    onnx.checker.check_model(model)
    return model.SerializeToString(), rewriter.counts


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


def _compare(
    torch_runner: TorchRunner,
    onnx_runner: Runner,
    samples: Sequence[Arrays],
    output_names: Sequence[str],
    atol: float,
    rtol: float,
    same_decisions: Callable[[int, Arrays, Arrays], bool] | None,
) -> tuple[str | None, float, bool | None]:
    """(reason the ONNX runner must not serve or None, max abs diff, same decoded actions or None)."""
    worst = 0.0
    same = True
    for idx, inputs in enumerate(samples):
        ref = torch_runner(inputs)
        got = onnx_runner(inputs)
        for n in output_names:
            a, b = ref[n].astype(np.float64), got[n].astype(np.float64)
            if a.shape != b.shape:
                return f"output {n}: shape {b.shape} != {a.shape}", worst, None
            if not np.all(np.isfinite(b) == np.isfinite(a)):
                return f"output {n}: non-finite values differ", worst, None
            diff = np.abs(a - b)
            worst = max(worst, float(np.nanmax(diff)) if diff.size else 0.0)
            if not np.allclose(b, a, atol=atol, rtol=rtol, equal_nan=True):
                return f"output {n} differs from PyTorch (max abs diff {worst:.3g})", worst, None
        if same_decisions is not None and not same_decisions(idx, ref, got):
            same = False
    if not same:
        return "decoded actions differ between ONNX Runtime and PyTorch", worst, False
    return None, worst, (True if same_decisions is not None else None)


class Exported(NamedTuple):
    """A module's ONNX graphs: the plain export, the rewritten one and what was rewritten (when
    rewriting changed anything), the split's core (when the module was split and its core exported)."""

    plain: bytes
    rewritten: bytes | None = None
    rewrites: dict[str, int] | None = None
    core: bytes | None = None


def export_graphs(
    module: Any,
    sample: Arrays,
    input_names: Sequence[str],
    output_names: Sequence[str],
    rewrite: bool = True,
    split: SplitForward | None = None,
) -> Exported:
    """The plain export, (when ``rewrite`` changes anything) the rewritten graph and (with a
    ``split``) its core's graph, exported on the core inputs of ``sample``."""
    plain = export_onnx(module, sample, input_names, output_names)
    core = None
    if split is not None:
        try:
            core = export_onnx(split.core, split.pre(sample)[0], split.core_inputs, split.core_outputs)
        except Exception as exc:  # noqa: BLE001 - a failed core export only costs speed
            log.info("export of the split core failed (%s: %s); checking the whole graph", type(exc).__name__, exc)
    if rewrite:
        try:
            rewritten, done = rewrite_onnx(plain)
            if rewritten is not plain:
                return Exported(plain, rewritten, done, core)
        except Exception as exc:  # noqa: BLE001 - a failed rewrite only costs speed
            log.info("ONNX graph rewrite failed (%s: %s); checking the plain export", type(exc).__name__, exc)
    return Exported(plain, None, None, core)


@dataclass(frozen=True)
class RegistryExport:
    """What a child process needs to export a registry version (see :func:`export_in_subprocess`)."""

    root: str
    family: str
    version: str
    sample: Arrays
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    rewrite: bool = True
    split: bool = False  # also export the core of the adapter's split_forward


def split_of(adapter: FamilyAdapter, module: Any) -> SplitForward | None:
    """``adapter.split_forward(module)``, ``None`` when the adapter has none or it fails."""
    try:
        return adapter.split_forward(module)
    except Exception as exc:  # noqa: BLE001 - no split only costs speed
        log.info("split_forward failed (%s: %s); serving the whole graph", type(exc).__name__, exc)
        return None


def _export_registry_version(job: RegistryExport) -> Exported:
    """Child-process side of :func:`export_in_subprocess` (lowered priority, one torch thread)."""
    import torch

    from luanti_tune.registry import Registry

    try:
        os.nice(10)
    except OSError:  # pragma: no cover - not permitted: export at normal priority
        pass
    torch.set_num_threads(1)
    loaded = Registry(job.root).load(job.family, job.version)
    split = split_of(loaded.adapter, loaded.module) if job.split else None
    return export_graphs(loaded.module, job.sample, job.input_names, job.output_names, job.rewrite, split)


def export_in_subprocess(job: RegistryExport, timeout_s: float = 300.0) -> Exported:
    """:func:`export_graphs` of a registry version, run in a fresh process.

    ``torch.onnx.export`` holds the GIL for tens of milliseconds at a time; in the serving process
    that stalls the batches decided meanwhile. The child loads the version from the registry
    (hash-checked, like the parent) and returns the graphs' bytes.
    """
    import concurrent.futures
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(_export_registry_version, job).result(timeout=timeout_s)


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
    rewrite: bool = True,
    exported: Exported | None = None,
    split: SplitForward | None = None,
) -> tuple[Runner, ExportReport]:
    """Export to ONNX and verify against eager PyTorch on ``samples``; return the runner to serve.

    ``same_decisions(sample_index, torch_out, onnx_out)`` optionally compares the decoded actions.
    With ``rewrite`` the graph from :func:`rewrite_onnx` is checked first and served when it passes;
    otherwise (or when rewriting fails) the plain export is checked, then PyTorch is the fallback.
    ``report.extra["rewrites"]`` counts the rewrites of the served graph (absent when it is the plain one).
    ``exported``: the graphs already exported from ``module`` elsewhere (e.g. :func:`export_in_subprocess`);
    they are checked exactly like an export made here. With a ``split`` (and its core exported) the
    :class:`SplitRunner` is checked first. ``report.extra["graph"]`` names the graph served:
    ``split``, ``rewritten`` or ``plain``.
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
        graphs = exported or export_graphs(module, samples[0], input_names, output_names, rewrite, split)
        plain = OnnxRunner(graphs.plain, input_names, output_names, threads=threads)
        report.exported = True
    except Exception as exc:  # noqa: BLE001 - any export/load failure means serve PyTorch
        report.reason = f"export failed: {type(exc).__name__}: {exc}"[:500]
        log.warning("ONNX export failed, serving PyTorch: %s", report.reason)
        return torch_runner, report
    candidates: list[tuple[str, Runner, dict[str, int] | None]] = []
    if split is not None and graphs.core is not None:
        try:
            core = OnnxRunner(graphs.core, split.core_inputs, split.core_outputs, threads=threads)
            candidates.append(("split", SplitRunner(split, core), None))
        except Exception as exc:  # noqa: BLE001 - a failed split only costs speed
            log.info("split core graph does not load (%s: %s); checking the whole graph", type(exc).__name__, exc)
    if rewrite and graphs.rewritten is not None:
        try:
            rewritten = OnnxRunner(graphs.rewritten, input_names, output_names, threads=threads)
            candidates.append(("rewritten", rewritten, graphs.rewrites))
        except Exception as exc:  # noqa: BLE001 - a failed rewrite only costs speed
            log.info("rewritten ONNX graph does not load (%s: %s); checking the plain export", type(exc).__name__, exc)
    candidates.append(("plain", plain, None))
    for k, (graph, onnx_runner, counts) in enumerate(candidates):
        try:
            reason, worst, same = _compare(torch_runner, onnx_runner, samples, output_names, atol, rtol, same_decisions)
        except Exception as exc:  # noqa: BLE001 - a runner that fails on a sample must not serve
            reason, worst, same = f"check failed: {type(exc).__name__}: {exc}"[:500], float("nan"), None
        if reason is not None and k + 1 < len(candidates):
            log.info("%s ONNX graph failed the check (%s); checking the next one", graph, reason)
            continue
        report.max_abs_diff = worst
        report.same_actions = same
        if reason is not None:
            report.reason = reason
            log.warning("ONNX check failed, serving PyTorch: %s", report.reason)
            return torch_runner, report
        if counts is not None:
            report.extra["rewrites"] = counts
        report.extra["graph"] = graph
        report.runtime = "onnx"
        return onnx_runner, report
    raise AssertionError("unreachable: the plain export is always the last candidate")
