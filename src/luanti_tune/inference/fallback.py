"""Fallback policies: who answers when no model exists, the model errors or is unsure.

The scripted policies of :mod:`luanti_tune.policies.scripted` answer per observation kind
(:func:`default_fallbacks`); this module only adds :class:`ChaseOrWait`, a minimal
always-available last resort (move straight towards the first target in view, otherwise wait).
All of them decide a whole batch at once, as columns.
"""

from __future__ import annotations

import numpy as np

from luanti_tune.policies.base import AgentMemory, Policy
from luanti_tune.policies.batch import DecisionColumns
from luanti_tune.policies.columns import ObservationColumns
from luanti_tune.policies.scripted import (
    AStarNavigationPolicy,
    ColumnarPolicy,
    GreedyTeamPolicy,
    InterceptPolicy,
    moves,
)
from luanti_tune.policies.targets import first_listed, first_of_kind


class ChaseOrWait(ColumnarPolicy):
    """Move straight at the first targeted (else first player) entity in view; wait otherwise."""

    name = "chase_or_wait"
    version = "1"

    def decide_all(self, agents: list[str], cols: ObservationColumns, memory: AgentMemory) -> DecisionColumns:
        entity = first_listed(cols)
        entity = np.where(entity >= 0, entity, first_of_kind(cols, "player"))
        has = entity >= 0
        e = cols.entities
        rel = e.rel[np.where(has, entity, 0)] if len(e.kind) else np.zeros((len(agents), 3))
        return moves(agents, rel[:, 0], rel[:, 2], has, min_norm=1e-6)


def default_fallbacks() -> dict[str, Policy]:
    """Scripted fallback per observation kind (:mod:`luanti_tune.policies.scripted`)."""
    return {"pursuit": InterceptPolicy(), "navigation": AStarNavigationPolicy(), "team": GreedyTeamPolicy()}
