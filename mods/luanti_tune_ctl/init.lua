-- Test/benchmark helper for luanti-tune: lets an outside process drive a headless server.
-- Reads new lines of WORLD/luanti_tune_ctl.txt every 0.2 s:
--   spawn <kind> <x> <y> <z>       spawn an agent
--   spawn_many <kind> <n> <x> <y> <z> [<gx> <gy> <gz>]  spawn n agents on a grid (with a goal)
--   clear                          remove all agents
--   protect <x1> <y1> <z1> <x2> <y2> <z2>  mark a box as protected (core.is_protected)
--   set_node <x> <y> <z> <name>
--   teleport <player> <x> <y> <z>  move a connected player
--   save                           write the status file now
--   chat <player> <message...>     run the chat handlers as for a chat line the player sent
-- and writes WORLD/luanti_tune_ctl_state.json (agents' positions, step count) every 0.2 s.

local world = core.get_worldpath()
local cmd_path = world .. "/luanti_tune_ctl.txt"
local state_path = world .. "/luanti_tune_ctl_state.json"
local done_lines = 0
local boxes = {}
local steps = 0

local old_is_protected = core.is_protected
function core.is_protected(pos, name) -- luacheck: ignore 122
	for _, b in ipairs(boxes) do
		if pos.x >= b[1] and pos.y >= b[2] and pos.z >= b[3] and pos.x <= b[4] and pos.y <= b[5] and pos.z <= b[6] then
			return true
		end
	end
	return old_is_protected(pos, name)
end

local function words(line)
	local out = {}
	for w in line:gmatch("%S+") do
		out[#out + 1] = w
	end
	return out
end

local function run(line)
	local w = words(line)
	local c = w[1]
	if c == "spawn" then
		luanti_tune.spawn_agent(w[2], { x = tonumber(w[3]), y = tonumber(w[4]), z = tonumber(w[5]) })
	elseif c == "spawn_many" then
		local n = tonumber(w[3])
		local side = math.ceil(math.sqrt(n))
		local goal = w[9] and { x = tonumber(w[7]), y = tonumber(w[8]), z = tonumber(w[9]) } or nil
		for i = 0, n - 1 do
			luanti_tune.spawn_agent(w[2], { x = tonumber(w[4]) + (i % side) * 1.5, y = tonumber(w[5]),
				z = tonumber(w[6]) + math.floor(i / side) * 1.5 }, { goal = goal })
		end
	elseif c == "clear" then
		local ids = {}
		for id in pairs(luanti_tune.list_agents()) do
			ids[#ids + 1] = id
		end
		for _, id in ipairs(ids) do
			luanti_tune.remove_agent(id)
		end
	elseif c == "protect" then
		local b = {}
		for i = 2, 7 do
			b[#b + 1] = tonumber(w[i])
		end
		boxes[#boxes + 1] = b
	elseif c == "set_node" then
		core.set_node({ x = tonumber(w[2]), y = tonumber(w[3]), z = tonumber(w[4]) }, { name = w[5] })
	elseif c == "teleport" then
		local player = core.get_player_by_name(w[2] or "")
		if player then
			player:set_pos({ x = tonumber(w[3]), y = tonumber(w[4]), z = tonumber(w[5]) })
		end
	elseif c == "chat" then
		-- like the engine: registered on_chat_message callbacks until one returns true
		local message = line:match("^%s*chat%s+%S+%s+(.-)%s*$") or ""
		for _, fn in ipairs(core.registered_on_chat_messages) do
			if fn(w[2], message) then
				break
			end
		end
	elseif c == "save" then
		luanti_tune.write_status()
	elseif c then
		core.log("warning", "[luanti_tune_ctl] unknown command " .. c)
	end
end

local acc = 0
core.register_globalstep(function(dtime)
	steps = steps + 1
	acc = acc + dtime
	if acc < 0.2 then
		return
	end
	acc = 0
	local f = io.open(cmd_path, "r")
	if f then
		local n = 0
		for line in f:lines() do
			n = n + 1
			if n > done_lines then
				done_lines = n
				local ok, err = pcall(run, line)
				if not ok then
					core.log("error", "[luanti_tune_ctl] " .. line .. ": " .. tostring(err))
				end
			end
		end
		f:close()
	end
	local agents = {}
	for id, ent in pairs(luanti_tune.list_agents()) do
		local p = ent.object:get_pos()
		if p then
			agents[id] = { pos = { x = p.x, y = p.y, z = p.z }, kind = ent.kind, last_result = ent._last_result }
		end
	end
	local players = {}
	for _, player in ipairs(core.get_connected_players()) do
		local p = player:get_pos()
		players[player:get_player_name()] = { pos = { x = p.x, y = p.y, z = p.z } }
	end
	local state = { steps = steps, agents = luanti_tune.json.object(agents), players = luanti_tune.json.object(players),
		status = luanti_tune.status() }
	core.safe_file_write(state_path, luanti_tune.json.encode(state))
end)
