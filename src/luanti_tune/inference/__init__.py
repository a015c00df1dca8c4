"""Batched, hot-swappable inference for every agent of a server step (docs/design.md "Inference").

* :mod:`~luanti_tune.inference.engine` - :class:`InferenceEngine`: observations grouped by kind,
  one featurize -> forward -> decode per family, scripted fallback (no model / model error / low
  confidence, counted in ``fallback_total{reason,family}``), per-agent errors, atomic hot swap.
* :mod:`~luanti_tune.inference.source` - :class:`ModelSource` (where champions come from);
  :mod:`~luanti_tune.inference.registry_source` plugs in the model registry.
* :mod:`~luanti_tune.inference.runtime` - eager PyTorch and ONNX Runtime runners; the export is
  checked against PyTorch (outputs within tolerance and same decoded actions) or not served.
* :mod:`~luanti_tune.inference.sessions` - bounded (LRU + TTL) per-agent memory.
* :mod:`~luanti_tune.inference.batcher` - micro-batching of concurrent requests.
* :mod:`~luanti_tune.inference.decision_log` - sampled ``agent.act`` events back into the store.

Nothing heavy is imported here; torch and onnxruntime load when a model is prepared.
"""
