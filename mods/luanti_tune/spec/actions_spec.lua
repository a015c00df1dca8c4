require("spec.helper")
local actions = luanti_tune.require("actions")

local ctx = {
	agent_pos = function(name)
		if name == "enemy-1" then
			return { x = 0, y = 8, z = 0 }
		end
	end,
}

local function refused(a)
	local norm, reason = actions.validate(a, ctx)
	assert.is_nil(norm)
	assert.is_string(reason)
	return reason
end

describe("action validation", function()
	it("accepts the docs/design.md example move and normalises it", function()
		local a = actions.validate({ agent = "enemy-1", type = "move", args = { dir = { x = 0.8, y = 0, z = -0.6 },
			speed = 1 } }, ctx)
		assert.same({ agent = "enemy-1", type = "move", args = { dir = { x = 0.8, y = 0, z = -0.6 }, speed = 1 } }, a)
	end)

	it("accepts every action type with valid arguments", function()
		local ok = {
			{ type = "move_to", args = { pos = { x = 10, y = 8, z = 3 } } },
			{ type = "turn", args = { yaw = 1.5 } },
			{ type = "jump" },
			{ type = "dig", args = { pos = { x = 1, y = 7, z = 0 } } },
			{ type = "place", args = { pos = { x = 1, y = 8, z = 0 }, item = "basenodes:stone" } },
			{ type = "attack", args = { target = "alice" } },
			{ type = "chat", args = { message = "hello" } },
			{ type = "wait", args = { ticks = 5 } },
		}
		for _, a in ipairs(ok) do
			a.agent = "enemy-1"
			local norm, reason = actions.validate(a, ctx)
			assert.is_table(norm, a.type .. ": " .. tostring(reason))
		end
	end)

	it("refuses unknown agents, unknown types and non-objects with a reason", function()
		assert.matches("unknown agent", refused({ agent = "ghost-9", type = "jump" }))
		assert.matches("unknown action type", refused({ agent = "enemy-1", type = "teleport" }))
		assert.matches("must be an object", refused("move"))
		assert.matches("agent name", refused({ agent = "bad name!", type = "jump" }))
	end)

	it("refuses out-of-range and malformed values", function()
		assert.matches("speed", refused({ agent = "enemy-1", type = "move", args = { dir = { x = 1, y = 0, z = 0 },
			speed = 7 } }))
		assert.matches("length", refused({ agent = "enemy-1", type = "move", args = { dir = { x = 100, y = 0, z = 0 } } }))
		assert.matches("finite", refused({ agent = "enemy-1", type = "move", args = { dir = { x = 0 / 0, y = 0, z = 0 } } }))
		assert.matches("yaw", refused({ agent = "enemy-1", type = "turn", args = { yaw = 99 } }))
		assert.matches("away", refused({ agent = "enemy-1", type = "dig", args = { pos = { x = 50, y = 8, z = 0 } } }))
		assert.matches("away", refused({ agent = "enemy-1", type = "move_to", args = { pos = { x = 500, y = 8, z = 0 } } }))
		assert.matches("outside the map", refused({ agent = "enemy-1", type = "move_to",
			args = { pos = { x = 1e9, y = 8, z = 0 } } }))
		assert.matches("ticks", refused({ agent = "enemy-1", type = "wait", args = { ticks = 0 } }))
		assert.matches("message", refused({ agent = "enemy-1", type = "chat", args = { message = "" } }))
		assert.matches("item", refused({ agent = "enemy-1", type = "place", args = { pos = { x = 1, y = 8, z = 0 } } }))
	end)

	it("knows exactly the action types the Python schema publishes", function()
		local helper = require("spec.helper")
		local schema = helper.schema("action")
		local published = {}
		for t in pairs(schema.discriminator.mapping) do
			published[#published + 1] = t
		end
		table.sort(published)
		local mine = { unpack(actions.TYPES) }
		table.sort(mine)
		assert.same(published, mine)
	end)
end)
