-- spec/lib/http_serve_spec.lua: sandlot.http.serve (core/http_serve.c, lua/sandlot/_http_serve.lua)
-- driven by real clients: sandlot.http.request in the same process and curl(1) as a child
-- (run through sandlot.proc.run, so the loop keeps serving while curl waits).
local sandlot = require("sandlot")
local http = require("sandlot.http")
local core = require("sandlot.core.http")
local h = require("spec.helper")

local function curl(args, opts)
  local argv = { "curl", "-sS", "--max-time", "20" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return assert(sandlot.proc.run(argv, opts or { timeout = 30 }))
end

-- sends raw bytes on a fresh connection; returns the refusal's status (the server's answer)
local function raw(srv, bytes)
  local s, err = core.upgrade({ request = bytes, host = "127.0.0.1", port = srv.port,
                                timeout = 10 })
  if s then s:close() return nil, "switched protocols" end
  return err.status, err
end

local function echo(req)
  return { status = 200, headers = { ["Content-Type"] = "text/plain", ["X-Method"] = req.method },
           body = table.concat({ req.method, req.path, req.query, req.headers["x-test"] or "-",
                                 tostring(#req.body) }, " ") }
end

describe("sandlot.http.serve", function()
  it("is reachable as sandlot.http.serve and require('sandlot.http').serve", h.task(function()
    -- (other specs reload modules, so the two need not be the same function value)
    for _, serve in ipairs({ require("sandlot.http").serve, require("sandlot").http.serve }) do
      local srv <close> = assert(serve({ handler = echo }))
      assert.equal(200, assert(http.request({ url = srv.url .. "/" })).status)
    end
  end))

  it("raises on misuse", function()
    assert.has_error(function() http.serve({}) end)
    assert.has_error(function() http.serve({ handler = echo, prot = 1 }) end)
  end)

  it("refuses a host that is not an address with invalid_input", h.task(function()
    local srv, err = http.serve({ host = "not an ip", handler = echo })
    assert.is_nil(srv)
    assert.equal("invalid_input", err.code)
  end))

  it("reports a port in use", h.task(function()
    local a <close> = assert(http.serve({ handler = echo }))
    local b, err = http.serve({ port = a.port, handler = echo })
    assert.is_nil(b)
    assert.equal("already_exists", err.code)
  end))

  it("answers GET and POST from sandlot.http.request", h.task(function()
    local srv <close> = assert(http.serve({ handler = echo }))
    assert.matches("^http://127%.0%.0%.1:%d+$", srv.url)
    assert.is_true(srv.port > 0)
    local r = assert(http.request({ url = srv.url .. "/a/b?x=1&y=2",
                                    headers = { ["X-Test"] = "yes" } }))
    assert.equal(200, r.status)
    assert.equal("GET /a/b x=1&y=2 yes 0", r.body)
    assert.equal("GET", r.headers["x-method"])
    r = assert(http.request({ url = srv.url .. "/p", method = "POST", body = "hello" }))
    assert.equal("POST /p  - 5", r.body)
  end))

  it("answers curl, with headers lower-cased and repeated ones joined", h.task(function()
    local seen
    local srv <close> = assert(http.serve({ handler = function(req)
      seen = req
      return echo(req)
    end }))
    local r = curl({ "-H", "X-Test: one", "-H", "X-Dup: a", "-H", "X-Dup: b",
                     "--data-binary", "abc", srv.url .. "/c?q" })
    assert.equal(0, r.exit_code, r.stderr)
    assert.equal("POST /c q one 3", r.stdout)
    assert.equal("a, b", seen.headers["x-dup"])
    assert.equal("abc", seen.body)
    assert.equal("1.1", seen.http_version)
  end))

  it("takes and gives big bodies (Content-Length and chunked)", h.task(function()
    local srv <close> = assert(http.serve({ handler = function(req)
      return { status = 200, body = req.body }
    end }))
    local parts = {}
    for i = 1, 100000 do parts[i] = ("%07d\n"):format(i) end
    local big = table.concat(parts)                    -- 800 kB
    big = big:rep(10)                                  -- 8 MB
    local r = assert(http.request({ url = srv.url .. "/big", method = "PUT", body = big }))
    assert.equal(200, r.status)
    assert.equal(#big, #r.body)
    assert.is_true(r.body == big)
    local dir = h.tmpdir()
    local f = assert(io.open(dir .. "/big", "wb"))
    f:write(big)
    f:close()
    local c = curl({ "-H", "Transfer-Encoding: chunked", "--data-binary", "@" .. dir .. "/big",
                     "-o", dir .. "/out", "-w", "%{http_code}", srv.url .. "/chunked-in" })
    assert.equal("200", c.stdout, c.stderr)
    f = assert(io.open(dir .. "/out", "rb"))
    local got = f:read("a")
    f:close()
    h.rmtree(dir)
    assert.equal(#big, #got)
    assert.is_true(got == big)
  end))

  it("sends a function body with chunked transfer encoding", h.task(function()
    local srv <close> = assert(http.serve({ handler = function()
      local i = 0
      return { status = 201, headers = { ["Content-Type"] = "text/plain" }, body = function()
        i = i + 1
        if i > 3 then return nil end
        sandlot.sleep(0.01)                            -- a producer may wait
        return ("chunk%d;"):format(i)
      end }
    end }))
    local c = curl({ "-i", srv.url .. "/s" })
    assert.equal(0, c.exit_code, c.stderr)
    assert.matches("HTTP/1.1 201", c.stdout)
    assert.matches("[Tt]ransfer%-[Ee]ncoding: chunked", c.stdout)
    assert.matches("\r\n\r\nchunk1;chunk2;chunk3;$", c.stdout)
    local r = assert(http.request({ url = srv.url .. "/s" }))
    assert.equal(201, r.status)
    assert.equal("chunk1;chunk2;chunk3;", r.body)
  end))

  it("keeps connections alive across requests", h.task(function()
    local srv <close> = assert(http.serve({ handler = echo }))
    for i = 1, 5 do
      local r = assert(http.request({ url = srv.url .. "/k" .. i }))
      assert.equal(200, r.status)
    end
    assert.equal(5, srv:stats().requests)
    assert.equal(1, srv:stats().accepted)             -- libcurl reused one connection
    local c = curl({ "-w", " %{num_connects}", srv.url .. "/x", srv.url .. "/y" })
    assert.equal("GET /x  - 0 1GET /y  - 0 0", c.stdout)
    assert.equal(2, srv:stats().accepted)
  end))

  it("answers 413 to a body over max_body without calling the handler", h.task(function()
    local calls = 0
    local srv <close> = assert(http.serve({ max_body = 1000, handler = function(req)
      calls = calls + 1
      return echo(req)
    end }))
    local r = assert(http.request({ url = srv.url .. "/u", method = "POST",
                                    body = ("x"):rep(5000) }))
    assert.equal(413, r.status)
    local c = curl({ "-H", "Transfer-Encoding: chunked", "--data-binary", ("y"):rep(3000),
                     "-w", "%{http_code}", "-o", "/dev/null", srv.url .. "/u" })
    assert.equal("413", c.stdout)
    r = assert(http.request({ url = srv.url .. "/ok", method = "POST", body = ("x"):rep(1000) }))
    assert.equal(200, r.status)
    assert.equal(1, calls)
  end))

  it("answers 400 to a malformed request and 431 to an oversized head", h.task(function()
    local calls = 0
    local srv <close> = assert(http.serve({ max_head = 4096, handler = function(req)
      calls = calls + 1
      return echo(req)
    end }))
    assert.equal(400, (raw(srv, "GARBAGE\r\n\r\n")))
    assert.equal(400, (raw(srv, "GET / HTTP/1.1\r\nContent-Length: nope\r\n\r\n")))
    assert.equal(400, (raw(srv, "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")))
    assert.equal(431, (raw(srv, "GET / HTTP/1.1\r\nX-Big: " .. ("b"):rep(5000) .. "\r\n\r\n")))
    local c = curl({ "-H", "X-Big: " .. ("b"):rep(5000), "-w", "%{http_code}", "-o",
                     "/dev/null", srv.url .. "/" })
    assert.equal("431", c.stdout)
    assert.equal(0, calls)
    assert.equal(200, (assert(http.request({ url = srv.url .. "/" })).status))
  end))

  it("closes without answering on {drop = true}", h.task(function()
    local srv <close> = assert(http.serve({ handler = function() return { drop = true } end }))
    local r, err = http.request({ url = srv.url .. "/d", retry = false })
    assert.is_nil(r)
    assert.is_truthy(err.code)
    local c = curl({ srv.url .. "/d" })
    assert.equal(52, c.exit_code)                      -- curl: empty reply from server
  end))

  it("answers 500 to a handler that raises and keeps serving", h.task(function()
    local srv <close> = assert(http.serve({ handler = function(req)
      if req.path == "/boom" then error("kaboom") end
      if req.path == "/bad" then return "not a table" end
      return echo(req)
    end }))
    local r = assert(http.request({ url = srv.url .. "/boom", retry = false }))
    assert.equal(500, r.status)
    assert.matches("kaboom", r.body)
    assert.is_true(#r.body < 400)
    r = assert(http.request({ url = srv.url .. "/bad", retry = false }))
    assert.equal(500, r.status)
    r = assert(http.request({ url = srv.url .. "/fine" }))
    assert.equal(200, r.status)
    assert.equal(2, #srv.errors)
    assert.matches("kaboom", srv.errors[1])
  end))

  it("runs handlers that sleep concurrently, one task each", h.task(function()
    local now, most = 0, 0
    local srv <close> = assert(http.serve({ handler = function(req)
      now = now + 1
      if now > most then most = now end
      sandlot.sleep(0.2)
      now = now - 1
      return echo(req)
    end }))
    local fns = {}
    for i = 1, 6 do
      fns[i] = function() return assert(http.request({ url = srv.url .. "/s" .. i })).body end
    end
    local out = assert(sandlot.all(fns))
    for i = 1, 6 do assert.equal("GET /s" .. i .. "  - 0", out[i]) end
    assert.is_true(most >= 2, "handlers ran one at a time")
    assert.equal(0, now)
  end))

  it("answers pipelined requests in order, and HTTP/1.0 without keep-alive", h.task(function()
    local srv <close> = assert(http.serve({ handler = function(req)
      if req.path == "/slow" then sandlot.sleep(0.05) end
      return echo(req)
    end }))
    local reqs = "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
      .. "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
      .. "GET /c HTTP/1.0\r\n\r\nGET /never HTTP/1.1\r\n\r\n"
    local r = assert(sandlot.proc.run({ "bash", "-c",
      "exec 3<>/dev/tcp/127.0.0.1/" .. srv.port .. "; printf '%s' \"$REQS\" >&3; cat <&3" },
      { env = { REQS = reqs }, timeout = 20 }))
    assert.equal(0, r.exit_code, r.stderr)
    local bodies = {}
    for b in r.stdout:gmatch("\r\n\r\n([^H]*)") do bodies[#bodies + 1] = b end
    assert.same({ "GET /slow  - 0", "POST /b  - 3", "GET /c  - 0" }, bodies)
    assert.matches("Connection: close", r.stdout)       -- the 1.0 answer ends it
    assert.equal(3, srv:stats().requests)
  end))

  it("closes a connection whose client takes no data within idle_timeout", h.task(function()
    local big = ("z"):rep(32 * 1024 * 1024)
    local srv <close> = assert(http.serve({ idle_timeout = 0.3, handler = function()
      return { status = 200, body = big }
    end }))
    local p = assert(sandlot.proc.spawn({ "bash", "-c",
      "exec 3<>/dev/tcp/127.0.0.1/" .. srv.port .. "; printf 'GET / HTTP/1.1\\r\\n\\r\\n' >&3;"
      .. " sleep 30" }))
    assert.is_truthy(h.eventually(function() return srv:stats().handling == 1 end, 5))
    assert.is_truthy(h.eventually(function()
      local st = srv:stats()
      return st.handling == 0 and st.connections == 0
    end, 10), "the stalled answer was not given up")
    p:kill("KILL")
    p:wait()
    p:close()
  end))

  it("closes idle connections after idle_timeout", h.task(function()
    local srv <close> = assert(http.serve({ idle_timeout = 0.2, handler = echo }))
    assert(http.request({ url = srv.url .. "/" }))
    assert.equal(1, srv:stats().connections)           -- kept alive by libcurl
    assert.is_truthy(h.eventually(function() return srv:stats().connections == 0 end, 5))
  end))

  it("closes the listener and open connections, idempotently; fds settle", h.task(function()
    local before = h.settled_fd_count()
    local srv = assert(http.serve({ handler = function(req)
      if req.path == "/hang" then sandlot.sleep(60) end
      return echo(req)
    end }))
    assert(http.request({ url = srv.url .. "/warm" }))  -- one idle keep-alive connection
    local waiting = sandlot.spawn(function()
      return http.request({ url = srv.url .. "/hang", retry = false, timeout = 30 })
    end)
    assert.is_truthy(h.eventually(function() return srv:stats().handling == 1 end, 5))
    srv:close()
    srv:close()
    local r, err = waiting:join()
    assert.is_nil(r)
    assert.is_truthy(err.code)
    local r2, err2 = http.request({ url = srv.url .. "/", retry = false, timeout = 5 })
    assert.is_nil(r2)
    assert.equal("unavailable", err2.code)
    assert.equal(0, srv:stats().handling)
    assert.is_truthy(h.eventually(function() return h.settled_fd_count() <= before end, 5),
                     "fds left open after close")
  end))
end)
