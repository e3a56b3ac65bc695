-- spec/vercel_spec.lua: what the vercel provider does beyond the conformance suite, on the
-- strict fake (spec/fakes/vercel.lua): the SDK's quirks (Content-Type on every request, teamId,
-- x-cwd: /), a 410 or a 422 stopping resuming the sandbox and retrying once, the lifetime given
-- back to a new session, retries on 429 and 5xx, Vercel's statuses and error codes, answers
-- that break the protocol, hung calls, list pages, ports exposed for get_url, native
-- checkpoints, OIDC tokens, and the token kept out of errors, telemetry and handles.
local sandlot = require("sandlot")
local sandbox = require("sandlot.sandbox")
local json = require("sandlot.wire.json")
local ndjson = require("sandlot.wire.ndjson")
local tar = require("sandlot.wire.tar")
local base64 = require("sandlot.wire.base64")
local h = require("spec.helper")

-- the fake's sandboxes are local ones with their own / (bubblewrap): without namespaces the
-- whole file is one pending case with the reason (pending cannot be called from before_each)
local ns_why = require("spec.support.namespaces").skip()
if ns_why then
  describe("vercel provider", function() pending(ns_why) end)
  return
end

describe("vercel provider", function()
  local f, fake

  local function configure(extra)
    local p = { "vercel", api_url = f.url, token = f.token, team_id = f.team,
                project_id = f.project }
    for k, v in pairs(extra or {}) do p[k] = v end
    return p
  end

  -- An unsigned JWT whose claims name the team and project, as Vercel's OIDC tokens do.
  local function jwt(claims)
    local function b64url(s)
      return (base64.encode(s):gsub("+", "-"):gsub("/", "_"):gsub("=", ""))
    end
    return b64url('{"alg":"none"}') .. "." .. b64url(json.encode(claims)) .. ".sig"
  end

  lazy_setup(function()
    if not sandlot.http.serve then return end
    f = require("spec.fakes.vercel").start{ page_size = 2 }
    fake = f.fake
    sandlot.config.set({ providers = {
      vercel = configure(),
      ["vercel-quick"] = configure({ request_timeout = 1 }),
      ["vercel-badtoken"] = configure({ token = "vcp_wrong" }),
      ["vercel-noteam"] = { "vercel", api_url = f.url, token = f.token, project_id = f.project },
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

  local function count(route)
    local n = 0
    for _, r in ipairs(fake.requests) do
      if r.route == route or r.route:match("^" .. route .. "$") then n = n + 1 end
    end
    return n
  end

  local function session(sb) return fake.sessions[fake.sandboxes[sb.id].session] end

  it("sends the SDK's headers: JSON content type and teamId on every request, x-cwd: /",
     h.task(function()
    local before = #fake.requests
    local sb = assert(sandlot.create("vercel", { labels = { q = "1" } }))
    assert.equal("running", sb:status())
    assert(sb:write_files({ { "rel.txt", "r" }, { "/etc/abs.txt", "a" } }))
    assert.equal("r", assert(sb:read_file("rel.txt")))
    assert(sb:exec({ "true" }))
    assert(sb:stop())
    assert(sb:start())
    assert(sb:destroy())
    local writes = 0
    for i = before + 1, #fake.requests do
      local r = fake.requests[i]
      assert.matches("teamId=" .. f.team, r.query or "", 1, true)
      local ct = r.headers["content-type"]
      if r.route:find("/fs/write$") then
        writes = writes + 1
        assert.equal("application/gzip", ct)
        assert.equal("/", r.headers["x-cwd"])
        local names = {}
        for _, e in ipairs(assert(tar.list(r.body, { gzip = true }))) do
          names[#names + 1] = e.name
        end
        assert.same({ "vercel/sandbox/rel.txt", "etc/abs.txt" }, names)
      else
        assert.equal("application/json", ct, r.route)
      end
    end
    assert.equal(1, writes)
    assert.same({}, fake.quirks)
    -- the plant: a bare GET is what the fake notes
    local res = assert(sandlot.http.request({ url = f.url .. "/v2/sandboxes?teamId=" .. f.team ..
                                              "&project=" .. f.project,
                                              headers = { Authorization = "Bearer " .. f.token } }))
    assert.equal(200, res.status)
    assert.equal(1, #fake.quirks)
  end))

  it("resumes a stopped session on a 410 and retries once, giving it the lifetime back",
     h.task(function()
    local sb = assert(sandlot.create("vercel", { timeout = 1800 }))
    local s = session(sb)
    assert.equal(1800000, s.timeout)
    -- stopped behind our back, and the sandbox's default cut to 5 min (as another client's
    -- update would): the next call resumes, and the new session is extended to 30 min again
    fake.sandboxes[sb.id].timeout = 300000
    fake:halt(s, "stopped")
    local resumes, extends = fake.resumes, fake.extends
    assert.equal("back\n", assert(sb:exec({ "echo", "back" })).stdout)
    assert.equal(resumes + 1, fake.resumes)
    assert.equal(extends + 1, fake.extends)
    local s2 = session(sb)
    assert.not_equal(s.id, s2.id)
    assert.equal(1800000, s2.timeout)
    assert.equal(1, #fake.denied)                      -- the one 410
    assert.equal(410, fake.denied[1].status)
    -- a 410 again after the resume is not retried a second time
    local before = count("POST /v2/sandboxes/sessions/[^/]+/fs/read")
    fake:inject({ route = "POST /v2/sandboxes/sessions/[^/]+/fs/read", status = 410,
                  code = "sandbox_stopped", times = 2 })
    local r, err = sb:read_file("x")
    assert.is_nil(r)
    assert.equal("unavailable", err.code)
    assert.equal(410, err.status)
    assert.equal(2, count("POST /v2/sandboxes/sessions/[^/]+/fs/read") - before)
    -- a 422 sandbox_stopping: waits for the session to settle, resumes, retries
    fake:inject({ route = "POST /v2/sandboxes/sessions/[^/]+/cmd", status = 422,
                  code = "sandbox_stopping" })
    resumes = fake.resumes
    fake:halt(session(sb), "stopped")
    assert.equal("again\n", assert(sb:exec({ "echo", "again" })).stdout)
    assert.equal(resumes + 1, fake.resumes)
    -- reconnect from a map re-applies it too, and leaves a good deadline alone
    local back = assert(sandlot.from_map(sandlot.to_map(sb)))
    extends = fake.extends
    assert(back:reconnect())
    assert.equal(extends, fake.extends)
    session(sb).timeout = 60000
    assert(back:reconnect())
    assert.equal(extends + 1, fake.extends)
    assert.equal(1800000, session(sb).timeout)
    -- a snapshot that is gone (410 snapshot_not_found) is not_found, not a resume
    local none, nerr = sandlot.create("vercel", { snapshot = "snap_nosuch" })
    assert.is_nil(none)
    assert.equal("not_found", nerr.code)
    assert(sb:destroy())
  end))

  it("stops the session that runs now, not the one it knew", h.task(function()
    local sb = assert(sandlot.create("vercel", {}))
    assert(sb:stop())
    -- another client resumes it: a new session this process has not seen
    local res = assert(sandlot.http.request({
      url = ("%s/v2/sandboxes/%s?teamId=%s&projectId=%s&resume=true"):format(f.url, sb.id,
                                                                           f.team, f.project),
      headers = { Authorization = "Bearer " .. f.token, ["Content-Type"] = "application/json" } }))
    assert.equal(200, res.status)
    assert.equal("running", session(sb).status)      -- (sb:status() would refresh what it knows)
    assert(sb:stop())
    assert.equal("stopped", sb:status())
    assert.equal("stopped", session(sb).status)
    assert(sb:destroy())
  end))

  it("maps Vercel's statuses and error codes onto sandlot's", h.task(function()
    local cases = {
      { { status = 400, code = "bad_request" }, "invalid_input" },
      { { status = 422, code = "unprocessable" }, "invalid_input" },
      { { status = 429, code = "rate_limited", retry_after = 0, times = 3 }, "rate_limited" },
      { { status = 500, code = "internal_server_error", times = 3 }, "unavailable" },
      { { status = 503, code = "unavailable", times = 3 }, "unavailable" },
    }
    cases[#cases + 1] = { { status = 402, code = "payment_required",
                            message = "plan limit exceeded" }, "quota_exceeded" }
    -- on status (a 404 there is "terminated"; create would wait out rate_limited and
    -- quota_exceeded in admission control)
    local live = assert(sandlot.create("vercel", {}))
    for _, c in ipairs(cases) do
      c[1].route = "GET /v2/sandboxes/" .. live.id
      fake:inject(c[1])
      local st, err = live:status()
      assert.is_nil(st, c[1].code)
      assert.equal(c[2], err.code, c[1].code)
      assert.equal(c[1].status, err.status)
      fake.faults = {}
    end
    fake:inject({ route = "POST /v3/sandboxes", status = 400, code = "bad_request" })
    assert.equal("invalid_input", select(2, sandlot.create("vercel", {})).code)
    assert(live:destroy())
    -- the fake's own refusals: a wrong token, a lifetime over the plan's limit
    local sb, err = sandlot.create("vercel-badtoken", {})
    assert.is_nil(sb)
    assert.equal("auth_failed", err.code)
    sb, err = sandlot.create("vercel", { timeout = 10 * 24 * 3600 })
    assert.is_nil(sb)
    assert.equal("invalid_input", err.code)
    -- missing credentials: said before any request
    if os.getenv("VERCEL_TEAM_ID") then return pending("VERCEL_TEAM_ID is set here") end
    local before = #fake.requests
    sb, err = sandlot.create("vercel-noteam", {})
    assert.is_nil(sb)
    assert.equal("auth_failed", err.code)
    assert.matches("VERCEL_TEAM_ID", err.message, 1, true)
    assert.equal(before, #fake.requests)
  end))

  it("retries 429 (Retry-After) and 5xx as the SDK does, then succeeds", h.task(function()
    fake:inject({ route = "POST /v3/sandboxes", status = 429, retry_after = 0, times = 2 })
    local before = count("POST /v3/sandboxes")
    local sb = assert(sandlot.create("vercel", {}))
    assert.equal(3, count("POST /v3/sandboxes") - before)
    fake:inject({ route = "GET /v2/sandboxes/" .. sb.id, status = 502, times = 2 })
    assert.equal("running", sb:status())
    -- a Retry-After over 20 s is not waited for (with-retry.ts)
    before = count("GET /v2/sandboxes/" .. sb.id)
    fake:inject({ route = "GET /v2/sandboxes/" .. sb.id, status = 429, retry_after = 60 })
    local st, err = sb:status()
    assert.is_nil(st)
    assert.equal("rate_limited", err.code)
    assert.equal(1, count("GET /v2/sandboxes/" .. sb.id) - before)
    assert(sb:destroy())
  end))

  it("reports answers that break the protocol as bad_response", h.task(function()
    local sb = assert(sandlot.create("vercel", {}))
    local cmd = "POST /v2/sandboxes/sessions/[^/]+/cmd"
    local first = ndjson.encode({ command = { id = "cmd_1", name = "sh", args = {}, cwd = "/",
                                             sessionId = "se_1", startedAt = 1,
                                             exitCode = json.null } })
    local cases = {
      { route = cmd, body = '{"command":{}}' },                          -- not a stream
      { route = cmd, body = first, content_type = "application/x-ndjson" },   -- ends early
      { route = cmd, body = "", content_type = "application/x-ndjson" },      -- no command
      { route = cmd, body = first .. '{"stream":"stdout","data":"!!"}\n' ..
                            ndjson.encode({ command = { id = "cmd_1", exitCode = 0 } }),
        content_type = "application/x-ndjson" },                          -- not base64
      { route = cmd, body = first .. "{broken\n", content_type = "application/x-ndjson" },
    }
    for i, c in ipairs(cases) do
      fake:inject(c)
      local r, err = sb:exec({ "true" })
      assert.is_nil(r, i)
      assert.equal("bad_response", err.code, i .. ": " .. tostring(err))
      fake.faults = {}
    end
    -- an error line mid-stream (the sandbox stopped under the command)
    fake:inject({ route = cmd, content_type = "application/x-ndjson", body = first ..
                  '{"stream":"error","data":{"code":"sandbox_stopped","message":"gone"}}\n' })
    local r, err = sb:exec({ "true" })
    assert.is_nil(r)
    assert.equal("unavailable", err.code)
    -- a read answered as text, and a sandbox answer without a session
    fake:inject({ route = "POST /v2/sandboxes/sessions/[^/]+/fs/read", body = "hello",
                  content_type = "text/plain" })
    r, err = sb:read_file("x")
    assert.is_nil(r)
    assert.equal("bad_response", err.code)
    fake:inject({ route = "GET /v2/sandboxes/" .. sb.id, body = '{"sandbox":{}}' })
    r, err = sb:status()
    assert.is_nil(r)
    assert.equal("bad_response", err.code)
    fake:inject({ route = "GET /v2/sandboxes/" .. sb.id, body = "not json" })
    r, err = sb:status()
    assert.is_nil(r)
    assert.equal("bad_response", err.code)
    assert(sb:destroy())
  end))

  it("bounds a hung API call by request_timeout and a hung command by its timeout",
     h.task(function()
    local sb = assert(sandlot.create("vercel-quick", {}))
    fake:inject({ route = "GET /v2/sandboxes/" .. sb.id, hang = 2, times = 10 })
    local st, err = sb:status()
    assert.is_nil(st)
    assert.equal("timeout", err.code)
    fake.faults = {}
    local r = assert(sb:exec({ "sleep", "20" }, { timeout = 0.5 }))
    assert.is_true(r.timed_out)
    sandlot.sleep(2)                                  -- the hung handlers finish
    assert(sb:destroy())
  end))

  it("lists by labels across pages (one tag filter at the API, the rest here)",
     h.task(function()
    local tag = "p" .. math.random(1e9)
    local made = {}
    for i = 1, 5 do made[i] = assert(sandlot.create("vercel", { labels = { batch = tag } })) end
    local other = assert(sandlot.create("vercel", { labels = { batch = tag .. "x" } }))
    local r = assert(sandbox._context("vercel"))
    local pages = fake.list_pages
    local list = assert(r.p.ops.list(r.ctx, { labels = { batch = tag } }))
    assert.is_true(fake.list_pages - pages >= 3, "the list was not paged")
    for _, req in ipairs(fake.requests) do
      if req.route == "GET /v2/sandboxes" then
        local n = select(2, (req.query or ""):gsub("tags=", ""))
        assert.is_true(n <= 1, "more than one tag filter: " .. req.query)
      end
    end
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

  it("exposes a port for get_url (PATCH ports) and reads the URL from the routes",
     h.task(function()
    local sb = assert(sandlot.create("vercel", { ports = { 3000 } }))
    local before = count("PATCH /v2/sandboxes/" .. sb.id)
    assert.equal("https://" .. sb.id .. "-3000.vercel.run", assert(sb:get_url(3000)))
    assert.equal(before, count("PATCH /v2/sandboxes/" .. sb.id))
    assert.equal("https://" .. sb.id .. "-8080.vercel.run", assert(sb:get_url(8080)))
    assert.equal(before + 1, count("PATCH /v2/sandboxes/" .. sb.id))
    assert.same({ 3000, 8080 }, fake.sandboxes[sb.id].ports)
    assert(sb:destroy())
  end))

  it("takes native checkpoints (snapshots) and creates sandboxes from them", h.task(function()
    assert.equal("native", sandlot.caps("vercel").checkpoint)
    assert.equal("new_sandbox", sandlot.caps("vercel").restore)
    local sb = assert(sandlot.create("vercel", {}))
    assert(sb:write_file("state/kept.txt", "kept"))
    local ck = assert(sb:checkpoint({ name = "n1" }))
    assert.equal("native", ck.kind)
    assert.equal("vercel", ck.module)
    assert.equal("n1", ck.name)
    assert.is_table(fake.snapshots[ck.native_id])
    assert.equal("stopped", sb:status())             -- Vercel stops it to take the snapshot
    assert.equal("kept", assert(sb:read_file("state/kept.txt")))   -- resumed on use
    local list = assert(sandlot.checkpoint.native(sb))
    assert.equal(ck.native_id, list[1].native_id)
    assert.equal(ck.id, assert(sandlot.checkpoints(sb))[1].id)
    local copy = assert(sandlot.create("vercel", { from = ck }))
    assert.is_false(copy.id == sb.id)
    assert.equal(ck.native_id, fake.sandboxes[copy.id].snapshot)
    assert.equal("kept", assert(copy:read_file("state/kept.txt")))
    local copy2 = assert(sandlot.create("vercel", { from = list[1] }))
    assert.equal("kept", assert(copy2:read_file("state/kept.txt")))
    -- only into its own provider, and never in place
    local r, err = sandlot.create("local", { from = ck })
    assert.is_nil(r)
    assert.equal("not_supported", err.code)
    assert.matches('kind = "portable"', err.message, 1, true)
    r, err = sandlot.checkpoint.restore(copy, ck)
    assert.is_nil(r)
    assert.equal("not_supported", err.code)
    -- a snapshot the service does not have is not_found, and nothing is made
    local n = 0
    for _ in pairs(fake.sandboxes) do n = n + 1 end
    r, err = sandlot.create("vercel", { from = { kind = "native", native_id = "snap_missing",
                                                 provider = "vercel", module = "vercel" } })
    assert.is_nil(r)
    assert.equal("not_found", err.code)
    local n2 = 0
    for _ in pairs(fake.sandboxes) do n2 = n2 + 1 end
    assert.equal(n, n2)
    -- deleted: the service marks it, the record goes
    assert(sandlot.checkpoint.delete(ck))
    assert.equal("deleted", fake.snapshots[ck.native_id].status)
    assert.equal("not_found", select(2, sandlot.checkpoint.get(ck.id)).code)
    r, err = sandlot.create("vercel", { from = list[1] })
    assert.is_nil(r)
    assert.equal("not_found", err.code)
    -- a provider without native checkpoints says so
    local lsb = assert(sandlot.create("local", {}))
    r, err = lsb:checkpoint({ kind = "native" })
    assert.is_nil(r)
    assert.equal("not_supported", err.code)
    assert(lsb:destroy())
    assert(copy2:destroy())
    assert(copy:destroy())
    assert(sb:destroy())
  end))

  it("takes the team and project from an OIDC token's claims", h.task(function()
    local token = jwt({ owner_id = f.team, project_id = f.project, exp = os.time() + 3600 })
    local old = fake.token
    fake.token = token
    sandlot.config.set({ providers = { ["vercel-oidc"] = { "vercel", api_url = f.url,
                                                          token = token } } })
    local ok, perr = pcall(function()
      local sb = assert(sandlot.create("vercel-oidc", {}))
      assert.equal("ok\n", assert(sb:exec({ "echo", "ok" })).stdout)
      assert(sb:destroy())
    end)
    fake.token = old
    sandlot.config.set({ providers = {
      vercel = configure(),
      ["vercel-quick"] = configure({ request_timeout = 1 }),
      ["vercel-badtoken"] = configure({ token = "vcp_wrong" }),
      ["vercel-noteam"] = { "vercel", api_url = f.url, token = f.token, project_id = f.project },
    } })
    assert(ok, perr)
  end))

  it("keeps the token out of errors, telemetry and handles", h.task(function()
    local events = {}
    sandlot.telemetry.attach("vercel-spec", { { "sandlot", "*", "*" } },
      function(ev, m, meta) events[#events + 1] = json.encode({ ev, m, meta }) end)
    local ok, perr = pcall(function()
      local sb = assert(sandlot.create("vercel", {}))
      -- the plant: the service echoes the token back in error messages
      fake:inject({ route = "GET /v2/sandboxes/" .. sb.id, status = 400,
                    message = "bad token " .. f.token })
      local _, err = sb:status()
      assert.truthy(err)
      assert.matches("[REDACTED]", err.message, 1, true)
      fake:inject({ route = "POST /v2/sandboxes/sessions/[^/]+/cmd",
                    content_type = "application/x-ndjson",
                    body = ndjson.encode({ command = { id = "c", exitCode = json.null } },
                                         { stream = "error", data = { code = "x",
                                           message = "token " .. f.token } }) })
      local _, err2 = sb:exec({ "true" })
      assert.truthy(err2)
      assert.matches("[REDACTED]", err2.message, 1, true)
      local text = tostring(err) .. tostring(err2) .. json.encode(sandlot.to_map(sb))
      for _, e in ipairs(events) do text = text .. e end
      assert.is_nil(text:find(f.token, 1, true), "the token leaked")
      assert(sb:destroy())
    end)
    sandlot.telemetry.detach("vercel-spec")
    assert(ok, perr)
    assert.is_true(#events > 4)
  end))

  it("the fake rejects what Vercel rejects", h.task(function()
    local http = sandlot.http
    local function call(o)
      o.retry, o.decode = false, false
      o.headers = o.headers or {}
      if o.auth ~= false then o.headers.Authorization = "Bearer " .. f.token end
      o.auth = nil
      local res = assert(http.request(o))
      return res.status, res.body
    end
    local q = "?teamId=" .. f.team
    local u = f.url
    assert.equal(401, call({ url = u .. "/v2/sandboxes" .. q .. "&project=" .. f.project,
                             auth = false }))
    assert.equal(403, call({ url = u .. "/v2/sandboxes" .. q .. "&project=" .. f.project,
                             auth = false, headers = { Authorization = "Bearer nope" } }))
    assert.equal(400, call({ url = u .. "/v2/sandboxes?project=" .. f.project }))   -- no teamId
    assert.equal(400, call({ url = u .. "/v3/sandboxes" .. q, method = "POST", json = {} }))
    assert.equal(400, call({ url = u .. "/v3/sandboxes" .. q, method = "POST",
                             json = { projectId = f.project, runtime = "node24",
                                      image = "node:24" } }))
    assert.equal(400, call({ url = u .. "/v3/sandboxes" .. q, method = "POST",
                             json = { projectId = f.project, region = "iad1",
                                      failoverRegions = { "iad1" } } }))
    assert.equal(400, call({ url = u .. "/v3/sandboxes" .. q, method = "POST",
                             body = json.encode({ projectId = f.project }),
                             headers = { ["Content-Type"] = "text/plain" } }))
    local sb = assert(sandlot.create("vercel", {}))
    local sid = fake.sandboxes[sb.id].session
    local w = u .. "/v2/sandboxes/sessions/" .. sid .. "/fs/write" .. q
    local gz = table.concat(tar.archive({ { name = "tmp/x", data = "x" } }, { gzip = true }))
    assert.equal(400, call({ url = w, method = "POST", body = gz,
                             headers = { ["Content-Type"] = "application/octet-stream",
                                         ["x-cwd"] = "/" } }))
    assert.equal(400, call({ url = w, method = "POST", body = gz,
                             headers = { ["Content-Type"] = "application/gzip",
                                         ["x-cwd"] = "tmp" } }))
    local evil = table.concat(tar.archive({ { name = "../etc/x", data = "x" } }, { gzip = true }))
    assert.equal(400, call({ url = w, method = "POST", body = evil,
                             headers = { ["Content-Type"] = "application/gzip",
                                         ["x-cwd"] = "/tmp" } }))
    assert.equal(200, call({ url = w, method = "POST", body = gz,
                             headers = { ["Content-Type"] = "application/gzip",
                                         ["x-cwd"] = "/" } }))
    local rd = u .. "/v2/sandboxes/sessions/" .. sid .. "/fs/read" .. q
    assert.equal(404, call({ url = rd, method = "POST", json = { path = "/nope" } }))
    local status, body = call({ url = rd, method = "POST", json = { path = "/tmp/x" } })
    assert.same({ 200, "x" }, { status, body })
    -- NDJSON: the command line first (exitCode null), the logs, the command with its code
    status, body = call({ url = u .. "/v2/sandboxes/sessions/" .. sid .. "/cmd" .. q,
                          method = "POST", json = { command = "echo", args = { "hi" }, env = {},
                                                    sudo = false, wait = true, logs = true } })
    assert.equal(200, status)
    local lines = {}
    local d = ndjson.decoder(function(v) lines[#lines + 1] = v end)
    assert(d(body))
    assert(d:finish())
    assert.equal(json.null, lines[1].command.exitCode)
    assert.same({ stream = "stdout", data = "hi\n" }, lines[2])
    assert.equal(0, lines[#lines].command.exitCode)
    assert(sb:stop())
    assert.equal(410, call({ url = rd, method = "POST", json = { path = "/tmp/x" } }))
    assert.is_true(#fake.rejected >= 10)
    assert(sb:destroy())
  end))
end)
