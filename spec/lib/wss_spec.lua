-- spec/lib/wss_spec.lua: WebSocket over TLS (wss://) and https upgrades: sandlot.ws.connect
-- against sandlot.http.serve{tls = ...} (core/tls.c on both sides) with certificates made by
-- the openssl CLI (spec/support/tls.lua), libcurl as an independent TLS client of the server,
-- and the refusals: a wrong host name, an untrusted CA, a plain-http server, a server that
-- never finishes the handshake (spec/support/silent_server.c), bad certificate files.
local sandlot = require("sandlot")
local http = require("sandlot.http")
local ws = require("sandlot.ws")
local codec = require("sandlot.core.ws")
local core = require("sandlot.core.http")
local timer = require("sandlot.core.timer")
local h = require("spec.helper")
local tls = require("spec.support.tls")

local function now() return timer.now() / 1e9 end
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "spec/lib"
local silent_src = here .. "/../support/silent_server.c"

local function certs()
  local c, why = tls.certs()
  if not c then pending(why) end
  return c
end

-- a TLS server whose every WebSocket runs fn(ws, seen); cert/key default to the good pair
local function server(c, fn, opts)
  opts = opts or {}
  local seen = {}
  local srv = assert(http.serve({ tls = { cert = opts.cert or c.cert, key = opts.key or c.key },
    idle_timeout = opts.idle_timeout, handler = function(req)
      if req.path == "/plain" then return { status = 200, body = "over tls" } end
      return { websocket = function(w) fn(w, seen, req) end, subprotocols = opts.subprotocols,
               max_message = opts.max_message }
    end }))
  return srv, seen
end

local function wss(srv, path, host)
  return ("wss://%s:%d%s"):format(host or "127.0.0.1", srv.port, path or "/")
end

local function echo(w, seen)
  while true do
    local d, k = w:receive({ timeout = 10 })
    if not d then seen.err = k seen.closed = w.closed return end
    assert(w:send(d, { binary = k == "binary" }))
  end
end

describe("wss:// (TLS on the upgraded stream)", function()
  teardown(function()
    tls.cleanup()
    h.forget_c(silent_src)
  end)

  it("echoes text and large binary messages, then closes cleanly", h.task(function()
    local c = certs()
    if not c then return end
    local srv <close>, seen = server(c, echo, { subprotocols = { "v4" } })
    assert.equal("https", srv.url:match("^(%a+)://"))
    local conn = assert(ws.connect(wss(srv, "/echo?x=1"),
                                   { ca_file = c.ca, timeout = 5, subprotocols = { "v4" } }))
    assert.equal("v4", conn.subprotocol)
    assert(conn:send("héllo over tls"))
    assert.same({ "héllo over tls", "text" }, { conn:receive({ timeout = 5 }) })
    local big = ("\0\1\2\255"):rep(1 << 20)                  -- 4 MiB: many records each way
    assert(conn:send(big, { binary = true }))
    local got, kind = conn:receive({ timeout = 20 })
    assert.equal("binary", kind)
    assert.is_true(got == big)
    assert(conn:ping("p"))
    conn:receive({ timeout = 0.3 })
    assert.equal(1, conn.pongs)
    assert.is_true(conn:close(4001, "bye"))
    assert.is_true(h.eventually(function() return seen.closed ~= nil end, 5))
    assert.equal(4001, seen.closed.code)
    assert.equal("bye", seen.closed.reason)
  end))

  it("verifies by host name too (localhost is in the certificate)", h.task(function()
    local c = certs()
    if not c then return end
    local srv <close> = server(c, echo)
    local conn = assert(ws.connect(wss(srv, "/", "localhost"), { ca_file = c.ca, timeout = 5 }))
    assert(conn:send("by name"))
    assert.equal("by name", (conn:receive({ timeout = 5 })))
    conn:close()
  end))

  it("reassembles a fragmented message with a ping between its fragments", h.task(function()
    local c = certs()
    if not c then return end
    local srv <close>, seen = server(c, function(w, seen)
      w:write_raw(codec.encode(1, "hel", false) .. codec.encode(9, "mid", true)
                  .. codec.encode(0, "lo ", false))
      sandlot.sleep(0.05)                                  -- a later TLS record
      w:write_raw(codec.encode(0, ("w"):rep(40000), true))
      w:receive({ timeout = 5 })
      seen.pongs, seen.last_pong = w.pongs, w.last_pong
    end)
    local conn = assert(ws.connect(wss(srv), { ca_file = c.ca, timeout = 5 }))
    assert.same({ "hello " .. ("w"):rep(40000), "text" }, { conn:receive({ timeout = 5 }) })
    conn:close()
    assert.is_true(h.eventually(function() return seen.pongs ~= nil end, 5))
    assert.equal(1, seen.pongs)
    assert.equal("mid", seen.last_pong)
  end))

  it("bounds a huge message by max_message, refused from its header", h.task(function()
    local c = certs()
    if not c then return end
    local srv <close>, seen = server(c, function(w, seen)
      w:write_raw(codec.encode(2, ("x"):rep(3 << 20), true))
      local _, err = w:receive({ timeout = 5 })
      seen.err, seen.closed = err, w.closed
    end)
    local conn = assert(ws.connect(wss(srv), { ca_file = c.ca, timeout = 5,
                                               max_message = 1 << 20 }))
    local t0 = now()
    local d, err = conn:receive({ timeout = 10 })
    assert.is_nil(d)
    assert.equal("bad_response", err.code)
    assert.equal(1009, err.close_code)
    assert.is_true(now() - t0 < 5)
    assert.is_true(h.eventually(function() return seen.closed ~= nil end, 5))
    assert.equal(1009, seen.closed.code)
  end))

  it("reports a peer that drops mid-stream, without a hang", h.task(function()
    local c = certs()
    if not c then return end
    local srv, dropped = nil, false
    srv = server(c, function(w)
      w:write_raw(codec.encode(2, ("y"):rep(10000), true):sub(1, 5000))   -- half a frame
      sandlot.sleep(0.1)
      dropped = true
      srv:close()                        -- the connection goes without close_notify or FIN order
    end)
    local conn = assert(ws.connect(wss(srv), { ca_file = c.ca, timeout = 5 }))
    local t0 = now()
    local d, err = conn:receive({ timeout = 10 })
    assert.is_nil(d)
    assert.is_true(dropped)
    assert.is_true(err.closed or err.code == "unavailable")
    assert.equal(1006, conn.closed.code)
    assert.is_true(now() - t0 < 5)
  end))

  it("refuses a certificate for another host name with auth_failed", h.task(function()
    local c = certs()
    if not c then return end
    local srv <close> = server(c, echo, { cert = c.wrong_cert, key = c.wrong_key })
    for _, host in ipairs({ "localhost", "127.0.0.1" }) do
      local t0 = now()
      local conn, err = ws.connect(wss(srv, "/", host), { ca_file = c.ca, timeout = 5 })
      assert.is_nil(conn)
      assert.equal("auth_failed", err.code)
      assert.equal(host == "localhost" and "hostname mismatch" or "IP address mismatch",
                   err.tls_reason)
      assert.is_false(err.retryable)
      assert.matches(host, err.message, 1, true)
      assert.is_true(now() - t0 < 3)
    end
    -- the explicit opt-out connects to the same server
    local conn = assert(ws.connect(wss(srv, "/", "localhost"), { insecure = true, timeout = 5 }))
    assert(conn:send("insecure"))
    assert.equal("insecure", (conn:receive({ timeout = 5 })))
    conn:close()
    assert.has_error(function() ws.connect(wss(srv), { insecure = "yes" }) end)
    assert.has_error(function() http.upgrade({ url = srv.url, insecure = 1 }) end)
  end))

  it("refuses a certificate from an untrusted CA (and by default, the system store)",
     h.task(function()
    local c = certs()
    if not c then return end
    local srv <close> = server(c, echo)
    local conn, err = ws.connect(wss(srv), { ca_file = c.other_ca, timeout = 5 })
    assert.is_nil(conn)
    assert.equal("auth_failed", err.code)
    assert.equal("unable to get local issuer certificate", err.tls_reason)
    assert.matches("issuer", err.message)
    conn, err = ws.connect(wss(srv), { timeout = 5 })     -- the test CA is not in the store
    assert.is_nil(conn)
    assert.equal("auth_failed", err.code)
    local s
    s, err = http.upgrade({ url = srv.url .. "/x", timeout = 5, ca_file = "/nonexistent/ca.pem" })
    assert.is_nil(s)
    assert.equal("invalid_input", err.code)
    assert.matches("/nonexistent/ca.pem", err.message, 1, true)
  end))

  it("times out a server that never finishes the handshake", h.task(function()
    local bin = h.build_c(silent_src, "silent_server")
    local p, port = h.start_server({ bin }, "the silent server")
    local t0 = now()
    local conn, err = ws.connect("wss://127.0.0.1:" .. port .. "/", { timeout = 0.5 })
    local took = now() - t0
    p:kill("KILL")
    p:wait()
    p:close()
    assert.is_nil(conn)
    assert.equal("timeout", err.code)
    assert.matches("TLS handshake", err.message)
    assert.is_true(took < 3)
  end))

  it("the TLS server closes a client that never starts its handshake (idle_timeout)",
     h.task(function()
    local c = certs()
    if not c then return end
    local srv <close> = server(c, echo, { idle_timeout = 0.3 })
    local bin = h.build_c(silent_src, "silent_server")
    local p <close> = h.start_server({ bin, tostring(srv.port) }, "the silent client")
    assert.is_true(h.eventually(function() return srv:stats().connections == 1 end, 5))
    local r = assert(sandlot.timeout(5, function() return p:wait() end))   -- the server hung up
    assert.equal(0, r.exit_code)
    assert.equal(0, srv:stats().connections)
    local conn = assert(ws.connect(wss(srv), { ca_file = c.ca, timeout = 5 }))   -- serving
    conn:close()
  end))

  it("a plain-http server is a bad_response, a plain client of a TLS server is refused",
     h.task(function()
    local c = certs()
    if not c then return end
    local plain <close> = assert(http.serve({ handler = function() return { status = 200 } end }))
    local conn, err = ws.connect("wss://127.0.0.1:" .. plain.port .. "/", { timeout = 5 })
    assert.is_nil(conn)
    assert.equal("bad_response", err.code)
    assert.matches("TLS handshake", err.message)
    assert.equal("wrong version number", err.tls_reason)
    local srv <close> = server(c, echo)
    conn, err = ws.connect("ws://127.0.0.1:" .. srv.port .. "/", { timeout = 5 })
    assert.is_nil(conn)
    assert.is_truthy(err.code == "bad_response" or err.code == "unavailable")
    -- the server goes on serving TLS clients
    conn = assert(ws.connect(wss(srv), { ca_file = c.ca, timeout = 5 }))
    conn:close()
  end))

  it("the TLS server answers libcurl (an independent client), keep-alive included",
     h.task(function()
    local c = certs()
    if not c then return end
    local srv <close> = server(c, echo)
    for _ = 1, 3 do
      local r = assert(http.request({ url = srv.url .. "/plain", ca_file = c.ca }))
      assert.equal(200, r.status)
      assert.equal("over tls", r.body)
    end
    assert.equal(1, srv:stats().accepted)
    local r, err = http.request({ url = srv.url .. "/plain", ca_file = c.other_ca })
    assert.is_nil(r)
    assert.is_truthy(err)
  end))

  it("http.upgrade takes https:// (a raw stream over TLS)", h.task(function()
    local c = certs()
    if not c then return end
    local srv <close> = server(c, echo)
    local key = "dGhlIHNhbXBsZSBub25jZQ=="
    local s = assert(http.upgrade({ url = srv.url .. "/raw", method = "GET",
      upgrade = "websocket", ca_file = c.ca, timeout = 5, io_timeout = 5,
      headers = { ["Sec-WebSocket-Key"] = key, ["Sec-WebSocket-Version"] = "13" } }))
    assert.equal(101, s:head().status)
    assert.matches("s3pPLMBiTxaQ9kYGzzhZRbK%+xOo=", s:head().headers_raw)
    assert(s:write(codec.encode(1, "raw", true, "abcd")))
    local f
    local buf = ""
    while not f do
      local d = assert(s:read(65536, 5))
      buf = buf .. d
      f = codec.decode(buf, 1, { masked = false })
    end
    assert.equal("raw", f.payload)
    assert(s:shutdown())                  -- close_notify, then FIN
    s:close()
    assert.has_error(function() core.upgrade({ host = "127.0.0.1", port = srv.port,
                                                request = "x", tls = true,
                                                unix_socket = "/x" }) end)
  end))

  it("refuses unusable server certificate files with invalid_input", h.task(function()
    local c = certs()
    if not c then return end
    local srv, err = http.serve({ tls = { cert = c.dir .. "/missing.crt", key = c.key },
                                  handler = function() return { status = 200 } end })
    assert.is_nil(srv)
    assert.equal("invalid_input", err.code)
    srv, err = http.serve({ tls = { cert = c.cert, key = c.wrong_key },
                            handler = function() return { status = 200 } end })
    assert.is_nil(srv)
    assert.equal("invalid_input", err.code)
    assert.matches("key", err.message)
    assert.has_error(function() http.serve({ tls = { cert = c.cert }, handler = print }) end)
  end))
end)
