-- spec/lib/errors_spec.lua: the one error context rule (the outer op, provider and sandbox
-- win; an inner op is kept as `via`), the one retryable rule, errors never changed after they
-- are made, and the rule seen end to end through a provider whose exec fails inside http.
local sandlot = require("sandlot")
local errors = require("sandlot.errors")
local http = require("sandlot.http")
local h = require("spec.helper")

local NONE = {}            -- "this field is absent" in the tables of cases

local function snapshot(err)
  local t = {}
  for k, v in pairs(err) do t[k] = v end
  return t
end

describe("sandlot.errors", function()
  describe("wrap", function()
    -- { name, inner {code, message, fields}, wrap fields, expected fields, tostring }
    local cases = {
      { "adds context to a bare error",
        { "unavailable", "connection refused" }, { op = "exec", provider = "p", sandbox = "s" },
        { op = "exec", provider = "p", sandbox = "s", via = NONE },
        "p: exec: unavailable: connection refused" },
      { "the outer op wins; the inner op becomes via",
        { "unavailable", "refused", { op = "ssh.exec" } }, { op = "exec", provider = "ssh" },
        { op = "exec", provider = "ssh", via = "ssh.exec" },
        "ssh: exec: unavailable: refused (via ssh.exec)" },
      { "the same op twice adds no via",
        { "timeout", "slow", { op = "exec" } }, { op = "exec" },
        { op = "exec", via = NONE }, "exec: timeout: slow" },
      { "a via given with no inner op is kept",
        { "unavailable", "refused" }, { via = "POST /sandboxes/x/exec" },
        { op = NONE, via = "POST /sandboxes/x/exec" },
        "unavailable: refused (via POST /sandboxes/x/exec)" },
      { "via reads outer to inner: the inner op, then the inner via",
        { "unavailable", "refused", { op = "docker.version", via = "GET /version" } },
        { op = "create", provider = "docker" },
        { op = "create", via = "docker.version: GET /version" },
        "docker: create: unavailable: refused (via docker.version: GET /version)" },
      { "the outer provider and sandbox win",
        { "not_found", "gone", { provider = "inner", sandbox = "a" } },
        { provider = "outer", sandbox = "b", op = "status" },
        { provider = "outer", sandbox = "b" }, "outer: status: not_found: gone" },
      { "other fields: the inner value is kept, missing ones are added",
        { "unavailable", "x", { status = 503, host = "h1" } }, { host = "h2", path = "/p" },
        { status = 503, host = "h1", path = "/p" }, "unavailable: x" },
      { "secret-named fields are redacted on the way in",
        { "auth_failed", "no" }, { op = "login", token = "s3cret" },
        { token = "[REDACTED]" }, "login: auth_failed: no" },
    }
    for _, c in ipairs(cases) do
      it(c[1], function()
        local inner = errors.new(c[2][1], c[2][2], c[2][3])
        local before = snapshot(inner)
        local out = errors.wrap(inner, c[3])
        assert.is_true(errors.is(out))
        assert.are_not.equal(inner, out)                 -- a new error
        assert.same(before, snapshot(inner))             -- the inner one is untouched
        assert.equal(inner.code, out.code)
        assert.equal(inner.message, out.message)
        assert.equal(inner.retryable, out.retryable)
        for k, want in pairs(c[4]) do
          if want == NONE then assert.is_nil(out[k], k) else assert.equal(want, out[k], k) end
        end
        assert.equal(c[5], tostring(out))
      end)
    end

    it("refuses to change code, message or retryable (misuse raises)", function()
      local e = errors.new("timeout", "slow")
      for _, k in ipairs({ "code", "message", "retryable" }) do
        local ok, msg = pcall(errors.wrap, e, { [k] = k == "retryable" and false or "x" })
        assert.is_false(ok)
        assert.matches("errors.new%(code, message, {cause = err}%)", msg)
      end
    end)

    it("turns a value that is not an error into internal, with the text as cause", function()
      local out = errors.wrap("boom", { op = "exec" })
      assert.equal("internal", out.code)
      assert.equal("boom", out.cause)
      assert.equal("exec: internal: boom", tostring(out))
    end)
  end)

  describe("new", function()
    it("rewords by making a new error that keeps the old one as cause", function()
      local inner = errors.new("unavailable", "refused", { op = "http" })
      local out = errors.new("not_found", "image alpine is not present", { cause = inner })
      assert.equal(inner, out.cause)
      assert.equal("not_found", out.code)
      assert.is_false(out.retryable)
      assert.equal("unavailable", inner.code)
    end)

    it("raises for an unknown code, and for code or message given as fields", function()
      assert.has_error(function() errors.new("nope") end)
      assert.has_error(function() errors.new("timeout", "x", { message = "y" }) end)
    end)

    it("renders long messages whole (no buffer reuse across stack changes)", function()
      local long = ("m"):rep(20000)
      local e = errors.new("internal", long, { provider = "p", op = "o", via = ("v"):rep(9000) })
      assert.equal("p: o: internal: " .. long .. " (via " .. ("v"):rep(9000) .. ")", tostring(e))
    end)
  end)

  describe("retryable", function()
    -- { code, explicit at construction, expected }
    local cases = {}
    for code, default in pairs(errors.codes) do
      cases[#cases + 1] = { code, nil, default }
      cases[#cases + 1] = { code, true, true }
      cases[#cases + 1] = { code, false, false }
    end
    table.sort(cases, function(a, b)
      return a[1] .. tostring(a[2]) < b[1] .. tostring(b[2])
    end)
    for _, c in ipairs(cases) do
      it(("%s, given %s: %s, and wrapping keeps it"):format(c[1], tostring(c[2]), tostring(c[3])),
        function()
          local e = errors.new(c[1], "m", { retryable = c[2] })
          assert.equal(c[3], e.retryable)
          local w = errors.wrap(errors.wrap(e, { op = "inner" }), { op = "exec", provider = "p" })
          assert.equal(c[3], w.retryable)
        end)
    end

    it("defaults: retryable for unavailable, rate_limited and timeout only", function()
      local yes = {}
      for code, r in pairs(errors.codes) do if r then yes[#yes + 1] = code end end
      table.sort(yes)
      assert.same({ "rate_limited", "timeout", "unavailable" }, yes)
    end)
  end)

  describe("through a provider whose exec calls sandlot.http", function()
    -- a tiny cloud provider: every operation is an HTTP call to a closed port
    local fakecloud = {
      name = "fakecloud",
      create = function() return { id = "x" } end,
      destroy = function() return true end,
      status = function() return "running" end,
      exec = function(_, handle)
        local res, err = http.request({ method = "POST", retry = false, timeout = 5,
          url = "http://127.0.0.1:1/sandboxes/" .. handle.id .. "/exec?token=canary-q-123" })
        if not res then return nil, err end
        return { exit_code = 0, stdout = "", stderr = "" }
      end,
    }

    it("reads '<provider>: exec: unavailable: ... (via POST /path)' with op exec",
      h.task(function()
        local sb = assert(sandlot.create(fakecloud, {}))
        local r, err = sb:exec({ "true" })
        assert.is_nil(r)
        assert.equal("unavailable", err.code)
        assert.equal("exec", err.op)
        assert.equal("fakecloud", err.provider)
        assert.equal("x", err.sandbox)
        assert.equal("POST /sandboxes/x/exec", err.via)
        assert.is_true(err.retryable)
        local text = tostring(err)
        assert.matches("^fakecloud: exec: unavailable: .+ %(via POST /sandboxes/x/exec%)$", text)
        assert.is_nil(text:find("canary-q-123", 1, true))
        assert.is_nil(tostring(err.url):find("canary-q-123", 1, true))
        assert.truthy(tostring(err.url):find("token=", 1, true))   -- the url is there, redacted
        sb:destroy()
      end))
  end)
end)
