-- spec/e2b_spec.lua: what the e2b provider does beyond the conformance suite, on the strict
-- fake (spec/fakes/e2b.lua): waiting for envd, list pages, E2B's error bodies and error_code
-- values, retries on 429 and 503, the lifetime re-applied on connect, a hung and a dropped
-- connection, snapshots as native checkpoints that seed new sandboxes, and the API key and envd
-- token kept out of errors, telemetry and handles.
local sandlot = require("sandlot")
local sandbox = require("sandlot.sandbox")
local json = require("sandlot.wire.json")
local h = require("spec.helper")

-- the fake's sandboxes are local ones with their own / (bubblewrap): without namespaces the
-- whole file is one pending case with the reason (pending cannot be called from before_each)
local ns_why = require("spec.support.namespaces").skip()
if ns_why then
  describe("e2b provider", function() pending(ns_why) end)
  return
end

describe("e2b provider", function()
  local f, fake

  local function configure(extra)
    local p = { "e2b", api_url = f.url, api_key = f.token, sandbox_url = f.sandbox_url }
    for k, v in pairs(extra or {}) do p[k] = v end
    return p
  end

  lazy_setup(function()
    if not sandlot.http.serve then return end
    f = require("spec.fakes.e2b").start{ page_size = 2 }
    fake = f.fake
    sandlot.config.set({ providers = {
      e2b = configure(),
      ["e2b-quick"] = configure({ request_timeout = 1 }),
      ["e2b-badkey"] = configure({ api_key = "e2b_wrong" }),
      -- admission retries rate_limited and quota_exceeded creates until create_deadline
      ["e2b-nowait"] = configure({ create_deadline = 0.3 }),
    } })
  end)

  lazy_teardown(function()
    sandlot.config.reset()
    if f then f.stop() end
  end)

  before_each(function()
    if not f then return pending("needs sandlot.http.serve") end
    fake.faults, fake.rejected, fake.denied = {}, {}, {}
  end)

  local function count(route)
    local n = 0
    for _, r in ipairs(fake.requests) do if r.route == route then n = n + 1 end end
    return n
  end

  it("create waits until envd answers", h.task(function()
    fake.envd_delay = 0.4
    local before = count("envd GET /health")
    local sb = assert(sandlot.create("e2b", {}))
    fake.envd_delay = 0
    assert.is_true(count("envd GET /health") - before >= 2, "create did not poll /health")
    assert.equal("hi\n", assert(sb:exec({ "echo", "hi" })).stdout)
    assert(sb:destroy())
  end))

  it("lists by labels across pages (X-Next-Token)", h.task(function()
    local tag = "p" .. math.random(1e9)
    local made = {}
    for i = 1, 5 do made[i] = assert(sandlot.create("e2b", { labels = { batch = tag } })) end
    local other = assert(sandlot.create("e2b", { labels = { batch = tag .. "x" } }))
    local r = assert(sandbox._context("e2b"))
    local pages = fake.list_pages
    local list = assert(r.p.ops.list(r.ctx, { labels = { batch = tag } }))
    assert.is_true(fake.list_pages - pages >= 3, "the list was not paged")
    local ids = {}
    for _, hd in ipairs(list) do ids[hd.id] = hd end
    for _, sb in ipairs(made) do
      assert.is_table(ids[sb.id])
      assert.equal(tag, ids[sb.id].labels.batch)
      assert.equal(sb.durable_id, ids[sb.id].labels[sandlot.ledger.LABEL])
    end
    assert.is_nil(ids[other.id])
    assert.equal(5, #list)
    for _, sb in ipairs(made) do assert(sb:destroy()) end
    assert(other:destroy())
    assert.same({}, assert(r.p.ops.list(r.ctx, { labels = { batch = tag } })))
  end))

  it("maps E2B's statuses and error_code values onto sandlot's codes", h.task(function()
    local cases = {
      { { status = 503, error_code = "sandbox_capacity_unavailable", times = 4 }, "unavailable" },
      { { status = 500, error_code = "internal_server_error" }, "internal" },
      { { status = 504, error_code = "sandbox_placement_timeout" }, "timeout" },
      { { status = 500, error_code = "sandbox_create_failed" }, "unavailable" },
      { { status = 429, retry_after = 0, times = 100000,
          message = "You have reached the maximum number of concurrent E2B sandboxes" },
        "quota_exceeded" },
      { { status = 429, retry_after = 0, times = 100000, message = "slow down" },
        "rate_limited" },
      { { status = 400, message = "Timeout cannot be greater than 1 hours" }, "invalid_input" },
    }
    for _, c in ipairs(cases) do
      c[1].route = "POST /v2/sandboxes"
      fake:inject(c[1])
      local sb, err = sandlot.create("e2b-nowait", {})
      assert(sb == nil, "created despite " .. (c[1].error_code or c[1].message))
      assert.equal(c[2], err.code, c[1].error_code or c[1].message)
      assert.equal(c[1].status, err.status)
      fake.faults = {}
    end
    -- the fake's own refusals: a wrong key, a lifetime over the plan's limit
    local sb, err = sandlot.create("e2b-badkey", {})
    assert.is_nil(sb)
    assert.equal("auth_failed", err.code)
    sb, err = sandlot.create("e2b", { timeout = 100000 })
    assert.is_nil(sb)
    assert.equal("invalid_input", err.code)
    assert.matches("cannot be greater", err.message)
    -- an unknown sandbox: 404 from the API, 502 from envd's proxy
    local gone = assert(sandlot.create("e2b", {}))
    local back = assert(sandlot.from_map(sandlot.to_map(gone)))
    assert(gone:destroy())
    assert.equal("terminated", back:status())
    assert.equal("not_found", select(2, back:reconnect()).code)
    local live = assert(sandlot.create("e2b", {}))
    assert(live:exec({ "true" }))                   -- its envd token is known now
    fake:kill(live.id)
    assert.equal("not_found", select(2, live:exec({ "true" })).code)
    assert.equal("not_found", select(2, live:read_file("x")).code)
  end))

  it("retries 429 (Retry-After) and 503, then succeeds", h.task(function()
    fake:inject({ route = "POST /v2/sandboxes", status = 429, retry_after = 0, times = 2 })
    local before = count("POST /v2/sandboxes")
    local sb = assert(sandlot.create("e2b", {}))
    assert.equal(3, count("POST /v2/sandboxes") - before)
    fake:inject({ route = "envd POST /filesystem.Filesystem/ListDir", status = 503, times = 1,
                  code = "unavailable" })
    assert.same({}, assert(sb:ls(".")))
    fake:inject({ route = "DELETE /sandboxes/", status = 503, times = 2 })
    assert(sb:destroy())
    assert.equal("terminated", sb:status())
  end))

  it("re-applies the configured lifetime on start and reconnect (connect resets it to 300 s)",
     h.task(function()
    local sb = assert(sandlot.create("e2b", { timeout = 1800 }))
    local s = fake.sandboxes[sb.id]
    assert.is_true(s.end_at - os.time() > 1700)
    -- the plant: a connect without a timeout really resets it (the fake is E2B here)
    local plain = assert(sandlot.create("e2b", {}))
    assert.is_true(fake.sandboxes[plain.id].end_at - os.time() <= 300)
    assert(sb:stop())
    assert.equal("stopped", sb:status())
    local _, err = sb:exec({ "true" })
    assert.truthy(err)
    fake.sandboxes[sb.id].end_at = os.time() + 10      -- as if most of it had passed
    assert(sb:start())
    assert.equal("running", sb:status())
    assert.is_true(fake.sandboxes[sb.id].end_at - os.time() > 1700, "start reset the lifetime")
    local last
    for _, r in ipairs(fake.requests) do
      if r.route == "POST /v2/sandboxes/" .. sb.id .. "/connect" then last = r end
    end
    assert.equal(1800, json.decode(last.body).timeout)
    assert.equal("ok\n", assert(sb:exec({ "echo", "ok" })).stdout)
    -- reconnect from a map (another process) leaves a good expiry where it is
    local back = assert(sandlot.from_map(sandlot.to_map(sb)))
    local at = fake.sandboxes[sb.id].end_at
    assert(back:reconnect())
    assert.equal(at, fake.sandboxes[sb.id].end_at)
    -- and sets back one that another client's connect (the SDK's, no timeout) cut to 300 s
    local res = assert(sandlot.http.request({ url = f.url .. "/v2/sandboxes/" .. sb.id ..
                                              "/connect", method = "POST", json = {},
                                              headers = { ["X-API-Key"] = f.token } }))
    assert.equal(200, res.status)
    assert.is_true(fake.sandboxes[sb.id].end_at - os.time() <= 300)   -- the plant
    fake.sandboxes[sb.id].started_at = os.time() - 100
    assert(back:reconnect())
    local left = fake.sandboxes[sb.id].end_at - os.time()
    assert.is_true(left > 1650 and left <= 1700, "reconnect did not re-apply: " .. left)
    -- the fake's default lifetime: 300 s, and past it the sandbox is gone
    fake.sandboxes[plain.id].end_at = os.time() - 1
    assert.equal("terminated", plain:status())
    assert(sb:destroy())
  end))

  it("bounds a hung API call and a hung process stream by their timeouts", h.task(function()
    local sb = assert(sandlot.create("e2b-quick", {}))
    fake:inject({ route = "GET /sandboxes/", hang = 2, times = 10 })
    local st, err = sb:status()
    assert.is_nil(st)
    assert.equal("timeout", err.code)
    fake:inject({ route = "envd POST /process.Process/Start", hang = 8 })
    local r = assert(sb:exec({ "echo", "never" }, { timeout = 0.3 }))
    assert.is_true(r.timed_out)
    assert.equal("", r.stdout)
    fake.faults = {}
    sandlot.sleep(2)                                  -- the hung handlers finish
    assert(sb:destroy())
  end))

  it("survives a dropped connection where a retry is safe, reports it where not",
     h.task(function()
    local sb = assert(sandlot.create("e2b", {}))
    fake:inject({ route = "GET /sandboxes/", drop = true })
    assert.equal("running", sb:status())              -- GET: retried
    -- twice: libcurl itself sends a request again once when a reused connection drops it
    fake:inject({ route = "envd POST /process.Process/Start", drop = true, times = 2 })
    local r, err = sb:exec({ "echo", "x" })
    assert.is_nil(r)
    assert.equal("unavailable", err.code)
    fake.faults = {}
    assert.equal("x\n", assert(sb:exec({ "echo", "x" })).stdout)
    assert(sb:destroy())
  end))

  it("maps image to the template and network = 'none' to allow_internet_access", h.task(function()
    local sb = assert(sandlot.create("e2b", { image = "my-template", network = "none" }))
    local s = fake.sandboxes[sb.id]
    assert.same({ "my-template", false }, { s.template, s.internet })
    local open = assert(sandlot.create("e2b", {}))
    assert.same({ "base", true }, { fake.sandboxes[open.id].template,
                                   fake.sandboxes[open.id].internet })
    local r, err = sandlot.create("e2b", { network = { "example.com" } })
    assert.is_nil(r)
    assert.equal("not_supported", err.code)
    assert(sb:destroy())
    assert(open:destroy())
  end))

  it("ignores envd's keepalive messages on a quiet process stream", h.task(function()
    local sb = assert(sandlot.create("e2b", {}))
    fake.keepalive = 0.05
    local before = fake.keepalives
    local r = assert(sb:exec({ "sh", "-c", "sleep 0.4; echo done" }))
    local p <close> = assert(sb:spawn({ "sh", "-c", "sleep 0.3; echo later" }))
    assert.same({ "stdout", "later\n" }, { p:read(10) })
    fake.keepalive = nil
    assert.is_true(fake.keepalives - before >= 4, "the fake sent no keepalives")
    assert.same({ 0, "done\n" }, { r.exit_code, r.stdout })
    assert.equal(0, assert(p:wait(10)).exit_code)
    assert(sb:destroy())
  end))

  it("writes several files in one multipart request", h.task(function()
    local sb = assert(sandlot.create("e2b", {}))
    local before = count("envd POST /files")
    assert(sb:write_files({ { "m/a", "1" }, { "m/b/c", "22" }, { "/tmp/abs", "3" } }))
    assert.equal(1, count("envd POST /files") - before)
    assert.equal("22", assert(sb:read_file("m/b/c")))
    assert.equal("3", assert(sb:exec({ "cat", "/tmp/abs" })).stdout)
    assert(sb:destroy())
  end))

  it("read_file{to}: a host file whose last write fails is io_error, and nothing is left",
     h.task(function()
    local sb = assert(sandlot.create("e2b", {}))
    h.assert_read_to_fails_cleanly(sb)
    assert(sb:destroy())
  end))

  it("keeps the API key and the envd token out of errors, telemetry and handles",
     h.task(function()
    local events = {}
    sandlot.telemetry.attach("e2b-spec", { { "sandlot", "*", "*" } },
      function(ev, m, meta) events[#events + 1] = json.encode({ ev, m, meta }) end)
    local ok, perr = pcall(function()
      local sb = assert(sandlot.create("e2b", {}))
      local token = fake.sandboxes[sb.id].token
      -- the plant: the services echo the secret each knows back in an error message
      fake:inject({ route = "GET /sandboxes/", status = 400, message = "bad key " .. f.token })
      local _, err = sb:status()
      assert.truthy(err)
      assert.matches("[REDACTED]", err.message, 1, true)
      fake:inject({ route = "envd POST /filesystem.Filesystem/ListDir", status = 400,
                    code = "invalid_argument", message = "token " .. token })
      local _, err2 = sb:ls(".")
      assert.truthy(err2)
      assert.matches("[REDACTED]", err2.message, 1, true)
      local text = tostring(err) .. tostring(err2) .. json.encode(sandlot.to_map(sb))
      for _, e in ipairs(events) do text = text .. e end
      assert.is_nil(text:find(f.token, 1, true), "the API key leaked")
      assert.is_nil(text:find(token, 1, true), "the envd token leaked")
      assert.is_nil(json.encode(sb.handle):find(token, 1, true))
      assert(sb:destroy())
    end)
    sandlot.telemetry.detach("e2b-spec")
    assert(ok, perr)
    assert.is_true(#events > 4)
  end))

  it("takes snapshots and creates sandboxes from them, only e2b ones", h.task(function()
    assert.equal("native", sandlot.caps("e2b").checkpoint)
    assert.equal("new_sandbox", sandlot.caps("e2b").restore)
    local sb = assert(sandlot.create("e2b", {}))
    assert(sb:write_file("state/kept.txt", "kept"))
    local ck = assert(sb:checkpoint({ name = "n1" }))
    assert.equal("native", ck.kind)
    assert.equal("e2b", ck.module)
    assert.is_table(fake.snapshots[ck.native_id])
    local body = json.decode(fake.requests[#fake.requests].body)
    assert.same({}, body)                              -- unnamed: a template of its own
    -- two more, to list across pages (the fake answers two per page)
    assert(sb:checkpoint())
    assert(sb:checkpoint())
    local other = assert(sandlot.create("e2b", {}))
    assert(other:checkpoint())                         -- another sandbox's: not listed
    local list = assert(sandlot.checkpoint.native(sb))
    assert.equal(3, #list)
    assert.equal(ck.native_id, list[1].native_id)
    assert.equal(2, count("GET /snapshots"))
    local copy = assert(sandlot.create("e2b", { from = ck }))
    assert.equal(ck.native_id, fake.sandboxes[copy.id].template)
    assert.equal("kept", assert(copy:read_file("state/kept.txt")))
    assert(sb:write_file("state/kept.txt", "changed"))
    local copy2 = assert(sandlot.create("e2b", { from = list[1] }))
    assert.equal("kept", assert(copy2:read_file("state/kept.txt")))
    -- not in place, not into another provider
    local r, err = sandlot.checkpoint.restore(sb, ck)
    assert.is_nil(r)
    assert.equal("not_supported", err.code)
    r, err = sandlot.create("local", { from = ck })
    assert.is_nil(r)
    assert.equal("not_supported", err.code)
    assert.matches('kind = "portable"', err.message, 1, true)
    -- deleted, then unknown: not_found, and no sandbox made
    assert(sandlot.checkpoint.delete(ck))
    assert.is_nil(fake.snapshots[ck.native_id])
    local made = fake.created
    r, err = sandlot.create("e2b", { from = list[1] })
    assert.is_nil(r)
    assert.equal("not_found", err.code)
    assert.equal(made, fake.created)
    for _, x in ipairs({ copy2, copy, other, sb }) do assert(x:destroy()) end
  end))

  it("the fake rejects what E2B rejects", h.task(function()
    local http = sandlot.http
    local function call(o)
      o.retry, o.decode = false, false
      local res = assert(http.request(o))
      return res.status, res.body
    end
    local key = { ["X-API-Key"] = f.token }
    assert.equal(401, call({ url = f.url .. "/v2/sandboxes", method = "GET" }))
    assert.equal(401, call({ url = f.url .. "/v2/sandboxes", method = "GET",
                             headers = { ["X-API-Key"] = f.token:sub(5) } }))
    assert.equal(400, call({ url = f.url .. "/v2/sandboxes", method = "POST", headers = key,
                             body = '{"templateID":"base"}' }))     -- not application/json
    assert.equal(400, call({ url = f.url .. "/v2/sandboxes", method = "POST", headers = key,
                             json = { templateID = "base", timeout = 0 } }))
    assert.equal(400, call({ url = f.url .. "/v2/sandboxes?limit=101", method = "GET",
                             headers = key }))
    assert.equal(404, call({ url = f.url .. "/sandboxes/nosuch", method = "GET", headers = key }))
    assert.equal(400, call({ url = f.url .. "/snapshots?limit=0", method = "GET", headers = key }))
    assert.equal(404, call({ url = f.url .. "/templates/nosuch:default", method = "DELETE",
                             headers = key }))
    assert.equal(404, call({ url = f.url .. "/v2/sandboxes", method = "POST", headers = key,
                             json = { templateID = "nosuch:default" } }))
    assert.equal(404, call({ url = f.url .. "/sandboxes/nosuch/snapshots", method = "POST",
                             headers = key, json = {} }))
    local sb = assert(sandlot.create("e2b", {}))
    assert.equal(400, call({ url = f.url .. "/sandboxes/" .. sb.id .. "/snapshots",
                             method = "POST", headers = key }))           -- the body is required
    assert.equal(400, call({ url = f.url .. "/sandboxes/" .. sb.id .. "/snapshots",
                             method = "POST", headers = key, json = { name = 1 } }))
    assert(sb:stop())
    assert.equal(409, call({ url = f.url .. "/sandboxes/" .. sb.id .. "/pause", method = "POST",
                             headers = key, json = {} }))
    assert(sb:start())
    local token = fake.sandboxes[sb.id].token
    local envd = { ["E2b-Sandbox-Id"] = sb.id, ["E2b-Sandbox-Port"] = "49983",
                   ["X-Access-Token"] = token }
    local u = f.sandbox_url
    assert.equal(400, call({ url = u .. "/health", headers = { ["E2b-Sandbox-Id"] = sb.id } }))
    assert.equal(502, call({ url = u .. "/health", headers = { ["E2b-Sandbox-Id"] = "nosuch0",
                                                                ["E2b-Sandbox-Port"] = "49983" } }))
    local wrong = { ["E2b-Sandbox-Id"] = sb.id, ["E2b-Sandbox-Port"] = "49983",
                    ["X-Access-Token"] = "nope" }
    assert.equal(401, call({ url = u .. "/filesystem.Filesystem/Stat", method = "POST",
                             headers = wrong, json = { path = "/" } }))
    assert.equal(415, call({ url = u .. "/filesystem.Filesystem/Stat", method = "POST",
                             headers = envd, body = '{"path":"/"}' }))
    assert.equal(400, call({ url = u .. "/filesystem.Filesystem/Stat", method = "POST",
                             headers = envd, json = { path = "/", bogus = 1 } }))
    envd["Content-Type"] = "application/connect+json"
    local _, body = call({ url = u .. "/process.Process/Start", method = "POST", headers = envd,
                           body = '{"process":{"cmd":"true"}}' })        -- not an envelope
    assert.matches("invalid_argument", body, 1, true)
    assert.is_true(#fake.rejected >= 9)
    assert.is_true(#fake.denied >= 3)
    assert(sb:destroy())
  end))
end)
