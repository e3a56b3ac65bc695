-- sandlot._doc: the documentation of Lua functions, read from their source: the `---` comment
-- block right above each definition (LuaCATS style) and the parameter names. The REPL's help()
-- and the API reference (docs/api.lua, docs/api.md) both come from here.
local M = {}

local file_lines = {}                     -- path -> {lines}, read once
local registered = setmetatable({}, { __mode = "k" })   -- function -> text (C functions)
local reg_params = setmetatable({}, { __mode = "k" })   -- function -> "(a, b)"

---Documents a function that has no `---` block of its own (a C function, an alias).
---@param f function
---@param text string
---@param params? string its parameter list, "(fn, ...)"
---@return function f
function M.register(f, text, params)
  registered[f] = text
  reg_params[f] = params
  return f
end

local function lines_of(path)
  local lines = file_lines[path]
  if lines then return lines end
  local fh = io.open(path, "rb")
  if not fh then return nil end
  lines = {}
  for l in fh:lines() do lines[#lines + 1] = l end
  fh:close()
  file_lines[path] = lines
  return lines
end

---The `---` comment block right above where f is defined, without the dashes; nil for a C
---function or one without a doc comment.
---@param f function
---@return string|nil
function M.of(f)
  if type(f) ~= "function" then return nil end
  if registered[f] then return registered[f] end
  local info = debug.getinfo(f, "S")
  if info.what ~= "Lua" or info.source:sub(1, 1) ~= "@" then return nil end
  local lines = lines_of(info.source:sub(2))
  if not lines then return nil end
  local out = {}
  for i = info.linedefined - 1, math.max(1, info.linedefined - 80), -1 do
    local text = lines[i] and lines[i]:match("^%s*%-%-%-(.*)$")
    if not text then break end
    table.insert(out, 1, (text:gsub("^ ", "")))
  end
  return #out > 0 and table.concat(out, "\n") or nil
end

---The parameter list of f as written: "(path, data, opts)", "(...)"; "(?)" for a C function.
---@param f function
---@return string
function M.params(f)
  if reg_params[f] then return reg_params[f] end
  local info = debug.getinfo(f, "u")
  if debug.getinfo(f, "S").what ~= "Lua" then return "(?)" end
  local names = {}
  for i = 1, info.nparams do names[i] = debug.getlocal(f, i) end
  if info.isvararg then names[#names + 1] = "..." end
  return "(" .. table.concat(names, ", ") .. ")"
end

---The first line of f's doc, or "".
---@param f function
---@return string
function M.summary(f)
  local d = M.of(f)
  return d and d:match("^[^\n]*") or ""
end

return M
