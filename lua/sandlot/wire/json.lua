-- sandlot.wire.json: JSON for providers, fakes and sandlot.http, on one lua-cjson instance
-- (cjson.safe). Decoding gives integral numbers within 2^53 back their integer subtype (cjson
-- reads every number as a float). Encoding is a walk of our own: cjson 2.1 writes at most 14
-- significant digits (123456789012345 would come out as 1.2345678901234e+14), keys come out
-- sorted, and a cycle, a function or a mixed table is refused by name.
local cjson = require("cjson.safe").new()
local errors = require("sandlot.errors")

local M = {}

cjson.decode_max_depth(200)
cjson.decode_invalid_numbers(false)           -- NaN, Infinity, hex: not JSON

---JSON null, as decoded and as given to encode.
M.null = cjson.null

local ARRAY = { __name = "sandlot.wire.json.array" }

---Marks t as a JSON array (so that an empty table encodes as `[]`); returns t.
---@param t? table
---@return table
function M.array(t)
  return setmetatable(t or {}, ARRAY)
end

local EXACT = 2 ^ 53

-- Gives integral numbers their integer subtype where the float holds the value exactly.
local function integers(v, depth)
  for k, x in pairs(v) do
    local tx = type(x)
    if tx == "number" then
      if x > -EXACT and x < EXACT then
        local i = math.tointeger(x)
        if i then v[k] = i end
      end
    elseif tx == "table" and depth < 200 then
      integers(x, depth + 1)
    end
  end
  return v
end

---Decodes JSON text. `null` decodes as json.null.
---@param s string
---@return any|nil value
---@return sandlot.Error? err bad_response: not a string, empty, or malformed
function M.decode(s)
  if type(s) ~= "string" then
    return nil, errors.new("bad_response", "JSON: expected text, got " .. type(s))
  end
  local v, err = cjson.decode(s)
  if v == nil then
    return nil, errors.new("bad_response", "malformed JSON: " .. tostring(err),
                           { retryable = false })
  end
  local tv = type(v)
  if tv == "table" then
    integers(v, 0)
  elseif tv == "number" and v > -EXACT and v < EXACT then
    v = math.tointeger(v) or v
  end
  return v
end

local encode_string = cjson.encode          -- a string encodes in C: fast for big payloads

-- path: the keys from the top to the value being encoded (kept as a stack, joined on failure)
local function fail(path, what)
  local where = {}
  for i, k in ipairs(path) do
    where[i] = math.type(k) == "integer" and "[" .. k .. "]" or "." .. tostring(k)
  end
  error("json: cannot encode " .. what .. " at " ..
        (#where == 0 and "the top" or table.concat(where)), 0)
end

local function key_order(a, b)
  return a < b
end

local function walk(v, out, seen, path, depth)
  local tv = type(v)
  if tv == "string" then
    out[#out + 1] = encode_string(v)
  elseif tv == "number" then
    if math.type(v) == "integer" then
      out[#out + 1] = ("%d"):format(v)
    elseif v ~= v or v == math.huge or v == -math.huge then
      fail(path, "the number " .. tostring(v))
    elseif v == math.floor(v) and v > -EXACT and v < EXACT then
      out[#out + 1] = ("%d"):format(math.tointeger(v))
    else                                   -- the shortest text that reads back the same
      local text = ("%.15g"):format(v)
      if tonumber(text) ~= v then text = ("%.16g"):format(v) end
      if tonumber(text) ~= v then text = ("%.17g"):format(v) end
      out[#out + 1] = text
    end
  elseif tv == "boolean" then
    out[#out + 1] = v and "true" or "false"
  elseif v == M.null then
    out[#out + 1] = "null"
  elseif tv == "table" then
    if seen[v] then fail(path, "a cycle (a table that contains itself)") end
    if depth > 200 then fail(path, "a value nested deeper than 200 levels") end
    seen[v] = true
    local mt = getmetatable(v)
    local n, count, strings = #v, 0, {}
    for k in pairs(v) do
      count = count + 1
      if type(k) == "string" then strings[#strings + 1] = k
      elseif math.type(k) ~= "integer" then
        fail(path, "a table key " .. tostring(k) .. " (keys are strings, or 1..n for arrays)")
      elseif k < 1 or k > n then
        fail(path, "a sparse array (key " .. k .. ")")
      end
    end
    if #strings > 0 and #strings < count then
      fail(path, "a table with both string and integer keys")
    end
    if #strings == 0 and (count > 0 or mt == ARRAY) then
      if count ~= n then fail(path, "a sparse array") end
      out[#out + 1] = "["
      for i = 1, n do
        if i > 1 then out[#out + 1] = "," end
        path[depth + 1] = i
        walk(v[i], out, seen, path, depth + 1)
        path[depth + 1] = nil
      end
      out[#out + 1] = "]"
    else
      table.sort(strings, key_order)
      out[#out + 1] = "{"
      for i, k in ipairs(strings) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = encode_string(k)
        out[#out + 1] = ":"
        path[depth + 1] = k
        walk(v[k], out, seen, path, depth + 1)
        path[depth + 1] = nil
      end
      out[#out + 1] = "}"
    end
    seen[v] = nil
  else
    fail(path, "a " .. tv)
  end
end

---Encodes a value as JSON. Integers are exact, keys sorted, an empty table is `{}` unless
---marked with json.array. Raises (misuse) on a function, userdata, cycle, NaN or infinity,
---sparse array, or a table mixing string and integer keys, naming where it is.
---@param v any
---@return string
function M.encode(v)
  local out = {}
  walk(v, out, {}, {}, 0)
  return table.concat(out)
end

return M
