-- Benchmark helper: counts server steps and sums their dtime (the engine's step interval).
-- Writes "steps dtime_sum dtime_max" to WORLD/luanti_tune_timing.txt every 0.5 s.
local path = core.get_worldpath() .. "/luanti_tune_timing.txt"
local steps, sum, max, acc = 0, 0, 0, 0
core.register_globalstep(function(dtime)
	steps = steps + 1
	sum = sum + dtime
	if dtime > max then
		max = dtime
	end
	acc = acc + dtime
	if acc >= 0.5 then
		acc = 0
		core.safe_file_write(path, string.format("%d %.6f %.6f", steps, sum, max))
	end
end)
