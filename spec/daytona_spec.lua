-- spec/daytona_spec.lua: the Daytona provider against its strict fake (spec/fakes/daytona.lua,
-- served in this process by sandlot.http.serve): waiting for "started", list pagination, the
-- error map (statuses and the daemon's codes), retries on 429/503, a hang bounded by the
-- request timeout, a dropped connection, the lifetime re-applied, snapshots as native
-- checkpoints that seed new sandboxes, and the key kept out of errors, telemetry and handles.
-- The fake's own strictness is checked by calling it directly.
local sandlot = require("sandlot")
local http = require("sandlot.http")
local json = require("sandlot.wire.json")
local daytona = require("providers.daytona")
local fakes = require("spec.fakes.daytona")
local helper = require("spec.helper")

local function ctx_for(srv, extra)
  local config = { api_url = srv.api_url, api_key = srv.token, create_timeout = 10,
                   request_timeout = 5 }
  for k, v in pairs(extra or {}) do config[k] = v end
  return { config = config, name = "daytona", warn = function() end }
end

local function count(list, pattern)
  local n = 0
  for _, line in ipairs(list) do if line:find(pattern) then n = n + 1 end end
  return n
end

describe("daytona provider", function()
  local srv

  before_each(function()
    if not http.serve then return end
    srv = fakes.start({ start_delay = 0.3 })
    sandlot.config.set({ providers = {
      dt = { "daytona", api_url = srv.api_url, api_key = srv.token, create_timeout = 10,
             request_timeout = 5, auto_stop_interval = 7 } } })
  end)

  after_each(function()
    sandlot.config.reset()
    if srv then srv.stop() end
    srv = nil
  end)

  local function needs_serve()
    if not http.serve then pending("needs sandlot.http.serve (branch h1-serve)") end
  end

  describe("waiting", function()
    it("create returns once the sandbox has gone from creating to started", function()
      needs_serve()
      local sb = assert(sandlot.create("dt", {}))
      assert.equal("running", sb:status())
      local s = srv.fake.sandboxes[sb.id]
      assert.equal("started", s.state)
      assert.equal(7, s.auto_stop)                        -- the configured lifetime
      assert(sb:destroy())
    end)

    for _, state in ipairs({ "error", "build_failed" }) do
      it("create fails when the sandbox ends in " .. state .. ", and removes it", function()
        needs_serve()
        srv.fake.fail_with = state
        local sb, err = sandlot.create("dt", {})
        assert.is_nil(sb)
        assert.equal("unavailable", err.code)
        assert.matches(state, err.message, 1, true)
        assert.matches("the fake was told to fail", err.message, 1, true)
        local s = srv.fake.order[1]
        assert.truthy(s, "the fake never saw the create")
        assert.is_true(require("spec.helper").eventually(function()
          return s.state == "destroyed"
        end, 10), "the failed sandbox was not removed")
      end)
    end

    it("create gives up after create_timeout (timeout), and removes the sandbox", function()
      needs_serve()
      srv.fake.start_delay = 30
      local ctx = ctx_for(srv, { create_timeout = 0.5 })
      local h, err = daytona.create(ctx, {})
      assert.is_nil(h)
      assert.equal("timeout", err.code)
      srv.fake.order[1].pending.at = 0                    -- let it start, then see it go
      assert.is_true(require("spec.helper").eventually(function()
        return srv.fake.order[1].state == "destroyed"
      end, 10))
    end)

    it("stop waits for stopped, start for started, and start re-applies the lifetime",
       function()
      needs_serve()
      local sb = assert(sandlot.create("dt", {}))
      local s = srv.fake.sandboxes[sb.id]
      assert(sb:stop())
      assert.equal("stopped", s.state)
      s.auto_stop = 99                                    -- changed behind our back
      assert(sb:start())
      assert.equal("started", s.state)
      assert.equal(7, s.auto_stop)
      s.auto_stop = 98
      assert(sb:reconnect())
      assert.equal(7, s.auto_stop)                        -- reconnect re-applies it too
      assert(sb:destroy())
    end)
  end)

  describe("working directory", function()
    it("asks GET /work-dir only when a relative path needs it, once per sandbox", function()
      needs_serve()
      local ns_why = require("spec.support.namespaces").skip()  -- fake sandboxes need their own /
      if ns_why then return pending(ns_why) end
      -- a fault with no effect records each matching request in fake.injected
      srv.fake:inject({ match = "^GET /toolbox/.*/work%-dir$", count = 1000 })
      local function asked() return count(srv.fake.injected, "/work%-dir$") end
      local sb <close> = assert(sandlot.create("dt", {}))
      local r = assert(sb:exec({ "pwd" }))            -- no cwd: the daemon's own
      assert.equal("/home/daytona\n", r.stdout)
      assert(sb:write_file("/home/daytona/abs.txt", "a"))
      assert.equal(0, asked())
      assert(sb:write_file("rel/one.txt", "1"))        -- relative: the work dir, asked once
      assert.equal(1, asked())
      assert.equal("1", assert(sb:read_file("/home/daytona/rel/one.txt")))
      assert.equal("/home/daytona/rel\n", assert(sb:exec({ "pwd" }, { cwd = "rel" })).stdout)
      assert.equal("a", assert(sb:read_file("abs.txt")))
      assert.equal(1, asked())
      local _, err = sb:read_file("../../../x")
      assert.equal("invalid_input", err.code)
    end)
  end)

  describe("read_file{to}", function()
    it("a host file whose last write fails is io_error, and nothing is left", function()
      needs_serve()
      local ns_why = require("spec.support.namespaces").skip()  -- fake sandboxes need their own /
      if ns_why then return pending(ns_why) end
      local sb = assert(sandlot.create("dt", {}))
      helper.assert_read_to_fails_cleanly(sb)
      assert(sb:destroy())
    end)
  end)

  describe("list", function()
    it("follows nextCursor across pages and filters by labels", function()
      needs_serve()
      srv.fake.page_size = 2
      srv.fake.start_delay = 0
      local made = {}
      for i = 1, 5 do
        made[i] = assert(sandlot.create("dt", { labels = { batch = "p", n = tostring(i) } }))
      end
      local other = assert(sandlot.create("dt", { labels = { batch = "q" } }))
      local before = srv.fake.requests
      local list = assert(daytona.list(ctx_for(srv), { labels = { batch = "p" } }))
      assert.equal(5, #list)
      assert.is_true(srv.fake.requests - before >= 3, "fewer requests than pages")
      local ids = {}
      for _, hd in ipairs(list) do ids[hd.id] = hd.labels.n end
      for i = 1, 5 do assert.equal(tostring(i), ids[made[i].id]) end
      assert.is_nil(ids[other.id])
      assert.equal(6, #assert(daytona.list(ctx_for(srv), { labels = { batch = true } })))
      for _, sb in ipairs(made) do assert(sb:destroy()) end
      assert.equal(0, #assert(daytona.list(ctx_for(srv), { labels = { batch = "p" } })))
      assert(other:destroy())
    end)
  end)

  describe("errors", function()
    -- {what, injected fault, where, expected code}
    local cases = {
      { "401 on the API", { status = 401 }, "GET /api/sandbox/", "auth_failed" },
      { "403 on the API", { status = 403 }, "GET /api/sandbox/", "auth_failed" },
      { "404 on the API", { status = 404 }, "GET /api/sandbox/", "terminated" },
      { "400 on the API", { status = 400 }, "GET /api/sandbox/", "invalid_input" },
      { "402 (quota)", { status = 402 }, "GET /api/sandbox/", "quota_exceeded" },
      { "500", { status = 500, count = 5 }, "GET /api/sandbox/", "unavailable" },
      { "429 past the retries", { status = 429, retry_after = 0, count = 5 },
        "GET /api/sandbox/", "rate_limited" },
      { "FILE_NOT_FOUND", { status = 404, body = { statusCode = 404, code = "FILE_NOT_FOUND",
        message = "no such file", source = "DAYTONA_DAEMON" } }, "/files/download",
        "not_found" },
      { "FILE_ACCESS_DENIED", { status = 403, body = { statusCode = 403, message = "denied",
        code = "FILE_ACCESS_DENIED", source = "DAYTONA_DAEMON" } }, "/files/download",
        "permission_denied" },
      { "an empty 403 from a file handler", { status = 403, body = "" }, "/files/download",
        "permission_denied" },
      { "PROCESS_EXECUTION_TIMEOUT", { status = 400, body = { statusCode = 400,
        code = "PROCESS_EXECUTION_TIMEOUT", message = "slow" } }, "/process/execute",
        "timeout" },
      { "a state change in progress", { status = 409, body = { statusCode = 409,
        message = "Sandbox state change in progress" } }, "POST /api/sandbox/[^/]+/stop",
        "unavailable" },
      { "the proxy's no IP", { status = 400, body = { statusCode = 400, code = "BAD_REQUEST",
        message = "no IP address found. Is the Sandbox started?" } }, "/process/execute",
        "unavailable" },
    }
    for _, case in ipairs(cases) do
      it("maps " .. case[1] .. " to " .. case[4], function()
        needs_serve()
        srv.fake.start_delay = 0
        local sb = assert(sandlot.create("dt", {}))
        local f = {}
        for k, v in pairs(case[2]) do f[k] = v end
        f.match = case[3]
        srv.fake:inject(f)
        local v, err
        if case[3]:find("download") then v, err = sb:read_file("x")
        elseif case[3]:find("execute") then v, err = sb:exec({ "true" })
        elseif case[3]:find("stop") then v, err = sb:stop()
        else v, err = sb:status() end
        if case[4] == "terminated" then
          assert.equal("terminated", v)
        else
          assert.is_nil(v, case[1])
          assert.equal(case[4], err.code, tostring(err))
        end
        assert.equal(1, math.min(1, #srv.fake.injected), "the fault was never hit")
        srv.fake.faults = {}
        assert(sb:destroy())
      end)
    end

    it("a sandbox gone behind our back is not_found on the toolbox (the proxy says 401)",
       function()
      local ns_why = require("spec.support.namespaces").skip()  -- fake sandboxes need their own /
      if ns_why then return pending(ns_why) end
      needs_serve()
      srv.fake.start_delay = 0
      local sb = assert(sandlot.create("dt", {}))
      assert(sb:exec({ "true" }))                         -- the toolbox is known
      local s = srv.fake.sandboxes[sb.id]
      s.state = "destroyed"
      local r, err = sb:exec({ "true" })
      assert.is_nil(r)
      assert.equal("not_found", err.code)
      assert.equal(1, count((function()
        local l = {}
        for _, x in ipairs(srv.fake.rejected) do l[#l + 1] = x.status .. " " .. x.path end
        return l
      end)(), "^401 /toolbox/"))
    end)

    it("a wrong key is auth_failed, and no error, telemetry event or handle holds the key",
       function()
      local ns_why = require("spec.support.namespaces").skip()  -- fake sandboxes need their own /
      if ns_why then return pending(ns_why) end
      needs_serve()
      local planted = "dtn_planted_" .. require("sandlot.id").hex(12)
      srv.fake.token = planted
      sandlot.config.set({ providers = {
        good = { "daytona", api_url = srv.api_url, api_key = planted },
        bad = { "daytona", api_url = srv.api_url, api_key = planted .. "x" } } })
      local seen = {}
      sandlot.telemetry.attach("dt-spec", { { "sandlot", "*", "*" } }, function(ev, m, meta)
        seen[#seen + 1] = json.encode({ ev, m, meta })
      end)
      local ok, perr = pcall(function()
        local sb, err = sandlot.create("bad", {})
        assert.is_nil(sb)
        assert.equal("auth_failed", err.code)
        local text = tostring(err) .. json.encode(err)
        assert.is_nil(text:find(planted, 1, true), "the key is in the error")
        local good = assert(sandlot.create("good", { env = { K = "v" } }))
        local r = assert(good:exec({ "sh", "-c", "printf %s \"$1\"", "_", planted }))
        assert.equal(planted, r.stdout)                   -- the plant can travel
        local m = json.encode(sandlot.to_map(good))
        assert.is_nil(m:find(planted, 1, true), "the key is in to_map")
        srv.fake:inject({ match = "/process/execute", status = 400,
                          body = { statusCode = 400, message = "echo " .. planted } })
        local _, eerr = good:exec({ "true" })
        assert.is_nil(tostring(eerr):find(planted, 1, true), "an echoed key reached the error")
        assert(good:destroy())
      end)
      sandlot.telemetry.detach("dt-spec")
      assert(ok, perr)
      assert.is_true(#seen > 0)
      for _, line in ipairs(seen) do
        if not line:find('"exec"', 1, true) then     -- exec's own argv carries the plant
          assert.is_nil(line:find(planted, 1, true), "the key is in telemetry: " .. line)
        end
      end
    end)

    it("authenticates with a JWT and the organization header; without it, refused", function()
      needs_serve()
      srv.fake.jwt, srv.fake.org = "jwt-" .. require("sandlot.id").hex(8), "org-1"
      local ctx = { config = { api_url = srv.api_url, jwt_token = srv.fake.jwt,
                               organization_id = "org-1" }, warn = function() end }
      local h = assert(daytona.create(ctx, {}))
      assert.equal("running", daytona.status(ctx, h))
      ctx.config.organization_id = "org-2"
      local st, err = daytona.status(ctx, h)
      assert.is_nil(st)
      assert.equal("auth_failed", err.code)
      ctx.config.organization_id = "org-1"
      assert(daytona.destroy(ctx, h))
    end)
  end)

  describe("retries and transport", function()
    it("retries create after 429 with Retry-After and after 503", function()
      needs_serve()
      srv.fake:inject({ match = "^POST /api/sandbox$", status = 429, retry_after = 0 })
      srv.fake:inject({ match = "^POST /api/sandbox$", status = 503 })
      local sb = assert(sandlot.create("dt", {}))
      assert.equal(2, count(srv.fake.injected, "^POST /api/sandbox$"))
      assert.equal(1, #srv.fake.order)                    -- one sandbox, not three
      srv.fake:inject({ match = "^GET /api/sandbox/", status = 429, retry_after = 0 })
      assert.equal("running", sb:status())                -- GETs retry in sandlot.http
      assert(sb:destroy())
    end)

    it("bounds a hang by the request timeout (timeout)", function()
      needs_serve()
      srv.fake.start_delay = 0
      local h = assert(daytona.create(ctx_for(srv), {}))  -- a loaded machine may be slow here
      local ctx = ctx_for(srv, { request_timeout = 0.5 })
      srv.fake:inject({ match = "^GET /api/sandbox/", hang = 5, count = 10 })
      local st, err = daytona.status(ctx, h)
      assert.is_nil(st)
      assert.equal("timeout", err.code)
      srv.fake.faults = {}
      assert(daytona.destroy(ctx_for(srv), h))
    end)

    it("survives a dropped connection on a GET (retried), reports one on exec", function()
      local ns_why = require("spec.support.namespaces").skip()  -- fake sandboxes need their own /
      if ns_why then return pending(ns_why) end
      needs_serve()
      srv.fake.start_delay = 0
      local sb = assert(sandlot.create("dt", {}))
      srv.fake:inject({ match = "^GET /api/sandbox/", drop = true })
      assert.equal("running", sb:status())
      -- libcurl re-sends once on a reused connection closed before any answer: drop twice
      srv.fake:inject({ match = "/process/execute", drop = true, count = 2 })
      local r, err = sb:exec({ "true" })
      assert.is_nil(r)
      assert.equal("unavailable", err.code)
      assert.equal(0, assert(sb:exec({ "true" })).exit_code)
      assert(sb:destroy())
    end)
  end)

  it("takes snapshots and creates sandboxes from them, only daytona ones", function()
    needs_serve()
    local ns_why = require("spec.support.namespaces").skip()  -- fake sandboxes need their own /
    if ns_why then return pending(ns_why) end
    assert.equal("native", sandlot.caps("dt").checkpoint)
    assert.equal("new_sandbox", sandlot.caps("dt").restore)
    local sb = assert(sandlot.create("dt", {}))
    assert(sb:write_file("state/kept.txt", "kept"))
    local ck = assert(sb:checkpoint({ name = "n1" }))
    assert.equal("native", ck.kind)
    assert.equal("daytona", ck.module)
    local sn = srv.fake.snapshots[ck.native_id]
    assert.equal("active", sn.state)                  -- waited for: pending, then active
    assert.equal("sandlot-" .. sb.id .. "-", sn.name:sub(1, #sb.id + 9))
    assert.equal("running", sb:status())              -- back from snapshotting
    local other = assert(sandlot.create("dt", {}))
    assert(other:checkpoint())                        -- another sandbox's: not listed
    local ck2 = assert(sb:checkpoint())
    local list = assert(sandlot.checkpoint.native(sb))
    assert.equal(2, #list)
    assert.same({ ck2.native_id, ck.native_id }, { list[1].native_id, list[2].native_id })
    local copy = assert(sandlot.create("dt", { from = ck }))
    assert.equal(ck.native_id, srv.fake.sandboxes[copy.id].snapshot)
    assert.equal("kept", assert(copy:read_file("state/kept.txt")))
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
    assert.is_nil(srv.fake.snapshots[ck.native_id])
    local made = #srv.fake.order
    r, err = sandlot.create("dt", { from = list[2] })
    assert.is_nil(r)
    assert.equal("not_found", err.code)
    assert.equal(made, #srv.fake.order)
    for _, x in ipairs({ copy, other, sb }) do assert(x:destroy()) end
  end)
end)

describe("the Daytona fake (strict)", function()
  local fake

  before_each(function()
    fake = fakes.new({ start_delay = 0, url = "http://fake" })
  end)

  local function req(method, path, opts)
    opts = opts or {}
    local headers = {}
    if opts.auth ~= false then headers.authorization = "Bearer " .. (opts.auth or fake.token) end
    for k, v in pairs(opts.headers or {}) do headers[k] = v end
    local r = fake:handle({ method = method, path = path, query = opts.query or "",
                            headers = headers, body = opts.body or "" })
    local v = r.body ~= "" and type(r.body) == "string" and r.body:sub(1, 1) ~= "-" and
              json.decode(r.body) or nil
    return r.status, v, r
  end

  local function new_sandbox()
    local st, sb = req("POST", "/api/sandbox", { body = "{}",
                       headers = { ["content-type"] = "application/json" } })
    assert.equal(200, st)
    return sb
  end

  after_each(function()
    for _, s in ipairs(fake.order) do if s.state ~= "destroyed" then s.box:destroy() end end
  end)

  it("refuses missing and wrong auth on both surfaces", function()
    local st, body = req("GET", "/api/sandbox", { auth = false })
    assert.same({ 401, "Unauthorized", 401 }, { st, body.message, body.statusCode })
    st = req("GET", "/api/sandbox", { auth = "nope" })
    assert.equal(401, st)
    local sb = new_sandbox()
    st, body = req("GET", "/toolbox/" .. sb.id .. "/work-dir", { auth = false })
    assert.equal(401, st)
    assert.matches("^missing authentication", body.message)
    st, body = req("GET", "/toolbox/" .. sb.id .. "/work-dir", { auth = "nope" })
    assert.same({ 401, "authentication failed: Bearer token is invalid" }, { st, body.message })
    st = req("GET", "/toolbox/" .. sb.id .. "/work-dir")
    assert.equal(200, st)                                 -- the plant: good auth passes
  end)

  it("refuses malformed bodies and wrong field types; ignores a non-JSON content type",
     function()
    local st = req("POST", "/api/sandbox", { body = "{nope",
                         headers = { ["content-type"] = "application/json" } })
    assert.equal(400, st)
    local body
    st, body = req("POST", "/api/sandbox", { body = '{"cpu": -1, "public": "yes"}',
                   headers = { ["content-type"] = "application/json" } })
    assert.equal(400, st)
    assert.matches("public must be a boolean", body.message, 1, true)
    st, body = req("POST", "/api/sandbox", { body = '{"cpu": -1}',
                   headers = { ["content-type"] = "text/plain" } })
    assert.equal(200, st)                                 -- ignored, as NestJS does
    assert.equal(15, body.autoStopInterval)               -- the documented default
    assert.equal(body.id, body.name)
    assert.equal("creating", body.state)
  end)

  it("404 for an unknown sandbox on the API, 401 on the toolbox, 400 when not started",
     function()
    local st, body = req("GET", "/api/sandbox/nope")
    assert.equal(404, st)
    assert.matches("Sandbox with ID or name nope not found", body.message, 1, true)
    st = req("GET", "/toolbox/nope/work-dir")
    assert.equal(401, st)
    fake.start_delay = 30
    local sb = new_sandbox()
    st, body = req("POST", "/toolbox/" .. sb.id .. "/process/execute",
                   { body = '{"command": "true"}' })
    assert.equal(400, st)
    assert.matches("no IP address found", body.message, 1, true)
    st = req("DELETE", "/api/sandbox/" .. sb.id)
    assert.equal(409, st)                                 -- still creating
  end)

  it("checks snapshot requests: names, states, unknown ones", function()
    fake.start_delay = 30
    local sb = new_sandbox()
    local function snap(body) return req("POST", "/api/sandbox/" .. sb.id .. "/snapshot",
                                         { body = body }) end
    assert.equal(409, (snap('{"name": "x"}')))               -- still creating
    fake.start_delay, fake.sandboxes[sb.id].pending.at = 0, 0
    assert.equal(200, (req("GET", "/api/sandbox/" .. sb.id)))
    assert.equal(400, (req("POST", "/api/sandbox", { body = '{"snapshot": "x"}',
                           headers = { ["content-type"] = "application/json" } })))
    assert.equal(400, (snap("{}")))                          -- name required
    assert.equal(400, (snap('{"name": "a b"}')))
    assert.equal(400, (snap('{"name": "ok", "includeMemory": "yes"}')))
    fake.start_delay = 30
    local st, body = snap('{"name": "ok"}')
    assert.equal(200, st)
    assert.equal("snapshotting", body.state)
    assert.equal(409, (snap('{"name": "ok2"}')))             -- a transition is running
    local _, pend = req("GET", "/api/snapshots/ok")
    assert.equal("pending", pend.state)
    st, body = req("POST", "/api/sandbox", { body = '{"snapshot": "ok"}',
                   headers = { ["content-type"] = "application/json" } })
    assert.equal(400, st)
    assert.matches("Snapshot ok is pending", body.message, 1, true)
    fake.start_delay, fake.sandboxes[sb.id].pending.at = 0, 0
    assert.equal("started", select(2, req("GET", "/api/sandbox/" .. sb.id)).state)
    assert.equal(409, (snap('{"name": "ok"}')))              -- the name is taken
    assert.equal(400, (req("GET", "/api/snapshots", { query = "limit=201" })))
    assert.equal(400, (req("GET", "/api/snapshots", { query = "page=0" })))
    local _, page = req("GET", "/api/snapshots", { query = "name=OK" })
    assert.equal(1, page.total)
    assert.equal(404, (req("GET", "/api/snapshots/nope")))
    assert.equal(404, (req("DELETE", "/api/snapshots/ok")))   -- by id only
    st, body = req("POST", "/api/sandbox", { body = '{"snapshot": "nope"}',
                   headers = { ["content-type"] = "application/json" } })
    assert.equal(400, st)
    assert.matches("Snapshot nope not found", body.message, 1, true)
    assert.equal(200, (req("DELETE", "/api/snapshots/" .. page.items[1].id)))
    assert.equal(404, (req("GET", "/api/snapshots/ok")))
  end)

  it("checks commands, sessions and upload content types", function()
    local sb = new_sandbox()
    local tb = "/toolbox/" .. sb.id
    assert.equal(400, (req("POST", tb .. "/process/execute", { body = '{"command": "  "}' })))
    assert.equal(400, (req("POST", tb .. "/process/execute",
                           { body = '{"command": "true", "envs": {"A B": "x"}}' })))
    assert.equal(201, (req("POST", tb .. "/process/session", { body = '{"sessionId": "s1"}' })))
    assert.equal(409, (req("POST", tb .. "/process/session", { body = '{"sessionId": "s1"}' })))
    assert.equal(404, (req("GET", tb .. "/process/session/s2")))
    assert.equal(400, (req("POST", tb .. "/process/session/entrypoint/exec",
                           { body = '{"command": "true"}' })))
    assert.equal(400, (req("POST", tb .. "/files/bulk-upload", { body = "x",
                           headers = { ["content-type"] = "application/json" } })))
    -- without X-Daytona-SDK-Version: combined output only
    local st, r = req("POST", tb .. "/process/session/s1/exec",
                      { body = '{"command": "printf o; printf e >&2"}' })
    assert.equal(200, st)
    assert.same({ "o\ne\n", nil }, { r.output, r.stdout })
    r = select(2, req("POST", tb .. "/process/session/s1/exec",
                { body = '{"command": "printf o; printf e >&2"}',
                  headers = { ["x-daytona-sdk-version"] = "0.190.0" } }))
    assert.same({ "o\n", "e\n" }, { r.stdout, r.stderr })
    -- an empty form-urlencoded POST is fine
    assert.equal(200, (req("POST", "/api/sandbox/" .. sb.id .. "/stop", { query = "force=false",
                       headers = { ["content-type"] = "application/x-www-form-urlencoded" } })))
    assert.same({}, (function()
      local l = {}
      for _, x in ipairs(fake.rejected) do
        if x.path:find("/stop$") then l[#l + 1] = x end
      end
      return l
    end)())
  end)
end)
