"""The ``pursuit`` model family: predict where a player will be, intercept them there.

Model (:class:`PursuitNet`, built lazily with torch): inputs ``hist`` ``[B, K, 2]`` (the target's
horizontal positions at ``t, t-dt, ..., t-(K-1)dt`` relative to its current position, world
x/z), ``vel`` ``[B, 2]`` (its current horizontal velocity) and ``threat`` ``[B, 3]`` (position of
the nearest pursuer relative to the target, x/z, and a presence flag; players flee, so where
the pursuer is matters; at inference the pursuer is the deciding agent itself). Inside, the window is rotated into
the target's heading frame (so a style learned going north transfers to going east), an MLP
predicts a residual on top of constant-velocity extrapolation, and the result is rotated back.
Outputs ``mean`` ``[B, H, 2]`` (predicted displacement at each horizon, world x/z) and
``log_std`` ``[B, H]`` (isotropic Gaussian uncertainty per horizon); trained with Gaussian NLL.

Only positions and velocities are used because that is what an agent observes of a player
(``Observation.entities``); yaw/controls are in ``player.move`` events but not in observations,
and a feature the engine cannot compute would make training and serving disagree.
The same :func:`window_features` resampling is used by the dataset builder and the adapter.

Adapter (:class:`PursuitAdapter`): per agent memory keeps each target's recent absolute
positions; decode moves toward the earliest predicted point the agent can reach (intercept),
with a confidence that falls with the predicted uncertainty relative to the distance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from luanti_tune.policies.base import AgentMemory, Decision, FamilyAdapter
from luanti_tune.policies.families import FamilySpec
from luanti_tune.schemas.agent import EntityView, MoveAction, MoveArgs, Observation, WaitAction
from luanti_tune.schemas.common import Vec3

FAMILY = "pursuit"
#: Luanti's default server step; observation ``tick`` counts these.
TICK_S = 0.09
DEFAULT_ARCH: dict[str, Any] = {
    "kind": "mlp",
    "history": 8,
    "hist_dt": 0.2,
    "horizons": [0.5, 1.0, 2.0],
    "hidden": 64,
    "layers": 2,
    "agent_speed": 4.0,
    "catch_radius": 1.0,
}
#: A pursuer farther than this (nodes) from the target is treated as absent.
THREAT_RANGE = 20.0
POS_SCALE = 4.0
OUT_SCALE = 2.0
LOG_STD_MIN, LOG_STD_MAX = -3.0, 3.0


def architecture(**overrides: Any) -> dict[str, Any]:
    """A complete architecture dict (what the manifest stores) with ``overrides`` applied."""
    arch = {**DEFAULT_ARCH, **overrides}
    arch["horizons"] = [float(h) for h in arch["horizons"]]
    for key in ("history", "hidden", "layers"):
        arch[key] = int(arch[key])
        if arch[key] < 1:
            raise ValueError(f"architecture.{key} must be >= 1")
    if arch["history"] < 2:
        raise ValueError("architecture.history must be >= 2")
    if not arch["horizons"] or any(h <= 0 for h in arch["horizons"]):
        raise ValueError("architecture.horizons must be positive")
    return arch


# ----------------------------------------------------------------------------- features


def window_features(times: np.ndarray, xz: np.ndarray, t_now: np.ndarray, history: int, hist_dt: float) -> np.ndarray:
    """``[N, history, 2]`` positions at ``t_now - k*hist_dt`` minus the position at ``t_now``.

    ``times`` ascending ``[M]``, ``xz`` ``[M, 2]``; linear interpolation, clamped at the ends.
    """
    offsets = np.arange(history, dtype=np.float64) * hist_dt
    tq = np.asarray(t_now, dtype=np.float64)[:, None] - offsets[None, :]
    px = np.interp(tq, times, xz[:, 0])
    pz = np.interp(tq, times, xz[:, 1])
    hist = np.stack([px - px[:, :1], pz - pz[:, :1]], axis=-1)
    return hist.astype(np.float32)


def future_targets(times: np.ndarray, xz: np.ndarray, t_now: np.ndarray, horizons: Sequence[float]) -> np.ndarray:
    """``[N, H, 2]`` displacement from ``t_now`` to ``t_now + h`` for each horizon."""
    h = np.asarray(horizons, dtype=np.float64)
    t0 = np.asarray(t_now, dtype=np.float64)
    tq = np.concatenate([t0[:, None], t0[:, None] + h[None, :]], axis=1)
    px = np.interp(tq, times, xz[:, 0])
    pz = np.interp(tq, times, xz[:, 1])
    return np.stack([px[:, 1:] - px[:, :1], pz[:, 1:] - pz[:, :1]], axis=-1).astype(np.float32)


def constant_velocity(vel: np.ndarray, horizons: Sequence[float]) -> np.ndarray:
    """Baseline prediction ``[N, H, 2]``: keep going at the current velocity."""
    return (vel[:, None, :] * np.asarray(horizons, dtype=np.float32)[None, :, None]).astype(np.float32)


def displacement_errors(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Euclidean error ``[N, H]``."""
    return np.asarray(np.sqrt(((pred - target) ** 2).sum(-1)))


# ----------------------------------------------------------------------------- torch model


def build_module(arch: Mapping[str, Any]) -> Any:
    """A fresh :class:`PursuitNet` for ``arch`` (torch imported here, not at module import)."""
    import torch
    from torch import nn

    a = architecture(**dict(arch))
    if a["kind"] != "mlp":
        raise ValueError(f"architecture.kind {a['kind']!r} is not supported (use 'mlp')")

    class PursuitNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.history = a["history"]
            self.hist_dt = float(a["hist_dt"])
            self.n_h = len(a["horizons"])
            self.horizons: torch.Tensor
            self.register_buffer("horizons", torch.tensor(a["horizons"], dtype=torch.float32), persistent=False)
            layers: list[nn.Module] = []
            width = self.history * 2 + 3 + 5
            for _ in range(a["layers"]):
                layers += [nn.Linear(width, a["hidden"]), nn.SiLU()]
                width = a["hidden"]
            head = nn.Linear(width, self.n_h * 3)
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
            layers.append(head)
            self.mlp = nn.Sequential(*layers)

        def forward(
            self, hist: torch.Tensor, vel: torch.Tensor, threat: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            d = vel + (hist[:, 0] - hist[:, 1]) / self.hist_dt
            hx = d[:, 0] + 1e-3
            hz = d[:, 1]
            n = torch.sqrt(hx * hx + hz * hz)
            c = (hx / n)[:, None]
            s = (hz / n)[:, None]
            lx = c * hist[..., 0] + s * hist[..., 1]
            lz = -s * hist[..., 0] + c * hist[..., 1]
            vx = c[:, 0] * vel[:, 0] + s[:, 0] * vel[:, 1]
            vz = -s[:, 0] * vel[:, 0] + c[:, 0] * vel[:, 1]
            speed = torch.sqrt(vx * vx + vz * vz + 1e-6)
            present = threat[:, 2]
            tx = c[:, 0] * threat[:, 0] + s[:, 0] * threat[:, 1]
            tz = -s[:, 0] * threat[:, 0] + c[:, 0] * threat[:, 1]
            tdist = torch.sqrt(tx * tx + tz * tz + 1e-6)
            tfeat = torch.stack(
                [
                    tx / tdist * present,
                    tz / tdist * present,
                    present,
                    torch.exp(-tdist / 6.0) * present,
                    tdist / THREAT_RANGE * present,
                ],
                dim=1,
            )
            motion = torch.stack([vx, vz, speed], dim=1) / POS_SCALE
            feats = torch.cat([lx / POS_SCALE, lz / POS_SCALE, motion, tfeat], dim=1)
            out = self.mlp(feats).view(-1, self.n_h, 3)
            mx = vx[:, None] * self.horizons[None, :] + out[..., 0] * OUT_SCALE
            mz = vz[:, None] * self.horizons[None, :] + out[..., 1] * OUT_SCALE
            wx = c * mx - s * mz
            wz = s * mx + c * mz
            mean = torch.stack([wx, wz], dim=-1)
            log_std = torch.clamp(out[..., 2] + torch.log(0.3 + 0.5 * self.horizons)[None, :], LOG_STD_MIN, LOG_STD_MAX)
            return mean, log_std

    return PursuitNet()


#: Model inputs, in calling order: ``module(hist, vel, threat)``.
INPUTS = ("hist", "vel", "threat")


def gaussian_nll(mean: Any, log_std: Any, target: Any) -> Any:
    """Isotropic 2D Gaussian NLL per sample and horizon (up to a constant), torch tensors."""
    sq = ((target - mean) ** 2).sum(-1)
    return 0.5 * sq * (-2.0 * log_std).exp() + 2.0 * log_std


def evaluate(module: Any, data: Mapping[str, np.ndarray], batch_size: int = 8192) -> dict[str, float]:
    """Offline metrics of ``module`` on arrays ``hist, vel, target``: nll, ade (mean error), per horizon."""
    import torch

    n = len(data["hist"])
    if n == 0:
        return {"n": 0.0}
    means, logs = [], []
    module.eval()
    with torch.inference_mode():
        for i in range(0, n, batch_size):
            m, s = module(*[torch.from_numpy(data[k][i : i + batch_size]) for k in INPUTS])
            means.append(m.numpy())
            logs.append(s.numpy())
    mean = np.concatenate(means)
    log_std = np.concatenate(logs)
    target = data["target"]
    err = displacement_errors(mean, target)
    nll = 0.5 * (err**2) * np.exp(-2 * log_std) + 2 * log_std
    out = {"n": float(n), "nll": float(nll.mean()), "ade": float(err.mean()), "fde": float(err[:, -1].mean())}
    for j in range(err.shape[1]):
        out[f"err_h{j}"] = float(err[:, j].mean())
    if not all(math.isfinite(v) for v in out.values()):
        out["nonfinite"] = 1.0
    return out


def baseline_metrics(data: Mapping[str, np.ndarray], horizons: Sequence[float]) -> dict[str, float]:
    """Constant-velocity baseline errors on the same arrays (for reports)."""
    if len(data["hist"]) == 0:
        return {"n": 0.0}
    err = displacement_errors(constant_velocity(data["vel"], horizons), data["target"])
    return {"n": float(len(err)), "ade": float(err.mean()), "fde": float(err[:, -1].mean())}


# ----------------------------------------------------------------------------- adapter


def select_target(obs: Observation) -> EntityView | None:
    """The first named target visible in ``entities``, else the nearest player."""
    by_name = {e.name: e for e in obs.entities if e.name}
    for name in obs.targets:
        if name in by_name:
            return by_name[name]
    players = [e for e in obs.entities if e.kind == "player"]
    if not players:
        return None
    return min(players, key=lambda e: e.rel.x**2 + e.rel.z**2)


class PursuitAdapter(FamilyAdapter):
    """Observations + per-agent target tracks <-> ``hist``/``vel`` arrays; intercept decoding."""

    family = FAMILY
    input_names = INPUTS
    output_names = ("mean", "log_std")

    def __init__(self, arch: Mapping[str, Any] | None = None) -> None:
        self.arch = architecture(**dict(arch or {}))
        self.history = int(self.arch["history"])
        self.hist_dt = float(self.arch["hist_dt"])
        self.horizons = np.asarray(self.arch["horizons"], dtype=np.float32)
        self.agent_speed = float(self.arch["agent_speed"])
        self.catch_radius = float(self.arch["catch_radius"])
        self.keep_s = (self.history - 1) * self.hist_dt + 0.5

    def example_inputs(self, batch: int = 4) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(0)
        hist = np.cumsum(rng.normal(0, 0.5, (batch, self.history, 2)), axis=1).astype(np.float32)
        hist -= hist[:, :1]
        threat = np.concatenate([rng.normal(0, 6, (batch, 2)), np.ones((batch, 1))], axis=1).astype(np.float32)
        return {"hist": hist, "vel": rng.normal(0, 2, (batch, 2)).astype(np.float32), "threat": threat}

    def featurize(self, observations: Sequence[Observation], memory: AgentMemory) -> dict[str, np.ndarray]:
        n = len(observations)
        hist = np.zeros((n, self.history, 2), dtype=np.float32)
        vel = np.zeros((n, 2), dtype=np.float32)
        threat = np.zeros((n, 3), dtype=np.float32)
        for i, obs in enumerate(observations):
            target = select_target(obs)
            if target is None:
                continue
            if target.rel.x**2 + target.rel.z**2 <= THREAT_RANGE**2:
                threat[i] = (-target.rel.x, -target.rel.z, 1.0)
            t = obs.tick * TICK_S
            ax, az = obs.pos.x + target.rel.x, obs.pos.z + target.rel.z
            mem = memory.setdefault(obs.agent, {})
            tracks: dict[str, list[tuple[float, float, float]]] = mem.setdefault("tracks", {})
            key = target.name or "_nearest"
            track = tracks.setdefault(key, [])
            if track and t <= track[-1][0]:
                if t < track[-1][0] - self.keep_s:  # tick went backwards (new episode): restart
                    track.clear()
                else:
                    track.pop()
            track.append((t, ax, az))
            while track and track[0][0] < t - self.keep_s:
                track.pop(0)
            if len(tracks) > 8:  # forget targets not seen for a while
                for k in [k for k, tr in tracks.items() if k != key and tr[-1][0] < t - self.keep_s]:
                    del tracks[k]
            arr = np.asarray(track, dtype=np.float64)
            hist[i] = window_features(arr[:, 0], arr[:, 1:], np.array([t]), self.history, self.hist_dt)[0]
            if target.velocity is not None:
                vel[i] = (target.velocity.x, target.velocity.z)
            elif len(arr) >= 2 and arr[-1, 0] > arr[-2, 0]:
                vel[i] = (arr[-1, 1:] - arr[-2, 1:]) / (arr[-1, 0] - arr[-2, 0])
        return {"hist": hist, "vel": vel, "threat": threat}

    def intercept(self, rel: np.ndarray, mean: np.ndarray, log_std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Aim points ``[N, 2]`` (relative to the agent) and their std ``[N]``.

        The predicted path is linear between ``(0, rel)`` and each horizon; the aim is the first
        point on it the agent can reach in time at ``agent_speed`` (else the last horizon's point).
        """
        n = len(rel)
        knots_t = np.concatenate([[0.0], self.horizons]).astype(np.float64)
        grid = np.linspace(0.0, float(knots_t[-1]), 41)
        disp = np.concatenate([np.zeros((n, 1, 2)), mean.astype(np.float64)], axis=1)
        std = np.concatenate([np.zeros((n, 1)), np.exp(log_std.astype(np.float64))], axis=1)
        # piecewise-linear interpolation on the time grid, vectorised over the batch
        idx = np.clip(np.searchsorted(knots_t, grid, side="right") - 1, 0, len(knots_t) - 2)
        w = (grid - knots_t[idx]) / (knots_t[idx + 1] - knots_t[idx])
        path = disp[:, idx] * (1 - w)[None, :, None] + disp[:, idx + 1] * w[None, :, None]
        path_std = std[:, idx] * (1 - w)[None, :] + std[:, idx + 1] * w[None, :]
        pts = rel[:, None, :] + path
        reach = np.sqrt((pts**2).sum(-1)) <= self.agent_speed * grid[None, :] + self.catch_radius
        first = np.where(reach.any(1), reach.argmax(1), len(grid) - 1)
        rows = np.arange(n)
        return pts[rows, first], path_std[rows, first]

    def decode(self, observations: Sequence[Observation], outputs: dict[str, np.ndarray]) -> list[Decision]:
        rel = np.zeros((len(observations), 2))
        has = np.zeros(len(observations), dtype=bool)
        for i, obs in enumerate(observations):
            target = select_target(obs)
            if target is not None:
                rel[i] = (target.rel.x, target.rel.z)
                has[i] = True
        aim, std = self.intercept(rel, np.asarray(outputs["mean"]), np.asarray(outputs["log_std"]))
        decisions: list[Decision] = []
        for i, obs in enumerate(observations):
            if not has[i]:
                decisions.append(Decision(WaitAction(agent=obs.agent, type="wait"), confidence=0.0))
                continue
            vec = aim[i] if np.hypot(*aim[i]) > 1e-6 else rel[i]
            norm = float(np.hypot(*vec))
            if not math.isfinite(norm) or norm < 1e-9:
                decisions.append(Decision(WaitAction(agent=obs.agent, type="wait"), confidence=0.5))
                continue
            dist = float(np.hypot(*rel[i]))
            conf = 1.0 / (1.0 + float(std[i]) / (1.0 + dist))
            args = MoveArgs.model_construct(
                dir=Vec3.model_construct(x=float(vec[0] / norm), y=0.0, z=float(vec[1] / norm)), speed=1.0
            )
            decisions.append(Decision(MoveAction.model_construct(agent=obs.agent, type="move", args=args), conf))
        return decisions


def pursuit_family() -> FamilySpec:
    return FamilySpec(
        name=FAMILY,
        adapter=PursuitAdapter,
        build=build_module,
        evaluate=evaluate,
        description="Predicts a player's displacement at several horizons (Gaussian); enemies intercept.",
    )
