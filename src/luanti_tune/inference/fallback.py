"""Fallback policies: who answers when no model exists, the model errors or is unsure.

The scripted policies of :mod:`luanti_tune.policies.scripted` are used when available; this
module only adds :class:`ChaseOrWait`, a minimal always-available last resort (move straight
towards the first target in view, otherwise wait).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

from luanti_tune.policies.base import AgentMemory, Decision, Policy
from luanti_tune.schemas.agent import MoveAction, MoveArgs, Observation, WaitAction, WaitArgs
from luanti_tune.schemas.common import Vec3

log = logging.getLogger(__name__)

_WAIT_ARGS = WaitArgs(ticks=1)


class ChaseOrWait(Policy):
    """Move straight at the first targeted (else first player) entity in view; wait otherwise."""

    name = "chase_or_wait"
    version = "1"

    def decide(self, observations: Sequence[Observation], memory: AgentMemory) -> list[Decision]:
        out: list[Decision] = []
        for obs in observations:
            ent = None
            if obs.entities:
                wanted = set(obs.targets)
                ent = next((e for e in obs.entities if e.name in wanted), None) if wanted else None
                if ent is None:
                    ent = next((e for e in obs.entities if e.kind == "player"), None)
            if ent is None:
                out.append(Decision(WaitAction(agent=obs.agent, type="wait", args=_WAIT_ARGS), 1.0))
                continue
            dx, dz = ent.rel.x, ent.rel.z
            n = math.hypot(dx, dz)
            if n < 1e-6:
                out.append(Decision(WaitAction(agent=obs.agent, type="wait", args=_WAIT_ARGS), 1.0))
                continue
            args = MoveArgs(dir=Vec3(x=dx / n, y=0.0, z=dz / n), speed=1.0)
            out.append(Decision(MoveAction(agent=obs.agent, type="move", args=args), 1.0))
        return out


def default_fallbacks() -> dict[str, Policy]:
    """Scripted fallback per observation kind (:mod:`luanti_tune.policies.scripted`)."""
    try:
        from luanti_tune.policies import scripted
    except ImportError as exc:  # pragma: no cover - the scripted module ships with the package
        log.warning("scripted fallback policies unavailable: %s", exc)
        return {}
    table: dict[str, Policy] = {}
    for kind, cls_name in (
        ("pursuit", "InterceptPolicy"),
        ("navigation", "AStarNavigationPolicy"),
        ("team", "GreedyTeamPolicy"),
    ):
        cls = getattr(scripted, cls_name, None)
        if cls is None:
            continue
        try:
            table[kind] = cls()
        except Exception as exc:  # noqa: BLE001 - a broken scripted policy must not stop serving
            log.warning("scripted fallback %s unavailable: %s", cls_name, exc)
    return table
