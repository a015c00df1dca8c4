"""Trainers: fine-tune loops with replay, evaluation gates and one training cycle per family.

:data:`CYCLES` maps a family to its ``run_cycle(ctx: CycleContext) -> CycleResult``
(``"module:function"``, imported lazily); the worker runs the families listed there whose module
exists. Shared machinery (``fit``, ``GateVerdict``, ``CycleContext``, ``finish_candidate``,
``guarded_cycle``) is in :mod:`luanti_tune.trainers.common`.
"""

from __future__ import annotations

#: family -> "module:function" of its training cycle.
CYCLES: dict[str, str] = {
    "pursuit": "luanti_tune.trainers.pursuit:run_cycle",
    "navigation": "luanti_tune.trainers.navigation:run_cycle",
    "dialogue": "luanti_tune.dialogue.gate:worker_cycle",
    "team": "luanti_tune.trainers.team:run_cycle",
}
