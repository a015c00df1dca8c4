"""Pursuit trainer: base pre-training on simulated players, fine-tuning with replay, the gate, a cycle.

* :func:`pretrain_base` / :func:`bootstrap_base`: a fresh model trained on simulated players of
  the training styles (held-out styles never enter), saved and promoted as the first champion.
* :func:`finetune`: continue from a module (the champion) on new windows, mixing in replay rows
  from older events so the model adapts without forgetting.
* :func:`gate`: candidate vs champion on held-out recent windows (strictly lower mean error, no
  horizon worse beyond a tolerance, everything finite) and in simulator pursuit episodes (mean
  time to catch and catch rate not worse beyond a tolerance; optionally strictly better).
* :func:`run_cycle`: one worker cycle over new events ``(after_id, until_id]``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from luanti_tune.datasets.common import Dataset
from luanti_tune.datasets.pursuit import PursuitSpec, build_from_events, build_from_store
from luanti_tune.errors import TrainingSkipped
from luanti_tune.policies import pursuit as fam
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
    guarded_cycle,
)

log = logging.getLogger(__name__)

FAMILY = fam.FAMILY
BASE_FIT = FitConfig(steps=1500, batch_size=256, lr=3e-3, replay_fraction=0.0, time_budget_s=120.0)
FINETUNE_FIT = FitConfig(steps=400, batch_size=256, lr=1.5e-3, replay_fraction=0.3, time_budget_s=20.0)


def loss_fn(module: Any, batch: Mapping[str, Any]) -> Any:
    mean, log_std = module(batch["hist"], batch["vel"], batch["threat"])
    return fam.gaussian_nll(mean, log_std, batch["target"]).mean()


KEYS = ("hist", "vel", "threat", "target")


def pretrain_base(
    data: Dataset | Mapping[str, np.ndarray], arch: Mapping[str, Any], cfg: FitConfig = BASE_FIT
) -> tuple[Any, dict[str, Any]]:
    """A fresh module trained on ``data`` (its train rows if a :class:`Dataset`)."""
    import torch

    torch.manual_seed(cfg.seed)
    module = fam.build_module(arch)
    train = data.train() if isinstance(data, Dataset) else data
    info = fit(module, loss_fn, train, cfg, keys=KEYS)
    return module, info


def finetune(
    module: Any,
    new: Mapping[str, np.ndarray],
    cfg: FitConfig = FINETUNE_FIT,
    *,
    replay: Mapping[str, np.ndarray] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """A fine-tuned copy of ``module`` (the original is untouched)."""
    cand = clone_module(module)
    info = fit(cand, loss_fn, new, cfg, replay=replay, keys=KEYS)
    return cand, info


# ----------------------------------------------------------------------------- simulator evaluation


@dataclass(frozen=True)
class SimEvalConfig:
    styles: tuple[str, ...] = ("strafer", "circler", "zigzag", "explorer")
    episodes: int = 8
    max_steps: int = 220
    seed: int = 1000


def simulate(policy: Any, cfg: SimEvalConfig) -> dict[str, float]:
    """Pursuit episodes of ``policy`` against scripted players: catch rate and mean time.

    ``mean_time`` counts uncaught episodes as the time limit (lower is better).
    """
    from luanti_tune.sim import run_pursuit_episodes

    res = run_pursuit_episodes(policy, styles=list(cfg.styles), n=cfg.episodes, seed=cfg.seed, max_steps=cfg.max_steps)
    return {
        "episodes": float(res["episodes"]),
        "catch_rate": float(res["catch_rate"]),
        "mean_time": float(res["mean_time_censored_s"]),
        "mean_time_to_catch": float(res["mean_time_to_catch_s"])
        if res.get("mean_time_to_catch_s") is not None
        else None,  # type: ignore[dict-item]
    }


# ----------------------------------------------------------------------------- gate


#: Simulator figures of a champion version (deterministic for a fixed config): computed once per process.
_SIM_CACHE: dict[Any, dict[str, float]] = {}


@dataclass(frozen=True)
class GateConfig:
    """What a candidate must show. Signals, all from recorded data or scripted baselines, none from
    a label only the simulator knows (a player's name carries no meaning):

    * ``heldout_error``: lower mean prediction error than the champion on the newest recorded
      episodes of the players in the new data (no horizon worse beyond ``tolerance``);
    * ``replay_time``: faster catches than the champion in pursuit episodes against those players'
      own held-out trajectories, replayed (:func:`luanti_tune.sim.replay.replay_pursuit`), catch
      rate not lower beyond ``replay_catch_tolerance``;
    * ``model_time``: a replayed player cannot react to a different chaser, so closed-loop
      episodes against a model fitted on each player's new windows
      (:class:`luanti_tune.sim.player_model.NeighbourPlayer`) guard against a candidate that only
      looks faster open loop: no slower than ``model_tolerance``. Used where the model is
      faithful: it predicts the player's held-out windows clearly better than constant velocity
      (``model_max_error_ratio``) and the champion's time against it is within ``model_fidelity``
      of its time against the replays (a model that plays unlike the recordings misleads);
    * ``sim_time``/``sim_catch_rate`` (``sim``): no regression beyond ``sim_tolerance`` against the
      simulator's scripted population (a guard for everyone else; a per-player scope skips it).
    """

    tolerance: float = 0.03  # allowed relative regression per horizon
    min_improvement: float = 0.0  # candidate mean error must be < champion * (1 - this)
    min_val_windows: int = 40
    replay: bool = True
    replay_catch_tolerance: float = 0.05
    #: closed-loop episodes against a player model fitted on the new data, where it is faithful:
    #: there the candidate may not be slower than the champion beyond ``model_tolerance``
    player_model: bool = True
    model_tolerance: float = 0.1
    #: faithful: the champion's time against the model within this share of its replay time
    model_fidelity: float = 0.25
    model_episodes: int = 12
    model_max_steps: int = 220
    min_model_windows: int = 300
    #: a player model judges only where its held-out error is at most this share of constant
    #: velocity's (it has shown it captures the player's habits; a weak model misleads the chase)
    model_max_error_ratio: float = 0.8
    sim: bool = True
    sim_tolerance: float = 0.05
    sim_catch_tolerance: float = 0.1


def replay_tracks(data: Dataset) -> list[Any]:
    """The held-out trajectories of ``data`` as :class:`~luanti_tune.sim.replay.RecordedTrack` s."""
    from luanti_tune.sim.replay import RecordedTrack

    return [RecordedTrack(tr.t, tr.xz, tr.vel, tr.chaser) for tr in data.extras.get("val_trajectories", [])]


def gate(
    candidate: Any,
    champion: Any,
    val: Mapping[str, np.ndarray],
    arch: Mapping[str, Any],
    cfg: GateConfig = GateConfig(),
    *,
    tracks: Sequence[Any] = (),
    fit_rows: Mapping[str, np.ndarray] | None = None,
    replay_cfg: Any = None,
    sim_cfg: SimEvalConfig | None = None,
    simulate_fn: Callable[[Any, SimEvalConfig], dict[str, float]] = simulate,
    champion_key: str | None = None,
) -> GateVerdict:
    """Decide whether ``candidate`` may replace ``champion`` (both torch modules); ``tracks`` are
    the held-out recorded trajectories (:func:`replay_tracks`) the replay check chases, ``fit_rows``
    the new training windows the player model is fitted on."""
    n_val = len(val["hist"])
    if n_val < cfg.min_val_windows:
        return GateVerdict.decide(
            [GateCheck("heldout_size", False, f"{n_val} held-out windows < {cfg.min_val_windows}")],
            {"val_windows": n_val},
        )
    cm = fam.evaluate(candidate, val)
    hm = fam.evaluate(champion, val)
    base = fam.baseline_metrics(val, arch["horizons"])
    figures: dict[str, Any] = {"val_windows": n_val, "candidate": cm, "champion": hm, "constant_velocity": base}
    checks = [check_finite("candidate_finite", cm)]
    if checks[0].passed:
        checks.append(check_better("heldout_error", cm["ade"], hm["ade"], min_rel=cfg.min_improvement))
        for j in range(len(arch["horizons"])):
            key = f"err_h{j}"
            checks.append(check_no_regression(f"heldout_{key}", cm[key], hm[key], tolerance=cfg.tolerance))
    if cfg.replay and all(c.passed for c in checks):
        checks += _replay_checks(candidate, champion, arch, tracks, replay_cfg, cfg, figures)
        if all(c.passed for c in checks):
            checks += _model_checks(candidate, champion, arch, fit_rows, val, cfg, figures, sim_cfg)
    if cfg.sim and all(c.passed for c in checks):
        sc = sim_cfg or SimEvalConfig()
        a = fam.PursuitAdapter(arch)
        cs = simulate_fn(ModelPolicy(candidate, a, "candidate"), sc)
        cache_key = (champion_key, sc, simulate_fn) if champion_key else None
        hs = _SIM_CACHE.get(cache_key) if cache_key else None
        if hs is None:
            hs = simulate_fn(ModelPolicy(champion, fam.PursuitAdapter(arch), "champion"), sc)
            if cache_key:
                _SIM_CACHE[cache_key] = hs
        figures["sim"] = {"styles": [getattr(s, "name", s) for s in sc.styles], "candidate": cs, "champion": hs}
        checks.append(check_no_regression("sim_time", cs["mean_time"], hs["mean_time"], tolerance=cfg.sim_tolerance))
        ok = cs["catch_rate"] >= hs["catch_rate"] - cfg.sim_catch_tolerance
        checks.append(
            GateCheck("sim_catch_rate", ok, f"candidate {cs['catch_rate']:.3g} vs champion {hs['catch_rate']:.3g}")
        )
    summary = {"heldout_error_nodes": cm.get("ade")}
    if "replay" in figures and "candidate" in figures["replay"]:
        summary["time_to_catch_s"] = figures["replay"]["candidate"]["mean_time"]
        summary["catch_rate"] = figures["replay"]["candidate"]["catch_rate"]
    if (figures.get("player_model") or {}).get("candidate"):
        summary["model_time_to_catch_s"] = figures["player_model"]["candidate"]["mean_time"]
    if "sim" in figures:
        summary["population_time_to_catch_s"] = figures["sim"]["candidate"]["mean_time"]
    figures["summary"] = {k: v for k, v in summary.items() if isinstance(v, float) and math.isfinite(v)}
    return GateVerdict.decide(checks, figures)


def _model_checks(
    candidate: Any,
    champion: Any,
    arch: Mapping[str, Any],
    fit_rows: Mapping[str, np.ndarray] | None,
    val: Mapping[str, np.ndarray],
    cfg: GateConfig,
    figures: dict[str, Any],
    sim_cfg: SimEvalConfig | None,
) -> list[GateCheck]:
    """Candidate vs champion chasing a player model fitted on the new windows, if it validates."""
    if not cfg.player_model or fit_rows is None or len(fit_rows["hist"]) < cfg.min_model_windows:
        return []
    from luanti_tune.sim import run_pursuit_episodes
    from luanti_tune.sim.player_model import NeighbourPlayer

    # one model per player with enough windows (a mixture of players averages their habits away);
    # the 1 s horizon: at 0.5 s constant velocity is hard to beat and says little about habits
    hi = min(1, len(arch["horizons"]) - 1)
    players = fit_rows.get("player", np.zeros(len(fit_rows["hist"]), np.int32))
    held = val.get("player", np.zeros(len(val["hist"]), np.int32))
    models, checked = [], []
    for p in np.unique(players).tolist():
        mine = players == p
        if mine.sum() < cfg.min_model_windows or not (held == p).any():
            continue
        pm = NeighbourPlayer.fit(
            {k: v[mine] for k, v in fit_rows.items()},
            hist_dt=float(arch["hist_dt"]),
            horizon=float(arch["horizons"][hi]),
            horizon_index=hi,
        )
        v = pm.validate({k: x[held == p] for k, x in val.items()})
        valid = v["error"] <= cfg.model_max_error_ratio * v["constant_velocity"]
        checked.append({**v, "valid": valid})
        if valid:
            models.append(pm)
    figures["player_model"] = {"players": checked, "valid": len(models)}
    if not models:
        return []
    seed = (sim_cfg or SimEvalConfig()).seed + 17
    runs = {
        role: run_pursuit_episodes(
            ModelPolicy(module, fam.PursuitAdapter(arch), role),
            styles=models,
            n=max(cfg.model_episodes, len(models)),
            seed=seed,
            max_steps=cfg.model_max_steps,
        )
        for role, module in (("candidate", candidate), ("champion", champion))
    }
    c, h = runs["candidate"], runs["champion"]
    figures["player_model"].update(
        {r: {"catch_rate": x["catch_rate"], "mean_time": x["mean_time_censored_s"]} for r, x in runs.items()}
    )
    # faithful only if the champion fares against the model about as it fares against the replays
    replayed = ((figures.get("replay") or {}).get("champion") or {}).get("mean_time")
    gap = abs(h["mean_time_censored_s"] / replayed - 1.0) if replayed else math.inf
    figures["player_model"]["fidelity_gap"] = gap
    if gap > cfg.model_fidelity:
        return []
    return [
        check_no_regression(
            "model_time", c["mean_time_censored_s"], h["mean_time_censored_s"], tolerance=cfg.model_tolerance
        )
    ]


def _replay_checks(
    candidate: Any,
    champion: Any,
    arch: Mapping[str, Any],
    tracks: Sequence[Any],
    replay_cfg: Any,
    cfg: GateConfig,
    figures: dict[str, Any],
) -> list[GateCheck]:
    """Candidate vs champion chasing the recorded players' held-out trajectories."""
    from luanti_tune.sim.replay import ReplayConfig, replay_pursuit

    rc = replay_cfg or ReplayConfig()
    cr = replay_pursuit(ModelPolicy(candidate, fam.PursuitAdapter(arch), "candidate"), tracks, rc)
    if cr["episodes"] == 0:
        figures["replay"] = {"episodes": 0, "trajectories": len(tracks)}
        return [
            GateCheck(
                "replay_size", False, f"no held-out trajectory of {rc.episode_s:g} s to chase ({len(tracks)} shorter)"
            )
        ]
    hr = replay_pursuit(ModelPolicy(champion, fam.PursuitAdapter(arch), "champion"), tracks, rc)
    figures["replay"] = {
        "episodes": cr["episodes"],
        "trajectories": len(tracks),
        "candidate": {k: cr[k] for k in ("catch_rate", "mean_time")},
        "champion": {k: hr[k] for k in ("catch_rate", "mean_time")},
    }
    ok = cr["catch_rate"] >= hr["catch_rate"] - cfg.replay_catch_tolerance
    return [
        check_better("replay_time", cr["mean_time"], hr["mean_time"]),
        GateCheck("replay_catch_rate", ok, f"candidate {cr['catch_rate']:.3g} vs champion {hr['catch_rate']:.3g}"),
    ]


# ----------------------------------------------------------------------------- base model


def simulated_events(
    styles: Sequence[Any],
    *,
    minutes: float,
    seed: int,
    sessions: int = 1,
    solo: bool = True,
    agent_every: int = 1,
    names: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Events of simulated players of ``styles`` chased by the scripted enemy (fixed seeds).

    ``solo``: one session per style and seed, so the enemy always chases that player (as an
    enemy would in the game); otherwise all styles share one world per seed. ``names``: the
    players' names, one per style (default ``p<i>-<style>``).
    """
    from luanti_tune.sim.session import SessionConfig, generate_events
    from luanti_tune.sim.world import WorldConfig

    ARENA = WorldConfig(size_x=40, size_y=12, size_z=40, terrain="flat", base_height=3, river=False)

    events: list[dict[str, Any]] = []
    groups = [(s,) for s in styles] if solo else [tuple(styles)]
    named = [(n,) for n in names] if solo else [tuple(names)]
    for i in range(sessions):
        for j, group in enumerate(groups):
            sd = seed + 1000 * i + j
            cfg = SessionConfig(
                players=len(group),
                styles=group,
                names=named[j] if names else (),
                minutes=minutes,
                seed=sd,
                enemy=True,
                agent_every=agent_every,
                episode_id=f"sim-{sd}-ep{i}",
                world=ARENA,
                bridge_collapse_s=None,
            )
            events.extend(generate_events(cfg))
    return events


def bootstrap_base(
    registry: Any,
    *,
    styles: Sequence[str] | None = None,
    minutes: float = 3.0,
    seed: int = 0,
    arch: Mapping[str, Any] | None = None,
    cfg: FitConfig = BASE_FIT,
    sessions: int = 2,
) -> str:
    """Pre-train the base model on simulated players of the training styles; save + promote it."""
    from luanti_tune.sim.styles import TRAIN_STYLES

    styles = tuple(styles or TRAIN_STYLES)
    arch = fam.architecture(**dict(arch or {}))
    t0 = time.perf_counter()
    events = simulated_events(styles, minutes=minutes, seed=seed, sessions=sessions)
    data = build_from_events(events, PursuitSpec.from_arch(arch), event_range={"simulated": True, "seed": seed})
    module, info = pretrain_base(data, arch, cfg)
    metrics = {
        "val": fam.evaluate(module, data.val()),
        "constant_velocity": fam.baseline_metrics(data.val(), arch["horizons"]),
    }
    manifest_ds = {
        **data.manifest,
        "simulated": {"styles": list(styles), "minutes": minutes, "seed": seed, "sessions": sessions},
    }
    version = registry.save(
        FAMILY,
        module=module,
        architecture=arch,
        parent=None,
        dataset=manifest_ds,
        metrics=metrics,
        gate={"passed": True, "reason": "base model: pre-trained on simulated training styles", "figures": metrics},
        training={**cfg.to_dict(), **info, "seconds_total": round(time.perf_counter() - t0, 3)},
    )
    registry.promote(FAMILY, version, reason="base model")
    return version


# ----------------------------------------------------------------------------- cycle


@dataclass(frozen=True)
class CycleOptions:
    min_train_windows: int = 200
    replay_events: int = 50_000
    fit: FitConfig = FINETUNE_FIT
    gate: GateConfig = GateConfig()
    sim: SimEvalConfig | None = None
    replay: Any = None  # a luanti_tune.sim.replay.ReplayConfig; default ReplayConfig(seed=cycle seed)
    players: tuple[str, ...] = ()
    #: with ``players``: keep the adapted model in its own scope ``pursuit@<players>`` (per-player
    #: champion, starting from the global champion) instead of replacing the global champion.
    per_player_scope: bool = False
    #: after a population cycle, adapt a scope ``pursuit@<player>`` for each of the (at most this
    #: many, most data first) players with enough new windows; the engine serves a player's scope to
    #: the agents that chase that player. ``0``: population cycles only.
    adapt_players: int = 4
    extra: dict[str, Any] = field(default_factory=dict)


def scope_name(players: Sequence[str]) -> str:
    """Registry family of a per-player model, e.g. ``pursuit@alice``."""
    return f"{FAMILY}@{'+'.join(sorted(players))}"


def _recipe(ctx: CycleContext, opts: CycleOptions, players: tuple[str, ...], population: bool) -> FineTuneRecipe:
    """The pursuit cycle over ``players`` (all when empty); a scope (``population`` false) is judged
    on its players' recorded behaviour only, without the scripted population check."""

    def check_size(new: Dataset) -> None:
        counts = new.manifest["counts"]
        if counts["train"] < opts.min_train_windows:
            raise TrainingSkipped(
                f"dataset too small: {counts['train']} training windows < {opts.min_train_windows} "
                f"({counts['events']} agent.track and player.move events in ids ({ctx.after_id}, {ctx.until_id}])"
            )
        if counts["val"] < opts.gate.min_val_windows:
            raise TrainingSkipped(f"dataset too small: {counts['val']} held-out windows < {opts.gate.min_val_windows}")

    def gate_step(cand: Any, champ: Any, new: Dataset, arch: Mapping[str, Any], info: Mapping[str, Any]) -> GateVerdict:
        from luanti_tune.sim.replay import ReplayConfig

        sim_cfg = opts.sim or SimEvalConfig(seed=ctx.seed + 1000)
        gate_cfg = opts.gate if population else replace(opts.gate, sim=False)
        key = f"{champ.family}:{champ.version}:{champ.manifest['files']['weights.safetensors']['sha256']}"
        return gate(
            cand,
            champ.module,
            new.val(),
            arch,
            gate_cfg,
            tracks=replay_tracks(new),
            fit_rows=new.train(),
            replay_cfg=opts.replay or ReplayConfig(seed=ctx.seed + 2000),
            sim_cfg=sim_cfg,
            champion_key=key,
        )

    return FineTuneRecipe(
        family=FAMILY,
        build_from_store=build_from_store,
        spec=lambda arch: PursuitSpec.from_arch(arch, players=players),
        check_size=check_size,
        finetune=finetune,
        gate=gate_step,
    )


def _scope_cycle(opts: CycleOptions, player: str) -> Callable[[CycleContext], CycleResult]:
    def run(ctx: CycleContext) -> CycleResult:
        return finetune_cycle(ctx, _recipe(ctx, opts, (player,), False), opts, target=scope_name((player,)))

    return run


def run_cycle(ctx: CycleContext) -> CycleResult:
    """Build datasets over the new events, fine-tune the champion with replay, gate, promote/reject;
    then adapt the scopes of the players with the most new data (:attr:`CycleOptions.adapt_players`)."""
    opts: CycleOptions = ctx.options.get("pursuit") or CycleOptions()
    if opts.players:
        target = scope_name(opts.players) if opts.per_player_scope else FAMILY
        return finetune_cycle(ctx, _recipe(ctx, opts, opts.players, not opts.per_player_scope), opts, target=target)
    result = finetune_cycle(ctx, _recipe(ctx, opts, (), True), opts)
    if opts.adapt_players > 0 and result.version is not None:
        per_player = ctx.registry.manifest(FAMILY, result.version)["dataset"]["new"]["counts"]["per_player"]
        ranked = sorted(per_player.items(), key=lambda kv: (-kv[1], kv[0]))
        chosen = [p for p, n in ranked if n >= opts.min_train_windows][: opts.adapt_players]
        scopes: dict[str, Any] = {}
        for player in chosen:
            scope = scope_name((player,))
            res = guarded_cycle(scope, ctx, _scope_cycle(opts, player))
            scopes[scope] = {"status": res.status, "reason": res.reason, "version": res.version}
            log.info("%s cycle %s: %s", scope, res.status, res.reason)
        result.figures["scopes"] = scopes
    return result
