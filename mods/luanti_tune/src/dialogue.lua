-- NPC dialogue: a player talks to an NPC agent (chat "@npc-1 hello" / "npc-1: hello", or the
-- right-click dialog); the mod asks POST /v1/chat/completions asynchronously (npc + user, the
-- service builds the persona and the player's context) and the NPC says the reply in chat when it
-- arrives, on a later server step. Nothing here waits for the service or raises into the engine.

local json = luanti_tune.require("json")

local dialogue = {}

dialogue.MODEL = "luanti-npc"
dialogue.MAX_MESSAGE = 512 -- characters of a player's message sent to the service
dialogue.MAX_REPLY = 400 -- characters of a reply said in chat

local NAME = "[%w_%-]+"

--- Parses a chat line addressed to an NPC: "@<npc> text" (optionally "@<npc>: text" or
--- "@<npc>, text") or "<npc>: text". is_npc(name) tells whether an NPC of that name exists.
--- Returns npc, text or nil.
function dialogue.parse_address(message, is_npc)
	if type(message) ~= "string" then
		return nil
	end
	local name, text = message:match("^%s*@(" .. NAME .. ")[:,]?%s+(.-)%s*$")
	if not name then
		name, text = message:match("^%s*(" .. NAME .. "):%s+(.-)%s*$")
	end
	if not name or text == "" or not is_npc(name) then
		return nil
	end
	return name, text
end

--- The JSON body of one chat completion request.
function dialogue.request_body(npc, player, text, max_tokens)
	return json.encode({
		model = dialogue.MODEL,
		npc = npc,
		user = player,
		max_tokens = max_tokens,
		messages = json.array({ { role = "user", content = text:sub(1, dialogue.MAX_MESSAGE) } }),
	})
end

--- One chat line out of a model reply: whitespace collapsed, control characters removed, bounded.
function dialogue.clean_reply(text)
	if type(text) ~= "string" then
		return nil
	end
	text = json.sanitize_utf8(text):gsub("%c", " "):gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")
	if #text > dialogue.MAX_REPLY then
		-- cut at a character boundary (never inside a UTF-8 sequence)
		local cut = dialogue.MAX_REPLY
		while cut > 0 and text:byte(cut + 1) and text:byte(cut + 1) >= 0x80 and text:byte(cut + 1) < 0xC0 do
			cut = cut - 1
		end
		text = text:sub(1, cut)
	end
	if text == "" then
		return nil
	end
	return text
end

--- The reply text of an HTTP result ({succeeded, code, data, timeout}), or nil, reason.
function dialogue.reply_of(res)
	if type(res) ~= "table" then
		return nil, "no result"
	end
	if res.timeout then
		return nil, "timeout"
	end
	local code = tonumber(res.code) or 0
	if not res.succeeded or code == 0 then
		return nil, "no connection"
	end
	if code ~= 200 then
		return nil, "HTTP " .. tostring(code)
	end
	local data = json.try_decode(res.data or "")
	local choice = type(data) == "table" and type(data.choices) == "table" and data.choices[1]
	local message = type(choice) == "table" and choice.message
	local content = type(message) == "table" and message.content
	if type(content) ~= "string" then
		return nil, "answer has no choices[1].message.content"
	end
	local text = dialogue.clean_reply(content)
	if not text then
		return nil, "empty reply"
	end
	return text
end

--- c: {fetch(request, callback), cfg (enabled, url, token, max_tokens, timeout, max_inflight,
--- fallback), now(), ratelog, log(level, msg), say(npc, player, text), emit(type, actor, pos,
--- payload, target), npc_pos(npc)}.
function dialogue.new(c)
	local self = {
		c = c,
		inflight = {}, -- request number -> {npc, player, t0}
		n_inflight = 0,
		next_id = 0,
		down = false,
		stats = { requests = 0, replies = 0, failures = 0, busy = 0, expired = 0 },
		headers = { "Content-Type: application/json" },
	}
	if c.cfg.token and c.cfg.token ~= "" then
		self.headers[#self.headers + 1] = "Authorization: Bearer " .. c.cfg.token
	end
	return setmetatable(self, { __index = dialogue })
end

local function finish(self, id)
	local req = self.inflight[id]
	if req then
		self.inflight[id] = nil
		self.n_inflight = self.n_inflight - 1
	end
	return req
end

--- Asks the service for npc's answer to player's text. Returns true if a request was sent.
function dialogue:ask(npc, player, text)
	local cfg = self.c.cfg
	if not cfg.enabled then
		return false
	end
	if self.n_inflight >= cfg.max_inflight then
		self.stats.busy = self.stats.busy + 1
		self.c.ratelog:log_key("dialogue_busy", "warning", string.format(
			"[luanti_tune] %d NPC replies pending: not asking for another one", self.n_inflight))
		return false
	end
	self.next_id = self.next_id + 1
	local id = self.next_id
	self.inflight[id] = { npc = npc, player = player, t0 = self.c.now() }
	self.n_inflight = self.n_inflight + 1
	self.stats.requests = self.stats.requests + 1
	self.c.fetch({ url = cfg.url, method = "POST", data = dialogue.request_body(npc, player, text, cfg.max_tokens),
		timeout = cfg.timeout, extra_headers = self.headers }, function(res)
		local ok, err = pcall(self.handle, self, id, res)
		if not ok then
			self.c.ratelog:log_key("dialogue_error", "error", "[luanti_tune] bad NPC reply: " .. tostring(err))
		end
	end)
	return true
end

--- Handles the HTTP result of request id (called by the fetch callback, on a later step).
function dialogue:handle(id, res)
	local req = finish(self, id)
	if not req then
		return -- expired by step(): its slot was already freed
	end
	local text, why = dialogue.reply_of(res)
	if not text then
		self.stats.failures = self.stats.failures + 1
		self.down = true
		self.c.ratelog:log_key("dialogue_down", "warning",
			"[luanti_tune] NPC dialogue unavailable (" .. tostring(why) .. ")")
		local fallback = self.c.cfg.fallback
		if fallback and fallback ~= "" then
			self.c.say(req.npc, req.player, fallback)
		end
		return
	end
	if self.down then
		self.down = false
		self.c.log("action", "[luanti_tune] NPC dialogue reachable again")
	end
	self.stats.replies = self.stats.replies + 1
	self.c.say(req.npc, req.player, text)
	self.c.emit("chat.msg", { kind = "agent", name = req.npc }, self.c.npc_pos(req.npc),
		{ message = text, to = req.player })
end

--- Called every server step: frees the slots of requests whose callback never came.
function dialogue:step()
	if self.n_inflight == 0 then
		return
	end
	local limit = self.c.now() - 2 * self.c.cfg.timeout - 1
	for id, req in pairs(self.inflight) do
		if req.t0 < limit then
			finish(self, id)
			self.stats.expired = self.stats.expired + 1
		end
	end
end

return dialogue
