require("spec.helper")
local Queue = luanti_tune.require("queue")
local Backoff = luanti_tune.require("backoff")

describe("bounded queue", function()
	it("drops the oldest items beyond the bound and counts them", function()
		local q = Queue.new(3)
		for i = 1, 5 do
			q:push(i)
		end
		assert.equals(3, q:size())
		assert.same({ 3, 4, 5 }, q:take(10))
		assert.equals(2, q:take_dropped())
		assert.equals(0, q:take_dropped())
	end)

	it("takes in FIFO order and requeues a failed batch at the front", function()
		local q = Queue.new(10)
		for i = 1, 5 do
			q:push(i)
		end
		local batch = q:take(2)
		assert.same({ 1, 2 }, batch)
		q:push(6)
		q:requeue(batch)
		assert.same({ 1, 2, 3, 4, 5, 6 }, q:take(10))
	end)

	it("drops the requeued (oldest) items first when the queue overflowed meanwhile", function()
		local q = Queue.new(3)
		q:push(1)
		q:push(2)
		local batch = q:take(2)
		for i = 3, 5 do
			q:push(i)
		end
		q:requeue(batch)
		assert.equals(3, q:size())
		assert.same({ 3, 4, 5 }, q:take(10))
		assert.equals(2, q:take_dropped())
	end)
end)

describe("backoff", function()
	it("doubles up to the cap and resets on success", function()
		local b = Backoff.new(0.5, 4, function()
			return 0.5 -- no jitter
		end)
		assert.equals(0.5, b:fail())
		assert.equals(1, b:fail())
		assert.equals(2, b:fail())
		assert.equals(4, b:fail())
		assert.equals(4, b:fail())
		b:succeed()
		assert.equals(0.5, b:fail())
	end)
end)
