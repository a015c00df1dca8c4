"""A short Stable-Baselines3 PPO run on Navigate-v0 beats the random policy (tiny budget)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

import luanti_tune.sim  # noqa: F401  (registers the envs)


def _mean_return(policy, seeds: range) -> float:  # type: ignore[no-untyped-def]
    env = gym.make("luanti_tune/Navigate-v0", max_steps=80, terrain_changes=True)
    totals = []
    for s in seeds:
        obs, _ = env.reset(seed=s)
        done, total = False, 0.0
        while not done:
            obs, r, term, trunc, _ = env.step(policy(obs))
            total += r
            done = term or trunc
        totals.append(total)
    env.close()
    return float(np.mean(totals))


def test_ppo_improves_over_random() -> None:
    import torch
    from stable_baselines3 import PPO

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small nets: one thread is fastest and leaves the other core alone
    try:
        trained_return, random_return = _train_and_compare(PPO)
    finally:
        torch.set_num_threads(threads)
    assert trained_return > random_return + 1.5, (trained_return, random_return)


def _train_and_compare(PPO) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    env = gym.make("luanti_tune/Navigate-v0", max_steps=80, terrain_changes=True)
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=256,
        batch_size=64,
        n_epochs=8,
        learning_rate=3e-3,
        gamma=0.95,
        seed=0,
        policy_kwargs={"net_arch": [64, 64]},
        device="cpu",
    )
    model.learn(total_timesteps=3072)
    rng = np.random.default_rng(0)
    eval_seeds = range(1000, 1012)
    random_return = _mean_return(lambda obs: int(rng.integers(0, 11)), eval_seeds)
    trained_return = _mean_return(lambda obs: int(model.predict(obs, deterministic=True)[0]), eval_seeds)
    env.close()
    return trained_return, random_return
