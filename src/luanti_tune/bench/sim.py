"""``luanti-tune bench sim``: simulator agent-steps per second for 1, 16 and 256 agents in one world.

An agent-step is one agent acting, moving under physics (collisions, gravity, damage) and
receiving its 134-float observation (goal, velocity, hp and a 5x5x5 voxel grid). The baseline,
measured in the same run, steps the same number of agents one at a time in a Python loop
(a naive per-agent simulator); ``ratio_vs_naive`` compares the two at the largest count.
A second figure times the schema-level path (pydantic Observation + Action per agent, as the
evaluation runners and the HTTP contract use). The process runs single-threaded (one core);
``agent_steps_per_cpu_s`` divides by the CPU time actually received, which matters on a busy host.
"""

from __future__ import annotations

import os
import time

import click
import numpy as np

from luanti_tune.bench.common import emit


def _rate_batched(n: int, seconds: float, seed: int) -> tuple[float, float]:
    from luanti_tune.sim.batch import BatchAgents

    env = BatchAgents(n, seed=seed)
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, 10, size=(64, n))
    for k in range(5):
        env.step(actions[k % 64])
    steps = 0
    t0, c0 = time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        env.step(actions[steps % 64])
        steps += 1
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return n * steps / wall, n * steps / max(cpu, 1e-9)


def _rate_naive(n: int, seconds: float, seed: int) -> float:
    from luanti_tune.sim.batch import BatchAgents

    envs = [BatchAgents(1, seed=seed) for _ in range(min(n, 4))]
    envs = [envs[i % len(envs)] for i in range(n)]  # share worlds: only the per-agent loop differs
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, 10, size=(64, n))
    rounds = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        row = actions[rounds % 64]
        for i, env in enumerate(envs):
            env.step(row[i : i + 1])
        rounds += 1
    return n * rounds / (time.perf_counter() - t0)


def _rate_schema(n: int, seconds: float, seed: int) -> float:
    from luanti_tune.sim.core import Simulation
    from luanti_tune.sim.scenarios import NAV_WORLD
    from luanti_tune.sim.world import World

    sim = Simulation(World(NAV_WORLD, seed=seed), seed=seed, record=False)
    names = [f"agent-{i}" for i in range(n)]
    for name in names:
        a = sim.add_agent(name, "navigation", nearby_radius=2)
        a.goal = sim.world.spawn_point(*sim.random_cell())
    rng = np.random.default_rng(seed)
    steps = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for name in names:
            sim.observe(name)
            ang = float(rng.uniform(0, 2 * np.pi))
            sim.apply_action(
                {"agent": name, "type": "move", "args": {"dir": {"x": np.cos(ang), "y": 0.0, "z": np.sin(ang)}}}
            )
        sim.step()
        steps += 1
    return n * steps / (time.perf_counter() - t0)


@click.command()
@click.option("--seconds", default=2.0, show_default=True, type=click.FloatRange(0.1, 60), help="Per measurement.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--agents", default="1,16,256", show_default=True, help="Comma-separated agent counts.")
def sim(seconds: float, seed: int, agents: str) -> None:
    """Agent-steps per second of the vectorised simulator vs a naive per-agent loop."""
    counts = [int(x) for x in agents.split(",") if x.strip()]
    if not counts or min(counts) < 1:
        raise click.BadParameter("give positive agent counts, e.g. 1,16,256")
    measured = {str(n): _rate_batched(n, seconds, seed) for n in counts}
    rates = {k: round(v[0]) for k, v in measured.items()}
    cpu_rates = {k: round(v[1]) for k, v in measured.items()}
    top = max(counts)
    naive = _rate_naive(top, seconds, seed)
    schema_n = min(16, top)
    schema = _rate_schema(schema_n, seconds, seed)
    emit(
        "sim",
        {
            "unit": "agent-steps/s",
            "agent_steps_per_s": rates,
            "agent_steps_per_cpu_s": cpu_rates,
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "target_256": 20_000,
            "baseline_naive_loop_agent_steps_per_s": round(naive),
            "ratio_vs_naive": round(rates[str(top)] / naive, 2),
            "ratio_vs_1_agent": round(rates[str(top)] / rates[str(min(counts))], 2),
            f"schema_path_{schema_n}_agents_steps_per_s": round(schema),
            "step_seconds_game": 0.09,
            "seconds_per_measurement": seconds,
        },
    )
