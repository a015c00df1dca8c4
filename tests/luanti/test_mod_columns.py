"""The mod's columnar ``/v1/act`` request (``luanti_tune.act_format = columns``) is what the service
reads: the Lua conversion (``act.to_columns`` in mods/luanti_tune/src/act.lua, run here by the real
``lua5.1`` interpreter) gives the same columns as the reference :func:`rows_to_columns`, and the
service's :func:`read_columns` reads them back into exactly the Observations of the rows."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from luanti_tune.schemas.agent import Observation
from luanti_tune.serve.wire_columns import read_columns, rows_to_columns

MOD = Path(__file__).resolve().parents[2] / "mods" / "luanti_tune"

# Runs the mod's modules outside the engine (as the busted specs do). Modes:
#   convert: stdin = JSON list of observation lists -> JSON list of act.to_columns bodies
#   observe: observations built by act.observe from a small fake world -> {rows, columns} bodies
#   loop: the bodies the decision loop (act:step) sends in that world with the mod's default
#         settings and with act_format = rows -> {default, rows, default_format, rows_format}
DRIVER = r"""
local src, mode = arg[1], arg[2]
local loaded = {}
luanti_tune = { require = function(name)
	if loaded[name] == nil then loaded[name] = dofile(src .. name .. ".lua") end
	return loaded[name]
end }
local json = luanti_tune.require("json")
local act = luanti_tune.require("act")
if mode == "convert" then
	local out = json.array()
	for i, obs in ipairs(json.decode(io.read("*a"))) do
		out[i] = json.decode(json.encode(act.to_columns(obs)))
	end
	io.write(json.encode(out))
	return
end
core = {
	registered_nodes = { stone = { walkable = true }, air = { walkable = false }, water = { liquidtype = "source" } },
	get_item_group = function() return 0 end,
	get_node_or_nil = function(p)
		if p.y < 8 then return { name = "stone" } elseif p.x > 1 then return { name = "water" } end
		return { name = "air" }
	end,
}
local function ent(id, kind, pos, extra)
	local e = { luanti_tune_id = id, kind = kind, object = {
		get_pos = function() return pos end,
		get_velocity = function() return { x = 0.5, y = -1, z = 0 } end,
		get_hp = function() return 17 end,
		get_yaw = function() return 1.25 end,
	} }
	for k, v in pairs(extra or {}) do e[k] = v end
	return e
end
local players = {
	{ name = "alice", pos = { x = 3, y = 8.5, z = -2 }, vel = { x = 4, y = 0, z = 0 }, hp = 20 },
	{ name = "bob", pos = { x = -1.25, y = 9, z = 2 }, vel = { x = 0, y = 0, z = 0 }, hp = 11 },
	{ name = "carol", pos = { x = 300, y = 8, z = 0 }, vel = { x = 0, y = 0, z = 0 }, hp = 20 },
}
local chat = { { from = "bob", message = "hello @npc-1" }, { from = "alice", message = "h\195\169 \"x\"" } }
local ents = {
	ent("pursuit-1", "pursuit", { x = 0.2, y = 8.5, z = 0 },
		{ _last_result = { action = "dig", ok = false, reason = "protected" } }),
	ent("npc-1", "npc", { x = 1, y = 8, z = 1 }, { _pitch = 0.5 }),
	ent("navigation-1", "navigation", { x = 250, y = 8, z = 0 }, { goal = { x = 260, y = 8, z = 5 } }),
	ent("team-1", "team", { x = 2, y = 8, z = -1 }, { team = "reds", _last_result = { action = "move", ok = true } }),
	ent("team-2", "team", { x = 2, y = 8, z = 1 }),
}
if mode == "loop" then
	-- the decision loop with the mod's own settings: its defaults, and act_format = rows
	local config = luanti_tune.require("config")
	core.get_connected_players = function()
		local out = {}
		for i, pl in ipairs(players) do
			out[i] = {
				get_player_name = function() return pl.name end,
				get_pos = function() return pl.pos end,
				get_velocity = function() return pl.vel end,
				get_hp = function() return pl.hp end,
			}
		end
		return out
	end
	local out = {}
	for _, format in ipairs({ "default", "rows" }) do
		local cfg = config.read({ get = function(_, k)
			if k == "luanti_tune.act_format" and format ~= "default" then return format end
			return nil
		end })
		local sent
		local self = act.new({
			fetch = function(req) sent = req.data end, cfg = cfg, now = function() return 0 end,
			log = function() end, ratelog = { log_key = function() end }, tick = function() return 42 end,
			emit = function() end,
			agents = { any = function() return true end, each = function() return ipairs(ents) end },
		})
		for _ = 1, cfg.act_interval do
			self:step()
		end
		out[format] = sent
		out[format .. "_format"] = cfg.act_format
	end
	io.write(json.encode(out))
	return
end
local obs = json.array()
for i, e in ipairs(ents) do
	obs[i] = act.observe(e, 42, players, { nearby_radius = 1 }, chat, {})
end
io.write(json.encode({ rows = json.encode({ observations = obs }), columns = json.encode(act.to_columns(obs)) }))
"""


def _vec(x: float, y: float, z: float) -> dict[str, float]:
    return {"x": x, "y": y, "z": z}


GRID = {"radius": 1, "codes": [1] * 9 + [0] * 17 + [2]}

#: Observation lists: the docs/design.md example, several/no entities, npc chat, goal, team, nearby,
#: inventory, last_result with and without reason, minimal rows, integral floats.
CASES: dict[str, list[dict[str, Any]]] = {
    "design_example": [
        {
            "agent": "enemy-1",
            "kind": "pursuit",
            "tick": 42,
            "pos": _vec(0, 8, 0),
            "yaw": 0,
            "pitch": 0,
            "hp": 20,
            "velocity": _vec(0, 0, 0),
            "entities": [{"kind": "player", "name": "alice", "rel": _vec(3, 0, -2), "velocity": _vec(4, 0, 0)}],
            "targets": ["alice"],
        }
    ],
    "several_entities_per_row": [
        {
            "agent": "pursuit-1",
            "kind": "pursuit",
            "tick": 7,
            "pos": _vec(0.25, 8.5, -3.125),
            "yaw": 1.5,
            "hp": 13.5,
            "velocity": _vec(1, 0, -1),
            "entities": [
                {"kind": "player", "name": "alice", "rel": _vec(3, 0, -2), "velocity": _vec(4, 0, 0), "hp": 20},
                {"kind": "mob", "rel": _vec(-1, 1, 0.5)},
                {"kind": "agent", "name": "team-2", "rel": _vec(0, 0, 2), "team": "reds", "hp": 3},
            ],
            "targets": ["alice"],
            "last_result": {"action": "dig", "ok": False, "reason": "protected"},
        },
        {"agent": "pursuit-2", "kind": "pursuit", "tick": 7, "pos": _vec(5, 8, 1), "entities": [], "targets": []},
        {
            "agent": "pursuit-3",
            "kind": "pursuit",
            "tick": 7,
            "pos": _vec(-5, 8, 1),
            "pitch": -0.5,
            "entities": [{"kind": "item", "rel": _vec(1, 0, 0)}],
        },
    ],
    "npc_goal_team_nearby": [
        {
            "agent": "npc-1",
            "kind": "npc",
            "tick": 9,
            "pos": _vec(1, 2, 3),
            "chat": [{"from": "bob", "message": "hi @npc-1"}, {"from": "alice", "message": 'ü "quoted"\n'}],
            "nearby": GRID,
            "inventory": {"default:dirt": 3, "default:torch": 0},
        },
        {"agent": "navigation-1", "kind": "navigation", "tick": 9, "pos": _vec(4, 5, 6), "goal": _vec(10, 8, -3)},
        {
            "agent": "team-1",
            "kind": "team",
            "tick": 9,
            "pos": _vec(0, 8, 0),
            "team": "reds",
            "entities": [{"kind": "agent", "name": "team-2", "rel": _vec(1, 0, 0), "team": "reds"}],
            "targets": ["alice", "bob"],
            "last_result": {"action": "move", "ok": True},
        },
    ],
    "minimal_rows": [
        {"agent": "a-1", "kind": "npc", "pos": _vec(1, 2, 3)},
        {"agent": "a-2", "kind": "pursuit", "pos": _vec(-1, -2, -3), "tick": 2**40},
    ],
    "integral_floats": [
        {"agent": "b-1", "kind": "pursuit", "tick": 42.0, "pos": _vec(1.0, 8.0, 0.0), "hp": 20.0},
    ],
}


def _lua() -> str:
    lua = shutil.which("lua5.1") or shutil.which("luajit")
    if lua is None:
        pytest.skip("lua5.1/luajit not installed (scripts/system-deps.sh)")
    return lua


def _run_lua(tmp_path: Path, mode: str, stdin: str = "") -> Any:
    driver = tmp_path / "driver.lua"
    driver.write_text(DRIVER)
    proc = subprocess.run(
        [_lua(), str(driver), f"{MOD}/src/", mode],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def lua_columns(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The Lua-built columnar body of every case (one interpreter run)."""
    out = _run_lua(tmp_path_factory.mktemp("lua"), "convert", json.dumps(list(CASES.values())))
    return dict(zip(CASES, out, strict=True))


def _per_row(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with ``kind``, ``tick`` and ``entities.kind`` as one value per row/entity: the
    format allows sending them once when all are the same, which is the same request."""
    cols = json.loads(json.dumps(body["columns"]))
    n = len(cols["agent"])
    for key in ("kind", "tick"):
        if not isinstance(cols.get(key), list):
            cols[key] = [cols.get(key, 0)] * n
    ents = cols.get("entities")
    if ents is not None and not isinstance(ents["kind"], list):
        ents["kind"] = [ents["kind"]] * int(sum(ents["count"]))
    return {"columns": cols}


def _decoded(body: Any) -> list[Observation]:
    return list(read_columns(json.dumps(body).encode(), msgpack=False, max_agents=1000))


@pytest.mark.parametrize("case", list(CASES))
def test_lua_columns_equal_the_reference_conversion(case: str, lua_columns: dict[str, Any]) -> None:
    rows = CASES[case]
    for row in rows:
        Observation.model_validate(row)  # the cases are valid observations
    assert _per_row(lua_columns[case]) == _per_row(rows_to_columns(rows))


@pytest.mark.parametrize("case", list(CASES))
def test_service_decodes_lua_columns_into_the_rows_observations(case: str, lua_columns: dict[str, Any]) -> None:
    expected = [Observation.model_validate(r) for r in CASES[case]]
    assert _decoded(lua_columns[case]) == expected


def test_mod_observations_sent_as_columns_decode_like_the_rows(tmp_path: Path) -> None:
    """The observations act.observe builds, once as rows and once as columns: same Observations."""
    bodies = _run_lua(tmp_path, "observe")
    rows = json.loads(bodies["rows"])["observations"]
    columns = json.loads(bodies["columns"])
    expected = [Observation.model_validate(r) for r in rows]
    # the fake world covers what the columns must carry: entities, chat, goal, team, nearby, last_result
    assert [o.agent for o in expected] == ["pursuit-1", "npc-1", "navigation-1", "team-1", "team-2"]
    assert [len(o.entities) for o in expected] == [2, 2, 0, 2, 2]
    assert expected[1].chat and expected[2].goal and expected[3].team == "reds" and expected[4].team == "team"
    assert expected[0].last_result and expected[0].last_result.reason == "protected"
    assert all(o.nearby is not None for o in expected)
    assert _per_row(columns) == _per_row(rows_to_columns(rows))
    assert _decoded(columns) == expected


def test_the_mod_sends_columns_by_default_and_the_service_reads_its_rows_observations(tmp_path: Path) -> None:
    """The mod's default traffic: act:step with the mod's own default settings sends the columnar
    format (nearby grids of radius 1 included), and the service reads it into exactly the
    Observations of the same step sent as rows (act_format = rows), through its request parser."""
    from luanti_tune.config.settings import Settings
    from luanti_tune.serve.act import ActService

    sent = _run_lua(tmp_path, "loop")
    assert sent["default_format"] == "columns" and sent["rows_format"] == "rows"
    default, rows = sent["default"].encode(), sent["rows"].encode()
    assert default.startswith(b'{"columns":{') and rows.startswith(b'{"observations":[')
    service = ActService(Settings(), None)
    got, bad = service.parse(default, "application/json", False)
    want, bad_rows = service.parse(rows, "application/json", False)
    assert not bad and not bad_rows and got.cols is not None and want.cols is not None
    expected = [Observation.model_validate(r) for r in json.loads(rows)["observations"]]
    assert list(got) == list(want) == expected
    assert all(o.nearby is not None and o.nearby.radius == 1 for o in expected)
