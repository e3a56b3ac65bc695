-- spec/namespace_spec.lua: what the namespace provider does beyond the conformance suite, on
-- the strict fake (spec/fakes/namespace.lua): Connect's headers on every call, commands sent to
-- the instance's commandServiceEndpoint (never the regional host), labels as {name, value}
-- lists and an RFC 3339 deadline, the streamed RunCommand for on_stdout, files in pieces of
-- base64 arguments, Connect codes and HTTP statuses mapped onto sandlot's, retries of 429 and
-- 503, answers that break the protocol, list pages by label, the deadline given back on
-- reconnect and moved by the extend extension, suspend and wake, the token from
-- NSC_TOKEN_FILE, and the token kept out of errors and handles. The fake's own strictness is
-- checked first (a strict fake that accepts anything would prove nothing).
local sandlot = require("sandlot")
local json = require("sandlot.wire.json")
local connect = require("sandlot.wire.connect")
local base64 = require("sandlot.wire.base64")
local wtime = require("sandlot.wire.time")
local h = require("spec.helper")

-- the fake's instances are local sandboxes with their own / (bubblewrap)
local ns_why = require("spec.support.namespaces").skip()
if ns_why then
  describe("namespace provider", function() pending(ns_why) end)
  return
end

local COMPUTE = "/namespace.cloud.compute.v1beta.ComputeService/"
local COMMAND = "/namespace.cloud.compute.v1beta.CommandService/"

describe("namespace provider", function()
  local f, fake
  local ns = require("providers.namespace")

  lazy_setup(function()
    if not sandlot.http.serve then return end
    f = require("spec.fakes.namespace").start{ page_size = 1 }
    fake = f.fake
    sandlot.config.set({ providers = {
      namespace = { "namespace", api_url = f.url, token = f.token },
      ["namespace-badtoken"] = { "namespace", api_url = f.url, token = "nsct_wrong" },
    } })
  end)

  lazy_teardown(function()
    sandlot.config.reset()
    if f then f.stop() end
  end)

  before_each(function()
    if not f then return pending("needs sandlot.http.serve") end
    fake.faults, fake.rejected, fake.denied, fake.quirks = {}, {}, {}, {}
  end)

  local function count(method)
    local n = 0
    for _, r in ipairs(fake.requests) do
      if r.route:match("/" .. method .. "$") then n = n + 1 end
    end
    return n
  end

  -- a direct call on the fake: status, decoded body
  local function raw(base, method, body, headers)
    local hd = { Authorization = "Bearer " .. f.token, ["Content-Type"] = "application/json",
                 ["Connect-Protocol-Version"] = "1" }
    for k, v in pairs(headers or {}) do hd[k] = v or nil end
    local res = assert(sandlot.http.request({ method = "POST", url = base .. method, headers = hd,
                                              body = body }))
    return res.status, json.decode(res.body or "") or res.body
  end

  local function ctx(extra)
    local c = { config = { api_url = f.url, token = f.token }, warn = function() end }
    for k, v in pairs(extra or {}) do c.config[k] = v end
    return c
  end

  it("the fake refuses what Namespace refuses", h.task(function()
    local url = f.url .. COMPUTE
    local st, b = raw(url, "DescribeInstance", '{"instanceId":"x"}', { Authorization = false })
    assert.equal(401, st)
    assert.equal("unauthenticated", b.code)
    st = raw(url, "DescribeInstance", '{"instanceId":"x"}', { ["Content-Type"] = "text/plain" })
    assert.equal(415, st)
    st, b = raw(url, "DescribeInstance", '{"instanceId":"x","nosuch":1}')
    assert.equal(400, st)
    assert.equal("invalid_argument", b.code)
    st = raw(url, "DescribeInstance", "{not json")
    assert.equal(400, st)
    st = raw(url, "DescribeInstance", '{"instanceId":"x"}', { ["Connect-Protocol-Version"] = "2" })
    assert.equal(400, st)
    assert.equal(5, #fake.rejected)
    -- snake_case names are accepted; an unknown instance is the world's answer, not a refusal
    st, b = raw(url, "DescribeInstance", '{"instance_id":"nosuch"}')
    assert.equal(404, st)
    assert.equal("not_found", b.code)
    assert.equal(1, #fake.denied)
    -- commands are not served by the regional host, nor the lifecycle by the command host
    st = raw(url:gsub("ComputeService", "CommandService"), "RunCommandSync", "{}")
    assert.equal(404, st)
    st = raw(f.command_url .. COMPUTE, "DescribeInstance", '{"instanceId":"x"}')
    assert.equal(404, st)
    -- RunCommand wants one envelope in application/connect+json
    st = raw(f.command_url .. COMMAND, "RunCommand", connect.encode({ instanceId = "x" }))
    assert.equal(415, st)
    assert.equal(8, #fake.rejected)
    -- a missing Connect-Protocol-Version is accepted and noted
    st = raw(url, "DescribeInstance", '{"instanceId":"x"}',
             { ["Connect-Protocol-Version"] = false })
    assert.equal(404, st)
    assert.equal(1, #fake.quirks)
  end))

  it("speaks Connect JSON: headers, labels, deadline; commands on the command endpoint",
     h.task(function()
    local before = #fake.requests
    local t0 = os.time()
    local sb = assert(sandlot.create("namespace", { labels = { team = "a" }, timeout = 1200,
                                                    env = { FROM_CREATE = "c" } }))
    local r = assert(sb:exec({ "sh", "-c", 'echo "$FROM_CREATE $X"; echo err >&2; exit 3' },
                             { env = { X = "x" } }))
    assert.same({ 3, "c x\n", "err\n" }, { r.exit_code, r.stdout, r.stderr })
    assert.equal(0, assert(sb:exec({ "true" })).exit_code)         -- exitCode absent: 0
    local create_body
    for i = before + 1, #fake.requests do
      local q = fake.requests[i]
      assert.equal("Bearer " .. f.token, q.headers["authorization"])
      assert.equal("1", q.headers["connect-protocol-version"])
      local m = q.route:match("/(%a+)$")
      if m == "RunCommandSync" or m == "RunCommand" then
        assert.equal("namespace.cloud.compute.v1beta.CommandService", q.service)
      else
        assert.equal("namespace.cloud.compute.v1beta.ComputeService", q.service)
        assert.equal("application/json", q.headers["content-type"])
      end
      if m == "CreateInstance" then create_body = json.decode(q.body) end
    end
    assert.same({}, fake.quirks)
    assert.same({}, f.rejected())
    local labels = {}
    for _, l in ipairs(create_body.labels) do labels[l.name] = l.value end
    assert.matches("^sb%-", labels["sandlot.durable_id"])      -- the ledger's own label
    labels["sandlot.durable_id"] = nil
    assert.same({ sandlot = "1", ["sandlot.lifetime"] = "1200", team = "a" }, labels)
    local deadline = wtime.parse(create_body.deadline)
    assert.is_true(deadline >= t0 + 1200 and deadline <= os.time() + 1200)
    assert.equal("c", create_body.containers[1].environment.FROM_CREATE)
    -- the handle holds no endpoint and no token
    local map = json.encode(sandlot.to_map(sb))
    assert.is_nil(map:find(f.token, 1, true))
    assert.is_nil(map:find(f.command_url, 1, true))
    assert(sb:destroy())
    assert(sb:destroy())
    assert.equal("terminated", sb:status())
  end))

  it("streams output through RunCommand when on_stdout wants it", h.task(function()
    local sb = assert(sandlot.create("namespace", {}))
    local sync, stream = count("RunCommandSync"), count("RunCommand")
    local chunks = {}
    local r = assert(sb:exec({ "sh", "-c", "echo one; sleep 0.2; echo two; echo e >&2; exit 4" },
                             { on_stdout = function(c) chunks[#chunks + 1] = c end }))
    assert.equal(4, r.exit_code)
    assert.equal("one\ntwo\n", table.concat(chunks))
    assert.equal("e\n", r.stderr)
    assert.is_true(#chunks >= 2, "output came as it was made")
    assert.equal(stream + 1, count("RunCommand"))
    assert.equal(sync, count("RunCommandSync"))
    -- a missing cwd is found before the stream starts
    local none, err = sb:exec({ "true" }, { cwd = "nosuch", on_stdout = function() end })
    assert.is_nil(none)
    assert.equal("not_found", err.code)
    -- a stream that ends without the exit status is bad_response
    fake:inject({ route = "RunCommand", body = connect.encode({ stream = "STDOUT",
                                                                data = base64.encode("x") }) ..
                  connect.end_stream(), content_type = "application/connect+json" })
    none, err = sb:exec({ "true" }, { on_stdout = function() end })
    assert.is_nil(none)
    assert.equal("bad_response", err.code)
    -- an end-of-stream error is mapped by its Connect code
    fake:inject({ route = "RunCommand", body = connect.end_stream("not_found", "no container"),
                  content_type = "application/connect+json" })
    none, err = sb:exec({ "true" }, { on_stdout = function() end })
    assert.is_nil(none)
    assert.equal("not_found", err.code)
    assert(sb:destroy())
  end))

  it("moves files in pieces of base64 arguments, within the argument limits", h.task(function()
    local sb = assert(sandlot.create("namespace", {}))
    local parts = {}
    for i = 0, 3 * 1024 * 1024 - 1, 251 do parts[#parts + 1] = string.char(i % 256):rep(251) end
    local data = table.concat(parts)
    local before = count("RunCommandSync")
    assert(sb:write_file("big/one.bin", data, { mode = "600" }))
    local calls = count("RunCommandSync") - before
    assert.is_true(calls >= 4, "3 MiB in several commands: " .. calls)
    for i = #fake.requests - calls + 1, #fake.requests do
      assert.is_true(#fake.requests[i].body < 1536 * 1024, "each command under ARG_MAX")
    end
    assert.equal(data, assert(sb:read_file("big/one.bin")))
    assert.equal("600\n", assert(sb:exec({ "stat", "-c", "%a", "big/one.bin" })).stdout)
    -- stdin is such a file, written first
    assert.equal("in", assert(sb:exec({ "cat" }, { stdin = "in" })).stdout)
    local none, err = sb:read_file("big")
    assert.is_nil(none)
    assert.equal("invalid_input", err.code)
    none, err = sb:write_file("big", "x")
    assert.is_nil(none)
    assert.equal("invalid_input", err.code)
    assert(sb:destroy())
  end))

  it("maps Connect codes and HTTP statuses onto sandlot's", h.task(function()
    local sb = assert(sandlot.create("namespace", {}))
    local handle = sb.handle
    local cases = {
      { { status = 401, code = "unauthenticated" }, "auth_failed" },
      { { status = 403, code = "permission_denied" }, "permission_denied" },
      { { status = 400, code = "invalid_argument" }, "invalid_input" },
      { { status = 400, code = "failed_precondition" }, "invalid_input" },
      { { status = 429, code = "resource_exhausted", times = 4 }, "quota_exceeded" },
      { { status = 429, code = false, times = 4 }, "rate_limited" },
      { { status = 503, code = "unavailable", times = 4 }, "unavailable" },
      { { status = 504, code = "deadline_exceeded" }, "timeout" },
      { { status = 501, code = "unimplemented" }, "not_supported" },
      { { status = 500, code = "internal" }, "unavailable" },
      { { status = 502, code = false, message = "<html>bad gateway</html>" }, "unavailable" },
    }
    for _, c in ipairs(cases) do
      c[1].route = "DescribeInstance"
      c[1].retry_after = c[1].times and 0 or nil
      fake:inject(c[1])
      local st, err = ns.status(ctx(), handle)
      assert.is_nil(st, tostring(c[1].code))
      assert.equal(c[2], err.code, tostring(c[1].code))
      assert.equal(c[1].status, err.status)
      fake.faults = {}
    end
    -- a command on a suspended instance is the world's state: unavailable
    assert(sb:stop())
    assert.equal("stopped", sb:status())
    local r, err = sb:exec({ "true" })
    assert.is_nil(r)
    assert.equal("unavailable", err.code)
    assert(sb:start())
    assert.equal("ok\n", assert(sb:exec({ "echo", "ok" })).stdout)
    -- a wrong token: auth_failed, the token itself nowhere in the error
    local none, berr = sandlot.create("namespace-badtoken", {})
    assert.is_nil(none)
    assert.equal("auth_failed", berr.code)
    -- a service that echoes the token back: the error shows [REDACTED]
    fake:inject({ route = "DescribeInstance", status = 400, code = "invalid_argument",
                  message = "bad token " .. f.token })
    local st, rerr = ns.status(ctx(), handle)
    assert.is_nil(st)
    assert.is_nil(tostring(rerr):find(f.token, 1, true))
    assert.matches("REDACTED", tostring(rerr), 1, true)
    -- an answer that is not JSON, or not an object
    fake:inject({ route = "DescribeInstance", body = "{oops" })
    st, rerr = ns.status(ctx(), handle)
    assert.is_nil(st)
    assert.equal("bad_response", rerr.code)
    fake:inject({ route = "DescribeInstance", body = "[1]" })
    st, rerr = ns.status(ctx(), handle)
    assert.is_nil(st)
    assert.equal("bad_response", rerr.code)
    -- an unknown instance: terminated, not_found, and destroy is done already
    local gone = { id = "nosuch0000", lifetime = 60, workdir = "/workspace" }
    assert.equal("terminated", ns.status(ctx(), gone))
    r, err = ns.exec(ctx(), gone, { "true" }, {})
    assert.is_nil(r)
    assert.equal("not_found", err.code)
    assert.is_true(ns.destroy(ctx(), gone))
    -- an edited handle cannot reach another path
    r, err = ns.status(ctx(), { id = "../x" })
    assert.is_nil(r)
    assert.equal("invalid_input", err.code)
    assert(sb:destroy())
    -- a destroyed instance is still described (DESTROYED): its commands and stop are not_found
    assert.equal("DESTROYED", fake.instances[handle.id].status)
    r, err = ns.exec(ctx(), handle, { "true" }, {})
    assert.is_nil(r)
    assert.equal("not_found", err.code)
    r, err = ns.stop(ctx(), handle)
    assert.is_nil(r)
    assert.equal("not_found", err.code)
  end))

  it("retries 429 and 503 (the call was not carried out), then succeeds", h.task(function()
    fake:inject({ route = "CreateInstance", status = 429, code = "resource_exhausted",
                  retry_after = 0, times = 2 })
    local before = count("CreateInstance")
    local sb = assert(sandlot.create("namespace", {}))
    assert.equal(3, count("CreateInstance") - before)
    fake:inject({ route = "RunCommandSync", status = 503, code = "unavailable", retry_after = 0 })
    assert.equal("hi\n", assert(sb:exec({ "echo", "hi" })).stdout)
    -- a hung call is bounded by request_timeout (and tried again: a timeout is retryable)
    fake:inject({ route = "DescribeInstance", hang = 2, times = 10 })
    local st, err = ns.status(ctx({ request_timeout = 0.3 }), sb.handle)
    assert.is_nil(st)
    assert.equal("timeout", err.code)
    fake.faults = {}
    -- a dropped connection is an error, not a hang
    fake:inject({ route = "DescribeInstance", drop = true, times = 100 })
    st, err = ns.status(ctx(), sb.handle)
    assert.is_nil(st)
    assert.equal("unavailable", err.code)
    fake.faults = {}
    assert(sb:destroy())
  end))

  it("lists its instances by label, page by page", h.task(function()
    local a = assert(sandlot.create("namespace", { labels = { team = "a" } }))
    local b = assert(sandlot.create("namespace", { labels = { team = "b" } }))
    -- someone else's instance (no sandlot label) is left out
    local st = raw(f.url .. COMPUTE, "CreateInstance", json.encode({
      containers = { { name = "x", imageRef = "debian" } } }))
    assert.equal(200, st)
    local pages = fake.list_pages
    local all = assert(ns.list(ctx(), { labels = {} }))
    local ids = {}
    for _, s in ipairs(all) do ids[s.id] = true end
    assert.is_true(ids[a.id] and ids[b.id])
    assert.is_true(fake.list_pages - pages >= 2, "page_size 1: one page per instance")
    local only = assert(ns.list(ctx(), { labels = { team = "a" } }))
    assert.equal(1, #only)
    assert.equal(a.id, only[1].id)
    assert(a:destroy())
    assert(b:destroy())
    only = assert(ns.list(ctx(), { labels = { team = "a" } }))
    assert.equal(0, #only)
  end))

  it("gives the deadline back on reconnect; extend moves it", h.task(function()
    local sb = assert(sandlot.create("namespace", { timeout = 1800 }))
    local inst = fake.instances[sb.id]
    local extends = fake.extends
    local back = assert(sandlot.from_map(sandlot.to_map(sb)))
    assert(back:reconnect())
    assert.equal(extends, fake.extends)                    -- a good deadline is left alone
    inst.deadline = os.time() + 60                         -- cut behind our back
    assert(back:reconnect())
    assert.equal(extends + 1, fake.extends)
    assert.equal(inst.created_at + 1800, inst.deadline)
    local v = assert(sb:extension("extend", 7200))
    assert.is_true(math.abs(v.deadline - (os.time() + 7200)) <= 2)
    assert.equal(v.deadline, inst.deadline)
    local none, err = sb:extension("extend", -1)
    assert.is_nil(none)
    assert.equal("invalid_input", err.code)
    -- past its deadline the instance is gone
    inst.deadline = os.time() - 1
    assert.equal("terminated", sb:status())
    none, err = sb:exec({ "true" })
    assert.is_nil(none)
    assert.is_truthy(err.code == "not_found" or err.code == "unavailable")
    assert(sb:destroy())
  end))

  it("takes the token from NSC_TOKEN_FILE, or says none is set", h.task(function()
    local dir = h.tmpdir()
    local tf = dir .. "/token.json"
    local out = assert(io.open(tf, "w"))
    out:write(json.encode({ bearer_token = f.token }))
    out:close()
    local script = ([[
      local sandlot = require("sandlot")
      sandlot.config.set({ providers = { n = { "namespace", api_url = %q } } })
      local sb, err = sandlot.create("n", {})
      if not sb then print("ERR " .. err.code .. " " .. err.message) return end
      print("OK " .. sb:exec({ "echo", "x" }).stdout)
      sb:destroy()
    ]]):format(f.url)
    local env = { NSC_TOKEN = false, NSC_TOKEN_FILE = tf, SANDLOT_LEDGER = "off",
                  XDG_STATE_HOME = dir }
    local rc, o, e = h.host({ "-e", script }, { env = env, timeout = 120 })
    assert.equal(0, rc, e)
    assert.matches("OK x", o, 1, true)
    env.NSC_TOKEN_FILE = false
    rc, o, e = h.host({ "-e", script }, { env = env, timeout = 120 })
    assert.equal(0, rc, e)
    assert.matches("ERR auth_failed", o, 1, true)
    assert.matches("NSC_TOKEN", o, 1, true)
    h.rmtree(dir)
  end))
end)
