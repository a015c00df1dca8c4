"""One dialogue fine-tuning cycle: train a LoRA candidate, gate it, register it, maybe promote it.

Gate (all must hold, measured now on the same held-out examples for every model):

* no NaN/inf in the candidate's held-out loss;
* candidate loss < reference loss, where the reference is the current champion (base + its
  adapter) or, when there is none, the base model alone;
* candidate grounding >= reference grounding - ``grounding_tolerance``;
* candidate loss < base loss (an adapter must be better than no adapter).

The candidate is always stored as a registry version (with metrics and the verdict) so a failed
run can be inspected; only a passed gate promotes it. Training starts from the base model on the
whole dataset (all stored conversations: old data is replayed by construction).
"""

from __future__ import annotations

import copy
import logging
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from luanti_tune.dialogue.lora import LoraTrainConfig, add_lora, evaluate, train_lora
from luanti_tune.dialogue.model import BaseModel
from luanti_tune.errors import TrainingSkipped

log = logging.getLogger(__name__)

FAMILY = "dialogue"


@dataclass
class GateConfig:
    min_train: int = 20
    min_heldout: int = 4
    grounding_tolerance: float = 0.02
    max_grounding_examples: int = 32
    max_new_tokens: int = 40


def gate_verdict(
    candidate: dict[str, Any], reference: dict[str, Any], base: dict[str, Any], tol: float
) -> dict[str, Any]:
    """``{"passed", "reason", ...figures}`` comparing candidate, reference and base metrics."""
    cl, rl, bl = candidate["loss"], reference["loss"], base["loss"]
    cg, rg = candidate.get("grounding", float("nan")), reference.get("grounding", float("nan"))
    reasons = []
    if not math.isfinite(cl):
        reasons.append(f"candidate loss is {cl}")
    else:
        if not cl < rl:
            reasons.append(f"loss {cl:.4f} not below reference {rl:.4f}")
        if not cl < bl:
            reasons.append(f"loss {cl:.4f} not below base {bl:.4f}")
        if math.isfinite(rg) and not (math.isfinite(cg) and cg >= rg - tol):
            reasons.append(f"grounding {cg:.3f} below reference {rg:.3f} - {tol}")
    return {
        "passed": not reasons,
        "reason": "; ".join(reasons) or "candidate beats reference on held-out loss and grounding",
        "candidate_loss": cl,
        "reference_loss": rl,
        "base_loss": bl,
        "candidate_grounding": cg,
        "reference_grounding": rg,
        "tolerance": tol,
    }


def _strip(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k != "samples"}


def run_cycle(
    base: str,
    train: list[dict[str, Any]],
    heldout: list[dict[str, Any]],
    registry: Any,
    *,
    dataset_manifest: dict[str, Any] | None = None,
    cfg: LoraTrainConfig | None = None,
    gate: GateConfig | None = None,
    promote: bool = True,
    progress: Callable[[int, float], None] | None = None,
    base_model: BaseModel | None = None,
) -> dict[str, Any]:
    """Train, evaluate, register and (if the gate passes) promote; returns a report dict.

    Raises :class:`TrainingSkipped` (recorded in the registry history) when data is too small.
    ``base_model``: an already loaded, adapter-free instance of ``base`` (it gets the LoRA layers).
    """
    from luanti_tune.dialogue.model import load_base

    cfg = cfg or LoraTrainConfig()
    gate = gate or GateConfig()
    if len(train) < gate.min_train or len(heldout) < gate.min_heldout:
        reason = (
            f"dataset too small ({len(train)} train < {gate.min_train} or {len(heldout)} held-out < {gate.min_heldout})"
        )
        registry.record(FAMILY, "skip", reason=reason)
        raise TrainingSkipped(reason)
    ev = {"max_grounding_examples": gate.max_grounding_examples, "max_new_tokens": gate.max_new_tokens}
    bm = base_model if base_model is not None else load_base(base)
    base_metrics = evaluate(bm.model, bm.tokenizer, heldout, **ev)
    champion = registry.champion_version(FAMILY)
    reference = base_metrics
    if champion is not None:
        from peft import PeftModel

        registry.verify(FAMILY, champion)
        champ_model = PeftModel.from_pretrained(copy.deepcopy(bm.model), str(registry.version_dir(FAMILY, champion)))
        reference = evaluate(champ_model, bm.tokenizer, heldout, **ev)
        del champ_model
    peft_model = add_lora(bm.model, cfg)
    try:
        result = train_lora(peft_model, bm.tokenizer, train, cfg, progress=progress)
    except FloatingPointError as exc:
        registry.record(FAMILY, "fail", reason=str(exc))
        raise
    cand = evaluate(peft_model, bm.tokenizer, heldout, **ev)
    verdict = gate_verdict(cand, reference, base_metrics, gate.grounding_tolerance)
    verdict["reference"] = champion or "base"
    with tempfile.TemporaryDirectory() as tmp:
        peft_model.save_pretrained(tmp)
        files = {p.name: p for p in Path(tmp).iterdir() if p.is_file() and p.suffix in (".safetensors", ".json")}
        version = registry.save(
            FAMILY,
            files=files,
            architecture={
                "base": base,
                "base_params": bm.n_params,
                "lora": {k: v for k, v in cfg.to_json().items() if k in ("rank", "alpha", "dropout", "target_modules")},
            },
            parent=champion,
            dataset=dataset_manifest or {},
            metrics={**_strip(cand), "base": _strip(base_metrics), "reference": _strip(reference)},
            gate=verdict,
            training={
                **cfg.to_json(),
                "seconds": result.seconds,
                "seconds_per_step": result.seconds_per_step,
                "first_loss": result.losses[0],
                "final_loss": result.losses[-1],
                "trainable_params": result.trainable_params,
            },
        )
    promoted = False
    if verdict["passed"] and promote:
        registry.promote(FAMILY, version, reason=verdict["reason"])
        promoted = True
    elif not verdict["passed"]:
        registry.record(FAMILY, "reject", version=version, reason=verdict["reason"])
    log.info("dialogue cycle: %s %s (%s)", version, "promoted" if promoted else "not promoted", verdict["reason"])
    return {
        "version": version,
        "promoted": promoted,
        "gate": verdict,
        "base": _strip(base_metrics),
        "reference": _strip(reference),
        "candidate": cand,
        "training": {
            "steps": result.steps,
            "seconds_per_step": result.seconds_per_step,
            "final_loss": result.losses[-1],
        },
    }


def worker_cycle(ctx: Any) -> Any:
    """The background worker's ``dialogue`` cycle (``luanti_tune.trainers.CYCLES``).

    Trains when the new events ``(ctx.after_id, ctx.until_id]`` hold at least ``min_new``
    answered NPC conversations; the dataset then covers every stored conversation up to
    ``until_id`` (older ones are replayed). ``ctx.options["dialogue"]`` may hold ``base``,
    ``steps``, ``lr``, ``rank``, ``min_new``, ``eval_examples``.
    """
    import time

    from luanti_tune.dialogue.dataset import CONTEXT_TYPES, build_examples, build_from_store, load_dataset
    from luanti_tune.store.base import EventQuery
    from luanti_tune.trainers.common import CycleResult

    opts: dict[str, Any] = dict(ctx.options.get(FAMILY) or {})
    min_new = int(opts.get("min_new", 20))
    new = build_examples(
        ctx.store.iter_events(EventQuery(types=CONTEXT_TYPES, after_id=ctx.after_id, until_id=ctx.until_id))
    )
    if len(new) < min_new:
        raise TrainingSkipped(
            f"{len(new)} new NPC conversations < {min_new} in event ids ({ctx.after_id}, {ctx.until_id}]"
        )
    settings = ctx.settings
    data_dir = Path(settings.data_dir) if settings is not None else Path(tempfile.mkdtemp())
    out = data_dir / "datasets" / f"dialogue-{ctx.until_id}"
    t = time.perf_counter()
    build_from_store(ctx.store, out, until_id=ctx.until_id, seed=ctx.seed)
    train, heldout, manifest = load_dataset(out)
    dataset_s = time.perf_counter() - t
    cfg = LoraTrainConfig(
        steps=int(opts.get("steps", 60)),
        lr=float(opts.get("lr", 1e-3)),
        rank=int(opts.get("rank", 8)),
        alpha=2 * int(opts.get("rank", 8)),
        seed=ctx.seed,
    )
    base = str(opts.get("base") or (settings.dialogue_base if settings is not None else "smollm2"))
    gcfg = GateConfig(max_grounding_examples=int(opts.get("eval_examples", 32)))
    if len(train) < gcfg.min_train or len(heldout) < gcfg.min_heldout:
        raise TrainingSkipped(f"dataset too small ({len(train)} train, {len(heldout)} held-out)")
    report = run_cycle(base, train, heldout, ctx.registry, dataset_manifest=manifest, cfg=cfg, gate=gcfg)
    return CycleResult(
        FAMILY,
        "promoted" if report["promoted"] else "rejected",
        report["gate"]["reason"],
        version=report["version"],
        champion=ctx.registry.champion_version(FAMILY),
        figures={
            "candidate_loss": report["candidate"]["loss"],
            "base_loss": report["base"]["loss"],
            "candidate_grounding": report["candidate"]["grounding"],
            "base_grounding": report["base"]["grounding"],
            "new_conversations": len(new),
        },
        timings={"dataset_s": round(dataset_s, 3), "seconds_per_step": report["training"]["seconds_per_step"]},
    )
