"""Simulated player populations for the analysis tests (flat open world, every training style)."""

from __future__ import annotations

from typing import Any

from luanti_tune.sim.session import SessionConfig, generate_events
from luanti_tune.sim.styles import TRAIN_STYLES
from luanti_tune.sim.world import WorldConfig

OPEN_WORLD = WorldConfig(
    size_x=64, size_y=12, size_z=64, terrain="flat", base_height=3, river=False, lava_pools=0, walls=0
)


def population(seeds: range, minutes: float, move_every: int = 1) -> list[dict[str, Any]]:
    """Sessions with one player of each training style (plus the scripted enemy) per seed.

    Player names are made unique per session (``s<seed>.p<i>-<style>``): each session's players
    are different people; the style stays readable in the name for scoring only.
    """
    events: list[dict[str, Any]] = []
    for seed in seeds:
        cfg = SessionConfig(
            players=len(TRAIN_STYLES),
            styles=TRAIN_STYLES,
            minutes=minutes,
            seed=seed,
            move_every=move_every,
            world=OPEN_WORLD,
            bridge_collapse_s=None,
        )
        for ev in generate_events(cfg):
            for key in ("actor", "target"):
                ref = ev.get(key)
                if ref and ref.get("kind") == "player" and ref.get("name"):
                    ref["name"] = f"s{seed}.{ref['name']}"
            events.append(ev)
    return events


def true_style(player: str) -> str:
    return player.split("-", 1)[1]
