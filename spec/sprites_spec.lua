-- spec/sprites_spec.lua: what the sprites provider does beyond the conformance suite, on the
-- strict fake (spec/fakes/sprites.lua): the create body (environment verbatim, labels, config),
-- list pages, Sprites' error bodies onto sandlot's codes, retries on 429 and 503, hung and
-- dropped calls, HTTP exec frames that are not frames, the WebSocket URL's scheme, native
-- checkpoints (in place; not into another sandbox), and the token kept out of errors,
-- telemetry and handles (a planted one).
local sandlot = require("sandlot")
local sandbox = require("sandlot.sandbox")
local json = require("sandlot.wire.json")
local sys = require("sandlot.core.sys")
local h = require("spec.helper")

-- the fake's sprites are local sandboxes with their own / (bubblewrap): without namespaces the
-- whole file is one pending case with the reason (pending cannot be called from before_each)
local ns_why = require("spec.support.namespaces").skip()
if ns_why then
  describe("sprites provider", function() pending(ns_why) end)
  return
end

describe("sprites provider", function()
  local f, fake

  local function configure(extra)
    local p = { "sprites", api_url = f.url, token = f.token }
    for k, v in pairs(extra or {}) do p[k] = v end
    return p
  end

  lazy_setup(function()
    if not sandlot.http.serve then return end
    f = require("spec.fakes.sprites").start{ page_size = 2 }
    fake = f.fake
    sandlot.config.set({ providers = {
      sp = configure(),
      ["sp-quick"] = configure({ request_timeout = 1 }),
      ["sp-badtoken"] = configure({ token = "wrong-token" }),
      ["sp-env"] = { "sprites", api_url = f.url },
      ["sp-tls"] = configure({ api_url = "https://127.0.0.1:1" }),
      ["sp-once"] = configure({ create_deadline = 0.01 }),  -- admission tries once
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

  local function last(route)
    local found
    for _, r in ipairs(fake.requests) do if r.route == route then found = r end end
    return found
  end

  it("creates with the documented body: environment verbatim, labels, config", h.task(function()
    local sb = assert(sandlot.create("sp", { env = { Mixed_Case = "1", dropped = false },
                                             labels = { team = "a b" }, cpus = 2,
                                             memory_mb = 2048, url_auth = "public" }))
    local body = json.decode(last("POST /v1/sprites").body)
    assert.equal(sb.id, body.name)
    assert.matches("^sandlot%-%x+$", body.name)
    assert.same({ Mixed_Case = "1" }, body.environment)
    assert.same({ ram_mb = 2048, cpus = 2 }, body.config)
    assert.same({ auth = "public" }, body.url_settings)
    assert.is_true(body.wait_for_capacity)
    local labels = {}
    for _, l in ipairs(body.labels) do labels[l] = true end
    assert.is_true(labels.sandlot and labels["team=a b"] and
                   labels[sandlot.ledger.LABEL .. "=" .. sb.durable_id] or false)
    assert.equal("1\n", assert(sb:exec({ "sh", "-c", "echo $Mixed_Case" })).stdout)
    assert.same({ id = sb.id, workdir = "/home/sprite" }, sb.handle)
    -- the fake's defaults: cold until used, url_settings.auth "sprite"
    local plain = assert(sandlot.create("sp", {}))
    assert.equal("cold", fake:status_of(fake.sprites[plain.id]))
    assert.equal("sprite", fake.sprites[plain.id].url_settings.auth)
    assert.equal("running", plain:status())          -- cold, warm and running: all "running"
    assert(plain:exec({ "true" }))
    assert.equal("running", fake:status_of(fake.sprites[plain.id]))
    -- a cwd is made at create (no mkdir endpoint: a .keep written, then deleted)
    local deep = assert(sandlot.create("sp", { cwd = "/srv/app" }))
    assert.equal("/srv/app\n", assert(deep:exec({ "pwd" })).stdout)
    assert.same({}, assert(deep:ls(".")))
    for _, s in ipairs({ sb, plain, deep }) do assert(s:destroy()) end
    -- what Sprites cannot do is refused, never ignored
    local r, err = sandlot.create("sp", { network = "none" })
    assert.is_nil(r)
    assert.equal("not_supported", err.code)
    r, err = sandlot.create("sp", { mounts = { { source = "/tmp", target = "/mnt" } } })
    assert.is_nil(r)
    assert.equal("not_supported", err.code)
  end))

  it("lists by labels across pages (continuation_token)", h.task(function()
    local tag = "p" .. math.random(1e9)
    local made = {}
    for i = 1, 5 do made[i] = assert(sandlot.create("sp", { labels = { batch = tag } })) end
    local other = assert(sandlot.create("sp", { labels = { batch = tag .. "x" } }))
    -- a sprite sandlot did not make (no "sandlot" label) is never listed
    local res = assert(sandlot.http.request({ url = f.url .. "/v1/sprites", method = "POST",
      json = { name = "sandlot-foreign", labels = { "batch=" .. tag } },
      headers = { Authorization = "Bearer " .. f.token } }))
    assert.equal(201, res.status)
    local r = assert(sandbox._context("sp"))
    local pages = fake.list_pages
    local list = assert(r.p.ops.list(r.ctx, { labels = { batch = tag } }))
    assert.is_true(fake.list_pages - pages >= 3, "the list was not paged")
    local ids = {}
    for _, hd in ipairs(list) do ids[hd.id] = hd end
    for _, sb in ipairs(made) do
      assert.is_table(ids[sb.id])
      assert.equal(tag, ids[sb.id].labels.batch)
      assert.equal(sb.durable_id, ids[sb.id].labels[sandlot.ledger.LABEL])
      assert.is_number(ids[sb.id].created_at)
    end
    assert.is_nil(ids[other.id])
    assert.is_nil(ids["sandlot-foreign"])
    assert.equal(5, #list)
    for _, sb in ipairs(made) do assert(sb:destroy()) end
    assert(other:destroy())
    fake:kill("sandlot-foreign")
    assert.same({}, assert(r.p.ops.list(r.ctx, { labels = { batch = tag } })))
  end))

  it("maps Sprites' statuses and error bodies onto sandlot's codes", h.task(function()
    local cases = {
      { { status = 400, message = "sprite with name x already exists" }, "already_exists" },
      { { status = 409, message = "conflict" }, "already_exists" },
      { { status = 429, retry_after = 0, times = 1000, error = "concurrent_sprite_limit_exceeded",
          message = "too many sprites running" }, "quota_exceeded" },
      { { status = 429, retry_after = 0, times = 1000, error = "sprite_creation_rate_limited",
          message = "slow down" }, "rate_limited" },
      { { status = 400, message = "invalid body" }, "invalid_input" },
      { { status = 503, times = 4, message = "down" }, "unavailable" },
    }
    for _, c in ipairs(cases) do
      c[1].route = "POST /v1/sprites"
      fake:inject(c[1])
      local sb, err = sandlot.create("sp-once", {})
      assert.is_nil(sb)
      assert.equal(c[2], err.code, c[1].message)
      assert.equal(c[1].status, err.status)
      fake.faults = {}
    end
    local sb, err = sandlot.create("sp-badtoken", {})
    assert.is_nil(sb)
    assert.equal("auth_failed", err.code)
    -- the filesystem's errno codes; an unknown sprite
    local live = assert(sandlot.create("sp", {}))
    assert.equal("not_found", select(2, live:read_file("nope")).code)
    assert.equal("invalid_input", select(2, live:read_file("/home")).code)   -- EISDIR
    fake:inject({ route = "GET /v1/sprites/" .. live.id .. "/fs/read", status = 403,
                  body = { error = "permission denied", code = "EACCES" } })
    assert.equal("permission_denied", select(2, live:read_file("x")).code)
    local back = assert(sandlot.from_map(sandlot.to_map(live)))
    fake:kill(live.id)
    assert.equal("terminated", back:status())
    assert.equal("not_found", select(2, back:reconnect()).code)
    assert.equal("not_found", select(2, live:exec({ "true" })).code)
    assert.equal("not_found", select(2, live:spawn({ "true" })).code)
    assert.is_true(back:destroy())                    -- idempotent
  end))

  it("retries 429 (Retry-After) and 503, then succeeds", h.task(function()
    fake:inject({ route = "POST /v1/sprites", status = 429, retry_after = 0, times = 2 })
    local before = count("POST /v1/sprites")
    local sb = assert(sandlot.create("sp", {}))
    assert.equal(3, count("POST /v1/sprites") - before)
    fake:inject({ route = "GET /v1/sprites/" .. sb.id .. "/fs/list", status = 503, times = 1 })
    assert.same({}, assert(sb:ls(".")))
    fake:inject({ route = "DELETE /v1/sprites/", status = 503, times = 2 })
    assert(sb:destroy())
    assert.equal("terminated", sb:status())
  end))

  it("bounds a hung API call and a hung exec by their timeouts", h.task(function()
    local sb = assert(sandlot.create("sp-quick", {}))
    fake:inject({ route = "GET /v1/sprites/" .. sb.id, hang = 2, times = 10 })
    local st, err = sb:status()
    assert.is_nil(st)
    assert.equal("timeout", err.code)
    fake.faults = {}
    fake:inject({ route = "POST /v1/sprites/" .. sb.id .. "/exec", hang = 8 })
    local r = assert(sb:exec({ "echo", "never" }, { timeout = 0.3 }))
    assert.is_true(r.timed_out)
    assert.equal("", r.stdout)
    fake.faults = {}
    sandlot.sleep(2)                                  -- the hung handlers finish
    assert(sb:destroy())
  end))

  it("survives a dropped connection where a retry is safe, reports it where not",
     h.task(function()
    local sb = assert(sandlot.create("sp", {}))
    fake:inject({ route = "GET /v1/sprites/" .. sb.id, drop = true })
    assert.equal("running", sb:status())              -- GET: retried
    -- twice: libcurl itself sends a request again once when a reused connection drops it
    fake:inject({ route = "POST /v1/sprites/" .. sb.id .. "/exec", drop = true, times = 2 })
    local r, err = sb:exec({ "echo", "x" })
    assert.is_nil(r)
    assert.equal("unavailable", err.code)
    fake.faults = {}
    assert.equal("x\n", assert(sb:exec({ "echo", "x" })).stdout)
    assert(sb:destroy())
  end))

  it("reads HTTP exec frames by their chunks; refuses what is not a frame", h.task(function()
    local sb = assert(sandlot.create("sp", {}))
    local route = "POST /v1/sprites/" .. sb.id .. "/exec"
    -- a chunk boundary is a frame boundary: "\1" inside a payload is data
    fake:inject({ route = route, chunks = { "\1a\2b", "\2c\1", "\3\7" } })
    local r = assert(sb:exec({ "true" }))
    assert.same({ 7, "a\2b", "c\1" }, { r.exit_code, r.stdout, r.stderr })
    local bad = {
      { "\1x", "\9junk", "\3\0" },                   -- an unknown type: re-chunked on the way
      { "\1x", "\3\0\0" },                           -- an exit frame longer than one byte
      { "\1x" },                                     -- no exit frame
      { "\3\0", "\1late" },                          -- output after the exit
    }
    for i, chunks in ipairs(bad) do
      fake:inject({ route = route, chunks = chunks })
      local res, err = sb:exec({ "true" })
      assert.is_nil(res, "case " .. i)
      assert.equal("bad_response", err.code, "case " .. i)
    end
    fake:inject({ route = "GET /v1/sprites/" .. sb.id, body = "<html>oops</html>",
                  content_type = "text/html" })
    assert.equal("bad_response", select(2, sb:status()).code)
    assert(sb:destroy())
  end))

  it("opens spawn's WebSocket as api_url's scheme implies (https -> wss)", h.task(function()
    local ws = require("sandlot.ws")
    local real, seen = ws.connect, {}
    ws.connect = function(url, opts)
      seen[#seen + 1] = { url = url, auth = opts.headers.Authorization }
      return real(url, opts)
    end
    local ok, perr = pcall(function()
      local sb = assert(sandlot.create("sp", {}))
      local p <close> = assert(sb:spawn({ "echo", "hi" }))
      assert.same({ "stdout", "hi\n" }, { p:read(10) })
      assert.equal(0, assert(p:wait(10)).exit_code)
      assert.matches("^ws://127%.0%.0%.1:%d+/v1/sprites/" .. sb.id:gsub("%-", "%%-")
                     .. "/exec%?cmd=echo&cmd=hi&path=echo&dir=%%2Fhome%%2Fsprite&stdin=true$",
                     seen[1].url)
      assert.equal("Bearer " .. f.token, seen[1].auth)
      local m = sandlot.to_map(sb)
      m.provider = "sp-tls"
      local tls = assert(sandlot.from_map(m))
      local _, err = tls:spawn({ "true" })
      assert.truthy(err)
      assert.matches("^wss://127%.0%.0%.1:1/v1/sprites/", seen[#seen].url)
      assert(sb:destroy())
    end)
    ws.connect = real
    assert(ok, perr)
  end))

  it("takes native checkpoints and restores them in place, only there", h.task(function()
    local sb = assert(sandlot.create("sp", {}))
    assert.equal("native", sandlot.caps(sb).checkpoint)
    assert.equal("in_place", sandlot.caps(sb).restore)
    assert(sb:write_file("state.txt", "before"))
    local ck = assert(sb:checkpoint({ name = "first" }))
    assert.equal("native", ck.kind)
    assert.is_string(ck.native_id)
    assert.is_nil(ck.sha256)
    local body = json.decode(last("POST /v1/sprites/" .. sb.id .. "/checkpoint").body)
    assert.matches("^sandlot:%x+ first$", body.comment)
    assert(sb:write_file("state.txt", "after"))
    assert(sb:write_file("new.txt", "x"))
    assert(sandlot.checkpoint.restore(sb, ck.id))
    assert.equal("before", assert(sb:read_file("state.txt")))
    assert.equal("not_found", select(2, sb:read_file("new.txt")).code)
    -- the provider's own list, each restorable
    local list = assert(sandlot.checkpoint.native(sb))
    assert.equal(ck.native_id, list[1].native_id)
    assert(sb:write_file("state.txt", "again"))
    assert(sandlot.checkpoint.restore(sb, list[1]))
    assert.equal("before", assert(sb:read_file("state.txt")))
    -- the local record lists with the sandbox's checkpoints
    local mine = assert(sandlot.checkpoints(sb))
    assert.equal(ck.id, mine[1].id)
    -- not into another sandbox, nor as a new one's seed
    local other = assert(sandlot.create("sp", {}))
    local ok, err = sandlot.checkpoint.restore(other, ck.id)
    assert.is_nil(ok)
    assert.equal("not_supported", err.code)
    local before = #assert(sandlot.list({ provider = "sp" }))
    local seeded, serr = sandlot.create("sp", { from = ck.id })
    assert.is_nil(seeded)
    assert.equal("not_supported", serr.code)
    assert.matches("in place", serr.message, 1, true)
    assert.matches('kind = "portable"', serr.message, 1, true)
    assert.equal(before, #assert(sandlot.list({ provider = "sp" })))   -- refused before creating
    -- a portable one still can, on request
    local pk = assert(sb:checkpoint({ kind = "portable" }))
    assert.equal("portable", pk.kind)
    assert(sandlot.checkpoint.restore(other, pk.id))
    assert.equal("before", assert(other:read_file("state.txt")))
    -- a failed checkpoint is an error, with the service's words
    fake:inject({ route = "POST /v1/sprites/" .. sb.id .. "/checkpoint",
                  body = '{"type":"info","data":"x"}\n{"type":"error","error":"disk full"}\n',
                  content_type = "application/x-ndjson" })
    local none, cerr = sb:checkpoint()
    assert.is_nil(none)
    assert.matches("disk full", cerr.message, 1, true)
    assert(sb:destroy())
    assert(other:destroy())
  end))

  it("runs services through sb:extension (put, list, get, logs, stop, start, delete)",
     h.task(function()
    local sb = assert(sandlot.create("sp", {}))
    local ev = assert(sb:extension("service_put", "web", {
      cmd = "sh", args = { "-c", "echo svc-up; exec sleep 100" }, http_port = 8080 }))
    assert.equal("started", ev[#ev].type)
    local body = json.decode(last("PUT /v1/sprites/" .. sb.id .. "/services/web").body)
    assert.same({ cmd = "sh", args = { "-c", "echo svc-up; exec sleep 100" }, http_port = 8080 },
                body)
    local list = assert(sb:extension("service_list"))
    assert.same({ "web", "running", 8080 }, { list[1].name, list[1].status, list[1].http_port })
    local logs
    for _ = 1, 50 do
      logs = assert(sb:extension("service_logs", "web", { lines = 10 }))
      if #logs >= 2 then break end
      sandlot.sleep(0.1)
    end
    assert.equal("svc-up\n", logs[2] and logs[2].data)
    -- a second service on the URL's port is a conflict
    local r, err = sb:extension("service_put", "api", { cmd = "true", http_port = 9000 })
    assert.is_nil(r)
    assert.equal("already_exists", err.code)
    assert(sb:extension("service_stop", "web"))
    assert.equal("stopped", assert(sb:extension("service_get", "web")).status)
    assert.same({}, assert(sb:extension("service_stop", "web")))    -- stopped already
    assert(sb:extension("service_start", "web"))
    assert.equal("running", assert(sb:extension("service_get", "web")).status)
    assert.is_true(assert(sb:extension("service_delete", "web")))
    assert.is_true(assert(sb:extension("service_delete", "web")))   -- idempotent
    assert.equal("not_found", select(2, sb:extension("service_get", "web")).code)
    assert.equal("invalid_input", select(2, sb:extension("service_get", "../x")).code)
    assert.equal("not_supported", select(2, sb:extension("no_such_thing")).code)
    assert.has_error(function() sb:extension("service_put", "x", { cmd = "true", prot = 1 }) end)
    assert(sb:destroy())
  end))

  it("takes the token from SPRITES_API_TOKEN or SPRITE_TOKEN", h.task(function()
    local saved1, saved2 = os.getenv("SPRITES_API_TOKEN"), os.getenv("SPRITE_TOKEN")
    local ok, perr = pcall(function()
      sys.setenv("SPRITES_API_TOKEN", nil)
      sys.setenv("SPRITE_TOKEN", nil)
      local sb, err = sandlot.create("sp-env", {})
      assert.is_nil(sb)
      assert.equal("auth_failed", err.code)
      assert.matches("SPRITES_API_TOKEN", err.message, 1, true)
      sys.setenv("SPRITE_TOKEN", f.token)
      sb = assert(sandlot.create("sp-env", {}))
      assert(sb:destroy())
      sys.setenv("SPRITE_TOKEN", nil)
      sys.setenv("SPRITES_API_TOKEN", f.token)
      sb = assert(sandlot.create("sp-env", {}))
      assert(sb:destroy())
    end)
    sys.setenv("SPRITES_API_TOKEN", saved1)
    sys.setenv("SPRITE_TOKEN", saved2)
    assert(ok, perr)
  end))

  it("keeps the token out of errors, telemetry and handles", h.task(function()
    local events = {}
    sandlot.telemetry.attach("sprites-spec", { { "sandlot", "*", "*" } },
      function(ev, m, meta) events[#events + 1] = json.encode({ ev, m, meta }) end)
    local ok, perr = pcall(function()
      local sb = assert(sandlot.create("sp", {}))
      -- the plant: the service echoes the token back in its error messages
      fake:inject({ route = "GET /v1/sprites/" .. sb.id, status = 400,
                    message = "bad token " .. f.token })
      local _, err = sb:status()
      assert.truthy(err)
      assert.matches("[REDACTED]", err.message, 1, true)
      fake:inject({ route = "GET /v1/sprites/" .. sb.id .. "/fs/list", status = 400,
                    body = { error = "no: Bearer " .. f.token, code = "EINVAL" } })
      local _, err2 = sb:ls(".")
      assert.truthy(err2)
      fake:inject({ route = "POST /v1/sprites/" .. sb.id .. "/checkpoint",
                    body = '{"type":"error","error":"token ' .. f.token .. '"}\n' })
      local _, err3 = sb:checkpoint()
      assert.truthy(err3)
      local p <close> = assert(sb:spawn({ "sh", "-c", "echo up; exec sleep 100" }))
      assert.same({ "stdout", "up\n" }, { p:read(10) })
      assert(p:kill())
      p:wait(10)
      local text = tostring(err) .. tostring(err2) .. tostring(err3) ..
                   json.encode(sandlot.to_map(sb))
      for _, e in ipairs(events) do text = text .. e end
      assert.is_nil(text:find(f.token, 1, true), "the token leaked")
      assert(sb:destroy())
    end)
    sandlot.telemetry.detach("sprites-spec")
    assert(ok, perr)
    assert.is_true(#events > 4)
  end))

  it("the fake rejects what Sprites rejects", h.task(function()
    local http = sandlot.http
    local function call(o)
      o.retry, o.decode = false, false
      local res = assert(http.request(o))
      return res.status, res.body
    end
    local auth = { Authorization = "Bearer " .. f.token }
    assert.equal(401, call({ url = f.url .. "/v1/sprites", method = "GET" }))
    assert.equal(401, call({ url = f.url .. "/v1/sprites", method = "GET",
                             headers = { Authorization = "Bearer nope" } }))
    assert.equal(400, call({ url = f.url .. "/v1/sprites", method = "POST", headers = auth,
                             json = { labels = { "x" } } }))              -- no name
    assert.equal(400, call({ url = f.url .. "/v1/sprites", method = "POST", headers = auth,
                             json = { name = "Bad_Name" } }))
    assert.equal(400, call({ url = f.url .. "/v1/sprites", method = "POST", headers = auth,
                             json = { name = "ok-name", labels = { a = "b" } } }))
    assert.equal(404, call({ url = f.url .. "/v1/sprites/nosuch", headers = auth }))
    local sb = assert(sandlot.create("sp", {}))
    local base = f.url .. "/v1/sprites/" .. sb.id
    assert.equal(400, call({ url = f.url .. "/v1/sprites", method = "POST", headers = auth,
                             json = { name = sb.id } }))                  -- a duplicate name
    assert.equal(400, call({ url = base .. "/fs/read?path=/etc/hostname", headers = auth }))
    assert.equal(400, call({ url = base .. "/fs/list?workingDir=/", headers = auth }))
    assert.equal(400, call({ url = base .. "/exec", method = "POST", headers = auth, body = "" }))
    local p = assert(sb:spawn({ "true" }))
    assert.equal(0, assert(p:wait(10)).exit_code)
    p:close()
    local sid
    for id_ in pairs(fake.sprites[sb.id].sessions) do sid = id_ end
    assert.equal(410, call({ url = base .. "/exec/" .. sid .. "/kill?signal=TERM",
                             method = "POST", headers = auth }))
    assert.equal(404, call({ url = base .. "/exec/99999/kill", method = "POST", headers = auth }))
    assert.is_true(#fake.rejected >= 8)
    assert(sb:destroy())
  end))
end)
