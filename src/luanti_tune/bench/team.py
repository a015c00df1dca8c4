"""``luanti-tune bench team``: shared-goal completion time of the team model vs independent greedy
members in ``luanti_tune/Team-v0`` (same held-out seeds, same run), as one JSON line.

The team model is pre-trained here on simulated team episodes (training seeds), then evaluated on
held-out seeds against: the scripted independent greedy members (each goes for its nearest item),
the same model without coordination (every member takes its own best pair: isolates the gain of
the assignment), and the untrained model (geometric prior only: isolates the gain of learning).
Episodes that do not finish count as the time limit. ``behaviour``: what ``analyze agents`` sees
in recorded episodes of the team and the greedy members (spacing, target switches, entropy).
"""

from __future__ import annotations

import time
from typing import Any

import click


@click.command()
@click.option("--episodes", type=click.IntRange(1), default=30, show_default=True, help="Evaluation episodes.")
@click.option("--train-episodes", type=click.IntRange(2), default=16, show_default=True, help="Training episodes.")
@click.option("--agents", type=click.IntRange(2, 8), default=3, show_default=True, help="Team size.")
@click.option("--items", type=click.IntRange(1, 64), default=9, show_default=True, help="Items to collect.")
@click.option("--max-steps", type=click.IntRange(10), default=400, show_default=True, help="Time limit (steps).")
@click.option("--seed", type=int, default=0, show_default=True, help="Training seed (evaluation: seed + 7000).")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True, help="Torch threads.")
def team(episodes: int, train_episodes: int, agents: int, items: int, max_steps: int, seed: int, threads: int) -> None:
    """Team model vs independent greedy agents: completion time ratio (lower is better)."""
    import torch
    from rich.progress import Progress

    from luanti_tune.bench.common import emit
    from luanti_tune.policies import team as fam
    from luanti_tune.policies.families import ModelPolicy
    from luanti_tune.trainers import team as tt

    torch.set_num_threads(threads)
    arch = fam.architecture()
    with Progress(transient=True) as progress:
        task = progress.add_task("team episodes (training data)", total=None)
        t0 = time.perf_counter()
        data = tt.simulated_dataset(arch, episodes=train_episodes, seed=seed, max_steps=max_steps)
        progress.update(task, description="fitting the team model")
        module, info = tt.pretrain_base(data, arch)
        train_s = time.perf_counter() - t0
        cfg = tt.SimEvalConfig(episodes=episodes, agents=agents, items=items, max_steps=max_steps, seed=seed + 7000)
        policies: dict[str, Any] = {
            "greedy": tt.greedy_policy(),
            "team": tt.policy_of(module, arch, "team"),
            "team_uncoordinated": ModelPolicy(module, fam.TeamAdapter(arch, coordinate=False), "team-indep"),
            "team_untrained": tt.policy_of(fam.build_module(arch), arch, "team-prior"),
        }
        results: dict[str, dict[str, float]] = {}
        for name, pol in policies.items():
            progress.update(task, description=f"evaluating {name} ({episodes} episodes)")
            t = time.perf_counter()
            results[name] = {**tt.evaluate_team(pol, cfg), "eval_s": round(time.perf_counter() - t, 2)}
        progress.update(task, description="behaviour of recorded episodes (analyze agents)")
        behaviour = _behaviour(
            {"team": policies["team"], "greedy": policies["greedy"]}, seed + 7000, max(2, episodes // 5), max_steps
        )
    val = data.val()
    g, tm = results["greedy"]["mean_time"], results["team"]["mean_time"]
    emit(
        "team",
        {
            "config": {
                "episodes": episodes,
                "train_episodes": train_episodes,
                "agents": agents,
                "items": items,
                "max_steps": max_steps,
                "seed": seed,
            },
            "team_mean_time_s": round(tm, 3),
            "greedy_mean_time_s": round(g, 3),
            "ratio_team_vs_greedy": round(tm / g, 4) if g else None,
            "ratio_team_vs_uncoordinated": round(tm / results["team_uncoordinated"]["mean_time"], 4),
            "ratio_team_vs_untrained": round(tm / results["team_untrained"]["mean_time"], 4),
            "results": {k: {kk: round(vv, 4) for kk, vv in v.items()} for k, v in results.items()},
            "heldout_label_loss": {
                "trained": round(fam.evaluate(module, val)["loss"], 4),
                "untrained": round(fam.evaluate(fam.build_module(arch), val)["loss"], 4),
            },
            "behaviour": behaviour,
            "dataset": data.manifest["counts"],
            "train_s": round(train_s, 2),
            "fit": {k: info[k] for k in ("steps", "seconds", "last_loss") if k in info},
        },
    )


def _behaviour(policies: dict[str, Any], seed: int, episodes: int, max_steps: int) -> dict[str, Any]:
    """Emergent-behaviour figures (:class:`BehaviourMonitor`) of recorded Team-v0 episodes per policy."""
    from luanti_tune.analysis.agents import BehaviourMonitor
    from luanti_tune.trainers import team as tt

    out: dict[str, Any] = {"episodes": episodes}
    for name, pol in policies.items():
        mon = BehaviourMonitor()
        mon.update(tt.team_episode_events(pol, episodes=episodes, seed=seed, max_steps=max_steps))
        rows = mon.summary()
        if rows:
            r = rows[0]
            keys = ("entropy_bits", "team_spacing", "role_switch_rate", "success_rate", "reward_mean", "top_ngrams")
            out[name] = {k: r[k] for k in keys}
    return out
