-- sandlot.cli: the commands of the host (`sandlot COMMAND [args]`). main.c calls main(arg) with
-- arg[0] the command word and arg[1..] its arguments. Owns the command table, option parsing,
-- help text, exit codes (0 success, 1 failure, 2 usage error), --json output and the one
-- message prefix ("sandlot: CMD: ..."). Each command is a module sandlot.cli.<name> ('-' as
-- '_') returning a command table; see M.NAMES and the shape below.
local check = require("sandlot._check")

local M = {}

M.OK, M.FAILED, M.USAGE = 0, 1, 2

-- The commands, in the order `sandlot help` lists them. A command module returns
-- {
--   name = "gc", summary = "one line for the list", usage = "sandlot gc --provider NAME ...",
--   help = "paragraphs shown by `sandlot help gc`" (optional),
--   args = {min = 1, max = 1, name = "FILE"},   -- positional arguments (default: none)
--   options = {                      -- --help and -h are added to every command
--     {"--provider", arg = "NAME", summary = "..."},          -- takes a value
--     {"--older-than", arg = "SECONDS", number = true, min = 0, summary = "..."},
--     {"--all", summary = "..."},                             -- a flag: true when given
--     {"--env", arg = "K=V", many = true, summary = "..."},    -- repeatable: a list
--   },
--   json = true,                     -- takes --json (documented in the README's schema)
--   rest = true,                     -- keeps the arguments after `--` in o.rest
--   run = function(o) ... end,       -- o = {opts = {provider =, all =, json =, ...},
-- }                                  --      args = {...}, rest = {...}}; returns an exit
--                                    -- status, or nil, err (printed, exit 1)
M.NAMES = { "caps", "check-provider", "checkpoint", "config", "create", "destroy", "exec", "gc",
            "help", "logs", "plugins", "ps", "rm", "shell" }

local function out(...) io.stdout:write(...) end
local function err(...) io.stderr:write(...) end
M.out, M.err = out, err

local cache = {}

---Returns the command table named `name`, or nil.
---@param name string
---@return table|nil
function M.get(name)
  if cache[name] then return cache[name] end
  for _, n in ipairs(M.NAMES) do
    if n == name then
      local c = require("sandlot.cli." .. n:gsub("%-", "_"))
      c.name = n
      c.options = c.options or {}
      if c.json then
        c.options[#c.options + 1] = { "--json", summary = "print one JSON document (schema: " ..
                                      "README, Commands)" }
      end
      c.options[#c.options + 1] = { "--help", short = "-h", summary = "show this help" }
      cache[n] = c
      return c
    end
  end
  return nil
end

---Prints "sandlot: CMD: message" on stderr (the one message prefix); returns M.FAILED.
---@param c table|nil the command (nil: no command part)
---@param fmt string
---@return integer
function M.fail(c, fmt, ...)
  local msg = select("#", ...) > 0 and fmt:format(...) or fmt
  err("sandlot: ", c and (c.name .. ": ") or "", msg, "\n")
  return M.FAILED
end

---Prints a usage error and the command's usage on stderr; returns M.USAGE.
---@param c table
---@param fmt string
---@return integer
function M.usage_error(c, fmt, ...)
  M.fail(c, fmt, ...)
  err("usage: ", c.usage, "\n(see 'sandlot help ", c.name, "')\n")
  return M.USAGE
end

---Prints v as one JSON document and a newline on stdout.
---@param v any
function M.json(v)
  out(require("sandlot.wire.json").encode(v), "\n")
end

---A JSON array, [] when empty.
function M.array(t)
  return require("sandlot.wire.json").array(t or {})
end

---Prints rows of cells in aligned columns three spaces apart, as docker ps does (the first row
---is the heading); trailing blanks are cut.
---@param lines string[][]
function M.columns(lines)
  local width = {}
  for _, l in ipairs(lines) do
    for c, v in ipairs(l) do width[c] = math.max(width[c] or 0, #v) end
  end
  for _, l in ipairs(lines) do
    local cells = {}
    for c, v in ipairs(l) do cells[c] = c < #l and v .. (" "):rep(width[c] - #v) or v end
    out((table.concat(cells, "   "):gsub("%s+$", "")), "\n")
  end
end

---An age for a column: 45s, 12m, 5h, 3d.
---@param secs integer
function M.age(secs)
  if secs < 0 then secs = 0 end
  if secs < 120 then return ("%ds"):format(secs) end
  if secs < 7200 then return ("%dm"):format(secs // 60) end
  if secs < 172800 then return ("%dh"):format(secs // 3600) end
  return ("%dd"):format(secs // 86400)
end

---Text cut to n characters for a column, its end marked "~".
function M.cut(s, n)
  if #s > n then return s:sub(1, n - 1) .. "~" end
  return s
end

local function did_you_mean(s)
  return s and (" (did you mean '" .. s .. "'?)") or ""
end
M.did_you_mean = did_you_mean

local function key_of(opt)
  return opt[1]:gsub("^%-%-", ""):gsub("%-", "_")
end

-- Parses args by c.options; returns o, or nil and the usage error's text.
local function parse(c, args)
  local byname, names = {}, {}
  for _, opt in ipairs(c.options) do
    byname[opt[1]] = opt
    names[#names + 1] = opt[1]
    if opt.short then byname[opt.short] = opt end
  end
  local o = { opts = {}, args = {}, rest = {} }
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "--" then
      if not c.rest then return nil, "no arguments are taken after --" end
      for j = i + 1, #args do o.rest[#o.rest + 1] = args[j] end
      break
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      local name, value = a:match("^(%-%-[^=]+)=(.*)$")
      name = name or a
      local opt = byname[name]
      if not opt then
        return nil, ("unknown option '%s'%s"):format(name,
                                                     did_you_mean(check.suggest(name, names)))
      end
      if opt.arg then
        if value == nil then
          i = i + 1
          value = args[i]
          if value == nil then return nil, ("%s needs a value (%s)"):format(opt[1], opt.arg) end
        end
        if opt.number then
          local n = tonumber(value)
          if not n or (opt.min and n < opt.min) then
            return nil, ("%s needs a number >= %s, got '%s'"):format(opt[1], opt.min or 0, value)
          end
          value = n
        end
        if opt.many then                 -- repeatable: a list in the order given
          local list = o.opts[key_of(opt)] or {}
          list[#list + 1] = value
          o.opts[key_of(opt)] = list
        else
          o.opts[key_of(opt)] = value
        end
      else
        if value ~= nil then return nil, ("%s takes no value"):format(opt[1]) end
        o.opts[key_of(opt)] = true
      end
    else
      o.args[#o.args + 1] = a
    end
    i = i + 1
  end
  if o.opts.help then return o end
  local spec = c.args or { min = 0, max = 0 }
  if #o.args < spec.min then return nil, "missing " .. (spec.name or "argument") end
  if #o.args > spec.max then
    return nil, spec.max == 0 and ("unexpected argument '%s'"):format(o.args[spec.max + 1])
                or ("too many arguments (at most %d)"):format(spec.max)
  end
  return o
end

---Returns the help text of a command: usage, summary, options, details.
---@param c table
---@return string
function M.help_text(c)
  local lines = { "usage: " .. c.usage, "", c.summary, "", "options:" }
  for _, opt in ipairs(c.options) do
    local left = (opt.short and (opt.short .. ", ") or "") .. opt[1]
                 .. (opt.arg and (" " .. opt.arg) or "")
    lines[#lines + 1] = ("  %-22s %s"):format(left, opt.summary or "")
  end
  lines[#lines + 1] = ""
  if c.help then lines[#lines + 1] = (c.help:gsub("\n$", "")) end
  lines[#lines + 1] = "exit status: 0 success, 1 failure, 2 usage error"
  return table.concat(lines, "\n") .. "\n"
end

---Runs the command named by arg[0] with arg[1..]; exits with its status when non-zero.
---@param arg table
---@return integer status
function M.main(arg)
  local name = arg and arg[0]
  local c = type(name) == "string" and M.get(name)
  if not c and type(name) == "string" then                  -- a command a plugin adds
    local pc = require("sandlot.plugins").commands()[name]
    if pc then
      local args = {}
      for i = 1, #arg do args[i] = arg[i] end
      local r, e = require("sandlot.plugins").run_command(name, args)
      io.stdout:flush()
      if r == nil then os.exit(M.fail(nil, "%s: %s", name, tostring(e))) end
      if r ~= 0 then os.exit(math.tointeger(r) or M.FAILED) end
      return 0
    end
  end
  if not c then
    M.fail(nil, "unknown command '%s'%s", tostring(name),
           did_you_mean(check.suggest(name, M.NAMES)))
    err("(see 'sandlot help' for the commands)\n")
    os.exit(M.USAGE)
  end
  local args = {}
  for i = 1, #arg do args[i] = arg[i] end
  local o, why = parse(c, args)
  local rc
  if not o then
    rc = M.usage_error(c, "%s", why)
  elseif o.opts.help then
    out(M.help_text(c))
    rc = M.OK
  else
    local r, e = c.run(o)
    if r == nil then rc = M.fail(c, "%s", tostring(e)) else rc = r end
  end
  io.stdout:flush()
  if rc ~= 0 then os.exit(rc) end
  return 0
end

return M
