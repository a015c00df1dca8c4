"""Training cycle of the navigation family: learned traversal costs on changing terrain.

* Experience: :func:`simulated_events` runs navigating agents in the simulator (geometry-only
  A* with random exploration streaks, or any policy) and returns the wire events they emit
  (``agent.obs``/``agent.act``/``agent.result``/``reward``, node changes).
* Base model: :func:`bootstrap_base` pre-trains on experience from a *calm* world (hills,
  walls, water, sand/snow, no lava, no terrain changes) and promotes it as the first champion.
* Fine-tuning: :func:`run_cycle` builds the dataset over the new events, continues from the
  champion with replay of older experience (H3's :func:`~luanti_tune.trainers.common.fit`),
  and gates the candidate (:func:`gate`): lower loss than the champion on held-out recent
  episodes, finite, and no regression beyond a tolerance in simulator episodes on changed
  terrain (success, time, damage), with geometry-only A* measured alongside for the record.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from luanti_tune.datasets.common import Dataset
from luanti_tune.datasets.navigation import NavigationSpec, build_from_events, build_from_store
from luanti_tune.errors import TrainingSkipped
from luanti_tune.policies import navigation as nav
from luanti_tune.policies.base import AgentMemory, Policy
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

FAMILY = nav.FAMILY
BASE_FIT = FitConfig(steps=500, batch_size=256, lr=3e-3, replay_fraction=0.0, time_budget_s=120.0)
#: Seconds of walking one hp of damage is worth in the simulator ``cost`` figure (fixed, so that
#: figures stay comparable when the planner's own risk weighting is tuned).
SIM_HP_SECONDS = 1.0
FINETUNE_FIT = FitConfig(steps=400, batch_size=256, lr=2e-3, replay_fraction=0.3, time_budget_s=60.0)


# ----------------------------------------------------------------------------- fitting


def pretrain_base(
    data: Dataset | Mapping[str, np.ndarray], arch: Mapping[str, Any], cfg: FitConfig = BASE_FIT
) -> tuple[Any, dict[str, Any]]:
    """A fresh cost model trained on ``data`` (its train rows if a :class:`Dataset`)."""
    import torch

    torch.manual_seed(cfg.seed)
    module = nav.build_navigation_model(arch)
    train = data.train() if isinstance(data, Dataset) else dict(data)
    info = fit(module, nav.loss_fn, train, cfg, keys=nav.LOSS_KEYS)
    return module, info


def finetune(
    module: Any,
    new: Mapping[str, np.ndarray],
    cfg: FitConfig = FINETUNE_FIT,
    *,
    replay: Mapping[str, np.ndarray] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """A fine-tuned copy of ``module`` (the champion object is never modified)."""
    cand = clone_module(module)
    info = fit(cand, nav.loss_fn, new, cfg, replay=replay, keys=nav.LOSS_KEYS)
    return cand, info


# ----------------------------------------------------------------------------- experience


@dataclass(frozen=True)
class ExperienceConfig:
    """Simulated navigating agents that produce traversal experience (all seeded)."""

    world: str = "live"  # "live": the evaluation world (lava, river, bridge); "calm": no lava
    episodes: int = 4
    agents: int = 4
    steps: int = 250
    terrain_changes: bool = True
    nearby_radius: int = 3
    explore: float = 0.08  # chance per decision to start a random-direction streak
    streak: tuple[int, int] = (3, 9)
    seed: int = 0
    source: str = "navsim"


def world_config(kind: str) -> Any:
    from luanti_tune.sim.scenarios import NAV_WORLD

    if kind == "live":
        return NAV_WORLD
    if kind == "calm":
        return replace(NAV_WORLD, lava_pools=0, river=False)
    raise ValueError(f"unknown experience world {kind!r} (live, calm)")


def simulated_events(cfg: ExperienceConfig, policy: Policy | None = None) -> list[dict[str, Any]]:
    """Wire events of ``cfg.agents`` agents per episode walking to random goals (new goal on arrival).

    The default ``policy`` is geometry-only A* (the pre-learning behaviour) with random
    exploration streaks, so the experience includes sand, water, lava and walls.
    """
    from luanti_tune.policies.scripted import AStarNavigationPolicy
    from luanti_tune.sim.core import DEFAULT_EPOCH_US, Dynamics, Simulation
    from luanti_tune.sim.scenarios import GOAL_RADIUS
    from luanti_tune.sim.world import World

    policy = policy or AStarNavigationPolicy()
    wcfg = world_config(cfg.world)
    events: list[dict[str, Any]] = []
    seq = 0
    for ep in range(cfg.episodes):
        seed = cfg.seed * 100_003 + ep
        rng = np.random.default_rng([seed, 404])
        world = World(wcfg, seed=seed)
        dyn = Dynamics(
            lava_every=20 if cfg.terrain_changes else 0,
            lava_prob=0.25,
            bridge_collapse_tick=int(rng.integers(40, 160)) if cfg.terrain_changes else None,
        )
        source = f"{cfg.source}-{cfg.world}-{cfg.seed}"
        sim = Simulation(
            world,
            seed=seed,
            source=source,
            episode_id=f"{source}-{ep}",
            dynamics=dyn,
            start_wall_us=DEFAULT_EPOCH_US + int(ep * (cfg.steps + 10) * 0.09 * 1e6),
        )
        sim.seq = seq  # one source, one increasing (source, seq) sequence across episodes
        cols = world.standable_columns()
        names = [f"nav-{k + 1}" for k in range(cfg.agents)]
        for name in names:
            start = cols[int(rng.integers(len(cols)))]
            actor = sim.add_agent(name, "navigation", pos=world.spawn_point(int(start[0]), int(start[1])))
            actor.nearby_radius = cfg.nearby_radius
            actor.goal = _pick_goal(world, cols, start, rng)
        memory: AgentMemory = {}
        streak: dict[str, tuple[int, float, float]] = {}
        for _ in range(cfg.steps):
            alive = [n for n in names if sim.bodies.alive[sim.actors[n].idx]]
            if not alive:
                break
            observations = [sim.observe(n) for n in alive]
            for obs, dec in zip(observations, policy.decide(observations, memory), strict=True):
                action = dec.action
                left, dx, dz = streak.get(obs.agent, (0, 0.0, 0.0))
                if left == 0 and rng.random() < cfg.explore:
                    ang = rng.uniform(0, 2 * math.pi)
                    left, dx, dz = int(rng.integers(*cfg.streak)), math.cos(ang), math.sin(ang)
                if left > 0:
                    action = nav.MoveAction(
                        agent=obs.agent, type="move", args=nav.MoveArgs(dir=nav.Vec3(x=dx, y=0.0, z=dz), speed=1.0)
                    )
                    streak[obs.agent] = (left - 1, dx, dz)
                sim.apply_action(action, model=getattr(policy, "name", None))
            sim.step()
            for n in alive:
                actor = sim.actors[n]
                p = sim.pos_of(n)
                g = actor.goal
                if g is not None and math.hypot(p[0] - g[0], p[2] - g[2]) < GOAL_RADIUS and abs(p[1] - g[1]) < 1.6:
                    sim.reward(n, 10.0, "goal")
                    cell = np.array([int(round(p[0])), int(round(p[2]))])
                    actor.goal = _pick_goal(world, cols, cell, rng)
        events.extend(sim.drain_events())
        seq = sim.seq
    return events


def _pick_goal(world: Any, cols: np.ndarray, start: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    d = np.linalg.norm(cols - np.asarray(start)[None, :], axis=1)
    ok = np.nonzero((d >= 8.0) & (d <= 18.0))[0]
    if len(ok) == 0:
        ok = np.array([int(np.argmax(d))])
    c = cols[int(ok[int(rng.integers(len(ok)))])]
    return np.asarray(world.spawn_point(int(c[0]), int(c[1])), dtype=float)


# ----------------------------------------------------------------------------- simulator evaluation


@dataclass(frozen=True)
class SimEvalConfig:
    episodes: int = 12
    seed: int = 1000
    terrain_changes: bool = True
    max_steps: int = 400


def simulate(policy: Policy, cfg: SimEvalConfig) -> dict[str, float]:
    """Navigation episodes on changing terrain: success rate, time, damage, deaths and a ``cost``.

    ``cost`` (lower is better) folds them into one number: seconds of walking (failed episodes
    count as ``max_steps``), plus :data:`SIM_HP_SECONDS` per hp lost.
    """
    from luanti_tune.sim import run_navigation_episodes
    from luanti_tune.sim.physics import DT

    res = run_navigation_episodes(
        policy, n=cfg.episodes, seed=cfg.seed, terrain_changes=cfg.terrain_changes, max_steps=cfg.max_steps
    )
    return summarize(res, cfg.max_steps * DT)


def summarize(res: Mapping[str, Any], max_seconds: float) -> dict[str, float]:
    n = max(1, int(res["episodes"]))
    success = float(res["success_rate"])
    mean_time = res.get("mean_time_s")
    reached_time = float(mean_time) if mean_time is not None else max_seconds
    censored = success * reached_time + (1.0 - success) * max_seconds
    damage = float(res["mean_damage"])
    return {
        "episodes": float(n),
        "success_rate": success,
        "mean_time_s": round(reached_time, 4),
        "mean_time_censored_s": round(censored, 4),
        "mean_damage": round(damage, 4),
        "deaths": float(res.get("deaths", 0)),
        "cost": round(censored + SIM_HP_SECONDS * damage, 4),
    }


def model_policy(module: Any, arch: Mapping[str, Any], name: str) -> nav.NavigationPolicy:
    return nav.NavigationPolicy.from_module(module, arch, name=name)


# ----------------------------------------------------------------------------- gate


@dataclass(frozen=True)
class GateConfig:
    min_improvement: float = 0.0  # candidate held-out loss < champion * (1 - this)
    min_val_rows: int = 100
    sim: bool = True
    sim_tolerance: float = 0.05  # allowed relative regression of the simulator cost
    sim_success_tolerance: float = 0.1
    sim_must_improve: bool = False


def gate(
    candidate: Any,
    champion: Any,
    val: Mapping[str, np.ndarray],
    arch: Mapping[str, Any],
    cfg: GateConfig = GateConfig(),
    *,
    sim_cfg: SimEvalConfig | None = None,
    simulate_fn: Callable[[Policy, SimEvalConfig], dict[str, float]] = simulate,
    baseline: bool = True,
) -> GateVerdict:
    """Decide whether ``candidate`` may replace ``champion`` (both torch modules)."""
    n_val = int(len(val["speed"]))
    if n_val < cfg.min_val_rows:
        return GateVerdict.decide(
            [GateCheck("heldout_size", False, f"{n_val} held-out rows < {cfg.min_val_rows}")], {"val_rows": n_val}
        )
    cm = nav.evaluate(candidate, val)
    hm = nav.evaluate(champion, val)
    figures: dict[str, Any] = {"val_rows": n_val, "candidate": cm, "champion": hm}
    checks = [check_finite("candidate_finite", cm)]
    if checks[0].passed:
        checks.append(check_better("heldout_loss", cm["loss"], hm["loss"], min_rel=cfg.min_improvement))
    if cfg.sim and all(c.passed for c in checks):
        sc = sim_cfg or SimEvalConfig()
        cs = simulate_fn(model_policy(candidate, arch, "candidate"), sc)
        hs = simulate_fn(model_policy(champion, arch, "champion"), sc)
        figures["sim"] = {"config": asdict(sc), "candidate": cs, "champion": hs}
        if baseline:
            from luanti_tune.policies.scripted import AStarNavigationPolicy

            figures["sim"]["geometry_astar"] = simulate_fn(AStarNavigationPolicy(), sc)
        if cfg.sim_must_improve:
            checks.append(check_better("sim_cost", cs["cost"], hs["cost"]))
        else:
            checks.append(check_no_regression("sim_cost", cs["cost"], hs["cost"], tolerance=cfg.sim_tolerance))
        ok = cs["success_rate"] >= hs["success_rate"] - cfg.sim_success_tolerance
        checks.append(
            GateCheck("sim_success", ok, f"candidate {cs['success_rate']:.3g} vs champion {hs['success_rate']:.3g}")
        )
    return GateVerdict.decide(checks, figures)


# ----------------------------------------------------------------------------- base model


def bootstrap_base(
    registry: Any,
    *,
    seed: int = 0,
    experience: ExperienceConfig | None = None,
    arch: Mapping[str, Any] | None = None,
    cfg: FitConfig = BASE_FIT,
    events: list[dict[str, Any]] | None = None,
    minutes: float | None = None,
) -> str:
    """Pre-train the base cost model on simulated experience in the calm world; save + promote it.

    ``events``: the experience to use (default: freshly simulated from ``experience``);
    ``minutes``: simulated agent-minutes of experience (sets the number of episodes).
    """
    exp = experience or ExperienceConfig(world="calm", terrain_changes=False, episodes=4, seed=seed)
    if minutes is not None:
        per_episode_min = exp.agents * exp.steps * nav.DECISION_SECONDS / 60.0
        exp = replace(exp, episodes=max(2, math.ceil(minutes / per_episode_min)))
    arch = {**nav.DEFAULT_ARCHITECTURE, **dict(arch or {})}
    t0 = time.perf_counter()
    events = simulated_events(exp) if events is None else events
    data = build_base_dataset(events, arch, exp)
    module, info = pretrain_base(data, arch, replace(cfg, seed=seed))
    metrics = {"val": nav.evaluate(module, data.val())}
    version = registry.save(
        FAMILY,
        module=module,
        architecture=arch,
        parent=None,
        dataset={**data.manifest, "simulated": asdict(exp)},
        metrics=metrics,
        gate={"passed": True, "reason": "base model: pre-trained on simulated experience", "figures": metrics},
        training={**cfg.to_dict(), **info, "seed": seed, "seconds_total": round(time.perf_counter() - t0, 3)},
    )
    registry.promote(FAMILY, version, reason="base model")
    return version


def build_base_dataset(events: list[dict[str, Any]], arch: Mapping[str, Any], exp: ExperienceConfig) -> Dataset:
    """Dataset over in-memory simulated events (ids assigned in order, as a store would)."""
    rows = ({**ev, "_id": i + 1} for i, ev in enumerate(events))
    spec = NavigationSpec(radius=int(arch["radius"]))
    return build_from_events(rows, spec, event_range={"simulated": True, "seed": exp.seed, "world": exp.world})


# ----------------------------------------------------------------------------- cycle


@dataclass(frozen=True)
class CycleOptions:
    min_train_rows: int = 300
    replay_events: int = 100_000
    fit: FitConfig = FINETUNE_FIT
    gate: GateConfig = GateConfig()
    sim: SimEvalConfig | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def run_cycle(ctx: CycleContext) -> CycleResult:
    """Build the dataset over the new events, fine-tune the champion with replay, gate, promote/reject."""
    opts: CycleOptions = ctx.options.get(FAMILY) or CycleOptions()

    def check_size(new: Dataset) -> None:
        counts = new.manifest["counts"]
        if counts["train"] < opts.min_train_rows:
            raise TrainingSkipped(
                f"dataset too small: {counts['train']} navigation training rows < {opts.min_train_rows} "
                f"({counts['events']} agent events in ids ({ctx.after_id}, {ctx.until_id}])"
            )
        if counts["val"] < opts.gate.min_val_rows:
            raise TrainingSkipped(f"dataset too small: {counts['val']} held-out rows < {opts.gate.min_val_rows}")

    def gate_step(cand: Any, champ: Any, new: Dataset, arch: Mapping[str, Any], info: Mapping[str, Any]) -> GateVerdict:
        sim_cfg = opts.sim or SimEvalConfig(seed=ctx.seed + 1000)
        return gate(cand, champ.module, new.val(), arch, opts.gate, sim_cfg=sim_cfg)

    recipe = FineTuneRecipe(
        family=FAMILY,
        build_from_store=build_from_store,
        spec=lambda arch: NavigationSpec(radius=int(arch["radius"])),
        check_size=check_size,
        finetune=finetune,
        gate=gate_step,
    )
    return finetune_cycle(ctx, recipe, opts)


# ----------------------------------------------------------------------------- command line


def _train_navigation_command() -> Any:
    import json
    from pathlib import Path

    import click

    @click.command("navigation")
    @click.option("--config", type=click.Path(path_type=Path), default=None, help="TOML config file.")
    @click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="Data directory.")
    @click.option("--db", "db_url", default=None, help="Store URL (sqlite:///PATH or postgresql://...).")
    @click.option("--model-path", type=click.Path(path_type=Path), default=None, help="Model registry root.")
    @click.option("--base", is_flag=True, help="Pre-train the base model on simulated experience and promote it.")
    @click.option("--episodes", type=int, default=4, show_default=True, help="--base: simulated episodes.")
    @click.option("--after-id", type=int, default=0, show_default=True, help="Cycle: learn from events with id > this.")
    @click.option("--until-id", type=int, default=None, help="Cycle: up to this id (default: current max).")
    @click.option("--steps", type=int, default=None, help="Fine-tune steps.")
    @click.option("--no-sim", is_flag=True, help="Gate on held-out data only (skip simulator episodes).")
    @click.option(
        "--simulate",
        type=click.IntRange(0),
        default=0,
        show_default=True,
        help="Cycle: first store this many episodes of simulated live-world experience (4 agents each).",
    )
    @click.option("--seed", type=int, default=None, help="Seed (default: settings.seed).")
    def train_navigation(
        config: Path | None,
        data_dir: Path | None,
        db_url: str | None,
        model_path: Path | None,
        base: bool,
        episodes: int,
        after_id: int,
        until_id: int | None,
        steps: int | None,
        no_sim: bool,
        simulate: int,
        seed: int | None,
    ) -> None:
        """Pre-train (--base) or fine-tune the navigation cost model once: dataset, fit, gate, promote/reject."""
        from luanti_tune.config.settings import load_settings
        from luanti_tune.registry import Registry

        settings = load_settings(config, data_dir=data_dir, db_url=db_url, model_path=model_path, seed=seed)
        import torch

        torch.set_num_threads(settings.torch_threads)
        reg = Registry(settings.resolved_model_path)
        if base:
            exp = ExperienceConfig(world="calm", terrain_changes=False, episodes=episodes, seed=settings.seed)
            version = bootstrap_base(reg, seed=settings.seed, experience=exp)
            click.echo(
                json.dumps({"status": "promoted", "version": version, **reg.manifest(FAMILY, version)["metrics"]})
            )
            return
        from luanti_tune.trainers.command import run_cycle_once, with_overrides

        def store_simulated(store: Any) -> None:
            from luanti_tune.sim.session import to_store

            live = ExperienceConfig(world="live", episodes=simulate, seed=settings.seed + 1)
            report = to_store(simulated_events(live), store)
            click.echo(json.dumps({"simulated": {"episodes": simulate, "accepted": report.accepted}}))

        opts = with_overrides(CycleOptions(), steps=steps, no_sim=no_sim)
        run_cycle_once(
            settings,
            reg,
            FAMILY,
            run_cycle,
            opts,
            after_id=after_id,
            until_id=until_id,
            prepare=store_simulated if simulate else None,
        )

    return train_navigation


#: ``luanti-tune train navigation`` (registered by :mod:`luanti_tune.trainers.cli`).
train_navigation = _train_navigation_command()
