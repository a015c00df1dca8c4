"""JSON rows bodies of ``/v1/act`` (``{"observations": [...]}``): validated by the pydantic models,
then decided as columns; and the same observations sent as columns by the one columnar decoder.

Invariants under test, on rich and mod-like requests, targeted refusals and a seeded mutation fuzz
(JSON and msgpack): a rows body is accepted iff pydantic accepts it, then its columnar batch holds
exactly pydantic's observations (each row rebuilt from the columns equals pydantic's: ``==`` and
``repr``, same types and float signs), and a refused one is a 422 naming each offending field
(413/400 for too many observations or a body that is not JSON/msgpack). The columnar body of the
same rows (:func:`rows_to_columns`) gives the same observations, or a 422 naming the column; a
number token is read to the same double by both. Through an engine, rows and columns of the same
stream get the same decisions.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import struct
from typing import Any

import msgpack
import numpy as np
import orjson
import pytest
from act_corpus import (
    MAX_AGENTS,
    NOT_REQUESTS,
    TICK_LIMIT,
    Raw,
    bodies,
    columns_differential,
    grid,
    mod_row,
    mutate,
    pydantic_verdict,
    random_number,
    rich_observations,
    service,
    spaced,
    to_json,
    to_msgpack,
)
from pydantic import ValidationError

from luanti_tune.policies.batch import ObservationBatch
from luanti_tune.serve.act import Rejected, validation_errors
from luanti_tune.serve.wire_columns import ColumnsError, read_columns, rows_to_columns

log = logging.getLogger(__name__)


def parse_rows(body: bytes, is_msgpack: bool, max_agents: int = MAX_AGENTS) -> Any:
    content_type = "application/msgpack" if is_msgpack else "application/json"
    return service(max_agents).parse_rows(body, content_type, False)


def differential(body: bytes, is_msgpack: bool, max_agents: int) -> tuple[bool, bool]:
    """``(pydantic accepts, the service accepts)``, asserting the invariant."""
    ref = pydantic_verdict(body, is_msgpack, max_agents)
    try:
        batch, bad = parse_rows(body, is_msgpack, max_agents)
    except Rejected as exc:
        assert ref is None, f"refused a body pydantic accepts: {body[:400]!r}"
        assert exc.status in (400, 413, 422), exc.status
        if exc.status == 422:  # every offending field named, as pydantic names them
            assert exc.errors and all(e["loc"] and e["msg"] for e in exc.errors)
            model = service(max_agents).request_model
            with pytest.raises(ValidationError) as verr:
                if is_msgpack:
                    model.model_validate(msgpack.unpackb(body, raw=False, strict_map_key=True))
                else:
                    model.model_validate_json(body)
            assert exc.errors == validation_errors(verr.value)
        return False, False
    assert ref is not None, f"accepted a body pydantic refuses: {body[:400]!r}"
    assert not bad and isinstance(batch, ObservationBatch) and len(batch) == len(ref)
    check_batch(batch, ref)
    return True, True


def check_batch(batch: ObservationBatch, ref: list[Any]) -> None:
    """``batch`` holds exactly ``ref``: its rows, and each row rebuilt from its columns."""
    assert list(batch) == ref
    if any(o.tick > TICK_LIMIT for o in ref):  # columns do not hold such ticks: a plain batch
        assert batch.cols is None
        return
    cols = batch.cols
    assert cols is not None
    for i, want in enumerate(ref):
        got = cols.observation(i)
        assert got == want and repr(got) == repr(want), f"row {i}: {got!r} != {want!r}"
    assert batch.agents == [o.agent for o in ref]
    assert batch.kinds == [o.kind for o in ref]
    assert cols.tick.dtype == np.int64 and batch.ticks.tolist() == [o.tick for o in ref]
    np.testing.assert_array_equal(batch.pos, np.array([o.pos.as_tuple() for o in ref]).reshape(len(ref), 3))
    assert cols.entities.offsets.tolist() == np.cumsum([0] + [len(o.entities) for o in ref]).tolist()


def as_columns(tree: Any) -> dict[str, Any] | None:
    """The columnar request of a (possibly mutated) rows tree, when the reference conversion can
    write one (a row without ``agent``, a list for an object ... cannot be written as columns)."""
    try:
        return rows_to_columns(copy.deepcopy(tree["observations"]))
    except Exception:  # noqa: BLE001 - not convertible: nothing to compare
        return None


# ----------------------------------------------------------------------------- valid requests


def test_rich_valid_requests_are_columns_equal_to_pydantic() -> None:
    rng = random.Random(1)
    tree = {"observations": rich_observations(rng)}
    for body, is_msgpack in ((to_json(tree), False), (orjson.dumps(tree), False), (msgpack.packb(tree), True)):
        assert differential(body, is_msgpack, MAX_AGENTS) == (True, True)
        batch, _ = parse_rows(body, is_msgpack)
        assert batch[1].tick == 7 and type(batch[1].tick) is int
        assert batch[2].chat[0].sender == "alice"
        assert batch[4].velocity.x == 0.0 and batch[4].entities == []
    ref = pydantic_verdict(orjson.dumps(tree), False, MAX_AGENTS)
    assert ref is not None
    for packed in (False, True):  # the same observations as columns
        cols = rows_to_columns(orjson.loads(orjson.dumps(tree))["observations"])
        body = msgpack.packb(cols) if packed else orjson.dumps(cols)
        assert list(read_columns(body, msgpack=packed, max_agents=MAX_AGENTS)) == ref


def test_empty_and_limit_sized_requests() -> None:
    one = {"agent": "a", "kind": "npc", "pos": {"x": 0, "y": 0, "z": 0}}
    assert differential(orjson.dumps({"observations": []}), False, MAX_AGENTS) == (True, True)
    full = orjson.dumps({"observations": [one] * MAX_AGENTS})
    assert differential(full, False, MAX_AGENTS) == (True, True)
    over = orjson.dumps({"observations": [one] * (MAX_AGENTS + 1)})
    with pytest.raises(Rejected) as info:
        parse_rows(over, False)
    assert info.value.status == 413
    with pytest.raises(ColumnsError) as cinfo:
        read_columns(orjson.dumps(rows_to_columns([one] * (MAX_AGENTS + 1))), msgpack=False, max_agents=MAX_AGENTS)
    assert cinfo.value.status == 413
    big = dict(one, targets=["t"] * 64, entities=[{"kind": "mob", "rel": one["pos"]}] * 64)
    big["chat"] = [{"from": "a", "message": "m"}] * 16
    big["nearby"] = grid(random.Random(0), 8)
    assert differential(orjson.dumps({"observations": [big]}), False, MAX_AGENTS) == (True, True)


def test_ticks_beyond_the_columns_stay_accepted_as_rows() -> None:
    """A row may carry any non-negative tick; beyond 2**53 - 1 (what columns hold) the batch is
    the typed observations, decided as before."""
    rows = [{"agent": "a", "kind": "npc", "pos": {"x": 0, "y": 0, "z": 0}, "tick": t} for t in (TICK_LIMIT, 2**63)]
    assert differential(orjson.dumps({"observations": rows[:1]}), False, MAX_AGENTS) == (True, True)
    assert differential(orjson.dumps({"observations": rows}), False, MAX_AGENTS) == (True, True)
    huge = b'{"observations":[{"agent":"a","kind":"npc","pos":{"x":0,"y":0,"z":0},"tick":%d}]}' % 2**70
    assert differential(huge, False, MAX_AGENTS) == (True, True)


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
        ("tick", -1),
        ("yaw", "1"),
        ("agent", "a\nb"),
        ("agent", "a b"),
        ("agent", "é"),
        ("agent", "a" * 65),
        ("agent", ""),
        ("kind", "Pursuit"),
        ("velocity", None),
        ("velocity", {"x": 1, "y": 2}),
        ("hp", 1000.0000000000002),
        ("hp", -0.5),
        ("team", ""),
        ("targets", ["a" * 65]),
        ("entities", [{"kind": "ghost", "rel": {"x": 0, "y": 0, "z": 0}}]),
        ("last_result", {"action": "move", "ok": 1}),
    ],
)
def test_refused_naming_the_field(field: str, value: Any) -> None:
    obs = {"agent": "a", "kind": "npc", "pos": {"x": 0, "y": 0, "z": 0}, field: value}
    body = to_json({"observations": [obs]})
    assert differential(body, False, MAX_AGENTS) == (False, False)
    with pytest.raises(Rejected) as info:
        parse_rows(body, False)
    assert info.value.status == 422
    assert any(e["loc"].startswith(f"observations[0].{field}") for e in info.value.errors), info.value.errors


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
    """Integral floats for integers (Lua's write_json): ints in both formats; the rest refused."""
    obs = {"agent": "a", "kind": "npc", "pos": {"x": 0, "y": 0, "z": 0}, "nearby": {"radius": radius, "codes": codes}}
    tree = {"observations": [obs]}
    assert differential(to_json(tree), False, MAX_AGENTS) == (valid, valid)
    packed = to_msgpack(tree)
    if packed is not None:
        assert differential(packed, True, MAX_AGENTS) == (valid, valid)
    cols = as_columns(tree)
    assert cols is not None
    outcome = columns_differential(cols, to_json(cols), False, MAX_AGENTS)
    assert outcome == "both_accept" if valid else outcome in ("both_refuse", "structural")  # 1e999: not JSON to msgspec
    if valid:
        nb = read_columns(to_json(cols), msgpack=False, max_agents=MAX_AGENTS)[0].nearby
        assert nb is not None and type(nb.radius) is int and all(type(c) is int for c in nb.codes)


def test_non_finite_msgpack_floats_refused() -> None:
    for value in (math.nan, math.inf, -math.inf):
        for obs in (
            {"agent": "a", "kind": "npc", "pos": {"x": 0, "y": 0, "z": 0}, "yaw": value},
            {"agent": "a", "kind": "npc", "pos": {"x": value, "y": 0, "z": 0}},
            {"agent": "a", "kind": "npc", "pos": {"x": 0, "y": 0, "z": 0}, "tick": value},
        ):
            tree = {"observations": [obs]}
            assert differential(msgpack.packb(tree), True, MAX_AGENTS) == (False, False)
            cols = as_columns(tree)
            assert cols is not None
            assert columns_differential(cols, msgpack.packb(cols), True, MAX_AGENTS) == "both_refuse"


def test_not_requests() -> None:
    for body in NOT_REQUESTS:
        for is_msgpack in (False, True):
            assert differential(body, is_msgpack, MAX_AGENTS) == (False, False), body
    one = orjson.dumps({"observations": [{"agent": "a", "kind": "npc", "pos": {"x": 0, "y": 0, "z": 0}}]})
    for body in (one + b" x", one[:-1], one.replace(b"[", b"[ ,", 1), b"[" + one + b"]"):
        assert differential(body, False, MAX_AGENTS) == (False, False), body


# ----------------------------------------------------------------------------- what the mod sends


@pytest.mark.parametrize("seed", range(6))
def test_mod_like_requests_equal_pydantic_in_both_formats(seed: int) -> None:
    rng = random.Random(seed)
    rows = [mod_row(rng, i) for i in range(rng.choice((1, 5, 40)))]
    tree = {"observations": rows}
    text = to_json(tree)
    assert differential(text, False, 64) == (True, True)
    assert differential(b"  " + spaced(text) + b"\n", False, 64) == (True, True)  # blanks between tokens
    cols = as_columns(tree)
    assert cols is not None
    for body in (to_json(cols), b" " + spaced(to_json(cols)) + b"\n"):
        assert columns_differential(cols, body, False) == "both_accept"
    ref = pydantic_verdict(text, False, 64)
    assert ref is not None and list(read_columns(to_json(cols), msgpack=False, max_agents=64)) == ref


def _bits(x: float) -> bytes:
    return struct.pack("<d", x)


def test_number_tokens_read_to_the_same_double_in_both_formats() -> None:
    """Every number token the columnar decoder accepts is the double pydantic reads from the same
    token in a rows body (same bits, -0.0 too); a token one refuses, the other refuses."""
    rng = random.Random(7)
    tokens = [str(random_number(rng)) for _ in range(1500)]
    for _ in range(1500):
        x = rng.choice((rng.uniform(-31000, 31000), rng.uniform(-1, 1), rng.uniform(-1e-4, 1e-4)))
        tokens.append(rng.choice(("%.14g", "%.15g", "%.17g", "%r", "%.3f", "%.0f", "%e")) % x)
    tokens += ["0", "-0", "0.0", "-0.0", "0e0", "-0e-5", "1E+2", "5e-324", "1e22", "1e23", "9007199254740993"]
    accepted = 0
    for tok in tokens:
        t = tok.encode()
        rows = b'{"observations":[{"agent":"a","kind":"npc","pos":{"x":0,"y":0,"z":0},"yaw":%s}]}' % t
        cols = b'{"columns":{"agent":["a"],"kind":"npc","pos":{"x":[0],"y":[0],"z":[0]},"yaw":[%s]}}' % t
        ref = pydantic_verdict(rows, False, MAX_AGENTS)
        try:
            got = read_columns(cols, msgpack=False, max_agents=MAX_AGENTS)
        except ColumnsError as exc:
            assert ref is None, (tok, exc.loc, exc.msg)
            assert exc.loc in ("columns.yaw[0]", "body"), (tok, exc.loc)
            continue
        assert ref is not None, tok
        assert _bits(got[0].yaw) == _bits(ref[0].yaw), tok
        accepted += 1
    assert accepted >= 2500, accepted


# ----------------------------------------------------------------------------- mutation fuzz


def test_differential_mutation_fuzz() -> None:
    """Mutated rows requests: the rows path against pydantic, and the same trees written as
    columns through the columnar decoder against pydantic on the rows they stand for."""
    rng = random.Random(20261126)
    pool = rich_observations(rng) + [orjson.loads(to_json(mod_row(rng, i))) for i in range(6)]
    checked = accepted = refused = 0
    outcomes: dict[str, int] = {}
    for _ in range(2400):
        k = rng.randint(1, 4)
        tree: dict[str, Any] = {"observations": copy.deepcopy(rng.sample(pool, k))}
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            mutate(tree, rng)
        max_agents = rng.choice((MAX_AGENTS, MAX_AGENTS, k - 1 if k > 1 else 1, k))
        for body, is_msgpack in bodies(tree, rng):
            valid, _ = differential(body, is_msgpack, max_agents)
            checked += 1
            accepted += valid
            refused += not valid
        cols = as_columns(tree) if isinstance(tree.get("observations"), list) else None
        if cols is not None:
            for body, is_msgpack in ((to_json(cols), False), (to_msgpack(cols), True)):
                if body is not None:
                    outcome = columns_differential(cols, body, is_msgpack, max_agents)
                    outcomes[outcome] = outcomes.get(outcome, 0) + 1
    log.warning("rows fuzz: %d bodies, %d accepted, %d refused; as columns: %s", checked, accepted, refused, outcomes)
    assert checked >= 4000 and refused >= 1500 and accepted >= 500
    assert outcomes.get("both_accept", 0) >= 500 and outcomes.get("both_refuse", 0) >= 500, outcomes


# ----------------------------------------------------------------------------- through an engine


def test_an_engine_decides_rows_and_columns_of_a_stream_alike(tmp_path: Any) -> None:
    """A real pursuit champion decides consecutive ticks of mod-like agents identically from the
    rows body and from the columnar body of the same observations (two engines: the same
    decisions, answers that say the same row by row)."""
    from luanti_tune.bench.act import _champion, _engine
    from luanti_tune.serve.answer import render_columns, render_json

    _champion(tmp_path, 0)
    engines = {"rows": _engine(tmp_path, True), "columns": _engine(tmp_path, True)}
    rng = random.Random(3)
    base = [orjson.loads(to_json(mod_row(rng, i))) for i in range(40)]
    try:
        for tick in range(100, 106):
            obs = [dict(o, tick=tick, kind="pursuit") for o in base]
            svc = service(64)
            rows_batch, _ = svc.parse(orjson.dumps({"observations": obs}), "application/json", False)
            cols_batch, _ = svc.parse(orjson.dumps(rows_to_columns(obs)), "application/json", False)
            assert rows_batch.cols is not None and cols_batch.cols is not None
            got = {name: engines[name].decide(b) for name, b in (("rows", rows_batch), ("columns", cols_batch))}
            assert got["rows"].wire() == got["columns"].wire() and got["rows"].refs == got["columns"].refs
            rows_answer = orjson.loads(render_json(got["rows"], rows_batch))
            cols_answer = render_columns(got["columns"], cols_batch, cols_batch.agents)
            for i, entry in enumerate(rows_answer["actions"]):
                if str(i) in cols_answer["rows"]:
                    assert cols_answer["rows"][str(i)] == entry
                    continue
                assert cols_answer["columns"]["type"][i] == entry["type"]
                if entry["type"] == "move":
                    d = cols_answer["columns"]["dir"]
                    assert [float(d[a][i]) for a in "xyz"] == [entry["args"]["dir"][a] for a in "xyz"]
                    assert float(cols_answer["columns"]["speed"][i]) == entry["args"]["speed"]
    finally:
        for engine in engines.values():
            engine.close()
