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
import operator
import threading
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
#: Batches with at most this many targeted agents are featurized agent by agent (cheaper than numpy).
SCALAR_BATCH = 8
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
    entities = obs.entities
    if len(entities) == 1:  # the common case, same answer without building the name map
        e = entities[0]
        if e.name and e.name in obs.targets:
            return e
        return e if e.kind == "player" else None
    by_name = {e.name: e for e in entities if e.name}
    for name in obs.targets:
        if name in by_name:
            return by_name[name]
    players = [e for e in entities if e.kind == "player"]
    if not players:
        return None
    return min(players, key=lambda e: e.rel.x**2 + e.rel.z**2)


class _TrackStore:
    """Every target track of one adapter in preallocated rows: times/x/z ``[slots, width]``,
    oldest first, ``count[slot]`` valid samples. Rows are recycled when their :class:`Track` dies."""

    def __init__(self, width: int, slots: int = 1024) -> None:
        self.width = width
        self.t = np.zeros((slots, width))
        self.x = np.zeros((slots, width))
        self.z = np.zeros((slots, width))
        self.count = np.zeros(slots, dtype=np.int64)
        self.free: list[int] = list(range(slots - 1, -1, -1))
        self.lock = threading.Lock()

    def alloc(self) -> int:
        if not self.free:
            old = len(self.count)
            new = old * 2
            for name in ("t", "x", "z"):
                arr = getattr(self, name)
                grown = np.zeros((new, self.width))
                grown[:old] = arr
                setattr(self, name, grown)
            count = np.zeros(new, dtype=np.int64)
            count[:old] = self.count
            self.count = count
            self.free.extend(range(new - 1, old - 1, -1))
        slot = self.free.pop()
        self.count[slot] = 0
        return slot


class Track:
    """One target's recent absolute positions ``(t, x, z)``, oldest first (a sequence of tuples).

    Normally a row of the adapter's :class:`_TrackStore` (updated for the whole batch at once);
    a track whose times stop increasing strictly (ticks going back a little) or outgrow the row
    keeps a plain list and is updated one by one, exactly like before.
    """

    __slots__ = ("store", "slot", "items", "__weakref__")

    def __init__(self, store: _TrackStore, items: list[tuple[float, float, float]] | None = None) -> None:
        self.store = store
        self.slot = -1
        self.items = items
        if items is None:
            self.slot = store.alloc()

    def __del__(self) -> None:
        if self.slot >= 0:
            self.store.free.append(self.slot)
            self.slot = -1

    def to_list(self) -> list[tuple[float, float, float]]:
        if self.items is not None:
            return list(self.items)
        s, n = self.store, int(self.store.count[self.slot])
        return list(
            zip(s.t[self.slot, :n].tolist(), s.x[self.slot, :n].tolist(), s.z[self.slot, :n].tolist(), strict=True)
        )

    def store_items(self, items: list[tuple[float, float, float]]) -> None:
        """Replace the contents: in a store row when strictly increasing and short enough, else a list."""
        store = self.store
        n = len(items)
        if 0 < n < store.width and _strictly_increasing(items):
            if self.slot < 0:
                self.slot = store.alloc()
            s = self.slot
            store.t[s, :n], store.x[s, :n], store.z[s, :n] = zip(*items, strict=True)
            store.count[s] = n
            self.items = None
        else:
            if self.slot >= 0:
                store.free.append(self.slot)
                self.slot = -1
            self.items = items

    def make_list(self) -> list[tuple[float, float, float]]:
        """Switch to the one-by-one list representation (same contents)."""
        if self.items is None:
            self.items = self.to_list()
            self.store.free.append(self.slot)
            self.slot = -1
        return self.items

    def __len__(self) -> int:
        return len(self.items) if self.items is not None else int(self.store.count[self.slot])

    def __getitem__(self, i: int) -> tuple[float, float, float]:
        if self.items is not None:
            return self.items[i]
        n = int(self.store.count[self.slot])
        j = i + n if i < 0 else i
        if not 0 <= j < n:
            raise IndexError("track index out of range")
        s = self.store
        return (float(s.t[self.slot, j]), float(s.x[self.slot, j]), float(s.z[self.slot, j]))

    def __iter__(self) -> Any:
        return iter(self.to_list())


def _strictly_increasing(items: Sequence[tuple[float, float, float]]) -> bool:
    return all(a[0] < b[0] for a, b in zip(items, items[1:], strict=False))


def _interp_rows(tq: np.ndarray, xp: np.ndarray, fps: Sequence[np.ndarray], n: np.ndarray) -> list[np.ndarray]:
    """``np.interp(tq[r], xp[r, :n[r]], fp[r, :n[r]])`` for every row ``r`` at once, same arithmetic.

    ``xp`` rows strictly increasing over their first ``n[r] >= 1`` entries; ``tq`` ``[R, Q]``.
    """
    rows = np.arange(len(n))[:, None]
    valid = np.arange(xp.shape[1])[None, :] < n[:, None]
    # j: the last knot <= x (-1 below the first); like numpy's binary search on an increasing xp
    j = ((xp[:, None, :] <= tq[:, :, None]) & valid[:, None, :]).sum(-1) - 1
    last = (n - 1)[:, None]
    jc = np.minimum(np.maximum(j, 0), np.maximum(last - 1, 0))
    x0 = xp[rows, jc]
    x1 = xp[rows, jc + 1]
    below = j < 0
    above = j >= last
    exact = x0 == tq
    out = []
    for fp in fps:
        f0 = fp[rows, jc]
        f1 = fp[rows, jc + 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            inner = ((f1 - f0) / (x1 - x0)) * (tq - x0) + f0
        res = np.where(exact, f0, inner)
        res = np.where(above, fp[rows, last], res)
        res = np.where(below, fp[:, :1], res)
        out.append(res)
    return out


#: ``(observation ids, rel [N, 2], has [N])`` of the last featurized batch, reused by decode.
_Targets = tuple[tuple[Observation, ...], np.ndarray, np.ndarray]


class PursuitAdapter(FamilyAdapter):
    """Observations + per-agent target tracks <-> ``hist``/``vel`` arrays; intercept decoding.

    Batched: one pass in Python picks each agent's target and its :class:`Track` in ``memory``
    (``memory[agent]["tracks"][target name or "_nearest"]``), then every track is updated and
    resampled for the whole batch with numpy. Results equal the per-agent algorithm (see
    ``tests/policies/test_pursuit_batched.py``).
    """

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
        # ticks are integers, so a strictly increasing track holds at most keep_s/TICK_S + 1 samples
        self._store = _TrackStore(int(self.keep_s / TICK_S) + 3)
        self._offsets = np.arange(self.history, dtype=np.float64) * self.hist_dt
        self._last: _Targets | None = None

    def example_inputs(self, batch: int = 4) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(0)
        hist = np.cumsum(rng.normal(0, 0.5, (batch, self.history, 2)), axis=1).astype(np.float32)
        hist -= hist[:, :1]
        threat = np.concatenate([rng.normal(0, 6, (batch, 2)), np.ones((batch, 1))], axis=1).astype(np.float32)
        return {"hist": hist, "vel": rng.normal(0, 2, (batch, 2)).astype(np.float32), "threat": threat}

    # ------------------------------------------------------------------ featurize
    def featurize(self, observations: Sequence[Observation], memory: AgentMemory) -> dict[str, np.ndarray]:
        n = len(observations)
        hist = np.zeros((n, self.history, 2), dtype=np.float32)
        vel = np.zeros((n, 2), dtype=np.float32)
        threat = np.zeros((n, 3), dtype=np.float32)
        rel = np.zeros((n, 2))
        has = np.zeros(n, dtype=bool)
        agents = [o.agent for o in observations]
        if len(set(agents)) == n:
            rounds = [range(n)]
        else:  # an agent twice in a batch: its second observation sees the first one's update
            seen: dict[str, int] = {}
            by_round: list[list[int]] = []
            for i, a in enumerate(agents):
                r = seen[a] = seen.get(a, -1) + 1
                if r == len(by_round):
                    by_round.append([])
                by_round[r].append(i)
            rounds = by_round  # type: ignore[assignment]
        with self._store.lock:
            for idx in rounds:
                self._featurize_rows(observations, idx, memory, hist, vel, threat, rel, has)
        self._last = (tuple(observations), rel, has)
        return {"hist": hist, "vel": vel, "threat": threat}

    def _featurize_rows(
        self,
        observations: Sequence[Observation],
        idx: Sequence[int],
        memory: AgentMemory,
        hist: np.ndarray,
        vel: np.ndarray,
        threat: np.ndarray,
        rel_out: np.ndarray,
        has_out: np.ndarray,
    ) -> None:
        """Agents ``idx`` (each agent at most once): pick targets, update their tracks, resample."""
        recs = self._collect(observations, idx, memory)
        if not recs:
            return
        if len(recs) <= SCALAR_BATCH:  # a few agents: plain Python beats numpy's per-call overhead
            for i, track, tick, px_, pz_, rx_, rz_, v in recs:
                if rx_**2 + rz_**2 <= THREAT_RANGE**2:
                    threat[i] = (-rx_, -rz_, 1.0)
                rel_out[i] = (rx_, rz_)
                has_out[i] = True
                if v is not None:
                    vel[i] = (v.x, v.z)
                self._scalar_row(track, tick * TICK_S, px_ + rx_, pz_ + rz_, i, hist, vel, v)
            return
        rows_t, tracks_t, ticks, px, pz, rx, rz, vs = zip(*recs, strict=True)
        tracks_of: list[Track] = list(tracks_t)
        m = len(recs)
        ri = np.asarray(rows_t, dtype=np.intp)
        t = np.asarray(ticks, dtype=np.float64) * TICK_S
        rel = np.empty((m, 2))
        rel[:, 0] = rx
        rel[:, 1] = rz
        rel_out[ri] = rel
        has_out[ri] = True
        near = rel[:, 0] ** 2 + rel[:, 1] ** 2 <= THREAT_RANGE**2
        threat[ri[near], 0] = -rel[near, 0]
        threat[ri[near], 1] = -rel[near, 1]
        threat[ri[near], 2] = 1.0
        ax = np.asarray(px, dtype=np.float64) + rel[:, 0]
        az = np.asarray(pz, dtype=np.float64) + rel[:, 1]
        vel_from_obs = np.fromiter((v is not None for v in vs), dtype=bool, count=m)
        if vel_from_obs.any():
            vel[ri[vel_from_obs]] = [(v.x, v.z) for v in vs if v is not None]

        store = self._store
        slots = np.fromiter((tr.slot for tr in tracks_of), dtype=np.intp, count=m)
        # rows whose track would stop increasing strictly (tick back by less than keep_s, over an
        # older sample) leave the batched representation; list tracks go one by one
        ring = slots >= 0
        safe = np.where(ring, slots, 0)
        cnt = store.count[safe]
        arange_m = np.arange(m)
        lastt = store.t[safe, np.maximum(cnt - 1, 0)]
        back = ring & (cnt > 0) & (t <= lastt)
        clear = back & (t < lastt - self.keep_s)
        pop = back & ~clear
        breaks = pop & (cnt >= 2) & (store.t[safe, np.maximum(cnt - 2, 0)] >= t)
        ring &= ~breaks
        if not ring.all():
            for j in np.flatnonzero(~ring).tolist():
                self._scalar_row(tracks_of[j], float(t[j]), float(ax[j]), float(az[j]), int(ri[j]), hist, vel, vs[j])
        if ring.all():
            k = arange_m
        elif ring.any():
            k = np.flatnonzero(ring)
        else:
            return
        n = np.where(clear[k], 0, np.where(pop[k], cnt[k] - 1, cnt[k]))
        self._update_ring(slots[k], t[k], ax[k], az[k], n, ri[k], vel_from_obs[k], hist, vel, [tracks_of[j] for j in k])

    def _collect(self, observations: Sequence[Observation], idx: Sequence[int], memory: AgentMemory) -> list[Any]:
        """``(row, track, tick, pos x, pos z, rel x, rel z, velocity)`` of every agent with a target."""
        store = self._store
        keep_s = self.keep_s
        recs: list[Any] = []
        rec = recs.append
        for i in idx:
            obs = observations[i]
            entities = obs.entities
            if len(entities) == 1:  # select_target's common case, inline
                target = entities[0]
                if not (target.name and target.name in obs.targets) and target.kind != "player":
                    continue
            else:
                found = select_target(obs)
                if found is None:
                    continue
                target = found
            mem = memory.get(obs.agent)  # setdefault without a new dict per call
            if mem is None:
                mem = memory[obs.agent] = {}
            tracks = mem.get("tracks")
            if tracks is None:
                tracks = mem["tracks"] = {}
            key = target.name or "_nearest"
            track = tracks.get(key)
            if track is None:
                track = tracks[key] = Track(store)
            elif track.__class__ is not Track or track.store is not store:  # another adapter's (hot swap)
                track = tracks[key] = self._adopt(track)
            if len(tracks) > 8:  # forget targets not seen for a while (the current one updates below)
                t = obs.tick * TICK_S
                for k in [k for k, tr in tracks.items() if k != key and tr[-1][0] < t - keep_s]:
                    del tracks[k]
            pos, r = obs.pos, target.rel
            rec((i, track, obs.tick, pos.x, pos.z, r.x, r.z, target.velocity))
        return recs

    def _adopt(self, track: Any) -> Track:
        """A track of this adapter with the contents of ``track`` (a previous adapter's, or a list)."""
        store = self._store
        items = list(track.to_list() if isinstance(track, Track) else track)
        if not (_strictly_increasing(items) and 0 < len(items) < store.width):
            return Track(store, items)
        mine = Track(store)
        s, n = mine.slot, len(items)
        store.t[s, :n], store.x[s, :n], store.z[s, :n] = zip(*items, strict=True)
        store.count[s] = n
        return mine

    def _update_ring(
        self,
        s: np.ndarray,
        tk: np.ndarray,
        ax: np.ndarray,
        az: np.ndarray,
        n: np.ndarray,
        rows: np.ndarray,
        vel_from_obs: np.ndarray,
        hist: np.ndarray,
        vel: np.ndarray,
        tracks: list[Track],
    ) -> None:
        """Append ``(tk, ax, az)`` at position ``n`` of rows ``s``, drop samples older than keep_s,
        resample; what :meth:`_scalar_row` does, for all rows at once."""
        store = self._store
        store.t[s, n] = tk
        store.x[s, n] = ax
        store.z[s, n] = az
        n = n + 1
        width = store.width
        cols = np.arange(width)
        T, X, Z = store.t[s], store.x[s], store.z[s]
        drop = ((T < (tk - self.keep_s)[:, None]) & (cols[None, :] < n[:, None])).sum(1)
        if drop.any():
            src = np.minimum(drop[:, None] + cols[None, :], width - 1)
            rr = np.arange(len(s))[:, None]
            T, X, Z = T[rr, src], X[rr, src], Z[rr, src]
            store.t[s], store.x[s], store.z[s] = T, X, Z
            n = n - drop
        store.count[s] = n
        tq = tk[:, None] - self._offsets[None, :]
        qx, qz = _interp_rows(tq, T, (X, Z), n)
        hist[rows] = np.stack([qx - qx[:, :1], qz - qz[:, :1]], axis=-1).astype(np.float32)
        # velocity from the last two samples where the observation has none
        need = ~vel_from_obs & (n >= 2)
        if need.any():
            q = np.flatnonzero(need)
            rr1 = np.arange(len(q))
            a, b = n[q] - 1, n[q] - 2
            Tq, Xq, Zq = T[q], X[q], Z[q]
            dt = Tq[rr1, a] - Tq[rr1, b]
            ok = dt > 0
            if ok.any():
                v = np.stack([Xq[rr1, a] - Xq[rr1, b], Zq[rr1, a] - Zq[rr1, b]], axis=1)[ok] / dt[ok][:, None]
                vel[rows[q[ok]]] = v
        full = n >= width
        if full.any():  # cannot happen with integer ticks; stays exact anyway
            for j in np.flatnonzero(full).tolist():
                tracks[j].make_list()

    def _scalar_row(
        self,
        track: Track,
        t: float,
        ax: float,
        az: float,
        i: int,
        hist: np.ndarray,
        vel: np.ndarray,
        velocity: Any,
    ) -> None:
        """The per-agent update of one track (the algorithm the batched path reproduces)."""
        items = track.to_list() if track.items is None else track.items
        if items and t <= items[-1][0]:
            if t < items[-1][0] - self.keep_s:  # tick went backwards (new episode): restart
                items.clear()
            else:
                items.pop()
        items.append((t, ax, az))
        while items and items[0][0] < t - self.keep_s:
            items.pop(0)
        arr = np.asarray(items, dtype=np.float64)
        hist[i] = window_features(arr[:, 0], arr[:, 1:], np.array([t]), self.history, self.hist_dt)[0]
        if velocity is None and len(arr) >= 2 and arr[-1, 0] > arr[-2, 0]:
            vel[i] = (arr[-1, 1:] - arr[-2, 1:]) / (arr[-1, 0] - arr[-2, 0])
        track.store_items(items)

    # ------------------------------------------------------------------ decode
    def intercept(self, rel: np.ndarray, mean: np.ndarray, log_std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Aim points ``[N, 2]`` (relative to the agent) and their std ``[N]``.

        The predicted path is linear between ``(0, rel)`` and each horizon; the aim is the first
        point on it the agent can reach in time at ``agent_speed`` (else the last horizon's point).
        """
        n = len(rel)
        knots_t = np.concatenate([[0.0], self.horizons]).astype(np.float64)
        grid = np.linspace(0.0, float(knots_t[-1]), 41)
        idx = np.clip(np.searchsorted(knots_t, grid, side="right") - 1, 0, len(knots_t) - 2)
        w = (grid - knots_t[idx]) / (knots_t[idx + 1] - knots_t[idx])
        w0 = 1 - w
        # piecewise-linear interpolation on the time grid, vectorised over the batch; x and z
        # separately (same arithmetic per element as on [n, grid, 2]), the std only where needed
        mean = mean.astype(np.float64)
        pts = []
        for c in (0, 1):
            disp = np.zeros((n, len(knots_t)))
            disp[:, 1:] = mean[:, :, c]
            pts.append(rel[:, c, None] + (disp[:, idx] * w0[None, :] + disp[:, idx + 1] * w[None, :]))
        px, pz = pts
        reach = np.sqrt(px**2 + pz**2) <= self.agent_speed * grid[None, :] + self.catch_radius
        first = np.where(reach.any(1), reach.argmax(1), len(grid) - 1)
        rows = np.arange(n)
        std = np.concatenate([np.zeros((n, 1)), np.exp(log_std.astype(np.float64))], axis=1)
        fi = idx[first]
        path_std = std[rows, fi] * w0[first] + std[rows, fi + 1] * w[first]
        return np.stack([px[rows, first], pz[rows, first]], axis=1), path_std

    def _targets(self, observations: Sequence[Observation]) -> tuple[np.ndarray, np.ndarray]:
        last = self._last
        if last is not None:
            seen, rel, has = last
            if len(seen) == len(observations) and all(map(operator.is_, seen, observations)):
                return rel, has  # decode right after featurize of the same batch
        rel = np.zeros((len(observations), 2))
        has = np.zeros(len(observations), dtype=bool)
        for i, obs in enumerate(observations):
            target = select_target(obs)
            if target is not None:
                rel[i] = (target.rel.x, target.rel.z)
                has[i] = True
        return rel, has

    def decode(self, observations: Sequence[Observation], outputs: dict[str, np.ndarray]) -> list[Decision]:
        n = len(observations)
        rel, has = self._targets(observations)
        aim, std = self.intercept(rel, np.asarray(outputs["mean"]), np.asarray(outputs["log_std"]))
        use_aim = np.hypot(aim[:, 0], aim[:, 1]) > 1e-6
        vec = np.where(use_aim[:, None], aim, rel)
        norm = np.hypot(vec[:, 0], vec[:, 1])
        with np.errstate(invalid="ignore", divide="ignore"):
            move = has & np.isfinite(norm) & ~(norm < 1e-9)
            dist = np.hypot(rel[:, 0], rel[:, 1])
            conf = (1.0 / (1.0 + std / (1.0 + dist))).tolist()
            dx = (vec[:, 0] / norm).tolist()
            dz = (vec[:, 1] / norm).tolist()
        move_l = move.tolist()
        has_l = has.tolist()
        new = object.__new__
        setattr_ = object.__setattr__
        decisions: list[Decision] = []
        append = decisions.append
        for i in range(n):
            if not move_l[i]:
                agent = observations[i].agent
                c = 0.5 if has_l[i] else 0.0
                append(Decision(WaitAction(agent=agent, type="wait"), confidence=c))
                continue
            # MoveAction.model_construct(...) without its per-call field loop: same instances
            d = new(Vec3)
            setattr_(d, "__dict__", {"x": dx[i], "y": 0.0, "z": dz[i]})
            setattr_(d, "__pydantic_fields_set__", {"x", "y", "z"})
            setattr_(d, "__pydantic_extra__", None)
            setattr_(d, "__pydantic_private__", None)
            a = new(MoveArgs)
            setattr_(a, "__dict__", {"dir": d, "speed": 1.0})
            setattr_(a, "__pydantic_fields_set__", {"dir", "speed"})
            setattr_(a, "__pydantic_extra__", None)
            setattr_(a, "__pydantic_private__", None)
            act = new(MoveAction)
            setattr_(act, "__dict__", {"agent": observations[i].agent, "type": "move", "args": a})
            setattr_(act, "__pydantic_fields_set__", {"agent", "type", "args"})
            setattr_(act, "__pydantic_extra__", None)
            setattr_(act, "__pydantic_private__", None)
            append(Decision(act, conf[i]))
        return decisions


def pursuit_family() -> FamilySpec:
    return FamilySpec(
        name=FAMILY,
        adapter=PursuitAdapter,
        build=build_module,
        evaluate=evaluate,
        description="Predicts a player's displacement at several horizons (Gaussian); enemies intercept.",
    )
