-- spec/canary_spec.lua: the canary rule. One distinctive secret is given to a child `sandlot`
-- host in argv, request headers and a URL query, the sandbox env, the host env and the config,
-- and a server echoes it back into an error body. It must appear 0 times in the telemetry
-- file, error strings, the host's stdout and stderr, and sb:to_map(). Every check first proves
-- it can see the canary: each channel carries one planted "proof" copy, or the raw copy (the
-- witness file) holds it.
local h = require("spec.helper")
local server = require("spec.support.http_server")

local function count(text, needle)
  local n, pos = 0, 1
  while true do
    local a, b = text:find(needle, pos, true)
    if not a then return n end
    n, pos = n + 1, b + 1
  end
end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

-- A careless cloud provider on top of local: it keeps the API token in its handle, and its
-- "remote-fail" command makes an API call whose answer echoes the request (headers, query)
-- and is reported as a 401 with the service's body as the message.
local FAKECLOUD = [[
local lp = require("providers.local")
local http = require("sandlot.http")
local M = {}
for k, v in pairs(lp) do M[k] = v end
M.name = "fakecloud"
M.config = { state_dir = "string", isolation = "string", api_token = "string",
             api_url = "string" }
function M.create(ctx, opts)
  local handle, err = lp.create(ctx, opts)
  if not handle then return nil, err end
  handle.api_token = ctx.config.api_token
  return handle
end
function M.exec(ctx, handle, argv, opts)
  if argv[1] == "remote-plain" then         -- a provider bug: the token in its own words
    return nil, require("sandlot.errors").new("auth_failed", "provider said: token " ..
                                              ctx.config.api_token .. " rejected")
  end
  if argv[1] ~= "remote-fail" then return lp.exec(ctx, handle, argv, opts) end
  local res, err = http.request({ url = ctx.config.api_url .. "/echo?api_key=" ..
                                        ctx.config.api_token,
                                  headers = { Authorization = "Bearer " .. ctx.config.api_token },
                                  retry = false, timeout = 10 })
  if not res then return nil, err end
  local w = assert(io.open(os.getenv("CANARY_WITNESS"), "a"))
  w:write(res.body, "\n")                  -- the raw answer: proof the server echoed it
  w:close()
  return nil, http.status_error({ status = 401, body = res.body, json = res.json })
end
return M
]]

local SCRIPT = [[
local sandlot = require("sandlot")
local http = require("sandlot.http")
local cjson = require("cjson")
local C = os.getenv("FAKE_TOKEN")
-- the proofs: one planted copy per channel
sandlot.telemetry.span("proof", { note = C }, function() end)
print("PROOF " .. C)
io.stderr:write("PROOF " .. C .. "\n")
local sb = assert(sandlot.create("fake", { env = { SECRET_KEY = C, PLAIN = "p" } }))
print("HANDLE-HOLDS-IT " .. tostring(sb.handle.api_token == C))
local r = assert(sb:exec({ "true", "-H", "Authorization: Bearer " .. C, "--password=" .. C,
                           "--token", C, "API_TOKEN=" .. C,
                           "https://u:" .. C .. "@example.test/?token=" .. C },
                         { env = { API_TOKEN = C } }))
print("EXIT " .. r.exit_code)
local r2 = assert(sb:exec("curl -H 'Authorization: Basic " .. C .. "' --api-key " .. C ..
                          " >/dev/null 2>&1; true"))
print("EXIT " .. r2.exit_code)
local errs = {}
local _, e1 = sb:exec({ "remote-fail" })
errs[#errs + 1] = assert(e1)
local _, e0 = sb:exec({ "remote-plain" })
errs[#errs + 1] = assert(e0)
local _, e2 = http.request({ url = "http://127.0.0.1:1/x?token=" .. C,
                             headers = { Authorization = "Bearer " .. C }, retry = false })
errs[#errs + 1] = assert(e2)
local _, e3 = sandlot.proc.run({ "/nonexistent/bin", "--token", C })
errs[#errs + 1] = assert(e3)
local lines = {}
for _, e in ipairs(errs) do
  lines[#lines + 1] = tostring(e)
  print("ERR " .. tostring(e))
  io.stderr:write("ERR ", tostring(e), "\n")
end
local f = assert(io.open(os.getenv("CANARY_ERRORS"), "w"))
f:write(table.concat(lines, "\n"))
f:close()
print("MAP " .. cjson.encode(sb:to_map()))
sb:destroy()
error(e1)                                  -- the host reports it on stderr
]]

describe("the canary rule", function()
  local tmp, srv, canary

  lazy_setup(function()
    tmp = h.tmpdir()
    srv = server.start()
    local f = assert(io.open("/dev/urandom", "rb"))
    canary = "cAnArY" .. f:read(9):gsub(".", function(c) return ("%02x"):format(c:byte()) end)
    f:close()
    write(tmp .. "/fakecloud.lua", FAKECLOUD)
    write(tmp .. "/script.lua", SCRIPT)
    write(tmp .. "/config.lua", ([[
      return { default = "fake", providers = { fake = { %q, api_token = env("FAKE_TOKEN"),
        api_url = %q, state_dir = %q, isolation = "none" } } }]])
      :format(tmp .. "/fakecloud.lua", srv.url, tmp .. "/state"))
  end)

  lazy_teardown(function()
    srv.stop()
    h.rmtree(tmp)
  end)

  it("appears 0 times in telemetry, errors, stdout, stderr and to_map", function()
    local env = { FAKE_TOKEN = canary, SANDLOT_CONFIG = tmp .. "/config.lua",
                  SANDLOT_TELEMETRY = tmp .. "/t.jsonl", CANARY_WITNESS = tmp .. "/witness",
                  CANARY_ERRORS = tmp .. "/errors.txt", SANDLOT_PROVIDER = false }
    local rc, out, err = h.host({ tmp .. "/script.lua" }, { env = env })
    assert.equal(1, rc, out .. err)                 -- the script ends with error(e1)
    assert.matches("EXIT 0\nEXIT 0\n", out)
    assert.matches("HANDLE-HOLDS-IT true", out, 1, true)   -- the handle in memory has it

    -- the server really echoed it: the raw answer holds the canary (header and query)
    local witness = read(tmp .. "/witness")
    assert.equal(2, count(witness, canary), witness)

    -- error strings: three errors, with their context, without the canary
    local errtext = read(tmp .. "/errors.txt")
    assert.matches("fake: exec: unauthorized", errtext:gsub("auth_failed", "unauthorized"))
    assert.matches("provider said: token [REDACTED] rejected", errtext, 1, true)
    assert.matches("unavailable: ", errtext)
    assert.equal(0, count(errtext, canary), errtext)

    -- stdout and stderr: exactly the planted proof line each
    assert.equal(1, count(out, "PROOF " .. canary), out)
    assert.equal(1, count(out, canary), out)
    assert.equal(1, count(err, "PROOF " .. canary), err)
    assert.equal(1, count(err, canary), err)
    assert.matches("fake: exec: auth_failed: HTTP 401", err, 1, true)   -- the uncaught error

    -- to_map: printed, with the handle's secret field redacted
    local map = out:match("MAP ([^\n]*)")
    assert.truthy(map, out)
    assert.matches('"api_token":"%[REDACTED%]"', map)
    assert.equal(0, count(map, canary), map)

    -- telemetry: exec, http and proc spans are there, the canary only in the proof event
    local proof, rest, events = 0, {}, {}
    for line in io.lines(tmp .. "/t.jsonl") do
      local ev = line:match('"event":"([^"]+)"')
      events[ev] = true
      if ev == "sandlot.proof.stop" then
        proof = proof + count(line, canary)
      else
        rest[#rest + 1] = line
      end
    end
    assert.equal(1, proof)
    for _, ev in ipairs({ "sandlot.create.stop", "sandlot.exec.stop", "sandlot.exec.exception",
                          "sandlot.http.request.exception", "sandlot.proc.run.exception" }) do
      assert.is_true(events[ev] == true, "no " .. ev .. " event")
    end
    local telemetry = table.concat(rest, "\n")
    assert.matches("Authorization: [REDACTED]", telemetry, 1, true)
    assert.equal(0, count(telemetry, canary), telemetry)
  end)
end)
