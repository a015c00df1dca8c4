"""JSON rows bodies of ``POST /v1/act`` decoded straight into columns (compiled scan).

The general fast decoder (:mod:`luanti_tune.serve.wire`) builds one msgspec struct per
observation, entity and vector; a columnar family adapter then reads them back attribute by
attribute (at 1000 agents about 1.2 ms to decode plus 0.5 ms to gather). :func:`decode_rows`
instead scans the body once with :func:`~luanti_tune.serve.wire_rows_kernel.scan_rows` into
arrays and returns an :class:`~luanti_tune.policies.batch.ObservationBatch` over
:class:`~luanti_tune.policies.columns.ObservationColumns`, as the compact ``columns`` format
gives: the engine then decides the JSON rows the mod sends as cheaply as columns.

Invariant (as for :func:`~luanti_tune.serve.wire.decode_observations`): when :func:`decode_rows`
returns a batch, the pydantic request model accepts the same body and ``batch[i]`` equals its
``i``-th observation. It returns ``None`` for everything it cannot prove valid or does not
handle (see the kernel module: escapes, long numbers, ``inventory``/``nearby``/``chat`` ...); the
caller then runs the general decoder, which accepts the body or words the errors.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading

import numpy as np

from luanti_tune.policies.batch import ObservationBatch
from luanti_tune.policies.columns import EntityColumns, ObservationColumns
from luanti_tune.schemas.agent import LastResult
from luanti_tune.schemas.common import Vec3
from luanti_tune.serve import wire
from luanti_tune.serve import wire_rows_kernel as k

log = logging.getLogger(__name__)

#: A row takes at least this many bytes of a body (``{"agent":"a","kind":"npc","pos":{...}}``),
#: an entity at least ``_ENTITY_BYTES``, a target at least ``_TARGET_BYTES`` (with its comma).
_ROW_BYTES, _ENTITY_BYTES, _TARGET_BYTES = 50, 40, 3
_LOCAL = threading.local()


_READY = threading.Event()  # the scan is compiled (or loaded) in this process
_DONE = threading.Event()  # preparing it ended (ready or failed)
_START = threading.Lock()
_started = False


def ready() -> bool:
    """Whether :func:`decode_rows` scans (else it returns ``None`` until :func:`prepare` is done)."""
    return _READY.is_set()


def prepare(*, wait: bool = False) -> None:
    """Make the scan usable in this process, once; :func:`decode_rows` returns ``None`` until then.

    Compiling it takes ~10 s (then numba's disk cache loads it in ~0.5 s). In the background
    (the service): a child process compiles it into the cache, without taking this process's GIL,
    then a thread loads it here. ``wait``: until it is usable (compiled in this thread when
    nothing started it yet)."""
    global _started
    with _START:
        first = not _started
        _started = True
    if first and wait:
        _load()
    elif first:
        threading.Thread(target=_prepare_in_child, name="act-rows-compile", daemon=True).start()
    if wait:
        _DONE.wait()


def _load() -> None:
    try:
        k.warm_up()
        _READY.set()
    except Exception:  # noqa: BLE001 - the msgspec decoder keeps serving
        log.exception("the compiled rows scan could not be prepared: JSON rows are decoded into structs")
    finally:
        _DONE.set()


def _prepare_in_child() -> None:
    code = "from luanti_tune.serve.wire_rows_kernel import warm_up; warm_up()"
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=900, check=False)
        if done.returncode != 0:
            log.warning("compiling the rows scan in a child failed: %s", done.stderr.decode(errors="replace")[-500:])
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("compiling the rows scan in a child failed: %s", exc)
    _load()  # from the disk cache the child wrote (compiled here if it could not write one)


def decode_rows(body: bytes, *, max_agents: int) -> ObservationBatch | None:
    """The observations of a JSON rows body as a columnar batch, or ``None`` (see the module doc;
    always ``None`` before :func:`prepare` made the scan usable)."""
    if not _READY.is_set():
        return None
    buf = np.frombuffer(body, dtype=np.uint8)
    row_i, row_f, ent_i, ent_f, tgt = _scratch(len(body), max_agents)
    status, n, m, t = k.scan_rows(buf, max_agents, k._POW10, row_i, row_f, ent_i, ent_f, tgt)
    if status != k.OK:
        log.debug("act body left to the general decoder (compiled scan status %d at row %d)", status, n)
        return None
    text = body.decode("ascii")  # the scan accepted only ASCII
    ri, rf, ei, ef = row_i[:n], row_f[:n], ent_i[:m], ent_f[:m]
    agents = _strings(text, buf, ri[:, k.R_AGENT_S : k.R_AGENT_E + 1])
    cols = ObservationColumns(
        agent=agents,
        kind=_codes(ri[:, k.R_KIND], k.OBS_KINDS),
        tick=ri[:, k.R_TICK].copy(),
        pos=rf[:, k.F_POS : k.F_POS + 3].copy(),
        yaw=rf[:, k.F_YAW].copy(),
        pitch=rf[:, k.F_PITCH].copy(),
        hp=rf[:, k.F_HP].copy(),
        velocity=rf[:, k.F_VEL : k.F_VEL + 3].copy(),
        entities=_entities(text, buf, ri, ei, ef),
        targets=_targets(text, buf, ri, tgt[:t]),
        team=_optional_strings(text, ri[:, k.R_TEAM_S : k.R_TEAM_E + 1]),
        goal=_goals(ri[:, k.R_GOAL], rf[:, k.F_GOAL : k.F_GOAL + 3]),
        last_result=_last_results(text, ri),
    )
    return ObservationBatch.from_columns(cols)


def _scratch(size: int, max_agents: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """This thread's work arrays, with room for every row (at most ``max_agents + 1``: the scan
    stops there), entity and target (64 per row) a ``size``-byte body can hold (kept between calls:
    fresh ones cost a page fault per page written)."""
    arrays: tuple[np.ndarray, ...] | None = getattr(_LOCAL, "arrays", None)
    rows = min(size // _ROW_BYTES, max_agents) + 2
    ents = min(size // _ENTITY_BYTES + 2, k.MAX_LIST * rows)
    tgts = min(size // _TARGET_BYTES + 2, k.MAX_LIST * rows)
    if arrays is None or len(arrays[0]) < rows or len(arrays[2]) < ents or len(arrays[4]) < tgts:
        rows, ents, tgts = max(rows, 64), max(ents, 64), max(tgts, 256)
        arrays = (
            np.empty((rows, k.N_RI), dtype=np.int64),
            np.empty((rows, k.N_RF)),
            np.empty((ents, k.N_EI), dtype=np.int64),
            np.empty((ents, k.N_EF)),
            np.empty((tgts, 2), dtype=np.int64),
        )
        _LOCAL.arrays = arrays
    return arrays  # type: ignore[return-value]


def _strings(text: str, buf: np.ndarray, spans: np.ndarray) -> list[str]:
    """``text[s:e]`` of each span; one shared string when they all hold the same characters."""
    if len(spans) > 1 and k.same_spans(buf, spans):
        s, e = spans[0].tolist()
        return [text[s:e]] * len(spans)
    return list(map(text.__getitem__, map(slice, spans[:, 0].tolist(), spans[:, 1].tolist())))


def _optional_strings(text: str, spans: np.ndarray) -> list[str | None] | None:
    """``None`` when no span is set (``s < 0``), else each string or ``None``."""
    if not (spans[:, 0] >= 0).any():
        return None
    return [text[s:e] if s >= 0 else None for s, e in spans.tolist()]


def _codes(codes: np.ndarray, names: tuple[str, ...]) -> list[str]:
    if len(codes) and (codes == codes[0]).all():
        return [names[int(codes[0])]] * len(codes)
    return [names[c] for c in codes.tolist()]


def _entities(text: str, buf: np.ndarray, ri: np.ndarray, ei: np.ndarray, ef: np.ndarray) -> EntityColumns:
    n, m = len(ri), len(ei)
    if m == 0:
        return EntityColumns.empty(n)
    offsets = np.empty(n + 1, dtype=np.int64)
    offsets[0] = 0
    offsets[1:] = ri[:, k.R_ENT_HI]
    names_at = ei[:, k.E_NAME_S : k.E_NAME_E + 1]
    names: list[str | None]
    if (names_at[:, 0] >= 0).all():
        names = list(_strings(text, buf, names_at))
    else:
        names = _optional_strings(text, names_at) or [None] * m
    has_hp = ei[:, k.E_HAS_HP].astype(bool)
    hp: list[float | None]
    if not has_hp.any():
        hp = [None] * m
    elif has_hp.all():
        hp = ef[:, k.G_HP].tolist()
    else:
        hp = [v if h else None for v, h in zip(ef[:, k.G_HP].tolist(), has_hp.tolist(), strict=True)]
    team = _optional_strings(text, ei[:, k.E_TEAM_S : k.E_TEAM_E + 1])
    return EntityColumns(
        offsets,
        _codes(ei[:, k.E_KIND], k.ENTITY_KINDS),
        names,
        ef[:, k.G_REL : k.G_REL + 3].copy(),
        ef[:, k.G_VEL : k.G_VEL + 3].copy(),
        ei[:, k.E_HAS_VEL].astype(bool),
        hp,
        [None] * m if team is None else team,
    )


def _targets(text: str, buf: np.ndarray, ri: np.ndarray, tgt: np.ndarray) -> list[list[str]] | None:
    """Each row's targets (``None`` when no row sent any)."""
    n, t = len(ri), len(tgt)
    if t == 0:
        return None if not ri[:, k.R_TARGETS].any() else [[] for _ in range(n)]
    names = _strings(text, buf, tgt)
    lo, hi = ri[:, k.R_TGT_LO], ri[:, k.R_TGT_HI]
    if t == n and bool(((hi - lo) == 1).all()):  # one target per row (the common case)
        return list(map(list, zip(names)))
    return [names[a:b] for a, b in zip(lo.tolist(), hi.tolist(), strict=True)]


def _goals(has: np.ndarray, xyz: np.ndarray) -> list[Vec3 | None] | None:
    if not has.any():
        return None
    out: list[Vec3 | None] = []
    for h, (x, y, z) in zip(has.tolist(), xyz.tolist(), strict=True):
        out.append(wire._vec3(wire.Vec3(x, y, z)) if h else None)
    return out


def _last_results(text: str, ri: np.ndarray) -> list[LastResult | None] | None:
    """Each row's ``last_result`` (``None`` when no row has one); equal ones share one object."""
    present = ri[:, k.R_LR]
    if not present.any():
        return None
    cols = ri[:, [k.R_LR, k.R_LR_ACT_S, k.R_LR_ACT_E, k.R_LR_OK, k.R_LR_REASON_S, k.R_LR_REASON_E]].tolist()
    made: dict[tuple[str, bool, str | None], LastResult] = {}
    out: list[LastResult | None] = []
    for has, a0, a1, ok, r0, r1 in cols:
        if not has:
            out.append(None)
            continue
        key = (text[a0:a1], bool(ok), text[r0:r1] if r0 >= 0 else None)
        lr = made.get(key)
        if lr is None:
            lr = made[key] = wire._last(wire.LastResult(*key))
        out.append(lr)
    return out


__all__ = ["decode_rows", "prepare", "ready"]
