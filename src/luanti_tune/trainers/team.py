"""Team trainer: base pre-training on simulated team episodes, fine-tuning with replay, the gate.

* :func:`team_episode_events`: record ``luanti_tune/Team-v0`` episodes (agents of one team
  collecting every item) driven by any policy - the same events a server would send.
* :func:`bootstrap_base`: episodes played by the untrained team model (its geometric prior
  already coordinates), dataset, fit, save and promote the first champion.
* :func:`finetune`: continue from the champion on new team episodes, mixing in replay rows.
* :func:`evaluate_team`: shared-goal completion time in Team-v0 (episodes that do not finish
  count as the time limit), completion rate, items collected.
* :func:`gate`: candidate vs champion on held-out episodes (lower label loss, finite) and in the
  simulator against the champion (no regression beyond a tolerance) *and* against independent
  greedy members (must complete clearly faster: ``time <= greedy * (1 - min_gain_vs_greedy)``).
* :func:`run_cycle`: one worker cycle over new events ``(after_id, until_id]``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np

from luanti_tune.datasets.common import Dataset
from luanti_tune.datasets.team import build_from_events, build_from_store
from luanti_tune.errors import TrainingSkipped
from luanti_tune.policies import team as fam
from luanti_tune.policies.families import ModelPolicy
from luanti_tune.trainers.common import (
    CycleContext,
    CycleResult,
    FineTuneRecipe,
    FitConfig,
    GateCheck,
    GateVerdict,
    check_better,
    check_finite,
    check_no_regression,
    clone_module,
    finetune_cycle,
    fit,
)

log = logging.getLogger(__name__)

FAMILY = fam.FAMILY
KEYS = ("pair", "mask", "log_t", "aim", "weight", "cens")
BASE_FIT = FitConfig(steps=600, batch_size=128, lr=3e-3, replay_fraction=0.0, time_budget_s=60.0)
FINETUNE_FIT = FitConfig(steps=250, batch_size=128, lr=1e-3, replay_fraction=0.3, time_budget_s=20.0)
AIM_WEIGHT = 0.2
CENSORED_WEIGHT = 0.5


def loss_fn(module: Any, batch: Mapping[str, Any]) -> Any:
    """Huber on log time for exact labels, one-sided for censored ones (the time is at least the
    label), squared aim error (in units of ``POS_SCALE``) for exact labels."""
    import torch

    log_t, aim = module(batch["pair"], batch["mask"])
    w = batch["weight"]
    cens = batch["cens"]
    exact = w * (1.0 - cens)
    denom = w.sum().clamp(min=1.0)
    huber = torch.nn.functional.smooth_l1_loss
    t_exact = huber(log_t, batch["log_t"], reduction="none") * exact
    below = torch.clamp(batch["log_t"] - log_t, min=0.0)
    t_cens = huber(below, torch.zeros_like(below), reduction="none") * w * cens
    a_loss = ((((aim - batch["aim"]) / fam.POS_SCALE) ** 2).sum(-1) * exact).sum()
    return (t_exact.sum() + CENSORED_WEIGHT * t_cens.sum() + AIM_WEIGHT * a_loss) / denom


def pretrain_base(data: Dataset, arch: Mapping[str, Any], cfg: FitConfig = BASE_FIT) -> tuple[Any, dict[str, Any]]:
    import torch

    torch.manual_seed(cfg.seed)
    module = fam.build_module(arch)
    return module, fit(module, loss_fn, data.train(), cfg, keys=KEYS)


def finetune(
    module: Any,
    new: Mapping[str, np.ndarray],
    cfg: FitConfig = FINETUNE_FIT,
    *,
    replay: Mapping[str, np.ndarray] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """A fine-tuned copy of ``module`` (the serving champion object is untouched)."""
    cand = clone_module(module)
    return cand, fit(cand, loss_fn, new, cfg, replay=replay, keys=KEYS)


def policy_of(module: Any, arch: Mapping[str, Any], name: str = "team", version: str = "0") -> ModelPolicy:
    return ModelPolicy(module, fam.TeamAdapter(arch), name=name, version=version)


def greedy_policy() -> Any:
    from luanti_tune.policies.scripted import GreedyTeamPolicy

    return GreedyTeamPolicy()


# ----------------------------------------------------------------------------- simulator


@dataclass(frozen=True)
class SimEvalConfig:
    episodes: int = 8
    agents: int = 3
    items: int = 9
    max_steps: int = 400
    seed: int = 5000


def evaluate_team(policy: Any, cfg: SimEvalConfig) -> dict[str, float]:
    """Team-v0 episodes (fixed seeds): mean completion time (unfinished = time limit), rates."""
    from luanti_tune.sim.physics import DT
    from luanti_tune.sim.scenarios import TeamScenario

    times, done_flags, items = [], [], []
    for ep in range(cfg.episodes):
        sc = TeamScenario(cfg.seed * 100_003 + ep, agents=cfg.agents, items=cfg.items, max_steps=cfg.max_steps)
        memory: dict[str, dict[str, Any]] = {}
        done = False
        while not done:
            for d in policy.decide(sc.observe_all(), memory):
                sc.act(d.action)
            _, done = sc.advance()
        full = sc.collected() >= sc.total_items
        done_flags.append(full)
        items.append(sc.collected() / max(sc.total_items, 1))
        times.append(sc.steps * DT if full else cfg.max_steps * DT)
    return {
        "episodes": float(cfg.episodes),
        "mean_time": float(np.mean(times)),
        "median_time": float(np.median(times)),
        "completion_rate": float(np.mean(done_flags)),
        "item_share": float(np.mean(items)),
    }


def team_episode_events(
    policy: Any, *, episodes: int, seed: int, agents: int = 3, items: int = 9, max_steps: int = 400
) -> list[dict[str, Any]]:
    """Recorded Team-v0 episodes played by ``policy`` (wire events, deterministic per seed)."""
    from luanti_tune.sim.scenarios import TeamScenario

    events: list[dict[str, Any]] = []
    for ep in range(episodes):
        ep_seed = seed * 100_003 + ep
        sc = TeamScenario(ep_seed, agents=agents, items=items, max_steps=max_steps, record=True)
        sc.sim.source = f"sim-team-{ep_seed}"  # (source, seq) is the idempotency key: one source per episode
        memory: dict[str, dict[str, Any]] = {}
        events.extend(sc.sim.drain_events())
        done = False
        while not done:
            for d in policy.decide(sc.observe_all(), memory):
                sc.sim.apply_action(d.action, model=getattr(policy, "name", None))
            _, done = sc.advance()
            events.extend(sc.sim.drain_events())
    return events


# ----------------------------------------------------------------------------- gate


@dataclass(frozen=True)
class GateConfig:
    min_val_pairs: int = 50
    min_improvement: float = 0.0  # held-out loss must be < champion * (1 - this)
    sim: bool = True
    sim_tolerance: float = 0.05  # completion time may not regress more than this vs the champion
    min_gain_vs_greedy: float = 0.1  # completion time must be <= greedy * (1 - this)


def gate(
    candidate: Any,
    champion: Any,
    val: Mapping[str, np.ndarray],
    arch: Mapping[str, Any],
    cfg: GateConfig = GateConfig(),
    *,
    sim_cfg: SimEvalConfig | None = None,
) -> GateVerdict:
    n_val = int(val["weight"].sum()) if len(val.get("weight", [])) else 0
    if n_val < cfg.min_val_pairs:
        return GateVerdict.decide(
            [GateCheck("heldout_size", False, f"{n_val} labelled held-out pairs < {cfg.min_val_pairs}")],
            {"val_pairs": n_val},
        )
    cm = fam.evaluate(candidate, val)
    hm = fam.evaluate(champion, val)
    figures: dict[str, Any] = {"val_pairs": n_val, "candidate": cm, "champion": hm}
    checks = [check_finite("candidate_finite", cm)]
    if checks[0].passed:
        checks.append(check_better("heldout_loss", cm["loss"], hm["loss"], min_rel=cfg.min_improvement))
    if cfg.sim and all(c.passed for c in checks):
        sc = sim_cfg or SimEvalConfig()
        cs = evaluate_team(policy_of(candidate, arch, "candidate"), sc)
        hs = evaluate_team(policy_of(champion, arch, "champion"), sc)
        gs = evaluate_team(greedy_policy(), sc)
        figures["sim"] = {"config": asdict(sc), "candidate": cs, "champion": hs, "greedy": gs}
        checks.append(check_no_regression("sim_time", cs["mean_time"], hs["mean_time"], tolerance=cfg.sim_tolerance))
        checks.append(
            check_better("sim_time_vs_greedy", cs["mean_time"], gs["mean_time"], min_rel=cfg.min_gain_vs_greedy)
        )
    return GateVerdict.decide(checks, figures)


# ----------------------------------------------------------------------------- base model


def bootstrap_base(
    registry: Any,
    *,
    episodes: int = 16,
    seed: int = 0,
    arch: Mapping[str, Any] | None = None,
    cfg: FitConfig = BASE_FIT,
    minutes: float | None = None,
) -> str:
    """Pre-train the base model on simulated team episodes; save + promote it.

    ``minutes`` (the worker's bootstrap budget knob) overrides ``episodes``: 4 episodes per minute.
    """
    if minutes is not None:
        episodes = max(6, int(round(minutes * 4)))
    arch = fam.architecture(**dict(arch or {}))
    t0 = time.perf_counter()
    data = simulated_dataset(arch, episodes=episodes, seed=seed)
    module, info = pretrain_base(data, arch, cfg)
    prior = fam.build_module(arch)  # untrained: the geometric prior alone
    metrics = {"val": fam.evaluate(module, data.val()), "prior_val": fam.evaluate(prior, data.val())}
    version = registry.save(
        FAMILY,
        module=module,
        architecture=arch,
        parent=None,
        dataset={**data.manifest, "simulated": {"episodes": episodes, "seed": seed}},
        metrics=metrics,
        gate={"passed": True, "reason": "base model: pre-trained on simulated team episodes", "figures": metrics},
        training={**cfg.to_dict(), **info, "seconds_total": round(time.perf_counter() - t0, 3)},
    )
    registry.promote(FAMILY, version, reason="base model")
    return version


def simulated_dataset(arch: Mapping[str, Any], *, episodes: int, seed: int, max_steps: int = 400) -> Dataset:
    """Team episodes played by the untrained team model (its prior coordinates) -> dataset."""
    pol = policy_of(fam.build_module(arch), arch, "team-prior")
    events = team_episode_events(pol, episodes=episodes, seed=seed, max_steps=max_steps)
    return build_from_events(events, arch, event_range={"simulated": True, "seed": seed})


# ----------------------------------------------------------------------------- cycle


@dataclass(frozen=True)
class CycleOptions:
    min_train_pairs: int = 100
    replay_events: int = 50_000
    fit: FitConfig = FINETUNE_FIT
    gate: GateConfig = GateConfig()
    sim: SimEvalConfig | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _fit_rows(data: Dataset) -> dict[str, np.ndarray]:
    return {k: v for k, v in data.train().items() if k in KEYS}


def run_cycle(ctx: CycleContext) -> CycleResult:
    """Build the team dataset over the new events, fine-tune the champion with replay, gate."""
    opts: CycleOptions = ctx.options.get("team") or CycleOptions()

    def check_size(new: Dataset) -> None:
        counts = new.manifest["counts"]
        train_pairs = int(new.train()["weight"].sum()) if len(new) else 0
        if train_pairs < opts.min_train_pairs:
            raise TrainingSkipped(
                f"dataset too small: {train_pairs} labelled training pairs < {opts.min_train_pairs} "
                f"({counts['episodes']} team episodes in ids ({ctx.after_id}, {ctx.until_id}])"
            )

    def gate_step(cand: Any, champ: Any, new: Dataset, arch: Mapping[str, Any], info: Mapping[str, Any]) -> GateVerdict:
        sim_cfg = opts.sim or SimEvalConfig(seed=ctx.seed + 5000)
        verdict = gate(cand, champ.module, new.val(), arch, opts.gate, sim_cfg=sim_cfg)
        if not math.isfinite(float(info.get("last_loss", 0.0))):
            verdict = GateVerdict.decide([GateCheck("training_loss", False, "non-finite")], verdict.figures)
        return verdict

    recipe = FineTuneRecipe(
        family=FAMILY,
        build_from_store=build_from_store,
        spec=lambda arch: arch,
        check_size=check_size,
        finetune=finetune,
        gate=gate_step,
        train_rows=_fit_rows,
        replay_rows=_fit_rows,
        manifest_replay_fraction=False,
    )
    return finetune_cycle(ctx, recipe, opts)


# ----------------------------------------------------------------------------- CLI


@click.command("team")
@click.option("--config", type=click.Path(path_type=Path), default=None, help="TOML config file.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="Data directory.")
@click.option("--db", "db_url", default=None, help="Store URL (sqlite:///PATH or postgresql://...).")
@click.option("--model-path", type=click.Path(path_type=Path), default=None, help="Model registry root.")
@click.option("--base", is_flag=True, help="Pre-train the base model on simulated team episodes and promote it.")
@click.option("--episodes", type=click.IntRange(2), default=16, show_default=True, help="--base: team episodes.")
@click.option("--after-id", type=int, default=0, show_default=True, help="Cycle: learn from events with id > this.")
@click.option("--until-id", type=int, default=None, help="Cycle: up to this id (default: current max).")
@click.option("--no-sim", is_flag=True, help="Gate on held-out data only (skip Team-v0 episodes).")
@click.option("--seed", type=int, default=None, help="Seed (default: settings.seed).")
def train_team(
    config: Path | None,
    data_dir: Path | None,
    db_url: str | None,
    model_path: Path | None,
    base: bool,
    episodes: int,
    after_id: int,
    until_id: int | None,
    no_sim: bool,
    seed: int | None,
) -> None:
    """Pre-train (--base) or fine-tune the team model once: dataset, fit, gate, promote/reject."""
    import json

    from luanti_tune.trainers.command import run_cycle_once, training_setup, with_overrides

    settings, reg = training_setup(config, data_dir, db_url, model_path, seed)
    if base:
        version = bootstrap_base(reg, episodes=episodes, seed=settings.seed)
        click.echo(
            json.dumps({"status": "promoted", "version": version, "metrics": reg.manifest(FAMILY, version)["metrics"]})
        )
        return
    opts = with_overrides(CycleOptions(), no_sim=no_sim)
    run_cycle_once(settings, reg, FAMILY, run_cycle, opts, after_id=after_id, until_id=until_id)
