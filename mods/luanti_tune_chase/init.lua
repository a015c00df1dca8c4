-- luanti_tune_chase: the real-game baseline of `luanti-tune bench chase` (a helper of that
-- benchmark and of its test; not for production servers).
--
-- A connected player is steered by the server with real velocity (player:add_velocity on a
-- slippery floor: the client keeps the velocity it is given and reports it, unlike a teleported
-- player), in a pattern none of the simulator's styles has: an orbit around the arena's centre
-- that reverses direction every 2-3 s (a seeded schedule) and dodges sideways when the chaser
-- comes within dodge_range. An episode spawns one chaser at a given offset from the player: a
-- luanti_tune pursuit agent (decided by the service) or a mobs_redo "dogfight" monster, both at
-- the agents' walk speed; it ends when their horizontal distance drops below catch_radius
-- (checked every server step) or at the time limit.
--
-- Commands (new lines of WORLD/luanti_tune_chase_cmd.txt, read every 0.2 s):
--   arena <x> <y> <z> <radius>     slippery floor nodes at height y within radius of x, z (air above)
--   episode <id> <agent|mob> <player> <dx> <dz> <limit_s> <seed>   queue an episode
--   play <id> <player> <seconds> <limit_s> <seed> <min_offset> <max_offset>   queue continuous play:
--       one pursuit agent chases the steered player for <seconds>; whenever it catches the player
--       (or after <limit_s>) it reappears min..max_offset nodes away (seeded) and chases on, as on
--       a live server (one agent, one continuous track of what it saw: what the service records
--       and its training worker learns from)
-- Every finished episode (or play) is appended as one JSON line to WORLD/luanti_tune_chase_episodes.jsonl;
-- WORLD/luanti_tune_chase_state.json holds the players, the arena, the queue and the decision stats.

-- luacheck: read globals mobs

local WORLD = core.get_worldpath()
local CMD_PATH = WORLD .. "/luanti_tune_chase_cmd.txt"
local OUT_PATH = WORLD .. "/luanti_tune_chase_episodes.jsonl"
local STATE_PATH = WORLD .. "/luanti_tune_chase_state.json"

local json = luanti_tune.json
--- The speed of both chasers: the luanti_tune agents' walk speed (a move at speed 1).
local SPEED = luanti_tune.require("agents").WALK_SPEED

local function setting(name, default)
	return tonumber(core.settings:get("luanti_tune_chase." .. name)) or default
end

local CFG = {
	catch_radius = setting("catch_radius", 1.2), -- horizontal distance that counts as caught
	player_speed = setting("player_speed", 4), -- nodes/s of the steered player
	orbit_radius = setting("orbit_radius", 6),
	reverse_min_s = setting("reverse_min_s", 2),
	reverse_max_s = setting("reverse_max_s", 3),
	dodge_range = setting("dodge_range", 3),
	dodge_s = setting("dodge_s", 0.6),
	dodge_cooldown_s = setting("dodge_cooldown_s", 0.4),
	sample_s = setting("sample_s", 0.2),
	settle_s = setting("settle_s", 1.2), -- after the teleport to the start, before steering
	preroll_s = setting("preroll_s", 1.5), -- steering before the chaser is spawned
	mob_reach = setting("mob_reach", 1.0), -- a dogfight mob stops (and punches) within its reach
	start_move = 0.3, -- a chaser has started moving once it is this far from where it appeared
}

-- ------------------------------------------------------------------ the arena and the chaser mob

local FLOOR = "luanti_tune_chase:ice"
core.register_node(FLOOR, {
	description = "Chase arena floor (slippery)",
	tiles = { "[combine:16x16^[noalpha^[colorize:#b0e0ff:255" },
	groups = { slippery = 100, cracky = 3 },
	is_ground_content = false,
})

local MOB = "luanti_tune_chase:dogfighter"
local MOB_TEX = "[combine:16x16^[noalpha^[colorize:#8030c0:255"
mobs:register_mob(MOB, {
	type = "monster",
	passive = false,
	attack_type = "dogfight",
	attack_players = true,
	pathfinding = 1,
	view_range = 16,
	run_velocity = SPEED,
	walk_velocity = SPEED / 2, -- only when wandering or stuck; the chase is at run_velocity
	reach = CFG.mob_reach,
	damage = 0,
	hp_min = 20,
	hp_max = 20,
	armor = 100,
	-- the agents' body: feet at the object's position
	collisionbox = { -0.3, 0, -0.3, 0.3, 1.7, 0.3 },
	visual = "cube",
	visual_size = { x = 0.6, y = 1.7 },
	textures = { { MOB_TEX, MOB_TEX, MOB_TEX, MOB_TEX, MOB_TEX, MOB_TEX } },
	walk_chance = 0, -- stands until it sees a player (no wandering off before the chase)
	fear_height = 0,
	water_damage = 0,
	lava_damage = 0,
	light_damage = 0,
	suffocation = 0,
	makes_footstep_sound = false,
})

local arena -- {x, y, z, r} once built

local function build_arena(c, r)
	local minp = { x = c.x - r, y = c.y - 1, z = c.z - r }
	local maxp = { x = c.x + r, y = c.y + 3, z = c.z + r }
	core.emerge_area(minp, maxp, function(_, _, remaining)
		if remaining > 0 then
			return
		end
		local vm = core.get_voxel_manip()
		local e1, e2 = vm:read_from_map(minp, maxp)
		local area = VoxelArea:new({ MinEdge = e1, MaxEdge = e2 })
		local data = vm:get_data()
		local floor, air = core.get_content_id(FLOOR), core.CONTENT_AIR
		for z = minp.z, maxp.z do
			for x = minp.x, maxp.x do
				if (x - c.x) ^ 2 + (z - c.z) ^ 2 <= r * r then
					data[area:index(x, c.y, z)] = floor
					for y = c.y + 1, maxp.y do
						data[area:index(x, y, z)] = air
					end
				end
			end
		end
		vm:set_data(data)
		vm:write_to_map(true)
		arena = { x = c.x, y = c.y, z = c.z, r = r }
		core.log("action", string.format("[luanti_tune_chase] arena of radius %d at %s", r, core.pos_to_string(c)))
	end)
end

-- ------------------------------------------------------------------ steering the player

local function now_s()
	return core.get_us_time() / 1e6
end

local function round3(x)
	return math.floor(x * 1000 + 0.5) / 1000
end

--- Park-Miller generator: the same schedule for the same seed (math.random is shared with mobs).
local function rng(seed)
	local s = math.floor(math.abs(seed or 1)) % 2147483646 + 1
	return function(lo, hi)
		s = (16807 * s) % 2147483647
		return lo + (hi - lo) * (s - 1) / 2147483646
	end
end

-- The client's horizontal velocity as believed here: add_velocity adds the difference to the
-- wanted velocity each step; the belief follows the velocity the client reports, slowly (the
-- report lags by a step or two, and the slippery floor barely slows the player by itself).
local drive = { vx = 0, vz = 0 }
local FEEDBACK = 0.15

local function drive_to(player, vx, vz)
	local v = player:get_velocity()
	drive.vx = drive.vx + FEEDBACK * (v.x - drive.vx)
	drive.vz = drive.vz + FEEDBACK * (v.z - drive.vz)
	local ax, az = vx - drive.vx, vz - drive.vz
	if ax * ax + az * az > 1e-4 then
		player:add_velocity({ x = ax, y = 0, z = az })
	end
	drive.vx, drive.vz = vx, vz
end

--- The wanted horizontal velocity of the player at time t of the episode (orbit, reversals, dodges).
local function steer(ep, ppos, cpos, t)
	if t >= ep.next_reverse then
		ep.sgn = -ep.sgn
		ep.reversals = ep.reversals + 1
		ep.next_reverse = t + ep.rand(CFG.reverse_min_s, CFG.reverse_max_s)
	end
	local rx, rz = ppos.x - arena.x, ppos.z - arena.z
	local r = math.sqrt(rx * rx + rz * rz)
	if r < 1e-3 then
		rx, rz, r = 1, 0, 1
	end
	local ux, uz = rx / r, rz / r
	local k = 0.6 * (CFG.orbit_radius - r) -- back onto the orbit
	local dx, dz = -uz * ep.sgn + k * ux, ux * ep.sgn + k * uz
	if cpos then
		if t < ep.dodge_until then
			dx, dz = ep.dodge_x, ep.dodge_z
		else
			local wx, wz = ppos.x - cpos.x, ppos.z - cpos.z
			local d = math.sqrt(wx * wx + wz * wz)
			if d < CFG.dodge_range and d > 1e-3 and t >= ep.dodge_ready then
				wx, wz = wx / d, wz / d
				local sx, sz = -wz, wx -- sideways to the chaser, on the side the orbit goes
				if sx * dx + sz * dz < 0 then
					sx, sz = -sx, -sz
				end
				ep.dodge_x, ep.dodge_z = sx + 0.3 * wx, sz + 0.3 * wz
				ep.dodge_until = t + CFG.dodge_s
				ep.dodge_ready = t + CFG.dodge_s + CFG.dodge_cooldown_s
				ep.dodges = ep.dodges + 1
				dx, dz = ep.dodge_x, ep.dodge_z
			end
		end
	end
	local len = math.sqrt(dx * dx + dz * dz)
	if len < 1e-9 then
		return 0, 0
	end
	return dx / len * CFG.player_speed, dz / len * CFG.player_speed
end

-- ------------------------------------------------------------------ episodes

local queue = {}
local ep -- the running episode
local held -- name of the last steered player (kept still between episodes)
local done = 0

local function hdist(a, b)
	return math.sqrt((a.x - b.x) ^ 2 + (a.z - b.z) ^ 2)
end

local function chaser_object(e)
	if e.chaser == "agent" then
		local ent = e.agent_id and luanti_tune.get_agent(e.agent_id)
		return ent and ent.object or nil
	end
	if e.mob and e.mob:get_pos() then
		return e.mob
	end
	return nil
end

local function remove_chaser(e)
	if e.agent_id then
		luanti_tune.remove_agent(e.agent_id)
	end
	if e.mob and e.mob:get_pos() then
		e.mob:remove()
	end
end

local function sample(e, t, d, ppos, pvel, cpos, cvel)
	local s = e.samples
	s[#s + 1] = json.array({ round3(t), round3(d), round3(ppos.x), round3(ppos.z), round3(pvel.x), round3(pvel.z),
		round3(cpos.x), round3(cpos.z), round3(cvel.x), round3(cvel.z) })
end

--- The model of the service's last /v1/act answer (with one agent: the one that decided it).
local function served_model()
	local ok, status = pcall(luanti_tune.status)
	local m = ok and status.act and status.act.model
	return type(m) == "table" and { name = m.name, version = m.version } or json.null
end

local function finish_play(e, err)
	remove_chaser(e)
	local rec = {
		id = e.id, kind = "play", chaser = "agent", player = e.player, seed = e.seed, seconds = e.seconds,
		limit_s = e.limit, catch_radius = CFG.catch_radius, player_speed = CFG.player_speed,
		chaser_speed = SPEED, duration_s = e.t0 and round3(now_s() - e.t0) or 0, chases = e.chases,
		reversals = e.reversals, dodges = e.dodges, model = served_model(), error = err,
	}
	local f = io.open(OUT_PATH, "a")
	if f then
		f:write(json.encode(rec) .. "\n")
		f:close()
	end
	done = done + 1
	ep = nil
	if err then
		core.log("warning", "[luanti_tune_chase] play " .. tostring(e.id) .. ": " .. err)
	end
end

local function finish(e, err)
	if e.play then
		return finish_play(e, err)
	end
	local model = e.chaser == "agent" and served_model() or json.null
	remove_chaser(e)
	local rec = {
		id = e.id, chaser = e.chaser, seed = e.seed, dx = e.dx, dz = e.dz, limit_s = e.limit,
		catch_radius = CFG.catch_radius, player_speed = CFG.player_speed, chaser_speed = SPEED,
		orbit_radius = CFG.orbit_radius, dodge_range = CFG.dodge_range, mob_reach = CFG.mob_reach,
		spawn_pos = e.spawn_pos, appear_s = e.appear_s, start_s = e.start_s, caught = e.caught or false,
		time_s = e.time_s, d0 = e.d0, min_d = e.min_d, reversals = e.reversals, dodges = e.dodges,
		samples = e.samples, error = err, model = model,
		sample_fields = json.array({ "t", "d", "px", "pz", "pvx", "pvz", "cx", "cz", "cvx", "cvz" }),
	}
	local f = io.open(OUT_PATH, "a")
	if f then
		f:write(json.encode(rec) .. "\n")
		f:close()
	end
	done = done + 1
	ep = nil
	if err then
		core.log("warning", "[luanti_tune_chase] episode " .. tostring(e.id) .. ": " .. err)
	end
end

local function spawn_chaser(e, ppos)
	local pos = { x = ppos.x + e.dx, y = arena.y + 1, z = ppos.z + e.dz }
	e.spawn_pos = { x = round3(pos.x), y = pos.y, z = round3(pos.z) }
	e.spawn_t = now_s()
	if e.chaser == "agent" then
		local id, err = luanti_tune.spawn_agent("pursuit", pos)
		if not id then
			return finish(e, "could not spawn the agent: " .. tostring(err))
		end
		e.agent_id = id
	else
		local ent = mobs:add_mob(pos, { name = MOB, ignore_count = true })
		if not ent then
			return finish(e, "mobs:add_mob refused the mob")
		end
		e.mob = ent.object
	end
	e.phase = "appear"
end

local function chase_step(e, t_now, ppos, pvel, cobj)
	local cpos = cobj:get_pos()
	local t = t_now - e.t0
	local d = hdist(ppos, cpos)
	if not e.d0 then
		e.d0 = round3(d)
	end
	e.min_d = math.min(e.min_d or d, d)
	if not e.start_s then
		local cv = cobj:get_velocity() or { x = 0, z = 0 }
		if hdist(cpos, e.origin) >= CFG.start_move or math.sqrt(cv.x * cv.x + cv.z * cv.z) > 0.5 then
			e.start_s = round3(t)
		end
	end
	local caught = d < CFG.catch_radius
	if t >= e.next_sample or caught or t >= e.limit then
		sample(e, t, d, ppos, pvel, cpos, cobj:get_velocity() or { x = 0, y = 0, z = 0 })
		e.next_sample = e.next_sample + CFG.sample_s
	end
	if caught then
		e.caught, e.time_s, e.min_d = true, round3(t), round3(e.min_d)
		return finish(e)
	end
	if t >= e.limit then
		e.time_s, e.min_d = round3(e.limit), round3(e.min_d)
		return finish(e)
	end
end

--- A point ``offset`` nodes from the player at a seeded angle, inside the arena (2 nodes from its rim).
local function reappear_pos(e, ppos)
	local reach = arena.r - 2
	local pos
	for _ = 1, 50 do
		local a, d = e.place(0, 2 * math.pi), e.place(e.min_offset, e.max_offset)
		pos = { x = ppos.x + d * math.cos(a), y = arena.y + 1, z = ppos.z + d * math.sin(a) }
		if (pos.x - arena.x) ^ 2 + (pos.z - arena.z) ^ 2 <= reach * reach then
			return pos
		end
	end
	return pos
end

local function new_chase(e, t_now, cpos)
	e.chase_t0 = t_now
	e.cur = { origin = { x = cpos.x, y = cpos.y, z = cpos.z } }
end

--- Continuous play: the agent chases on; a catch (or the time limit) sends it away again.
local function play_step(e, t_now, ppos, cobj)
	local cpos = cobj:get_pos()
	if not e.cur then
		new_chase(e, t_now, cpos)
	end
	local cur = e.cur
	local t, ct = t_now - e.t0, t_now - e.chase_t0
	local d = hdist(ppos, cpos)
	cur.d0 = cur.d0 or round3(d)
	if not cur.start_s then
		local cv = cobj:get_velocity() or { x = 0, z = 0 }
		if hdist(cpos, cur.origin) >= CFG.start_move or math.sqrt(cv.x * cv.x + cv.z * cv.z) > 0.5 then
			cur.start_s = round3(ct)
		end
	end
	local caught = d < CFG.catch_radius
	if caught or ct >= e.limit or t >= e.seconds then
		e.chases[#e.chases + 1] = {
			t = round3(t - ct), time_s = round3(ct), caught = caught, d0 = cur.d0, start_s = cur.start_s,
			cut = not caught and ct < e.limit, -- the play ended during this chase
		}
		if t >= e.seconds then
			return finish_play(e)
		end
		local pos = reappear_pos(e, ppos)
		cobj:set_pos(pos)
		cobj:set_velocity({ x = 0, y = 0, z = 0 })
		new_chase(e, t_now, pos)
	end
end

local function episode_step(e)
	local player = core.get_player_by_name(e.player)
	if not player then
		return finish(e, "player " .. e.player .. " is not connected")
	end
	held = e.player
	local t_now = now_s()
	if e.phase == "settle" then
		if not e.settle_t then
			e.settle_t = t_now
			player:set_pos({ x = arena.x + CFG.orbit_radius, y = arena.y + 0.5, z = arena.z })
		end
		drive_to(player, 0, 0)
		if t_now - e.settle_t >= CFG.settle_s then
			e.phase, e.steer_t0 = "steer", t_now
		end
		return
	end
	local ppos, pvel = player:get_pos(), player:get_velocity()
	local cobj = nil
	if e.phase == "appear" then
		cobj = chaser_object(e)
		if cobj then
			e.phase, e.t0, e.next_sample = "chase", t_now, 0
			e.appear_s = round3(t_now - e.spawn_t)
			local p = cobj:get_pos()
			e.origin = { x = p.x, y = p.y, z = p.z }
		elseif t_now - e.spawn_t > 10 then
			return finish(e, "the chaser did not appear within 10 s")
		end
	elseif e.phase == "chase" then
		cobj = chaser_object(e)
		if not cobj then
			return finish(e, "the chaser disappeared")
		end
	end
	local vx, vz = steer(e, ppos, cobj and cobj:get_pos(), t_now - e.steer_t0)
	drive_to(player, vx, vz)
	if e.phase == "steer" and t_now - e.steer_t0 >= CFG.preroll_s then
		return spawn_chaser(e, ppos)
	end
	if e.phase == "chase" then
		if e.play then
			return play_step(e, t_now, ppos, cobj)
		end
		return chase_step(e, t_now, ppos, pvel, cobj)
	end
end

local function new_episode(w)
	local e = {
		id = w[2], chaser = w[3], player = w[4], dx = tonumber(w[5]), dz = tonumber(w[6]),
		limit = tonumber(w[7]), seed = tonumber(w[8]) or 1,
		phase = "settle", sgn = 1, reversals = 0, dodges = 0, dodge_until = -1, dodge_ready = 0,
		samples = json.array(),
	}
	if (e.chaser ~= "agent" and e.chaser ~= "mob") or not (e.dx and e.dz and e.limit) or not e.player then
		core.log("error", "[luanti_tune_chase] bad episode command: " .. table.concat(w, " "))
		return nil
	end
	e.rand = rng(e.seed)
	e.sgn = e.rand(0, 1) < 0.5 and -1 or 1
	e.next_reverse = e.rand(CFG.reverse_min_s, CFG.reverse_max_s)
	return e
end

local function new_play(w)
	local e = {
		id = w[2], chaser = "agent", player = w[3], seconds = tonumber(w[4]), limit = tonumber(w[5]),
		seed = tonumber(w[6]) or 1, min_offset = tonumber(w[7]), max_offset = tonumber(w[8]), play = true,
		phase = "settle", sgn = 1, reversals = 0, dodges = 0, dodge_until = -1, dodge_ready = 0,
		chases = json.array(), samples = json.array(),
	}
	if not (e.player and e.seconds and e.limit and e.min_offset and e.max_offset) then
		core.log("error", "[luanti_tune_chase] bad play command: " .. table.concat(w, " "))
		return nil
	end
	e.rand = rng(e.seed)
	e.place = rng(e.seed + 7919) -- where the agent (re)appears; the steering schedule keeps its own
	e.sgn = e.rand(0, 1) < 0.5 and -1 or 1
	e.next_reverse = e.rand(CFG.reverse_min_s, CFG.reverse_max_s)
	local a, d = e.place(0, 2 * math.pi), e.place(e.min_offset, e.max_offset)
	e.dx, e.dz = d * math.cos(a), d * math.sin(a)
	return e
end

-- ------------------------------------------------------------------ commands and state

local function words(line)
	local out = {}
	for w in line:gmatch("%S+") do
		out[#out + 1] = w
	end
	return out
end

local function run(line)
	local w = words(line)
	if w[1] == "arena" then
		build_arena({ x = tonumber(w[2]), y = tonumber(w[3]), z = tonumber(w[4]) }, tonumber(w[5]))
	elseif w[1] == "episode" then
		queue[#queue + 1] = new_episode(w)
	elseif w[1] == "play" then
		queue[#queue + 1] = new_play(w)
	elseif w[1] then
		core.log("warning", "[luanti_tune_chase] unknown command " .. w[1])
	end
end

local done_lines = 0

local function read_commands()
	local f = io.open(CMD_PATH, "r")
	if not f then
		return
	end
	local n = 0
	for line in f:lines() do
		n = n + 1
		if n > done_lines then
			done_lines = n
			local ok, err = pcall(run, line)
			if not ok then
				core.log("error", "[luanti_tune_chase] " .. line .. ": " .. tostring(err))
			end
		end
	end
	f:close()
end

local function write_state()
	local players = {}
	for _, player in ipairs(core.get_connected_players()) do
		local p, v = player:get_pos(), player:get_velocity()
		players[player:get_player_name()] = { pos = { x = p.x, y = p.y, z = p.z }, vel = { x = v.x, y = v.y, z = v.z } }
	end
	local status = luanti_tune.status()
	local state = {
		players = json.object(players), arena = arena or json.null, queued = #queue, done = done,
		running = ep and ep.id or json.null, act = status.act, agents = status.agents,
		chaser_speed = SPEED,
	}
	core.safe_file_write(STATE_PATH, json.encode(state))
end

local acc = 0
core.register_globalstep(function(dtime)
	acc = acc + dtime
	if acc >= 0.2 then
		acc = 0
		read_commands()
		write_state()
	end
	if not ep and arena and #queue > 0 then
		ep = table.remove(queue, 1)
	end
	if ep then
		local ok, err = pcall(episode_step, ep)
		if not ok and ep then
			finish(ep, "error: " .. tostring(err))
		end
	elseif held then
		local player = core.get_player_by_name(held)
		if player then
			drive_to(player, 0, 0) -- keep the player still between episodes (the floor hardly slows it)
		end
	end
end)
