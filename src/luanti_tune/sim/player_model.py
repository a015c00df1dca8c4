"""A player model fitted on recorded play, to chase in closed loop: how the players in the data move,
given their recent track and where the chaser is.

Replays (:mod:`~luanti_tune.sim.replay`) show a player's own trajectory but cannot react to a
different chaser; a player who dodges when a chaser comes close needs a model that does. This
one is nonparametric and independent of the pursuit network it helps to judge: the nearest
recorded windows (in the heading frame of the pursuit features, so a habit learned going north
applies going east) vote on where the player goes in the next ``horizon`` seconds. Validated on
held-out windows against constant-velocity extrapolation (:meth:`NeighbourPlayer.validate`).

Nothing here reads who the players are: it learns from positions, velocities and threats only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from luanti_tune.policies import pursuit_kernels
from luanti_tune.policies.pursuit import POS_SCALE, THREAT_RANGE, window_features
from luanti_tune.sim.physics import DT, WALK_SPEED
from luanti_tune.sim.styles import Intent


def _frame(hist: np.ndarray, vel: np.ndarray, threat: np.ndarray, hist_dt: float) -> tuple[np.ndarray, np.ndarray]:
    """The pursuit features in the heading frame ``[n, 2K+8]`` and the frame ``[n, 4]`` (c, s, ...)."""
    n, k = hist.shape[0], hist.shape[1]
    feats = np.empty((n, 2 * k + 8), dtype=np.float32)
    frame = np.empty((n, 4))
    pursuit_kernels.frame_features(
        np.ascontiguousarray(hist, dtype=np.float32),
        np.ascontiguousarray(vel, dtype=np.float32),
        np.ascontiguousarray(threat, dtype=np.float32),
        hist_dt,
        POS_SCALE,
        THREAT_RANGE,
        feats,
        frame,
    )
    return np.nan_to_num(feats), np.nan_to_num(frame)


class NeighbourPlayer:
    """A :class:`~luanti_tune.sim.styles.PlayerKind`: moves as the ``k`` nearest recorded windows did."""

    name = "fitted-player"

    def __init__(
        self,
        feats: np.ndarray,
        local: np.ndarray,
        *,
        history: int,
        hist_dt: float,
        horizon: float,
        horizon_index: int,
        k: int,
    ) -> None:
        self.feats = feats
        self.local = local  # displacement over ``horizon`` in the heading frame
        #: recorded windows an episode starts from (its player arrives moving, as a player does)
        self.starts: np.ndarray = np.zeros((0, history, 2), dtype=np.float32)
        self.history, self.hist_dt, self.k = history, hist_dt, k
        self.horizon, self.horizon_index = horizon, horizon_index

    @classmethod
    def fit(
        cls,
        rows: Mapping[str, np.ndarray],
        *,
        hist_dt: float,
        horizon: float,
        horizon_index: int = 0,
        k: int = 8,
        max_rows: int = 20_000,
        seed: int = 0,
    ) -> NeighbourPlayer:
        """From pursuit windows (``hist``, ``vel``, ``threat``, ``target[:, horizon_index]`` at ``horizon``)."""
        n = len(rows["hist"])
        if n == 0:
            raise ValueError("no windows to fit a player model on")
        take = np.sort(np.random.default_rng(seed).choice(n, max_rows, replace=False)) if n > max_rows else slice(None)
        hist, vel, threat = rows["hist"][take], rows["vel"][take], rows["threat"][take]
        feats, frame = _frame(hist, vel, threat, hist_dt)
        t = rows["target"][take][:, horizon_index].astype(np.float64)
        c, s = frame[:, 0], frame[:, 1]
        local = np.stack([c * t[:, 0] + s * t[:, 1], -s * t[:, 0] + c * t[:, 1]], axis=1)
        model = cls(
            feats,
            local,
            history=hist.shape[1],
            hist_dt=hist_dt,
            horizon=horizon,
            horizon_index=horizon_index,
            k=min(k, len(feats)),
        )
        model.starts = np.asarray(hist, dtype=np.float32)
        return model

    def predict(self, hist: np.ndarray, vel: np.ndarray, threat: np.ndarray, *, keep_speed: bool = False) -> np.ndarray:
        """Displacement over ``horizon`` in world x/z, ``[n, 2]``: the neighbours' mean (the best
        guess), or with ``keep_speed`` their mean direction at their mean distance (a player to
        chase: averaging directions must not slow them down)."""
        q, frame = _frame(hist, vel, threat, self.hist_dt)
        d2 = (q * q).sum(1)[:, None] - 2.0 * q @ self.feats.T + (self.feats * self.feats).sum(1)[None, :]
        near = np.argpartition(d2, self.k - 1, axis=1)[:, : self.k]
        loc = self.local[near].mean(axis=1)
        if keep_speed:
            dist = np.hypot(*self.local[near].transpose(2, 0, 1)).mean(axis=1)
            loc = loc / np.maximum(np.hypot(*loc.T), 1e-9)[:, None] * dist[:, None]
        c, s = frame[:, 0], frame[:, 1]
        return np.stack([c * loc[:, 0] - s * loc[:, 1], s * loc[:, 0] + c * loc[:, 1]], axis=1)

    def validate(self, rows: Mapping[str, np.ndarray]) -> dict[str, float]:
        """Mean error at ``horizon`` on held-out windows, and constant velocity's on the same."""
        if len(rows["hist"]) == 0:
            return {"windows": 0.0}
        target = rows["target"][:, self.horizon_index].astype(np.float64)
        err = np.hypot(*(self.predict(rows["hist"], rows["vel"], rows["threat"]) - target).T)
        cv = np.hypot(*(rows["vel"].astype(np.float64) * self.horizon - target).T)
        return {"windows": float(len(err)), "error": float(err.mean()), "constant_velocity": float(cv.mean())}

    def controller(self, rng: np.random.Generator, anchor: np.ndarray) -> _Controller:
        start = self.starts[int(rng.integers(len(self.starts)))] if len(self.starts) else None
        return _Controller(self, start)


class _Controller:
    """Walks where the model says, re-deciding every other step from its own track and the chaser;
    its track starts with a recorded window (``start``: positions ``k * hist_dt`` ago relative to
    now), so it enters the episode moving as some recorded player did."""

    def __init__(self, model: NeighbourPlayer, start: np.ndarray | None) -> None:
        self.m = model
        self.t = 0.0
        self.start = start
        self.track: list[tuple[float, float, float]] = []
        self.move = np.zeros(2)
        self.steps = 0

    def decide(
        self,
        pos: np.ndarray,
        dt: float,
        blocked: bool,
        threat: np.ndarray | None = None,
        bounds: tuple[float, float] | None = None,
    ) -> tuple[np.ndarray, bool, float | None, list[Intent]]:
        m = self.m
        if self.start is not None and not self.track:
            for k in range(m.history - 1, 0, -1):
                self.track.append((-k * m.hist_dt, float(pos[0] + self.start[k, 0]), float(pos[2] + self.start[k, 1])))
        self.t += dt
        self.track.append((self.t, float(pos[0]), float(pos[2])))
        keep = (m.history - 1) * m.hist_dt + 0.5
        while self.track[0][0] < self.t - keep:
            self.track.pop(0)
        if self.steps % 2 == 0:
            arr = np.asarray(self.track)
            hist = window_features(arr[:, 0], arr[:, 1:], np.array([self.t]), m.history, m.hist_dt)
            vel = ((arr[-1, 1:] - arr[-2, 1:]) / (arr[-1, 0] - arr[-2, 0]) if len(arr) > 1 else np.zeros(2))[None, :]
            th = np.zeros((1, 3), dtype=np.float32)
            if threat is not None:
                rel = threat[[0, 2]] - pos[[0, 2]]
                if float(np.hypot(*rel)) <= THREAT_RANGE:
                    th[0, :2], th[0, 2] = rel, 1.0
            d = m.predict(hist, vel.astype(np.float32), th, keep_speed=True)[0] / m.horizon / WALK_SPEED
            n = float(np.hypot(*d))
            self.move = d / n if n > 1.0 else d
        self.steps += 1
        move = self.move
        if bounds is not None:  # the arena's walls: slide along them as players do
            x, z = float(pos[0]) + move[0] * WALK_SPEED * DT, float(pos[2]) + move[1] * WALK_SPEED * DT
            if not 1.0 <= x <= bounds[0] - 1.0:
                move = np.array([0.0, move[1]])
            if not 1.0 <= z <= bounds[1] - 1.0:
                move = np.array([move[0], 0.0])
        n = float(np.hypot(*move))
        return move, False, math.atan2(-move[0], move[1]) if n > 1e-9 else None, []
