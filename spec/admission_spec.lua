-- spec/admission_spec.lua: admission of creates. A provider entry's max_concurrent_creates
-- bounds the provider creates running at once (the rest queue); a create answered
-- rate_limited or quota_exceeded waits and tries again (after Retry-After when the service
-- sends one: the boxes fake over HTTP) until the entry's create_deadline; the create span
-- carries the time queued and the attempts. Other errors fail at once.
local sandlot = require("sandlot")
local errors = require("sandlot.errors")
local sys = require("sandlot.core.sys")
local server = require("spec.fakes.boxes_server")
local h = require("spec.helper")

-- A provider table that counts the creates running at once; `answers` is a list of errors
-- given to the first creates (then they succeed).
local function counting(answers)
  local seen = { now = 0, max = 0, calls = 0 }
  local n = 0
  local p = {
    name = "counting",
    create = function()
      seen.calls = seen.calls + 1
      local e = table.remove(answers or {}, 1)
      if e then return nil, e end
      seen.now = seen.now + 1
      seen.max = math.max(seen.max, seen.now)
      sandlot.sleep(0.05)
      seen.now = seen.now - 1
      n = n + 1
      return { id = "c" .. n }
    end,
    exec = function() return { exit_code = 0, stdout = "", stderr = "" } end,
    destroy = function() return true end,
    status = function() return "running" end,
  }
  return p, seen
end

-- Runs fn with the create spans' stop/exception metadata collected.
local function spans(fn)
  local got = {}
  sandlot.telemetry.attach("admission-spec", { { "sandlot", "create", "*" } },
    function(ev, _, meta) if ev[3] ~= "start" then got[#got + 1] = meta end end)
  local ok, e = pcall(fn)
  sandlot.telemetry.detach("admission-spec")
  if not ok then error(e, 0) end
  return got
end

describe("admission", function()
  before_each(function() sys.setenv("SANDLOT_LEDGER", "off") end)
  after_each(function()
    sys.setenv("SANDLOT_LEDGER", nil)
    sandlot.config.reset()
  end)

  it("runs at most max_concurrent_creates provider creates at once", h.task(function()
    local p, seen = counting()
    sandlot.config.set({ providers = { q = { p, max_concurrent_creates = 2 } } })
    local got = spans(function()
      local fns = {}
      for i = 1, 6 do fns[i] = function() return assert(sandlot.create("q")) end end
      local all = sandlot.all(fns)
      assert.equal(6, #all)
    end)
    assert.same({ 2, 6 }, { seen.max, seen.calls })
    local queued = 0
    for _, m in ipairs(got) do queued = math.max(queued, m.queued_s) end
    assert.is_true(queued > 0, "no create says it was queued")
    -- without the bound they all run at once
    p, seen = counting()
    sandlot.config.set({ providers = { q = { p } } })
    local fns = {}
    for i = 1, 6 do fns[i] = function() return assert(sandlot.create("q")) end end
    sandlot.all(fns)
    assert.equal(6, seen.max)
  end))

  it("retries rate_limited and quota_exceeded with backoff, honouring retry_after",
    h.task(function()
      local p, seen = counting({
        errors.new("rate_limited", "slow down", { retry_after = 0.2 }),
        errors.new("quota_exceeded", "no room", { retry_after = 0.2 }),
      })
      sandlot.config.set({ providers = { q = { p } } })
      local got = spans(function() assert(sandlot.create("q")) end)
      assert.equal(3, seen.calls)
      assert.same({ 3 }, { got[1].attempts })
      assert.is_true(got[1].queued_s >= 0.39, tostring(got[1].queued_s))
    end))

  it("gives up at create_deadline with the last error, and never retries others",
    h.task(function()
      local answers = {}
      for i = 1, 100 do answers[i] = errors.new("quota_exceeded", "no room") end
      local p, seen = counting(answers)
      sandlot.config.set({ providers = { q = { p, create_deadline = 1 } } })
      local sb, err = sandlot.create("q")
      assert.is_nil(sb)
      assert.equal("quota_exceeded", err.code)
      assert.is_true(seen.calls >= 2 and seen.calls < 10, tostring(seen.calls))
      assert.equal(seen.calls, err.attempts)
      p, seen = counting({ errors.new("invalid_input", "bad image") })
      sandlot.config.set({ providers = { q = { p } } })
      err = select(2, sandlot.create("q"))
      assert.equal("invalid_input", err.code)
      assert.equal(1, seen.calls)
    end))

  it("refuses a bad max_concurrent_creates in the config, naming the key", h.task(function()
    local p = counting()
    sandlot.config.set({ providers = { q = { p, max_concurrent_creates = 0 } } })
    local sb, err = sandlot.create("q")
    assert.is_nil(sb)
    assert.equal("invalid_input", err.code)
    assert.matches("providers.q.max_concurrent_creates: expected an integer > 0",
                   err.message, 1, true)
  end))
end)

describe("admission over HTTP (the boxes fake)", function()
  local srv, why
  lazy_setup(function() srv, why = server.start() end)
  lazy_teardown(function() if srv then srv.stop() end end)

  it("waits out a 429's Retry-After and then creates", function()
    assert(srv, tostring(why))
    sys.setenv("SANDLOT_LEDGER", "off")
    sandlot.config.set({ providers = {
      bx = { "spec/fakes/boxes_provider.lua", url = srv.url, token = srv.token } } })
    local f = assert(io.open(srv.home .. "/limit", "w"))
    f:write("2")
    f:close()
    local ok, e = pcall(h.task(function()
      local got = spans(function()
        local sb <close> = assert(sandlot.create("bx"))
        assert.equal("running", sb:status())
      end)
      assert.equal(3, got[1].attempts)
      assert.is_true(got[1].queued_s >= 1.9, tostring(got[1].queued_s))
    end))
    sys.setenv("SANDLOT_LEDGER", nil)
    sandlot.config.reset()
    assert(ok, e)
  end)
end)
