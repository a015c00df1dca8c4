-- Rate-limited logging: each distinct key is logged at most once per interval; repeats are
-- counted and summarised with the next message, so a broken service or model cannot spam the log.

local RateLog = {}
RateLog.__index = RateLog

function RateLog.new(log, now, interval)
	return setmetatable({ log = log, now = now, interval = interval or 30, last = {}, suppressed = {} }, RateLog)
end

--- Logs msg at level unless key was logged less than interval seconds ago; returns true if logged.
function RateLog:log_key(key, level, msg)
	local t = self.now()
	local last = self.last[key]
	if last and t - last < self.interval then
		self.suppressed[key] = (self.suppressed[key] or 0) + 1
		return false
	end
	local n = self.suppressed[key] or 0
	if n > 0 then
		msg = string.format("%s (%d similar messages suppressed)", msg, n)
	end
	self.last[key] = t
	self.suppressed[key] = 0
	self.log(level, msg)
	return true
end

return RateLog
