-- The columnar /v1/act format the mod sends by default (luanti_tune.act_format = columns): the
-- request columns (act.to_columns, mirroring rows_to_columns in luanti_tune.serve.wire_columns),
-- the decoding of the columnar answer (act.columns_actions) and the decision loop in both formats
-- (the default traffic round-trip: observations -> columns -> the answer's actions applied).
local helper = require("spec.helper")
local json = luanti_tune.require("json")
local act = luanti_tune.require("act")
local config = luanti_tune.require("config")

local null = json.null

--- Encodes, then decodes: what the service would read (arrays vs objects made visible below).
local function wire(v)
	return json.decode(json.encode(v))
end

local function vec(x, y, z)
	return { x = x, y = y, z = z }
end

local function alice(rel)
	return { kind = "player", name = "alice", rel = rel, velocity = vec(4, 0, 0), hp = 20 }
end

describe("act.to_columns", function()
	it("gives exactly the columns of pursuit rows with several, one and no entities", function()
		local obs = {
			{ agent = "pursuit-1", kind = "pursuit", tick = 42, pos = vec(0, 8, 0), yaw = 0.5, pitch = 0, hp = 20,
				velocity = vec(1, 0, 0), entities = json.array({ alice(vec(3, 0, -2)),
					{ kind = "mob", rel = vec(1, 1, 1) } }), targets = json.array({ "alice" }),
				last_result = { action = "dig", ok = false, reason = "protected" } },
			{ agent = "pursuit-2", kind = "pursuit", tick = 42, pos = vec(5, 8, 1), yaw = 0, pitch = 0.25, hp = 7,
				velocity = vec(0, -1, 0), entities = json.array({ alice(vec(-2, 0, 4)) }),
				targets = json.array({ "alice" }) },
			{ agent = "pursuit-3", kind = "pursuit", tick = 42, pos = vec(9, 8, 9), yaw = 0, pitch = 0, hp = 20,
				velocity = vec(0, 0, 0), entities = json.array(), targets = json.array() },
		}
		assert.same({ columns = {
			agent = { "pursuit-1", "pursuit-2", "pursuit-3" },
			kind = "pursuit", -- the same for every row: sent once
			tick = 42,
			pos = { x = { 0, 5, 9 }, y = { 8, 8, 8 }, z = { 0, 1, 9 } },
			velocity = { x = { 1, 0, 0 }, y = { 0, -1, 0 }, z = { 0, 0, 0 } },
			yaw = { 0.5, 0, 0 }, pitch = { 0, 0.25, 0 }, hp = { 20, 7, 20 },
			targets = { { "alice" }, { "alice" }, {} },
			last_result = { { action = "dig", ok = false, reason = "protected" }, null, null },
			entities = {
				count = { 2, 1, 0 },
				kind = { "player", "mob", "player" },
				name = { "alice", null, "alice" },
				hp = { 20, null, 20 },
				rel = { x = { 3, 1, -2 }, y = { 0, 1, 0 }, z = { -2, 1, 4 } },
				velocity = { x = { 4, null, 4 }, y = { 0, null, 0 }, z = { 0, null, 0 } },
			},
		} }, wire(act.to_columns(obs)))
		-- the empty targets list of row 3 is a JSON array, not an object
		assert.matches('"targets":%[%["alice"%],%["alice"%],%[%]%]', json.encode(act.to_columns(obs)))
	end)

	it("adds chat, goal, team and nearby columns only when some row has them (null or [] elsewhere)", function()
		local grid = { radius = 1, codes = json.array({ 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0,
			0, 0, 0, 0, 0, 0, 0, 0, 2 }) }
		local obs = {
			{ agent = "npc-1", kind = "npc", tick = 7, pos = vec(1, 2, 3), entities = json.array(),
				targets = json.array(), chat = json.array({ { from = "bob", message = "hi npc-1" },
					{ from = "alice", message = "ü \"quoted\"" } }), nearby = grid },
			{ agent = "navigation-1", kind = "navigation", tick = 7, pos = vec(4, 5, 6), entities = json.array(),
				targets = json.array(), goal = vec(10, 8, -3) },
			{ agent = "team-1", kind = "team", tick = 7, pos = vec(0, 8, 0), team = "reds",
				entities = json.array({ { kind = "agent", name = "team-2", rel = vec(1, 0, 0), team = "reds" } }),
				targets = json.array({ "alice" }) },
		}
		local cols = wire(act.to_columns(obs)).columns
		assert.same({ { { from = "bob", message = "hi npc-1" }, { from = "alice", message = "ü \"quoted\"" } }, {}, {} },
			cols.chat)
		assert.same({ null, vec(10, 8, -3), null }, cols.goal)
		assert.same({ null, null, "reds" }, cols.team)
		assert.same({ { radius = 1, codes = grid.codes }, null, null }, cols.nearby)
		assert.same({ "npc", "navigation", "team" }, cols.kind)
		assert.equals(7, cols.tick)
		assert.same({ count = { 0, 0, 1 }, kind = "agent", name = { "team-2" }, team = { "reds" },
			rel = { x = { 1 }, y = { 0 }, z = { 0 } } }, cols.entities)
		for _, absent in ipairs({ "velocity", "yaw", "pitch", "hp", "last_result", "inventory" }) do
			assert.is_nil(cols[absent], absent)
		end
		assert.matches('"chat":%[%[.-%],%[%],%[%]%]', json.encode(act.to_columns(obs)))
	end)

	it("writes lists as JSON arrays even when empty (no row with entities or all empty)", function()
		local obs = {
			{ agent = "pursuit-1", kind = "pursuit", tick = 1, pos = vec(0, 8, 0), entities = json.array(), targets = {} },
		}
		assert.equals('{"columns":{"agent":["pursuit-1"],"entities":{"count":[0],"kind":[],'
			.. '"rel":{"x":[],"y":[],"z":[]}},"kind":"pursuit","pos":{"x":[0],"y":[8],"z":[0]},"targets":[[]],'
			.. '"tick":1}}', json.encode(act.to_columns(obs)))
		assert.equals('{"columns":{"agent":["a-1"],"kind":"npc","pos":{"x":[1],"y":[2],"z":[3]},"tick":0}}',
			json.encode(act.to_columns({ { agent = "a-1", kind = "npc", pos = vec(1, 2, 3) } })))
		assert.equals('{"columns":{"agent":[],"kind":[],"pos":{"x":[],"y":[],"z":[]},"tick":[]}}',
			json.encode(act.to_columns({})))
	end)

	it("converts decoded rows (JSON nulls, arrays from the decoder) the same way", function()
		local rows = json.decode('[{"agent":"npc-1","kind":"npc","pos":{"x":1,"y":2,"z":3},"goal":null,'
			.. '"chat":[],"inventory":{"default:dirt":3}},{"agent":"npc-2","kind":"npc","tick":5,"pos":{"x":0,"y":0,"z":0}}]')
		assert.equals('{"columns":{"agent":["npc-1","npc-2"],"chat":[[],[]],"goal":[null,null],'
			.. '"inventory":[{"default:dirt":3},{}],"kind":"npc","pos":{"x":[1,0],"y":[2,0],"z":[3,0]},'
			.. '"tick":[0,5]}}', json.encode(act.to_columns(rows)))
	end)
end)

describe("act.columns_actions", function()
	it("gives the rows' action entries: move/wait from the columns, others whole from rows", function()
		local answer = json.decode(json.encode({
			columns = { agent = { "a-1", "a-2", "a-3", "a-4" }, type = { "move", "wait", "dig", "move" },
				dir = { x = { 0.8, 0, 0, 0 }, y = { 0, 0, 0, 0 }, z = { -0.6, 0, 0, 1 } },
				speed = { 1, 0, 0, 0.5 } },
			rows = { ["2"] = { agent = "a-3", type = "dig", args = { pos = vec(1, 7, 0) }, fallback = "no model" } },
			model = { name = "pursuit", version = 3 },
		}))
		assert.same({
			{ agent = "a-1", type = "move", args = { dir = vec(0.8, 0, -0.6), speed = 1 } },
			{ agent = "a-2", type = "wait", args = { ticks = 1 } },
			{ agent = "a-3", type = "dig", args = { pos = vec(1, 7, 0) }, fallback = "no model" },
			{ agent = "a-4", type = "move", args = { dir = vec(0, 0, 1), speed = 0.5 } },
		}, act.columns_actions(answer))
	end)

	it("reads an answer with no extra rows and refuses one without action columns", function()
		local answer = json.decode('{"columns":{"agent":["a-1"],"type":["wait"],"dir":{"x":[0],"y":[0],"z":[0]},'
			.. '"speed":[0]},"rows":{},"model":null}')
		assert.same({ { agent = "a-1", type = "wait", args = { ticks = 1 } } }, act.columns_actions(answer))
		assert.same({}, act.columns_actions(json.decode('{"columns":{"agent":[],"type":[],'
			.. '"dir":{"x":[],"y":[],"z":[]},"speed":[]},"rows":{}}')))
		for _, bad in ipairs({ '{"actions":[]}', '{"columns":{"agent":["a-1"]}}', "[]", '"x"' }) do
			local list, why = act.columns_actions(json.decode(bad))
			assert.is_nil(list, bad)
			assert.matches("no action columns", why)
		end
	end)
end)

-- ---------------------------------------------------------------------------- the decision loop

-- core.parse_json gives nil for JSON null (not json.null)
local function strip_nulls(v)
	if v == null then
		return nil
	end
	if type(v) == "table" then
		for k, x in pairs(v) do
			v[k] = strip_nulls(x)
		end
	end
	return v
end

local function fake_ent(id, kind, pos)
	return {
		luanti_tune_id = id,
		kind = kind,
		object = {
			get_pos = function()
				return pos
			end,
			get_velocity = function()
				return vec(0, 0, 0)
			end,
			get_hp = function()
				return 20
			end,
			get_yaw = function()
				return 0
			end,
		},
	}
end

--- A decision loop over three agents with a recording fetch and agents.apply; cfg_over: settings.
local function loop(settings)
	_G.core = {
		get_connected_players = function()
			local p = {}
			function p.get_player_name()
				return "alice"
			end
			function p.get_pos()
				return vec(3, 8, -2)
			end
			function p.get_velocity()
				return vec(4, 0, 0)
			end
			function p.get_hp()
				return 20
			end
			return { p }
		end,
		parse_json = function(s)
			local v = json.try_decode(s)
			return strip_nulls(v)
		end,
		registered_nodes = {},
		get_node_or_nil = function()
			return { name = "air" }
		end,
	}
	local ents = { fake_ent("pursuit-1", "pursuit", vec(0, 8, 0)), fake_ent("npc-1", "npc", vec(2, 8, 2)),
		fake_ent("team-1", "team", vec(-1, 8, 1)) }
	local clock = helper.clock()
	local rec = { fetches = {}, applied = {} }
	local log = function() end
	local RateLog = luanti_tune.require("ratelog")
	local cfg = config.read({ get = function(_, k)
		return settings[k]
	end })
	local self = act.new({
		fetch = function(req, cb)
			rec.fetches[#rec.fetches + 1] = { req = req, cb = cb }
		end,
		cfg = cfg, now = clock.now, log = log, ratelog = RateLog.new(log, clock.now, 30), tick = function()
			return 42
		end,
		emit = function() end,
		agents = {
			any = function()
				return true
			end,
			each = function()
				return ipairs(ents)
			end,
			apply = function(a)
				rec.applied[#rec.applied + 1] = a
				return a.type ~= "dig", "refused"
			end,
		},
	})
	self:heard("bob", "hello npc-1")
	return self, rec
end

local function ok(body)
	return { succeeded = true, code = 200, completed = true, data = body }
end

describe("decision loop formats", function()
	it("reads act_format (columns by default) and falls back to columns with a warning for an unknown value", function()
		assert.equals("columns", config.read({ get = function() end }).act_format)
		local warned = {}
		local function read(v)
			return config.read({ get = function(_, k)
				return k == "luanti_tune.act_format" and v or nil
			end }, function(msg)
				warned[#warned + 1] = msg
			end).act_format
		end
		assert.equals("columns", read("columns"))
		assert.equals("rows", read("rows"))
		assert.same({}, warned)
		assert.equals("columns", read("colums"))
		assert.equals(1, #warned)
		assert.matches("luanti_tune.act_format must be one of rows, columns, got \"colums\"; using columns", warned[1])
	end)

	it("sends rows with act_format = rows, exactly the JSON of the observations, and applies data.actions", function()
		local self, rec = loop({ ["luanti_tune.act_interval"] = "1", ["luanti_tune.act_format"] = "rows" })
		assert.is_true(self:step())
		local body = rec.fetches[1].req.data
		assert.equals('{"observations":[{', body:sub(1, 18))
		local rows = json.decode(body).observations
		assert.equals(3, #rows)
		for i, ent in ipairs({ "pursuit-1", "npc-1", "team-1" }) do
			assert.equals(ent, rows[i].agent)
		end
		assert.equals(json.encode({ observations = rows }), body)
		assert.same({ { from = "bob", message = "hello npc-1" } }, rows[2].chat)
		rec.fetches[1].cb(ok(json.encode({ actions = {
			{ agent = "pursuit-1", type = "move", args = { dir = vec(1, 0, 0), speed = 1 } },
			{ agent = "npc-1", type = "dig", args = { pos = vec(2, 7, 2) } },
		}, model = { name = "m", version = 1 } })))
		assert.equals(2, #rec.applied)
		assert.equals(2, self.stats.actions)
		assert.equals(1, self.stats.refused)
		assert.same({ name = "m", version = 1 }, self.stats.model)
		-- a columnar answer is not understood in rows mode
		assert.is_true(self:step())
		rec.fetches[2].cb(ok('{"columns":{"agent":[],"type":[]},"rows":{}}'))
		assert.equals(1, self.stats.failures)
	end)

	it("sends the same observations as columns by default and applies the decoded answer like rows", function()
		local rows_self, rows_rec = loop({ ["luanti_tune.act_interval"] = "1", ["luanti_tune.act_format"] = "rows" })
		rows_self:step()
		local self, rec = loop({ ["luanti_tune.act_interval"] = "1" }) -- the defaults: columns
		assert.equals("columns", self.c.cfg.act_format)
		assert.is_true(self:step())
		local body = rec.fetches[1].req.data
		assert.equals('{"columns":{', body:sub(1, 12))
		local rows = json.decode(rows_rec.fetches[1].req.data).observations
		assert.equals(json.encode(act.to_columns(rows)), body)
		local cols = json.decode(body).columns
		assert.same({ "pursuit-1", "npc-1", "team-1" }, cols.agent)
		assert.same({ {}, { { from = "bob", message = "hello npc-1" } }, {} }, cols.chat)
		assert.same({ null, null, "team" }, cols.team)
		assert.same({ 1, 1, 1 }, cols.entities.count)
		for i = 1, 3 do -- the default grid: radius 1 around every agent
			assert.equals(1, cols.nearby[i].radius)
			assert.equals(27, #cols.nearby[i].codes)
		end
		rec.fetches[1].cb(ok(json.encode({
			columns = { agent = { "pursuit-1", "npc-1", "team-1" }, type = { "move", "dig", "wait" },
				dir = { x = { 1, 0, 0 }, y = { 0, 0, 0 }, z = { 0, 0, 0 } }, speed = { 1, 0, 0 } },
			rows = { ["1"] = { agent = "npc-1", type = "dig", args = { pos = vec(2, 7, 2) }, fallback = json.null } },
			model = { name = "m", version = 2 },
		})))
		assert.same({
			{ agent = "pursuit-1", type = "move", args = { dir = vec(1, 0, 0), speed = 1 } },
			{ agent = "npc-1", type = "dig", args = { pos = vec(2, 7, 2) } },
			{ agent = "team-1", type = "wait", args = { ticks = 1 } },
		}, rec.applied)
		assert.equals(3, self.stats.actions)
		assert.equals(1, self.stats.refused)
		assert.equals(0, self.stats.failures)
		assert.same({ name = "m", version = 2 }, self.stats.model)
		-- an answer without action columns is a failure, like one without actions in rows mode
		assert.is_true(self:step())
		rec.fetches[2].cb(ok('{"detail":"nope"}'))
		assert.equals(1, self.stats.failures)
		assert.equals(3, self.stats.actions)
	end)
end)
