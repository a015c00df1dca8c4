"""Synthetic observations for checking an ONNX export when no real observation was seen yet."""

from __future__ import annotations

import logging

import numpy as np

from luanti_tune.policies.base import FamilyAdapter
from luanti_tune.schemas.agent import Observation

log = logging.getLogger(__name__)


def _vec(rng: np.random.Generator, scale: float) -> dict[str, float]:
    x, y, z = (rng.normal(0.0, scale, 3)).round(3).tolist()
    return {"x": x, "y": y, "z": z}


def synthetic_observation(kind: str, i: int, rng: np.random.Generator, nearby_radius: int | None) -> Observation:
    n_ent = int(rng.integers(1, 4))
    entities = [
        {
            "kind": "player",
            "name": f"p{j}",
            "rel": _vec(rng, 6.0),
            "velocity": _vec(rng, 2.0),
            "hp": float(rng.uniform(1, 20)),
        }
        for j in range(n_ent)
    ]
    raw: dict[str, object] = {
        "agent": f"synthetic-{i}",
        "kind": kind,
        "tick": int(rng.integers(0, 10_000)),
        "pos": _vec(rng, 20.0),
        "yaw": float(rng.uniform(-3.1, 3.1)),
        "hp": float(rng.uniform(1, 20)),
        "velocity": _vec(rng, 2.0),
        "entities": entities,
        "targets": ["p0"],
        "goal": _vec(rng, 15.0),
    }
    if nearby_radius is not None:
        side = 2 * nearby_radius + 1
        raw["nearby"] = {"radius": nearby_radius, "codes": rng.integers(0, 3, side**3).tolist()}
    return Observation.model_validate(raw)


def synthetic_observations(
    kind: str, n: int, rng: np.random.Generator, adapter: FamilyAdapter | None = None
) -> list[Observation]:
    """``n`` random observations of ``kind`` that ``adapter.featurize`` accepts (tries grid radii)."""
    last: Exception | None = None
    for radius in (2, None, 1, 3, 4, 5, 6, 7, 8):
        obs = [synthetic_observation(kind, i, rng, radius) for i in range(n)]
        if adapter is None:
            return obs
        try:
            adapter.featurize(obs, {})
            return obs
        except Exception as exc:  # noqa: BLE001 - try the next shape
            last = exc
    log.warning("no synthetic observation of %s is accepted by its adapter: %s", kind, last)
    return []
