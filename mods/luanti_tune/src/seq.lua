-- Sequence numbers that keep increasing across restarts, also after a crash.
--
-- The mod reserves blocks of numbers in mod storage (key "seq_reserved") and only hands out
-- numbers below the stored reservation. Mod storage is flushed to disk by the engine every few
-- seconds, so after a crash the last reservation may be lost; therefore a restart also starts no
-- lower than wall-clock seconds * 1e6 (no server emits a million events per second for long), and
-- never lower than the stored reservation (in case the clock went backwards).

local Seq = {}
Seq.__index = Seq

Seq.CLOCK_FACTOR = 1000000

--- storage: {get_int=function(key), set_int=function(key, v)} style table (mod storage wrapper),
--- wall_s: current wall-clock seconds, block: numbers reserved per storage write.
function Seq.new(storage, wall_s, block)
	local self = setmetatable({ storage = storage, block = block or 1000 }, Seq)
	local reserved = tonumber(storage:get_string("seq_reserved")) or 0
	local floor = math.floor(wall_s) * Seq.CLOCK_FACTOR
	self.next = math.max(reserved, floor)
	self.reserved = 0
	self:_reserve()
	return self
end

function Seq:_reserve()
	self.reserved = self.next + self.block
	self.storage:set_string("seq_reserved", string.format("%d", self.reserved))
end

--- Returns the next sequence number.
function Seq:take()
	if self.next >= self.reserved then
		self:_reserve()
	end
	local n = self.next
	self.next = n + 1
	return n
end

return Seq
