-- Builds `luanti.event/1` events (pure logic; the engine hooks are in hooks.lua).

local json = luanti_tune.require("json")

local Events = {}
Events.__index = Events

Events.SCHEMA = "luanti.event/1"
Events.TYPES = {
	"player.join", "player.leave", "player.move", "player.die", "player.hp", "player.punch",
	"node.dig", "node.place", "node.punch", "chat.msg", "craft", "inventory.action",
	"agent.obs", "agent.act", "agent.track", "agent.result", "reward", "system.start", "system.dropped",
}
local KNOWN = {}
for _, t in ipairs(Events.TYPES) do
	KNOWN[t] = true
end

local function round3(x)
	if x ~= x or x == math.huge or x == -math.huge then
		return 0
	end
	return math.floor(x * 1000 + 0.5) / 1000
end
Events.round3 = round3

--- A position/vector as a fresh {x, y, z} table rounded to 1/1000 node, or nil.
function Events.vec(v)
	if v == nil then
		return nil
	end
	return { x = round3(v.x), y = round3(v.y), z = round3(v.z) }
end

--- clock: {wall_us=fn, game_s=fn, tick=fn}; seq: object with take().
function Events.new(source, seq, clock)
	return setmetatable({ source = source, seq = seq, clock = clock }, Events)
end

--- Builds one event. actor = {kind, name}; pos, target optional; payload defaults to {}.
function Events:make(etype, actor, pos, payload, target)
	assert(KNOWN[etype], "unknown event type " .. tostring(etype))
	local n = self.seq:take()
	local ev = {
		schema = Events.SCHEMA,
		event_id = self.source .. "-" .. string.format("%d", n),
		source = self.source,
		seq = n,
		type = etype,
		time = { wall_us = math.floor(self.clock.wall_us()), game_s = round3(self.clock.game_s()),
			tick = self.clock.tick() },
		actor = actor,
		payload = payload or json.object(),
	}
	if pos then
		ev.pos = Events.vec(pos)
	end
	if target then
		ev.target = target
	end
	return ev
end

--- Encodes a batch as the body of POST /v1/events.
function Events.encode_batch(events)
	return json.encode({ events = json.array(events) })
end

return Events
