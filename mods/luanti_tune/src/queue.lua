-- Bounded FIFO of pending events. When full, the oldest entry is dropped and counted.
-- take(n) moves up to n entries out (in flight); requeue() puts a failed batch back at the
-- front, where it is again the oldest and so the first to be dropped if the queue overflows.

local Queue = {}
Queue.__index = Queue

function Queue.new(bound)
	assert(type(bound) == "number" and bound >= 1, "queue bound must be >= 1")
	return setmetatable({ items = {}, head = 1, tail = 0, bound = math.floor(bound), dropped = 0 }, Queue)
end

function Queue:size()
	return self.tail - self.head + 1
end

local function drop_oldest(self)
	self.items[self.head] = nil
	self.head = self.head + 1
	self.dropped = self.dropped + 1
end

--- Appends item; returns true if an older item had to be dropped to make room.
function Queue:push(item)
	local dropped = false
	while self:size() >= self.bound do
		drop_oldest(self)
		dropped = true
	end
	self.tail = self.tail + 1
	self.items[self.tail] = item
	return dropped
end

--- Removes and returns up to n oldest items (a plain list, oldest first).
function Queue:take(n)
	local out = {}
	while #out < n and self.head <= self.tail do
		out[#out + 1] = self.items[self.head]
		self.items[self.head] = nil
		self.head = self.head + 1
	end
	return out
end

--- Puts items (oldest first) back at the front; drops the oldest beyond the bound.
function Queue:requeue(items)
	for i = #items, 1, -1 do
		self.head = self.head - 1
		self.items[self.head] = items[i]
	end
	while self:size() > self.bound do
		drop_oldest(self)
	end
end

--- Returns the number of items dropped since the last call and resets the counter.
function Queue:take_dropped()
	local n = self.dropped
	self.dropped = 0
	return n
end

return Queue
