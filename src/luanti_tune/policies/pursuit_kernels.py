"""Compiled (numba) loops of the pursuit adapter's hot path: one pass over the batch each.

As whole-batch numpy operations the same work took about forty operations, each a few
microseconds of fixed cost plus a pass over memory; at 1000 agents that fixed cost, not the
arithmetic, was most of the time. These loops visit each agent once. The track update is held to
the per-agent algorithm by ``tests/policies/test_pursuit_batched.py``; the intercept search to its
plain definition (every grid point of every row) by ``tests/policies/test_pursuit_kernels.py``.

:func:`frame_features` and :func:`world_outputs` are the model's own fixed input and output
stages (``PursuitAdapter.split_forward``), so that ONNX Runtime runs only the MLP between them.

Compiled on first use (about 2 s) and cached on disk (``cache=True``: next to this file, else in
the user's cache directory); importing this module compiles nothing. :func:`warm_up` compiles (or
loads) every kernel; the engine calls it (``PursuitAdapter.warm_up``) while preparing a model,
before the model serves.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = [
    "Grid",
    "decide_rows",
    "frame_features",
    "intercept_rows",
    "ring_update",
    "touch_rows",
    "warm_up",
    "world_outputs",
]

#: The intercept search's time grid: ``(seg_idx, seg_w, seg_w0, reach2, seg_end)``, see
#: :func:`_intercept_row` (``PursuitAdapter._segments``).
Grid = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@njit(cache=True, nogil=True)
def ring_update(  # noqa: C901 - one loop, the steps of the per-agent update in order
    xz: np.ndarray,
    knot: np.ndarray,
    first: np.ndarray,
    last: np.ndarray,
    listmode: np.ndarray,
    slots: np.ndarray,
    tk: np.ndarray,
    axz: np.ndarray,
    vgiven: np.ndarray,
    rows: np.ndarray,
    da: np.ndarray,
    dw: np.ndarray,
    keep_s: float,
    tick_s: float,
    hist: np.ndarray,
    vel: np.ndarray,
) -> np.ndarray:
    """The track update of every row ``j`` whose track is a dense ring (the per-agent algorithm,
    ``PursuitAdapter._scalar_row``, on the ring).

    Appends the knot ``(tk[j], axz[j])`` to track slot ``slots[j]`` of the table arrays
    (``xz``/``knot`` rings, ``first``/``last`` ticks), interpolates skipped ticks, moves the first
    kept knot, and writes the resampled window to ``hist[rows[j]]`` (and the velocity from the last
    two knots to ``vel[rows[j]]`` where ``vgiven[j]`` is false). A tick at or a little before the
    track's last one (a client retrying a request) replaces the last knot, as the per-agent
    algorithm does: the track continues from the knot before it. Rows whose track is a plain list,
    or whose tick is not after that earlier knot (the track's times would stop increasing), are
    left untouched and flagged in the returned mask: the caller updates those one by one.
    """
    m = len(slots)
    width = xz.shape[1]
    msk = width - 1
    h1 = len(da)
    slow = np.zeros(m, dtype=np.bool_)
    for j in range(m):
        s = slots[j]
        t = tk[j]
        lt = last[s]
        ts = t * tick_s
        ls = lt * tick_s
        reset = (ls < ts - keep_s) or (ts < ls - keep_s)
        if listmode[s]:
            slow[j] = True
            continue
        if t <= lt and not reset:  # the last knot is replaced: continue from the one before it
            p = lt - 1
            while p >= first[s] and not knot[s, p & msk]:
                p -= 1
            if p < first[s]:
                reset = True  # it was the only knot: the track starts again
            elif p >= t:
                slow[j] = True  # not after the earlier knot: a plain list
                continue
            else:
                knot[s, lt & msk] = False
                lt = p
        ac = complex(axz[j, 0], axz[j, 1])
        pl = xz[s, lt & msk]  # the last knot (meaningless where the track restarts)
        if not reset:
            g = t - lt
            for q in range(1, g):  # skipped ticks: linear between the last knot and this one
                c = (lt + q) & msk
                xz[s, c] = pl + (ac - pl) * (q / g)
                knot[s, c] = False
        cell = t & msk
        xz[s, cell] = ac
        knot[s, cell] = True
        f = t
        if not reset:  # first kept knot: the first knot at or after keep_s ago
            thr = ts - keep_s
            c = np.int64(math.ceil(thr / tick_s))
            if (c - 1) * tick_s >= thr:
                c -= 1
            if c * tick_s < thr:
                c += 1
            if c < first[s]:
                c = first[s]
            while not knot[s, c & msk]:
                c += 1  # ends at the knot just written
            f = c
        first[s] = f
        last[s] = t
        # resample at tick t + da[k] + dw[k] (between cells a and a + 1); before f: the first knot
        r = rows[j]
        ff = xz[s, f & msk]
        for k in range(h1):
            a = t + da[k]
            if a < f:
                v = ff
            else:
                f0 = xz[s, a & msk]
                v = f0 + dw[k] * (xz[s, (a + 1) & msk] - f0)
            d = v - ac
            hist[r, k + 1, 0] = d.real
            hist[r, k + 1, 1] = d.imag
        if not reset and not vgiven[j]:  # velocity from the last two knots
            dt = ts - lt * tick_s
            dv = ac - pl
            vel[r, 0] = dv.real / dt
            vel[r, 1] = dv.imag / dt
    return slow


@njit(cache=True, nogil=True)
def touch_rows(xz: np.ndarray, knot: np.ndarray, slots: np.ndarray) -> float:
    """Read one value per cache line of the ring rows ``slots`` (and their knot flags), in order.

    The loads are independent of each other, so the CPU keeps many cache misses in flight; the
    track update that follows then finds its rows in cache instead of waiting for each miss in
    turn (its loads depend on the ticks it computes). Returns a sum, so the reads are kept.
    """
    total = 0.0
    width = xz.shape[1]
    for j in range(len(slots)):
        s = slots[j]
        for k in range(0, width, 4):  # 4 complex128 per 64-byte line
            total += xz[s, k].real
        total += knot[s, 0]
    return total


@njit(cache=True, nogil=True)
def _knot(mean: np.ndarray, j: int, c: int) -> float:
    """Coordinate ``c`` of the predicted displacement at path knot ``j`` (knot 0: now, no displacement)."""
    return np.float64(mean[j - 1, c]) if j > 0 else 0.0


@njit(cache=True, nogil=True)
def _intercept_row(
    rx: float,
    rz: float,
    mean: np.ndarray,
    log_std: np.ndarray,
    grid: Grid,
) -> tuple[float, float, float]:
    """One agent's aim point (relative) and its std: the first grid point of the predicted path
    (linear from ``(rx, rz)`` at time 0 through each horizon's mean) within reach, else the last.

    ``grid`` (:data:`Grid`): grid point ``g`` lies on path segment ``seg_idx[g]`` (knot ``j`` ->
    ``j + 1``) at weight ``seg_w[g]`` (``seg_w0[g] = 1 - seg_w[g]``), where the agent reaches
    ``sqrt(reach2[g])`` (nothing where ``reach2[g] < 0``); the segment's points run to
    ``seg_end[g]`` (exclusive). A segment whose closest
    point to the agent is farther than the reach at its last grid point (plus a rounding margin)
    cannot hold the answer and is skipped whole; the others are searched point by point.
    """
    seg_idx, seg_w, seg_w0, reach2, seg_end = grid
    g_n = len(seg_idx)
    g = 0
    found = g_n - 1
    while g < g_n:
        j = seg_idx[g]
        end = seg_end[g]
        x0, z0 = _knot(mean, j, 0), _knot(mean, j, 1)
        x1, z1 = _knot(mean, j + 1, 0), _knot(mean, j + 1, 1)
        lim2 = reach2[end - 1]  # the reach grows with time: its largest value on this segment
        if lim2 < 0.0:
            g = end
            continue
        # the segment's closest point to the agent (NaN anywhere: no skip, the search decides)
        ax, az = rx + x0, rz + z0
        dx, dz = x1 - x0, z1 - z0
        dd = dx * dx + dz * dz
        t = -(ax * dx + az * dz) / dd if dd > 0.0 else 0.0
        t = min(max(t, 0.0), 1.0)
        cx, cz = ax + t * dx, az + t * dz
        lim = math.sqrt(lim2) + 1e-9 * (1.0 + abs(rx) + abs(rz) + abs(x0) + abs(z0) + abs(x1) + abs(z1))
        if cx * cx + cz * cz > lim * lim:
            g = end
            continue
        hit = False
        while g < end:
            w = seg_w[g]
            w0 = seg_w0[g]
            px = rx + (x0 * w0 + x1 * w)
            pz = rz + (z0 * w0 + z1 * w)
            if px * px + pz * pz <= reach2[g]:
                hit = True
                break
            g += 1
        if hit:
            found = g
            break
    j = seg_idx[found]
    w = seg_w[found]
    w0 = seg_w0[found]
    px = rx + (_knot(mean, j, 0) * w0 + _knot(mean, j + 1, 0) * w)
    pz = rz + (_knot(mean, j, 1) * w0 + _knot(mean, j + 1, 1) * w)
    s0 = math.exp(np.float64(log_std[j - 1])) if j > 0 else 0.0
    std = s0 * w0 + math.exp(np.float64(log_std[j])) * w
    return px, pz, std


@njit(cache=True, nogil=True)
def intercept_rows(
    rel: np.ndarray,
    mean: np.ndarray,
    log_std: np.ndarray,
    grid: Grid,
) -> tuple[np.ndarray, np.ndarray]:
    """``PursuitAdapter.intercept``: aim points ``[N, 2]`` (relative to the agent), their std ``[N]``."""
    n = len(rel)
    aim = np.empty((n, 2))
    std = np.empty(n)
    for i in range(n):
        ax, az, sd = _intercept_row(rel[i, 0], rel[i, 1], mean[i], log_std[i], grid)
        aim[i, 0] = ax
        aim[i, 1] = az
        std[i] = sd
    return aim, std


@njit(cache=True, nogil=True)
def decide_rows(
    rel: np.ndarray,
    has: np.ndarray,
    mean: np.ndarray,
    log_std: np.ndarray,
    grid: Grid,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``PursuitAdapter.decode_columns``' numbers: ``move`` [N] (else wait), direction ``[N, 3]``, confidence [N].

    Move toward the intercept point (toward the target itself when the aim is the agent's own
    position) at confidence ``1 / (1 + std / (1 + distance))``; wait at 0.5 when there is no
    usable direction, at 0 without a target.
    """
    n = len(rel)
    move = np.zeros(n, dtype=np.bool_)
    d = np.zeros((n, 3))
    conf = np.zeros(n)
    for i in range(n):
        if not has[i]:
            continue
        rx = rel[i, 0]
        rz = rel[i, 1]
        ax, az, sd = _intercept_row(rx, rz, mean[i], log_std[i], grid)
        if math.hypot(ax, az) > 1e-6:
            vx, vz = ax, az
        else:
            vx, vz = rx, rz
        norm = math.hypot(vx, vz)
        if not math.isfinite(norm) or norm < 1e-9:
            conf[i] = 0.5
            continue
        move[i] = True
        conf[i] = 1.0 / (1.0 + sd / (1.0 + math.hypot(rx, rz)))
        d[i, 0] = vx / norm
        d[i, 2] = vz / norm
    return move, d, conf


@njit(cache=True, nogil=True, error_model="numpy")
def frame_features(
    hist: np.ndarray,
    vel: np.ndarray,
    threat: np.ndarray,
    hist_dt: float,
    pos_scale: float,
    threat_range: float,
    feats: np.ndarray,
    frame: np.ndarray,
) -> None:
    """``PursuitNet``'s input stage outside the graph: the heading frame of each row and the MLP's
    features in it (the same formulas as ``PursuitNet.forward``, in float64, stored as float32).

    ``feats[i]``: ``[lx / s, lz / s, vx / s, vz / s, speed / s, threat features]`` (``s`` =
    ``pos_scale``); ``frame[i]``: ``[c, s, vx, vz]`` for :func:`world_outputs`. The heading
    frame (``c``, ``s``) is computed in float32 like the graph's, so the same rows have a
    degenerate heading and get NaN (numpy error model: no exception).
    """
    n, h = hist.shape[0], hist.shape[1]
    dt, eps = np.float32(hist_dt), np.float32(1e-3)
    for i in range(n):
        # the heading frame in float32 as in the graph, so that exactly the same headings are
        # degenerate (a zero, underflowing or overflowing length) and give the same NaN or zeros
        hx = vel[i, 0] + (hist[i, 0, 0] - hist[i, 1, 0]) / dt + eps
        hz = vel[i, 1] + (hist[i, 0, 1] - hist[i, 1, 1]) / dt
        norm = np.float32(math.sqrt(np.float32(hx * hx + hz * hz)))
        c = np.float64(hx / norm)
        s = np.float64(hz / norm)
        for k in range(h):
            x, z = hist[i, k, 0], hist[i, k, 1]
            feats[i, k] = (c * x + s * z) / pos_scale
            feats[i, h + k] = (-s * x + c * z) / pos_scale
        vx = c * vel[i, 0] + s * vel[i, 1]
        vz = -s * vel[i, 0] + c * vel[i, 1]
        o = 2 * h
        feats[i, o] = vx / pos_scale
        feats[i, o + 1] = vz / pos_scale
        feats[i, o + 2] = math.sqrt(vx * vx + vz * vz + 1e-6) / pos_scale
        present = threat[i, 2]
        tx = c * threat[i, 0] + s * threat[i, 1]
        tz = -s * threat[i, 0] + c * threat[i, 1]
        tdist = math.sqrt(tx * tx + tz * tz + 1e-6)
        feats[i, o + 3] = tx / tdist * present
        feats[i, o + 4] = tz / tdist * present
        feats[i, o + 5] = present
        feats[i, o + 6] = math.exp(-tdist / 6.0) * present
        feats[i, o + 7] = tdist / threat_range * present
        frame[i, 0] = c
        frame[i, 1] = s
        frame[i, 2] = vx
        frame[i, 3] = vz


@njit(cache=True, nogil=True, error_model="numpy")
def world_outputs(
    out: np.ndarray,
    frame: np.ndarray,
    horizons: np.ndarray,
    log_std_base: np.ndarray,
    out_scale: float,
    log_std_min: float,
    log_std_max: float,
    mean: np.ndarray,
    log_std: np.ndarray,
) -> None:
    """``PursuitNet``'s output stage outside the graph: the MLP's ``[n, 3 * horizons]`` offsets,
    back in the world frame (``mean``) and the clamped ``log_std`` (NaN stays NaN)."""
    n, nh = out.shape[0], len(horizons)
    for i in range(n):
        c, s, vx, vz = frame[i, 0], frame[i, 1], frame[i, 2], frame[i, 3]
        for j in range(nh):
            mx = vx * horizons[j] + out[i, 3 * j] * out_scale
            mz = vz * horizons[j] + out[i, 3 * j + 1] * out_scale
            mean[i, j, 0] = c * mx - s * mz
            mean[i, j, 1] = s * mx + c * mz
            ls = out[i, 3 * j + 2] + log_std_base[j]
            if ls < log_std_min:
                ls = log_std_min
            elif ls > log_std_max:
                ls = log_std_max
            log_std[i, j] = ls


def warm_up() -> None:
    """Compile (or load from the disk cache) every kernel, with the argument types the adapter uses."""
    slots = np.zeros(1, dtype=np.intp)
    ring_update(
        np.zeros((1, 8), dtype=np.complex128),
        np.zeros((1, 8), dtype=np.bool_),
        np.zeros(1, dtype=np.int64),
        np.full(1, -(1 << 40), dtype=np.int64),
        np.zeros(1, dtype=np.bool_),
        slots,
        np.zeros(1, dtype=np.int64),
        np.zeros((1, 2)),
        np.ones(1, dtype=np.bool_),
        slots,
        np.zeros(1, dtype=np.int64),
        np.zeros(1),
        1.0,
        0.09,
        np.zeros((1, 2, 2), dtype=np.float32),
        np.zeros((1, 2), dtype=np.float32),
    )
    touch_rows(np.zeros((1, 8), dtype=np.complex128), np.zeros((1, 8), dtype=np.bool_), slots)
    grid = (np.zeros(2, dtype=np.intp), np.zeros(2), np.ones(2), np.ones(2), np.full(2, 2, dtype=np.intp))
    mean, log_std = np.zeros((1, 1, 2), dtype=np.float32), np.zeros((1, 1), dtype=np.float32)
    intercept_rows(np.zeros((1, 2)), mean, log_std, grid)
    decide_rows(np.zeros((1, 2)), np.ones(1, dtype=np.bool_), mean, log_std, grid)
    hist, feats, frame = np.zeros((1, 2, 2), dtype=np.float32), np.zeros((1, 12), dtype=np.float32), np.zeros((1, 4))
    frame_features(
        hist, np.zeros((1, 2), dtype=np.float32), np.zeros((1, 3), dtype=np.float32), 0.2, 4.0, 20.0, feats, frame
    )
    world_outputs(np.zeros((1, 3), dtype=np.float32), frame, np.ones(1), np.zeros(1), 2.0, -3.0, 3.0, mean, log_std)
