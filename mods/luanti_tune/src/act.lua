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
		data = json.encode({ observations = obs }), timeout = self.c.cfg.act_timeout,
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
	if type(data) ~= "table" or type(data.actions) ~= "table" then
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
	for _, a in ipairs(data.actions) do
		self.stats.actions = self.stats.actions + 1
		local ok = self.c.agents.apply(a)
		if not ok then
			self.stats.refused = self.stats.refused + 1
		end
	end
end

return act
