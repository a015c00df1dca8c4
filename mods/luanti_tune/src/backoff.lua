-- Exponential backoff with jitter: base, 2*base, 4*base ... capped at max; reset on success.

local Backoff = {}
Backoff.__index = Backoff

function Backoff.new(base, max, random)
	return setmetatable({ base = base, max = max, failures = 0, random = random or math.random }, Backoff)
end

--- Records a failure and returns the delay (seconds) before the next attempt.
function Backoff:fail()
	self.failures = self.failures + 1
	local delay = math.min(self.max, self.base * 2 ^ (self.failures - 1))
	-- +-20% jitter so that many servers do not retry in lockstep
	return delay * (0.8 + 0.4 * self.random())
end

function Backoff:succeed()
	self.failures = 0
end

return Backoff
