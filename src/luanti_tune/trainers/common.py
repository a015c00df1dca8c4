"""Family-independent training machinery: the fine-tune loop with replay, cycle context/result,
gate verdicts and the guard that turns any failure into a recorded, champion-preserving result.

A family plugs into the worker with a ``run_cycle(ctx: CycleContext) -> CycleResult`` function
listed in :data:`luanti_tune.trainers.CYCLES`. Typical shape::

    def run_cycle(ctx):
        data = build datasets from ctx.store over (ctx.after_id, ctx.until_id]
        if too small: raise TrainingSkipped("why")          # -> status "skipped", recorded
        champion = ctx.registry.load(FAMILY, "champion")
        module = fit(copy of champion.module, loss_fn, train, replay=older, cfg=FitConfig(...))
        verdict = GateVerdict.decide(checks=[...], figures={...})
        return finish_candidate(ctx, FAMILY, module, arch, verdict, parent=..., dataset=..., ...)

    result = guarded_cycle(FAMILY, ctx, run_cycle)         # never raises; records fail/skip
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from luanti_tune.errors import LuantiTuneError, ModelError, TrainingSkipped

if TYPE_CHECKING:
    from luanti_tune.datasets.common import Dataset

log = logging.getLogger(__name__)


class TrainingFailed(LuantiTuneError):
    """A training run went wrong (non-finite loss or weights, crash); the champion stays."""


def configure_torch(threads: int, nice: int = 0) -> None:
    """Bound torch threads (and optionally lower CPU priority) of a training process."""
    import os

    import torch

    torch.set_num_threads(max(1, threads))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set (interop threads can only be set once per process)
        pass
    if nice:
        try:
            os.nice(nice)
        except OSError:
            log.warning("could not lower the training process's CPU priority")


# ----------------------------------------------------------------------------- fit loop


@dataclass(frozen=True)
class FitConfig:
    """Budget and optimiser of one fine-tune (all explicit and recorded in the manifest)."""

    steps: int = 300
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-5
    replay_fraction: float = 0.3
    grad_clip: float = 5.0
    time_budget_s: float = 60.0
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


LossFn = Callable[[Any, Mapping[str, Any]], Any]


def _sample(rng: np.random.Generator, data: Mapping[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    idx = rng.integers(0, len(next(iter(data.values()))), size=n)
    return {k: v[idx] for k, v in data.items()}


def fit(
    module: Any,
    loss_fn: LossFn,
    train: Mapping[str, np.ndarray],
    cfg: FitConfig,
    *,
    replay: Mapping[str, np.ndarray] | None = None,
    keys: tuple[str, ...] | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    """Train ``module`` in place with Adam on mini-batches mixing new rows and replay rows.

    ``loss_fn(module, batch_of_tensors) -> scalar tensor``. ``keys`` selects the arrays turned
    into tensors (default: all float arrays). Raises :class:`TrainingFailed` on a non-finite
    loss or non-finite weights. Returns ``{"steps", "seconds", "first_loss", "last_loss"}``.
    """
    import torch

    n_train = len(next(iter(train.values()))) if train else 0
    if n_train == 0:
        raise TrainingSkipped("no training rows")
    keys = keys or tuple(k for k, v in train.items() if np.issubdtype(v.dtype, np.floating))
    train = {k: np.ascontiguousarray(train[k], dtype=np.float32) for k in keys}
    has_replay = replay is not None and len(next(iter(replay.values()))) > 0 and cfg.replay_fraction > 0
    replay_arrays = {k: np.ascontiguousarray(replay[k], dtype=np.float32) for k in keys} if has_replay else None  # type: ignore[index]
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    opt = torch.optim.AdamW(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    module.train()
    start = time.perf_counter()
    losses: list[float] = []
    n_rep = int(round(cfg.batch_size * cfg.replay_fraction)) if replay_arrays is not None else 0
    step = 0
    for step in range(1, cfg.steps + 1):
        batch = _sample(rng, train, cfg.batch_size - n_rep)
        if replay_arrays is not None and n_rep:
            rep = _sample(rng, replay_arrays, n_rep)
            batch = {k: np.concatenate([batch[k], rep[k]]) for k in keys}
        tensors = {k: torch.from_numpy(v) for k, v in batch.items()}
        loss = loss_fn(module, tensors)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise TrainingFailed(f"non-finite training loss ({value}) at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.grad_clip)
        opt.step()
        losses.append(value)
        if on_step is not None:
            on_step(step, value)
        if time.perf_counter() - start > cfg.time_budget_s:
            log.info("fit stopped by its time budget after %d steps", step)
            break
    module.eval()
    for name, p in module.named_parameters():
        if not torch.isfinite(p).all():
            raise TrainingFailed(f"non-finite weights in {name} after training")
    head = float(np.mean(losses[: max(1, len(losses) // 10)]))
    tail = float(np.mean(losses[-max(1, len(losses) // 10) :]))
    return {"steps": step, "seconds": round(time.perf_counter() - start, 3), "first_loss": head, "last_loss": tail}


def clone_module(module: Any) -> Any:
    """A deep copy to fine-tune, so the serving champion object is never touched."""
    return copy.deepcopy(module)


# ----------------------------------------------------------------------------- gate


@dataclass(frozen=True)
class GateCheck:
    """One criterion: ``name``, whether it ``passed`` and a human-readable ``detail``."""

    name: str
    passed: bool
    detail: str


@dataclass
class GateVerdict:
    """The gate's decision, stored in the candidate's manifest (``gate``)."""

    passed: bool
    reason: str
    checks: list[GateCheck] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def decide(cls, checks: list[GateCheck], figures: Mapping[str, Any] | None = None) -> GateVerdict:
        failed = [c for c in checks if not c.passed]
        reason = "; ".join(f"{c.name}: {c.detail}" for c in failed) if failed else "all checks passed"
        return cls(passed=not failed, reason=reason, checks=checks, figures=dict(figures or {}))

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reason": self.reason,
            "checks": [asdict(c) for c in self.checks],
            "figures": self.figures,
        }


def check_finite(name: str, metrics: Mapping[str, float]) -> GateCheck:
    bad = [k for k, v in metrics.items() if not math.isfinite(float(v))]
    return GateCheck(name, not bad, "finite" if not bad else f"non-finite {', '.join(bad)}")


def check_better(name: str, candidate: float, champion: float, *, min_rel: float = 0.0) -> GateCheck:
    """Candidate strictly lower (better) than champion by at least ``min_rel`` relative."""
    ok = math.isfinite(candidate) and candidate < champion * (1.0 - min_rel)
    return GateCheck(name, ok, f"candidate {candidate:.4g} vs champion {champion:.4g} (need < {1 - min_rel:.3g}x)")


def check_no_regression(name: str, candidate: float, champion: float, *, tolerance: float) -> GateCheck:
    """Candidate (lower is better) not worse than champion by more than ``tolerance`` relative."""
    limit = champion * (1.0 + tolerance) + 1e-9
    ok = math.isfinite(candidate) and candidate <= limit
    return GateCheck(name, ok, f"candidate {candidate:.4g} vs champion {champion:.4g} (limit {limit:.4g})")


# ----------------------------------------------------------------------------- cycles


@dataclass
class CycleContext:
    """What a family's ``run_cycle`` gets: the data range to learn from and where to put results."""

    store: Any
    registry: Any
    after_id: int
    until_id: int
    seed: int = 0
    settings: Any = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class CycleResult:
    """Outcome of one cycle; ``status`` in promoted, rejected, skipped, failed, bootstrapped."""

    family: str
    status: str
    reason: str
    version: str | None = None
    champion: str | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def finish_candidate(
    ctx: CycleContext,
    family: str,
    module: Any,
    architecture: Mapping[str, Any],
    verdict: GateVerdict,
    *,
    parent: str | None,
    dataset: Mapping[str, Any],
    metrics: Mapping[str, Any],
    training: Mapping[str, Any],
    timings: dict[str, float] | None = None,
) -> CycleResult:
    """Save the candidate with its verdict; promote it if the gate passed, else record the rejection."""
    reg = ctx.registry
    version = reg.save(
        family,
        module=module,
        architecture=architecture,
        parent=parent,
        dataset=dataset,
        metrics=metrics,
        gate=verdict.to_dict(),
        training=training,
    )
    if verdict.passed:
        reg.promote(family, version, reason=f"gate passed: {verdict.reason}")
        status = "promoted"
    else:
        reg.record(family, "reject", version=version, reason=verdict.reason)
        status = "rejected"
    return CycleResult(
        family=family,
        status=status,
        reason=verdict.reason,
        version=version,
        champion=reg.champion_version(family),
        figures=verdict.figures,
        timings=dict(timings or {}),
    )


class FineTuneOptions(Protocol):
    """The parts of a family's ``CycleOptions`` that :func:`finetune_cycle` reads."""

    @property
    def fit(self) -> FitConfig: ...

    @property
    def gate(self) -> Any: ...

    @property
    def replay_events(self) -> int: ...


def _train_split(data: Dataset) -> Mapping[str, np.ndarray]:
    return data.train()


def _all_rows(data: Dataset) -> Mapping[str, np.ndarray]:
    return data.arrays


@dataclass(frozen=True)
class FineTuneRecipe:
    """The family-specific pieces of one fine-tuning cycle (:func:`finetune_cycle` does the rest)."""

    #: the base family: its champion is the starting point, its name is in the skip hint
    family: str
    #: ``datasets.<family>.build_from_store(store, spec, *, after_id, until_id) -> Dataset``
    build_from_store: Callable[..., Dataset]
    #: champion architecture -> the spec ``build_from_store`` takes
    spec: Callable[[Mapping[str, Any]], Any]
    #: new dataset -> None; raises :class:`TrainingSkipped` naming the counts when it is too small
    check_size: Callable[[Dataset], None]
    #: ``finetune(module, rows, cfg, *, replay=rows) -> (candidate, fit info)`` on a copy of ``module``
    finetune: Callable[..., tuple[Any, dict[str, Any]]]
    #: ``(candidate, champion, new dataset, architecture, fit info) -> verdict``
    gate: Callable[[Any, Any, Dataset, Mapping[str, Any], Mapping[str, Any]], GateVerdict]
    #: the rows of the new dataset to fine-tune on, and of the replay dataset to mix in
    train_rows: Callable[[Dataset], Mapping[str, np.ndarray]] = _train_split
    replay_rows: Callable[[Dataset], Mapping[str, np.ndarray]] = _all_rows
    #: record the fit's replay fraction in the candidate's dataset manifest
    manifest_replay_fraction: bool = True


def finetune_cycle(
    ctx: CycleContext, recipe: FineTuneRecipe, opts: FineTuneOptions, *, target: str | None = None
) -> CycleResult:
    """Build the dataset over the new events, fine-tune the champion with replay, gate, promote/reject.

    ``target``: the registry family the candidate competes in (default ``recipe.family``); its
    champion is the starting point if it has one, else the base family's champion.
    """
    family = recipe.family
    target = target or family
    reg = ctx.registry
    timings: dict[str, float] = {}
    try:
        if target != family and reg.champion_version(target):
            champ = reg.load(target, "champion")
        else:
            champ = reg.load(family, "champion")
    except ModelError as exc:
        raise TrainingSkipped(
            f"no usable {family} champion to fine-tune ({exc}); run `luanti-tune train {family} --base`"
        ) from exc
    arch = champ.manifest["architecture"]
    spec = recipe.spec(arch)
    t = time.perf_counter()
    new = recipe.build_from_store(ctx.store, spec, after_id=ctx.after_id, until_id=ctx.until_id)
    recipe.check_size(new)
    replay_after = max(0, ctx.after_id - opts.replay_events)
    replay = (
        recipe.build_from_store(ctx.store, spec, after_id=replay_after, until_id=ctx.after_id)
        if ctx.after_id > 0
        else None
    )
    timings["dataset_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    fit_cfg = FitConfig(**{**opts.fit.to_dict(), "seed": ctx.seed})
    rep = recipe.replay_rows(replay) if replay is not None and len(replay) else None
    cand, info = recipe.finetune(champ.module, recipe.train_rows(new), fit_cfg, replay=rep)
    timings["train_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    verdict = recipe.gate(cand, champ, new, arch, info)
    timings["gate_s"] = round(time.perf_counter() - t, 3)
    ds_manifest: dict[str, Any] = {"new": new.manifest, "replay": replay.manifest if replay is not None else None}
    if recipe.manifest_replay_fraction:
        ds_manifest["replay_fraction"] = fit_cfg.replay_fraction
    return finish_candidate(
        ctx,
        target,
        cand,
        arch,
        verdict,
        parent=champ.version if champ.family == target else f"{champ.family}:{champ.version}",
        dataset=ds_manifest,
        metrics={
            **verdict.figures.get("summary", {}),  # flat figures: charted per version on the dashboard
            "val": verdict.figures.get("candidate", {}),
            "champion_val": verdict.figures.get("champion", {}),
        },
        training={**fit_cfg.to_dict(), **info, "gate": asdict(opts.gate)},
        timings=timings,
    )


def guarded_cycle(family: str, ctx: CycleContext, run: Callable[[CycleContext], CycleResult]) -> CycleResult:
    """Run a cycle; skips and failures of any kind are recorded and leave the champion serving."""
    reg = ctx.registry
    start = time.perf_counter()
    try:
        result = run(ctx)
    except TrainingSkipped as exc:
        last = reg.last_event(family) if hasattr(reg, "last_event") else None
        kind = str(exc).split(":", 1)[0]
        # the same kind of skip every cycle (e.g. no champion yet) is recorded once, not every poll
        if not (last and last.get("action") == "skip" and str(last.get("reason", "")).split(":", 1)[0] == kind):
            reg.record(family, "skip", reason=str(exc), after_id=ctx.after_id, until_id=ctx.until_id)
        log.info("%s cycle skipped: %s", family, exc)
        result = CycleResult(family, "skipped", str(exc), champion=reg.champion_version(family))
    except Exception as exc:  # the worker must survive any training failure
        reason = f"{type(exc).__name__}: {exc}"
        log.exception("%s cycle failed", family)
        reg.record(family, "fail", reason=reason, after_id=ctx.after_id, until_id=ctx.until_id)
        result = CycleResult(family, "failed", reason, champion=reg.champion_version(family))
    result.timings.setdefault("total_s", round(time.perf_counter() - start, 3))
    return result
