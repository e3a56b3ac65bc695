-- sandlot._peer.ship: what sandlot.replicate sends into a sandbox, content-addressed. The
-- static sandlot-peer binary goes to DEST/bin/sandlot-peer-<sha256>; every Lua module to
-- DEST/lib/<sha256 of its text>; the manifest ("module sha256" lines, sorted) to
-- DEST/lib/<its own sha256>. Nothing is named by anything but its content, so a second
-- replicate into the same sandbox finds everything there and sends nothing.
local fs = require("sandlot.fs")
local sys = require("sandlot.core.sys")
local errors = require("sandlot.errors")

local M = {}

M.MAX_FILES = 2000                        -- per root: a script directory is not a file system
M.MAX_DEPTH = 6

local function dirname(path)
  return path:match("^(.*)/[^/]*$") or "."
end

---The sandlot-peer binary for this host: $SANDLOT_PEER, else beside the running binary (the
---build tree), else ../lib/sandlot/ (an install).
---@return string|nil path, sandlot.Error? err not_found naming the places tried
function M.binary_path()
  local tried = {}
  local env = os.getenv("SANDLOT_PEER")
  if env and env ~= "" then
    if fs.stat(env) then return env end
    tried[#tried + 1] = env .. " ($SANDLOT_PEER)"
  end
  local candidates = {}
  local core = require("sandlot.core")
  local exedir = core.exedir                  -- kept when the binary is replaced on disk
  if exedir then
    candidates[1] = exedir .. "/sandlot-peer"
    candidates[2] = exedir .. "/../lib/sandlot/sandlot-peer"
  end
  -- an embedder: beside the library holding the core (<prefix>/lib/libsandlot.so, or the
  -- Lua module <prefix>/lib/lua/5.4/sandlot.so)
  local libdir = core.libdir
  if libdir and libdir ~= exedir then
    candidates[#candidates + 1] = libdir .. "/sandlot/sandlot-peer"
    candidates[#candidates + 1] = libdir .. "/../../sandlot/sandlot-peer"
  end
  for _, p in ipairs(candidates) do
    if fs.stat(p) then return p end
    tried[#tried + 1] = p
  end
  return nil, errors.new("not_found", "the sandlot-peer binary is not built (make builds " ..
                         "build/sandlot-peer); looked in " .. table.concat(tried, ", "))
end

-- Files never shipped whatever directory holds them: the host's config file (it may hold
-- credentials), by canonical path. Set by M.collect.
local skip = {}

-- Adds every .lua file below dir to mods as modules named from their path (a/b.lua is a.b,
-- a/init.lua is a), prefix first. Hidden entries and the config file are skipped; depth and
-- count are bounded.
local function add_tree(mods, dir, prefix, depth, count)
  if depth > M.MAX_DEPTH then return count end
  local root <close> = fs.root(dir)
  if not root then return count end
  local entries = root:readdir(".") or {}
  table.sort(entries, function(a, b) return a.name < b.name end)
  for _, e in ipairs(entries) do
    if count >= M.MAX_FILES then break end
    local name = e.name
    if name:sub(1, 1) ~= "." and not name:find("[^%w_%-%.]") then
      if e.type == "directory" and not name:find("[%.%-]") then
        count = add_tree(mods, dir .. "/" .. name, prefix .. name .. ".", depth + 1, count)
      elseif e.type == "file" and name:match("%.lua$") then
        local base = name:sub(1, -5)
        if not base:find("[%.%-]") then
          local mod = base == "init" and prefix:sub(1, -2) or prefix .. base
          local path = dir .. "/" .. name
          if mod ~= "" and mods[mod] == nil and not skip[sys.realpath(path) or path] then
            mods[mod] = path
            count = count + 1
          end
        end
      end
    end
  end
  return count
end

-- the directory of a module found on package.path (for "x.*": x's own directory)
local function module_file(name)
  return package.searchpath(name, package.path)
end

---Collects the modules to ship: name -> host file.
---@param opts {modules?: string[], paths?: string[], script_dir?: string|false}
---@return table|nil mods, sandlot.Error? err not_found (a listed module missing)
function M.collect(opts)
  local mods = {}
  skip = {}
  local cfg = require("sandlot.config").find()
  if cfg then skip[sys.realpath(cfg) or cfg] = true end
  local init = module_file("sandlot")
  if not init then return nil, errors.new("not_found", "sandlot's own Lua tree is not on " ..
                                          "package.path") end
  local lua_root = dirname(dirname(init))
  add_tree(mods, lua_root .. "/sandlot", "sandlot.", 1, 0)
  for _, name in ipairs(opts.modules or {}) do
    local base = name:match("^(.-)%.%*$")
    if base then
      local f = module_file(base)
      if not f then
        return nil, errors.new("not_found", ("module %s is not on package.path"):format(base))
      end
      mods[base] = f                        -- x.lua or x/init.lua, then x/**
      add_tree(mods, f:match("/init%.lua$") and dirname(f) or f:sub(1, -5), base .. ".", 1, 0)
    else
      local f = module_file(name)
      if not f then
        return nil, errors.new("not_found", ("module %s is not on package.path"):format(name))
      end
      mods[name] = f
    end
  end
  for _, dir in ipairs(opts.paths or {}) do
    if not fs.stat(dir) then
      return nil, errors.new("not_found", ("opts.paths: %s does not exist"):format(dir))
    end
    add_tree(mods, dir, "", 1, 0)
  end
  if opts.script_dir then add_tree(mods, opts.script_dir, "", 1, 0) end
  return mods
end

local cache = {}                          -- host path -> {mtime, size, data, sha}

local function content(path)
  local st = fs.stat(path)
  local c = cache[path]
  if c and st and c.mtime == st.mtime and c.size == st.size then return c end
  local data, err = fs.read(path)
  if not data then return nil, err end
  c = { mtime = st and st.mtime, size = st and st.size, data = data, sha = sys.sha256(data) }
  cache[path] = c
  return c
end

---Builds the shipment: {binary = {sha, data}, files = {sha -> data}, manifest = sha}.
function M.build(mods, binary)
  local bin, berr = content(binary)
  if not bin then return nil, berr end
  local names = {}
  for name in pairs(mods) do names[#names + 1] = name end
  table.sort(names)
  local files, lines = {}, {}
  for _, name in ipairs(names) do
    local c, err = content(mods[name])
    if not c then return nil, err end
    files[c.sha] = c.data
    lines[#lines + 1] = name .. " " .. c.sha .. "\n"
  end
  local text = table.concat(lines)
  local msha = sys.sha256(text)
  files[msha] = text
  return { binary = { sha = bin.sha, data = bin.data }, files = files, manifest = msha,
           count = #names }
end

return M
