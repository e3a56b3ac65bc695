-- sandlot._repl: the policy half of the host's REPL (core/repl.c does the terminal, history
-- and Ctrl-C). Compiles what was typed (expression first, then statement; "incomplete" for a
-- chunk that needs more lines), runs it as a task and pretty-prints its results or error.
local sched = require("sandlot.core.sched")
local errors = require("sandlot.errors")

local M = {}

M.PROMPT = "> "
M.PROMPT2 = ">> "
M.CHUNKNAME = "=stdin"

---Whether Ctrl-C also stops a line that computes without ever waiting (`while true do end`).
---It needs a count hook on the line's task, which makes tight Lua loops typed at the prompt
---up to 2x slower; scripts are not affected. Set it to false to trade one for the other.
M.catch_busy = true

---Options of the pretty printer; tests and users may change them.
M.opts = {
  depth = 4,          -- nesting shown before a table becomes {...}
  items = 100,        -- entries shown per table before "..."
  width = 78,         -- a table that fits on one line of this width is printed inline
  indent = "  ",
  string = 1000,      -- bytes of a long string shown; the rest is told, not printed
  output = 16384,     -- bytes of one result shown in all
}

local HOW = "print(x) or io.write(x) shows it all; sandlot._repl.opts sets the limits"

---Returns the banner shown when the REPL starts.
---@return string
function M.banner()
  local sandlot = require("sandlot")
  return ("sandlot %s (%s) -- Ctrl-C cancels the running call, Ctrl-D exits\n")
    :format(sandlot.version, _VERSION)
end

---Returns the history file (under $XDG_STATE_HOME, default ~/.local/state) or nil when
---there is no home to keep it in. The C side creates its directory.
---@return string|nil
function M.history_path()
  local state = os.getenv("XDG_STATE_HOME")
  if state == nil or state:sub(1, 1) ~= "/" then   -- the spec says relative paths are invalid
    local home = os.getenv("HOME")
    if home == nil or home == "" then return nil end
    state = home .. "/.local/state"
  end
  return state .. "/sandlot/history"
end

local waiting, redraw = false, false

---Called by the C side as the prompt starts (true) and ends (false) waiting for a line.
---@param yes boolean
function M.at_prompt(yes)
  waiting, redraw = yes, false
end

---Tells (once) whether something was printed over the prompt since the last call, so the
---C side draws the prompt and the typed text again below it.
---@return boolean
function M.take_redraw()
  local r = redraw
  redraw = false
  return r
end

-- print and io.write, for output from tasks while the prompt waits: the prompt's line is
-- cleared first ("\r" and erase line), and the prompt is redrawn after the loop step.
local function over_prompt(write)
  return function(...)
    if waiting and not redraw then
      io.stdout:write("\r\27[K")
      redraw = true
    end
    return write(...)
  end
end

---Installs the REPL's globals: `sandlot` (the module) and `help`; print and io.write learn
---to step aside for the prompt.
function M.setup()
  _G.sandlot = require("sandlot")
  _G.help = M.help
  _G.print = over_prompt(print)
  io.write = over_prompt(io.write)   -- luacheck: ignore 122 (the REPL redraws over output)
end

-------------------------------------------------------------------- pretty printer

local escapes = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r",
                  ["\t"] = "\\t", ["\0"] = "\\0" }

local function quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return escapes[c] or ("\\%03d"):format(c:byte())
  end) .. '"'
end

local keywords = {}
for w in ([[and break do else elseif end false for function goto if in local nil not or
            repeat return then true until while]]):gmatch("%a+") do keywords[w] = true end

local function key_text(k)
  if type(k) == "string" and k:match("^[%a_][%w_]*$") and not keywords[k] then return k end
  if type(k) == "string" then return "[" .. quote(k) .. "]" end
  return "[" .. tostring(k) .. "]"
end

-- numbers first (by value), then strings, then everything else (by type and text)
local type_rank = { number = 1, string = 2, boolean = 3 }

local function key_less(a, b)
  local ta, tb = type(a), type(b)
  local ra, rb = type_rank[ta] or 4, type_rank[tb] or 4
  if ra ~= rb then return ra < rb end
  if ta == "number" or ta == "string" then return a < b end
  if ta == "boolean" then return (not a) and b end
  return tostring(a) < tostring(b)
end

local function has_tostring(v)
  local mt = getmetatable(v)
  return type(mt) == "table" and rawget(mt, "__tostring") ~= nil
end

local function scalar(v, o, seen)
  local t = type(v)
  if t == "string" then
    local max = o and o.string
    if max and #v > max then
      -- cut at a character boundary, so the shown part stays valid UTF-8 when the string is
      local cut = max
      while cut > 0 and (v:byte(cut + 1) or 0) & 0xC0 == 0x80 do cut = cut - 1 end
      if seen then seen.cut = true end
      return quote(v:sub(1, cut)) .. ("... (%d bytes in all)"):format(#v)
    end
    return quote(v)
  end
  if t == "table" or t == "userdata" then
    if has_tostring(v) then
      local ok, s = pcall(tostring, v)
      return ok and tostring(s) or "<__tostring failed: " .. tostring(s) .. ">"
    end
  end
  return tostring(v)
end

local function render(v, o, depth, seen, indent)
  if type(v) ~= "table" or has_tostring(v) then return scalar(v, o, seen) end
  if seen[v] then return "<cycle: " .. tostring(v) .. ">" end
  if depth >= o.depth then return next(v) == nil and "{}" or "{...}" end
  seen[v] = true
  local n = rawlen(v)
  local keys = {}
  for k in next, v do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  table.sort(keys, key_less)
  local inner = indent .. o.indent
  local parts, shown = {}, 0
  local total = n + #keys
  for i = 1, n do
    if shown >= o.items then break end
    parts[#parts + 1] = render(rawget(v, i), o, depth + 1, seen, inner)
    shown = shown + 1
  end
  for _, k in ipairs(keys) do
    if shown >= o.items then break end
    parts[#parts + 1] = key_text(k) .. " = " .. render(rawget(v, k), o, depth + 1, seen, inner)
    shown = shown + 1
  end
  if shown < total then
    parts[#parts + 1] = ("... (%d more)"):format(total - shown)
    seen.cut = true
  end
  seen[v] = nil
  if #parts == 0 then return "{}" end
  local line = "{ " .. table.concat(parts, ", ") .. " }"
  if #line + #indent <= o.width and not line:find("\n", 1, true) then return line end
  return "{\n" .. inner .. table.concat(parts, ",\n" .. inner) .. "\n" .. indent .. "}"
end

---Returns v as text for people: strings quoted, tables expanded with sorted keys (at most
---opts.depth levels and opts.items entries each), cycles marked, values with __tostring
---(such as sandlot.error) shown through it.
---@param v any
---@param opts? table overrides of M.opts
---@return string
function M.pretty(v, opts)
  local o = M.opts
  if opts ~= nil then
    o = setmetatable({}, { __index = M.opts })
    for k, x in pairs(opts) do o[k] = x end
  end
  local seen = {}                          -- tables on the path; .cut once a string was cut
  local text = render(v, o, 0, seen, "")
  if o.output and #text > o.output then
    local cut = o.output
    while cut > 0 and (text:byte(cut + 1) or 0) & 0xC0 == 0x80 do cut = cut - 1 end
    text = text:sub(1, cut) .. ("\n... (cut at %d of %d bytes)"):format(cut, #text)
    seen.cut = true
  end
  if seen.cut then text = text .. "\n(" .. HOW .. ")" end
  return text
end

-------------------------------------------------------------------- completion

-- A value's field without calling anything: raw fields, then __index tables up the chain
-- (never an __index function: completing must not run code).
local function field(v, name)
  for _ = 1, 10 do
    if type(v) == "table" then
      local x = rawget(v, name)
      if x ~= nil then return x end
    end
    local mt = getmetatable(v)
    local idx = type(mt) == "table" and rawget(mt, "__index") or nil
    if type(idx) ~= "table" then return nil end
    v = idx
  end
  return nil
end

-- The names reachable from v as field (methods only: function values), with the same walk.
local function names_of(v, methods)
  local out, seen = {}, {}
  for _ = 1, 10 do
    if type(v) == "table" and not seen[v] then
      seen[v] = true
      for k, x in next, v do
        if type(k) == "string" and k:match("^[%a_][%w_]*$") and
           (not methods or type(x) == "function") then
          out[k] = true
        end
      end
    end
    local mt = getmetatable(v)
    local idx = type(mt) == "table" and rawget(mt, "__index") or nil
    if type(idx) ~= "table" then break end
    v = idx
  end
  return out
end

---Completions of `text`, the word before the cursor: globals and keywords, or the fields
---after `a.b.` and the methods after `a.b:`. Nothing is called to find them. Returns whole
---words, sorted.
---@param text string
---@return string[]
function M.complete(text)
  local prefix, sep, part = text:match("^(.-)([.:]?)([%a_]?[%w_]*)$")
  if not prefix then return {} end
  local names
  if sep == "" then
    if prefix ~= "" then return {} end
    names = names_of(_G, false)
    for k in pairs(keywords) do names[k] = true end
  else
    local v = _G
    for name in (prefix .. "."):gmatch("(.-)%.") do
      if not name:match("^[%a_][%w_]*$") then return {} end
      v = field(v, name)
      if v == nil then return {} end
    end
    names = names_of(v, sep == ":")
  end
  local out = {}
  for k in pairs(names) do
    if k:sub(1, #part) == part and (sep ~= "" or not k:match("^_[%u_]")) then
      out[#out + 1] = prefix .. sep .. k
    end
  end
  table.sort(out)
  return out
end

-------------------------------------------------------------------- help

local doc_of = require("sandlot._doc").of

---help(f) prints a function's doc comment; help(obj) lists its functions and methods with the
---first line of each one's doc; help("sandlot.create") looks the name up first; help() says
---what there is.
---@param v any
function M.help(v)
  local w = function(...) io.stdout:write(...) end
  if v == nil then
    w("help(f): a function's doc.  help(obj): its functions and methods.  help(\"a.b\"): by name.\n",
      "Tab completes globals, fields (sandlot.) and methods (sb:). Try help(sandlot).\n")
    return
  end
  if type(v) == "string" then
    local found = _G
    for name in (v .. "."):gmatch("(.-)%.") do
      found = found ~= nil and field(found, name) or nil
    end
    if found == nil then
      w(("help: nothing named %s\n"):format(v))
      return
    end
    v = found
  end
  if type(v) == "function" then
    w(doc_of(v) or "(no doc comment: a C function, or one without ---)", "\n")
    return
  end
  if type(v) ~= "table" and type(v) ~= "userdata" then
    w(("a %s: %s\n"):format(type(v), M.pretty(v)))
    return
  end
  local names = names_of(v, true)
  local list = {}
  for k in pairs(names) do
    if not k:match("^_") then list[#list + 1] = k end
  end
  table.sort(list)
  if #list == 0 then w(M.pretty(v), "\n") return end
  local width = 0
  for _, k in ipairs(list) do width = math.max(width, #k) end
  for _, k in ipairs(list) do
    local d = doc_of(field(v, k)) or ""
    w(("  %-" .. width .. "s  %s\n"):format(k, (d:match("^[^\n]*"))))
  end
end

-------------------------------------------------------------------- evaluation

---Compiles typed source: as an expression (`return <source>`) when that works, else as a
---statement. Returns the function, or nil, "incomplete" when more lines could complete it,
---or nil, message for a syntax error.
---@param source string
---@return function|nil fn, string? err
function M.compile(source)
  local fn, rerr = load("return " .. source, M.CHUNKNAME, "t")
  if fn then return fn end
  local err
  fn, err = load(source, M.CHUNKNAME, "t")
  if fn then return fn end
  -- "{ 1," or "1 +" only fail at the end as an expression; "for i" only as a statement
  if err:sub(-5) == "<eof>" or rerr:sub(-5) == "<eof>" then return nil, "incomplete" end
  return nil, err
end

---Compiles source and starts it as a task. Returns "incomplete" (read more lines), the task
---(the caller joins it with the loop driven), or false after printing a syntax error.
---@param source string
---@return sandlot.Task|string|false
function M.start(source)
  local fn, err = M.compile(source)
  if fn then return sched.spawn(fn) end
  if err == "incomplete" then return "incomplete" end
  io.stderr:write(err, "\n")
  return false
end

-- A string error's traceback without the frames of the REPL's own machinery; any other value
-- pretty-printed (without the traceback field that join adds to error tables).
local function error_text(err)
  if type(err) == "table" and not has_tostring(err) then
    local copy = {}
    for k, v in pairs(err) do copy[k] = v end
    copy.traceback = nil
    return "error: " .. M.pretty(copy)
  end
  if type(err) ~= "string" then return "error: " .. scalar(err) end
  local msg, tb = err:match("^(.-)\n%(in task %d+%) (stack traceback:.*)$")
  if not msg then return err end
  local lines = {}
  for line in tb:gmatch("[^\n]+") do
    if not (line:find("[C]: in ?", 1, true) or line:find("_repl.lua", 1, true)) then
      lines[#lines + 1] = line
    end
  end
  if #lines <= 1 then return msg end
  return msg .. "\n" .. table.concat(lines, "\n")
end

---Joins the task (the caller is the main thread, so this drives the loop until the task is
---done or cancelled by Ctrl-C) and prints its results or error. Also reports background
---tasks that failed since the last line and that nobody joined.
---@param task sandlot.Task
---@return boolean ok
function M.finish(task)
  local res = table.pack(pcall(task.join, task))
  local ok = res[1]
  if select(3, task:status()) == "cancelled" then
    io.stdout:write("\n")                  -- the terminal echoed ^C where the cursor was
  end
  if ok then
    local n = res.n
    while n > 2 and res[n] == nil do n = n - 1 end    -- `r, nil` shows as r; `nil` stays
    if n > 1 then
      local parts = {}
      for i = 2, n do parts[#parts + 1] = M.pretty(res[i]) end
      io.stdout:write(table.concat(parts, "\t"), "\n")
    end
  else
    local err = res[2]
    if errors.is(err, "cancelled") then
      io.stderr:write(scalar(err), "\n")
    else
      io.stderr:write(error_text(err), "\n")
    end
  end
  for _, t in ipairs(sched.unobserved()) do
    local err = t:error()
    io.stderr:write("background ", tostring(t), " failed: ", error_text(err), "\n")
  end
  io.stdout:flush()
  io.stderr:flush()
  return ok
end

---Tells the user that the line they were typing was dropped (Ctrl-C at the prompt).
function M.interrupted()
  io.stdout:write("^C\n")
  io.stdout:flush()
end

return M
