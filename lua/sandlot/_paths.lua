-- sandlot._paths: where modules, providers and plugins are found. In order: each directory of
-- SANDLOT_PATH (colon-separated), $XDG_CONFIG_HOME/sandlot, then the sandlot tree itself (the
-- repository, or <prefix>/share/sandlot once installed). `require "providers.docker"` and
-- `require "plugins.x"` resolve through the same list, so a provider dropped into
-- ~/.config/sandlot/providers/ is found by name without rebuilding anything.
local M = {}

local function dir_of(path)
  return path:match("^(.*)/[^/]*$") or "."
end

---Tells whether a file (or directory) can be opened for reading. The one copy of this check
---the library uses.
---@param path string
---@return boolean
function M.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end
local exists = M.exists

---Returns the sandlot tree holding providers/ and plugins/, or nil.
function M.root()
  local init = package.searchpath("sandlot", package.path)
  if not init then return nil end
  local luadir = dir_of(dir_of(init))                    -- .../lua or .../share/lua/5.4
  -- the repository; <prefix>/share/sandlot (make install); sandlot/share (a LuaRocks tree)
  local cands = { luadir .. "/..", luadir .. "/../../sandlot", dir_of(init) .. "/share" }
  for _, cand in ipairs(cands) do
    if exists(cand .. "/providers/local.lua") or exists(cand .. "/providers/README.md") then
      return cand
    end
  end
  return nil
end

---Returns the list of directories searched, first match wins.
function M.dirs()
  local dirs = {}
  for d in (os.getenv("SANDLOT_PATH") or ""):gmatch("[^:]+") do dirs[#dirs + 1] = d end
  local xdg = os.getenv("XDG_CONFIG_HOME")
  if not xdg or xdg == "" then
    local home = os.getenv("HOME")
    xdg = home and (home .. "/.config")
  end
  if xdg then dirs[#dirs + 1] = xdg .. "/sandlot" end
  local root = M.root()
  if root then dirs[#dirs + 1] = root end
  return dirs
end

local done = false

---Prepends the sandlot directories to package.path (once).
function M.setup()
  if done then return end
  done = true
  local parts = {}
  for _, d in ipairs(M.dirs()) do
    parts[#parts + 1] = d .. "/?.lua;" .. d .. "/?/init.lua"
  end
  if #parts > 0 then package.path = table.concat(parts, ";") .. ";" .. package.path end
end

return M
