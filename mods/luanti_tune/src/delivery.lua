-- Non-blocking, batched delivery of events to POST /v1/events.
--
-- step() is called from a globalstep. At most one batch is in flight; the HTTP callback arrives
-- on a later server step, so a step never waits for the service. Failed batches go back to the
-- front of the bounded queue and are retried with exponential backoff; a batch the service
-- refuses as invalid (4xx) is dropped and counted instead of being retried forever. Drops are
-- reported as one `system.dropped` event once delivery works again.

local Queue = luanti_tune.require("queue")
local Backoff = luanti_tune.require("backoff")
local RateLog = luanti_tune.require("ratelog")

local Delivery = {}
Delivery.__index = Delivery

--- opts: fetch(request, callback), url, token, batch_size, flush_interval, queue_bound,
--- backoff_base, backoff_max, timeout, now() seconds, log(level, msg), encode(list) -> string,
--- on_dropped(count, reason) (called when delivery works again, to emit the report event),
--- on_ack(events) (optional, called with each committed batch).
function Delivery.new(opts)
	local self = setmetatable({}, Delivery)
	self.fetch = opts.fetch
	self.url = opts.url
	self.batch_size = opts.batch_size or 256
	self.flush_interval = opts.flush_interval or 0.5
	self.timeout = opts.timeout or 5
	self.now = opts.now
	self.encode = opts.encode
	self.on_dropped = opts.on_dropped
	self.on_ack = opts.on_ack
	self.queue = Queue.new(opts.queue_bound or 10000)
	self.backoff = Backoff.new(opts.backoff_base or 0.5, opts.backoff_max or 10, opts.random)
	self.ratelog = RateLog.new(opts.log, opts.now, opts.log_interval or 30)
	self.log = opts.log
	self.headers = { "Content-Type: application/json" }
	if opts.token and opts.token ~= "" then
		self.headers[#self.headers + 1] = "Authorization: Bearer " .. opts.token
	end
	self.inflight = nil
	self.next_attempt = 0
	self.last_flush = self.now()
	self.down = false
	self.unreported = 0 -- dropped but not yet reported as an event
	self.stats = { sent = 0, batches = 0, failures = 0, dropped = 0, rejected = 0, max_queue = 0 }
	return self
end

function Delivery:push(event)
	if self.queue:push(event) then
		self.ratelog:log_key("queue_full", "warning", string.format(
			"[luanti_tune] event queue full (%d): dropping oldest events", self.queue.bound))
	end
	local size = self.queue:size()
	if size > self.stats.max_queue then
		self.stats.max_queue = size
	end
end

function Delivery:pending()
	return self.queue:size() + (self.inflight and #self.inflight or 0)
end

local function collect_drops(self)
	local n = self.queue:take_dropped()
	if n > 0 then
		self.unreported = self.unreported + n
		self.stats.dropped = self.stats.dropped + n
	end
end

--- Called every server step. Returns true if a batch was sent.
function Delivery:step()
	collect_drops(self)
	if self.inflight then
		return false
	end
	local t = self.now()
	if t < self.next_attempt then
		return false
	end
	local size = self.queue:size()
	if size == 0 or (size < self.batch_size and t - self.last_flush < self.flush_interval) then
		return false
	end
	self.last_flush = t
	local batch = self.queue:take(self.batch_size)
	local ok, body = pcall(self.encode, batch)
	if not ok then
		-- cannot happen for events built by this mod; never retry an unencodable batch
		self.stats.rejected = self.stats.rejected + #batch
		self.unreported = self.unreported + #batch
		self.log("error", "[luanti_tune] dropping a batch that cannot be encoded: " .. tostring(body))
		return false
	end
	self.inflight = batch
	self.stats.batches = self.stats.batches + 1
	self.fetch({ url = self.url, method = "POST", data = body, timeout = self.timeout,
		extra_headers = self.headers }, function(res)
		self:_done(batch, res)
	end)
	return true
end

function Delivery:_done(batch, res)
	self.inflight = nil
	local code = res and res.code or 0
	if res and res.succeeded and code >= 200 and code < 300 then
		self.backoff:succeed()
		self.next_attempt = 0
		self.stats.sent = self.stats.sent + #batch
		if self.down then
			self.down = false
			self.log("action", string.format("[luanti_tune] event service reachable again, %d events queued",
				self.queue:size()))
		end
		if self.on_ack then
			self.on_ack(batch)
		end
		collect_drops(self)
		if self.unreported > 0 and self.on_dropped then
			local n = self.unreported
			self.unreported = 0
			self.on_dropped(n)
		end
		return
	end
	if code >= 400 and code < 500 and code ~= 408 and code ~= 429 then
		-- the service refused the batch as invalid: retrying would fail the same way
		self.stats.rejected = self.stats.rejected + #batch
		self.unreported = self.unreported + #batch
		self.ratelog:log_key("rejected", "error", string.format(
			"[luanti_tune] service refused a batch of %d events (HTTP %d): %s", #batch, code,
			tostring(res.data):sub(1, 300)))
		return
	end
	self.stats.failures = self.stats.failures + 1
	self.queue:requeue(batch)
	local delay = self.backoff:fail()
	self.next_attempt = self.now() + delay
	if not self.down then
		self.down = true
		self.ratelog:log_key("down", "warning", string.format(
			"[luanti_tune] event service unreachable (%s); queuing events and retrying with backoff",
			res and res.timeout and "timeout" or code == 0 and "no connection" or ("HTTP " .. tostring(code))))
	end
end

return Delivery
