-- Agent entities (`luanti_tune:agent`): registry, spawning, movement and applying actions.

local actions = luanti_tune.require("actions")

local agents = {}

agents.KINDS = { pursuit = true, navigation = true, npc = true, team = true }
agents.ALIASES = { enemy = "pursuit", navigator = "navigation", nav = "navigation" }
agents.WALK_SPEED = 4
agents.JUMP_SPEED = 6.5
agents.GRAVITY = -9.81

local registry = {} -- id -> luaentity
local ctx -- set by agents.init: {storage, emit, ratelog, log, on_rightclick(ent, clicker) optional}

local KIND_COLORS = { pursuit = "#c03030", navigation = "#3060c0", npc = "#30a040", team = "#c0a030" }

local function blockpos(pos)
	return { x = math.floor(pos.x / 16), y = math.floor(pos.y / 16), z = math.floor(pos.z / 16) }
end

local function same_block(a, b)
	return a and b and a.x == b.x and a.y == b.y and a.z == b.z
end

-- Forceloaded blocks become active only at the engine's next active-block update (every ~2 s), and
-- an entity that enters an inactive block is unloaded. So each agent keeps the 3x3 blocks around
-- it (horizontally) loaded: it can never walk into an inactive block before it became active.
local function each_block_around(bp, fn)
	for dx = -1, 1 do
		for dz = -1, 1 do
			fn({ x = (bp.x + dx) * 16, y = bp.y * 16, z = (bp.z + dz) * 16 })
		end
	end
end

local function forceload(p)
	core.forceload_block(p, true)
end

local function forceload_free(p)
	core.forceload_free_block(p, true)
end

--- Keeps the agent's surroundings loaded (agents must act without any player nearby).
local function keep_loaded(self, pos)
	local bp = blockpos(pos)
	if same_block(bp, self._block) then
		return
	end
	each_block_around(bp, forceload)
	if self._block then
		each_block_around(self._block, forceload_free)
	end
	self._block = bp
end

local function release_block(self)
	if self._block then
		each_block_around(self._block, forceload_free)
		self._block = nil
	end
end

local function yaw_of(dx, dz)
	return math.atan2(-dx, dz)
end

local function on_step(self, _, moveresult)
	local obj = self.object
	local pos = obj:get_pos()
	if not pos then
		return
	end
	keep_loaded(self, pos)
	local on_ground = moveresult and moveresult.touching_ground
	local blocked = false
	if moveresult and moveresult.collisions then
		for _, c in ipairs(moveresult.collisions) do
			if c.type == "node" and c.axis ~= "y" then
				blocked = true
			end
		end
	end
	local v = obj:get_velocity()
	local m = self._move
	local vx, vz = 0, 0
	if m then
		local dx, dz, speed = 0, 0, m.speed * agents.WALK_SPEED
		if m.dir then
			dx, dz = m.dir.x, m.dir.z
			local len = math.sqrt(dx * dx + dz * dz)
			if len > 1 then
				dx, dz = dx / len, dz / len
			end
		else
			local ex, ez = m.pos.x - pos.x, m.pos.z - pos.z
			local dist = math.sqrt(ex * ex + ez * ez)
			if dist < 0.3 then
				self._move = nil
			else
				dx, dz = ex / dist, ez / dist
				speed = math.min(speed, dist * 5)
			end
		end
		vx, vz = dx * speed, dz * speed
		if dx ~= 0 or dz ~= 0 then
			obj:set_yaw(yaw_of(dx, dz))
		end
		if blocked and on_ground then
			v.y = agents.JUMP_SPEED -- step up onto a one-node obstacle
		end
	end
	if self._wait then
		self._wait = self._wait - 1
		if self._wait <= 0 then
			self._wait = nil
		end
		vx, vz = 0, 0
	end
	if self._jump then
		self._jump = nil
		if on_ground then
			v.y = agents.JUMP_SPEED
		end
	end
	self._on_ground = on_ground
	obj:set_velocity({ x = vx, y = v.y, z = vz })
end

core.register_entity("luanti_tune:agent", {
	initial_properties = {
		hp_max = 20,
		physical = true,
		collide_with_objects = true,
		collisionbox = { -0.3, 0, -0.3, 0.3, 1.7, 0.3 },
		visual = "cube",
		visual_size = { x = 0.6, y = 1.7 },
		textures = {},
		static_save = true,
		nametag_color = "#ffffff",
	},
	luanti_tune_id = nil,

	on_activate = function(self, staticdata)
		local data = core.deserialize(staticdata or "") or {}
		if type(data.id) ~= "string" or not agents.KINDS[data.kind] or registry[data.id] then
			self.object:remove()
			return
		end
		self.luanti_tune_id = data.id
		self.kind = data.kind
		self.owner = data.owner
		self.goal = data.goal
		registry[data.id] = self
		local tex = "[combine:16x16^[noalpha^[colorize:" .. (KIND_COLORS[data.kind] or "#808080") .. ":255"
		self.object:set_properties({ textures = { tex, tex, tex, tex, tex, tex }, nametag = data.id })
		self.object:set_acceleration({ x = 0, y = agents.GRAVITY, z = 0 })
		self.object:set_armor_groups({ fleshy = 100 })
		keep_loaded(self, self.object:get_pos())
	end,

	get_staticdata = function(self)
		return core.serialize({ id = self.luanti_tune_id, kind = self.kind, owner = self.owner, goal = self.goal })
	end,

	on_deactivate = function(self)
		if self.luanti_tune_id and registry[self.luanti_tune_id] == self then
			registry[self.luanti_tune_id] = nil
		end
		release_block(self)
	end,

	on_rightclick = function(self, clicker)
		if ctx.on_rightclick and clicker and clicker:is_player() then
			local ok, err = pcall(ctx.on_rightclick, self, clicker)
			if not ok then
				ctx.ratelog:log_key("on_rightclick", "error", "[luanti_tune] agent right-click failed: " .. tostring(err))
			end
		end
	end,

	on_step = function(self, dtime, moveresult)
		local ok, err = pcall(on_step, self, dtime, moveresult)
		if not ok then
			ctx.ratelog:log_key("on_step", "error", "[luanti_tune] agent step failed: " .. tostring(err))
		end
	end,
})

function agents.init(c)
	ctx = c
end

-- Agents are saved with their map blocks like any entity, but after a restart nothing keeps those
-- blocks loaded. The blocks of live agents are therefore remembered in mod storage and loaded
-- again for a while at startup, until the agents are active and keep their blocks themselves.
local saved_blocks = ""

function agents.save_blocks()
	local seen, list = {}, {}
	for _, ent in pairs(registry) do
		local b = ent._block
		if b then
			local key = b.x .. "," .. b.y .. "," .. b.z
			if not seen[key] then
				seen[key] = true
				list[#list + 1] = { x = b.x * 16, y = b.y * 16, z = b.z * 16 }
			end
		end
	end
	local data = core.serialize(list)
	if data ~= saved_blocks then
		saved_blocks = data
		ctx.storage:set_string("agent_blocks", data)
	end
end

function agents.restore_blocks(hold_seconds)
	local list = core.deserialize(ctx.storage:get_string("agent_blocks")) or {}
	core.after(0, function() -- like builtin's own forceloading: not while mods are loading
		for _, p in ipairs(list) do
			core.forceload_block(p, true)
		end
	end)
	core.after(hold_seconds or 20, function()
		for _, p in ipairs(list) do
			core.forceload_free_block(p, true)
		end
	end)
	return #list
end

function agents.get(id)
	return registry[id]
end

--- Iterates agents as id, luaentity (only agents whose object is still valid).
function agents.each()
	return pairs(registry)
end

function agents.any()
	return next(registry) ~= nil
end

function agents.count()
	local n = 0
	for _ in pairs(registry) do
		n = n + 1
	end
	return n
end

function agents.pos(id)
	local ent = registry[id]
	return ent and ent.object:get_pos() or nil
end

--- Spawns an agent of kind at pos (asynchronously once the area is loaded). Returns id or nil, err.
--- opts: owner (player name, used for protection checks), goal (position, navigation agents).
function agents.spawn(kind, pos, opts)
	opts = opts or {}
	kind = agents.ALIASES[kind] or kind
	if not agents.KINDS[kind] then
		return nil, "unknown agent kind '" .. tostring(kind) .. "' (pursuit, navigation, npc, team)"
	end
	if type(pos) ~= "table" or type(pos.x) ~= "number" then
		return nil, "pos must be a position"
	end
	local n = ctx.storage:get_int("agent_counter") + 1
	ctx.storage:set_int("agent_counter", n)
	local id = kind .. "-" .. n
	local data = core.serialize({ id = id, kind = kind, owner = opts.owner, goal = opts.goal })
	local p = { x = pos.x, y = pos.y, z = pos.z }
	core.forceload_block(p, true)
	core.emerge_area(p, p, function(_, _, remaining)
		if remaining > 0 then
			return
		end
		local obj = core.add_entity(p, "luanti_tune:agent", data)
		core.forceload_free_block(p, true)
		if not obj then
			ctx.log("warning", "[luanti_tune] could not spawn agent " .. id .. " at " .. core.pos_to_string(p))
		end
	end)
	return id
end

function agents.remove(id)
	local ent = registry[id]
	if not ent then
		return false
	end
	registry[id] = nil
	release_block(ent)
	ent.object:remove()
	return true
end

-- ------------------------------------------------------------------------ applying actions

local appliers = {}

function appliers.move(ent, args)
	ent._move = { dir = args.dir, speed = args.speed }
	ent._wait = nil
	return true
end

function appliers.move_to(ent, args)
	ent._move = { pos = args.pos, speed = args.speed }
	ent._wait = nil
	return true
end

function appliers.turn(ent, args)
	ent.object:set_yaw(args.yaw)
	ent._pitch = args.pitch
	return true
end

function appliers.jump(ent)
	ent._jump = true
	return true
end

function appliers.wait(ent, args)
	ent._move = nil
	ent._wait = args.ticks
	return true
end

local function protection_name(ent)
	return ent.owner or ""
end

function appliers.dig(ent, args)
	local node = core.get_node_or_nil(args.pos)
	if not node or node.name == "ignore" then
		return false, "node at " .. core.pos_to_string(args.pos) .. " is not loaded"
	end
	if node.name == "air" then
		return false, "nothing to dig at " .. core.pos_to_string(args.pos)
	end
	if core.is_protected(args.pos, protection_name(ent)) then
		return false, "node at " .. core.pos_to_string(args.pos) .. " is protected"
	end
	local def = core.registered_nodes[node.name]
	if def and def.diggable == false then
		return false, node.name .. " is not diggable"
	end
	core.remove_node(args.pos)
	ctx.emit("node.dig", { kind = "agent", name = ent.luanti_tune_id }, args.pos, { node = node.name },
		{ kind = "node", name = node.name, pos = args.pos })
	return true
end

function appliers.place(ent, args)
	if not core.registered_nodes[args.item] or args.item == "air" or args.item == "ignore" then
		return false, "'" .. args.item .. "' is not a placeable node"
	end
	local node = core.get_node_or_nil(args.pos)
	if not node or node.name == "ignore" then
		return false, "node at " .. core.pos_to_string(args.pos) .. " is not loaded"
	end
	local def = core.registered_nodes[node.name]
	if node.name ~= "air" and not (def and def.buildable_to) then
		return false, "position " .. core.pos_to_string(args.pos) .. " is occupied by " .. node.name
	end
	if core.is_protected(args.pos, protection_name(ent)) then
		return false, "node at " .. core.pos_to_string(args.pos) .. " is protected"
	end
	core.set_node(args.pos, { name = args.item })
	ctx.emit("node.place", { kind = "agent", name = ent.luanti_tune_id }, args.pos, { node = args.item },
		{ kind = "node", name = args.item, pos = args.pos })
	return true
end

function appliers.attack(ent, args)
	local target = core.get_player_by_name(args.target)
	if not target then
		local other = registry[args.target]
		target = other and other.object or nil
	end
	if not target or target == ent.object then
		return false, "attack target '" .. args.target .. "' not found"
	end
	local p, q = ent.object:get_pos(), target:get_pos()
	local d = actions.distance(p, q)
	if d > actions.LIMITS.reach then
		return false, string.format("attack target '%s' is %.1f nodes away (limit %g)", args.target, d,
			actions.LIMITS.reach)
	end
	local dir = { x = (q.x - p.x) / math.max(d, 0.01), y = (q.y - p.y) / math.max(d, 0.01),
		z = (q.z - p.z) / math.max(d, 0.01) }
	target:punch(ent.object, 1.0, { full_punch_interval = 1.0, damage_groups = { fleshy = 2 } }, dir)
	return true
end

function appliers.chat(ent, args)
	local text = "<" .. ent.luanti_tune_id .. "> " .. args.message
	if args.to then
		if not core.get_player_by_name(args.to) then
			return false, "chat recipient '" .. args.to .. "' is not online"
		end
		core.chat_send_player(args.to, text)
	else
		core.chat_send_all(text)
	end
	return true
end

--- Validates and applies one action from the service; reports the outcome as agent.result.
--- Never raises: a bad action is refused with a logged reason.
function agents.apply(action)
	local norm, reason = actions.validate(action, { agent_pos = agents.pos })
	local ok = false
	local ent
	if norm then
		ent = registry[norm.agent]
		local success, applied, why = pcall(appliers[norm.type], ent, norm.args)
		if not success then
			reason = "error applying action: " .. tostring(applied)
		elseif not applied then
			reason = why or "refused"
		else
			ok = true
		end
	end
	local atype = type(action) == "table" and type(action.type) == "string" and action.type:sub(1, 32) or "invalid"
	local name = type(action) == "table" and action.agent
	if not actions.valid_name(name) then
		name = "unknown"
	end
	if not ok then
		ctx.ratelog:log_key("refused:" .. atype, "warning",
			string.format("[luanti_tune] refused action %s for agent %s: %s", atype, name, reason))
	end
	local result = { action = atype, ok = ok, reason = reason }
	if ent then
		ent._last_result = result
	end
	ctx.emit("agent.result", { kind = "agent", name = name }, ent and ent.object:get_pos() or nil, result)
	return ok, reason
end

return agents
