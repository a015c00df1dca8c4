local helper = require("spec.helper")
local Seq = luanti_tune.require("seq")

describe("sequence numbers", function()
	it("are strictly increasing", function()
		local s = Seq.new(helper.storage(), 1000, 10)
		local prev = -1
		for _ = 1, 35 do
			local n = s:take()
			assert.is_true(n > prev)
			prev = n
		end
	end)

	it("never reuse a number after a restart, even with the clock going backwards", function()
		local storage = helper.storage()
		local s1 = Seq.new(storage, 2000, 10)
		local last
		for _ = 1, 25 do
			last = s1:take()
		end
		local s2 = Seq.new(storage, 1000, 10) -- clock went back
		assert.is_true(s2:take() > last)
	end)

	it("never reuse a number after a crash that lost the last storage write", function()
		local storage = helper.storage()
		local s1 = Seq.new(storage, 2000, 10)
		local saved = storage.data.seq_reserved -- what the engine flushed to disk
		local last
		for _ = 1, 25 do
			last = s1:take() -- reserves more blocks, which the crash loses
		end
		storage.data.seq_reserved = saved
		local s2 = Seq.new(storage, 2001, 10) -- restarted a second later
		assert.is_true(s2:take() > last)
	end)
end)
