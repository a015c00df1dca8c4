-- A small JSON Schema (draft 2020-12 subset) validator for the schemas pydantic publishes:
-- $ref, oneOf+discriminator, anyOf, type, properties, required, additionalProperties, enum,
-- const, minimum/maximum, exclusiveMinimum/Maximum, minLength/maxLength, items, min/maxItems.
-- (Regex patterns are not checked.) Returns true, or false and "path: message".

local json = luanti_tune.require("json")

local V = {}

local function json_type(v)
	local t = type(v)
	if v == json.null or v == nil then
		return "null"
	elseif t == "boolean" then
		return "boolean"
	elseif t == "number" then
		return "number"
	elseif t == "string" then
		return "string"
	elseif t == "table" then
		local mt = getmetatable(v)
		if mt and mt.__jsontype == "array" then
			return "array"
		end
		if mt and mt.__jsontype == "object" then
			return "object"
		end
		return (v[1] ~= nil) and "array" or "object"
	end
	return t
end

local function resolve(root, ref)
	local name = ref:match("^#/%$defs/(.+)$")
	assert(name, "unsupported $ref " .. ref)
	return assert(root["$defs"][name], "missing $def " .. name)
end

local check

local function type_ok(s, v)
	local want, got = s.type, json_type(v)
	if want == nil then
		return true
	end
	if want == "integer" then
		return got == "number" and v == math.floor(v)
	end
	return want == got
end

check = function(root, s, v, path)
	if s["$ref"] then
		return check(root, resolve(root, s["$ref"]), v, path)
	end
	if s.discriminator and s.oneOf then
		local key = type(v) == "table" and v[s.discriminator.propertyName]
		local ref = key and s.discriminator.mapping[key]
		if not ref then
			return false, path .. ": unknown discriminator " .. tostring(key)
		end
		return check(root, resolve(root, ref), v, path)
	end
	if s.anyOf or s.oneOf then
		local last
		for _, sub in ipairs(s.anyOf or s.oneOf) do
			local ok, err = check(root, sub, v, path)
			if ok then
				return true
			end
			last = err
		end
		return false, last
	end
	if not type_ok(s, v) then
		return false, string.format("%s: expected %s, got %s", path, tostring(s.type), json_type(v))
	end
	if s.const ~= nil and v ~= s.const then
		return false, path .. ": expected const " .. tostring(s.const)
	end
	if s.enum then
		local found = false
		for _, e in ipairs(s.enum) do
			if e == v then
				found = true
			end
		end
		if not found then
			return false, path .. ": not in enum: " .. tostring(v)
		end
	end
	if type(v) == "number" then
		if s.minimum and v < s.minimum or s.maximum and v > s.maximum
			or s.exclusiveMinimum and v <= s.exclusiveMinimum or s.exclusiveMaximum and v >= s.exclusiveMaximum then
			return false, path .. ": out of range: " .. tostring(v)
		end
	end
	if type(v) == "string" then
		if s.minLength and #v < s.minLength or s.maxLength and #v > s.maxLength then
			return false, path .. ": bad length " .. #v
		end
	end
	local jt = json_type(v)
	if jt == "array" then
		if s.minItems and #v < s.minItems or s.maxItems and #v > s.maxItems then
			return false, path .. ": bad item count " .. #v
		end
		if s.items then
			for i, item in ipairs(v) do
				local ok, err = check(root, s.items, item, path .. "[" .. i .. "]")
				if not ok then
					return false, err
				end
			end
		end
	elseif jt == "object" and (s.properties or s.required or s.additionalProperties ~= nil) then
		for _, r in ipairs(s.required or {}) do
			if v[r] == nil then
				return false, path .. "." .. r .. ": required"
			end
		end
		for k, item in pairs(v) do
			local sub = s.properties and s.properties[k]
			if sub then
				local ok, err = check(root, sub, item, path .. "." .. k)
				if not ok then
					return false, err
				end
			elseif s.additionalProperties == false then
				return false, path .. "." .. k .. ": unknown field"
			elseif type(s.additionalProperties) == "table" then
				local ok, err = check(root, s.additionalProperties, item, path .. "." .. k)
				if not ok then
					return false, err
				end
			end
		end
	end
	return true
end

--- Validates value v against the whole schema root.
function V.validate(root, v)
	return check(root, root, v, "$")
end

return V
