-- Shared set-up for the busted specs: loads the mod's pure modules outside the engine.
-- Run from mods/luanti_tune:  busted --lua=lua5.1 spec

local src = "src/"
local loaded = {}
_G.luanti_tune = {
	require = function(name)
		if loaded[name] == nil then
			loaded[name] = dofile(src .. name .. ".lua")
		end
		return loaded[name]
	end,
}

local helper = {}

helper.FIXTURES = "../../tests/luanti/fixtures/"

function helper.read_file(path)
	local f = assert(io.open(path, "r"), "cannot open " .. path)
	local s = f:read("*a")
	f:close()
	return s
end

--- The JSON Schema published by `luanti-tune schema NAME` (fixture generated from the Python side).
function helper.schema(name)
	local json = luanti_tune.require("json")
	return json.decode(helper.read_file(helper.FIXTURES .. name .. ".schema.json"))
end

--- A fake clock: t() returns the time, advance(dt) moves it.
function helper.clock(t0)
	local c = { t = t0 or 1000 }
	function c.now()
		return c.t
	end
	function c.advance(dt)
		c.t = c.t + dt
	end
	return c
end

--- In-memory stand-in for mod storage.
function helper.storage(init)
	local data = init or {}
	return {
		data = data,
		get_string = function(_, k)
			return data[k] or ""
		end,
		set_string = function(_, k, v)
			data[k] = v
		end,
		get_int = function(_, k)
			return tonumber(data[k]) or 0
		end,
		set_int = function(_, k, v)
			data[k] = tostring(v)
		end,
	}
end

return helper
