"""``luanti-tune bench navigation``: agents that learn the terrain vs geometry-only A*, as one JSON line.

Reproduces the navigation loop end to end with fixed seeds: a base cost model is pre-trained
on experience from a calm world (hills, walls, water, sand/snow; no lava, no terrain changes),
then fine-tuned (with replay of the calm experience) on experience from the live world, where
lava pools spread and a bridge collapses during the episode. Reported:

* held-out experience (episodes never trained on): loss of base vs fine-tuned;
* simulator episodes on changing terrain (``run_navigation_episodes``, seeds not used in
  training): success rate, time, damage, deaths and a combined ``cost`` for geometry-only A*
  (the scripted baseline), the same planner as the learned agent with geometry-only costs
  (isolates what learning the costs brings), the base model and the fine-tuned model.
"""

from __future__ import annotations

import time
from typing import Any

import click


@click.command()
@click.option("--episodes", type=click.IntRange(1), default=20, show_default=True, help="Evaluation episodes.")
@click.option("--seed", type=int, default=7, show_default=True, help="Evaluation seed (training uses 0, 1, 2).")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True, help="Torch threads.")
def navigation(episodes: int, seed: int, threads: int) -> None:
    """Fine-tuned navigation agent vs base and geometry-only A* on changing terrain."""
    import torch
    from rich.progress import Progress

    from luanti_tune.bench.common import emit
    from luanti_tune.datasets.navigation import NavigationSpec, build_from_events
    from luanti_tune.policies import navigation as nav
    from luanti_tune.policies.scripted import AStarNavigationPolicy
    from luanti_tune.trainers import navigation as tn
    from luanti_tune.trainers.common import FitConfig

    torch.set_num_threads(threads)
    arch = dict(nav.DEFAULT_ARCHITECTURE)
    calm_cfg = tn.ExperienceConfig(world="calm", terrain_changes=False, episodes=3, agents=4, steps=200, seed=0)
    live_cfg = tn.ExperienceConfig(world="live", terrain_changes=True, episodes=4, agents=4, steps=200, seed=1)
    held_cfg = tn.ExperienceConfig(world="live", terrain_changes=True, episodes=2, agents=4, steps=150, seed=2)
    timings: dict[str, float] = {}
    with Progress(transient=True) as progress:
        task = progress.add_task("calm-world experience", total=None)
        t = time.perf_counter()
        calm = tn.build_base_dataset(tn.simulated_events(calm_cfg), arch, calm_cfg)
        progress.update(task, description="pre-training the base model")
        base, _ = tn.pretrain_base(calm, arch, FitConfig(steps=300, batch_size=128, lr=3e-3, replay_fraction=0.0))
        timings["base_s"] = round(time.perf_counter() - t, 2)
        progress.update(task, description="live-world experience (lava spreads, bridge collapses)")
        t = time.perf_counter()
        live = tn.build_base_dataset(tn.simulated_events(live_cfg), arch, live_cfg)
        progress.update(task, description="fine-tuning from the base with replay")
        tuned, info = tn.finetune(
            base, live.train(), FitConfig(steps=300, batch_size=128, lr=2e-3, replay_fraction=0.3), replay=calm.train()
        )
        timings["finetune_s"] = round(time.perf_counter() - t, 2)
        rows = [{**ev, "_id": i + 1} for i, ev in enumerate(tn.simulated_events(held_cfg))]
        held = build_from_events(rows, NavigationSpec(radius=int(arch["radius"]), val_fraction=0.0)).arrays
        heldout: dict[str, Any] = {
            "rows": len(held["speed"]),
            "base": nav.evaluate(base, held),
            "fine_tuned": nav.evaluate(tuned, held),
        }
        cfg = tn.SimEvalConfig(episodes=episodes, seed=seed, terrain_changes=True)
        policies: dict[str, Any] = {
            "geometry_astar": AStarNavigationPolicy(),
            "geometry_planner": nav.GeometryNavigationPolicy(),
            "base": tn.model_policy(base, arch, "base"),
            "fine_tuned": tn.model_policy(tuned, arch, "fine-tuned"),
        }
        sim: dict[str, dict[str, float]] = {}
        for name, pol in policies.items():
            progress.update(task, description=f"evaluating {name} ({episodes} episodes)")
            t = time.perf_counter()
            sim[name] = {**tn.simulate(pol, cfg), "eval_s": round(time.perf_counter() - t, 2)}
    a, f = sim["geometry_astar"], sim["fine_tuned"]
    emit(
        "navigation",
        {
            "episodes": episodes,
            "seed": seed,
            "sim": sim,
            "heldout": {
                "rows": heldout["rows"],
                "base_loss": round(heldout["base"]["loss"], 4),
                "fine_tuned_loss": round(heldout["fine_tuned"]["loss"], 4),
                "base_damage_mae": round(heldout["base"]["damage_mae"], 4),
                "fine_tuned_damage_mae": round(heldout["fine_tuned"]["damage_mae"], 4),
            },
            "ratio_cost_vs_geometry_astar": round(f["cost"] / a["cost"], 3) if a["cost"] else None,
            "ratio_damage_vs_geometry_astar": round(f["mean_damage"] / a["mean_damage"], 3)
            if a["mean_damage"]
            else None,
            "success_delta_vs_geometry_astar": round(f["success_rate"] - a["success_rate"], 3),
            "ratio_heldout_loss_vs_base": round(heldout["fine_tuned"]["loss"] / heldout["base"]["loss"], 3),
            "training": {**timings, "finetune_steps": info["steps"]},
        },
    )
