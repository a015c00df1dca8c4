-- Validation of actions returned by the service (pure logic, no engine calls).
--
-- validate(action, ctx) returns a normalised action table, or nil and a reason. ctx.agent_pos(name)
-- returns an agent's position or nil if the agent does not exist. Engine-dependent checks
-- (protection, registered items, attack targets) happen when the action is applied.

local actions = {}

actions.TYPES = { "move", "move_to", "turn", "jump", "dig", "place", "attack", "chat", "wait" }
local KNOWN = {}
for _, t in ipairs(actions.TYPES) do
	KNOWN[t] = true
end

actions.LIMITS = {
	map = 31000, -- Luanti map limit per axis
	max_dir_length = 1.5, -- a direction, not a displacement
	move_to_range = 64, -- farthest move_to target from the agent
	reach = 5, -- dig/place/attack distance
	max_message = 512,
	max_wait = 1000,
}

local NAME_PATTERN = "^[A-Za-z0-9_.:%-]+$"

function actions.valid_name(s)
	return type(s) == "string" and #s >= 1 and #s <= 64 and s:match(NAME_PATTERN) ~= nil
end

local function finite(x)
	return type(x) == "number" and x == x and x ~= math.huge and x ~= -math.huge
end

local function check_vec(v, field)
	if type(v) ~= "table" then
		return nil, field .. " must be an object {x, y, z}"
	end
	for _, k in ipairs({ "x", "y", "z" }) do
		if not finite(v[k]) then
			return nil, field .. "." .. k .. " must be a finite number"
		end
		if math.abs(v[k]) > actions.LIMITS.map then
			return nil, field .. "." .. k .. " is outside the map"
		end
	end
	return { x = v.x, y = v.y, z = v.z }
end

local function check_range(x, lo, hi, field, default)
	if x == nil then
		return default
	end
	if not finite(x) then
		return nil, field .. " must be a finite number"
	end
	if x < lo or x > hi then
		return nil, string.format("%s=%g is out of range [%g, %g]", field, x, lo, hi)
	end
	return x
end

local function distance(a, b)
	local dx, dy, dz = a.x - b.x, a.y - b.y, a.z - b.z
	return math.sqrt(dx * dx + dy * dy + dz * dz)
end
actions.distance = distance

local function within(agent_pos, pos, limit, field)
	local d = distance(agent_pos, pos)
	if d > limit then
		return nil, string.format("%s is %.1f nodes away (limit %g)", field, d, limit)
	end
	return true
end

local checkers = {}

function checkers.move(args)
	local dir, err = check_vec(args.dir, "args.dir")
	if not dir then
		return nil, err
	end
	local len = math.sqrt(dir.x * dir.x + dir.y * dir.y + dir.z * dir.z)
	if len > actions.LIMITS.max_dir_length then
		return nil, string.format("args.dir has length %.3g (limit %g)", len, actions.LIMITS.max_dir_length)
	end
	local speed
	speed, err = check_range(args.speed, 0, 1, "args.speed", 1)
	if not speed then
		return nil, err
	end
	return { dir = dir, speed = speed }
end

function checkers.move_to(args, agent_pos)
	local pos, err = check_vec(args.pos, "args.pos")
	if not pos then
		return nil, err
	end
	local ok
	ok, err = within(agent_pos, pos, actions.LIMITS.move_to_range, "args.pos")
	if not ok then
		return nil, err
	end
	local speed
	speed, err = check_range(args.speed, 0, 1, "args.speed", 1)
	if not speed then
		return nil, err
	end
	return { pos = pos, speed = speed }
end

function checkers.turn(args)
	if args.yaw == nil then
		return nil, "args.yaw is required"
	end
	local yaw, err = check_range(args.yaw, -2 * math.pi, 2 * math.pi, "args.yaw")
	if not yaw then
		return nil, err
	end
	local pitch
	pitch, err = check_range(args.pitch, -math.pi / 2, math.pi / 2, "args.pitch", 0)
	if not pitch then
		return nil, err
	end
	return { yaw = yaw, pitch = pitch }
end

function checkers.jump()
	return {}
end

local function node_args(args, agent_pos)
	local pos, err = check_vec(args.pos, "args.pos")
	if not pos then
		return nil, err
	end
	pos = { x = math.floor(pos.x + 0.5), y = math.floor(pos.y + 0.5), z = math.floor(pos.z + 0.5) }
	local ok
	ok, err = within(agent_pos, pos, actions.LIMITS.reach, "args.pos")
	if not ok then
		return nil, err
	end
	return pos
end

function checkers.dig(args, agent_pos)
	local pos, err = node_args(args, agent_pos)
	if not pos then
		return nil, err
	end
	return { pos = pos }
end

function checkers.place(args, agent_pos)
	local pos, err = node_args(args, agent_pos)
	if not pos then
		return nil, err
	end
	if type(args.item) ~= "string" or #args.item < 1 or #args.item > 128 then
		return nil, "args.item must be an item name"
	end
	return { pos = pos, item = args.item }
end

function checkers.attack(args)
	if not actions.valid_name(args.target) then
		return nil, "args.target must be a player or agent name"
	end
	return { target = args.target }
end

function checkers.chat(args)
	local m = args.message
	if type(m) ~= "string" or #m < 1 then
		return nil, "args.message must be a non-empty string"
	end
	if #m > actions.LIMITS.max_message then
		return nil, string.format("args.message is %d characters (limit %d)", #m, actions.LIMITS.max_message)
	end
	if args.to ~= nil and not actions.valid_name(args.to) then
		return nil, "args.to must be a player name"
	end
	return { message = m, to = args.to }
end

function checkers.wait(args)
	local ticks = args.ticks
	if ticks == nil then
		return { ticks = 1 }
	end
	if not finite(ticks) or ticks ~= math.floor(ticks) then
		return nil, "args.ticks must be an integer"
	end
	if ticks < 1 or ticks > actions.LIMITS.max_wait then
		return nil, string.format("args.ticks=%d is out of range [1, %d]", ticks, actions.LIMITS.max_wait)
	end
	return { ticks = ticks }
end

--- Returns {agent=, type=, args=} or nil, reason.
function actions.validate(action, ctx)
	if type(action) ~= "table" then
		return nil, "action must be an object"
	end
	if not actions.valid_name(action.agent) then
		return nil, "action.agent must be an agent name"
	end
	if type(action.type) ~= "string" or not KNOWN[action.type] then
		return nil, string.format("unknown action type %q", tostring(action.type))
	end
	local agent_pos = ctx.agent_pos(action.agent)
	if not agent_pos then
		return nil, string.format("unknown agent %q", action.agent)
	end
	local args = action.args
	if args == nil then
		args = {}
	end
	if type(args) ~= "table" then
		return nil, "action.args must be an object"
	end
	local norm, err = checkers[action.type](args, agent_pos)
	if not norm then
		return nil, err
	end
	return { agent = action.agent, type = action.type, args = norm }
end

return actions
