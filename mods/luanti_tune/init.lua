-- luanti_tune: game events out to the luanti-tune service, model-driven agents in.
-- See README.md in this directory and settingtypes.txt for the settings.

local modname = core.get_current_modname()
local modpath = core.get_modpath(modname)

luanti_tune = { version = "0.1.0" }

local loaded = {}
--- Loads src/<name>.lua once (mods cannot use require() under mod security).
function luanti_tune.require(name)
	if loaded[name] == nil then
		loaded[name] = dofile(modpath .. "/src/" .. name .. ".lua")
	end
	return loaded[name]
end

-- Both must be requested from the main scope at load time.
local http = core.request_http_api and core.request_http_api()
local storage = core.get_mod_storage()

local config = luanti_tune.require("config").read(core.settings, function(msg)
	core.log("warning", msg)
end)
local json = luanti_tune.require("json")
local Seq = luanti_tune.require("seq")
local Events = luanti_tune.require("events")
local Delivery = luanti_tune.require("delivery")
local RateLog = luanti_tune.require("ratelog")
local hooks = luanti_tune.require("hooks")
local agents = luanti_tune.require("agents")
local act = luanti_tune.require("act")
local stats = luanti_tune.require("stats")

local function log(level, msg)
	core.log(level, msg)
end
local function now()
	return core.get_us_time() / 1e6
end

-- ------------------------------------------------------------------ identity and clock

local function new_source_id()
	math.randomseed(os.time() + core.get_us_time())
	local hex = {}
	for i = 1, 12 do
		hex[i] = string.format("%x", math.random(0, 15))
	end
	return "luanti-" .. table.concat(hex)
end

local source = config.source
if source ~= "" and not (#source <= 128 and source:match("^[A-Za-z0-9_.:%-]+$")) then
	log("error", "[luanti_tune] luanti_tune.source must be 1-128 characters of A-Z a-z 0-9 _ . : - ; ignoring it")
	source = ""
end
if source == "" then
	source = storage:get_string("source")
	if source == "" then
		source = new_source_id()
		storage:set_string("source", source)
	end
end
luanti_tune.source = source

local wall0, us0 = os.time(), core.get_us_time()
local game0 = core.get_gametime and core.get_gametime() or 0
local tick, game_elapsed = 0, 0
local clock = {
	wall_us = function()
		return wall0 * 1e6 + (core.get_us_time() - us0)
	end,
	game_s = function()
		return (game0 or 0) + game_elapsed
	end,
	tick = function()
		return tick
	end,
}

local seq = Seq.new(storage, os.time(), 1000)
local events = Events.new(source, seq, clock)

-- ------------------------------------------------------------------ delivery

local hook_time = setmetatable({}, { __mode = "k" })
local function noop_fetch(_, callback)
	callback({ succeeded = false, code = 0, completed = true })
end

local delivery
delivery = Delivery.new({
	fetch = http and http.fetch or noop_fetch,
	url = config.service_url .. "/v1/events",
	token = config.token,
	batch_size = config.batch_size,
	flush_interval = config.flush_interval,
	queue_bound = config.queue_bound,
	backoff_max = config.backoff_max,
	timeout = config.http_timeout,
	now = now,
	log = log,
	encode = Events.encode_batch,
	on_ack = function(batch)
		local t = core.get_us_time()
		for _, ev in ipairs(batch) do
			local t0 = hook_time[ev]
			if t0 then
				stats.latency(t - t0)
			end
		end
	end,
	on_dropped = function(n)
		log("warning", string.format("[luanti_tune] %d events were dropped while the service was unavailable", n))
		luanti_tune.emit("system.dropped", { kind = "server", name = "luanti_tune" }, nil,
			{ dropped = n, reason = "queue full or batch refused" })
	end,
})

--- Queues one event. Never raises: a failure to build an event is logged (rate-limited).
local emit_errors = RateLog.new(log, now, 30)
function luanti_tune.emit(etype, actor, pos, payload, target)
	local ok, ev = pcall(events.make, events, etype, actor, pos, payload, target)
	if not ok then
		emit_errors:log_key("emit:" .. tostring(etype), "error", "[luanti_tune] cannot build event: " .. tostring(ev))
		return
	end
	hook_time[ev] = core.get_us_time()
	delivery:push(ev)
end

if not http then
	log("warning", "[luanti_tune] no HTTP access: add 'luanti_tune' to secure.http_mods in minetest.conf; "
		.. "events are counted but not delivered")
end

-- ------------------------------------------------------------------ hooks, agents, decisions

local ratelog = RateLog.new(log, now, 30)
local talk -- NPC dialogue, below
agents.init({ storage = storage, emit = luanti_tune.emit, ratelog = ratelog, log = log,
	on_rightclick = function(ent, clicker)
		talk.show_form(ent, clicker)
	end })

local decisions = act.new({
	fetch = http and http.fetch or noop_fetch, cfg = config, now = now, log = log, ratelog = ratelog,
	agents = agents, emit = luanti_tune.emit, tick = clock.tick,
})

-- NPC dialogue: chat addressed to an NPC or the right-click dialog asks the chat endpoint; the
-- NPC answers in chat when the reply arrives (see src/dialogue.lua).
local Dialogue = luanti_tune.require("dialogue")
local function is_npc(name)
	local ent = agents.get(name)
	return ent ~= nil and ent.kind == "npc"
end
local dialogue = Dialogue.new({
	fetch = http and http.fetch or noop_fetch, now = now, log = log, ratelog = ratelog, emit = luanti_tune.emit,
	cfg = { enabled = config.dialogue_enabled, url = config.dialogue_url, token = config.token,
		max_tokens = config.dialogue_max_tokens, timeout = config.dialogue_timeout,
		max_inflight = config.dialogue_max_inflight, fallback = config.dialogue_fallback },
	say = function(npc, _, text)
		core.chat_send_all("<" .. npc .. "> " .. text)
	end,
	npc_pos = agents.pos,
})
local FORM = "luanti_tune:talk"
local talking = {} -- player name -> NPC name of the open dialog
talk = {
	show_form = function(ent, clicker)
		if ent.kind ~= "npc" or not config.dialogue_enabled then
			return
		end
		local npc = ent.luanti_tune_id
		local name = clicker:get_player_name()
		talking[name] = npc
		core.show_formspec(name, FORM, "formspec_version[4]size[9,2.6]"
			.. "field[0.4,0.8;8.2,0.7;message;" .. core.formspec_escape("Say to " .. npc .. ":") .. ";]"
			.. "field_close_on_enter[message;true]button_exit[3.5,1.7;2,0.7;send;Say]")
	end,
}
core.register_on_player_receive_fields(function(player, formname, fields)
	if formname ~= FORM then
		return false
	end
	local name = player:get_player_name()
	local npc = talking[name]
	talking[name] = nil
	local text = type(fields.message) == "string" and fields.message:gsub("^%s+", ""):gsub("%s+$", "") or ""
	if npc and text ~= "" and (fields.send or fields.key_enter) and is_npc(npc) then
		local ok, err = pcall(function()
			core.chat_send_all("<" .. name .. "> @" .. npc .. " " .. text)
			luanti_tune.emit("chat.msg", { kind = "player", name = name }, player:get_pos(),
				{ message = text:sub(1, 4096), to = npc })
			dialogue:ask(npc, name, text)
		end)
		if not ok then
			ratelog:log_key("talk_form", "error", "[luanti_tune] NPC dialog failed: " .. tostring(err))
		end
	end
	return true
end)
core.register_on_leaveplayer(function(player)
	talking[player:get_player_name()] = nil
end)

hooks.register(luanti_tune.emit, {
	move_sample_rate = config.move_sample_rate,
	on_error = function(err)
		ratelog:log_key("hook_error", "error", "[luanti_tune] error in an event hook: " .. tostring(err))
	end,
	address = function(message)
		return Dialogue.parse_address(message, is_npc)
	end,
	on_chat = function(name, message, to, text)
		decisions:heard(name, message)
		if to then
			dialogue:ask(to, name, text)
		end
	end,
})

local function step_part(name, fn, ...)
	local ok, err = pcall(fn, ...)
	if not ok then
		ratelog:log_key("step:" .. name, "error", "[luanti_tune] " .. name .. " step failed: " .. tostring(err))
	end
end

core.register_globalstep(function(dtime)
	tick = tick + 1
	game_elapsed = game_elapsed + dtime
	stats.step(dtime)
	step_part("decision", decisions.step, decisions)
	step_part("dialogue", dialogue.step, dialogue)
	step_part("delivery", delivery.step, delivery)
end)

luanti_tune.emit("system.start", { kind = "server", name = "luanti_tune" }, nil,
	{ version = luanti_tune.version, world = core.get_worldpath():match("([^/\\]+)$") })

-- ------------------------------------------------------------------ public API for other mods

luanti_tune.spawn_agent = agents.spawn
luanti_tune.remove_agent = agents.remove
luanti_tune.get_agent = agents.get
luanti_tune.agent_count = agents.count
luanti_tune.apply_action = agents.apply
luanti_tune.write_status = function()
	stats.write()
end
function luanti_tune.list_agents()
	local out = {}
	for id, ent in agents.each() do
		out[id] = ent
	end
	return out
end
luanti_tune.json = json
function luanti_tune.set_goal(id, pos)
	local ent = agents.get(id)
	if not ent then
		return false
	end
	ent.goal = pos and { x = pos.x, y = pos.y, z = pos.z } or nil
	return true
end

function luanti_tune.status()
	return {
		source = source,
		next_seq = seq.next,
		tick = tick,
		queue = delivery.queue:size(),
		pending = delivery:pending(),
		delivery = delivery.stats,
		service_down = delivery.down,
		agents = agents.count(),
		act = decisions.stats,
		dialogue = dialogue.stats,
		steps = stats.snapshot(),
	}
end

stats.start(config.stats_interval, core.get_worldpath() .. "/luanti_tune_stats.json", luanti_tune.status)
luanti_tune.require("commands").register(agents, luanti_tune.status)

-- Bring back agents that were active before a restart (see agents.save_blocks). The list is
-- saved every 5 s, not at shutdown (agents may already be unloaded then), and not while the
-- restored agents are still coming back.
local RESTORE_HOLD = agents.restore_blocks(20) > 0 and 20 or 0
local save_acc, since_start = 0, 0
core.register_globalstep(function(dtime)
	since_start = since_start + dtime
	save_acc = save_acc + dtime
	if save_acc >= 5 and since_start > RESTORE_HOLD then
		save_acc = 0
		agents.save_blocks()
	end
end)

core.register_on_shutdown(function()
	stats.write()
end)

log("action", "[luanti_tune] loaded: source " .. source .. ", service " .. config.service_url)
