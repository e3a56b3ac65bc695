-- spec/http_spec.lua: sandlot.http against a local server that misbehaves on purpose
-- (spec/support/http_server.c): failure modes first, then retries, streaming, bodies,
-- connection reuse and many requests from many tasks.
local sandlot = require("sandlot")
local http = require("sandlot.http")
local core = require("sandlot.core.http")
local telemetry = require("sandlot.telemetry")
local h = require("spec.helper")
local server = require("spec.support.http_server")

local srv, base

local function get(path, opts)
  local o = { url = base .. path }
  for k, v in pairs(opts or {}) do o[k] = v end
  return http.request(o)
end

-- Collects telemetry events for the duration of fn.
local function recording(fn)
  local events = {}
  telemetry.attach("http_spec", { { "sandlot", "*", "*" } }, function(ev, m, meta)
    events[#events + 1] = { event = table.concat(ev, "."), m = m, meta = meta }
  end)
  local ok, err = pcall(fn)
  telemetry.detach("http_spec")
  if not ok then error(err, 0) end
  return events
end

local function count(events, name)
  local n = 0
  for _, e in ipairs(events) do if e.event == name then n = n + 1 end end
  return n
end

local function dump(v, seen)
  seen = seen or {}
  if type(v) ~= "table" or seen[v] then return tostring(v) end
  seen[v] = true
  local parts = {}
  for k, x in pairs(v) do parts[#parts + 1] = tostring(k) .. "=" .. dump(x, seen) end
  return "{" .. table.concat(parts, ",") .. "}"
end

local function rss_kb()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

-- The server's checksum of a body: sum = sum * 31 + byte, wrapping at 64 bits.
local function checksum(s)
  local sum = 0
  for i = 1, #s do sum = sum * 31 + s:byte(i) end
  return tostring(sum)
end

describe("sandlot.http", function()
  setup(function()
    srv = server.start()
    base = srv.url
  end)

  teardown(function()
    if srv then srv.stop() end
    server.cleanup()
  end)

  after_each(function()
    collectgarbage()
    collectgarbage()
    assert.equal(0, http.stats().requests, "request handles left open")
  end)

  describe("failures", function()
    it("merges defaults and opts: opts win, headers merge one level down", function()
      local defaults = { base_url = base, timeout = 5, headers = { ["X-A"] = "1", ["X-B"] = "d" } }
      local res = assert(http.request(defaults, { path = "/echo", headers = { ["X-B"] = "o" } }))
      assert.matches("X%-A: 1\r?\n", res.json.headers)
      assert.matches("X%-B: o\r?\n", res.json.headers)
      assert.not_matches("X%-B: d", res.json.headers)
      assert.same({ ["X-A"] = "1", ["X-B"] = "d" }, defaults.headers)   -- left as it was
      res = assert(http.request(defaults, { path = "echo", timeout = 10 }))
      assert.equal("/echo", res.json.path)                         -- joined with one "/"
      assert.matches("X%-B: d\r?\n", res.json.headers)
      assert.equal(5, defaults.timeout)
      res = assert(http.request({ base_url = base .. "//", path = "/hello" }))
      assert.equal("hello 0", res.body)
      assert.has_error(function() http.request(defaults, "x") end)
    end)

    it("raises for an unknown option, a list entry or opts that are not a table", function()
      for _, case in ipairs({
        { { url = base .. "/hello", timout = 1 },
          "unknown option 'timout' %(did you mean 'timeout'" },
        { { url = base .. "/hello", "x" }, "unknown option '1'" },
        { { url = base .. "/hello", [true] = 1 }, "unknown option 'true'" },
      }) do
        local ok, err = pcall(http.request, case[1])
        assert.is_false(ok)
        assert.matches("http.request: " .. case[2], err)
      end
      local ok, err = pcall(http.request, "x")
      assert.is_false(ok)
      assert.matches("http.request: opts must be a table", err)
      for _, case in ipairs({
        { { ["Bad Name"] = "1" }, "http: invalid header name Bad Name" },
        { { [1] = "x" }, "http: invalid header name 1" },
        { { X = "a\r\nB: c" }, "http: header X contains CR, LF or NUL" },
        { { X = "a\0" }, "http: header X contains CR, LF or NUL" },
      }) do
        local hok, herr = pcall(http.request, { url = base .. "/echo", headers = case[1] })
        assert.is_false(hok)
        assert.matches(case[2], herr, 1, true)
      end
      local res = assert(http.request({ url = base .. "/echo", headers = {
        ["X-N"] = 42, ["X-Gone"] = false, ["user-agent"] = "mine/1" } }))
      assert.matches("X%-N: 42\r?\n", res.json.headers)
      assert.not_matches("X%-Gone", res.json.headers)
      assert.matches("user%-agent: mine/1\r?\n", res.json.headers)
      assert.not_matches("sandlot/", res.json.headers)
      assert.equal("hello 0", assert(http.request({ url = base .. "/hello", timeout = 5 })).body)
    end)

    it("reports a refused connection as unavailable with curl's reason", function()
      local res, err = http.request{ url = "http://127.0.0.1:1/x", retry = false }
      assert.is_nil(res)
      assert.equal("unavailable", err.code)
      assert.is_true(err.retryable)
      assert.matches("connect", err.reason:lower())
      assert.equal("GET", err.method)
    end)

    it("reports a missing unix socket as unavailable", function()
      local _, err = http.request{ unix_socket = "/nonexistent/sock", path = "/x", retry = false }
      assert.equal("unavailable", err.code)
    end)

    it("times out on slow headers", function()
      local _, err = get("/slow_headers?ms=3000", { timeout = 0.3, retry = false })
      assert.equal("timeout", err.code)
      assert.is_true(err.retryable)
    end)

    it("times out on a slow body", function()
      local _, err = get("/slow_body?chunks=20&ms=100", { timeout = 0.5, retry = false })
      assert.equal("timeout", err.code)
    end)

    it("reports a connection reset mid-body as unavailable", function()
      local _, err = get("/reset", { retry = false })
      assert.equal("unavailable", err.code)
    end)

    it("stops a redirect loop with bad_response", function()
      local _, err = get("/redirect_loop")
      assert.equal("bad_response", err.code)
      assert.matches("redirect", err.message:lower())
    end)

    it("follows a redirect", function()
      local res = assert(get("/redirect?to=/json"))
      assert.equal(200, res.status)
      assert.equal(1, res.redirects)
      assert.is_true(res.json.ok)
    end)

    for _, chunked in ipairs({ 0, 1 }) do
      it("refuses a body over max_body (chunked=" .. chunked .. ")", function()
        local _, err = get("/huge?bytes=3000000&chunked=" .. chunked, { max_body = 1000000 })
        assert.equal("bad_response", err.code)
        assert.matches("max_body", err.message)
      end)
    end

    it("reports malformed JSON with the status and a redacted excerpt", function()
      for _, code in ipairs({ 200, 500 }) do
        local res, err = get("/badjson?code=" .. code)
        assert.is_nil(res)
        assert.equal("bad_response", err.code)
        assert.equal(code, err.status)
        assert.matches(tostring(code), err.message)
        assert.matches("not json at all", err.message)
        assert.not_matches('"abc"', err.message)
        assert.matches("REDACTED", err.message)
      end
    end)

    it("raises on misuse", function()
      assert.has_error(function() http.request{ url = base, tiemout = 1 } end)
      assert.has_error(function() http.request{ url = base, headers = { X = "a\r\nB: c" } } end)
      assert.has_error(function() http.request{ url = base, timeout = -1 } end)
      assert.has_error(function() http.request{ path = "/x" } end)
      assert.has_error(function() http.request{ url = base, body = "x", json = {} } end)
      assert.has_error(function() http.request{ url = base, retry = { tries = 2 } } end)
    end)

    it("aborts the transfer when the waiting task is cancelled", function()
      local t = sandlot.spawn(function()
        return get("/slow_headers?ms=5000", { retry = false })
      end)
      sandlot.sleep(0.1)
      t:cancel()
      local res, err = t:join()
      assert.is_nil(res)
      assert.equal("cancelled", err.code)
      collectgarbage()
      assert.equal(0, http.stats().requests)
    end)

    it("aborts the transfer under sandlot.timeout", function()
      local res, err = sandlot.timeout(0.2, function()
        return get("/slow_body?chunks=50&ms=100", { retry = false })
      end)
      assert.is_nil(res)
      assert.equal("timeout", err.code)
    end)

    it("keeps secrets out of errors and telemetry", function()
      local err
      local events = recording(function()
        err = select(2, http.request{ url = "http://user:pw1234@127.0.0.1:1/x?token=tok5678&a=1",
                                      headers = { Authorization = "Bearer sekret9" },
                                      retry = false })
        assert(get("/echo?api_key=key4321", { headers = { Authorization = "Bearer sekret9" } }))
      end)
      local text = tostring(err) .. dump(err) .. dump(events)
      for _, secret in ipairs({ "pw1234", "tok5678", "sekret9", "key4321" }) do
        assert.not_matches(secret, text, 1, true)
      end
      assert.equal(2, count(events, "sandlot.http.request.start"))
    end)
  end)

  describe("retries", function()
    it("retries 503 for GET, with backoff, visible in telemetry", function()
      local res
      local events = recording(function()
        res = assert(get("/flaky?key=g1&fail=2", { retry = { base = 0.01 } }))
      end)
      assert.equal(200, res.status)
      assert.equal(3, res.attempts)
      assert.equal(2, count(events, "sandlot.http.retry"))
    end)

    it("returns the last response when the attempts run out", function()
      local res = assert(get("/flaky?key=g2&fail=5", { retry = { attempts = 2, base = 0.01 } }))
      assert.equal(503, res.status)
      assert.equal(2, res.attempts)
    end)

    it("does not retry a POST unless it is marked safe", function()
      local res = assert(get("/flaky?key=p1&fail=1", { method = "POST", retry = { base = 0.01 } }))
      assert.equal(503, res.status)
      assert.equal(1, res.attempts)
      res = assert(get("/flaky?key=p2&fail=1", { method = "POST",
                                                  retry = { base = 0.01, safe = true } }))
      assert.equal(200, res.status)
      assert.equal(2, res.attempts)
    end)

    it("honours Retry-After on 429", function()
      local res
      local events = recording(function()
        res = assert(get("/ratelimit?key=r1&after=1"))
      end)
      assert.equal(200, res.status)
      assert.equal(2, res.attempts)
      for _, e in ipairs(events) do
        if e.event == "sandlot.http.retry" then assert.equal(1, e.m.delay) end
      end
    end)

    it("does not wait for a Retry-After beyond max_after", function()
      local res = assert(get("/ratelimit?key=r2&after=120", { retry = { max_after = 5 } }))
      assert.equal(429, res.status)
      assert.equal(1, res.attempts)
    end)

    it("retries a dropped connection for GET", function()
      -- a fresh connection: curl itself retries a request whose reused connection died
      local res = assert(get("/drop?key=d1&fail=1", { retry = { base = 0.01 },
                                                      fresh_connect = true }))
      assert.equal(200, res.status)
      assert.equal(2, res.attempts)
    end)
  end)

  describe("responses", function()
    it("returns a non-2xx status as a response", function()
      local res = assert(get("/status?code=404"))
      assert.equal(404, res.status)
      assert.equal("status 404", res.json.message)
      local err = http.status_error(res, { op = "inspect" })
      assert.equal("not_found", err.code)
      assert.equal("inspect", err.op)
    end)

    it("maps statuses onto error codes", function()
      local cases = { [400] = "invalid_input", [401] = "auth_failed", [403] = "permission_denied",
                      [404] = "not_found", [409] = "already_exists", [429] = "rate_limited",
                      [500] = "unavailable", [503] = "unavailable", [504] = "timeout",
                      [418] = "bad_response" }
      for status, code in pairs(cases) do
        local err = http.status_error({ status = status, body = "x" })
        assert.equal(code, err.code, "status " .. status)
      end
    end)

    it("decodes JSON and parses headers", function()
      local res = assert(get("/json"))
      assert.same({ ok = true, n = { 1, 2, 3 }, s = "x" }, res.json)
      assert.equal(math.type(res.json.n[1]), "integer")
      assert.equal("application/json", res.headers["content-type"])
      assert.equal("1.1", res.http_version)
    end)

    it("has every field of a response, whether read one by one or iterated", function()
      local keys = { "attempts", "body", "body_bytes", "connects", "duration", "effective_url",
                     "headers", "http_version", "redirects", "status" }
      local res = assert(get("/hello"))
      local seen = {}
      for k in pairs(res) do seen[#seen + 1] = k end       -- pairs first: nothing read yet
      table.sort(seen)
      assert.same(keys, seen)
      assert.is_nil(getmetatable(res))                     -- whole now: plain reads after
      local one = assert(get("/hello"))
      assert.equal(7, one.body_bytes)                      -- "hello 0": one lazy field, all
      assert.equal(base .. "/hello", one.effective_url)
      assert.equal("1.1", one.http_version)
      assert.equal(0, one.redirects)
      assert.equal("number", type(one.duration))
      assert.equal("text/plain", one.headers["content-type"])
      assert.is_nil(one.json)
      local mine = assert(get("/hello"))
      mine.headers = "mine"                                -- a caller's field stays theirs
      assert.equal(0, mine.redirects)
      assert.equal("mine", mine.headers)
    end)

    it("sends JSON, query and headers", function()
      local res = assert(get("/echo", { method = "POST", json = { a = 1 },
                                        query = { b = "x y", c = { 1, 2 } },
                                        headers = { ["X-Thing"] = "v" } }))
      assert.equal("b=x%20y&c=1&c=2", res.json.query)
      assert.matches("Content%-Type: application/json", res.json.headers)
      assert.matches("X%-Thing: v", res.json.headers)
      assert.equal(7, res.json.bytes)
    end)

    it("reads a chunked response", function()
      local res = assert(get("/chunked?n=50"))
      local want = {}
      for i = 0, 49 do want[#want + 1] = "part " .. i .. "\n" end
      assert.equal(table.concat(want), res.body)
    end)

    it("talks over a unix socket", function()
      local res = assert(http.request{ unix_socket = srv.socket, path = "/hello?i=9" })
      assert.equal("hello 9", res.body)
    end)

    it("streams a huge body to on_chunk without keeping it", function()
      local n, chunks, ok = 0, 0, true
      local res = assert(get("/huge?bytes=100000000&chunked=1", {
        on_chunk = function(c)
          local first = string.char(97 + n % 26)
          if c:sub(1, 1) ~= first then ok = false end
          n = n + #c
          chunks = chunks + 1
        end,
      }))
      assert.equal(200, res.status)
      assert.equal(100000000, n)
      assert.is_true(ok)
      assert.is_nil(res.body)
    end)

    it("keeps the body of a non-2xx response even when streaming", function()
      local called = false
      local res = assert(get("/status?code=500", { on_chunk = function() called = true end,
                                                   retry = false }))
      assert.equal(500, res.status)
      assert.equal("status 500", res.json.message)
      assert.is_false(called)
    end)

    it("pauses the download while nobody reads (backpressure)", function()
      local req <close> = assert(core.request{ url = base .. "/huge?bytes=200000000",
                                               stream = true, timeout = 30 })
      assert(req:headers())
      assert.is_truthy(h.eventually(function() return req:info().paused_recv end, 10))
      sandlot.sleep(0.2)
      assert.is_true(req:info().queued < 8 * 1024 * 1024)
      local total = 0
      while true do
        local c = req:read()
        if not c then break end
        total = total + #c
      end
      assert.equal(200000000, total)
    end)
  end)

  describe("request bodies", function()
    it("sends a string body intact", function()
      local body = {}
      for i = 0, 255 do body[#body + 1] = string.char(i) end
      body = table.concat(body):rep(1000)
      local res = assert(get("/echo", { method = "PUT", body = body }))
      assert.equal(#body, res.json.bytes)
      assert.equal(checksum(body), res.json.sum)
    end)

    it("sends a file", function()
      local dir = h.tmpdir()
      local path = dir .. "/body"
      local data = ("0123456789abcdef"):rep(65536)
      local f = assert(io.open(path, "wb"))
      f:write(data)
      f:close()
      local res = assert(get("/echo", { method = "PUT", body_file = path }))
      assert.equal(#data, res.json.bytes)
      assert.equal(checksum(data), res.json.sum)
      local _, err = get("/echo", { method = "PUT", body_file = dir .. "/missing" })
      assert.equal("not_found", err.code)
      h.rmtree(dir)
    end)

    it("sends a producer's chunks (chunked and with a known size; \"\" skipped)", function()
      for _, size in ipairs({ false, 3 * 70000 }) do
        local i = 0
        local res = assert(get("/echo", { method = "POST", body_size = size or nil,
          body = function()
            i = i + 1
            if i > 4 then return nil end
            if i == 2 then return "" end       -- skipped, not the end
            sandlot.sleep(0.01)                -- a producer may yield
            return ("x"):rep(70000)
          end }))
        assert.equal(210000, res.json.bytes)
        assert.equal(size and "Content-Length" or "chunked",
                     res.json.headers:match("(Content%-Length)") or
                     res.json.headers:match("(chunked)"))
      end
    end)

    it("raises the producer's error", function()
      assert.has_error(function()
        get("/echo", { method = "POST", body = function() error("boom") end })
      end, "boom")
    end)

    it("uploads 1 GB from a producer without holding it in memory #slow", function()
      local chunk = ("z"):rep(1024 * 1024)
      local before, peak, i = rss_kb(), 0, 0
      local res = assert(get("/echo", { method = "PUT", timeout = 300, body = function()
        i = i + 1
        if i > 1024 then return nil end
        if i % 64 == 0 then peak = math.max(peak, rss_kb()) end
        return chunk
      end }))
      assert.equal(1024 * 1024 * 1024, res.json.bytes)
      assert.is_true(peak - before < 200 * 1024, "RSS grew by " .. (peak - before) .. " kB")
    end)
  end)

  describe("concurrency", function()
    it("reuses one keep-alive connection for sequential requests", function()
      local before = assert(get("/stats")).json.connections
      for i = 1, 50 do
        local res = assert(get("/hello?i=" .. i))
        assert.equal("hello " .. i, res.body)
      end
      local after = assert(get("/stats")).json.connections
      assert.equal(before, after)
    end)

    it("completes 1,000 requests spread over 64 tasks with correct bodies", function()
      local list = {}
      for i = 1, 1000 do list[i] = i end
      local bodies, errs = sandlot.map(list, function(i)
        local res = assert(get("/hello?i=" .. i, { timeout = 30 }))
        assert(res.status == 200, res.status)
        return res.body
      end, { limit = 64 })
      assert.is_nil(errs)
      for i = 1, 1000 do assert.equal("hello " .. i, bodies[i]) end
    end)

    it("runs slow and fast requests side by side", function()
      local slow = sandlot.spawn(function() return get("/slow_headers?ms=500") end)
      for i = 1, 20 do assert.equal("hello " .. i, assert(get("/hello?i=" .. i)).body) end
      assert.equal("hello 1", assert(get("/hello?i=1")).body)
      assert.is_false(slow:done())
      assert.equal("late", assert(slow:join()).body)
    end)
  end)

  describe("reused easy handles", function()
    -- core/http.c keeps finished easy handles (curl_easy_reset) for the next request: nothing
    -- of a failed, aborted or unusual request may leak into the one after it.
    local function clean_echo(what)
      local res = assert(get("/echo"), what)
      assert.equal(200, res.status, what)
      assert.equal("GET", res.json.method, what)
      assert.equal(0, res.json.bytes, what)
      assert.not_matches("X%-Stale", res.json.headers, 1, what)
      assert.not_matches("Authorization", res.json.headers, 1, what)
      assert.not_matches("Content%-Type", res.json.headers, 1, what)
      assert.matches("User%-Agent: sandlot/", res.json.headers, 1, what)
      assert.matches("Accept%-Encoding: ", res.json.headers, 1, what)
    end

    it("hands a pooled handle to the next request", function()
      assert(get("/hello"))
      local pooled = http.stats().pooled
      assert.is_true(pooled >= 1)
      local req <close> = assert(core.request{ url = base .. "/hello" })
      assert.equal(pooled - 1, http.stats().pooled)
      assert.equal("hello 0", assert(req:wait()).body)
    end)

    it("carries no headers, body, method, auth or timeout over from a failed request", function()
      local _, err = http.request{
        url = base:gsub("^http://", "http://user:pw@") .. "/slow_headers?ms=1500",
        method = "PATCH", body = ("b"):rep(5000), headers = { ["X-Stale"] = "1" },
        timeout = 0.2, retry = false }
      assert.equal("timeout", err.code)
      clean_echo("after a timed-out PATCH with auth")
      -- a leftover 0.2 s timeout would fail this one
      assert.equal("late", assert(get("/slow_headers?ms=500", { retry = false })).body)
    end)

    it("carries nothing over from an aborted request", function()
      local t = sandlot.spawn(function()
        return get("/slow_body?chunks=50&ms=50", { method = "PUT", json = { a = 1 },
                                                   headers = { ["X-Stale"] = "1" } })
      end)
      sandlot.sleep(0.1)
      t:cancel()
      assert.equal("cancelled", select(2, t:join()).code)
      collectgarbage()
      clean_echo("after a cancelled PUT")
      assert.has_error(function()
        get("/echo", { method = "POST", headers = { ["X-Stale"] = "1" },
                       body = function() error("boom") end })
      end, "boom")
      collectgarbage()
      clean_echo("after a failed upload")
    end)

    it("carries over no HEAD, redirect, max_body or connection settings", function()
      local res = assert(get("/hello?i=3", { method = "HEAD" }))
      assert.equal("", res.body)
      assert.equal("hello 4", assert(get("/hello?i=4")).body)
      res = assert(get("/redirect?to=/hello", { follow = false }))
      assert.equal(302, res.status)
      res = assert(get("/redirect?to=/hello"))
      assert.equal(200, res.status)
      assert.equal("hello 0", res.body)
      local _, err = get("/huge?bytes=100000", { max_body = 1000 })
      assert.equal("bad_response", err.code)
      assert.equal(100000, #assert(get("/huge?bytes=100000")).body)
      assert.equal("hello 5", assert(http.request{ unix_socket = srv.socket,
                                                   path = "/hello?i=5" }).body)
      local before = assert(get("/stats")).json.connections
      assert(get("/hello", { fresh_connect = true }))
      local mid = assert(get("/stats")).json.connections
      assert.equal(before + 1, mid)
      assert(get("/hello"))
      assert.equal(mid, assert(get("/stats")).json.connections)
      clean_echo("after HEAD, redirects, max_body, unix socket and fresh_connect")
    end)

    -- A pooled handle keeps the options of its shape (core/http_fetch.c): what curl changes
    -- while it follows a redirect must not stay with the handle.
    it("keeps a kept handle's POST after a redirect turned one of its POSTs into a GET", function()
      for i = 1, 3 do
        local res = assert(get("/redirect?to=/echo", { method = "POST", body = "x" }))
        assert.equal("GET", res.json.method, "round " .. i)
        res = assert(get("/echo", { method = "POST", body = "abc" }))
        assert.equal("POST", res.json.method, "round " .. i)
        assert.equal(3, res.json.bytes, "round " .. i)
      end
    end)

    it("sends each request's own URL, body and header values on a kept handle", function()
      for i = 1, 5 do
        local res = assert(get("/echo?i=" .. i, { method = "PUT", body = ("b"):rep(i),
                                                   headers = { ["X-N"] = tostring(i) } }))
        assert.equal("PUT", res.json.method)
        assert.equal(i, res.json.bytes)
        assert.matches("X%-N: " .. i .. "\r?\n", res.json.headers)
        assert.equal("i=" .. i, res.json.query)
      end
    end)
  end)

  describe("sockets", function()
    -- A connection's socket keeps its poll while the connection idles in curl's cache
    -- (core/http_multi.c); its close comes through curl's close-socket callback.
    it("answers on new and kept connections alike while sockets come and go", function()
      for i = 1, 40 do
        local res = assert(get("/hello?i=" .. i, { fresh_connect = i % 3 == 0 }))
        assert.equal("hello " .. i, res.body)
      end
      assert.equal(0, http.stats().sockets, "sockets still watched")
    end)

    it("notices a kept connection that the server closed while it idled", function()
      local srv2 <close> = assert(http.serve({ idle_timeout = 0.1, handler = function()
        return { status = 200, body = "ok" }
      end }))
      assert.equal("ok", assert(http.request({ url = srv2.url .. "/a" })).body)
      assert.equal(1, srv2:stats().connections)
      assert.is_truthy(h.eventually(function() return srv2:stats().connections == 0 end, 5))
      sandlot.sleep(0.05)                  -- the closed socket's event comes to the loop
      assert.equal("ok", assert(http.request({ url = srv2.url .. "/b", retry = false })).body)
      assert.equal(0, http.stats().sockets)
    end)
  end)

  describe("parse_headers", function()
    it("lowercases names, trims values, joins repeats and skips other lines", function()
      local hd = http.parse_headers("HTTP/1.1 200 OK\r\nContent-Type:  text/plain \t\r\n" ..
        "X-A: 1\r\nx-a: 2\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\n folded: no\r\n" ..
        "Bad Name: no\r\n: no\r\nEmpty:\r\n\r\n")
      assert.same({ ["content-type"] = "text/plain", ["x-a"] = "1, 2",
                    ["set-cookie"] = "a=1\nb=2", empty = "" }, hd)
      assert.same({}, http.parse_headers(""))
      assert.has_error(function() http.parse_headers(nil) end)
    end)
  end)

  describe("upgrade (raw stream)", function()
    -- Reads until `want` bytes arrived (or the end); returns what came and the last error.
    local function read_n(s, want)
      local got = {}
      local n = 0
      while n < want do
        local d, err = s:read()
        if not d then return table.concat(got), err end
        got[#got + 1] = d
        n = n + #d
      end
      return table.concat(got)
    end

    local function read_all(s)
      local got = {}
      while true do
        local d, err = s:read()
        if not d then return table.concat(got), err end
        got[#got + 1] = d
      end
    end

    local function echo_round(s, body_len)
      local greet = ("hello upgrade=tcp body=%d\n"):format(body_len)
      assert.equal(greet, read_n(s, #greet))
      local data = "ping\0pong\255" .. string.rep("x", 100000)
      assert.is_true(s:write(data))
      assert.equal(data, read_n(s, #data))
      assert.is_true(s:shutdown())
      assert.is_true(s:shutdown())                     -- idempotent
      local rest, err = read_all(s)
      assert.is_nil(err)
      assert.equal("bye\n", rest)
      assert.is_nil(s:read())                          -- the end stays the end
    end

    it("switches to a raw stream on 101 and carries bytes both ways (TCP)", function()
      local json = { Detach = false, Tty = false }
      local s <close> = assert(http.upgrade{ url = base .. "/upgrade", json = json })
      local head = s:head()
      assert.equal(101, head.status)
      assert.equal("1.1", head.http_version)
      assert.matches("Upgrade: tcp", head.headers_raw, 1, true)
      echo_round(s, #http.encode_json(json))
    end)

    it("works over a unix socket, with a body and the caller's protocol", function()
      local s <close> = assert(http.upgrade{ unix_socket = srv.socket, path = "/upgrade",
                                             body = "abc", upgrade = "h2c-test" })
      local greet = "hello upgrade=h2c-test body=3\n"
      assert.equal(greet, read_n(s, #greet))
      assert(s:write("x"))
      assert.equal("x", read_n(s, 1))
    end)

    it("accepts Docker's legacy 200 raw-stream answer and skips an interim 100", function()
      for _, path in ipairs({ "/upgrade_legacy", "/upgrade_interim" }) do
        local s <close> = assert(http.upgrade{ unix_socket = srv.socket, path = path })
        echo_round(s, 0)
      end
    end)

    it("reads at most max bytes per read", function()
      local s <close> = assert(http.upgrade{ unix_socket = srv.socket, path = "/upgrade" })
      local first = assert(s:read(5))
      assert.equal("hello", first)
      assert.equal(" ", assert(s:read(1)))
    end)

    it("refuses an answer that does not switch protocols, with its status", function()
      local cases = {
        { "/status?code=404", 404, "status 404" },
        { "/hello?i=1", 200, "hello 1" },
        { "/status?code=500", 500, "status 500" },
      }
      for _, c in ipairs(cases) do
        local s, err = http.upgrade{ url = base .. c[1] }
        assert.is_nil(s)
        assert.equal("bad_response", err.code)
        assert.equal(c[2], err.status)
        assert.matches(c[3], err.body, 1, true)
        assert.equal("POST", err.method)
      end
      local _, err = http.upgrade{ url = base .. "/badjson?code=403" }   -- echoes a "token"
      assert.equal(403, err.status)
      assert.matches('"token"', err.body, 1, true)
      assert.is_nil(err.body:find("abc", 1, true))
    end)

    it("reports a truncated head, a huge head and a close within the head", function()
      local _, err = http.upgrade{ unix_socket = srv.socket, path = "/upgrade_truncated" }
      assert.equal("bad_response", err.code)
      assert.matches("closed the connection within the response head", err.message, 1, true)
      for _, max in ipairs({ 4096, false }) do
        local _, herr = http.upgrade{ unix_socket = srv.socket, path = "/upgrade_huge",
                                      max_head = max or nil }
        assert.equal("bad_response", herr.code)
        assert.matches("too large", herr.message, 1, true)
      end
    end)

    it("hands over what came before the server closed mid-stream, then the end", function()
      local s <close> = assert(http.upgrade{ unix_socket = srv.socket,
                                             path = "/upgrade_midclose" })
      local data, err = read_all(s)
      assert.is_nil(err)
      assert.equal("part", data)
      assert.is_true(s:info().eof)
    end)

    it("times out on a server that never answers", function()
      local s, err = http.upgrade{ unix_socket = srv.socket, path = "/upgrade_silent",
                                   timeout = 0.3 }
      assert.is_nil(s)
      assert.equal("timeout", err.code)
      assert.matches("no response head", err.message, 1, true)
    end)

    it("reports a refused connection and a missing socket as unavailable", function()
      local _, err = http.upgrade{ url = "http://127.0.0.1:1/upgrade" }
      assert.equal("unavailable", err.code)
      _, err = http.upgrade{ unix_socket = "/nonexistent/sock", path = "/upgrade" }
      assert.equal("unavailable", err.code)
    end)

    it("bounds each read with io_timeout and stays usable after one", function()
      local s <close> = assert(http.upgrade{ unix_socket = srv.socket, path = "/upgrade",
                                             io_timeout = 0.2 })
      read_n(s, #"hello upgrade=tcp body=0\n")
      local d, err = s:read()
      assert.is_nil(d)
      assert.equal("timeout", err.code)
      assert(s:write("again"))
      assert.equal("again", read_n(s, 5))
    end)

    it("stops reading at the high water mark and resumes as the reader drains", function()
      local total = 24 * 1024 * 1024
      local s <close> = assert(http.upgrade{ unix_socket = srv.socket,
                                             path = "/upgrade_flood?bytes=" .. total })
      assert.is_true(h.eventually(function() return s:info().paused end))
      local high = 4 * 1024 * 1024
      assert.is_true(s:info().queued >= high)
      assert.is_true(s:info().queued < high + 128 * 1024)
      local n, bad = 0, nil
      while true do
        local d = s:read()
        if not d then break end
        if not bad then
          local want = string.char(97 + n % 26)
          if d:sub(1, 1) ~= want then bad = n end
        end
        n = n + #d
        assert.is_true(s:info().queued < high + 128 * 1024)
      end
      assert.is_nil(bad)
      assert.equal(total, n)
    end)

    it("wakes a reader parked on a stream that another task closes", h.task(function()
      local s = assert(http.upgrade{ unix_socket = srv.socket, path = "/upgrade" })
      read_n(s, #"hello upgrade=tcp body=0\n")
      local reader = sandlot.spawn(function() return s:read() end)
      sandlot.sleep(0.05)
      s:close()
      local d, err = reader:join()
      assert.is_nil(d)
      assert.equal("cancelled", err.code)
      assert.has_error(function() s:read() end, "attempt to use a closed sandlot.http.stream")
      s:close()                                        -- idempotent
    end))

    it("gives back its descriptors once closed or cancelled", function()
      local before = h.fd_count()
      for _ = 1, 5 do
        local s = assert(http.upgrade{ unix_socket = srv.socket, path = "/upgrade" })
        s:close()
      end
      local r = sandlot.timeout(0.2, function()
        return http.upgrade{ unix_socket = srv.socket, path = "/upgrade_silent" }
      end)
      assert.is_nil(r)
      collectgarbage()
      assert.is_true(h.eventually(function() return h.fd_count() <= before end))
    end)

    it("raises on misuse", function()
      local cases = {
        { { url = base .. "/upgrade", bogus = 1 }, "unknown option" },
        { { path = "/upgrade" }, "needs opts.base_url or unix_socket" },
        { { url = base .. "/upgrade", headers = { X = "a\r\nB: c" } }, "CR, LF or NUL" },
        { { url = base .. "/up grade" }, "space or control" },
        { { url = base .. "/upgrade", method = "get me" }, "invalid method" },
        { { url = base .. "/upgrade", timeout = -1 }, "must be a number > 0" },
        { { url = "ftp://x/y" }, "https:// URL" },
        { { url = base .. "/upgrade", insecure = "yes" }, "insecure must be a boolean" },
      }
      for _, c in ipairs(cases) do
        local ok, err = pcall(http.upgrade, c[1])
        assert.is_false(ok)
        assert.matches(c[2], tostring(err), 1, true)
      end
      local s <close> = assert(http.upgrade{ unix_socket = srv.socket, path = "/upgrade" })
      s:shutdown()
      assert.has_error(function() s:write("x") end,
                       "sandlot.http.stream: write() after shutdown()")
    end)

    it("https to a plain-http server fails the TLS handshake (wss_spec has the rest)", function()
      local s, err = http.upgrade{ url = base:gsub("^http:", "https:") .. "/upgrade",
                                   timeout = 5 }
      assert.is_nil(s)                     -- this server hangs up on the ClientHello
      assert.equal("unavailable", err.code, tostring(err))
      assert.matches("TLS handshake", err.message)
    end)
  end)

  describe("parse_response_head", function()
    local ok101 = "HTTP/1.1 101 UPGRADED\r\nUpgrade: tcp\r\n\r\nrest"
    local cases = {
      { "a 101 with the stream after it", ok101, { 101, "UPGRADED", "Upgrade: tcp\r\n", 39 } },
      { "bare LF line ends", "HTTP/1.0 200 OK\nA: b\n\n", { 200, "OK", "A: b\n", 22 } },
      { "no reason phrase", "HTTP/1.1 204\r\n\r\n", { 204, "", "", 16 } },
      { "an empty field value", "HTTP/1.1 200 X\r\nE:\r\n\r\n", { 200, "X", "E:\r\n", 22 } },
    }
    for _, c in ipairs(cases) do
      it("parses " .. c[1], function()
        local r = http.parse_response_head(c[2])
        assert.same(c[3], { r.status, r.reason, r.headers_raw, r.length })
      end)
    end
    local more = { { "nothing", "" }, { "a partial status line", "HTTP/1.1" },
                   { "the status line", "HTTP/1.1 101 UPGRADED\r\n" },
                   { "the last CR", "HTTP/1.1 101 X\r\nA: b\r\n\r" } }
    for _, m in ipairs(more) do
      it("asks for more after " .. m[1], function()
        assert.is_nil(http.parse_response_head(m[2]))
      end)
    end
    local bad = {
      { "not HTTP", "SSH-2.0-OpenSSH\r\n", "status line" },
      { "early garbage", "GARBAGE", "status line" },
      { "HTTP/2", "HTTP/2 200\r\n\r\n", "status line" },
      { "a two-digit status", "HTTP/1.1 20 OK\r\n\r\n", "three digits" },
      { "a status out of range", "HTTP/1.1 999 X\r\n\r\n", "three digits" },
      { "a folded line", "HTTP/1.1 200 X\r\nA: b\r\n c\r\n\r\n", "malformed header" },
      { "a name with a space", "HTTP/1.1 200 X\r\nBad Name: x\r\n\r\n", "malformed header" },
      { "no colon", "HTTP/1.1 200 X\r\nnocolon\r\n\r\n", "malformed header" },
      { "a NUL byte", "HTTP/1.1 200 X\r\nA: \0\r\n\r\n", "NUL" },
      { "a bare CR", "HTTP/1.1 200 X\rA: b\r\n\r\n", "bare CR" },
      { "a control byte in a value", "HTTP/1.1 200 X\r\nA: \1\r\n\r\n", "malformed header" },
      { "no end within max", "HTTP/1.1 200 X\r\n" .. string.rep("A: b\r\n", 100), "too large",
        64 },
    }
    for _, c in ipairs(bad) do
      it("rejects " .. c[1], function()
        local r, why = http.parse_response_head(c[2], c[4])
        assert.is_false(r)
        assert.matches(c[3], why, 1, true)
      end)
    end

    it("never reads past the bytes it is given", function()
      math.randomseed(12)
      for _ = 1, 2000 do
        local n = math.random(0, 60)
        local t = {}
        for i = 1, n do t[i] = string.char(math.random(0, 255)) end
        local s = (math.random() < 0.5 and "HTTP/1.1 1" or "") .. table.concat(t)
        local r = http.parse_response_head(s, 64)
        assert.is_true(r == nil or r == false or r.length <= #s)
      end
      local full = ok101
      for i = 0, #full - 5 do                          -- every prefix of a good head
        local r = http.parse_response_head(full:sub(1, i))
        assert.is_nil(r, i)
      end
    end)
  end)

  describe("outside any task (stock lua5.4)", function()
    it("waits by driving the loop itself", function()
      local sys = require("sandlot.core.sys")
      local root = assert(sys.realpath("."))
      local build = assert(sys.realpath(h.BIN:match("^(.*)/[^/]*$") or "."))
      local preload = false                    -- a sanitizer build needs its runtimes first
      local san = os.getenv("SANITIZE")
      if (san ~= nil and san ~= "") or build:match("/build%-san$") then
        local libs = {}
        for _, lib in ipairs({ "libasan.so", "libubsan.so" }) do
          local r = assert(sandlot.proc.run({ "cc", "-print-file-name=" .. lib }))
          libs[#libs + 1] = (r.stdout:gsub("%s+$", ""))
        end
        preload = table.concat(libs, " ")
      end
      local r = assert(sandlot.proc.run({ "/usr/bin/lua5.4", "-" }, {
        stdin = ([[
          local http = require("sandlot.http")
          local res = assert(http.request{ url = %q })
          local _, err = http.request{ url = "http://127.0.0.1:1/", retry = false }
          io.write(res.body, " ", err.code)
        ]]):format(base .. "/hello?i=42"),
        timeout = 60,
        env = { LUA_CPATH = build .. "/?.so;;",
                LUA_PATH = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;;",
                LUA_PATH_5_4 = false, LUA_CPATH_5_4 = false, LUA_INIT = false,
                LD_PRELOAD = preload },
      }))
      assert.equal("", r.stderr)
      assert.equal("hello 42 unavailable", r.stdout)
    end)
  end)
end)

describe("sandlot.http.upgrade against Docker's hijacked exec stream #docker", function()
  local docker = require("spec.support.docker")
  local env, why, container

  local function api(o)
    o.unix_socket = env.socket
    return assert(http.request(o))
  end

  lazy_setup(function()
    env, why = docker.start()
    if not env then return end
    local c = api{ method = "POST", path = "/containers/create",
                   json = { Image = env.image, Cmd = { "sleep", "120" },
                            Labels = { sandlot = "1" } } }
    assert(c.status == 201, c.body)
    container = c.json.Id
    assert(api{ method = "POST", path = "/containers/" .. container .. "/start" }.status == 204)
  end)

  lazy_teardown(function()
    if env and container then
      api{ method = "DELETE", path = "/containers/" .. container, query = { force = 1 } }
    end
    docker.stop(env)
  end)

  it("carries stdin in and framed output out; shutdown() closes the command's stdin", function()
    if not env then return pending(docker.unavailable(why)) end
    local e = api{ method = "POST", path = "/containers/" .. container .. "/exec",
                   json = { AttachStdin = true, AttachStdout = true, AttachStderr = true,
                            Cmd = { "sh", "-c", "cat; echo done >&2; exit 3" } } }
    assert.equal(201, e.status)
    local s <close> = assert(http.upgrade{ unix_socket = env.socket,
                                           path = "/exec/" .. e.json.Id .. "/start",
                                           json = { Detach = false, Tty = false } })
    assert.equal(101, s:head().status)
    assert(s:write("hello\0world\n"))
    assert(s:shutdown())
    local got = {}
    while true do
      local d, err = s:read()
      assert.is_nil(err)
      if not d then break end
      got[#got + 1] = d
    end
    -- stdcopy frames: stream byte, three zero bytes, a big-endian length, the payload. The
    -- daemon copies stdout and stderr apart, so the two frames may come in either order.
    local all = table.concat(got)
    local out_frame = "\1\0\0\0\0\0\0\12hello\0world\n"
    local err_frame = "\2\0\0\0\0\0\0\5done\n"
    assert.is_true(all == out_frame .. err_frame or all == err_frame .. out_frame,
                   ("%q"):format(all))
    local info = api{ path = "/exec/" .. e.json.Id .. "/json" }.json
    assert.equal(3, info.ExitCode)
  end)

  it("reports Docker's refusal with its status and message", function()
    if not env then return pending(docker.unavailable(why)) end
    local s, err = http.upgrade{ unix_socket = env.socket, path = "/exec/nope/start",
                                 json = { Detach = false, Tty = false } }
    assert.is_nil(s)
    assert.equal("bad_response", err.code)
    assert.equal(404, err.status)
    assert.matches("No such exec instance", err.body, 1, true)
  end)
end)
