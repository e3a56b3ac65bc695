-- spec/support/npm.lua: Node packages for the SDK scripts (`make check-fakes`, bench figure 7):
-- whether node and npm are here, the `// key: value` header of a .mjs script, and
-- `npm install --prefix DIR` of a package list into a directory, so `import "pkg"` works for a
-- script copied beside DIR/node_modules. Runs in a task (sandlot.proc).
local sandlot = require("sandlot")

local M = {}

local function have(bin)
  local r = sandlot.proc.run({ "sh", "-c", "command -v " .. bin }, { timeout = 30 })
  return r ~= nil and r.exit_code == 0
end

---Why node and npm cannot be used here, or nil when both are on PATH.
function M.missing()
  if not have("node") then return "node is not installed" end
  if not have("npm") then return "npm is not installed" end
  return nil
end

---Reads a script's header comments: `// fake: NAME` -> meta.fake, `// npm: pkg@v ...` ->
---meta.npm (a list), any other `// key: value` -> meta[key] (the first line wins).
function M.header(path)
  local f = assert(io.open(path, "r"))
  local meta = { npm = {} }
  for line in f:lines() do
    if not line:match("^//") then break end
    local k, v = line:match("^//%s*(%a+):%s*(.-)%s*$")
    if k == "npm" then
      for pkg in v:gmatch("%S+") do meta.npm[#meta.npm + 1] = pkg end
    elseif k and meta[k] == nil then
      meta[k] = v
    end
  end
  f:close()
  return meta
end

---Installs pkgs (a list of `name@version`) into dir (created) with npm. Returns dir, or nil
---and the reason (npm's stderr, or its timeout). timeout: seconds (default 300).
function M.install(pkgs, dir, timeout)
  local r = sandlot.proc.run({ "mkdir", "-p", dir }, { timeout = 30 })
  if not r or r.exit_code ~= 0 then return nil, "cannot make " .. dir end
  if #pkgs == 0 then return dir end
  local argv = { "npm", "install", "--prefix", dir, "--no-audit", "--no-fund", "--silent" }
  for _, p in ipairs(pkgs) do argv[#argv + 1] = p end
  local res, err = sandlot.proc.run(argv, { timeout = timeout or 300 })
  if not res then return nil, "npm install could not run: " .. tostring(err) end
  if res.timed_out then return nil, "npm install timed out" end
  if res.exit_code ~= 0 then
    return nil, "npm install failed: " .. res.stderr:gsub("%s+", " "):sub(1, 300)
  end
  return dir
end

return M
