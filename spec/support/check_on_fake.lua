-- spec/support/check_on_fake.lua: the conformance suite run against a cloud provider as a user
-- runs it, `sandlot check-provider NAME-fake --json` pointed at a config whose api_url is that
-- provider's strict fake (spec/fakes/NAME.lua, served by the test runner), with the
-- credentials in the SDK's environment variables. The specs add what each fake can tell.
--
--   local s = require("spec.support.check_on_fake").setup("e2b")   -- in a describe block
--   it("...", function()
--     local r = s.run(function(f) return { E2B_API_KEY = f.token } end)
--     if not r then return end                                  -- pended, with the reason
--     ...r.doc, r.out, r.err, r.rc, s.fake...
--   end)
local busted = require("busted")
local assert = require("luassert")
local sandlot = require("sandlot")
local h = require("spec.helper")
local json = require("sandlot.wire.json")

local M = {}

---Starts spec.fakes.NAME in lazy_setup and writes the config naming it NAME-fake; stops it in
---lazy_teardown. Returns {run = fn(env_of, opts) -> result | nil}; `s.fake` is the fake's
---server table once started.
---@param name string the provider, also the fake's module and the config name's stem
---@param start_opts? table passed to the fake's start
---@param fields_of? fun(fake: table, dir: string): table the provider's config fields (strings),
---  default {api_url = fake.url}; dir is a temporary directory for files they name
function M.setup(name, start_opts, fields_of)
  local s = {}
  local tmp, cfg

  busted.lazy_setup(function()
    if not sandlot.http.serve then return end
    s.fake = require("spec.fakes." .. name).start(start_opts or {})
    tmp = h.tmpdir()
    cfg = tmp .. "/sandlot.config.lua"
    local out = assert(io.open(cfg, "w"))
    local fields = fields_of and fields_of(s.fake, tmp) or { api_url = s.fake.url }
    local keys = {}
    for k in pairs(fields) do keys[#keys + 1] = k end
    table.sort(keys)
    local text = {}
    for _, k in ipairs(keys) do text[#text + 1] = ("%s = %q"):format(k, fields[k]) end
    out:write(("return { providers = { [%q] = { %q, %s } } }\n")
              :format(name .. "-fake", name, table.concat(text, ", ")))
    out:close()
  end)

  busted.lazy_teardown(function()
    if s.fake then s.fake.stop() end
    if tmp then h.rmtree(tmp) end
  end)

  ---Runs the suite; env_of(fake) gives the provider's variables (false unsets one). Pends
  ---(and returns nil) without sandlot.http.serve or, when the fake's sandboxes need a root of
  ---their own, without namespaces. Asserts that no case failed, the exit status is 0, at
  ---least 40 cases passed and the fake's token is not in the output. opts.pending_ok: a
  ---pending case is no failure.
  ---@return table|nil result {doc, out, err, rc}
  function s.run(env_of, opts)
    opts = opts or {}
    if not s.fake then return busted.pending("needs sandlot.http.serve") end
    local ns_why = require("spec.support.namespaces").skip()  -- fake sandboxes need their own /
    if ns_why then return busted.pending(ns_why) end
    local env = { SANDLOT_CONFIG = cfg, SANDLOT_PROVIDER = false, XDG_STATE_HOME = tmp }
    for k, v in pairs(env_of(s.fake)) do env[k] = v end
    local rc, out, err = h.host({ "check-provider", name .. "-fake", "--json", "--label", name },
                                { env = env, timeout = 900 })
    local doc = json.decode(out)
    assert.is_table(doc, "check-provider printed no JSON: " .. out .. err)
    local failed = {}
    for _, t in ipairs(doc.tests) do
      if t.status ~= "passed" and not (opts.pending_ok and t.status == "pending") then
        failed[#failed + 1] = ("%s %s: %s"):format(t.status, t.name, tostring(t.message))
      end
    end
    assert.equal(0, #failed, table.concat(failed, "\n"))
    assert.equal(0, rc, err)
    assert.is_true(doc.summary.passed >= 40, "passed: " .. tostring(doc.summary.passed))
    assert.is_nil((out .. err):find(s.fake.token, 1, true), "the token is in the output")
    return { doc = doc, out = out, err = err, rc = rc }
  end

  return s
end

return M
