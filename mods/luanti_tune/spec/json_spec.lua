local helper = require("spec.helper")
local json = luanti_tune.require("json")

describe("json encoder", function()
	it("writes integers as integers, not floats (unlike core.write_json)", function()
		assert.equals('{"seq":1795696743000020,"tick":42}', json.encode({ seq = 1795696743000020, tick = 42 }))
		assert.equals("[1,-2,0]", json.encode({ 1, -2, 0 }))
	end)

	it("writes fractional numbers with enough precision", function()
		assert.equals(3.78, json.decode(json.encode(3.78)))
		assert.equals(-3.25, json.decode(json.encode(-3.25)))
	end)

	it("writes empty tables as {} and marked arrays as []", function()
		assert.equals('{"a":{},"b":[]}', json.encode({ a = {}, b = json.array() }))
	end)

	it("writes non-finite numbers as 0 so that a batch is never refused for one NaN", function()
		assert.equals("[0,0,0]", json.encode({ 0 / 0, math.huge, -math.huge }))
	end)

	it("escapes quotes, backslashes and control characters", function()
		local s = 'a"b\\c\nd\1'
		assert.equals('"a\\"b\\\\c\\nd\\u0001"', json.encode(s))
		assert.equals(s, json.decode(json.encode(s)))
	end)

	it("replaces invalid UTF-8 bytes and keeps valid multi-byte characters", function()
		assert.equals('"h?llo"', json.encode("h\255llo"))
		assert.equals('"größe"', json.encode("größe"))
	end)

	it("refuses functions and mixed keys with an error", function()
		assert.has_error(function()
			json.encode({ f = function() end })
		end)
		assert.has_error(function()
			json.encode({ [1] = "a", [3] = "b", x = 1 })
		end)
	end)

	it("round-trips nested data through its decoder", function()
		local v = { events = json.array({ { type = "player.move", pos = { x = 1.5, y = 8, z = -3.25 },
			payload = { controls = { up = true } } } }) }
		local back = json.decode(json.encode(v))
		assert.equals("player.move", back.events[1].type)
		assert.equals(-3.25, back.events[1].pos.z)
		assert.is_true(back.events[1].payload.controls.up)
	end)

	it("decodes unicode escapes and reports malformed input", function()
		assert.equals("é", json.decode('"\\u00e9"'))
		assert.is_nil((json.try_decode("{\"a\":")))
		assert.is_nil((json.try_decode("[1,2] x")))
	end)
	assert.is_table(helper)
end)

describe("json number arrays", function()
	it("encode exactly on the fast path and fall back for big or non-finite entries", function()
		assert.equals("[0,1,6,-2.5,10000000000001]", json.encode({ 0, 1, 6, -2.5, 1e13 + 1 }))
		assert.equals("[1,1795696743000020]", json.encode({ 1, 1795696743000020 }))
		assert.equals("[1,0]", json.encode({ 1, 0 / 0 }))
	end)
end)
