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
    local r, err = telemetry.span("demo", {}, function()
      return nil, sandlot.errors.new("timeout")
    end)
    assert.is_nil(r)
    assert.equal("timeout", err.code)
    assert.equal("exception", seen[2].event[3])
    assert.equal("timeout", seen[2].meta.error)
  end)

  it("instruments proc.run", function()
    assert(sandlot.proc.run({ "true" }))
    assert.same({ "sandlot", "proc.run", "stop" }, seen[#seen].event)
    assert.equal("true", seen[#seen].meta.command)
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
      sandlot.telemetry.span("login", {token = "abc123"}, function()
        return nil, sandlot.errors.new("auth_failed")
      end)
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

describe("command lines in telemetry", function()
  local redact = require("sandlot._redact")
  -- { what, command (argv list or shell string), the secrets, what must stay }
  local cases = {
    { "a Bearer credential in a header argument",
      { "curl", "-H", "Authorization: Bearer eyJhbGciOi.J9.sig-_x", "https://api" },
      { "eyJhbGciOi.J9.sig-_x" }, { "curl", "-H", "Authorization:", "https://api" } },
    { "a lone Bearer word", { "echo", "Bearer tok_123=" }, { "tok_123" }, { "echo", "Bearer" } },
    { "a Basic credential", "curl -H 'Authorization: Basic dXNlcjpwYXNz' http://h",
      { "dXNlcjpwYXNz" }, { "curl", "http://h" } },
    { "a secret-named header", { "curl", "-H", "X-Api-Key: k-9f8e7d" }, { "k-9f8e7d" },
      { "X-Api-Key:" } },
    { "--password=value", { "tool", "--password=hunter22", "--verbose" }, { "hunter22" },
      { "--password=", "--verbose" } },
    { "--token value (argv)", { "tool", "--token", "tk-1234", "run" }, { "tk-1234" },
      { "--token", "run" } },
    { "--api-key value (shell)", "tool --api-key 'a b c' run", { "a b c" }, { "run" } },
    { "NAME=value with secret names", "GITHUB_TOKEN=ghp_abc AWS_SECRET_ACCESS_KEY=\"s k\" " ..
      "DB_PASSWORD=pw1 MY_KEY=k1 AUTH=a1 PATH=/bin make",
      { "ghp_abc", "s k", "pw1", "k1", "a1" }, { "PATH=/bin", "make" } },
    { "env in argv", { "env", "SECRET=s3", "CREDENTIALS=c4", "HOME=/root", "id" },
      { "s3", "c4" }, { "HOME=/root", "id" } },
    { "URL query values with secret names",
      { "curl", "https://h/p?api_key=q1&page=2&token=q2&sig=q3" }, { "q1", "q2", "q3" },
      { "page=2", "https://h/p?" } },
    { "URL userinfo", "git clone https://me:pa55@git.example/r.git", { "pa55", "me:" },
      { "git.example/r.git" } },
    { "curl -u user:pass", { "curl", "-u", "me:pa55w", "http://h" }, { "pa55w" }, { "-u me:" } },
    { "nothing secret", { "make", "-j2", "test", "KEYBOARD=us", "monkey=1" }, {},
      { "make -j2 test KEYBOARD=us monkey=1" } },
  }
  for _, c in ipairs(cases) do
    it("redacts " .. c[1], function()
      local line = redact.command(c[2])
      local raw = type(c[2]) == "string" and c[2] or table.concat(c[2], " ")
      for _, secret in ipairs(c[3]) do
        assert.truthy(raw:find(secret, 1, true), "the case holds " .. secret)   -- can fail
        assert.is_nil(line:find(secret, 1, true), secret .. " in " .. line)
      end
      for _, keep in ipairs(c[4]) do
        assert.truthy(line:find(keep, 1, true), keep .. " missing from " .. line)
      end
      if #c[3] > 0 then assert.truthy(line:find("[REDACTED]", 1, true)) end
    end)
  end

  it("sb:exec records the command redacted in its span", h.task(function()
    local seen
    telemetry.attach("cmd", { "sandlot", "exec", "stop" },
                     function(_, _, meta) seen = meta.command end)
    local sb = assert(sandlot.create("local", { isolation = "none" }))
    local ok, err = pcall(function()
      assert(sb:exec({ "true", "-H", "Authorization: Bearer spec-canary-77", "TOKEN=x9" }))
    end)
    telemetry.detach("cmd")
    sb:destroy()
    assert(ok, err)
    assert.equal("true -H Authorization: [REDACTED] TOKEN=[REDACTED]", seen)
  end))
end)
