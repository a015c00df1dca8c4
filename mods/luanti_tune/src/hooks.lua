-- Engine callbacks that turn player actions and world changes into events.
-- emit(type, actor, pos, payload, target) queues one event; nothing here blocks or raises.

local json = luanti_tune.require("json")
local actions = luanti_tune.require("actions")

local hooks = {}

local MAX_CHAT = 4096
local CONTROL_KEYS = { "up", "down", "left", "right", "jump", "aux1", "sneak", "dig", "place", "zoom" }

local function player_actor(player)
	return { kind = "player", name = player:get_player_name() }
end

--- Actor table for any ObjectRef (player, agent entity, other entity) or nil.
function hooks.object_actor(obj)
	if obj == nil then
		return nil
	end
	if obj:is_player() then
		return player_actor(obj)
	end
	local ent = obj:get_luaentity()
	if ent and ent.luanti_tune_id then
		return { kind = "agent", name = ent.luanti_tune_id }
	end
	if ent and actions.valid_name(ent.name) then
		return { kind = "mob", name = ent.name }
	end
	return nil
end

local WORLD = { kind = "server", name = "world" }

local function wielded(obj)
	if obj and obj:is_player() then
		local name = obj:get_wielded_item():get_name()
		if name ~= "" then
			return name
		end
	end
	return nil
end

local function reason_type(reason)
	if type(reason) == "table" and type(reason.type) == "string" then
		return reason.type:sub(1, 64)
	end
	return nil
end

local function node_target(pos, name)
	return { kind = "node", name = name, pos = { x = pos.x, y = pos.y, z = pos.z } }
end

--- Wraps a callback so that an unexpected error is logged (opts.on_error) instead of crashing
--- the server; the callback's return value is dropped (no hook changes the game's behaviour).
local function guarded(fn, on_error)
	return function(...)
		local ok, err = pcall(fn, ...)
		if not ok and on_error then
			on_error(err)
		end
	end
end

--- Registers all hooks. emit: function(type, actor, pos, payload, target); opts.move_sample_rate;
--- opts.on_chat(name, message, to, text) is told about chat lines (for NPC observations and
--- dialogue); opts.address(message) -> npc, text names the NPC a line is addressed to; opts.on_error(err).
function hooks.register(emit, opts)
	local function wrap(register)
		return function(fn, ...)
			register(guarded(fn, opts.on_error), ...)
		end
	end
	local core = setmetatable({
		register_on_joinplayer = wrap(core.register_on_joinplayer),
		register_on_leaveplayer = wrap(core.register_on_leaveplayer),
		register_on_dieplayer = wrap(core.register_on_dieplayer),
		register_on_player_hpchange = wrap(core.register_on_player_hpchange),
		register_on_punchplayer = wrap(core.register_on_punchplayer),
		register_on_dignode = wrap(core.register_on_dignode),
		register_on_placenode = wrap(core.register_on_placenode),
		register_on_punchnode = wrap(core.register_on_punchnode),
		register_on_chat_message = wrap(core.register_on_chat_message),
		register_on_craft = wrap(core.register_on_craft),
		register_on_player_inventory_action = wrap(core.register_on_player_inventory_action),
	}, { __index = core })
	core.register_on_joinplayer(function(player, last_login)
		emit("player.join", player_actor(player), player:get_pos(), { new_player = last_login == nil })
	end)

	core.register_on_leaveplayer(function(player, timed_out)
		emit("player.leave", player_actor(player), player:get_pos(), { timed_out = timed_out and true or false })
	end)

	core.register_on_dieplayer(function(player, reason)
		local killer = type(reason) == "table" and hooks.object_actor(reason.object) or nil
		emit("player.die", player_actor(player), player:get_pos(),
			{ reason = reason_type(reason), killer = killer and killer.name or nil })
	end)

	core.register_on_player_hpchange(function(player, hp_change, reason)
		local hp = math.max(0, math.min(1000, player:get_hp() + hp_change))
		emit("player.hp", player_actor(player), player:get_pos(),
			{ hp = hp, delta = hp_change, reason = reason_type(reason) })
	end, false)

	core.register_on_punchplayer(function(player, hitter, _, _, _, damage)
		local actor = hooks.object_actor(hitter) or WORLD
		emit("player.punch", actor, player:get_pos(), { damage = damage or 0, tool = wielded(hitter) },
			{ kind = "player", name = player:get_player_name() })
	end)

	core.register_on_dignode(function(pos, oldnode, digger)
		local actor = hooks.object_actor(digger) or WORLD
		emit("node.dig", actor, pos, { node = oldnode.name, item = wielded(digger) }, node_target(pos, oldnode.name))
	end)

	core.register_on_placenode(function(pos, newnode, placer, _, itemstack)
		local actor = hooks.object_actor(placer) or WORLD
		local item = itemstack and itemstack:get_name() or nil
		emit("node.place", actor, pos, { node = newnode.name, item = item ~= "" and item or nil },
			node_target(pos, newnode.name))
	end)

	core.register_on_punchnode(function(pos, node, puncher)
		local actor = hooks.object_actor(puncher) or WORLD
		emit("node.punch", actor, pos, { node = node.name, item = wielded(puncher) }, node_target(pos, node.name))
	end)

	core.register_on_chat_message(function(name, message)
		local player = core.get_player_by_name(name)
		-- a line addressed to an NPC ("@npc-1 hi") records the NPC as payload.to
		local to, text
		if opts.address then
			to, text = opts.address(message)
		end
		emit("chat.msg", { kind = "player", name = name }, player and player:get_pos() or nil,
			{ message = message:sub(1, MAX_CHAT), to = to })
		if opts.on_chat then
			opts.on_chat(name, message, to, text)
		end
	end)

	core.register_on_craft(function(itemstack, player)
		local count = itemstack:get_count()
		if player and count >= 1 then
			emit("craft", player_actor(player), player:get_pos(), { item = itemstack:get_name(), count = count })
		end
	end)

	core.register_on_player_inventory_action(function(player, action, inventory, info)
		local payload
		if action == "move" then
			local stack = inventory:get_stack(info.to_list, info.to_index)
			payload = { action = "move", list = info.to_list, item = stack:get_name(), count = info.count or 0 }
		elseif action == "put" or action == "take" then
			payload = { action = action, list = info.listname, item = info.stack:get_name(),
				count = info.stack:get_count() }
		else
			return
		end
		if payload.item == "" then
			payload.item = nil
		end
		emit("inventory.action", player_actor(player), player:get_pos(), payload)
	end)

	hooks.register_movement(emit, opts.move_sample_rate, opts.on_error)
end

local function controls_of(player)
	local ctl = player:get_player_control()
	local out = json.object()
	local any = false
	for _, k in ipairs(CONTROL_KEYS) do
		if ctl[k] then
			out[k] = true
			any = true
		end
	end
	return out, any
end

--- Samples every connected player's movement rate times per second; an idle player (same
--- position, no key pressed) is not sampled again until it moves.
function hooks.register_movement(emit, rate, on_error)
	if not rate or rate <= 0 then
		return
	end
	local period = 1 / rate
	local acc = 0
	local last = {}
	core.register_globalstep(guarded(function(dtime)
		acc = acc + dtime
		if acc < period then
			return
		end
		acc = 0
		for _, player in ipairs(core.get_connected_players()) do
			local name = player:get_player_name()
			local pos = player:get_pos()
			local controls, pressed = controls_of(player)
			local prev = last[name]
			local moved = not prev or math.abs(prev.x - pos.x) + math.abs(prev.y - pos.y) + math.abs(prev.z - pos.z) > 0.01
			if moved or pressed then
				last[name] = pos
				emit("player.move", player_actor(player), pos, {
					velocity = player:get_velocity() or { x = 0, y = 0, z = 0 },
					yaw = player:get_look_horizontal(),
					pitch = player:get_look_vertical(),
					controls = controls,
				})
			end
		end
	end, on_error))
	core.register_on_leaveplayer(function(player)
		last[player:get_player_name()] = nil
	end)
end

return hooks
