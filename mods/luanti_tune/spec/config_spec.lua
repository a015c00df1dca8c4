require("spec.helper")
local config = luanti_tune.require("config")

local function settings(t)
	return { get = function(_, k)
		return t[k]
	end }
end

describe("settings", function()
	it("has defaults for every setting", function()
		local c = config.read(settings({}))
		assert.equals("http://127.0.0.1:8765", c.service_url)
		assert.equals(256, c.batch_size)
		assert.equals(10000, c.queue_bound)
		assert.is_false(c.agent_events)
	end)

	it("parses, clamps and trims values", function()
		local c = config.read(settings({
			["luanti_tune.service_url"] = "http://10.0.0.2:9000/",
			["luanti_tune.batch_size"] = "99999",
			["luanti_tune.queue_bound"] = "1",
			["luanti_tune.move_sample_rate"] = "nonsense",
			["luanti_tune.agent_events"] = "true",
		}))
		assert.equals("http://10.0.0.2:9000", c.service_url)
		assert.equals(10000, c.batch_size)
		assert.equals(10, c.queue_bound)
		assert.equals(2, c.move_sample_rate)
		assert.is_true(c.agent_events)
	end)

	it("declares every setting in settingtypes.txt", function()
		local helper = require("spec.helper")
		local text = helper.read_file("settingtypes.txt")
		for _, spec in ipairs(config.SPEC) do
			assert.matches("luanti_tune%." .. spec[1] .. " %(", text)
		end
	end)
end)
