-- docs/types.lua: writes types/sandlot_core.lua, LuaCATS stubs (---@meta) of the C modules
-- sandlot.core.*, for lua-language-server. Each function's line comes from the comment that
-- documents it in core/*.c ("/* fs.stat(path) -> {...} | nil, err */"); a function without one
-- is listed bare. `make docs` runs it; spec/docs_spec.lua fails when the file is stale.
local MODULES = { "sched", "timer", "proc", "errors", "sys", "fs", "outbuf", "zlib", "sqlite",
                  "codec", "event", "channel", "term", "ws", "http", "ssh" }

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- every "/* name.fn(args) -> ..." or "/* name:fn(args) ..." comment line of the C sources:
-- short name or handle word -> fn -> {args, text}
local comments = {}
local files = {}
local ls = io.popen("ls core/*.c")
for path in ls:lines() do files[#files + 1] = path end
ls:close()
table.sort(files)
for _, path in ipairs(files) do
  for line in (read(path) or ""):gmatch("[^\n]+") do
    local mod, fn, args, rest = line:match("^/%* ([%a_][%w_]*)[.:]([%a_][%w_]*)%((.-)%)(.*)$")
    if mod then
      comments[mod] = comments[mod] or {}
      if not comments[mod][fn] then
        comments[mod][fn] = { args = args, text = (mod .. "." .. fn .. "(" .. args .. ")" ..
                              rest:gsub("%s*%*/%s*$", "")) }
      end
    end
  end
end

-- "path [, mode=0755]" -> "path, mode"; "[code [, close]]" -> "code, close"
local function params(args)
  local names = {}
  for word in args:gsub("=[^,%]]*", ""):gmatch("[%a_][%w_]*") do
    if word ~= "true" and word ~= "false" and word ~= "nil" then names[#names + 1] = word end
  end
  if args:find("...", 1, true) then names[#names + 1] = "..." end
  return table.concat(names, ", ")
end

local out = {
  "---@meta\n",
  "-- LuaCATS stubs of sandlot's C modules, written by docs/types.lua (`make docs`) from\n",
  "-- the comments in core/*.c. Not loaded at run time.\n",
}
for _, name in ipairs(MODULES) do
  local ok, mod = pcall(require, "sandlot.core." .. name)
  if ok and type(mod) == "table" then
    local var = "sandlot_core_" .. name
    out[#out + 1] = ("\n---@class %s\nlocal %s = {}\n"):format(var, var)
    local fns = {}
    for k, v in pairs(mod) do
      if type(v) == "function" then fns[#fns + 1] = k end
    end
    table.sort(fns)
    for _, fn in ipairs(fns) do
      local c = comments[name] and comments[name][fn]
      if c then out[#out + 1] = "---" .. c.text .. "\n" end
      out[#out + 1] = ("function %s.%s(%s) end\n"):format(var, fn, c and params(c.args) or "...")
    end
    out[#out + 1] = ("package.loaded[%q] = %s\n"):format("sandlot.core." .. name, var)
  end
end
io.write(table.concat(out))
