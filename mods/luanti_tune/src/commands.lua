-- Chat commands: /tune_spawn, /tune_clear, /tune_status.

local commands = {}

function commands.register(agents, status)
	core.register_privilege("luanti_tune", {
		description = "Can spawn and remove luanti_tune agents",
		give_to_singleplayer = true,
		give_to_admin = true,
	})

	core.register_chatcommand("tune_spawn", {
		params = "<pursuit|navigation|npc|team> [count]",
		description = "Spawn model-driven agents in front of you",
		privs = { luanti_tune = true },
		func = function(name, param)
			local player = core.get_player_by_name(name)
			if not player then
				return false, "You must be in the game."
			end
			local kind, count = param:match("^%s*(%S+)%s*(%d*)%s*$")
			if not kind then
				return false, "Usage: /tune_spawn <pursuit|navigation|npc|team> [count]"
			end
			count = math.max(1, math.min(50, tonumber(count) or 1))
			local pos = vector.add(player:get_pos(), vector.multiply(player:get_look_dir(), 3))
			pos.y = player:get_pos().y + 0.5
			local ids = {}
			for i = 1, count do
				local p = { x = pos.x + (i - 1) % 5, y = pos.y, z = pos.z + math.floor((i - 1) / 5) }
				local id, err = agents.spawn(kind, p, { owner = name })
				if not id then
					return false, err
				end
				ids[#ids + 1] = id
			end
			return true, "Spawned " .. table.concat(ids, ", ")
		end,
	})

	core.register_chatcommand("tune_clear", {
		description = "Remove all luanti_tune agents",
		privs = { luanti_tune = true },
		func = function()
			local ids = {}
			for id in agents.each() do
				ids[#ids + 1] = id
			end
			for _, id in ipairs(ids) do
				agents.remove(id)
			end
			return true, "Removed " .. #ids .. " agents"
		end,
	})

	core.register_chatcommand("tune_status", {
		description = "Show luanti_tune delivery and agent status",
		func = function()
			local s = status()
			return true, string.format("source %s, queue %d, sent %d, dropped %d, failures %d, agents %d, %s",
				s.source, s.queue, s.delivery.sent, s.delivery.dropped, s.delivery.failures, s.agents,
				s.service_down and "service DOWN" or "service up")
		end,
	})
end

return commands
