-- The decision loop: every act_interval server steps, one POST /v1/act with the observations of
-- all agents; the answer (a later step) is validated and applied. While a request is pending,
-- agents keep their last action. Failures back off and are logged at most once per interval.

local json = luanti_tune.require("json")
local Backoff = luanti_tune.require("backoff")
local Events = luanti_tune.require("events")

local act = {}

local NODE_CODE = { air = 0, solid = 1, water = 2, lava = 3, slow = 4, climbable = 5, unknown = 6 }
local code_cache = {}

local function node_code(name)
	local c = code_cache[name]
	if c then
		return c
	end
	local def = core.registered_nodes[name]
	if name == "ignore" or not def then
		c = NODE_CODE.unknown
	elseif def.liquidtype and def.liquidtype ~= "none" then
		c = ((def.damage_per_second or 0) > 0 or core.get_item_group(name, "lava") > 0) and NODE_CODE.lava
			or NODE_CODE.water
	elseif def.climbable then
		c = NODE_CODE.climbable
	elseif def.walkable ~= false then
		c = NODE_CODE.solid
	elseif (def.move_resistance or 0) > 0 or (def.liquid_viscosity or 0) > 0 then
		c = NODE_CODE.slow
	else
		c = NODE_CODE.air
	end
	code_cache[name] = c
	return c
end

-- cache: node codes by position for one decision (agents close together share most neighbours)
local function nearby(pos, r, cache)
	local codes = json.array()
	local cx, cy, cz = math.floor(pos.x + 0.5), math.floor(pos.y + 0.5), math.floor(pos.z + 0.5)
	local p = {}
	local n = 0
	for dy = -r, r do
		for dz = -r, r do
			for dx = -r, r do
				p.x, p.y, p.z = cx + dx, cy + dy, cz + dz
				local key = ((p.z + 32768) * 65536 + p.y + 32768) * 65536 + p.x + 32768
				local code = cache[key]
				if code == nil then
					local node = core.get_node_or_nil(p)
					code = node and node_code(node.name) or NODE_CODE.unknown
					cache[key] = code
				end
				n = n + 1
				codes[n] = code
			end
		end
	end
	return { radius = r, codes = codes }
end

local SEE_RANGE = 32

--- One observation (a table ready for json.encode) for agent ent; players: list of
--- {name, pos, vel, hp} computed once per request.
function act.observe(ent, tick, players, cfg, chat, cache)
	local obj = ent.object
	local pos = obj:get_pos()
	local v = obj:get_velocity() or { x = 0, y = 0, z = 0 }
	local entities, targets = json.array(), json.array()
	for _, pl in ipairs(players) do
		local rel = { x = pl.pos.x - pos.x, y = pl.pos.y - pos.y, z = pl.pos.z - pos.z }
		if math.abs(rel.x) <= SEE_RANGE and math.abs(rel.y) <= SEE_RANGE and math.abs(rel.z) <= SEE_RANGE
			and #entities < 16 then
			entities[#entities + 1] = { kind = "player", name = pl.name, rel = Events.vec(rel),
				velocity = Events.vec(pl.vel), hp = pl.hp }
			if ent.kind == "pursuit" or ent.kind == "team" then
				targets[#targets + 1] = pl.name
			end
		end
	end
	local hp = obj:get_hp()
	local o = {
		agent = ent.luanti_tune_id,
		kind = ent.kind,
		tick = tick,
		pos = Events.vec(pos),
		yaw = Events.round3(obj:get_yaw() or 0),
		pitch = Events.round3(ent._pitch or 0),
		hp = math.max(0, math.min(1000, hp)),
		velocity = Events.vec(v),
		entities = entities,
		targets = targets,
		last_result = ent._last_result,
	}
	if cfg.nearby_radius > 0 then
		o.nearby = nearby(pos, cfg.nearby_radius, cache or {})
	end
	if ent.goal then
		o.goal = Events.vec(ent.goal)
	end
	if ent.kind == "team" then
		-- team agents of this server share one blackboard in the service unless they name a team
		o.team = ent.team or "team"
	end
	if ent.kind == "npc" and #chat > 0 then
		o.chat = json.array(chat)
	end
	return o
end

-- ------------------------------------------------------------------ columnar format
-- By default (luanti_tune.act_format = columns) the request is one array per field (the service's
-- columnar format, documented in luanti_tune.serve.wire_columns; act.to_columns mirrors its
-- rows_to_columns) and the answer comes back as columns (act.columns_actions); act_format = rows
-- sends {observations = [...]}, one object per agent, answered with an actions list.

local NULL = json.null
local ARRAY_MT = getmetatable(json.array())

-- t as a table that encodes as a JSON array even when empty (t itself when already marked).
local function as_array(t)
	if getmetatable(t) == ARRAY_MT then
		return t
	end
	local out = json.array()
	for i = 1, #t do
		out[i] = t[i]
	end
	return out
end

local function given(v)
	return v ~= nil and v ~= NULL
end

-- {x = [...], y = [...], z = [...]} of n vectors; NULL (absent) gives null in all three.
local function vec_columns(vecs, n)
	local x, y, z = json.array(), json.array(), json.array()
	for i = 1, n do
		local v = vecs[i]
		if given(v) then
			x[i], y[i], z[i] = v.x, v.y, v.z
		else
			x[i], y[i], z[i] = NULL, NULL, NULL
		end
	end
	return { x = x, y = y, z = z }
end

-- Optional per-row fields: a column only when some row has them; other rows get these values.
local ROW_KEYS = { "yaw", "pitch", "hp", "targets", "inventory", "chat", "goal", "last_result", "nearby", "team" }
local ROW_DEFAULTS = {
	yaw = function() return 0 end,
	pitch = function() return 0 end,
	hp = function() return 20 end,
	targets = json.array,
	inventory = json.object,
	chat = json.array,
}
local LIST_KEYS = { targets = true, chat = true }

-- values[1] when every value is that same one (sent once), else values.
local function uniform(values)
	local first = values[1]
	if first == nil or type(first) == "table" then
		return values
	end
	for i = 2, #values do
		if values[i] ~= first then
			return values
		end
	end
	return first
end
local ENTITY_KEYS = { "name", "hp", "team" }

--- The columnar /v1/act request ({columns = ...}) of a list of observation tables (as built by
--- act.observe). Every column is a JSON array of one value per row (entities: per entity), but
--- kind, tick and entities.kind are sent once when every row has the same.
function act.to_columns(obs)
	local n = #obs
	local agent, kind, tick, pos = json.array(), json.array(), json.array(), {}
	local present = {}
	for i = 1, n do
		local o = obs[i]
		agent[i], kind[i], tick[i], pos[i] = o.agent, o.kind, o.tick or 0, o.pos
		for k, v in pairs(o) do
			if v ~= nil then
				present[k] = true
			end
		end
	end
	local cols = { agent = agent, kind = uniform(kind), tick = uniform(tick), pos = vec_columns(pos, n) }
	if present.velocity then
		local vs = {}
		for i = 1, n do
			vs[i] = given(obs[i].velocity) and obs[i].velocity or { x = 0, y = 0, z = 0 }
		end
		cols.velocity = vec_columns(vs, n)
	end
	for _, key in ipairs(ROW_KEYS) do
		if present[key] then
			local col, default = json.array(), ROW_DEFAULTS[key]
			for i = 1, n do
				local v = obs[i][key]
				if v == nil then
					v = default and default() or NULL
				elseif LIST_KEYS[key] and v ~= NULL then
					v = as_array(v)
				end
				col[i] = v
			end
			cols[key] = col
		end
	end
	if present.entities then
		local count, flat = json.array(), {}
		for i = 1, n do
			local ents = given(obs[i].entities) and obs[i].entities or {}
			count[i] = #ents
			for j = 1, #ents do
				flat[#flat + 1] = ents[j]
			end
		end
		local m = #flat
		local ec = { count = count }
		local ekind, rel, vel, has_vel = json.array(), {}, {}, false
		for j = 1, m do
			local e = flat[j]
			ekind[j], rel[j] = e.kind, e.rel
			vel[j] = given(e.velocity) and e.velocity or NULL
			has_vel = has_vel or given(e.velocity)
		end
		ec.kind, ec.rel = uniform(ekind), vec_columns(rel, m)
		if has_vel then
			ec.velocity = vec_columns(vel, m)
		end
		for _, key in ipairs(ENTITY_KEYS) do
			local col, any = json.array(), false
			for j = 1, m do
				local v = flat[j][key]
				any = any or v ~= nil
				col[j] = v == nil and NULL or v
			end
			if any then
				ec[key] = col
			end
		end
		cols.entities = ec
	end
	return { columns = cols }
end

local function list_or_empty(t)
	return type(t) == "table" and t or {}
end

--- The action entries of a columnar /v1/act answer, in row order, exactly as the rows format
--- would give them (rows[<0-based index>] when present, else the move/wait of the columns);
--- nil and a reason when the answer has no action columns.
function act.columns_actions(data)
	local cols = type(data) == "table" and data.columns
	if type(cols) ~= "table" or type(cols.agent) ~= "table" or type(cols.type) ~= "table" then
		return nil, "answer has no action columns"
	end
	local rows = list_or_empty(data.rows)
	local dir = list_or_empty(cols.dir)
	local dx, dy, dz, speed = list_or_empty(dir.x), list_or_empty(dir.y), list_or_empty(dir.z),
		list_or_empty(cols.speed)
	local out = {}
	for i = 1, #cols.type do
		local a = rows[tostring(i - 1)]
		if a == nil then
			local name, typ = cols.agent[i], cols.type[i]
			if typ == "move" then
				a = { agent = name, type = "move", args = { dir = { x = dx[i], y = dy[i], z = dz[i] }, speed = speed[i] } }
			elseif typ == "wait" then
				a = { agent = name, type = "wait", args = { ticks = 1 } }
			else -- not sent by the service: refused (with a reason) like any invalid action
				a = { agent = name, type = typ }
			end
		end
		out[i] = a
	end
	return out
end

--- c: {fetch, cfg, now, log, ratelog, agents, emit, tick}
function act.new(c)
	local self = {
		c = c, inflight = false, next_attempt = 0, steps = 0,
		backoff = Backoff.new(0.5, c.cfg.backoff_max),
		chat = {}, down = false,
		stats = { requests = 0, failures = 0, actions = 0, refused = 0, model = nil },
		headers = { "Content-Type: application/json" },
	}
	if c.cfg.token ~= "" then
		self.headers[#self.headers + 1] = "Authorization: Bearer " .. c.cfg.token
	end
	return setmetatable(self, { __index = act })
end

--- Remembers a chat line for NPC observations (last 4 lines, 60 s).
function act:heard(name, message)
	table.insert(self.chat, { from = name, message = message:sub(1, 512), t = self.c.now() })
	if #self.chat > 4 then
		table.remove(self.chat, 1)
	end
end

local function recent_chat(self)
	local out, t = {}, self.c.now()
	for _, line in ipairs(self.chat) do
		if t - line.t < 60 then
			out[#out + 1] = { from = line.from, message = line.message }
		end
	end
	return out
end

function act:step()
	self.steps = self.steps + 1
	if self.inflight or self.steps % self.c.cfg.act_interval ~= 0 or self.c.now() < self.next_attempt then
		return false
	end
	local agents = self.c.agents
	if not agents.any() then
		return false
	end
	local players = {}
	for _, p in ipairs(core.get_connected_players()) do
		players[#players + 1] = { name = p:get_player_name(), pos = p:get_pos(), vel = p:get_velocity(), hp = p:get_hp() }
	end
	local tick = self.c.tick()
	local chat = recent_chat(self)
	local obs = json.array()
	local cache = {}
	for _, ent in agents.each() do
		if ent.object:get_pos() then
			obs[#obs + 1] = act.observe(ent, tick, players, self.c.cfg, chat, cache)
		end
	end
	if #obs == 0 then
		return false
	end
	if self.c.cfg.agent_events then
		for _, o in ipairs(obs) do
			self.c.emit("agent.obs", { kind = "agent", name = o.agent }, o.pos, o)
		end
	end
	self.inflight = true
	self.stats.requests = self.stats.requests + 1
	self.c.fetch({ url = self.c.cfg.act_url, method = "POST",
		data = self.c.cfg.act_format == "columns" and json.encode(act.to_columns(obs))
			or json.encode({ observations = obs }),
		timeout = self.c.cfg.act_timeout,
		extra_headers = self.headers }, function(res)
		self.inflight = false
		local ok, err = pcall(self.handle, self, res)
		if not ok then
			self.c.ratelog:log_key("act_error", "error", "[luanti_tune] bad /v1/act answer: " .. tostring(err))
		end
	end)
	return true
end

local function fail(self, why)
	self.stats.failures = self.stats.failures + 1
	self.next_attempt = self.c.now() + self.backoff:fail()
	self.down = true
	self.c.ratelog:log_key("act_down", "warning",
		"[luanti_tune] /v1/act unavailable (" .. why .. "); agents keep their last action")
end

function act:handle(res)
	if not (res.succeeded and res.code == 200) then
		return fail(self, res.timeout and "timeout" or (res.code or 0) == 0 and "no connection"
			or ("HTTP " .. tostring(res.code)))
	end
	local data = core.parse_json(res.data or "")
	local list = type(data) == "table" and data.actions
	if self.c.cfg.act_format == "columns" and type(list) ~= "table" then
		local why
		list, why = act.columns_actions(data)
		if not list then
			return fail(self, why)
		end
	end
	if type(list) ~= "table" then
		return fail(self, "answer has no actions list")
	end
	if self.down then
		self.down = false
		self.c.log("action", "[luanti_tune] /v1/act reachable again")
	end
	self.backoff:succeed()
	if type(data.model) == "table" then
		self.stats.model = data.model
	end
	for _, a in ipairs(list) do
		self.stats.actions = self.stats.actions + 1
		local ok = self.c.agents.apply(a)
		if not ok then
			self.stats.refused = self.stats.refused + 1
		end
	end
end

return act
