-- Step timing, delivery latency and a periodically written status file
-- (WORLD/luanti_tune_stats.json, when luanti_tune.stats_interval > 0).

local json = luanti_tune.require("json")

local stats = {}

local steps, dtime_sum, dtime_max = 0, 0, 0
local buckets = {} -- wall second -> max dtime in that second (last 300 s)
local lat, lat_n, LAT_CAP = {}, 0, 20000
local path, status_fn
local interval, acc = 0, 0

function stats.latency(us)
	lat_n = lat_n + 1
	lat[(lat_n - 1) % LAT_CAP + 1] = us
end

local function percentile(sorted, p)
	if #sorted == 0 then
		return 0
	end
	local i = math.max(1, math.min(#sorted, math.ceil(p * #sorted)))
	return sorted[i]
end

function stats.snapshot()
	local sorted = {}
	for i = 1, math.min(lat_n, LAT_CAP) do
		sorted[i] = lat[i]
	end
	table.sort(sorted)
	local recent = json.array()
	local t = os.time()
	for s = t - 300, t do
		if buckets[s] then
			recent[#recent + 1] = { s, buckets[s] }
		end
	end
	return {
		count = steps,
		dtime_mean = steps > 0 and dtime_sum / steps or 0,
		dtime_max = dtime_max,
		dtime_max_per_second = recent,
		latency_n = lat_n,
		latency_p50_ms = percentile(sorted, 0.5) / 1000,
		latency_p99_ms = percentile(sorted, 0.99) / 1000,
	}
end

function stats.write()
	if path and status_fn then
		core.safe_file_write(path, json.encode(status_fn()))
	end
end

function stats.start(every, file, fn)
	interval, path, status_fn = every, file, fn
end

function stats.step(dtime)
	steps = steps + 1
	dtime_sum = dtime_sum + dtime
	if dtime > dtime_max then
		dtime_max = dtime
	end
	local s = os.time()
	if (buckets[s] or 0) < dtime then
		buckets[s] = dtime
	end
	buckets[s - 301] = nil
	if interval > 0 then
		acc = acc + dtime
		if acc >= interval then
			acc = 0
			stats.write()
		end
	end
end

return stats
