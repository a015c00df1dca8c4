"""A tiny but real model family for the inference tests and the act benchmark.

Input ``x`` (B, 12): own velocity, target's relative position and velocity, and the change of
the target's relative position since this agent's previous decision (per-agent memory).
Output ``logits`` (B, 9): 8 compass directions and ``wait``. Decode = argmax, confidence = softmax max.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from luanti_tune.policies.base import AgentMemory, Decision, FamilyAdapter
from luanti_tune.schemas.agent import MoveAction, MoveArgs, Observation, WaitAction, WaitArgs
from luanti_tune.schemas.common import Vec3

_DIRS = [MoveArgs(dir=Vec3(x=math.cos(a), y=0.0, z=math.sin(a)), speed=1.0) for a in np.arange(8) * math.pi / 4]
_WAIT = WaitArgs(ticks=1)


class ToyAdapter(FamilyAdapter):
    family = "pursuit"
    input_names = ("x",)
    output_names = ("logits",)

    def featurize(self, observations: Sequence[Observation], memory: AgentMemory) -> dict[str, np.ndarray]:
        rows = []
        for o in observations:
            e = o.entities[0] if o.entities else None
            if e is None:
                rel = (0.0, 0.0, 0.0)
                ev = (0.0, 0.0, 0.0)
            else:
                rel = (e.rel.x, e.rel.y, e.rel.z)
                ev = (e.velocity.x, e.velocity.y, e.velocity.z) if e.velocity is not None else (0.0, 0.0, 0.0)
            m = memory.get(o.agent)
            if m is None:
                m = memory[o.agent] = {"prev": rel}
            prev = m["prev"]
            m["prev"] = rel
            v = o.velocity
            rows.append((v.x, v.y, v.z, *rel, *ev, rel[0] - prev[0], rel[1] - prev[1], rel[2] - prev[2]))
        return {"x": np.asarray(rows, dtype=np.float32).reshape(len(observations), 12)}

    def decode(self, observations: Sequence[Observation], outputs: dict[str, np.ndarray]) -> list[Decision]:
        logits = np.asarray(outputs["logits"], dtype=np.float64)
        z = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        best = logits.argmax(axis=1).tolist()
        conf = p.max(axis=1).tolist()
        return [
            Decision(
                _action(WaitAction, o.agent, "wait", _WAIT)
                if k == 8
                else _action(MoveAction, o.agent, "move", _DIRS[k]),
                c,
            )
            for o, k, c in zip(observations, best, conf, strict=True)
        ]


_SET = {"agent", "type", "args"}


def _action(cls, agent, type_, args):
    """What ``cls.model_construct`` does, minus its generic field walk (args are pre-validated)."""
    m = cls.__new__(cls)
    object.__setattr__(m, "__dict__", {"agent": agent, "type": type_, "args": args})
    object.__setattr__(m, "__pydantic_fields_set__", _SET)
    object.__setattr__(m, "__pydantic_extra__", None)
    object.__setattr__(m, "__pydantic_private__", None)
    return m


def make_module(seed: int, hidden: int = 32):
    import torch

    g = torch.Generator().manual_seed(seed)
    m = torch.nn.Sequential(torch.nn.Linear(12, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 9))
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return m.eval()


def make_candidate(seed: int, version: str | None = None, **kw):
    from luanti_tune.inference.source import ModelCandidate

    return ModelCandidate(
        family="pursuit",
        name="toy-pursuit",
        version=version or f"v{seed}",
        module=make_module(seed),
        adapter=ToyAdapter(),
        **kw,
    )


def obs_dict(i: int, rng: np.random.Generator, kind: str = "pursuit") -> dict:
    def v(s: float) -> dict:
        x, y, z = rng.normal(0, s, 3).round(3).tolist()
        return {"x": x, "y": y, "z": z}

    return {
        "agent": f"enemy-{i}",
        "kind": kind,
        "tick": int(rng.integers(0, 1000)),
        "pos": v(10),
        "yaw": 0,
        "pitch": 0,
        "hp": 20,
        "velocity": v(1),
        "entities": [{"kind": "player", "name": "alice", "rel": v(5), "velocity": v(2)}],
        "targets": ["alice"],
    }


def observations(n: int, seed: int = 0, kind: str = "pursuit") -> list[Observation]:
    rng = np.random.default_rng(seed)
    return [Observation.model_validate(obs_dict(i, rng, kind)) for i in range(n)]
