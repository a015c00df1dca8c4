"""Built-in voxel simulator: same events, observations and actions as the Luanti mod.

Importing this package registers the Gymnasium environments (cheap: entry-point strings only)
and exposes the public API lazily (nothing heavy is imported until used).

Scripted players (``luanti_tune.sim.styles``)
    ``STYLES`` (name -> :class:`PlayerStyle`), ``TRAIN_STYLES`` = strafer, circler, zigzag, camper,
    builder, explorer, chatter; ``HELDOUT_STYLES`` = spiral, stopgo (never used for training
    data); ``get_style(name)``; ``make_style(name, base=None, pattern=None, **params)`` for a
    variant or a new style; ``random_style(seed)`` for a random held-out style. Noise is seeded.

Event generation (``luanti_tune.sim.session``)
    ``generate_events(SessionConfig(players=4, styles=("strafer", ...), minutes=1, seed=0,
    move_every=1, enemy=True)) -> Iterator[dict]`` yields schema-valid wire events in ``seq``
    order: ``system.start``, ``player.join/move/hp/die/punch/leave``, ``node.dig/place``,
    ``chat.msg``, ``inventory.action`` and, for the scripted enemy agent ``enemy-1``,
    ``agent.obs/act/result`` and ``reward``. Player names are ``p<i>-<style>``;
    ``source`` defaults to ``sim-<seed>``; time is simulated (``start_wall_us`` + game time), so
    the same config gives an identical stream. ``player.move`` carries pos, velocity, yaw, pitch
    and controls every ``move_every`` 0.09 s steps. Sinks: ``to_store(events, store)`` (validates,
    ``store.append`` in batches) and ``to_service(events, "http://127.0.0.1:8765")`` (POST
    ``/v1/events`` batches with retries). Both return a ``SinkReport``.

Episode runners for evaluation gates (``luanti_tune.sim.scenarios``)
    ``run_pursuit_episodes(policy, styles=MOBILE_STYLES, n=20, seed=0, max_steps=150)``,
    ``run_navigation_episodes(policy, n=10, seed=0, terrain_changes=True, max_steps=400)``,
    ``run_team_episodes(policy, n=5, seed=0, agents=3, items=9, max_steps=400)``. Policies are
    :class:`luanti_tune.policies.base.Policy` objects fed schema :class:`Observation` s; each
    returns a metrics dict (pursuit: ``catch_rate``, ``mean_time_to_catch_s``; navigation:
    ``success_rate``, ``mean_time_s``, ``mean_damage``; team: ``mean_items``, ``completion_rate``).
    The pursuit enemy is exactly as fast as a walking player (``ENEMY_SPEED = 1.0``) and players
    flee in their style, so chasing from behind is slow and predicting the target pays off:
    ``policies.scripted.PurePursuitPolicy`` (chase), ``InterceptPolicy`` (constant-velocity lead)
    and ``TrajectoryInterceptPolicy`` (lead with the averaged recent trajectory) are the baselines.
    ``PursuitScenario``/``NavigationScenario``/``TeamScenario`` expose ``observe()``, ``act()``,
    ``advance()`` for custom loops.

Gymnasium environments (``luanti_tune.sim.envs``)
    ``luanti_tune/Pursuit-v0``, ``luanti_tune/Navigate-v0``, ``luanti_tune/Team-v0`` with
    ``render_mode="rgb_array"``; ``luanti_tune.sim.envs.TeamParallelEnv`` is the PettingZoo
    parallel version of Team. Invalid actions never raise: they yield ``agent.result`` with a reason.

Many agents at once: ``sim.batch.BatchAgents(n, seed)`` steps ``n`` navigation agents in one
world as arrays (``step(actions) -> obs, reward, done``), the path measured by ``bench sim``.

Low level: ``World``/``WorldConfig`` (``sim.world``), ``Bodies`` (``sim.physics``),
``Simulation`` (``sim.core``: ``add_player``, ``add_agent``, ``apply_action``, ``observe``,
``step``, ``drain_events``).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "STYLES": "styles",
    "TRAIN_STYLES": "styles",
    "HELDOUT_STYLES": "styles",
    "MOBILE_STYLES": "styles",
    "PlayerStyle": "styles",
    "get_style": "styles",
    "make_style": "styles",
    "random_style": "styles",
    "SessionConfig": "session",
    "SinkReport": "session",
    "generate_events": "session",
    "to_store": "session",
    "to_service": "session",
    "run_pursuit_episodes": "scenarios",
    "run_navigation_episodes": "scenarios",
    "run_team_episodes": "scenarios",
    "World": "world",
    "WorldConfig": "world",
    "Simulation": "core",
    "Dynamics": "core",
    "Bodies": "physics",
    "BatchAgents": "batch",
    "PursuitScenario": "scenarios",
    "NavigationScenario": "scenarios",
    "TeamScenario": "scenarios",
    "ENEMY_SPEED": "scenarios",
}

__all__ = sorted(_EXPORTS)

ENV_IDS = ("luanti_tune/Pursuit-v0", "luanti_tune/Navigate-v0", "luanti_tune/Team-v0")


def _register() -> None:
    try:
        from gymnasium.envs.registration import register, registry
    except ImportError:  # gymnasium is a core dependency; stay importable without it anyway
        return
    for env_id, cls in zip(ENV_IDS, ("PursuitEnv", "NavigateEnv", "TeamEnv"), strict=True):
        if env_id not in registry:
            register(id=env_id, entry_point=f"luanti_tune.sim.envs:{cls}")


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f"luanti_tune.sim.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'luanti_tune.sim' has no attribute {name!r}")


_register()
