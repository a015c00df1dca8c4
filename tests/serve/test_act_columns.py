"""The compact ``columns`` format of ``POST /v1/act`` (serve/wire_columns.py) against the row format.

Invariant under test: a columnar request is exactly the row-format observations of
:func:`columns_to_rows`; :func:`read_columns` accepts it iff pydantic accepts every such row
(columns lining up), and then gives equal observations (same ``repr``). Checked on rich valid
requests (broadcast scalars, integral floats, empty batches), on targeted refusals naming the
column, on a seeded differential mutation fuzz, through ``take``/``concat``, through the pursuit
adapter (columns vs rows vs typed observations) and over a real uvicorn socket (JSON, msgpack,
partial mode, micro-batches that mix both formats).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import msgpack
import numpy as np
import orjson
import pytest
from act_corpus import (
    TICK_LIMIT,
    assert_same,
    columns_differential,
    grid,
    mutate,
    rich_observations,
    to_json,
    to_msgpack,
    vec,
)
from fastapi import FastAPI
from pydantic import ValidationError

from luanti_tune.config.settings import Settings
from luanti_tune.inference.engine import BatchResult, EngineConfig, InferenceEngine
from luanti_tune.inference.source import ModelCandidate, StaticModelSource
from luanti_tune.policies import pursuit as fam
from luanti_tune.policies.batch import ObservationBatch
from luanti_tune.schemas.agent import Observation
from luanti_tune.serve.act import ActService, attach_service, format_loc
from luanti_tune.serve.app import create_app
from luanti_tune.serve.wire_columns import ColumnsError, columns_to_rows, read_columns, rows_to_columns

MAX_AGENTS = 64


def decode(tree: Any, *, packed: bool = False, max_agents: int = MAX_AGENTS) -> ObservationBatch:
    body = msgpack.packb(tree) if packed else orjson.dumps(tree)
    return read_columns(body, msgpack=packed, max_agents=max_agents)


def rows_of(rows: list[dict[str, Any]]) -> ObservationBatch:
    """The batch the service makes of a rows request (pydantic, then columns)."""
    batch, bad = ActService(Settings(act_max_agents=MAX_AGENTS), None).parse(
        orjson.dumps({"observations": rows}), "application/json", False
    )
    assert not bad and isinstance(batch, ObservationBatch)
    return batch


def typed(rows: list[dict[str, Any]]) -> list[Observation]:
    return [Observation.model_validate(r) for r in rows]


def assert_equivalent(tree: dict[str, Any], want: list[Observation]) -> None:
    """JSON, msgpack and the row reference of ``tree`` all give ``want``."""
    for packed in (False, True):
        batch = decode(tree, packed=packed)
        assert batch.cols is not None and len(batch.cols) == len(want)
        assert_same(batch, want)
        assert batch.agents == [o.agent for o in want]
        assert batch.ticks.tolist() == [o.tick for o in want]
        assert batch.kinds == [o.kind for o in want]
    assert_same(typed(columns_to_rows(copy.deepcopy(tree["columns"]))), want)


# ----------------------------------------------------------------------------- random valid rows

NAMES = ["alice", "bob", "carol", "dave", "eve"]


def pursuit_row(rng: random.Random, agent: str, tick: int) -> dict[str, Any]:
    """A pursuit observation: any number of entities (players, mobs, named or not, with/without velocity)."""
    style = rng.randrange(6)
    ents: list[dict[str, Any]] = []
    targets: list[str] = []
    if style == 1:  # mobs and items only: no target
        ents = [{"kind": rng.choice(["mob", "item"]), "rel": vec(rng, 5)} for _ in range(rng.randint(1, 3))]
    elif style >= 2:
        for _ in range(rng.randint(1, 5)):
            e: dict[str, Any] = {"kind": rng.choice(["player", "player", "agent", "mob"]), "rel": vec(rng, 12)}
            if rng.random() < 0.7:
                e["name"] = rng.choice(NAMES)
            if rng.random() < 0.6:
                e["velocity"] = vec(rng, 3)
            elif rng.random() < 0.3:
                e["velocity"] = None
            if rng.random() < 0.2:
                e["hp"] = rng.choice([None, 3.5, 20])
            if rng.random() < 0.1:
                e["team"] = rng.choice(["red", "blue"])
            ents.append(e)
        if style >= 4:
            targets = rng.sample(NAMES, rng.randint(1, 3))
    row: dict[str, Any] = {"agent": agent, "kind": "pursuit", "tick": tick, "pos": vec(rng), "entities": ents}
    if targets or rng.random() < 0.5:
        row["targets"] = targets
    if rng.random() < 0.5:
        row["velocity"] = vec(rng, 2)
    return row


def random_rows(rng: random.Random, n: int) -> list[dict[str, Any]]:
    """``n`` rows mixing rich_observations' shapes (every optional field) with pursuit rows."""
    pool = rich_observations(rng)
    out = []
    for i in range(n):
        if rng.random() < 0.4:
            row = copy.deepcopy(rng.choice(pool))
            row["agent"] = f"{row['agent']}-{i}"
        else:
            row = pursuit_row(rng, f"p-{i}", rng.randrange(1000))
        out.append(row)
    return out


# ----------------------------------------------------------------------------- 1. equivalence


def test_random_valid_rows_decode_equal_to_pydantic() -> None:
    rng = random.Random(7)
    cases = [rich_observations(rng), [], *[random_rows(rng, rng.randint(1, 12)) for _ in range(60)]]
    for rows in cases:
        want = typed(rows)
        tree = rows_to_columns(rows)
        assert_equivalent(tree, want)
        # text-level JSON (stdlib writer) too
        batch = read_columns(to_json(tree), msgpack=False, max_agents=MAX_AGENTS)
        assert_same(batch, want)


def test_broadcast_scalars_integral_floats_and_sparse_columns() -> None:
    """Scalar ``kind``/``tick``/entity ``kind``, integral floats, zero-entity rows, null velocities."""
    tree = {
        "columns": {
            "agent": ["a", "b", "c"],
            "kind": "pursuit",
            "tick": 42.0,
            "pos": {"x": [0, 1.5, -31000], "y": [8, 8.0, 31000.0], "z": [0, -0.0, 2]},
            "hp": [20, 0.0, 1000],
            "inventory": [{"default:dirt": 3.0}, {}, {"default:torch": 64}],
            "nearby": [{"radius": 1.0, "codes": [1.0] * 26 + [2]}, None, {"radius": 1, "codes": [0] * 27}],
            "entities": {
                "count": [2.0, 0, 1],
                "kind": "player",
                "rel": {"x": [3, -2, 1], "y": [0, 0, 0], "z": [-2, 4.0, 7]},
                "name": ["alice", None, "bob"],
                "velocity": {"x": [4, None, 0], "y": [0, None, 0], "z": [0, None, 1.0]},
            },
        }
    }
    rows = [
        {
            "agent": "a",
            "kind": "pursuit",
            "tick": 42,
            "pos": {"x": 0, "y": 8, "z": 0},
            "hp": 20,
            "inventory": {"default:dirt": 3},
            "nearby": {"radius": 1, "codes": [1] * 26 + [2]},
            "entities": [
                {
                    "kind": "player",
                    "name": "alice",
                    "rel": {"x": 3, "y": 0, "z": -2},
                    "velocity": {"x": 4, "y": 0, "z": 0},
                },
                {"kind": "player", "rel": {"x": -2, "y": 0, "z": 4}},
            ],
        },
        {"agent": "b", "kind": "pursuit", "tick": 42, "pos": {"x": 1.5, "y": 8, "z": -0.0}, "hp": 0},
        {
            "agent": "c",
            "kind": "pursuit",
            "tick": 42,
            "pos": {"x": -31000, "y": 31000, "z": 2},
            "hp": 1000,
            "inventory": {"default:torch": 64},
            "nearby": {"radius": 1, "codes": [0] * 27},
            "entities": [
                {"kind": "player", "name": "bob", "rel": {"x": 1, "y": 0, "z": 7}, "velocity": {"x": 0, "y": 0, "z": 1}}
            ],
        },
    ]
    want = typed(rows)
    assert_equivalent(tree, want)
    got = decode(tree)
    assert got[1].entities == [] and got[0].entities[1].velocity is None and got[0].entities[1].name is None
    assert type(got[0].tick) is int and type(got[0].inventory["default:dirt"]) is int
    assert got[1].pos.z == 0.0 and math.copysign(1.0, got[1].pos.z) == -1.0  # the sign survives
    assert got[0].nearby is not None and all(type(c) is int for c in got[0].nearby.codes)
    # the columns themselves, as the adapters read them
    cols = got.cols
    assert cols is not None
    assert cols.entities.offsets.tolist() == [0, 2, 2, 3]
    assert cols.entities.has_velocity.tolist() == [True, False, True]
    assert cols.tick.dtype == np.int64 and cols.tick.tolist() == [42, 42, 42]


def test_minimal_and_empty_requests() -> None:
    empty = {"columns": {"agent": [], "kind": [], "pos": {"x": [], "y": [], "z": []}}}
    assert_equivalent(empty, [])
    assert_equivalent({"columns": {**empty["columns"], "kind": "npc", "tick": 3}}, [])
    ents = {"count": [], "kind": [], "rel": {"x": [], "y": [], "z": []}}
    assert_equivalent({"columns": {**empty["columns"], "entities": ents}}, [])
    one = {"columns": {"agent": ["x"], "kind": ["npc"], "pos": {"x": [1], "y": [2], "z": [3]}}}
    assert_equivalent(one, typed([{"agent": "x", "kind": "npc", "pos": {"x": 1, "y": 2, "z": 3}}]))
    zero = {
        "columns": {**one["columns"], "entities": {"count": [0], "kind": "mob", "rel": {"x": [], "y": [], "z": []}}}
    }
    assert_equivalent(zero, typed([{"agent": "x", "kind": "npc", "pos": {"x": 1, "y": 2, "z": 3}}]))
    at_limit = {"columns": {"agent": ["x"], "kind": "npc", "tick": TICK_LIMIT, "pos": one["columns"]["pos"]}}
    assert decode(at_limit)[0].tick == TICK_LIMIT


# ----------------------------------------------------------------------------- 2. refusals


def base_tree() -> dict[str, Any]:
    """A valid columnar request: 3 rows, entities counts [2, 1, 0], every optional column."""
    rng = random.Random(3)
    rows = [
        {
            "agent": "r0",
            "kind": "pursuit",
            "tick": 10,
            "pos": vec(rng),
            "entities": [
                {"kind": "player", "name": "alice", "rel": vec(rng, 5), "velocity": vec(rng, 2), "hp": 5},
                {"kind": "mob", "name": "zombie", "rel": vec(rng, 5), "velocity": vec(rng, 2), "team": "red"},
            ],
            "targets": ["alice", "bob"],
            "chat": [{"from": "alice", "message": "hi"}],
            "inventory": {"default:dirt": 2},
        },
        {
            "agent": "r1",
            "kind": "navigation",
            "tick": 11,
            "pos": vec(rng),
            "entities": [{"kind": "player", "name": "bob", "rel": vec(rng, 5), "velocity": vec(rng, 2)}],
            "nearby": grid(rng, 1),
            "goal": vec(rng),
            "team": "blue",
            "last_result": {"action": "move", "ok": True},
        },
        {"agent": "r2", "kind": "npc", "tick": 12, "pos": vec(rng), "yaw": 1.0, "hp": 7, "velocity": vec(rng, 1)},
    ]
    tree = rows_to_columns(rows)
    assert_same(decode(tree), typed(rows))
    return tree


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation setting ``columns.<path>`` (dots and ``[i]`` indices) to ``value``."""

    def apply(tree: dict[str, Any]) -> None:
        node: Any = tree["columns"]
        parts = path.replace("[", ".").replace("]", "").split(".")
        for p in parts[:-1]:
            node = node[int(p)] if p.isdigit() else node[p]
        last = parts[-1]
        if last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value

    return apply


def _del(path: str) -> Callable[[dict[str, Any]], None]:
    def apply(tree: dict[str, Any]) -> None:
        node: Any = tree["columns"]
        parts = path.split(".")
        for p in parts[:-1]:
            node = node[p]
        del node[parts[-1]]

    return apply


def _pop(path: str) -> Callable[[dict[str, Any]], None]:
    def apply(tree: dict[str, Any]) -> None:
        node: Any = tree["columns"]
        for p in path.split("."):
            node = node[int(p)] if p.isdigit() else node[p]
        node.pop()

    return apply


# (mutation, loc the columns error starts with, msgpack only, (row, pydantic loc) or None when structural)
REFUSALS: list[tuple[str, Callable[[dict[str, Any]], None], str, bool, tuple[int, str] | None]] = [
    ("string for a number", _set("pos.x[1]", "12"), "columns.pos.x[1]", False, (1, "pos.x")),
    ("NaN", _set("pos.y[2]", math.nan), "columns.pos.y[2]", True, (2, "pos.y")),
    ("inf", _set("yaw[0]", math.inf), "columns.yaw[0]", True, (0, "yaw")),
    (
        "-inf entity rel",
        _set("entities.rel.z[2]", -math.inf),
        "columns.entities.rel.z[2]",
        True,
        (1, "entities[0].rel.z"),
    ),
    ("pos beyond the map", _set("pos.z[0]", 31000.5), "columns.pos.z[0]", False, (0, "pos.z")),
    ("velocity beyond the map", _set("velocity.x[2]", -31001), "columns.velocity.x[2]", False, (2, "velocity.x")),
    ("hp above 1000", _set("hp[2]", 1000.5), "columns.hp[2]", False, (2, "hp")),
    ("negative hp", _set("hp[0]", -1), "columns.hp[0]", False, (0, "hp")),
    ("bad agent name", _set("agent[1]", "bad name"), "columns.agent[1]", False, (1, "agent")),
    ("empty agent name", _set("agent[2]", ""), "columns.agent[2]", False, (2, "agent")),
    ("long agent name", _set("agent[0]", "a" * 65), "columns.agent[0]", False, (0, "agent")),
    ("bad target name", _set("targets[0][1]", "b\nob"), "columns.targets[0][1]", False, (0, "targets[1]")),
    (
        "bad entity name",
        _set("entities.name[1]", "zom bie"),
        "columns.entities.name[1]",
        False,
        (0, "entities[1].name"),
    ),
    ("bad entity team", _set("entities.team[1]", "ü"), "columns.entities.team[1]", False, (0, "entities[1].team")),
    ("bad row team", _set("team[1]", "a b"), "columns.team[1]", False, (1, "team")),
    ("bad chat sender", _set("chat[0][0].from", "al ice"), "columns.chat[0][0].from", False, (0, "chat[0].from")),
    (
        "long chat message",
        _set("chat[0][0].message", "m" * 513),
        "columns.chat[0][0].message",
        False,
        (0, "chat[0].message"),
    ),
    ("fractional tick", _set("tick[1]", 4.5), "columns.tick[1]", False, (1, "tick")),
    ("negative tick", _set("tick[0]", -1), "columns.tick[0]", False, (0, "tick")),
    ("boolean tick", _set("tick[2]", True), "columns.tick", False, (2, "tick")),
    ("fractional scalar tick", _set("tick", 0.5), "columns.tick", False, (-1, "tick")),
    ("unknown kind", _set("kind[2]", "dragon"), "columns.kind", False, (2, "kind")),
    (
        "unknown entity kind",
        _set("entities.kind[2]", "dragon"),
        "columns.entities.kind",
        False,
        (1, "entities[0].kind"),
    ),
    (
        "negative count",
        _set("inventory[0].default:dirt", -1),
        "columns.inventory[0]",
        False,
        (0, "inventory.default:dirt"),
    ),
    (
        "fractional count",
        _set("inventory[0].default:dirt", 2.5),
        "columns.inventory[0]",
        False,
        (0, "inventory.default:dirt"),
    ),
    ("long item name", _set("inventory[0]", {"i" * 129: 1}), "columns.inventory[0]", False, (0, "inventory.iii")),
    ("nearby codes of the wrong size", _pop("nearby.1.codes"), "columns.nearby[1]", False, (1, "nearby")),
    (
        "nearby code out of range",
        _set("nearby[1].codes[3]", 99),
        "columns.nearby[1].codes[3]",
        False,
        (1, "nearby.codes[3]"),
    ),
    (
        "fractional nearby radius",
        _set("nearby[1].radius", 1.5),
        "columns.nearby[1].radius",
        False,
        (1, "nearby.radius"),
    ),
    (
        "half-null entity velocity",
        _set("entities.velocity.y[0]", None),
        "columns.entities.velocity[0]",
        False,
        (0, "entities[0].velocity.y"),
    ),
    ("null pos", _set("pos.x[0]", None), "columns.pos.x[0]", False, (0, "pos.x")),
    ("null target list", _set("targets[2]", None), "columns.targets[2]", False, (2, "targets")),
    (
        "bad last_result",
        _set("last_result[1]", {"action": "move", "ok": "yes"}),
        "columns.last_result[1].ok",
        False,
        (1, "last_result.ok"),
    ),
    ("unknown goal field", _set("goal[1]", {"x": 1, "y": 2, "z": 3, "w": 4}), "columns.goal[1]", False, (1, "goal.w")),
    # structural: the columns do not line up (no row-by-row reading)
    ("unknown column", _set("surprise", [1, 2, 3]), "columns.surprise", False, (-1, "surprise")),
    ("missing column", _del("pos"), "columns.pos", False, (-1, "pos")),
    ("short column", _pop("yaw"), "columns.yaw", False, None),
    ("short axis", _pop("pos.y"), "columns.pos.y", False, None),
    ("long list column", _set("goal", [None, None, None, None]), "columns.goal", False, None),
    ("kind list of another length", _set("kind", ["npc"]), "columns.kind", False, None),
    ("counts not matching the entities", _set("entities.count", [2, 1, 1]), "columns.entities", False, None),
    ("short entity column", _pop("entities.name"), "columns.entities.name", False, None),
    ("short entity axis", _pop("entities.velocity.x"), "columns.entities.velocity.x", False, None),
    ("negative entity count", _set("entities.count", [2, 2, -1]), "columns.entities.count", False, None),
    ("fractional entity count", _set("entities.count", [1.5, 1.5, 0]), "columns.entities.count", False, None),
    ("axis not a list", _set("pos.x", 1), "columns.pos.x", False, None),
]


@pytest.mark.parametrize(("what", "change", "loc", "packed", "row"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusal_names_the_column_like_pydantic(
    what: str, change: Callable[[dict[str, Any]], None], loc: str, packed: bool, row: tuple[int, str] | None
) -> None:
    tree = base_tree()
    change(tree)
    with pytest.raises(ColumnsError) as info:
        decode(tree, packed=packed)
    err = info.value
    assert err.loc.startswith(loc), f"{what}: {err.loc!r}: {err.msg}"
    assert err.status == 422
    if row is None:  # structural: cannot be read row by row
        assert err.structural or _rows_or_none(tree) is None, what
        return
    i, field = row  # i = -1: a broadcast value, every row
    rows = columns_to_rows(copy.deepcopy(tree["columns"]))
    for j, r in enumerate(rows):
        if i not in (j, -1):
            Observation.model_validate(r)  # the other rows are untouched and valid
            continue
        with pytest.raises(ValidationError) as ref:
            Observation.model_validate(r)
        assert any(format_loc(e["loc"]).startswith(field) for e in ref.value.errors()), ref.value


def _rows_or_none(tree: dict[str, Any]) -> list[dict[str, Any]] | None:
    try:
        return columns_to_rows(copy.deepcopy(tree["columns"]))
    except ColumnsError:
        return None


def test_too_many_agents_is_413_and_ticks_beyond_2_53_are_refused() -> None:
    tree = rows_to_columns(random_rows(random.Random(5), 9))
    assert len(decode(tree, max_agents=9)) == 9
    with pytest.raises(ColumnsError) as info:
        decode(tree, max_agents=8)
    assert info.value.status == 413 and info.value.loc == "columns.agent"
    # the documented exception: a row tick above 2**53 - 1 is valid JSON-row input, not columnar
    big = base_tree()
    big["columns"]["tick"] = [TICK_LIMIT + 1, 0, 0]
    with pytest.raises(ColumnsError) as info:
        decode(big)
    assert info.value.loc.startswith("columns.tick")
    assert Observation.model_validate(columns_to_rows(big["columns"])[0]).tick == TICK_LIMIT + 1


# ----------------------------------------------------------------------------- 2b. differential fuzz


def test_differential_mutation_fuzz() -> None:
    rng = random.Random(20261126)
    counts = {"both_accept": 0, "both_refuse": 0, "structural": 0, "big_tick": 0, "no_entities": 0}
    for _ in range(1500):
        rows = random_rows(rng, rng.randint(1, 5))
        tree = rows_to_columns(rows)
        cols = tree["columns"]
        for col in (cols, cols.get("entities") or {}):  # broadcast and list forms both get mutated
            if type(col.get("kind")) is str and rng.random() < 0.5:
                col["kind"] = [col["kind"]] * len(col.get("agent", col.get("count", ())))
        if type(cols["tick"]) is not list and rng.random() < 0.5:
            cols["tick"] = [cols["tick"]] * len(cols["agent"])
        for _ in range(rng.choice((1, 1, 2))):
            mutate(tree, rng)
        encodings = [(to_json(tree), False)]
        packed = to_msgpack(tree)
        if packed is not None:
            encodings.append((packed, True))
        for body, is_packed in encodings:
            counts[columns_differential(tree, body, is_packed, MAX_AGENTS)] += 1
    logging.getLogger(__name__).warning("columns fuzz: %s", counts)
    assert counts["both_accept"] >= 200 and counts["both_refuse"] >= 600 and counts["structural"] >= 100, counts


# ----------------------------------------------------------------------------- 3. take / concat


def _check_entity_offsets(batch: ObservationBatch, want: list[Observation]) -> None:
    cols = batch.cols
    assert cols is not None
    counts = [len(o.entities) for o in want]
    assert cols.entities.offsets.tolist() == np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).tolist()
    assert len(cols.entities.kind) == len(cols.entities.name) == len(cols.entities.rel) == sum(counts)
    assert cols.tick.tolist() == [o.tick for o in want]
    np.testing.assert_array_equal(cols.pos, np.array([o.pos.as_tuple() for o in want]).reshape(len(want), 3))


def test_take_and_concat_equal_the_same_on_typed_observations() -> None:
    rng = random.Random(11)
    for _ in range(25):
        rows = random_rows(rng, rng.randint(1, 9))
        want = typed(rows)
        batch = decode(rows_to_columns(rows))
        n = len(want)
        orders = [
            [],
            list(range(n))[::-1],
            [rng.randrange(n) for _ in range(rng.randint(1, 2 * n))],  # repeats
            rng.sample(range(n), n),
        ]
        for idx in orders:
            part = batch.take(idx)
            expect = [want[i] for i in idx]
            assert part.cols is not None
            assert_same(part, expect)
            _check_entity_offsets(part, expect)
            assert part.agents == [o.agent for o in expect]
            assert part.take(list(range(len(idx)))[::-1]).agents == [o.agent for o in expect[::-1]]
        assert_same(batch[1:], want[1:])  # slices take too

    # concat: batches with different optional columns present (missing ones -> row defaults)
    groups = [random_rows(rng, k) for k in (3, 1, 4)]
    groups.append([{"agent": "plain", "kind": "npc", "pos": {"x": 1, "y": 2, "z": 3}}])  # no optional column
    groups.append([])
    batches = [decode(rows_to_columns(g)) for g in groups]
    want = [o for g in groups for o in typed(g)]
    merged = ObservationBatch.concat(batches)
    assert merged.cols is not None
    assert_same(merged, want)
    _check_entity_offsets(merged, want)
    # concat of taken parts (the batcher splits and merges): still the same rows
    again = ObservationBatch.concat([merged.take([4, 0]), merged.take([]), merged.take([8, 8, 2])])
    assert_same(again, [want[i] for i in (4, 0, 8, 8, 2)])
    _check_entity_offsets(again, [want[i] for i in (4, 0, 8, 8, 2)])
    # mixed with a rows batch (pydantic, then columns) and a typed batch: the same observations
    rows_batch = rows_of(groups[0])
    mixed = ObservationBatch.concat([batches[2], rows_batch, ObservationBatch(typed(groups[1]))])
    assert_same(mixed, typed(groups[2]) + typed(groups[0]) + typed(groups[1]))


# ----------------------------------------------------------------------------- 4. pursuit adapter


def pursuit_steps(seed: int, steps: int = 8, agents: int = 24) -> list[list[dict[str, Any]]]:
    """Consecutive ticks of the same agents (some absent at times), every kind of view."""
    rng = random.Random(seed)
    ticks = {f"e{i}": rng.randrange(100) for i in range(agents)}
    out = []
    for _ in range(steps):
        rows = []
        for a in ticks:
            if rng.random() < 0.15:
                continue
            ticks[a] += rng.choice((1, 1, 1, 2, 0))
            rows.append(pursuit_row(rng, a, ticks[a]))
        if rng.random() < 0.5:  # the common case: one player in view for every agent
            rows_one = [dict(r, entities=[{"kind": "player", "name": "alice", "rel": vec(rng, 9)}]) for r in rows]
            rows = rows_one if rng.random() < 0.5 else rows
        rng.shuffle(rows)
        out.append(rows)
    return out


def _outputs(n: int, adapter: fam.PursuitAdapter, seed: int) -> dict[str, np.ndarray]:
    g = np.random.default_rng(seed)
    return {
        "mean": g.normal(0, 3, (n, len(adapter.horizons), 2)).astype(np.float32),
        "log_std": g.normal(0, 1, (n, len(adapter.horizons))).astype(np.float32),
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pursuit_adapter_columns_equal_rows_and_typed(seed: int) -> None:
    paths = ("columns", "rows", "typed")
    adapters = {p: fam.PursuitAdapter() for p in paths}
    memories: dict[str, dict[str, Any]] = {p: {} for p in paths}
    kinds_seen: set[str] = set()
    for step, rows in enumerate(pursuit_steps(seed)):
        rows_batch = rows_of(rows)
        assert rows_batch.cols is not None
        inputs: dict[str, Any] = {
            "columns": decode(rows_to_columns(rows), packed=step % 2 == 1),
            "rows": rows_batch,
            "typed": typed(rows),
        }
        assert inputs["columns"].cols is not None
        feats = {p: adapters[p].featurize(inputs[p], memories[p]) for p in paths}
        for p in ("rows", "typed"):
            for k, v in feats["columns"].items():
                assert v.dtype == feats[p][k].dtype and np.array_equal(v, feats[p][k]), f"{k} ({p}) at step {step}"
        outputs = _outputs(len(rows), adapters["columns"], seed * 100 + step)
        dec = {p: adapters[p].decode_columns(inputs[p], outputs) for p in paths}
        # decode without a preceding featurize (no cached targets): the same again
        fresh = fam.PursuitAdapter().decode_columns(inputs["columns"], outputs)
        for p, d in [*dec.items(), ("fresh", fresh)]:
            for attr in ("move", "dir", "speed", "confidence"):
                assert np.array_equal(getattr(d, attr), getattr(dec["typed"], attr)), f"{attr} ({p}) at step {step}"
            assert list(d.agents) == [r["agent"] for r in rows]
            assert d.wire() == dec["typed"].wire()
        for p in ("columns", "rows"):
            assert set(memories[p]) == set(memories["typed"])
            for agent in memories["typed"]:
                assert adapters[p].tracks_of(memories[p], agent) == adapters["typed"].tracks_of(
                    memories["typed"], agent
                )
        views = {len(r["entities"]) for r in rows}
        kinds_seen |= {"none" if v == 0 else "one" if v == 1 else "many" for v in views}
        # the decisions use the model: some agents move, some (no target) wait
        assert dec["columns"].move.any()
    assert kinds_seen == {"none", "one", "many"}


# ----------------------------------------------------------------------------- 5. HTTP (real uvicorn)


def pursuit_engine() -> InferenceEngine:
    arch = fam.architecture()
    cand = ModelCandidate(
        family="pursuit", name="pursuit-cols", version="v1", module=fam.build_module(arch), adapter=fam.PursuitAdapter()
    )
    return InferenceEngine(StaticModelSource([cand]), config=EngineConfig(), fallbacks={})


@pytest.fixture(scope="module")
def engine() -> InferenceEngine:
    return pursuit_engine()


def make_app(engine: InferenceEngine, **settings: Any) -> FastAPI:
    app = create_app(Settings(**settings))
    attach_service(app, ActService(app.state.luanti.settings, app.state.luanti.store, engine=engine))
    return app


def http_rows(seed: int, n: int, prefix: str) -> list[dict[str, Any]]:
    """Pursuit rows of every view, plus a row of a kind without a model (a scripted fallback)."""
    rng = random.Random(seed)
    rows = [pursuit_row(rng, f"{prefix}-{i}", rng.randrange(1000)) for i in range(n)]
    rows[n // 2] = dict(rows[n // 2], kind="team")
    return rows


def renamed(rows: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """The same observations for fresh agents (no memory shared with the first ones)."""
    return [dict(r, agent=f"{prefix}-{i}") for i, r in enumerate(rows)]


def row_answers(body: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(a.get("type"), a.get("args"), a.get("model"), a.get("fallback")) for a in body["actions"]]


def column_answers(body: dict[str, Any]) -> list[tuple[Any, ...]]:
    """A columnar answer spelled out row by row, as the row format answers."""
    cols, extra = body["columns"], body["rows"]
    n = len(cols["agent"])
    assert len(cols["type"]) == n and len(cols["speed"]) == n and all(len(cols["dir"][a]) == n for a in "xyz")
    out: list[tuple[Any, ...]] = []
    for i in range(n):
        e = extra.get(str(i))
        if e is not None:
            assert cols["type"][i] == e.get("type", "error") and e["agent"] == cols["agent"][i]
            out.append((e.get("type"), e.get("args"), e.get("model"), e.get("fallback")))
            continue
        t = cols["type"][i]
        assert t in ("move", "wait")
        if t == "wait":
            out.append(("wait", {"ticks": 1}, None, None))
        else:
            d = {a: cols["dir"][a][i] for a in "xyz"}
            out.append(("move", {"dir": d, "speed": cols["speed"][i]}, None, None))
    return out


def test_http_columnar_answers_equal_row_answers(serve: Any, engine: InferenceEngine) -> None:
    srv = serve(make_app(engine))
    url = f"{srv.url}/v1/act"
    rows = http_rows(1, 40, "h")
    with httpx.Client(timeout=30) as http:
        ref = http.post(url, json={"observations": renamed(rows, "row")})
        assert ref.status_code == 200, ref.text
        want = row_answers(ref.json())
        assert {w[0] for w in want} == {"move", "wait"} and any(w[3] for w in want)  # model moves, waits, a fallback

        r = http.post(
            url,
            content=orjson.dumps(rows_to_columns(renamed(rows, "col"))),
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == ref.json()["model"] == {"name": "pursuit-cols", "version": "v1"}
        assert body["columns"]["agent"] == [f"col-{i}" for i in range(len(rows))]
        assert column_answers(body) == want
        assert list(body["rows"]) == [str(len(rows) // 2)]  # only the fallback row is given whole

        packed = msgpack.packb(rows_to_columns(renamed(rows, "pk")))
        r = http.post(
            url, content=packed, headers={"content-type": "application/msgpack", "accept": "application/msgpack"}
        )
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/msgpack")
        body = msgpack.unpackb(r.content)
        assert body["columns"]["agent"] == [f"pk-{i}" for i in range(len(rows))]
        assert column_answers(body) == want

        # the same agents again, one tick later: their memory (tracks) is used the same way in both formats
        later = [dict(r, tick=r["tick"] + 1) for r in rows]
        a = http.post(url, json={"observations": renamed(later, "row")}).json()
        b = http.post(
            url,
            content=orjson.dumps(rows_to_columns(renamed(later, "col"))),
            headers={"content-type": "application/json"},
        ).json()
        assert column_answers(b) == row_answers(a)


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        (_set("pos.x[3]", "12"), "columns.pos.x[3]"),
        (_set("entities.rel.z[0]", 1e9), "columns.entities.rel.z[0]"),
        (_set("agent[5]", "no way"), "columns.agent[5]"),
        (_set("surprise", 1), "columns.surprise"),
        (_pop("pos.y"), "columns.pos.y"),
    ],
)
def test_http_bad_columnar_request_is_422_naming_the_column(
    serve: Any, engine: InferenceEngine, change: Any, loc: str
) -> None:
    srv = serve(make_app(engine))
    tree = rows_to_columns(http_rows(2, 8, "bad"))
    change(tree)
    before = dict(engine.stats)
    r = httpx.post(f"{srv.url}/v1/act", content=orjson.dumps(tree), headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"] == loc
    assert (
        engine.stats["agents"] == before["agents"] and engine.stats["batches"] == before["batches"]
    )  # nothing decided


def test_http_limits_and_partial_mode(serve: Any, engine: InferenceEngine) -> None:
    srv = serve(make_app(engine, act_max_agents=10))
    url = f"{srv.url}/v1/act"
    json_type = {"content-type": "application/json"}
    before = engine.stats["agents"]
    with httpx.Client(timeout=30) as http:
        for query in ("", "?partial=1"):
            r = http.post(
                url + query, content=orjson.dumps(rows_to_columns(http_rows(3, 11, "many"))), headers=json_type
            )
            assert r.status_code == 413 and "10" in r.json()["error"], r.text
        assert engine.stats["agents"] == before

        rows = http_rows(4, 10, "part")
        tree = rows_to_columns(rows)
        tree["columns"]["hp"] = [20] * 10
        tree["columns"]["hp"][2] = -5
        tree["columns"]["pos"]["y"][7] = 31001
        r = http.post(url, content=orjson.dumps(tree), headers=json_type)
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == "columns.pos.y[7]"  # the first one
        assert engine.stats["agents"] == before
        r = http.post(url + "?partial=1", content=orjson.dumps(tree), headers=json_type)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["columns"]["type"][2] == body["columns"]["type"][7] == "error"
        assert body["rows"]["2"]["error"]["loc"] == "observations[2].hp"
        assert body["columns"]["agent"] == [f"part-{i}" for i in range(10)]  # the bad rows named as sent
        assert body["rows"]["2"]["agent"] == "part-2" and "agent" not in body["rows"]["2"]["error"]
        assert body["rows"]["7"]["error"]["loc"] == "observations[7].pos.y"
        assert engine.stats["agents"] == before + 8  # only the valid rows were decided
        # the valid rows answered as a strict request of them alone (fresh agents: no memory)
        good = [dict(row, hp=20) for i, row in enumerate(rows) if i not in (2, 7)]
        ref = http.post(url, json={"observations": renamed(good, "again")}).json()
        got = [a for i, a in enumerate(column_answers(body)) if i not in (2, 7)]
        assert got == row_answers(ref)

        # a structurally broken request is refused whole, partial or not
        tree["columns"]["yaw"] = [0.0] * 9
        r = http.post(url + "?partial=1", content=orjson.dumps(tree), headers=json_type)
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == "columns.yaw"
        extra = {**rows_to_columns(rows), "extra": 1}
        r = http.post(url + "?partial=1", content=orjson.dumps(extra), headers=json_type)
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == "extra"
        r = http.post(
            url + "?partial=1", content=b'{"columns": {"agent": ["a"], "kind": "npc", "pos": 1', headers=json_type
        )
        assert r.status_code in (400, 422)
        # entity counts nobody could send the entities of: refused before building any row
        huge = rows_to_columns(rows)
        huge["columns"]["entities"]["count"][0] = 10**5  # (10**18 was one dict per entity: out of memory)
        r = http.post(url + "?partial=1", content=orjson.dumps(huge), headers=json_type)
        assert r.status_code == 422 and r.json()["errors"][0]["loc"].startswith("columns.entities.count")
        # an invalid value, then malformed JSON: 422 naming the body (was an unhandled DecodeError: 500)
        bad = b'{"columns": {"agent": ["a"], "kind": "npc", "pos": {"x": ["1"], "y": [0], "z": [0]}, "yaw": [NaN]}}'
        for query in ("", "?partial=1"):
            r = http.post(url + query, content=bad, headers=json_type)
            assert r.status_code == 422 and r.json()["errors"][0]["loc"] == "body", r.text
        assert engine.stats["agents"] == before + 8 + 8


# ----------------------------------------------------------------------------- 6. micro-batching


def test_columnar_and_row_requests_merged_into_one_batch(serve: Any) -> None:
    engine = pursuit_engine()
    calls: list[tuple[int, set[str]]] = []
    inner = engine.decide

    def slow(observations: Any) -> BatchResult:
        time.sleep(0.05 if calls else 0.2)  # a busy engine: the other clients' requests queue up meanwhile
        calls.append((len(observations), {a.split("-")[0] for a in ObservationBatch.of(observations).agents}))
        return inner(observations)

    engine.decide = slow  # type: ignore[method-assign]
    app = make_app(engine)
    service = app.state.luanti.components["act"]
    srv = serve(app)
    url = f"{srv.url}/v1/act"
    answers: dict[int, tuple[list[dict[str, Any]], list[tuple[Any, ...]]]] = {}

    def client(cid: int) -> None:
        rows = http_rows(100 + cid, 5 + cid, f"{'col' if cid % 2 else 'row'}{cid}")
        with httpx.Client(timeout=30) as http:
            if cid % 2:
                r = http.post(
                    url, content=orjson.dumps(rows_to_columns(rows)), headers={"content-type": "application/json"}
                )
                answers[cid] = (rows, column_answers(r.json()))
            else:
                answers[cid] = (rows, row_answers(http.post(url, json={"observations": rows}).json()))

    threads = [threading.Thread(target=client, args=(c,)) for c in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(answers) == list(range(8))
    kinds_of = [{p.rstrip("0123456789") for p in prefixes} for _, prefixes in calls]
    assert any(k == {"col", "row"} for k in kinds_of), calls  # a batch decided both formats together
    assert len(calls) < 8 and service.batcher.merged_requests >= 2
    # each request got its own agents' answers: as a lone request of fresh agents gets them
    with httpx.Client(timeout=30) as http:
        for cid, (rows, got) in answers.items():
            ref = http.post(url, json={"observations": renamed(rows, f"solo{cid}")}).json()
            assert got == row_answers(ref), cid


# ----------------------------------------------------------------------------- hostile bodies


def _valid_tree(n: int) -> dict[str, Any]:
    return rows_to_columns(http_rows(5, n, "hostile"))


def test_hostile_columnar_bodies_are_refused_without_building_them(serve: Any, engine: InferenceEngine) -> None:
    """Bodies that used to cost gigabytes, or a 500, in partial mode: refused cheaply, naming why."""
    srv = serve(make_app(engine, act_max_agents=100))
    url = f"{srv.url}/v1/act"
    json_type = {"content-type": "application/json"}
    before = engine.stats["agents"]
    n = 20_000  # a 200-row limit would be far exceeded; entity counts claim 64 per row
    many = {
        "columns": {
            "agent": ["a"] * n,
            "kind": "pursuit",
            "pos": {"x": [0] * n, "y": [0] * n, "z": [0] * n},
            "yaw": [True] + [0] * (n - 1),  # one invalid value: the strict decoder fails first
            "entities": {"count": [64] * n, "kind": "player", "rel": {"x": [], "y": [], "z": []}},
        }
    }
    few = copy.deepcopy(many)
    for key in ("agent", "yaw"):
        few["columns"][key] = few["columns"][key][:50]
    for axis in "xyz":
        few["columns"]["pos"][axis] = few["columns"]["pos"][axis][:50]
    few["columns"]["entities"]["count"] = [64] * 50
    deep = b"[" * 200_000 + b"]" * 200_000
    deep_body = (
        b'{"columns": {"agent": ["a"], "kind": "npc", "pos": {"x":[0],"y":[0],"z":[0]}, "yaw": [' + deep + b"]}}"
    )
    bigint = _valid_tree(3)
    bigint["columns"]["entities"]["count"][0] = 10**400
    crafted = _valid_tree(3)
    crafted["x - at `$.columns.y"] = 1  # a key that spells an error location inside columns
    with httpx.Client(timeout=60) as http:
        for query in ("", "?partial=1"):
            r = http.post(url + query, content=orjson.dumps(many), headers=json_type)
            assert r.status_code == 413, (query, r.status_code, r.text[:200])
            r = http.post(url + query, content=orjson.dumps(few), headers=json_type)
            assert r.status_code == 422 and r.json()["errors"][0]["loc"].startswith(
                ("columns.yaw", "columns.entities.rel")
            ), r.text[:300]
            r = http.post(url + query, content=deep_body, headers=json_type)
            assert r.status_code == 422, (query, r.status_code, r.text[:200])
            r = http.post(url + query, content=json.dumps(bigint).encode(), headers=json_type)
            assert r.status_code == 422 and r.json()["errors"][0]["loc"].startswith("columns.entities.count"), r.text
            r = http.post(url + query, content=orjson.dumps(crafted), headers=json_type)
            assert r.status_code == 422, (query, r.status_code, r.text[:200])
    assert engine.stats["agents"] == before  # nothing was decided


def test_null_optional_columns_mean_absent_in_both_modes(serve: Any, engine: InferenceEngine) -> None:
    srv = serve(make_app(engine))
    url = f"{srv.url}/v1/act"
    tree = _valid_tree(6)
    tree["columns"]["velocity"] = None
    tree["columns"]["yaw"] = None
    tree["columns"]["entities"]["name"] = None
    tree["columns"]["hp"] = [20] * 6
    strict = read_columns(orjson.dumps(tree), msgpack=False, max_agents=100)
    assert list(strict) == [Observation.model_validate(r) for r in columns_to_rows(tree["columns"])]
    tree["columns"]["hp"][4] = -1  # one bad row: partial mode answers the others
    with httpx.Client(timeout=30) as http:
        r = http.post(url + "?partial=1", content=orjson.dumps(tree), headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["columns"]["type"][4] == "error" and body["rows"]["4"]["error"]["loc"] == "observations[4].hp"
    assert all(t != "error" for i, t in enumerate(body["columns"]["type"]) if i != 4)


def test_lazy_rows_and_empty_concat_behave_like_lists() -> None:
    batch = read_columns(orjson.dumps(_valid_tree(3)), msgpack=False, max_agents=10)
    rows = batch.items
    assert rows[-1] == rows[2] and rows[-3] == rows[0]
    for bad in (3, -4):
        with pytest.raises(IndexError):
            rows[bad]
    empty = ObservationBatch.concat([])
    assert len(empty) == 0 and list(empty) == []
