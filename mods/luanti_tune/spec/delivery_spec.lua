local helper = require("spec.helper")
local Delivery = luanti_tune.require("delivery")
local json = luanti_tune.require("json")

-- A fake HTTP API: requests are recorded, answers given by the test (like the engine, later).
local function fake_http()
	local h = { requests = {} }
	function h.fetch(req, cb)
		h.requests[#h.requests + 1] = { req = req, cb = cb }
	end
	function h.answer(code)
		local r = table.remove(h.requests, 1)
		r.cb({ completed = true, succeeded = code > 0, code = code, timeout = code == 0, data = "{}" })
		return json.decode(r.req.data)
	end
	return h
end

local function setup(opts)
	local clock = helper.clock()
	local http = fake_http()
	local logs, dropped_reports = {}, {}
	local d = Delivery.new({
		fetch = http.fetch, url = "http://svc/v1/events", token = opts.token, batch_size = opts.batch_size or 3,
		flush_interval = 0.5, queue_bound = opts.bound or 100, backoff_base = 0.5, backoff_max = 4,
		now = clock.now, log = function(level, msg)
			logs[#logs + 1] = level .. ": " .. msg
		end,
		encode = function(batch)
			return json.encode({ events = json.array(batch) })
		end,
		random = function()
			return 0.5
		end,
		on_dropped = function(n)
			dropped_reports[#dropped_reports + 1] = n
		end,
	})
	return d, http, clock, logs, dropped_reports
end

describe("event delivery", function()
	it("sends full batches at once and partial ones after the flush interval", function()
		local d, http, clock = setup({})
		d:push({ seq = 1 })
		assert.is_false(d:step())
		clock.advance(0.6)
		assert.is_true(d:step())
		assert.equals(1, #http.requests)
		local body = http.answer(200)
		assert.equals(1, body.events[1].seq)
		for i = 2, 4 do
			d:push({ seq = i })
		end
		assert.is_true(d:step())
		assert.equals(3, #http.answer(200).events)
	end)

	it("keeps at most one request in flight and never blocks", function()
		local d, http = setup({})
		for i = 1, 9 do
			d:push({ seq = i })
		end
		assert.is_true(d:step())
		assert.is_false(d:step())
		assert.equals(1, #http.requests)
	end)

	it("sends the bearer token and JSON content type", function()
		local d, http = setup({ token = "s3cret" })
		for i = 1, 3 do
			d:push({ seq = i })
		end
		d:step()
		local headers = table.concat(http.requests[1].req.extra_headers, "\n")
		assert.matches("Authorization: Bearer s3cret", headers, 1, true)
		assert.matches("Content%-Type: application/json", headers)
	end)

	it("retries a failed batch with backoff and delivers it once the service is back", function()
		local d, http, clock, logs = setup({})
		for i = 1, 3 do
			d:push({ seq = i })
		end
		d:step()
		http.answer(0) -- connection refused / timeout
		assert.is_false(d:step()) -- backing off
		clock.advance(0.6)
		assert.is_true(d:step())
		http.answer(503)
		clock.advance(0.6)
		assert.is_false(d:step()) -- second delay is longer (1 s)
		clock.advance(0.5)
		assert.is_true(d:step())
		local body = http.answer(200)
		assert.same({ 1, 2, 3 }, { body.events[1].seq, body.events[2].seq, body.events[3].seq })
		assert.equals(3, d.stats.sent)
		assert.is_false(d.down)
		-- one "unreachable" warning and one "reachable again" line, not one per retry
		assert.equals(2, #logs)
	end)

	it("stays bounded while the service is down, then reports the drops once", function()
		local d, http, clock, logs, reports = setup({ bound = 10 })
		local seq = 0
		for _ = 1, 200 do -- 200 steps of a long outage, one event per step
			seq = seq + 1
			d:push({ seq = seq })
			if d:step() then
				http.answer(0)
			end
			clock.advance(0.1)
			assert.is_true(d:pending() <= 10 + 3)
		end
		assert.is_true(#logs <= 3, "log spam: " .. #logs .. " lines")
		-- service is back
		local delivered = {}
		for _ = 1, 20 do
			clock.advance(5)
			if d:step() then
				for _, ev in ipairs(http.answer(200).events) do
					delivered[#delivered + 1] = ev.seq
				end
			end
		end
		assert.equals(0, d:pending())
		assert.equals(1, #reports)
		assert.equals(200, #delivered + reports[1])
		-- the newest events survived, in order, each once
		assert.equals(200, delivered[#delivered])
		for i = 2, #delivered do
			assert.is_true(delivered[i] > delivered[i - 1])
		end
	end)

	it("drops a batch the service refuses as invalid instead of retrying it forever", function()
		local d, http, _, _, reports = setup({})
		for i = 1, 3 do
			d:push({ seq = i })
		end
		d:step()
		http.answer(422)
		assert.equals(3, d.stats.rejected)
		assert.equals(0, d:pending())
		for i = 4, 6 do
			d:push({ seq = i })
		end
		d:step()
		http.answer(200)
		assert.same({ 3 }, reports)
	end)
end)
