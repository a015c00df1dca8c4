require("spec.helper")
local helper = require("spec.helper")
local json = luanti_tune.require("json")
local Dialogue = luanti_tune.require("dialogue")

local NPCS = { ["npc-1"] = true, ["npc-22"] = true }
local function is_npc(name)
	return NPCS[name] == true
end

local function ok_res(content)
	return { succeeded = true, code = 200, completed = true,
		data = json.encode({ choices = { { index = 0, message = { role = "assistant", content = content } } } }) }
end

--- A dialogue object with a recording fetch (callbacks are held until the test runs them).
local function make(cfg_over)
	local clock = helper.clock()
	local rec = { fetches = {}, said = {}, events = {}, logs = {} }
	local cfg = { enabled = true, url = "http://svc/v1/chat/completions", token = "tok", max_tokens = 48,
		timeout = 5, max_inflight = 2, fallback = "" }
	for k, v in pairs(cfg_over or {}) do
		cfg[k] = v
	end
	local log = function(level, msg)
		rec.logs[#rec.logs + 1] = { level, msg }
	end
	local RateLog = luanti_tune.require("ratelog")
	local d = Dialogue.new({
		fetch = function(req, cb)
			rec.fetches[#rec.fetches + 1] = { req = req, cb = cb }
		end,
		cfg = cfg, now = clock.now, log = log, ratelog = RateLog.new(log, clock.now, 30),
		say = function(npc, player, text)
			rec.said[#rec.said + 1] = { npc, player, text }
		end,
		emit = function(etype, actor, pos, payload)
			rec.events[#rec.events + 1] = { type = etype, actor = actor, pos = pos, payload = payload }
		end,
		npc_pos = function()
			return { x = 1, y = 2, z = 3 }
		end,
	})
	return d, rec, clock
end

describe("dialogue addressing", function()
	it("recognises @name and name: forms for existing NPCs only", function()
		assert.same({ "npc-1", "hello there" }, { Dialogue.parse_address("@npc-1 hello there", is_npc) })
		assert.same({ "npc-22", "hi" }, { Dialogue.parse_address("  @npc-22:  hi  ", is_npc) })
		assert.same({ "npc-1", "what now?" }, { Dialogue.parse_address("npc-1: what now?", is_npc) })
		assert.is_nil(Dialogue.parse_address("@npc-3 hello", is_npc)) -- no such NPC
		assert.is_nil(Dialogue.parse_address("hello npc-1", is_npc))
		assert.is_nil(Dialogue.parse_address("@npc-1", is_npc)) -- nothing said
		assert.is_nil(Dialogue.parse_address("@npc-1    ", is_npc))
		assert.is_nil(Dialogue.parse_address("npc-1:no space", is_npc))
		assert.is_nil(Dialogue.parse_address(nil, is_npc))
	end)
end)

describe("dialogue request", function()
	it("names npc, user and model and bounds tokens and message size", function()
		local body = json.decode(Dialogue.request_body("npc-1", "alice", "hi " .. ("x"):rep(2000), 32))
		assert.equals("luanti-npc", body.model)
		assert.equals("npc-1", body.npc)
		assert.equals("alice", body.user)
		assert.equals(32, body.max_tokens)
		assert.equals(1, #body.messages)
		assert.equals("user", body.messages[1].role)
		assert.equals(Dialogue.MAX_MESSAGE, #body.messages[1].content)
	end)

	it("sends asynchronously with timeout and token, and bounds requests in flight", function()
		local d, rec = make()
		assert.is_true(d:ask("npc-1", "alice", "hello"))
		assert.is_true(d:ask("npc-1", "bob", "hello"))
		assert.is_false(d:ask("npc-1", "carol", "hello")) -- two in flight already
		assert.equals(2, #rec.fetches)
		assert.equals(1, d.stats.busy)
		local req = rec.fetches[1].req
		assert.equals("POST", req.method)
		assert.equals("http://svc/v1/chat/completions", req.url)
		assert.equals(5, req.timeout)
		assert.truthy(table.concat(req.extra_headers, "\n"):find("Authorization: Bearer tok", 1, true))
		assert.equals(0, #rec.said) -- nothing said before the reply arrives
		rec.fetches[1].cb(ok_res("hi"))
		assert.is_true(d:ask("npc-1", "carol", "hello")) -- a slot is free again
	end)

	it("does nothing when disabled", function()
		local d, rec = make({ enabled = false })
		assert.is_false(d:ask("npc-1", "alice", "hello"))
		assert.equals(0, #rec.fetches)
	end)
end)

describe("dialogue reply", function()
	it("says the reply and records it as chat.msg from the NPC to the player", function()
		local d, rec = make()
		d:ask("npc-1", "alice", "hello")
		rec.fetches[1].cb(ok_res("  Well met,\n\ttraveller!  "))
		assert.same({ { "npc-1", "alice", "Well met, traveller!" } }, rec.said)
		assert.equals(1, #rec.events)
		local ev = rec.events[1]
		assert.equals("chat.msg", ev.type)
		assert.same({ kind = "agent", name = "npc-1" }, ev.actor)
		assert.same({ message = "Well met, traveller!", to = "alice" }, ev.payload)
		assert.same({ x = 1, y = 2, z = 3 }, ev.pos)
		assert.equals(1, d.stats.replies)
	end)

	it("bounds a long reply at a character boundary", function()
		local text = Dialogue.clean_reply(("é"):rep(500))
		assert.is_true(#text <= Dialogue.MAX_REPLY)
		assert.equals(0, #text % 2) -- whole two-byte characters only
	end)

	it("extracts the text or a reason from HTTP results", function()
		assert.equals("hey", (Dialogue.reply_of(ok_res("hey"))))
		assert.same({ nil, "timeout" }, { Dialogue.reply_of({ succeeded = false, timeout = true, code = 0 }) })
		assert.same({ nil, "no connection" }, { Dialogue.reply_of({ succeeded = false, code = 0 }) })
		assert.same({ nil, "HTTP 503" }, { Dialogue.reply_of({ succeeded = true, code = 503, data = "{}" }) })
		assert.same({ nil, "empty reply" }, { Dialogue.reply_of(ok_res("  \n ")) })
		local _, why = Dialogue.reply_of({ succeeded = true, code = 200, data = "not json" })
		assert.truthy(why:find("choices", 1, true))
		_, why = Dialogue.reply_of({ succeeded = true, code = 200, data = '{"choices":[]}' })
		assert.truthy(why:find("choices", 1, true))
	end)

	it("on failure says nothing (or the fallback), records nothing and logs once", function()
		local d, rec = make()
		for _ = 1, 3 do
			d:ask("npc-1", "alice", "hello")
			rec.fetches[#rec.fetches].cb({ succeeded = false, code = 0, timeout = true })
		end
		assert.equals(0, #rec.said)
		assert.equals(0, #rec.events)
		assert.equals(3, d.stats.failures)
		assert.equals(1, #rec.logs)
		assert.equals(0, d.n_inflight)
		local d2, rec2 = make({ fallback = "Hmm?" })
		d2:ask("npc-1", "alice", "hello")
		rec2.fetches[1].cb({ succeeded = true, code = 500, data = "{}" })
		assert.same({ { "npc-1", "alice", "Hmm?" } }, rec2.said)
		assert.equals(0, #rec2.events)
	end)

	it("frees the slot of a request whose callback never comes, ignoring it if it comes late", function()
		local d, rec, clock = make({ max_inflight = 1 })
		d:ask("npc-1", "alice", "hello")
		assert.is_false(d:ask("npc-1", "bob", "hello"))
		clock.advance(3)
		d:step()
		assert.is_false(d:ask("npc-1", "bob", "hello")) -- still within the bound
		clock.advance(20)
		d:step()
		assert.equals(1, d.stats.expired)
		assert.is_true(d:ask("npc-1", "bob", "hello"))
		rec.fetches[1].cb(ok_res("late"))
		assert.equals(0, #rec.said)
		assert.equals(1, d.n_inflight) -- bob's request still counted
	end)
end)
