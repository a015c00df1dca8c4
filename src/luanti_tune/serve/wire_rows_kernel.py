"""Compiled (numba) scan of a JSON rows ``/v1/act`` body straight into columns.

:func:`scan_rows` reads ``{"observations": [...]}`` byte by byte, checks every value against the
observation schema as it goes, and writes numbers and string spans into preallocated arrays (see
the ``R_*``/``F_*``/``E_*``/``G_*`` column indices); :mod:`luanti_tune.serve.wire_rows` turns them
into :class:`~luanti_tune.policies.columns.ObservationColumns`. It accepts only what it can prove
valid and converts exactly; anything else returns a negative status and the caller decodes the
body the general way (msgspec, then pydantic, which words the errors). Refused here, not invalid:

* strings with an escape (``\\``) or a byte outside printable ASCII;
* numbers with more than 15 significant digits or a decimal exponent beyond +-22 (the exact
  conversion below needs both), integers beyond 15 digits;
* the keys ``inventory``, ``nearby`` and ``chat``, duplicated keys, empty requests.

Numbers: a literal with at most 15 digits ``m`` and decimal exponent ``e`` (``|e| <= 22``) is
``m * 10**e`` or ``m / 10**-e``: both operands are exact doubles and one IEEE operation rounds
correctly, so the result is the double nearest the literal, as ``float()`` gives (Clinger's fast
path). An integer literal (no fraction, no exponent) in a float field is ``float(int)`` as msgspec
converts it (``-0`` is ``0.0``, ``-0.0`` is ``-0.0``).

Compiled on first use and cached on disk (``cache=True``); importing compiles nothing.
"""

from __future__ import annotations

from typing import get_args

import numpy as np
from numba import njit

from luanti_tune.schemas.agent import AGENT_KINDS, MAX_ENTITIES, EntityView
from luanti_tune.schemas.common import MAP_LIMIT

__all__ = ["scan_rows", "same_spans", "warm_up"]

# -- per-row integer columns (row_i)
R_AGENT_S, R_AGENT_E, R_KIND, R_TICK = 0, 1, 2, 3
R_ENT_LO, R_ENT_HI, R_TGT_LO, R_TGT_HI = 4, 5, 6, 7
R_TEAM_S, R_TEAM_E = 8, 9  # -1: absent or null
R_LR = 10  # last_result: 0 absent or null, 1 present
R_LR_ACT_S, R_LR_ACT_E, R_LR_OK, R_LR_REASON_S, R_LR_REASON_E = 11, 12, 13, 14, 15
R_GOAL = 16  # goal: 0 absent or null, 1 present
R_TARGETS = 17  # 1 when the row sent a targets list
N_RI = 18
# -- per-row float columns (row_f)
F_POS, F_YAW, F_PITCH, F_HP, F_VEL, F_GOAL = 0, 3, 4, 5, 6, 9
N_RF = 12
# -- per-entity integer columns (ent_i)
E_KIND, E_NAME_S, E_NAME_E, E_TEAM_S, E_TEAM_E, E_HAS_VEL, E_HAS_HP = 0, 1, 2, 3, 4, 5, 6
N_EI = 7
# -- per-entity float columns (ent_f)
G_REL, G_VEL, G_HP = 0, 3, 6
N_EF = 7

HP_MAX = 1000.0  # Observation.hp is within 0..1000
MAX_LIST = MAX_ENTITIES  # entities and targets per observation
MAX_NAME = 64  # NAME_PATTERN: 1 to 64 characters

#: Observation kinds and entity kinds (the schema's), in the order of the codes the scan writes.
OBS_KINDS: tuple[str, ...] = AGENT_KINDS
ENTITY_KINDS: tuple[str, ...] = get_args(EntityView.model_fields["kind"].annotation)

# statuses (negative: not decoded here)
OK = 0
BAD = -1  # not provably valid here (the general decoder decides)
UNSUPPORTED = -2  # a valid construct this scan leaves to the general decoder
TOO_MANY = -3  # more rows than allowed


def _pack(word: str) -> tuple[int, int, int]:
    """``(length, first 8 bytes, next 8 bytes)`` of an ASCII key as little-endian integers."""
    b = word.encode("ascii")
    return len(b), int.from_bytes(b[:8].ljust(8, b"\0"), "little"), int.from_bytes(b[8:16].ljust(8, b"\0"), "little")


# key ids (``_key`` returns one of these, or KEY_OTHER)
(
    KEY_OTHER, KEY_OBSERVATIONS, KEY_AGENT, KEY_KIND, KEY_TICK, KEY_POS, KEY_YAW, KEY_PITCH, KEY_HP,
    KEY_VELOCITY, KEY_ENTITIES, KEY_TARGETS, KEY_TEAM, KEY_GOAL, KEY_LAST, KEY_X, KEY_Y, KEY_Z,
    KEY_NAME, KEY_REL, KEY_ACTION, KEY_OK, KEY_REASON, KEY_INVENTORY, KEY_NEARBY, KEY_CHAT,
) = range(26)  # fmt: skip


_KEY_WORDS = {
    KEY_OBSERVATIONS: "observations", KEY_AGENT: "agent", KEY_KIND: "kind", KEY_TICK: "tick",
    KEY_POS: "pos", KEY_YAW: "yaw", KEY_PITCH: "pitch", KEY_HP: "hp", KEY_VELOCITY: "velocity",
    KEY_ENTITIES: "entities", KEY_TARGETS: "targets", KEY_TEAM: "team", KEY_GOAL: "goal",
    KEY_LAST: "last_result", KEY_X: "x", KEY_Y: "y", KEY_Z: "z", KEY_NAME: "name", KEY_REL: "rel",
    KEY_ACTION: "action", KEY_OK: "ok", KEY_REASON: "reason", KEY_INVENTORY: "inventory",
    KEY_NEARBY: "nearby", KEY_CHAT: "chat",
}  # fmt: skip


def _words_table(words: dict[int, str]) -> tuple[np.ndarray, np.ndarray]:
    """``(start, table)``: rows ``[lo, hi, id]`` of ``words`` (id -> word, packed by :func:`_pack`)
    sorted by length; the words of length ``L`` are rows ``start[L]:start[L + 1]``."""
    rows = sorted((_pack(w), i) for i, w in words.items())
    table = np.array([[lo, hi, i] for (_, lo, hi), i in rows], dtype=np.int64).reshape(-1, 3)
    lengths = np.array([ln for (ln, _, _), _ in rows], dtype=np.int64)
    start = np.searchsorted(lengths, np.arange(18), side="left").astype(np.int64)
    return start, table


# compile-time constants of the kernels (numba freezes global arrays)
_KEY_START, _KEY_TABLE = _words_table(_KEY_WORDS)
_OBS_KIND_START, _OBS_KIND_TABLE = _words_table(dict(enumerate(OBS_KINDS)))
_ENTITY_KIND_START, _ENTITY_KIND_TABLE = _words_table(dict(enumerate(ENTITY_KINDS)))

_POW10 = np.array([10.0**k for k in range(23)])


@njit(cache=True, nogil=True, inline="always")
def _ws(buf: np.ndarray, i: int) -> int:
    n = len(buf)
    while i < n:
        c = buf[i]
        if c != 32 and c != 10 and c != 13 and c != 9:
            return i
        i += 1
    return i


@njit(cache=True, nogil=True)
def _string(buf: np.ndarray, i: int) -> tuple[int, int, int]:
    """The string at ``i``: ``(start, end, next)`` of its characters; ``next < 0``: refused."""
    n = len(buf)
    if i >= n or buf[i] != 34:
        return -1, -1, -1
    j = i + 1
    while j < n:
        c = buf[j]
        if c == 34:
            return i + 1, j, j + 1
        if c == 92 or c < 32 or c >= 127:
            return -1, -1, -1
        j += 1
    return -1, -1, -1


@njit(cache=True, nogil=True)
def _packed(buf: np.ndarray, s: int, e: int) -> tuple[int, int, int]:
    """``(length, first 8 bytes, next 8 bytes)`` of ``buf[s:e]`` (longer strings: only the length is exact)."""
    lo = 0
    hi = 0
    for k in range(min(e - s, 8)):
        lo |= int(buf[s + k]) << (8 * k)
    for k in range(8, min(e - s, 16)):
        hi |= int(buf[s + k]) << (8 * (k - 8))
    return e - s, lo, hi


@njit(cache=True, nogil=True)
def _lookup(ln: int, lo: int, hi: int, start: np.ndarray, table: np.ndarray) -> int:
    """The id of the word of length ``ln`` packed as ``(lo, hi)`` in a :func:`_words_table`, else -1
    (words are at most 16 bytes: longer ones are never found)."""
    if ln > 16:
        return -1
    for r in range(start[ln], start[ln + 1]):
        if table[r, 0] == lo and table[r, 1] == hi:
            return int(table[r, 2])
    return -1


@njit(cache=True, nogil=True)
def _key(buf: np.ndarray, i: int) -> tuple[int, int]:
    """A key and its colon at ``i``: ``(KEY_* id, next)`` (``next`` after the colon and blanks, < 0: refused)."""
    s, e, j = _string(buf, i)
    if j < 0:
        return KEY_OTHER, -1
    j = _ws(buf, j)
    if j >= len(buf) or buf[j] != 58:
        return KEY_OTHER, -1
    ln, lo, hi = _packed(buf, s, e)
    key = _lookup(ln, lo, hi, _KEY_START, _KEY_TABLE)
    return (KEY_OTHER if key < 0 else key), _ws(buf, j + 1)


@njit(cache=True, nogil=True)
def _obs_kind(buf: np.ndarray, s: int, e: int) -> int:
    """The code of an observation kind (index in ``OBS_KINDS``), else -1."""
    ln, lo, hi = _packed(buf, s, e)
    return _lookup(ln, lo, hi, _OBS_KIND_START, _OBS_KIND_TABLE)


@njit(cache=True, nogil=True)
def _entity_kind(buf: np.ndarray, s: int, e: int) -> int:
    """The code of an entity kind (index in ``ENTITY_KINDS``), else -1."""
    ln, lo, hi = _packed(buf, s, e)
    return _lookup(ln, lo, hi, _ENTITY_KIND_START, _ENTITY_KIND_TABLE)


@njit(cache=True, nogil=True)
def _name_ok(buf: np.ndarray, s: int, e: int) -> bool:
    """``[A-Za-z0-9_.:-]{1,64}``."""
    if e - s < 1 or e - s > MAX_NAME:
        return False
    for k in range(s, e):
        c = buf[k]
        if not (
            (c >= 48 and c <= 58)  # 0-9 and ':'
            or (c >= 65 and c <= 90)
            or (c >= 97 and c <= 122)
            or c == 95
            or c == 46
            or c == 45
        ):
            return False
    return True


@njit(cache=True, nogil=True)
def _number(buf: np.ndarray, i: int, pow10: np.ndarray) -> tuple[float, bool, int, int]:  # noqa: C901 - the JSON number grammar
    """The JSON number at ``i``: ``(value, integer literal?, integer value, next)``; ``next < 0``: refused.

    An integer literal's value is ``float(int)``; any other literal's is exact (Clinger's fast path).
    """
    n = len(buf)
    j = i
    neg = j < n and buf[j] == 45
    if neg:
        j += 1
    if j >= n or buf[j] < 48 or buf[j] > 57:
        return 0.0, False, 0, -1
    m = 0
    digits = 0
    if buf[j] == 48:  # a leading zero stands alone
        j += 1
    else:
        while j < n and buf[j] >= 48 and buf[j] <= 57:
            m = m * 10 + (int(buf[j]) - 48)
            digits += 1
            j += 1
            if digits > 15:
                return 0.0, False, 0, -1
    e10 = 0
    integral = True
    if j < n and buf[j] == 46:
        integral = False
        j += 1
        if j >= n or buf[j] < 48 or buf[j] > 57:
            return 0.0, False, 0, -1
        while j < n and buf[j] >= 48 and buf[j] <= 57:
            if m == 0 and buf[j] == 48:  # leading zeros of the fraction carry no digit
                e10 -= 1
                j += 1
                continue
            m = m * 10 + (int(buf[j]) - 48)
            digits += 1
            e10 -= 1
            j += 1
            if digits > 15:
                return 0.0, False, 0, -1
    if j < n and (buf[j] == 101 or buf[j] == 69):
        integral = False
        j += 1
        eneg = False
        if j < n and (buf[j] == 43 or buf[j] == 45):
            eneg = buf[j] == 45
            j += 1
        if j >= n or buf[j] < 48 or buf[j] > 57:
            return 0.0, False, 0, -1
        ev = 0
        while j < n and buf[j] >= 48 and buf[j] <= 57:
            ev = ev * 10 + (int(buf[j]) - 48)
            j += 1
            if ev > 400:
                return 0.0, False, 0, -1
        e10 += -ev if eneg else ev
    if integral:
        iv = -m if neg else m
        return float(iv), True, iv, j
    if m == 0:
        return -0.0 if neg else 0.0, False, 0, j
    if e10 > 22 or e10 < -22:
        return 0.0, False, 0, -1
    v = float(m)
    if e10 >= 0:
        v = v * pow10[e10]
    else:
        v = v / pow10[-e10]
    return -v if neg else v, False, 0, j


@njit(cache=True, nogil=True)
def _null(buf: np.ndarray, i: int) -> int:
    """``i`` past a ``null`` literal, or -1."""
    if i + 4 <= len(buf) and buf[i] == 110 and buf[i + 1] == 117 and buf[i + 2] == 108 and buf[i + 3] == 108:
        return i + 4
    return -1


@njit(cache=True, nogil=True, inline="always")
def _after_value(buf: np.ndarray, i: int, close: int) -> tuple[int, bool]:
    """After a member or element: ``(next, more)``: past a comma (more) or the closing ``close`` (done)."""
    i = _ws(buf, i)
    if i < len(buf):
        if buf[i] == 44:
            return _ws(buf, i + 1), True
        if buf[i] == close:
            return i + 1, False
    return -1, False


@njit(cache=True, nogil=True, inline="always")
def _open(buf: np.ndarray, i: int) -> int:
    """Past the ``{`` of a non-empty object at ``i`` and the blanks after it; -1 if there is none."""
    if i >= len(buf) or buf[i] != 123:
        return -1
    i = _ws(buf, i + 1)
    if i < len(buf) and buf[i] == 125:
        return -1
    return i


@njit(cache=True, nogil=True, inline="always")
def _member_end(buf: np.ndarray, i: int, seen: int, bit: int) -> tuple[int, int, bool]:
    """After the value of member ``bit`` (ending at ``i``): ``(next, seen | bit, more members?)``;
    ``next`` is -1 for a bad value (``i < 0``), a repeated key or a bad separator."""
    if i < 0 or seen & bit:
        return -1, seen, False
    i, more = _after_value(buf, i, 125)
    return i, seen | bit, more


@njit(cache=True, nogil=True)
def _vec3(buf: np.ndarray, i: int, pow10: np.ndarray, limit: float, out: np.ndarray, o: int) -> int:
    """An ``{"x", "y", "z"}`` object at ``i`` into ``out[o:o+3]``, each within +-``limit``; next or -1."""
    i = _open(buf, i)
    seen = 0
    more = i >= 0
    while more:
        key, i = _key(buf, i)
        if i < 0:
            return -1
        if key == KEY_X:
            k = 0
        elif key == KEY_Y:
            k = 1
        elif key == KEY_Z:
            k = 2
        else:
            return -1
        v, _, _, i = _number(buf, i, pow10)
        if i < 0 or not (v >= -limit and v <= limit):
            return -1
        out[o + k] = v
        i, seen, more = _member_end(buf, i, seen, 1 << k)
        if i < 0:
            return -1
    if seen != 7:
        return -1
    return i


@njit(cache=True, nogil=True)
def _opt_name(buf: np.ndarray, i: int, out: np.ndarray, c: int) -> int:
    """``null`` (``out[c:c+2]`` left as is) or a valid name at ``i`` (its span into ``out[c:c+2]``); next or -1."""
    j = _null(buf, i)
    if j >= 0:
        return j
    s, e, i = _string(buf, i)
    if i < 0 or not _name_ok(buf, s, e):
        return -1
    out[c] = s
    out[c + 1] = e
    return i


@njit(cache=True, nogil=True)
def _opt_vec3(buf: np.ndarray, i: int, pow10: np.ndarray, out: np.ndarray, o: int, flags: np.ndarray, f: int) -> int:
    """``null`` or a vector at ``i`` (into ``out[o:o+3]``, ``flags[f] = 1``); next or -1."""
    j = _null(buf, i)
    if j >= 0:
        return j
    flags[f] = 1
    return _vec3(buf, i, pow10, MAP_LIMIT, out, o)


@njit(cache=True, nogil=True)
def _entity(  # noqa: C901 - one object, its keys in turn
    buf: np.ndarray, i: int, pow10: np.ndarray, ent_i: np.ndarray, ent_f: np.ndarray, k: int
) -> int:
    """One entity object at ``i`` into row ``k`` of ``ent_i``/``ent_f``; next or -1."""
    i = _open(buf, i)
    if i < 0:
        return -1
    ent_i[k, E_KIND] = -1
    ent_i[k, E_NAME_S] = -1
    ent_i[k, E_NAME_E] = -1
    ent_i[k, E_TEAM_S] = -1
    ent_i[k, E_TEAM_E] = -1
    ent_i[k, E_HAS_VEL] = 0
    ent_i[k, E_HAS_HP] = 0
    for c in range(N_EF):
        ent_f[k, c] = 0.0
    seen = 0
    has_rel = False
    more = True
    while more:
        key, i = _key(buf, i)
        if i < 0:
            return -1
        if key == KEY_KIND:
            bit = 1
            s, e, i = _string(buf, i)
            if i < 0:
                return -1
            ent_i[k, E_KIND] = _entity_kind(buf, s, e)
            if ent_i[k, E_KIND] < 0:
                return -1
        elif key == KEY_REL:
            bit = 2
            i = _vec3(buf, i, pow10, MAP_LIMIT, ent_f[k], G_REL)
            has_rel = True
        elif key == KEY_NAME or key == KEY_TEAM:
            bit = 4 if key == KEY_NAME else 8
            i = _opt_name(buf, i, ent_i[k], E_NAME_S if key == KEY_NAME else E_TEAM_S)
        elif key == KEY_VELOCITY:
            bit = 16
            i = _opt_vec3(buf, i, pow10, ent_f[k], G_VEL, ent_i[k], E_HAS_VEL)
        elif key == KEY_HP:
            bit = 32
            j = _null(buf, i)
            if j >= 0:
                i = j
            else:
                v, _, _, i = _number(buf, i, pow10)
                ent_f[k, G_HP] = v
                ent_i[k, E_HAS_HP] = 1
        else:
            return -1
        i, seen, more = _member_end(buf, i, seen, bit)
        if i < 0:
            return -1
    if ent_i[k, E_KIND] < 0 or not has_rel:
        return -1
    return i


@njit(cache=True, nogil=True)
def _last_result(buf: np.ndarray, i: int, row_i: np.ndarray, r: int) -> int:
    """A ``last_result`` object ``{"action", "ok", "reason"}`` at ``i`` into ``row_i[r]``; next or -1."""
    i = _open(buf, i)
    if i < 0:
        return -1
    row_i[r, R_LR_REASON_S] = -1
    row_i[r, R_LR_REASON_E] = -1
    row_i[r, R_LR_OK] = -1
    row_i[r, R_LR_ACT_S] = -1
    seen = 0
    more = True
    while more:
        key, i = _key(buf, i)
        if i < 0:
            return -1
        if key == KEY_ACTION:
            bit = 1
            s, e, i = _string(buf, i)
            row_i[r, R_LR_ACT_S] = s
            row_i[r, R_LR_ACT_E] = e
        elif key == KEY_OK:
            bit = 2
            if i + 4 <= len(buf) and buf[i] == 116 and buf[i + 1] == 114 and buf[i + 2] == 117 and buf[i + 3] == 101:
                row_i[r, R_LR_OK] = 1
                i += 4
            elif (
                i + 5 <= len(buf)
                and buf[i] == 102
                and buf[i + 1] == 97
                and buf[i + 2] == 108
                and buf[i + 3] == 115
                and buf[i + 4] == 101
            ):
                row_i[r, R_LR_OK] = 0
                i += 5
            else:
                return -1
        elif key == KEY_REASON:
            bit = 4
            j = _null(buf, i)
            if j >= 0:
                i = j
            else:
                s, e, i = _string(buf, i)
                row_i[r, R_LR_REASON_S] = s
                row_i[r, R_LR_REASON_E] = e
        else:
            return -1
        i, seen, more = _member_end(buf, i, seen, bit)
        if i < 0:
            return -1
    if row_i[r, R_LR_ACT_S] < 0 or row_i[r, R_LR_OK] < 0:
        return -1
    return i


@njit(cache=True, nogil=True)
def _open_list(buf: np.ndarray, i: int) -> tuple[int, bool]:
    """Past the ``[`` at ``i`` and the blanks after it: ``(next, any elements?)`` (``[]``: past its
    ``]``); -1 if there is no list."""
    if i >= len(buf) or buf[i] != 91:
        return -1, False
    i = _ws(buf, i + 1)
    if i < len(buf) and buf[i] == 93:
        return i + 1, False
    return i, True


@njit(cache=True, nogil=True)
def _entity_list(
    buf: np.ndarray, i: int, pow10: np.ndarray, ent_i: np.ndarray, ent_f: np.ndarray, n_ent: int
) -> tuple[int, int]:
    """A list of at most ``MAX_LIST`` entities at ``i`` into rows ``n_ent...``: ``(next or -1, entities after it)``."""
    i, more = _open_list(buf, i)
    first = n_ent
    while more:
        if n_ent - first >= MAX_LIST or n_ent >= len(ent_i):
            return -1, n_ent
        i = _entity(buf, i, pow10, ent_i, ent_f, n_ent)
        if i < 0:
            return -1, n_ent
        n_ent += 1
        i, more = _after_value(buf, i, 93)
    return i, n_ent


@njit(cache=True, nogil=True)
def _target_list(buf: np.ndarray, i: int, tgt: np.ndarray, n_tgt: int) -> tuple[int, int]:
    """A list of at most ``MAX_LIST`` names at ``i`` into rows ``n_tgt...``: ``(next or -1, names after it)``."""
    i, more = _open_list(buf, i)
    first = n_tgt
    while more:
        if n_tgt - first >= MAX_LIST or n_tgt >= len(tgt):
            return -1, n_tgt
        s, e, i = _string(buf, i)
        if i < 0 or not _name_ok(buf, s, e):
            return -1, n_tgt
        tgt[n_tgt, 0] = s
        tgt[n_tgt, 1] = e
        n_tgt += 1
        i, more = _after_value(buf, i, 93)
    return i, n_tgt


@njit(cache=True, nogil=True)
def _observation(  # noqa: C901 - one object, its keys in turn
    buf: np.ndarray,
    i: int,
    pow10: np.ndarray,
    row_i: np.ndarray,
    row_f: np.ndarray,
    r: int,
    ent_i: np.ndarray,
    ent_f: np.ndarray,
    n_ent: int,
    tgt: np.ndarray,
    n_tgt: int,
) -> tuple[int, int, int, int]:
    """Observation ``r`` at ``i``: ``(next, entities, targets, status)`` (counts after it)."""
    i = _open(buf, i)
    if i < 0:
        return -1, n_ent, n_tgt, BAD
    for c in range(N_RI):
        row_i[r, c] = 0
    row_i[r, R_KIND] = -1
    row_i[r, R_TEAM_S] = -1
    row_i[r, R_TEAM_E] = -1
    row_i[r, R_ENT_LO] = n_ent
    row_i[r, R_TGT_LO] = n_tgt
    for c in range(N_RF):
        row_f[r, c] = 0.0
    row_f[r, F_HP] = 20.0
    seen = 0
    has_agent = False
    has_pos = False
    more = True
    while more:
        key, i = _key(buf, i)
        if i < 0:
            return -1, n_ent, n_tgt, BAD
        if key == KEY_AGENT:
            bit = 1
            s, e, i = _string(buf, i)
            if i < 0 or not _name_ok(buf, s, e):
                return -1, n_ent, n_tgt, BAD
            row_i[r, R_AGENT_S] = s
            row_i[r, R_AGENT_E] = e
            has_agent = True
        elif key == KEY_KIND:
            bit = 2
            s, e, i = _string(buf, i)
            if i < 0:
                return -1, n_ent, n_tgt, BAD
            row_i[r, R_KIND] = _obs_kind(buf, s, e)
            if row_i[r, R_KIND] < 0:
                return -1, n_ent, n_tgt, BAD
        elif key == KEY_TICK:
            bit = 4
            v, integral, iv, i = _number(buf, i, pow10)
            if i < 0:
                return -1, n_ent, n_tgt, BAD
            if not integral:  # an integral float is the int (as pydantic and the lax decoder take it)
                if not (v == np.floor(v) and abs(v) < 1e15):
                    return -1, n_ent, n_tgt, BAD
                iv = int(v)
            if iv < 0:
                return -1, n_ent, n_tgt, BAD
            row_i[r, R_TICK] = iv
        elif key == KEY_POS:
            bit = 8
            i = _vec3(buf, i, pow10, MAP_LIMIT, row_f[r], F_POS)
            has_pos = True
        elif key == KEY_YAW or key == KEY_PITCH or key == KEY_HP:
            bit = 16 if key == KEY_YAW else 32 if key == KEY_PITCH else 64
            v, _, _, i = _number(buf, i, pow10)
            if i < 0:
                return -1, n_ent, n_tgt, BAD
            if key == KEY_HP:
                if not (v >= 0.0 and v <= HP_MAX):
                    return -1, n_ent, n_tgt, BAD
                row_f[r, F_HP] = v
            else:
                row_f[r, F_YAW if key == KEY_YAW else F_PITCH] = v
        elif key == KEY_VELOCITY:
            bit = 128
            i = _vec3(buf, i, pow10, MAP_LIMIT, row_f[r], F_VEL)
        elif key == KEY_ENTITIES:
            bit = 256
            i, n_ent = _entity_list(buf, i, pow10, ent_i, ent_f, n_ent)
        elif key == KEY_TARGETS:
            bit = 512
            row_i[r, R_TARGETS] = 1
            i, n_tgt = _target_list(buf, i, tgt, n_tgt)
        elif key == KEY_TEAM:
            bit = 1024
            i = _opt_name(buf, i, row_i[r], R_TEAM_S)
        elif key == KEY_GOAL:
            bit = 2048
            i = _opt_vec3(buf, i, pow10, row_f[r], F_GOAL, row_i[r], R_GOAL)
        elif key == KEY_LAST:
            bit = 4096
            j = _null(buf, i)
            if j >= 0:
                i = j
            else:
                i = _last_result(buf, i, row_i, r)
                row_i[r, R_LR] = 1
        elif key == KEY_INVENTORY or key == KEY_NEARBY or key == KEY_CHAT:
            return -1, n_ent, n_tgt, UNSUPPORTED
        else:
            return -1, n_ent, n_tgt, BAD
        i, seen, more = _member_end(buf, i, seen, bit)
        if i < 0:
            return -1, n_ent, n_tgt, BAD
    if not has_agent or not has_pos or row_i[r, R_KIND] < 0:
        return -1, n_ent, n_tgt, BAD
    row_i[r, R_ENT_HI] = n_ent
    row_i[r, R_TGT_HI] = n_tgt
    return i, n_ent, n_tgt, OK


@njit(cache=True, nogil=True)
def scan_rows(
    buf: np.ndarray,
    max_rows: int,
    pow10: np.ndarray,
    row_i: np.ndarray,
    row_f: np.ndarray,
    ent_i: np.ndarray,
    ent_f: np.ndarray,
    tgt: np.ndarray,
) -> tuple[int, int, int, int]:
    """``{"observations": [...]}`` into the arrays: ``(status, rows, entities, targets)``.

    ``status`` is :data:`OK` (0) or negative (:data:`BAD`, :data:`UNSUPPORTED`, :data:`TOO_MANY`):
    then nothing here is to be used. The arrays need room for every row, entity and target the
    body can hold (a row takes at least 50 bytes, an entity 40, a target 3: the caller sizes them
    from the body's length)."""
    i = _ws(buf, 0)
    if i >= len(buf) or buf[i] != 123:
        return BAD, 0, 0, 0
    key, i = _key(buf, _ws(buf, i + 1))
    if i < 0 or key != KEY_OBSERVATIONS:
        return BAD, 0, 0, 0
    if i >= len(buf) or buf[i] != 91:
        return BAD, 0, 0, 0
    i = _ws(buf, i + 1)
    n = 0
    n_ent = 0
    n_tgt = 0
    if i < len(buf) and buf[i] == 93:
        return UNSUPPORTED, 0, 0, 0  # no observations: the general path answers
    more = True
    while more:
        if n >= max_rows:
            return TOO_MANY, n, n_ent, n_tgt
        if n >= len(row_i):
            return BAD, n, n_ent, n_tgt
        i, n_ent, n_tgt, status = _observation(buf, i, pow10, row_i, row_f, n, ent_i, ent_f, n_ent, tgt, n_tgt)
        if status != OK:
            return status, n, n_ent, n_tgt
        n += 1
        i, more = _after_value(buf, i, 93)
        if i < 0:
            return BAD, n, n_ent, n_tgt
    i, more = _after_value(buf, i, 125)  # the request object ends: no other key
    if i < 0 or more:
        return BAD, n, n_ent, n_tgt
    if _ws(buf, i) != len(buf):
        return BAD, n, n_ent, n_tgt
    return OK, n, n_ent, n_tgt


@njit(cache=True, nogil=True)
def same_spans(buf: np.ndarray, spans: np.ndarray) -> bool:
    """Whether every ``buf[s:e]`` of ``spans`` (``[K, 2]``, ``K >= 1``) holds the same bytes as the first."""
    s0, e0 = spans[0, 0], spans[0, 1]
    ln = e0 - s0
    for k in range(1, len(spans)):
        s, e = spans[k, 0], spans[k, 1]
        if e - s != ln:
            return False
        for j in range(ln):
            if buf[s + j] != buf[s0 + j]:
                return False
    return True


def warm_up() -> None:
    """Compile (or load from the disk cache) the kernels now."""
    body = b'{"observations":[{"agent":"a","kind":"npc","pos":{"x":0,"y":0,"z":0}}]}'
    buf = np.frombuffer(body, dtype=np.uint8)
    scan_rows(
        buf,
        1,
        _POW10,
        np.empty((2, N_RI), dtype=np.int64),
        np.empty((2, N_RF)),
        np.empty((2, N_EI), dtype=np.int64),
        np.empty((2, N_EF)),
        np.empty((2, 2), dtype=np.int64),
    )
    same_spans(buf, np.zeros((1, 2), dtype=np.int64))
