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
import weakref
from collections.abc import Mapping, Sequence
from itertools import repeat
from typing import Any, NamedTuple

import numpy as np

from luanti_tune.policies.base import AgentMemory, Decision, FamilyAdapter, Sightings, SplitForward
from luanti_tune.policies.batch import DecisionColumns, ObservationBatch
from luanti_tune.policies.columns import ObservationColumns
from luanti_tune.policies.families import FamilySpec
from luanti_tune.policies.targets import columns_of, pick_targets
from luanti_tune.schemas.agent import TICK_S, Observation

FAMILY = "pursuit"
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
    if not float(arch["agent_speed"]) >= 0:  # the intercept search needs a reach that grows with time
        raise ValueError("architecture.agent_speed must be >= 0")
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


#: ``memory[agent][MEMORY_KEY]`` holds the agent's :class:`_AgentTracks` (its target tracks).
MEMORY_KEY = "tracks"
#: Track key of an unnamed target (the nearest player).
NEAREST = "_nearest"
#: An agent with more tracks than this forgets the ones not updated within ``keep_s``.
MAX_TRACKS = 8
#: ``last`` tick of a fresh slot: its first observation starts the track.
_NEW = -(1 << 40)


def _strictly_increasing(values: Sequence[float]) -> bool:
    return all(a < b for a, b in zip(values, values[1:], strict=False))


class _TrackTable:
    """Every target track remembered in one agent memory, as dense tick-indexed rings.

    A track is the list of knots ``(tick * TICK_S, x, z)`` of the per-agent algorithm (oldest
    first). Knots are at integer ticks, so a slot stores it densely: ``x/z[slot, tick % width]``
    hold the knot values and, between two knots, the linear interpolation at every integer tick
    (``knot`` marks which cells are knots); the track spans ``first..last``. Linear interpolation
    of that dense row at any time equals interpolation of the knots, without searching. A tick at
    or a little before the last knot (a retried request) replaces that knot in the ring; tracks
    whose times would stop increasing strictly (a tick going back over an earlier knot too) are
    kept as plain lists (``lists[slot]``) and updated one by one.

    ``index[(agent, key)]`` is the slot of a track; the :class:`_AgentTracks` in
    ``memory[agent]`` owns the agent's slots and queues them in ``dead`` when it dies (the engine
    dropped the agent's memory), so the next featurize releases them for reuse.
    """

    def __init__(self, width: int, slots: int = 256) -> None:
        self.width = width
        self.xz = np.zeros((slots, width), dtype=np.complex128)  # x + z*1j: one gather per sample
        self.knot = np.zeros((slots, width), dtype=bool)
        self.first = np.zeros(slots, dtype=np.int64)
        self.last = np.full(slots, _NEW, dtype=np.int64)
        self.listmode = np.zeros(slots, dtype=bool)
        self.lists: dict[int, list[tuple[float, float, float]]] = {}
        self.index: dict[tuple[str, str], int] = {}
        #: Bumped whenever ``index`` changes; ``lookup`` caches the slots of the last batch's
        #: ``(agents, keys)`` for that epoch (a server sends the same agents step after step).
        self.epoch = 0
        self.lookup: tuple[int, list[str], list[str], np.ndarray] | None = None
        self.crowded: set[str] = set()
        self.free: list[int] = list(range(slots - 1, -1, -1))
        self.dead: list[tuple[str, dict[str, int]]] = []
        self.lock = threading.RLock()

    def __len__(self) -> int:
        """Tracks in use."""
        return len(self.index)

    @property
    def capacity(self) -> int:
        return len(self.last)

    def alloc(self) -> int:
        if not self.free:
            self._resize(self.capacity * 2, self.width)
        slot = self.free.pop()
        self.last[slot] = _NEW
        self.listmode[slot] = False
        return slot

    def release(self, agent: str, key: str, slot: int) -> None:
        if self.index.get((agent, key)) == slot:
            del self.index[(agent, key)]
            self.epoch += 1
            self.lists.pop(slot, None)
            self.free.append(slot)

    def collect(self) -> None:
        """Release the slots of agents whose memory was dropped."""
        dead = self.dead
        while dead:
            agent, slots = dead.pop()
            for key, slot in slots.items():
                self.release(agent, key, slot)
            self.crowded.discard(agent)

    def ensure_width(self, width: int) -> None:
        if width > self.width:
            self._resize(self.capacity, width)

    def _resize(self, slots: int, width: int) -> None:
        old = self.capacity
        free = set(self.free)
        saved = {s: self.export(s) for s in range(old) if s not in free} if width != self.width else {}
        arrays = (self.xz, self.knot, self.first, self.last, self.listmode)
        self.xz = np.zeros((slots, width), dtype=np.complex128)  # x + z*1j: one gather per sample
        self.knot = np.zeros((slots, width), dtype=bool)
        self.first = np.zeros(slots, dtype=np.int64)
        self.last = np.full(slots, _NEW, dtype=np.int64)
        self.listmode = np.zeros(slots, dtype=bool)
        if width == self.width:
            for new, prev in zip((self.xz, self.knot, self.first, self.last, self.listmode), arrays, strict=True):
                new[:old] = prev
        else:
            self.first[:old] = arrays[2]
            self.last[:old] = arrays[3]
            self.listmode[:old] = arrays[4]
        self.width = width
        self.free.extend(range(slots - 1, old - 1, -1))
        for s, items in saved.items():
            if items:
                self.store(s, items)

    def last_time(self, slot: int) -> float:
        if self.listmode[slot]:
            return self.lists[slot][-1][0]
        return int(self.last[slot]) * TICK_S

    def export(self, slot: int) -> list[tuple[float, float, float]]:
        """The knots ``(t, x, z)`` of a slot, oldest first."""
        if self.listmode[slot]:
            return list(self.lists[slot])
        last = int(self.last[slot])
        if last == _NEW:
            return []
        m = self.width - 1
        xs, zs, ks = self.xz[slot].real.tolist(), self.xz[slot].imag.tolist(), self.knot[slot].tolist()
        return [(k * TICK_S, xs[k & m], zs[k & m]) for k in range(int(self.first[slot]), last + 1) if ks[k & m]]

    def store(self, slot: int, items: list[tuple[float, float, float]]) -> None:
        """Replace a slot's knots: densely when their times are increasing integer ticks that fit, else a list."""
        ticks = [round(t / TICK_S) for t, _, _ in items]
        if (
            not items
            or any(k * TICK_S != t for k, (t, _, _) in zip(ticks, items, strict=True))
            or not _strictly_increasing(ticks)
            or ticks[-1] - ticks[0] >= self.width
        ):
            self.listmode[slot] = True
            self.lists[slot] = items
            return
        self.listmode[slot] = False
        self.lists.pop(slot, None)
        m = self.width - 1
        x, z, knot = self.xz[slot].real, self.xz[slot].imag, self.knot[slot]
        prev: tuple[int, float, float] | None = None
        for k, (_, xk, zk) in zip(ticks, items, strict=True):
            if prev is not None:
                k0, x0, z0 = prev
                g = k - k0
                for j in range(1, g):
                    x[(k0 + j) & m] = x0 + (xk - x0) * (j / g)
                    z[(k0 + j) & m] = z0 + (zk - z0) * (j / g)
                    knot[(k0 + j) & m] = False
            x[k & m], z[k & m], knot[k & m] = xk, zk, True
            prev = (k, xk, zk)
        self.first[slot] = ticks[0]
        self.last[slot] = ticks[-1]


class _AgentTracks:
    """One agent's tracks in a :class:`_TrackTable` (``slots``: target key -> slot).

    Lives in ``memory[agent][MEMORY_KEY]``; when the memory entry is dropped this dies and its
    slots are released (at the table's next use).
    """

    __slots__ = ("table", "agent", "slots")

    def __init__(self, table: _TrackTable, agent: str) -> None:
        self.table = table
        self.agent = agent
        self.slots: dict[str, int] = {}

    def __del__(self) -> None:
        if self.slots:
            self.table.dead.append((self.agent, self.slots))

    def export(self) -> dict[str, list[tuple[float, float, float]]]:
        return {key: self.table.export(slot) for key, slot in self.slots.items()}


#: One track table per (weak-referenceable) memory mapping, shared by every adapter using it.
_TABLES: dict[int, tuple[weakref.ref[Any], _TrackTable]] = {}
_TABLES_LOCK = threading.Lock()


def _registered_table(memory: AgentMemory) -> _TrackTable | None:
    entry = _TABLES.get(id(memory))
    if entry is not None and entry[0]() is memory:
        return entry[1]
    return None


def _register_table(memory: AgentMemory, table: _TrackTable) -> None:
    key = id(memory)

    def forget(ref: weakref.ref[Any]) -> None:
        with _TABLES_LOCK:
            if _TABLES.get(key, (None,))[0] is ref:
                del _TABLES[key]

    try:
        ref = weakref.ref(memory, forget)
    except TypeError:  # e.g. a plain dict: the table is found through the tracks in it
        return
    with _TABLES_LOCK:
        _TABLES[key] = (ref, table)


class _Gathered(NamedTuple):
    """What featurize reads of each targeted row (``rows``; ``None`` = every row, in order)."""

    rows: np.ndarray | None
    rel: np.ndarray  # [m, 2] target x/z relative to the agent
    names: Sequence[str | None]  # target names (None: unnamed)
    axz: np.ndarray  # [m, 2] the target's absolute x/z
    vx: np.ndarray
    vz: np.ndarray
    vgiven: np.ndarray | None  # which targets carried a velocity (None: all)


class PursuitAdapter(FamilyAdapter):
    """Observations + per-agent target tracks <-> ``hist``/``vel`` arrays; intercept decoding.

    Columnar: the batch's columns (computed once for a batch of Observation objects) give ticks,
    positions and each agent's target (:func:`~luanti_tune.policies.targets.pick_targets`);
    every track of the memory lives in a :class:`_TrackTable` (dense rings found by
    ``(agent, target key)``), updated and resampled for the whole batch by compiled loops. Results
    equal the per-agent algorithm (see ``tests/policies/test_pursuit_batched.py``).
    """

    family = FAMILY
    input_names = INPUTS
    output_names = ("mean", "log_std")

    def __init__(self, arch: Mapping[str, Any] | None = None) -> None:
        """The track update and the decoding run as compiled loops
        (:mod:`~luanti_tune.policies.pursuit_kernels`, imported here: numba loads with them)."""
        from luanti_tune.policies import pursuit_kernels

        self.arch = architecture(**dict(arch or {}))
        self._kernels: Any = pursuit_kernels
        self.history = int(self.arch["history"])
        self.hist_dt = float(self.arch["hist_dt"])
        self.horizons = np.asarray(self.arch["horizons"], dtype=np.float32)
        self.agent_speed = float(self.arch["agent_speed"])
        self.catch_radius = float(self.arch["catch_radius"])
        self.keep_s = (self.history - 1) * self.hist_dt + 0.5
        # a kept track spans at most keep_s/TICK_S + 1 integer ticks
        self._width = 1 << max(3, (int(self.keep_s / TICK_S) + 3).bit_length())
        self._offsets = np.arange(self.history, dtype=np.float64) * self.hist_dt
        back = -self._offsets[1:] / TICK_S  # the window's sample times, in ticks from now
        self._da = np.floor(back).astype(np.int64)
        self._dw = back - self._da
        self._last: tuple[Any, Any, np.ndarray, np.ndarray] | None = None
        self._seen: tuple[Any, ...] | None = None
        # intercept: the time grid split by path segment (knot j -> j + 1)
        knots_t = np.concatenate([[0.0], self.horizons]).astype(np.float64)
        self._grid = np.linspace(0.0, float(knots_t[-1]), 41)
        idx = np.clip(np.searchsorted(knots_t, self._grid, side="right") - 1, 0, len(knots_t) - 2)
        w = (self._grid - knots_t[idx]) / (knots_t[idx + 1] - knots_t[idx])
        reach = self.agent_speed * self._grid + self.catch_radius
        reach2 = np.where(reach >= 0, reach * reach, -1.0)  # |p| <= reach  <=>  |p|^2 <= reach^2
        # the kernels' grid arguments; seg_end[g]: where the run of grid points on g's segment ends
        ends = np.flatnonzero(np.diff(idx)) + 1
        seg_end = np.append(ends, len(idx))[np.searchsorted(ends, np.arange(len(idx)), side="right")]
        self._segments = (idx.astype(np.intp), w, 1 - w, reach2, seg_end.astype(np.intp))

    def example_inputs(self, batch: int = 4) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(0)
        hist = np.cumsum(rng.normal(0, 0.5, (batch, self.history, 2)), axis=1).astype(np.float32)
        hist -= hist[:, :1]
        threat = np.concatenate([rng.normal(0, 6, (batch, 2)), np.ones((batch, 1))], axis=1).astype(np.float32)
        return {"hist": hist, "vel": rng.normal(0, 2, (batch, 2)).astype(np.float32), "threat": threat}

    # ------------------------------------------------------------------ featurize
    def featurize(self, observations: Sequence[Observation], memory: AgentMemory) -> dict[str, np.ndarray]:
        batch = ObservationBatch.of(observations)
        n = len(batch)
        h = self.history
        hist = np.zeros((n, h, 2), dtype=np.float32)
        vel = np.zeros((n, 2), dtype=np.float32)
        threat = np.zeros((n, 3), dtype=np.float32)
        rel_all = np.zeros((n, 2))
        has = np.zeros(n, dtype=bool)
        if n == 0:
            self._last = self._seen = None
            return {"hist": hist, "vel": vel, "threat": threat}
        # everything is read (and may fail) before any memory is touched
        g = self._gather_columns(columns_of(batch)[1])
        rows, rel, names, axz, vx, vz, vgiven = g.rows, g.rel, g.names, g.axz, g.vx, g.vz, g.vgiven
        m = len(names)
        agents = batch.agents
        ticks = batch.ticks
        if rows is not None:
            agents = [agents[i] for i in rows.tolist()]
            ticks = ticks[rows]

        ri = np.arange(n) if rows is None else rows
        if m:
            near = rel[:, 0] ** 2 + rel[:, 1] ** 2 <= THREAT_RANGE**2
            th = np.zeros((m, 3), dtype=np.float32)
            th[:, 0] = -rel[:, 0]
            th[:, 1] = -rel[:, 1]
            th[:, 2] = 1.0
            th[~near] = 0.0
            vv = np.empty((m, 2), dtype=np.float32)
            vv[:, 0] = vx
            vv[:, 1] = vz
            if rows is None:  # every row has a target
                rel_all = rel
                has[:] = True
                threat = th
                if vgiven is None:
                    vel = vv
                else:
                    vel[vgiven] = vv[vgiven]
            else:
                rel_all[ri] = rel
                has[ri] = True
                threat[ri] = th
                if vgiven is None:
                    vel[ri] = vv
                else:
                    vel[ri[vgiven]] = vv[vgiven]

            table = self._table(memory, agents)
            with table.lock:
                table.collect()
                table.ensure_width(self._width)
                keys, unique = self._keys(table, agents, names)
                if unique:
                    self._update(table, memory, None, agents, keys, ticks, axz, vgiven, ri, hist, vel)
                else:  # an agent twice in a batch: its second observation sees the first one's update
                    seen: dict[str, int] = {}
                    rounds: list[list[int]] = []
                    for j, a in enumerate(agents):
                        r = seen[a] = seen.get(a, -1) + 1
                        if r == len(rounds):
                            rounds.append([])
                        rounds[r].append(j)
                    for part in rounds:
                        p = np.asarray(part, dtype=np.intp)
                        self._update(table, memory, p, agents, keys, ticks, axz, vgiven, ri, hist, vel)
        self._last = (observations, batch.items, rel_all, has)
        self._seen = (agents, ticks, names, axz, rel, vel, ri) if m else None
        return {"hist": hist, "vel": vel, "threat": threat}

    def target_names(self, observations: Sequence[Observation]) -> list[str | None]:
        """Each observation's target (:func:`~luanti_tune.policies.targets.pick_targets`) by name;
        ``None`` where unnamed or none."""
        _, cols = columns_of(observations)
        chosen = pick_targets(cols)
        names = cols.entities.name
        return [names[k] if k >= 0 else None for k in chosen.tolist()]

    def sightings(self) -> Sightings | None:
        """The last featurize's named targets: where each was and the velocity the model got."""
        seen, self._seen = self._seen, None
        if seen is None:
            return None
        agents, ticks, names, axz, rel, vel, ri = seen
        keep = [j for j, nm in enumerate(names) if nm]
        if not keep:
            return None
        if len(keep) < len(names):
            k = np.asarray(keep, dtype=np.intp)
            agents, names, ticks, axz, rel, ri = (
                [agents[j] for j in keep],
                [names[j] for j in keep],
                ticks[k],
                axz[k],
                rel[k],
                ri[k],
            )
        return Sightings(
            list(agents),
            np.asarray(ticks, dtype=np.int64),
            list(names),
            axz.copy(),
            vel[ri].astype(np.float64),
            axz - rel,
        )

    def _gather_columns(self, cols: ObservationColumns) -> _Gathered:
        """Each targeted row's target (``rows``: those with one): array indexing, no Python object per agent."""
        rows, ent = self._select_columns(cols)
        e = cols.entities
        if ent is None:  # entity k is row k's target: no gathers
            rel = e.rel[:, ::2].copy()
            vel, has_v, names = e.velocity, e.has_velocity, e.name
        else:
            rel = e.rel[ent][:, ::2].copy()
            vel, has_v = e.velocity[ent], e.has_velocity[ent]
            names = [e.name[k] for k in ent.tolist()]
        pos = cols.pos if rows is None else cols.pos[rows]
        axz = pos[:, ::2] + rel
        vgiven = None if has_v.all() else has_v
        return _Gathered(rows, rel, names, axz, vel[:, 0].copy(), vel[:, 2].copy(), vgiven)

    def _select_columns(self, cols: ObservationColumns) -> tuple[np.ndarray | None, np.ndarray | None]:
        """``(rows, entity)``: each row's target (:func:`~luanti_tune.policies.targets.pick_targets`;
        ``rows``: those with one, ``None`` = all; ``entity``: the index of each one's target,
        ``None``: entity ``k`` for row ``k``)."""
        e = cols.entities
        n = len(cols)
        if len(e.kind) == n and e.kind.count("player") == n and bool((e.offsets == np.arange(n + 1)).all()):
            return None, None  # the common case: one player in view, always the target
        chosen = pick_targets(cols)
        has = chosen >= 0
        if has.all():
            return None, chosen
        rows = np.flatnonzero(has)
        return rows, chosen[rows]

    def _table(self, memory: AgentMemory, agents: Sequence[str]) -> _TrackTable:
        """The track table of ``memory`` (shared by every adapter that uses the same memory)."""
        table = _registered_table(memory)
        if table is not None:
            return table
        for a in agents:  # a memory that cannot be registered: found through its tracks
            mem = memory.get(a)
            owner = mem.get(MEMORY_KEY) if mem is not None else None
            if owner.__class__ is _AgentTracks:
                return owner.table  # type: ignore[no-any-return,union-attr]
        table = _TrackTable(self._width)
        _register_table(memory, table)
        return table

    def _owner(self, memory: AgentMemory, table: _TrackTable, agent: str) -> _AgentTracks:
        """``memory[agent]``'s tracks in ``table`` (created, or copied from another table / plain lists)."""
        mem = memory.get(agent)
        if mem is None:
            mem = memory[agent] = {}
        found = mem.get(MEMORY_KEY)
        if found.__class__ is _AgentTracks and found.table is table and found.agent == agent:
            return found  # type: ignore[no-any-return]
        mine = _AgentTracks(table, agent)
        if found is not None:  # another memory's / table's tracks, or {key: [(t, x, z), ...]}
            old = found.export() if isinstance(found, _AgentTracks) else found
            for key, items in old.items():
                slot = table.alloc()
                table.store(slot, [(float(t), float(x), float(z)) for t, x, z in items])
                mine.slots[key] = slot
                table.index[(agent, key)] = slot
                table.epoch += 1
            if len(mine.slots) > MAX_TRACKS:
                table.crowded.add(agent)
        mem[MEMORY_KEY] = mine
        return mine

    def _update(
        self,
        table: _TrackTable,
        memory: AgentMemory,
        part: np.ndarray | None,
        agents_all: list[str],
        keys_all: list[str],
        ticks_all: np.ndarray,
        axz_all: np.ndarray,
        vgiven_all: np.ndarray | None,
        ri_all: np.ndarray,
        hist: np.ndarray,
        vel: np.ndarray,
    ) -> None:
        """Update and resample the tracks of targeted rows ``part`` (each agent at most once)."""
        if part is None:
            agents, keys, tk, axz, rows = agents_all, keys_all, ticks_all, axz_all, ri_all
            vgiven = vgiven_all
        else:
            pl = part.tolist()
            agents = [agents_all[j] for j in pl]
            keys = [keys_all[j] for j in pl]
            tk, axz, rows = ticks_all[part], axz_all[part], ri_all[part]
            vgiven = None if vgiven_all is None else vgiven_all[part]
        slots = self._slots(table, memory, agents, keys)
        slow = self._ring(table, slots, tk, axz, vgiven, rows, hist, vel)
        # list tracks, ticks back over an earlier knot: one by one (slots are distinct: any order)
        for j in np.flatnonzero(slow).tolist():
            need_v = vgiven is not None and not vgiven[j]
            x, z = axz[j].tolist()
            self._scalar_row(table, int(slots[j]), int(tk[j]), x, z, int(rows[j]), hist, vel, bool(need_v))
        if table.crowded:
            self._forget(table, memory, agents, keys, tk)

    def _ring(
        self,
        table: _TrackTable,
        slots: np.ndarray,
        tk: np.ndarray,
        axz: np.ndarray,
        vgiven: np.ndarray | None,
        rows: np.ndarray,
        hist: np.ndarray,
        vel: np.ndarray,
    ) -> np.ndarray:
        """The update of every dense track as one compiled loop (``pursuit_kernels.ring_update``);
        returns which rows it left to :meth:`_scalar_row`."""
        vg = np.ones(len(slots), dtype=bool) if vgiven is None else vgiven
        self._kernels.touch_rows(table.xz, table.knot, slots)
        return self._kernels.ring_update(  # type: ignore[no-any-return]
            table.xz,
            table.knot,
            table.first,
            table.last,
            table.listmode,
            slots,
            np.ascontiguousarray(tk, dtype=np.int64),
            np.ascontiguousarray(axz, dtype=np.float64),
            np.ascontiguousarray(vg),
            np.ascontiguousarray(rows, dtype=np.intp),
            self._da,
            self._dw,
            self.keep_s,
            TICK_S,
            hist,
            vel,
        )

    @staticmethod
    def _keys(table: _TrackTable, agents: list[str], names: Sequence[str | None]) -> tuple[list[str], bool]:
        """Each row's track key (the target's name, or NEAREST) and whether no agent is in the batch twice.

        The same agents (the very list: see ``SessionStore.touch``) and targets as the table's last
        lookup: that lookup's lists, so :meth:`_slots` compares identical objects."""
        cached = table.lookup
        same_agents = cached is not None and cached[1] is agents  # only a duplicate-free list is cached
        keys: list[str]
        if cached is not None and cached[2] == names:
            keys = cached[2]  # keys never hold None or ""
        elif type(names) is list and None not in names and "" not in names:
            keys = names  # type: ignore[assignment]
        else:
            keys = [nm or NEAREST for nm in names]
        return keys, same_agents or len(set(agents)) == len(agents)

    def _slots(self, table: _TrackTable, memory: AgentMemory, agents: list[str], keys: list[str]) -> np.ndarray:
        """The slot of each ``(agent, key)`` track (allocated for new ones)."""
        cached = table.lookup
        if (
            cached is not None
            and cached[0] == table.epoch
            and (cached[1] is agents or cached[1] == agents)
            and (cached[2] is keys or cached[2] == keys)
        ):
            if cached[1] is not agents or cached[2] is not keys:  # equal lists: keep these, so the
                table.lookup = (cached[0], agents, keys, cached[3])  # next batch's checks are `is`
            return cached[3].copy()  # the same agents and targets as the last batch, no slot changed
        index = table.index
        m = len(agents)
        slots = np.fromiter(map(index.get, zip(agents, keys, strict=True), repeat(-1)), dtype=np.intp, count=m)
        if (slots < 0).any():  # a new agent or target: its slot
            for j in np.flatnonzero(slots < 0).tolist():
                agent, key = agents[j], keys[j]
                owner = self._owner(memory, table, agent)
                slot = owner.slots.get(key)
                if slot is None:
                    slot = owner.slots[key] = index[(agent, key)] = table.alloc()
                    table.epoch += 1
                    if len(owner.slots) > MAX_TRACKS:
                        table.crowded.add(agent)
                slots[j] = slot
        table.lookup = (table.epoch, agents, keys, slots.copy())
        return slots

    def _forget(
        self, table: _TrackTable, memory: AgentMemory, agents: list[str], keys: list[str], tk: np.ndarray
    ) -> None:
        """Agents with more than MAX_TRACKS tracks forget those not updated within keep_s."""
        for agent in table.crowded.intersection(agents):
            j = agents.index(agent)
            mem = memory.get(agent)
            owner = mem.get(MEMORY_KEY) if mem is not None else None
            if owner.__class__ is not _AgentTracks or owner.table is not table:  # type: ignore[union-attr]
                table.crowded.discard(agent)
                continue
            slots = owner.slots  # type: ignore[union-attr]
            if len(slots) <= MAX_TRACKS:
                table.crowded.discard(agent)
                continue
            t = int(tk[j]) * TICK_S
            for key in [k for k, s in slots.items() if k != keys[j] and table.last_time(s) < t - self.keep_s]:
                table.release(agent, key, slots.pop(key))
            if len(slots) <= MAX_TRACKS:
                table.crowded.discard(agent)

    def _scalar_row(
        self,
        table: _TrackTable,
        slot: int,
        tick: int,
        ax: float,
        az: float,
        i: int,
        hist: np.ndarray,
        vel: np.ndarray,
        need_v: bool,
    ) -> None:
        """The per-agent update of one track (the algorithm the batched path reproduces)."""
        t = tick * TICK_S
        items = table.export(slot)
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
        if need_v and len(arr) >= 2 and arr[-1, 0] > arr[-2, 0]:
            vel[i] = (arr[-1, 1:] - arr[-2, 1:]) / (arr[-1, 0] - arr[-2, 0])
        table.store(slot, items)

    def tracks_of(self, memory: AgentMemory, agent: str) -> dict[str, list[tuple[float, float, float]]]:
        """``agent``'s remembered tracks: target key -> knots ``(t, x, z)``, oldest first."""
        mem = memory.get(agent)
        owner = mem.get(MEMORY_KEY) if mem is not None else None
        if not isinstance(owner, _AgentTracks):
            return {}
        with owner.table.lock:
            return owner.export()

    # ------------------------------------------------------------------ decode
    def intercept(self, rel: np.ndarray, mean: np.ndarray, log_std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Aim points ``[N, 2]`` (relative to the agent) and their std ``[N]``.

        The predicted path is linear between ``(0, rel)`` and each horizon; the aim is the first
        point of a 41-point time grid on it the agent can reach in time at ``agent_speed`` (else
        the last horizon's point).
        """
        rel, mean, log_std = self._kernel_inputs(rel, mean, log_std)
        return self._kernels.intercept_rows(rel, mean, log_std, self._segments)  # type: ignore[no-any-return]

    def _kernel_inputs(self, rel: Any, mean: Any, log_std: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The intercept kernels' arrays, their shapes checked (the loops do not check bounds)."""
        rel = np.ascontiguousarray(rel, dtype=np.float64)
        mean = np.ascontiguousarray(mean, dtype=np.float32)
        log_std = np.ascontiguousarray(log_std, dtype=np.float32)
        n, h = len(rel), len(self.horizons)
        if rel.shape != (n, 2) or mean.shape != (n, h, 2) or log_std.shape != (n, h):
            raise ValueError(
                f"intercept needs rel [{n}, 2], mean [{n}, {h}, 2] and log_std [{n}, {h}], "
                f"got {rel.shape}, {mean.shape} and {log_std.shape}"
            )
        return rel, mean, log_std

    def warm_up(self) -> None:
        """Compile (or load from the disk cache) the compiled loops now, not in the first batch."""
        self._kernels.warm_up()

    def split_forward(self, module: Any) -> SplitForward | None:
        """``PursuitNet`` as heading-frame features -> MLP (ONNX) -> world-frame outputs.

        About 100 of the whole graph's 115 ONNX nodes are the elementwise ends (the rotation into
        the heading frame, the features, the rotation back and the clamp); at 1000 agents they take
        0.12 ms of its 0.30 ms, as compiled loops (:func:`~luanti_tune.policies.pursuit_kernels.frame_features`,
        :func:`~luanti_tune.policies.pursuit_kernels.world_outputs`) about 0.02 ms. ``None`` for a
        module that is not this architecture's ``PursuitNet``.
        """
        kernels, mlp = self._kernels, getattr(module, "mlp", None)
        if (
            mlp is None
            or getattr(module, "history", None) != self.history
            or getattr(module, "hist_dt", None) != self.hist_dt
            or getattr(module, "n_h", None) != len(self.horizons)
        ):
            return None
        h, nh, hist_dt = self.history, len(self.horizons), self.hist_dt
        # the module's own horizons (its buffer, n_h of them), not the adapter's: the ends compute its forward
        horizons = np.asarray(module.horizons.detach().cpu().numpy(), dtype=np.float64).reshape(-1)
        log_std_base = np.log(0.3 + 0.5 * horizons)

        def pre(inputs: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
            hist = np.ascontiguousarray(inputs["hist"], dtype=np.float32)
            vel = np.ascontiguousarray(inputs["vel"], dtype=np.float32)
            threat = np.ascontiguousarray(inputs["threat"], dtype=np.float32)
            n = len(hist)
            if hist.shape != (n, h, 2) or vel.shape != (n, 2) or threat.shape != (n, 3):
                raise ValueError(
                    f"pursuit inputs must be hist [{n}, {h}, 2], vel [{n}, 2] and threat [{n}, 3], "
                    f"got {hist.shape}, {vel.shape} and {threat.shape}"
                )
            feats = np.empty((n, 2 * h + 8), dtype=np.float32)
            frame = np.empty((n, 4))
            kernels.frame_features(hist, vel, threat, hist_dt, POS_SCALE, THREAT_RANGE, feats, frame)
            return {"feats": feats}, frame

        def post(outputs: dict[str, np.ndarray], frame: np.ndarray) -> dict[str, np.ndarray]:
            out = np.ascontiguousarray(outputs["out"], dtype=np.float32)
            n = len(frame)
            if out.shape != (n, 3 * nh):
                raise ValueError(f"the pursuit MLP must return [{n}, {3 * nh}], got {out.shape}")
            mean = np.empty((n, nh, 2), dtype=np.float32)
            log_std = np.empty((n, nh), dtype=np.float32)
            kernels.world_outputs(
                out, frame, horizons, log_std_base, OUT_SCALE, LOG_STD_MIN, LOG_STD_MAX, mean, log_std
            )
            return {"mean": mean, "log_std": log_std}

        return SplitForward(mlp, ("feats",), ("out",), pre, post)

    def _targets(self, observations: Sequence[Observation]) -> tuple[np.ndarray, np.ndarray]:
        last = self._last
        self._last = None  # do not keep the batch alive (nor free it later inside featurize)
        if last is not None:  # decode right after featurize of the same batch
            seen, seen_items, rel, has = last
            if len(rel) == len(observations):
                if isinstance(observations, ObservationBatch):
                    if observations is seen and observations.items is seen_items:
                        return rel, has
                elif all(map(operator.is_, seen_items, observations)):
                    return rel, has
        batch = ObservationBatch.of(observations)
        n = len(batch)
        rel = np.zeros((n, 2))
        has = np.zeros(n, dtype=bool)
        if n:
            cols = columns_of(batch)[1]
            sel_rows, ent = self._select_columns(cols)
            erel = cols.entities.rel
            sel_rel = (erel if ent is None else erel[ent])[:, ::2]
            ri = np.arange(n) if sel_rows is None else sel_rows
            rel[ri] = sel_rel
            has[ri] = True
        return rel, has

    def decode_columns(self, observations: Sequence[Observation], outputs: dict[str, np.ndarray]) -> DecisionColumns:
        """The decisions as columns: move along the intercept direction (speed 1), else wait."""
        batch = ObservationBatch.of(observations)
        n = len(batch)
        rel, has = self._targets(observations)
        rel, mean, log_std = self._kernel_inputs(rel, outputs["mean"], outputs["log_std"])
        has = np.ascontiguousarray(has, dtype=bool)
        move, d, conf = self._kernels.decide_rows(rel, has, mean, log_std, self._segments)
        return DecisionColumns(batch.agents, move, d, np.ones(n), conf)

    def decode(self, observations: Sequence[Observation], outputs: dict[str, np.ndarray]) -> list[Decision]:
        return self.decode_columns(observations, outputs).decisions()  # type: ignore[no-any-return]


def pursuit_family() -> FamilySpec:
    return FamilySpec(
        name=FAMILY,
        adapter=PursuitAdapter,
        build=build_module,
        evaluate=evaluate,
        description="Predicts a player's displacement at several horizons (Gaussian); enemies intercept.",
    )
