"""The msgspec fast path of ``/v1/act`` (serve/wire.py) against the pydantic request model.

Invariant under test: whenever ``decode_observations`` accepts a body, the pydantic path accepts it
too and every materialised observation equals pydantic's (same ``repr``: same types, same float
signs); whenever pydantic refuses, the fast path refuses (``None``). Checked on rich valid
requests and on a seeded differential mutation fuzz (JSON and msgpack).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import random
from typing import Any

import msgpack
import numpy as np
import orjson
import pytest
from pydantic import ValidationError

from luanti_tune.config.settings import Settings
from luanti_tune.schemas.common import NODE_CODES
from luanti_tune.serve.act import ActService
from luanti_tune.serve.wire import WireObservation, decode_observations, to_observation, to_observation_validated

log = logging.getLogger(__name__)

MAX_AGENTS = 6
_MODELS: dict[int, Any] = {}


def request_model(max_agents: int) -> Any:
    if max_agents not in _MODELS:
        _MODELS[max_agents] = ActService(Settings(act_max_agents=max_agents), None).request_model
    return _MODELS[max_agents]


class Raw(str):
    """A JSON token written as is (``1e999``, ``1e-400``, 400-digit integers ...)."""


_INF = float("inf")
_RAW_FLOATS = {"1e999": _INF, "-1e999": -_INF, "1E2": 100.0, "1e-400": 0.0, "-0.0": -0.0, "42.0": 42.0}


def to_json(tree: Any) -> bytes:
    """``tree`` as JSON text, :class:`Raw` tokens verbatim (stdlib json: big ints, NaN written as is)."""
    raws: list[str] = []

    def sub(x: Any) -> Any:
        if isinstance(x, Raw):
            raws.append(str(x))
            return f"\x00RAW{len(raws) - 1}\x00"
        if isinstance(x, bytes):  # msgpack bin; a string in JSON
            return x.decode("latin-1")
        if isinstance(x, dict):
            return {k: sub(v) for k, v in x.items()}
        if isinstance(x, list):
            return [sub(v) for v in x]
        return x

    text = json.dumps(sub(tree), ensure_ascii=False)
    for i, r in enumerate(raws):
        text = text.replace(f'"\\u0000RAW{i}\\u0000"', r)
    return text.encode("utf-8", "surrogatepass")


def to_msgpack(tree: Any) -> bytes | None:
    """``tree`` as msgpack (:class:`Raw` floats as their value), or None if msgpack cannot carry it."""

    def sub(x: Any) -> Any:
        if isinstance(x, Raw):
            if str(x) in _RAW_FLOATS:
                return _RAW_FLOATS[str(x)]
            raise OverflowError(x)
        if isinstance(x, dict):
            return {k: sub(v) for k, v in x.items()}
        if isinstance(x, list):
            return [sub(v) for v in x]
        return x

    try:
        return msgpack.packb(sub(tree))  # type: ignore[no-any-return]
    except (OverflowError, TypeError, ValueError):
        return None


def pydantic_verdict(body: bytes, is_msgpack: bool, max_agents: int) -> list[Any] | None:
    """The observations the pydantic path (ActService.parse) accepts, or None if it refuses."""
    model = request_model(max_agents)
    try:
        if is_msgpack:
            try:
                raw = msgpack.unpackb(body, raw=False, strict_map_key=True)
            except Exception:  # noqa: BLE001 - the service answers 400
                return None
            return list(model.model_validate(raw).observations)
        return list(model.model_validate_json(body).observations)
    except ValidationError:
        return None


def differential(body: bytes, is_msgpack: bool, max_agents: int) -> tuple[bool, bool]:
    """``(pydantic accepts, fast path accepts)``, asserting the invariant."""
    ref = pydantic_verdict(body, is_msgpack, max_agents)
    fast = decode_observations(body, msgpack=is_msgpack, max_agents=max_agents)
    if fast is None:
        return ref is not None, False
    assert ref is not None, f"fast path accepted a body pydantic refuses: {body[:400]!r}"
    assert len(fast) == len(ref)
    for item, want in zip(fast.items, ref, strict=True):
        assert isinstance(item, WireObservation)
        got = to_observation(item)
        assert got == want and repr(got) == repr(want), f"{got!r} != {want!r}"
        assert repr(to_observation_validated(item)) == repr(want)
        assert type(item.tick) is int
        if item.nearby is not None:
            assert type(item.nearby.radius) is int and all(type(c) is int for c in item.nearby.codes)
        assert all(type(v) is int for v in item.inventory.values())
    return True, True


# ----------------------------------------------------------------------------- valid requests


def vec(rng: random.Random, scale: float = 30.0) -> dict[str, Any]:
    return {k: round(rng.uniform(-scale, scale), 3) for k in "xyz"}


def grid(rng: random.Random, radius: int) -> dict[str, Any]:
    codes = [rng.choice(list(NODE_CODES.values())) for _ in range((2 * radius + 1) ** 3)]
    return {"radius": radius, "codes": codes}


def rich_observations(rng: random.Random) -> list[dict[str, Any]]:
    """Observations of every kind using every optional field (and minimal ones)."""
    out: list[dict[str, Any]] = [
        {
            "agent": "enemy-1",
            "kind": "pursuit",
            "tick": 100,
            "pos": vec(rng),
            "yaw": 1,  # ints for floats
            "pitch": -0.25,
            "hp": 20,
            "velocity": vec(rng, 2),
            "entities": [
                {"kind": "player", "name": "alice", "rel": vec(rng, 6), "velocity": vec(rng, 2), "hp": 17.5},
                {"kind": "mob", "rel": vec(rng, 6)},
                {"kind": "item", "name": "default:apple", "rel": {"x": 1, "y": 0, "z": -2}, "velocity": None},
                {"kind": "agent", "name": "bot.2", "rel": vec(rng, 3), "team": "red", "hp": None, "name_": None},
            ],
            "targets": ["alice", "bot.2"],
        },
        {
            "agent": "nav_3",
            "kind": "navigation",
            "tick": 7.0,  # integral float for an int (Lua's write_json)
            "pos": {"x": 31000, "y": -31000.0, "z": 0.5},
            "goal": vec(rng),
            "nearby": grid(rng, 1),
            "inventory": {"default:dirt": 12, "default:torch": 3.0},
            "last_result": {"action": "move_to", "ok": False, "reason": "blocked"},
        },
        {
            "agent": "npc:guide",
            "kind": "npc",
            "pos": vec(rng),
            "hp": 1000,
            "chat": [{"from": "alice", "message": "hello, guide!"}, {"from": "bob-2", "message": ""}],
            "last_result": {"action": "chat", "ok": True},
            "nearby": grid(rng, 2),
        },
        {
            "agent": "team-a.1",
            "kind": "team",
            "tick": 0,
            "pos": vec(rng),
            "hp": 0.0,
            "team": "blue",
            "entities": [{"kind": "agent", "name": "team-a.2", "team": "blue", "rel": vec(rng, 4)}],
            "targets": [],
            "chat": [{"from": "team-a.2", "message": "m" * 512}],
            "last_result": {"action": "wait", "ok": True, "reason": None},
            "nearby": None,
            "goal": None,
        },
        {"agent": "x", "kind": "pursuit", "pos": {"x": 0, "y": 0, "z": 0}},
    ]
    for o in out:
        for e in o.get("entities", []):
            e.pop("name_", None)
    return out


def test_rich_valid_requests_take_the_fast_path_and_equal_pydantic() -> None:
    rng = random.Random(1)
    observations = rich_observations(rng)
    tree = {"observations": observations}
    for body, is_msgpack in ((to_json(tree), False), (orjson.dumps(tree), False), (msgpack.packb(tree), True)):
        assert differential(body, is_msgpack, MAX_AGENTS) == (True, True)
        batch = decode_observations(body, msgpack=is_msgpack, max_agents=MAX_AGENTS)
        assert batch is not None
        ref = pydantic_verdict(body, is_msgpack, MAX_AGENTS)
        assert ref is not None
        assert batch.agents == [o.agent for o in ref]
        assert batch.kinds == [o.kind for o in ref]
        assert batch.ticks.tolist() == [o.tick for o in ref]
        np.testing.assert_array_equal(batch.pos, np.array([o.pos.as_tuple() for o in ref]))
        assert list(batch) == ref  # sequence of materialised Observations
        assert batch[1].tick == 7 and type(batch.items[1].tick) is int
        assert batch.items[2].chat[0].sender == "alice"
        assert batch.items[4].velocity.x == 0.0 and batch.items[4].entities == []


def test_empty_and_limit_sized_requests() -> None:
    one = {"agent": "a", "kind": "npc", "pos": {"x": 0, "y": 0, "z": 0}}
    assert differential(orjson.dumps({"observations": []}), False, MAX_AGENTS) == (True, True)
    full = orjson.dumps({"observations": [one] * MAX_AGENTS})
    assert differential(full, False, MAX_AGENTS) == (True, True)
    over = orjson.dumps({"observations": [one] * (MAX_AGENTS + 1)})
    assert differential(over, False, MAX_AGENTS) == (False, False)
    big = dict(one, targets=["t"] * 64, entities=[{"kind": "mob", "rel": one["pos"]}] * 64)
    big["chat"] = [{"from": "a", "message": "m"}] * 16
    big["nearby"] = grid(random.Random(0), 8)
    assert differential(orjson.dumps({"observations": [big]}), False, MAX_AGENTS) == (True, True)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tick", Raw("1e999")),
        ("yaw", Raw("1e999")),
        ("yaw", Raw("-1e999")),
        ("hp", Raw("1e999")),
        ("yaw", Raw("NaN")),
        ("tick", 4.5),
        ("tick", True),
        ("yaw", "1"),
        ("agent", "a\nb"),
        ("agent", "a b"),
        ("agent", "é"),
        ("agent", "a" * 65),
        ("agent", ""),
        ("kind", "Pursuit"),
        ("velocity", None),
        ("hp", 1000.0000000000002),
    ],
)
def test_refused_like_pydantic(field: str, value: Any) -> None:
    obs = {"agent": "a", "kind": "npc", "pos": {"x": 0, "y": 0, "z": 0}, field: value}
    assert differential(to_json({"observations": [obs]}), False, MAX_AGENTS) == (False, False)


@pytest.mark.parametrize(
    ("radius", "codes", "valid"),
    [
        (1.0, [1.0] * 27, True),
        (1, [2.0] * 26 + [3], True),
        (2.0, [0.0] * 124 + [-0.0], True),
        (1, [1.0] * 26 + [True], False),
        (1, [1.0] * 26 + [Raw("1" + "0" * 400)], False),
        (1, [1.0] * 26 + [6.5], False),
        (1, [1.0] * 26 + [7.0], False),
        (1, [1.0] * 26 + [Raw("1e999")], False),
        (1.5, [1.0] * 27, False),
        (1.0, [1.0] * 26, False),
    ],
)
def test_integral_float_grids(radius: Any, codes: list[Any], valid: bool) -> None:
    """Integral floats for integers (Lua's write_json) take the second decode; the structs hold ints."""
    obs = {"agent": "a", "kind": "npc", "pos": {"x": 0, "y": 0, "z": 0}, "nearby": {"radius": radius, "codes": codes}}
    tree = {"observations": [obs]}
    assert differential(to_json(tree), False, MAX_AGENTS) == (valid, valid)
    packed = to_msgpack(tree)
    if packed is not None:
        assert differential(packed, True, MAX_AGENTS) == (valid, valid)


def test_non_finite_msgpack_floats_refused() -> None:
    for value in (math.nan, math.inf, -math.inf):
        for obs in (
            {"agent": "a", "kind": "npc", "pos": {"x": 0, "y": 0, "z": 0}, "yaw": value},
            {"agent": "a", "kind": "npc", "pos": {"x": value, "y": 0, "z": 0}},
            {"agent": "a", "kind": "npc", "pos": {"x": 0, "y": 0, "z": 0}, "tick": value},
        ):
            assert differential(msgpack.packb({"observations": [obs]}), True, MAX_AGENTS) == (False, False)


# ----------------------------------------------------------------------------- mutation fuzz

_NAN = float("nan")
SPECIALS: list[Any] = [
    None, True, False, "x", "", "1", 0, 1, -1, 2, 6, 7, 8, 9, 64, 0.5, 1.5, -0.0, 42.0, 20, 1000, 1000.0,
    1000.5, 1001, 31000, 31000.0, 31000.5, -31000, -31001, 2**63, 2**64 + 5, 10**30, -(10**30), 1e20, 1e300,
    -1e20, Raw("1e999"), Raw("-1e999"), Raw("1E2"), Raw("1e-400"), Raw("-0.0"), Raw("1" + "0" * 400),
    Raw("123456789012345678901"), [], {}, [1, 2], {"x": 1, "y": 2, "z": 3}, "a" * 64, "a" * 65, "bad name",
    "ü", "a\n", "a:b", "alice", "pursuit", "npc", "player", "Pursuit", "m" * 512, "m" * 513, _NAN, math.inf,
    b"bytes", 0.1, 3.0, 1.0, 2**53 + 1,
]  # fmt: skip
EXTRA_KEYS = ["extra", "sender", "from", "x", "velocity", "name", "w", "observations", "tick"]
LIMITS = {"entities": 64, "targets": 64, "chat": 16}


def paths(tree: Any) -> list[tuple[Any, Any]]:
    """``(container, key)`` of every value in ``tree`` (two random cells of each voxel grid)."""
    out: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                out.append((node, k))
                walk(v)
        elif isinstance(node, list):
            idx = range(len(node)) if len(node) < 30 else [0, len(node) - 1]
            for i in idx:
                out.append((node, i))
                walk(node[i])

    walk(tree)
    return out


def twiddle(value: Any) -> Any:
    """The same number as the other type (int <-> integral float), a list of them as floats."""
    if type(value) is int:
        return float(value)
    if type(value) is float and value.is_integer():
        return int(value)
    if isinstance(value, list) and value and all(type(v) is int for v in value):
        return [float(v) for v in value]
    if isinstance(value, dict) and value and all(type(v) is int for v in value.values()):
        return {k: float(v) for k, v in value.items()}
    return value


def random_number(rng: random.Random) -> Raw:
    """A JSON number token with up to 25 significant digits and any exponent (float parsing must agree)."""
    digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 25)))
    sign = rng.choice(("", "-"))
    if rng.random() < 0.3:
        return Raw(sign + digits.lstrip("0") or "0")
    cut = rng.randint(1, len(digits))
    mantissa = f"{digits[:cut].lstrip('0') or '0'}.{digits[cut:] or '0'}"
    exp = rng.choice(("", "", f"e{rng.randint(-330, 330)}", f"E+{rng.randint(0, 20)}"))
    return Raw(sign + mantissa + exp)


def mutate(tree: dict[str, Any], rng: random.Random) -> None:  # noqa: C901 - one branch per mutation kind
    """One random mutation of ``tree`` in place."""
    op = rng.random()
    spots = paths(tree)
    if not spots:
        tree[rng.choice(EXTRA_KEYS)] = copy.deepcopy(rng.choice(SPECIALS))
        return
    parent, key = rng.choice(spots)
    if op < 0.08:
        parent[key] = random_number(rng)
    elif op < 0.45:
        parent[key] = copy.deepcopy(rng.choice(SPECIALS))
    elif op < 0.6:
        parent[key] = twiddle(parent[key])
    elif op < 0.7:
        if isinstance(parent, dict):
            del parent[key]
        else:
            parent.pop(key)
    elif op < 0.8:
        dicts = [p for p, _ in spots if isinstance(p, dict)] + [tree]
        rng.choice(dicts)[rng.choice(EXTRA_KEYS)] = copy.deepcopy(rng.choice(SPECIALS))
    elif op < 0.9:
        lists = [(p, k) for p, k in spots if isinstance(p, dict) and isinstance(p[k], list) and p[k]]
        if lists:
            p, k = rng.choice(lists)
            limit = LIMITS.get(k, len(p[k]))
            p[k] = p[k] + [p[k][-1]] * (limit - len(p[k]) + rng.choice((0, 1)))
    else:
        nearby = [p[k] for p, k in spots if k == "nearby" and isinstance(p[k], dict)]
        if nearby:
            nb = rng.choice(nearby)
            nb["radius"] = rng.choice((0, 1, 2, 3, 9, 1.0, 2.0))
            if rng.random() < 0.5 and isinstance(nb["radius"], int | float) and 0 < nb["radius"] < 9:
                nb["codes"] = [0] * (2 * int(nb["radius"]) + 1) ** 3


def bodies(tree: Any, rng: random.Random) -> list[tuple[bytes, bool]]:
    out = [(to_json(tree), False)]
    packed = to_msgpack(tree)
    if packed is not None:
        out.append((packed, True))
    if rng.random() < 0.05:  # text-level damage
        text = out[0][0]
        out.append((text[: rng.randrange(len(text))], False))
        out.append((text.replace(b'{"agent":', b'{"agent": "ok", "agent":', 1), False))
        out.append((text.replace(b'"kind":', b'"kind": 5, "kind":', 1), False))
        out.append((text + b" x", False))
        if packed is not None:
            out.append((packed + b"\x00", True))
            out.append((packed[: rng.randrange(len(packed))], True))
    return out


NOT_REQUESTS: list[bytes] = [
    b"", b"[]", b"null", b"1", b'"x"', b"{}", b'{"observations": null}', b'{"observations": {}}',
    b'{"observations": [null]}', b'{"observations": [[]]}', b"{", b'{"observations": []', b"\xff\xfe",
    b'{"observations": [], "extra": 1}', b'{"Observations": []}', b"\xef\xbb\xbf{\"observations\": []}",
]  # fmt: skip


def test_differential_mutation_fuzz() -> None:
    rng = random.Random(20261126)
    pool = rich_observations(rng)
    checked = accepted_valid = slow_valid = refused = 0
    for i in range(2400):
        k = rng.randint(1, 4)
        tree: dict[str, Any] = {"observations": copy.deepcopy(rng.sample(pool, k))}
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            mutate(tree, rng)
        max_agents = rng.choice((MAX_AGENTS, MAX_AGENTS, k - 1 if k > 1 else 1, k))
        for body, is_msgpack in bodies(tree, rng):
            valid, fast = differential(body, is_msgpack, max_agents)
            checked += 1
            if valid:
                accepted_valid += fast
                slow_valid += not fast
                if not fast:
                    log.warning("valid body took the slow path (mutation %d): %r", i, body[:300])
            else:
                refused += 1
    for body in NOT_REQUESTS:
        for is_msgpack in (False, True):
            assert differential(body, is_msgpack, MAX_AGENTS) == (False, False), body
    log.warning(
        "fuzz: %d bodies, %d refused by both, %d valid on the fast path, %d valid on the slow path",
        checked,
        refused,
        accepted_valid,
        slow_valid,
    )
    assert checked >= 4000 and refused >= 1500 and accepted_valid >= 500
    assert slow_valid <= checked // 100
