-- sandlot._redact: the one place that decides what is a secret. Telemetry metadata, error
-- context and serialized handles all pass through here before anyone sees them.
local M = {}

M.MARK = "[REDACTED]"

-- A key is secret when its lowercased name contains one of these words or is one of `exact`.
local words = { "password", "passwd", "passphrase", "secret", "token", "api_key", "apikey",
                "private_key", "privatekey", "authorization", "cookie", "credential",
                "session_key", "access_key" }
local exact = { key = true, auth = true, pass = true, pwd = true, ["x-api-key"] = true }

---Tells whether a field or header name names a secret.
---@param name any
---@return boolean
local known, nknown = {}, 0      -- name -> answer: the same few names come by on every call

function M.is_secret(name)
  if type(name) ~= "string" then return false end
  local hit = known[name]
  if hit ~= nil then return hit end
  local n = name:lower():gsub("-", "_")
  local yes = exact[n] or exact[name:lower()] or false
  for i = 1, #words do
    if yes then break end
    if n:find(words[i], 1, true) then yes = true end
  end
  if #name <= 64 then               -- kept bounded: a flood of odd names empties it
    if nknown >= 1024 then known, nknown = {}, 0 end
    known[name], nknown = yes, nknown + 1
  end
  return yes
end

---Returns a copy of t with secret-named fields replaced by "[REDACTED]" (depth-limited,
---cycles cut). Non-table values are returned as they are.
---@param t any
---@param depth? integer
---@return any
function M.redact(t, depth, seen)
  if type(t) ~= "table" then return t end
  depth = depth or 6
  seen = seen or {}
  if depth <= 0 or seen[t] then return "[...]" end
  seen[t] = true
  local out = {}
  for k, v in pairs(t) do
    if M.is_secret(k) and v ~= nil and v ~= false then
      out[k] = M.MARK
    elseif type(v) == "table" and getmetatable(v) == nil then
      out[k] = M.redact(v, depth - 1, seen)
    else
      out[k] = v
    end
  end
  seen[t] = nil
  return out
end

-- Command lines -------------------------------------------------------------------------------
-- What a command line may carry: credentials in headers (Bearer, Basic, secret-named header
-- names), flags (--password=x, --token x), NAME=value pairs, URL userinfo and query values.

-- the words of a NAME (split at _ - .) that make it secret, beyond is_secret's
local name_words = { key = true, keys = true, auth = true, pass = true, pwd = true, pw = true,
                     passwd = true, password = true, token = true, tokens = true,
                     secret = true, secrets = true, credential = true, credentials = true,
                     cookie = true, apikey = true, passphrase = true, session = true,
                     signature = true, sig = true, jwt = true, bearer = true }

---Tells whether NAME (an environment variable, flag, header or query name) names a secret:
---is_secret(name), or one of its words (split at _ - .) is key, auth, pass, token, ...
---@param name any
---@return boolean
function M.is_secret_name(name)
  if type(name) ~= "string" then return false end
  if M.is_secret(name) then return true end
  for w in name:lower():gmatch("[^_%-%.]+") do
    if name_words[w] then return true end
  end
  return false
end

local TOKEN68 = "[%w%-%._~%+/]+=*"       -- RFC 7235 credentials (Bearer, Basic)

-- a quoted or bare value at the start of s: returns the value's text and the rest
local function value_at(s)
  local q = s:sub(1, 1)
  if q == '"' or q == "'" then
    local close = s:find(q, 2, true)
    if close then return s:sub(1, close), s:sub(close + 1) end
    return s, ""
  end
  local v = s:match("^[^%s&\"';|#]*")
  return v, s:sub(#v + 1)
end

-- Each match of `pattern` (capturing a name) that `wants(name, start)` is followed by a value
-- (value_at) that becomes MARK, quotes kept; an empty value, or one `skip` refuses, stays.
local function redact_after(s, pattern, wants, skip)
  local out, pos = {}, 1
  while true do
    local a, b, name = s:find(pattern, pos)
    if not a then break end
    local v, rest
    if wants(name, a) then v, rest = value_at(s:sub(b + 1)) end
    if v and v ~= "" and not (skip and skip(v)) then
      local q = v:sub(1, 1)
      out[#out + 1] = s:sub(pos, b) .. ((q == '"' or q == "'") and (q .. M.MARK .. q) or M.MARK)
      pos = #s - #rest + 1
    else
      out[#out + 1] = s:sub(pos, b)
      pos = b + 1
    end
  end
  out[#out + 1] = s:sub(pos)
  return table.concat(out)
end

-- NAME=value, --name=value, ?name=value&: the value goes, the name stays
local function redact_pairs(s)
  return redact_after(s, "([%w_%-%.]+)=", function(name, a)
    return M.is_secret_name((name:gsub("^%-+", ""))) and (a == 1 or not s:sub(a - 1, a - 1)
      :match("[%w_]"))
  end)
end

-- --token value, -password "a b" (in a shell line): the value after a secret-named flag
local function redact_flags(s)
  return redact_after(s, "%f[%-]%-%-?([%w_%-]+)%s+", M.is_secret_name,
                      function(v) return v:sub(1, 1) == "-" end)
end

---Returns text with credentials replaced by "[REDACTED]": Bearer and Basic credentials,
---secret-named headers ("X-Api-Key: v"), NAME=value and --name=value pairs with secret names,
-----name value after a secret-named flag, URL userinfo and secret-named query values.
---@param text string
---@return string
function M.text(text)
  if type(text) ~= "string" then return text end
  local s = text
  -- URL userinfo: scheme://user:pass@host
  s = s:gsub("(%a[%w+.%-]*://)[^/@%s\"']+@", "%1" .. M.MARK .. "@")
  -- headers with a secret name: "Authorization: Bearer x", "X-Api-Key: x"
  s = s:gsub("%f[%w%-_]([%w%-_]+):([ \t]*)([^\r\n\"']+)", function(name, sp, v)
    if M.is_secret_name(name) and v:sub(1, #M.MARK) ~= M.MARK then   -- once is enough
      return name .. ":" .. sp .. M.MARK
    end
  end)
  -- credentials after a scheme word wherever they are
  s = s:gsub("%f[%w]([Bb]earer)(%s+)" .. TOKEN68, "%1%2" .. M.MARK)
  s = s:gsub("%f[%w]([Bb]asic)(%s+)" .. TOKEN68, "%1%2" .. M.MARK)
  s = redact_pairs(s)
  s = redact_flags(s)
  -- curl -u user:pass, --user user:pass
  s = s:gsub("(%f[%-]%-%-?u[s]?[e]?[r]?)(%s+)([^%s:]+):(%S+)", function(flag, sp, user)
    if flag == "-u" or flag == "--user" then return flag .. sp .. user .. ":" .. M.MARK end
  end)
  return s
end

local function is_secret_flag(a)
  local name = a:match("^%-%-?([%w_%-]+)$")
  return name ~= nil and M.is_secret_name(name)
end

---Returns text with every occurrence of each of `values` (known secrets, such as a provider's
---credentials) replaced by "[REDACTED]", and whether anything was replaced.
---@param text string
---@param values string[]
---@return string text, boolean changed
function M.values(text, values)
  if type(text) ~= "string" then return text, false end
  local changed = false
  for i = 1, #values do
    local v = values[i]
    local a, b = text:find(v, 1, true)
    while a do
      text, changed = text:sub(1, a - 1) .. M.MARK .. text:sub(b + 1), true
      a, b = text:find(v, a + #M.MARK, true)
    end
  end
  return text, changed
end

---Returns a copy of t for logs and telemetry: redact(t) (secret-named keys), and every string
---value (and a string t itself) through M.text.
---@param t any
---@return any
function M.scrub(t, depth, seen)
  if type(t) == "string" then return M.text(t) end
  if type(t) ~= "table" then return t end
  depth = depth or 6
  seen = seen or {}
  if depth <= 0 or seen[t] then return "[...]" end
  seen[t] = true
  local out = {}
  for k, v in pairs(t) do
    if M.is_secret(k) and v ~= nil and v ~= false then
      out[k] = M.MARK
    elseif type(v) == "string" then
      out[k] = M.text(v)
    elseif type(v) == "table" and getmetatable(v) == nil then
      out[k] = M.scrub(v, depth - 1, seen)
    else
      out[k] = v
    end
  end
  seen[t] = nil
  return out
end

---Returns a command line for logs and telemetry: a shell string through M.text, or an argv
---list joined with spaces, each argument through M.text and the argument after a secret-named
---flag (--token x) or after -u/--user (user:pass) redacted.
---@param cmd string|string[]
---@return string
function M.command(cmd)
  if type(cmd) == "string" then return M.text(cmd) end
  if type(cmd) ~= "table" then return tostring(cmd) end
  local out = {}
  for i = 1, #cmd do
    local a, prev = tostring(cmd[i]), i > 1 and tostring(cmd[i - 1]) or nil
    if prev and is_secret_flag(prev) then
      a = M.MARK
    elseif prev == "-u" or prev == "--user" then
      a = a:gsub(":.*", ":" .. M.MARK)
    else
      a = M.text(a)
    end
    out[i] = a
  end
  return table.concat(out, " ")
end

return M
