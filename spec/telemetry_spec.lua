-- spec/telemetry_spec.lua: spans, handler failures, redaction, the JSON-lines sink.
local sandlot = require("sandlot")
local h = require("spec.helper")
local telemetry = sandlot.telemetry

describe("telemetry", function()
  local seen
  before_each(function()
    seen = {}
    telemetry.attach("spec", { { "sandlot", "*", "start" }, { "sandlot", "*", "stop" },
                               { "sandlot", "*", "exception" } },
      function(event, m, meta) seen[#seen + 1] = { event = event, m = m, meta = meta } end)
  end)
  after_each(function() telemetry.detach("spec") end)

  it("emits start then stop with a monotonic duration in ns", function()
    local v = telemetry.span("demo", { path = "/x" }, function() sandlot.sleep(0.01); return 7 end)
    assert.equal(7, v)
    assert.equal(2, #seen)
    assert.same({ "sandlot", "demo", "start" }, seen[1].event)
    assert.same({ "sandlot", "demo", "stop" }, seen[2].event)
    assert.equal("integer", math.type(seen[2].m.duration))
    assert.is_true(seen[2].m.duration >= 5e6)
    assert.equal("/x", seen[2].meta.path)
  end)

  it("emits exception for a raised error and re-raises it", function()
    assert.has_error(function() telemetry.span("demo", {}, function() error("bad") end) end)
    assert.same({ "sandlot", "demo", "exception" }, seen[2].event)
    assert.matches("bad", seen[2].meta.reason)
  end)

  it("emits exception for a nil, err return, with the code", function()
    local r, err = telemetry.span("demo", {}, function() return nil, sandlot.errors.new("timeout") end)
    assert.is_nil(r)
    assert.equal("timeout", err.code)
    assert.equal("exception", seen[2].event[3])
    assert.equal("timeout", seen[2].meta.error)
  end)

  it("instruments proc.run", function()
    assert(sandlot.proc.run({ "true" }))
    assert.same({ "sandlot", "proc.run", "stop" }, seen[#seen].event)
    assert.same({ "true" }, seen[#seen].meta.command)
  end)

  it("redacts secrets by key name before handlers see them", function()
    telemetry.span("demo", { api_key = "sk-123", headers = { Authorization = "Bearer x" },
                             password = "hunter2", private_key = "-----BEGIN", name = "ok" },
                   function() end)
    local meta = seen[2].meta
    assert.equal("[REDACTED]", meta.api_key)
    assert.equal("[REDACTED]", meta.headers.Authorization)
    assert.equal("[REDACTED]", meta.password)
    assert.equal("[REDACTED]", meta.private_key)
    assert.equal("ok", meta.name)
  end)

  it("detaches a handler that raises, warns, and never breaks the operation", function()
    local code, out, err = h.host({ "-e", [[
      local sandlot = require("sandlot")
      local calls = 0
      sandlot.telemetry.attach("bad", {"sandlot", "demo", "stop"}, function()
        calls = calls + 1
        error("handler broke")
      end)
      print(sandlot.telemetry.span("demo", {}, function() return "first" end))
      print(sandlot.telemetry.span("demo", {}, function() return "second" end))
      print(calls)]] })
    assert.equal(0, code)
    assert.equal("first\nsecond\n1\n", out)
    assert.matches("telemetry handler \"bad\" raised and was detached", err)
  end)

  it("rejects a duplicate id and detach reports whether it was attached", function()
    assert.has_error(function() telemetry.attach("spec", { "sandlot", "x", "stop" }, print) end)
    assert.is_false(telemetry.detach("never-attached"))
  end)
end)

describe("SANDLOT_TELEMETRY sink", function()
  it("writes one JSON line per stop and exception, with secrets redacted", function()
    local dir = h.tmpdir()
    local path = dir .. "/t.jsonl"
    local code = h.host({ "-e", [[
      local sandlot = require("sandlot")
      sandlot.proc.run({"true"})
      sandlot.telemetry.span("login", {token = "abc123"}, function() return nil, sandlot.errors.new("auth_failed") end)
    ]] }, { env = { SANDLOT_TELEMETRY = path } })
    assert.equal(0, code)
    local cjson = require("cjson")
    local lines = {}
    for line in io.lines(path) do lines[#lines + 1] = cjson.decode(line) end
    h.rmtree(dir)
    assert.equal(2, #lines)
    assert.equal("sandlot.proc.run.stop", lines[1].event)
    assert.is_true(lines[1].duration_ns > 0)
    assert.equal("sandlot.login.exception", lines[2].event)
    assert.equal("auth_failed", lines[2].metadata.error)
    assert.equal("[REDACTED]", lines[2].metadata.token)
  end)
end)
