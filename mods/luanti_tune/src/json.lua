-- Small, strict JSON encoder/decoder.
--
-- Why not core.write_json: it writes every number as a float (42 -> 42.0) and empty tables as
-- null. Here integers are written as integers, an empty table is `{}` unless marked as an array
-- with json.array(), strings are escaped and invalid UTF-8 bytes are replaced, and non-finite
-- numbers (NaN, inf) are written as 0 so a single bad sample can never get a whole batch refused.
-- The decoder is used by the busted specs and as a fallback outside the engine.

local json = {}

local ARRAY_MT = { __jsontype = "array" }
local OBJECT_MT = { __jsontype = "object" }

--- Marks t (default: a new table) as a JSON array, so that an empty one encodes as [].
function json.array(t)
	return setmetatable(t or {}, ARRAY_MT)
end

--- Marks t as a JSON object (the default for empty tables anyway).
function json.object(t)
	return setmetatable(t or {}, OBJECT_MT)
end

json.null = setmetatable({}, { __jsontype = "null" })

local escapes = {
	['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
	["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
}

local function escape_char(c)
	return escapes[c] or string.format("\\u%04x", c:byte())
end

--- Replaces bytes that are not part of a valid UTF-8 sequence by '?'.
function json.sanitize_utf8(s)
	if not s:find("[\128-\255]") then
		return s
	end
	local out, i, n = {}, 1, #s
	while i <= n do
		local c = s:byte(i)
		local len = 0
		if c < 0x80 then
			len = 1
		elseif c >= 0xC2 and c <= 0xDF then
			len = 2
		elseif c >= 0xE0 and c <= 0xEF then
			len = 3
		elseif c >= 0xF0 and c <= 0xF4 then
			len = 4
		end
		local ok = len > 0 and i + len - 1 <= n
		if ok then
			for k = i + 1, i + len - 1 do
				local b = s:byte(k)
				if b < 0x80 or b > 0xBF then
					ok = false
					break
				end
			end
		end
		if ok then
			out[#out + 1] = s:sub(i, i + len - 1)
			i = i + len
		else
			out[#out + 1] = "?"
			i = i + 1
		end
	end
	return table.concat(out)
end

local function encode_string(s)
	if not s:find('[%c"\\\128-\255]') then
		return '"' .. s .. '"' -- fast path: nothing to escape or check
	end
	s = json.sanitize_utf8(s)
	return '"' .. s:gsub('[%c"\\]', escape_char) .. '"'
end

local floor = math.floor

local function encode_number(x)
	if x ~= x or x == math.huge or x == -math.huge then
		return "0"
	end
	if x > -1e14 and x < 1e14 then
		-- tostring formats with "%.14g" (Lua 5.1 and LuaJIT): integers below 1e14 come out exact
		-- and without a decimal point, fractions with 14 significant digits
		return tostring(x)
	end
	if x == floor(x) and x >= -9007199254740992 and x <= 9007199254740992 then
		return string.format("%d", x)
	end
	return string.format("%.14g", x)
end

local function is_array(t)
	local mt = getmetatable(t)
	if mt == ARRAY_MT then
		return true
	end
	if mt == OBJECT_MT then
		return false
	end
	if t[1] == nil then
		return false
	end
	local n = 0
	for _ in pairs(t) do
		n = n + 1
	end
	return n == #t
end

local encode_value

-- Object keys repeat in every event: cache their encoded form (bounded).
local key_cache, key_cache_size = {}, 0
local function encoded_key(k)
	local e = key_cache[k]
	if e == nil then
		e = encode_string(k) .. ":"
		if key_cache_size < 2048 then
			key_cache[k] = e
			key_cache_size = key_cache_size + 1
		end
	end
	return e
end

local function encode_table(t, out, depth)
	if depth > 32 then
		error("json: nesting too deep")
	end
	if getmetatable(t) == getmetatable(json.null) then
		out[#out + 1] = "null"
		return
	end
	if is_array(t) then
		if type(t[1]) == "number" then
			-- fast path for number arrays (voxel codes): table.concat formats like tostring
			local plain = true
			for i = 1, #t do
				local x = t[i]
				if type(x) ~= "number" or x ~= x or x <= -1e14 or x >= 1e14 then
					plain = false
					break
				end
			end
			if plain then
				out[#out + 1] = "[" .. table.concat(t, ",") .. "]"
				return
			end
		end
		out[#out + 1] = "["
		for i = 1, #t do
			if i > 1 then
				out[#out + 1] = ","
			end
			encode_value(t[i], out, depth + 1)
		end
		out[#out + 1] = "]"
		return
	end
	local keys = {}
	for k, v in pairs(t) do
		if type(k) ~= "string" then
			error("json: object key must be a string, got " .. type(k))
		end
		if v ~= nil then
			keys[#keys + 1] = k
		end
	end
	table.sort(keys)
	out[#out + 1] = "{"
	for i, k in ipairs(keys) do
		if i > 1 then
			out[#out + 1] = ","
		end
		out[#out + 1] = encoded_key(k)
		encode_value(t[k], out, depth + 1)
	end
	out[#out + 1] = "}"
end

encode_value = function(v, out, depth)
	local tv = type(v)
	if tv == "string" then
		out[#out + 1] = encode_string(v)
	elseif tv == "number" then
		out[#out + 1] = encode_number(v)
	elseif tv == "boolean" then
		out[#out + 1] = v and "true" or "false"
	elseif tv == "nil" then
		out[#out + 1] = "null"
	elseif tv == "table" then
		encode_table(v, out, depth)
	else
		error("json: cannot encode a " .. tv)
	end
end

--- Encodes v as compact JSON; raises an error for unencodable values (functions, mixed keys).
function json.encode(v)
	local out = {}
	encode_value(v, out, 0)
	return table.concat(out)
end

-- ------------------------------------------------------------------------------- decoder

local function decode_error(str, pos, msg)
	error(string.format("json: %s at position %d near %q", msg, pos, str:sub(pos, pos + 10)), 0)
end

local function skip_ws(str, pos)
	return str:find("[^ \t\r\n]", pos) or #str + 1
end

local decode_value

local function utf8_char(cp)
	if cp < 0x80 then
		return string.char(cp)
	elseif cp < 0x800 then
		return string.char(0xC0 + math.floor(cp / 0x40), 0x80 + cp % 0x40)
	elseif cp < 0x10000 then
		return string.char(0xE0 + math.floor(cp / 0x1000), 0x80 + math.floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
	end
	return string.char(0xF0 + math.floor(cp / 0x40000), 0x80 + math.floor(cp / 0x1000) % 0x40,
		0x80 + math.floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
end

local function decode_string(str, pos)
	local out = {}
	local i = pos + 1
	while true do
		local c = str:sub(i, i)
		if c == "" then
			decode_error(str, pos, "unterminated string")
		elseif c == '"' then
			return table.concat(out), i + 1
		elseif c == "\\" then
			local e = str:sub(i + 1, i + 1)
			local simple = { b = "\b", f = "\f", n = "\n", r = "\r", t = "\t", ['"'] = '"', ["\\"] = "\\", ["/"] = "/" }
			if simple[e] then
				out[#out + 1] = simple[e]
				i = i + 2
			elseif e == "u" then
				local hex = str:sub(i + 2, i + 5)
				if not hex:match("^%x%x%x%x$") then
					decode_error(str, i, "bad unicode escape")
				end
				local cp = tonumber(hex, 16)
				i = i + 6
				if cp >= 0xD800 and cp <= 0xDBFF and str:sub(i, i + 1) == "\\u" then
					local lo = tonumber(str:sub(i + 2, i + 5), 16)
					if lo and lo >= 0xDC00 and lo <= 0xDFFF then
						cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00)
						i = i + 6
					end
				end
				out[#out + 1] = utf8_char(cp)
			else
				decode_error(str, i, "bad escape")
			end
		else
			local j = str:find('["\\]', i) or #str + 1
			out[#out + 1] = str:sub(i, j - 1)
			i = j
		end
	end
end

local function decode_array(str, pos)
	local arr = json.array()
	pos = skip_ws(str, pos + 1)
	if str:sub(pos, pos) == "]" then
		return arr, pos + 1
	end
	while true do
		local v
		v, pos = decode_value(str, pos)
		arr[#arr + 1] = v
		pos = skip_ws(str, pos)
		local c = str:sub(pos, pos)
		if c == "]" then
			return arr, pos + 1
		elseif c ~= "," then
			decode_error(str, pos, "expected ',' or ']'")
		end
		pos = skip_ws(str, pos + 1)
	end
end

local function decode_object(str, pos)
	local obj = json.object()
	pos = skip_ws(str, pos + 1)
	if str:sub(pos, pos) == "}" then
		return obj, pos + 1
	end
	while true do
		if str:sub(pos, pos) ~= '"' then
			decode_error(str, pos, "expected a string key")
		end
		local k
		k, pos = decode_string(str, pos)
		pos = skip_ws(str, pos)
		if str:sub(pos, pos) ~= ":" then
			decode_error(str, pos, "expected ':'")
		end
		local v
		v, pos = decode_value(str, skip_ws(str, pos + 1))
		obj[k] = v
		pos = skip_ws(str, pos)
		local c = str:sub(pos, pos)
		if c == "}" then
			return obj, pos + 1
		elseif c ~= "," then
			decode_error(str, pos, "expected ',' or '}'")
		end
		pos = skip_ws(str, pos + 1)
	end
end

decode_value = function(str, pos)
	pos = skip_ws(str, pos)
	local c = str:sub(pos, pos)
	if c == "{" then
		return decode_object(str, pos)
	elseif c == "[" then
		return decode_array(str, pos)
	elseif c == '"' then
		return decode_string(str, pos)
	elseif str:sub(pos, pos + 3) == "true" then
		return true, pos + 4
	elseif str:sub(pos, pos + 4) == "false" then
		return false, pos + 5
	elseif str:sub(pos, pos + 3) == "null" then
		return json.null, pos + 4
	end
	local num = str:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
	if num and num ~= "" and tonumber(num) then
		return tonumber(num), pos + #num
	end
	decode_error(str, pos, "unexpected character")
end

--- Decodes a JSON text; JSON null becomes json.null. Raises an error on malformed input.
function json.decode(str)
	if type(str) ~= "string" then
		error("json: expected a string, got " .. type(str), 0)
	end
	local v, pos = decode_value(str, 1)
	pos = skip_ws(str, pos)
	if pos <= #str then
		decode_error(str, pos, "trailing characters")
	end
	return v
end

--- Like json.decode but returns nil, message instead of raising.
function json.try_decode(str)
	local ok, v = pcall(json.decode, str)
	if ok then
		return v
	end
	return nil, v
end

return json
