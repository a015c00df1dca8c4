"""The compiled scan of JSON rows ``/v1/act`` bodies (serve/wire_rows.py) against the pydantic request model.

Invariant under test: whenever ``decode_rows`` accepts a body, the pydantic path accepts it too and
every row of the columnar batch equals pydantic's observation (``==`` and ``repr``: same types,
same float signs); whenever pydantic refuses, ``decode_rows`` refuses (``None``). Checked on rich
and mod-like requests, on every refusal of the msgspec decoder's tests, on exact number
conversion (random tokens), on the seeded mutation fuzz of ``test_act_wire`` and through the act
service (the same answers with the scan on and off).
"""

from __future__ import annotations

import copy
import json
import logging
import random
import struct
from typing import Any

import numpy as np
import orjson
import pytest
from test_act_wire import (
    MAX_AGENTS,
    NOT_REQUESTS,
    Raw,
    bodies,
    mutate,
    pydantic_verdict,
    random_number,
    rich_observations,
    to_json,
    vec,
)

from luanti_tune.serve import wire_rows
from luanti_tune.serve.act import render_json
from luanti_tune.serve.wire import decode_observations
from luanti_tune.serve.wire_rows import decode_rows

log = logging.getLogger(__name__)

UNSUPPORTED_KEYS = ("inventory", "nearby", "chat")


@pytest.fixture(autouse=True, scope="module")
def _compiled() -> None:
    wire_rows.prepare(wait=True)
    assert wire_rows.ready()


def compiled_differential(body: bytes, max_agents: int = MAX_AGENTS) -> tuple[bool, bool]:
    """``(pydantic accepts, the scan accepts)``, asserting the invariant."""
    ref = pydantic_verdict(body, False, max_agents)
    got = decode_rows(body, max_agents=max_agents)
    if got is None:
        return ref is not None, False
    assert ref is not None, f"the scan accepted a body pydantic refuses: {body[:400]!r}"
    assert got.cols is not None and len(got) == len(ref)
    for i, want in enumerate(ref):
        o = got[i]
        assert o == want and repr(o) == repr(want), f"row {i}: {o!r} != {want!r}"
    assert got.agents == [o.agent for o in ref]
    assert got.kinds == [o.kind for o in ref]
    assert got.ticks.dtype == np.int64 and got.ticks.tolist() == [o.tick for o in ref]
    np.testing.assert_array_equal(got.pos, np.array([o.pos.as_tuple() for o in ref]).reshape(len(ref), 3))
    return True, True


def _supported(obs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obs.items() if k not in UNSUPPORTED_KEYS}


def test_rich_requests_are_scanned_and_equal_pydantic() -> None:
    rng = random.Random(1)
    observations = [_supported(o) for o in rich_observations(rng)]
    tree = {"observations": observations}
    for body in (to_json(tree), orjson.dumps(tree), json.dumps(tree, indent=2).encode(), json.dumps(tree).encode()):
        assert compiled_differential(body) == (True, True)
    batch = decode_rows(orjson.dumps(tree), max_agents=MAX_AGENTS)
    assert batch is not None and batch.cols is not None
    assert batch[1].tick == 7 and batch[4].velocity.x == 0.0 and batch[4].entities == []
    # the same rows with a key the scan leaves to the general decoder: valid, not scanned
    for key, value in (("inventory", {"default:dirt": 1}), ("nearby", None), ("chat", [])):
        body = orjson.dumps({"observations": [dict(observations[0], **{key: value})]})
        assert compiled_differential(body) == (True, False)
        assert decode_observations(body, msgpack=False, max_agents=MAX_AGENTS) is not None


def lua_number(x: float) -> Raw:
    """``x`` as the mod writes it: Lua's ``%.14g`` (integers without a fraction, small ones with an exponent)."""
    return Raw(f"{x:.14g}")


def mod_row(rng: random.Random, i: int) -> dict[str, Any]:
    """A row as ``act.observe`` of the mod builds it (numbers in Lua's format)."""

    def lvec(scale: float) -> dict[str, Any]:
        return {k: lua_number(rng.uniform(-scale, scale)) for k in "xyz"}

    o: dict[str, Any] = {
        "agent": f"pursuit-{i}",
        "kind": rng.choice(("pursuit", "pursuit", "navigation", "team", "npc")),
        "tick": rng.choice((i, float(i), Raw(f"{i}.0"), Raw(f"{i}e0"))),
        "pos": lvec(300),
        "yaw": lua_number(rng.uniform(-3.2, 3.2)),
        "pitch": lua_number(0),
        "hp": rng.choice((20, 7.5, 0, 1000)),
        "velocity": lvec(4),
        "entities": [
            {"kind": "player", "name": rng.choice(("alice", "bob_2", "c.d:e-f")), "rel": lvec(30), "velocity": lvec(4)}
            | ({"hp": lua_number(rng.uniform(0, 20))} if rng.random() < 0.5 else {})
            for _ in range(rng.choice((0, 1, 1, 1, 2, 3)))
        ],
        "targets": [],
    }
    o["targets"] = [e["name"] for e in o["entities"] if rng.random() < 0.8]
    if rng.random() < 0.7:
        o["last_result"] = {
            "action": rng.choice(("move", "wait", "dig", "")),
            "ok": rng.random() < 0.7,
            **({"reason": rng.choice(("blocked", "3 nodes away: too far", None))} if rng.random() < 0.6 else {}),
        }
    if rng.random() < 0.2:
        o["last_result"] = None
    if rng.random() < 0.3:
        o["goal"] = rng.choice((lvec(100), None))
    if rng.random() < 0.3:
        o["team"] = rng.choice(("team", "red", None))
    if rng.random() < 0.2:
        o["entities"].append({"kind": rng.choice(("mob", "item", "agent")), "rel": lvec(5), "name": None, "team": None})
    if rng.random() < 0.2:
        o["entities"].append({"kind": "agent", "rel": vec(rng, 5), "team": "red", "velocity": None, "hp": None})
    keys = list(o)
    rng.shuffle(keys)
    return {k: o[k] for k in keys}


def spaced(text: bytes) -> bytes:
    """``text`` with blanks around every structural character (outside strings)."""
    out = bytearray()
    in_string = escaped = False
    for c in text:
        if in_string:
            in_string = escaped or c != ord('"')
            escaped = not escaped and c == ord("\\")
        elif c == ord('"'):
            in_string = True
        elif c in b",:{}[]":
            out += b" \n\t\r"[: 1 + c % 4]
        out.append(c)
    return bytes(out)


@pytest.mark.parametrize("seed", range(6))
def test_mod_like_requests_are_scanned_and_equal_pydantic(seed: int) -> None:
    rng = random.Random(seed)
    rows = [mod_row(rng, i) for i in range(rng.choice((1, 5, 40)))]
    tree = {"observations": rows}
    text = to_json(tree)
    assert compiled_differential(text, max_agents=64) == (True, True)
    # blanks anywhere between tokens
    assert compiled_differential(b"  " + spaced(text) + b"\n", max_agents=64) == (True, True)
    batch = decode_rows(text, max_agents=64)
    assert batch is not None and batch.cols is not None
    # equal last results share one (frozen) object; rows without one have None
    results = [o.last_result for o in batch]
    assert len({id(r) for r in results if r is not None}) <= len({r for r in results if r is not None})


def test_the_columns_are_what_the_compact_format_decodes_to() -> None:
    """The scan's columns equal the columnar decoder's for the same observations (the adapters read them)."""
    from luanti_tune.serve.wire_columns import decode_columns, rows_to_columns

    rng = random.Random(5)
    rows = [mod_row(rng, i) for i in range(30)]
    plain = orjson.loads(to_json({"observations": rows}))["observations"]
    got = decode_rows(orjson.dumps({"observations": plain}), max_agents=64)
    want = decode_columns(orjson.dumps(rows_to_columns(plain)), msgpack=False, max_agents=64)
    assert got is not None and got.cols is not None and want.cols is not None
    g, w = got.cols, want.cols
    assert g.agent == w.agent and g.kind == w.kind
    for name in ("tick", "pos", "yaw", "pitch", "hp", "velocity"):
        a, b = getattr(g, name), getattr(w, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    ge, we = g.entities, w.entities
    assert np.array_equal(ge.offsets, we.offsets) and ge.kind == we.kind and ge.name == we.name
    assert np.array_equal(ge.rel, we.rel) and np.array_equal(ge.velocity, we.velocity)
    assert np.array_equal(ge.has_velocity, we.has_velocity) and ge.hp == we.hp and ge.team == we.team
    assert [list(t) for t in g.targets or [[]] * len(g)] == [list(t) for t in w.targets or [[]] * len(w)]


def _bits(x: float) -> bytes:
    return struct.pack("<d", x)


def test_numbers_convert_exactly_or_are_left_to_the_general_decoder() -> None:
    """Every number the scan takes is the double ``float()`` gives for the token (same bits, -0.0 too)."""
    rng = random.Random(7)
    tokens = [str(random_number(rng)) for _ in range(3000)]
    for _ in range(3000):
        x = rng.choice((rng.uniform(-31000, 31000), rng.uniform(-1, 1), rng.uniform(-1e-4, 1e-4)))
        tokens.append(rng.choice(("%.14g", "%.15g", "%.17g", "%r", "%.3f", "%.0f", "%e")) % x)
    tokens += ["0", "-0", "0.0", "-0.0", "0e0", "-0e-5", "1E+2", "5e-324", "1e22", "1e23", "9007199254740993"]
    scanned = 0
    for tok in tokens:
        body = b'{"observations":[{"agent":"a","kind":"npc","pos":{"x":0,"y":0,"z":0},"yaw":%s}]}' % tok.encode()
        valid, fast = compiled_differential(body)
        if not fast:
            continue
        scanned += 1
        batch = decode_rows(body, max_agents=1)
        assert batch is not None
        value = float(tok) if any(c in tok for c in ".eE") else float(int(tok))
        assert _bits(float(batch.cols.yaw[0])) == _bits(value), tok  # type: ignore[union-attr]
    # Lua's %.14g and the short formats are all scanned; only long or extreme tokens are left over
    assert scanned >= 3300, scanned


@pytest.mark.parametrize(
    ("fragment", "valid", "scanned"),
    [
        (b'"yaw":1e999', False, False),
        (b'"yaw":NaN', False, False),
        (b'"yaw":01', False, False),
        (b'"yaw":-', False, False),
        (b'"yaw":1.', False, False),
        (b'"yaw":.5', False, False),
        (b'"yaw":+1', False, False),
        (b'"yaw":"1"', False, False),
        (b'"yaw":null', False, False),
        (b'"yaw":true', False, False),
        (b'"tick":4.5', False, False),
        (b'"tick":-1', False, False),
        (b'"tick":true', False, False),
        (b'"hp":1000.5', False, False),
        (b'"hp":-0.5', False, False),
        (b'"agent2":"x"', False, False),
        (b'"velocity":null', False, False),
        (b'"velocity":{"x":1,"y":2}', False, False),
        (b'"velocity":{"x":1,"y":2,"z":3,"w":4}', False, False),
        (b'"velocity":{"x":31000.5,"y":2,"z":3}', False, False),
        (b'"velocity":{"x":1,"y":2,"z":3,}', False, False),
        (b'"entities":[{"kind":"player"}]', False, False),
        (b'"entities":[{"kind":"ghost","rel":{"x":0,"y":0,"z":0}}]', False, False),
        (b'"entities":[{"kind":"mob","rel":{"x":0,"y":0,"z":0},"name":"a b"}]', False, False),
        (b'"entities":[' + b",".join([b'{"kind":"mob","rel":{"x":0,"y":0,"z":0}}'] * 65) + b"]", False, False),
        (b'"entities":[' + b",".join([b'{"kind":"mob","rel":{"x":0,"y":0,"z":0}}'] * 64) + b"]", True, True),
        (b'"targets":["a",]', False, False),
        (b'"targets":[' + b",".join([b'"t"'] * 65) + b"]", False, False),
        (b'"targets":[' + b",".join([b'"t"'] * 64) + b"]", True, True),
        (b'"targets":["' + b"a" * 65 + b'"]', False, False),
        (b'"targets":["' + b"a" * 64 + b'"]', True, True),
        (b'"last_result":{"ok":true}', False, False),
        (b'"last_result":{"action":"move","ok":1}', False, False),
        (b'"last_result":{"action":"move","ok":false,"reason":null,"x":1}', False, False),
        (b'"last_result":{"action":"","ok":false,"reason":"far"}', True, True),
        (b'"team":""', False, False),
        (b'"goal":null,"team":null', True, True),
        (b'"kind":"Pursuit"', False, False),
        (b'"yaw":1,"yaw":2', None, False),  # a duplicated key: left to the general decoder
        (b'"last_result":{"action":"say \\"hi\\"","ok":true}', True, False),  # an escape: left over
        (b'"last_result":{"action":"\xc3\xa9","ok":true}', True, False),  # not ASCII: left over
        (b'"yaw":1.23456789012345678', True, False),  # 18 digits: left over
        (b'"yaw":1e23', True, False),  # an exponent beyond the exact range: left over
    ],
)
def test_refused_or_left_to_the_general_decoder(fragment: bytes, valid: bool | None, scanned: bool) -> None:
    kind = b"" if fragment.startswith(b'"kind"') else b',"kind":"npc"'
    body = b'{"observations":[{"agent":"a","pos":{"x":0,"y":0,"z":0},' + fragment + kind + b"}]}"
    accepted = pydantic_verdict(body, False, MAX_AGENTS) is not None
    if valid is not None:
        assert accepted == valid
    assert compiled_differential(body) == (accepted, scanned)


def test_request_shape_and_row_limit() -> None:
    one = {"agent": "a", "kind": "npc", "pos": {"x": 0, "y": 0, "z": 0}}
    full = orjson.dumps({"observations": [one] * MAX_AGENTS})
    assert compiled_differential(full) == (True, True)
    over = orjson.dumps({"observations": [one] * (MAX_AGENTS + 1)})
    assert compiled_differential(over) == (False, False)
    assert compiled_differential(orjson.dumps({"observations": []})) == (True, False)  # empty: the general path
    for body in NOT_REQUESTS:
        assert compiled_differential(body) == (False, False), body
    for body in (full + b" x", full[:-1], full.replace(b"[", b"[ ,", 1), b"[" + full + b"]"):
        assert compiled_differential(body) == (False, False), body


def test_differential_mutation_fuzz() -> None:
    rng = random.Random(20261127)
    pool = [_supported(o) for o in rich_observations(rng)] + [mod_row(rng, i) for i in range(6)]
    pool = [orjson.loads(to_json(o)) for o in pool]
    checked = scanned = valid_left = refused = 0
    for _ in range(2400):
        k = rng.randint(1, 4)
        tree: dict[str, Any] = {"observations": copy.deepcopy(rng.sample(pool, k))}
        for _ in range(rng.choice((0, 1, 1, 1, 2, 3))):
            mutate(tree, rng)
        max_agents = rng.choice((MAX_AGENTS, MAX_AGENTS, k - 1 if k > 1 else 1, k))
        for body, is_msgpack in bodies(tree, rng):
            if is_msgpack:
                continue
            valid, fast = compiled_differential(body, max_agents)
            checked += 1
            scanned += fast
            valid_left += valid and not fast
            refused += not valid
    log.warning(
        "scan fuzz: %d bodies, %d refused, %d scanned, %d valid left over", checked, refused, scanned, valid_left
    )
    assert checked >= 2400 and refused >= 800 and scanned >= 600


def test_the_engine_decides_scanned_rows_as_the_msgspec_ones(tmp_path: Any) -> None:
    """A real pursuit champion decides consecutive ticks of the same agents identically from the
    scanned batch and from the msgspec one (two engines, the same answer bytes at every tick)."""
    from luanti_tune.bench.act import _champion, _engine, make_observations

    _champion(tmp_path, 0)
    engines = {"scan": _engine(tmp_path, True), "msgspec": _engine(tmp_path, True)}
    try:
        for tick in range(100, 106):
            obs = make_observations(40, seed=3, tick=tick)
            obs[3]["last_result"] = {"action": "move", "ok": True}
            obs[5]["entities"].append({"kind": "mob", "rel": {"x": 1, "y": 0, "z": 2}})
            body = orjson.dumps({"observations": obs})
            batches = {
                "scan": decode_rows(body, max_agents=64),
                "msgspec": decode_observations(body, msgpack=False, max_agents=64),
            }
            assert batches["scan"] is not None and batches["scan"].cols is not None
            answers = {}
            for name, batch in batches.items():
                assert batch is not None
                result = engines[name].decide(batch)
                assert not result.fallback and not result.errors
                answers[name] = render_json(result, batch)
            assert answers["scan"] == answers["msgspec"]
    finally:
        for engine in engines.values():
            engine.close()


def test_a_service_prepares_the_scan_in_the_background_and_decodes_structs_meanwhile() -> None:
    """In a fresh process: ``prepare()`` returns at once, bodies take the struct decoder until the
    scan is ready (compiled by a child into numba's disk cache, then loaded), then the scan."""
    import subprocess
    import sys

    code = """
import orjson
from luanti_tune.config.settings import Settings
from luanti_tune.serve import wire_rows
from luanti_tune.serve.act import ActService
service = ActService(Settings(), None)
body = orjson.dumps({"observations": [{"agent": "a", "kind": "npc", "pos": {"x": 1, "y": 2, "z": 3}}]})
wire_rows.prepare()  # returns at once: a child compiles, so the next body takes the structs
before = service.parse_fast(body, "application/json")
assert before is not None and before.cols is None, "structs before the scan is ready"
assert wire_rows._DONE.wait(600) and wire_rows.ready()
after = service.parse_fast(body, "application/json")
assert after is not None and after.cols is not None and after[0] == before[0]
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
