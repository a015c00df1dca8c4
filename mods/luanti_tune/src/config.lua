-- Reads the mod's settings (see settingtypes.txt) from a Settings object, with defaults and bounds.

local config = {}

config.SPEC = {
	-- name, type, default, min, max (enum: name, "enum", default, {allowed values})
	{ "service_url", "string", "http://127.0.0.1:8765" },
	{ "act_url", "string", "" },
	{ "token", "string", "" },
	{ "source", "string", "" },
	{ "batch_size", "int", 256, 1, 10000 },
	{ "flush_interval", "float", 0.25, 0.05, 60 },
	{ "move_sample_rate", "float", 2, 0, 20 },
	{ "queue_bound", "int", 10000, 10, 1000000 },
	{ "act_interval", "int", 2, 1, 1000 },
	{ "act_timeout", "float", 2, 0.1, 60 },
	{ "act_format", "enum", "columns", { "rows", "columns" } },
	{ "http_timeout", "float", 5, 0.5, 120 },
	{ "backoff_max", "float", 10, 0.1, 600 },
	{ "nearby_radius", "int", 1, 0, 3 },
	{ "agent_events", "bool", false },
	{ "stats_interval", "float", 0, 0, 3600 },
	{ "dialogue_enabled", "bool", true },
	{ "dialogue_url", "string", "" },
	{ "dialogue_max_tokens", "int", 48, 1, 256 },
	{ "dialogue_timeout", "float", 20, 1, 120 },
	{ "dialogue_max_inflight", "int", 4, 1, 64 },
	{ "dialogue_fallback", "string", "" },
}

local function clamp(x, lo, hi)
	if lo and x < lo then
		return lo
	end
	if hi and x > hi then
		return hi
	end
	return x
end

--- settings: an object with get(key) returning a string or nil (core.settings or a test double).
--- warn (optional): called with a message for a value that cannot be used (its default is used).
function config.read(settings, warn)
	local out = {}
	for _, spec in ipairs(config.SPEC) do
		local name, kind, default, lo, hi = spec[1], spec[2], spec[3], spec[4], spec[5]
		local raw = settings:get("luanti_tune." .. name)
		local value = default
		if raw ~= nil and raw ~= "" then
			if kind == "string" then
				value = raw
			elseif kind == "bool" then
				value = raw == "true" or raw == "1" or raw == "yes"
			elseif kind == "enum" then
				local known = false
				for _, allowed in ipairs(lo) do
					known = known or raw == allowed
				end
				if known then
					value = raw
				elseif warn then
					warn(string.format("[luanti_tune] luanti_tune.%s must be one of %s, got %q; using %s",
						name, table.concat(lo, ", "), raw, default))
				end
			else
				local n = tonumber(raw)
				if n then
					if kind == "int" then
						n = math.floor(n)
					end
					value = clamp(n, lo, hi)
				end
			end
		end
		out[name] = value
	end
	out.service_url = out.service_url:gsub("/+$", "")
	if out.act_url == "" then
		out.act_url = out.service_url .. "/v1/act"
	end
	if out.dialogue_url == "" then
		out.dialogue_url = out.service_url .. "/v1/chat/completions"
	end
	return out
end

return config
