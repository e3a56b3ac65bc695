-- sandlot._check: the one argument checker. Misuse (a wrong type, an unknown option, a bad
-- name) raises with the function's name and, for a misspelt option, a suggestion; world input
-- that a provider got back from a service (a handle's id, a token) gives nil, invalid_input.
-- Used by sandbox, proc, task, http, provider and the providers.
local errors = require("sandlot.errors")

local M = {}

-- Levels: a raising checker takes `level` as error() would take it in the function that calls
-- the checker (2, the default, blames that function's caller).
local function raise(msg, level)
  error(msg, (level or 2) + 2)
end

-- Names ------------------------------------------------------------------------------------

-- Optimal string alignment distance (Levenshtein plus adjacent transpositions: "stauts" is
-- one step from "status"), cut off early when the lengths differ by more than 3.
local function distance(a, b)
  if math.abs(#a - #b) > 3 then return 99 end
  local d = {}
  for i = 0, #a do d[i] = { [0] = i } end
  for j = 0, #b do d[0][j] = j end
  for i = 1, #a do
    local ai = a:byte(i)
    for j = 1, #b do
      local bj = b:byte(j)
      local cost = ai == bj and 0 or 1
      local v = math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
      if i > 1 and j > 1 and ai == b:byte(j - 1) and a:byte(i - 1) == bj then
        v = math.min(v, d[i - 2][j - 2] + 1)
      end
      d[i][j] = v
    end
  end
  return d[#a][#b]
end
M.distance = distance

---Returns the candidate closest to `name` (case-insensitive, at most 2 edits away), or nil.
---Ties go to the name that sorts first, so the answer never depends on table order.
---@param name any
---@param candidates table a list of names, or a table whose string keys are the names
---@return string|nil
function M.suggest(name, candidates)
  if type(name) ~= "string" or name == "" then return nil end
  local list = {}
  if #candidates > 0 then
    for _, c in ipairs(candidates) do list[#list + 1] = c end
  else
    for c in pairs(candidates) do
      if type(c) == "string" then list[#list + 1] = c end
    end
  end
  table.sort(list)
  local lname = name:lower()
  local best, bd = nil, 3
  for _, c in ipairs(list) do
    local lc = c:lower()
    local d = lc == lname and 0 or distance(lname, lc)
    if d < bd then best, bd = c, d end
  end
  return best
end

-- Types ------------------------------------------------------------------------------------

M.TYPES = { string = true, number = true, integer = true, boolean = true, table = true,
            ["function"] = true, any = true }

---Tells whether v has type t: a Lua type name, "integer" (math.type) or "any".
---@param v any
---@param t string
---@return boolean
function M.is_type(v, t)
  if t == "any" then return true end
  if t == "integer" then return math.type(v) == "integer" end
  return type(v) == t
end

---Raises "<what> must be a <t>, got <type>" unless v has type t (nil passes when optional).
---@return any v
function M.type(v, t, what, optional, level)
  if v == nil and optional then return nil end
  if not M.is_type(v, t) then
    raise(("%s must be %s %s, got %s"):format(what, t == "integer" and "an" or "a", t,
                                               math.type(v) or type(v)), level)
  end
  return v
end

-- Options ----------------------------------------------------------------------------------

---Checks an opts table against `spec` and returns it ({} for nil). spec maps each option name
---to true (any value), a type name for M.is_type, or a function(v) returning true, or false
---and what v must be. An unknown key raises "<where>: unknown option 'x' (did you mean 'y'?)".
---@param opts table|nil
---@param spec table<string, true|string|fun(v: any): boolean, string?>
---@param where string the function's name, for messages
---@param level? integer
---@return table opts
function M.opts(opts, spec, where, level)
  if opts == nil then return {} end
  if type(opts) ~= "table" then raise(where .. ": opts must be a table", level) end
  for k, v in pairs(opts) do
    local want = type(k) == "string" and spec[k] or nil
    if want == nil then
      local s = M.suggest(k, spec)
      raise(("%s: unknown option '%s'%s"):format(where, tostring(k),
                                                 s and (" (did you mean '" .. s .. "'?)") or ""),
            level)
    end
    if type(want) == "string" then
      if not M.is_type(v, want) then
        raise(("%s: opts.%s must be %s %s, got %s"):format(where, k,
              want == "integer" and "an" or "a", want, math.type(v) or type(v)), level)
      end
    elseif type(want) == "function" then
      local ok, why = want(v)
      if not ok then
        raise(("%s: opts.%s must be %s"):format(where, k, why or "valid"), level)
      end
    end
  end
  return opts
end

---Returns a set {name = true} of a list of names.
---@param list string[]
---@return table<string, true>
function M.set(list)
  local s = {}
  for _, k in ipairs(list) do s[k] = true end
  return s
end

-- Values -----------------------------------------------------------------------------------

---Turns a command into an argv list: a string is run by /bin/sh -c; a list must be non-empty
---strings (numbers become strings) without NUL bytes. Raises otherwise.
---@param cmd string|string[]
---@param where string
---@param level? integer
---@return string[]
function M.argv(cmd, where, level)
  if type(cmd) == "string" then
    if cmd == "" then raise(where .. ": empty command", level) end
    if cmd:find("%z") then raise(where .. ": the command contains a NUL byte", level) end
    return { "/bin/sh", "-c", cmd }
  end
  if type(cmd) ~= "table" or #cmd == 0 then
    raise(where .. ": command must be a non-empty argv list or a shell string", level)
  end
  local argv = {}
  for i = 1, #cmd do
    local a = cmd[i]
    if type(a) == "number" then a = tostring(a) end
    if type(a) ~= "string" then
      raise(("%s: command[%d] must be a string, got %s"):format(where, i, type(a)), level)
    end
    if a:find("%z") then raise(("%s: command[%d] contains a NUL byte"):format(where, i), level) end
    argv[i] = a
  end
  return argv
end

M.ENV_NAME = "^[%a_][%w_]*$"

---Checks an environment table {NAME = value}: names match M.ENV_NAME, values are strings,
---numbers or false, which means "remove NAME" everywhere. Values hold no NUL byte. Returns
---env (nil stays nil).
---@param env table|nil
---@param where string
---@param level? integer
---@return table|nil
function M.env(env, where, level)
  if env == nil then return nil end
  if type(env) ~= "table" then raise(where .. ": env must be a table", level) end
  for k, v in pairs(env) do
    if type(k) ~= "string" or not k:match(M.ENV_NAME) then
      raise(("%s: env: invalid variable name %s (letters, digits and _, not starting with a " ..
             "digit)"):format(where, tostring(k)), level)
    end
    if type(v) ~= "string" and type(v) ~= "number" and v ~= false then
      raise(("%s: env.%s must be a string, a number or false (remove it), got %s")
        :format(where, k, type(v)), level)
    end
    if type(v) == "string" and v:find("%z") then
      raise(("%s: env.%s contains a NUL byte"):format(where, k), level)
    end
  end
  return env
end

---Applies env to base (a table {NAME = value} changed in place): false removes a name,
---anything else is set as a string. Returns base.
---@param base table
---@param env table|nil checked by M.env
---@return table
function M.apply_env(base, env)
  for k, v in pairs(env or {}) do
    if v == false then base[k] = nil else base[k] = tostring(v) end
  end
  return base
end

---Raises unless path is a non-empty string without NUL bytes; returns it.
---@return string
function M.path(path, where, level, what)
  what = what or "path"
  if type(path) ~= "string" or path == "" then
    raise(("%s: %s must be a non-empty string"):format(where, what), level)
  end
  if path:find("%z") then raise(("%s: %s contains a NUL byte"):format(where, what), level) end
  return path
end

---Returns path when its `..` components never climb above the sandbox root, read lexically
---with the root as "/" whether path is absolute or relative; otherwise nil and an
---invalid_input error. One rule for every provider (the sandbox layer applies it before the
---provider sees the path); providers still resolve symlinks on their side.
---@param path string a path that passed M.path
---@param what? string e.g. "path", "opts.cwd"
---@return string|nil path, sandlot.Error? err
function M.inside(path, what)
  local depth = 0
  for part in path:gmatch("[^/]+") do
    if part == ".." then
      depth = depth - 1
      if depth < 0 then
        return nil, errors.new("invalid_input",
          ("%s %q leaves the sandbox root: '..' climbs above it"):format(what or "path",
            #path > 80 and path:sub(1, 80) .. "..." or path))
      end
    elseif part ~= "." then
      depth = depth + 1
    end
  end
  return path
end

---Returns a file mode as an integer: an integer 0..4095 or an octal string ("644"); nil stays
---nil. Raises otherwise.
---@return integer|nil
function M.mode(mode, where, level)
  if mode == nil then return nil end
  if type(mode) == "string" and mode:match("^[0-7]+$") then mode = tonumber(mode, 8) end
  if math.type(mode) ~= "integer" or mode < 0 or mode > 4095 then
    raise(where .. ": mode must be an integer such as tonumber('644', 8) or a string '644'",
          level)
  end
  return mode
end

---Raises unless t is nil or a number of seconds > 0 (what names it: "opts.timeout").
---@return number|nil
function M.timeout(t, where, level, what)
  if t == nil then return nil end
  if type(t) ~= "number" or not (t > 0) or t == math.huge then
    raise(("%s: %s must be a number of seconds > 0"):format(where, what or "opts.timeout"),
          level)
  end
  return t
end

-- World input ------------------------------------------------------------------------------
-- A provider validates what a service or a stored handle gave it before the value enters a
-- URL path, a file name or a shell line. Bad values are not misuse: nil, invalid_input.

-- The value is shown (quoted, cut at 40 bytes) only when `show`: a token may be a secret.
local function bad(what, v, rule, show)
  local shown = type(v) ~= "string" and "(a " .. type(v) .. ")"
                or show and ("%q"):format(#v > 40 and v:sub(1, 40) .. "..." or v)
                or ("(%d bytes)"):format(#v)
  return nil, errors.new("invalid_input", ("%s %s is not valid (%s)"):format(what, shown, rule))
end

---Returns value when it is a string of at most max_len (default 128) bytes matching pattern
---(default "^[%w][%w_.%-]*$": letters, digits, _ . -, not starting with a symbol); otherwise
---nil and an invalid_input error naming `what`. Never "." or "..".
---@param value any
---@param pattern? string a Lua pattern anchored with ^ and $
---@param what string e.g. "docker container id"
---@param max_len? integer
---@return string|nil value, sandlot.Error? err
function M.id(value, pattern, what, max_len)
  pattern = pattern or "^[%w][%w_.%-]*$"
  max_len = max_len or 128
  if type(value) ~= "string" or value == "" or #value > max_len or value == "."
      or value == ".." or not value:match(pattern) then
    return bad(what or "id", value,
               ("expected at most %d bytes matching %s"):format(max_len, pattern), true)
  end
  return value
end

---Returns value when it is a non-empty string of at most 4096 printable ASCII bytes without
---spaces, quotes, backslashes or shell and URL specials (letters, digits and - . _ ~ : @ + =
---, /, as in base64 and JWTs): safe as a header value, a query value or a shell word once
---quoted, but not as a URL path segment (it may hold '/': use M.id there); otherwise nil and
---invalid_input. The error never shows the value, which may be a secret.
---@param value any
---@param what string
---@return string|nil value, sandlot.Error? err
function M.token(value, what)
  if type(value) ~= "string" or value == "" or #value > 4096
      or not value:match("^[%w%-%._~:@%+=,/]+$") then
    return bad(what or "token", value, "expected printable ASCII without spaces, quotes or " ..
               "shell specials")
  end
  return value
end

return M
