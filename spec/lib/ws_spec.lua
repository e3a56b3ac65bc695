-- spec/lib/ws_spec.lua: sandlot.ws (lua/sandlot/ws.lua, core/ws.c) client against the server
-- side in sandlot.http.serve, misbehaving servers written with ws:write_raw (frames the codec
-- would never produce), a raw client through sandlot.core.http.upgrade (unmasked frames), and
-- node's `ws` package as an independent peer when npm can provide it.
local sandlot = require("sandlot")
local http = require("sandlot.http")
local ws = require("sandlot.ws")
local codec = require("sandlot.core.ws")
local core = require("sandlot.core.http")
local timer = require("sandlot.core.timer")
local h = require("spec.helper")

local function now() return timer.now() / 1e9 end
local function wsurl(srv, path) return (srv.url:gsub("^http", "ws")) .. (path or "/") end

-- a server whose every connection runs fn(ws); seen[] gets what the server side observed
local function server(fn, extra)
  local seen = {}
  local srv = assert(http.serve({ handler = function(req)
    local res = { websocket = function(c) fn(c, seen, req) end }
    for k, v in pairs(extra or {}) do res[k] = v end
    return res
  end }))
  return srv, seen
end

local function echo(c, seen)
  while true do
    local d, k = c:receive({ timeout = 10 })
    if not d then seen.err = k seen.closed = c.closed return end
    assert(c:send(d, { binary = k == "binary" }))
  end
end

describe("sandlot.ws", function()
  it("the codec round-trips frames and knows RFC 6455's accept example", function()
    assert.equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", codec.accept("dGhlIHNhbXBsZSBub25jZQ=="))
    for _, n in ipairs({ 0, 125, 126, 65535, 65536, 200000 }) do
      local p = ("x"):rep(n)
      local f, nxt = codec.decode(codec.encode(2, p, true, "abcd"), 1, { masked = true })
      assert.equal(p, f.payload)
      assert.equal(2, f.opcode)
      assert.is_nil(codec.decode(codec.encode(2, p, true):sub(1, -2)))   -- a prefix: more
      assert.is_true(nxt > n)
    end
    assert.is_false(codec.utf8("\xed\xa0\x80"))        -- a surrogate
    assert.is_false(codec.utf8("\xc0\xaf"))            -- overlong
    assert.is_true(codec.utf8("h\xc3\xa9 \xf0\x9f\x98\x80"))
  end)

  it("echoes text and binary, reports the chosen subprotocol, and closes cleanly",
     h.task(function()
    local srv <close>, seen = server(echo, { subprotocols = { "v5.channel.k8s.io", "v4" } })
    local c = assert(ws.connect(wsurl(srv, "/exec?x=1"),
                                { subprotocols = { "v4", "v5.channel.k8s.io" }, timeout = 5 }))
    assert.equal("v5.channel.k8s.io", c.subprotocol)
    assert(c:send("héllo"))
    assert.same({ "héllo", "text" }, { c:receive({ timeout = 5 }) })
    local bin = ("\0\1\2\255"):rep(50000)
    assert(c:send(bin, { binary = true }))
    assert.same({ bin, "binary" }, { c:receive({ timeout = 5 }) })
    assert.is_true(c:close(4000, "done"))
    assert.is_true(h.eventually(function() return seen.closed ~= nil end, 5))
    assert.equal(4000, seen.closed.code)
    assert.equal("done", seen.closed.reason)
    assert.is_true(seen.err.closed)
    local ok, err = c:send("late")
    assert.is_nil(ok)
    assert.is_true(err.closed)
  end))

  it("refuses a text message that is not UTF-8 before sending it", h.task(function()
    local srv <close> = server(echo)
    local c = assert(ws.connect(wsurl(srv)))
    local ok, err = c:send("\xff")
    assert.is_nil(ok)
    assert.equal("invalid_input", err.code)
    c:close()
  end))

  it("reassembles a fragmented message with a ping between its fragments and answers it",
     h.task(function()
    local srv <close>, seen = server(function(c, seen)
      c:write_raw(codec.encode(1, "hel", false) .. codec.encode(9, "mid", true)
                  .. codec.encode(0, "lo ", false) .. codec.encode(0, "world", true))
      seen.pong = { c:receive({ timeout = 5 }) }   -- the pong is counted; the close ends it
      seen.pongs = c.pongs
      seen.last_pong = c.last_pong
    end)
    local c = assert(ws.connect(wsurl(srv)))
    assert.same({ "hello world", "text" }, { c:receive({ timeout = 5 }) })
    c:close()
    assert.is_true(h.eventually(function() return seen.pongs ~= nil end, 5))
    assert.equal(1, seen.pongs)
    assert.equal("mid", seen.last_pong)
  end))

  it("pings, counts the pong, and keeps waiting for messages", h.task(function()
    local srv <close> = server(echo)
    local c = assert(ws.connect(wsurl(srv), { ping_timeout = 2 }))
    assert(c:ping("abc"))
    local d, err = c:receive({ timeout = 0.3 })
    assert.is_nil(d)
    assert.equal("timeout", err.code)
    assert.equal(1, c.pongs)
    assert.equal("abc", c.last_pong)
    assert(c:send("still open"))
    assert.equal("still open", (c:receive({ timeout = 5 })))
    c:close()
  end))

  it("ends with timeout when the server stops answering pings (ping_timeout, keepalive)",
     h.task(function()
    local srv <close> = server(function() sandlot.sleep(5) end)   -- never reads: no pongs
    local c = assert(ws.connect(wsurl(srv), { ping_timeout = 0.3 }))
    assert(c:ping())
    local t0 = now()
    local d, err = c:receive({ timeout = 10 })
    assert.is_nil(d)
    assert.equal("timeout", err.code)
    assert.matches("pong", err.message)
    assert.is_true(now() - t0 < 3)
    assert.equal(1001, c.closed.code)
    local k = assert(ws.connect(wsurl(srv), { ping_timeout = 0.3, keepalive = 0.2 }))
    t0 = now()
    d, err = k:receive({ timeout = 10 })               -- keepalive pings by itself
    assert.is_nil(d)
    assert.equal("timeout", err.code)
    assert.is_true(now() - t0 < 3)
  end))

  local function bad_server(bytes)
    return server(function(c, seen)
      c:write_raw(bytes)
      local _, err = c:receive({ timeout = 5 })
      seen.err = err
      seen.closed = c.closed
    end)
  end

  local cases = {
    { "a masked server frame", codec.encode(1, "hi", true, "abcd"), 1002, "masked" },
    { "an oversized frame", codec.encode(2, ("x"):rep(2000), true), 1009, "larger" },
    { "an oversized fragmented message", codec.encode(2, ("x"):rep(600), false)
        .. codec.encode(0, ("x"):rep(600), true), 1009, "max_message" },
    { "invalid UTF-8 in a text message", codec.encode(1, "ok\xff", true), 1007, "UTF%-8" },
    { "invalid UTF-8 split across fragments", codec.encode(1, "\xc3", false)
        .. codec.encode(0, "(", true), 1007, "UTF%-8" },
    { "reserved bits", "\xc1\x01x", 1002, "reserved" },
    { "a fragmented ping", "\x09\x00", 1002, "control" },
    { "a continuation without a message", codec.encode(0, "x", true), 1002, "continuation" },
    { "a 64-bit length with the top bit set", "\x82\x7f\x80\0\0\0\0\0\0\0", 1002, "top bit" },
  }
  for _, case in ipairs(cases) do
    it("closes with " .. case[3] .. " on " .. case[1], h.task(function()
      local srv <close>, seen = bad_server(case[2])
      local c = assert(ws.connect(wsurl(srv), { max_message = 1000 }))
      local t0 = now()
      local d, err = c:receive({ timeout = 5 })
      assert.is_nil(d)
      assert.equal("bad_response", err.code)
      assert.equal(case[3], err.close_code)
      assert.matches(case[4], err.message)
      assert.is_true(now() - t0 < 2)
      assert.is_true(h.eventually(function() return seen.closed ~= nil end, 5))
      assert.equal(case[3], seen.closed.code)                -- the server saw the close code
    end))
  end

  it("reports a close in the middle of a fragmented message", h.task(function()
    local srv <close> = server(function(c)
      c:write_raw(codec.encode(1, "part", false) .. codec.encode(8, "\3\232bye", true))
      sandlot.sleep(0.5)
    end)
    local c = assert(ws.connect(wsurl(srv)))
    local d, err = c:receive({ timeout = 5 })
    assert.is_nil(d)
    assert.matches("middle of a fragmented", err.message)
    assert.equal(1000, err.close_code)
    assert.is_true(err.closed)
  end))

  it("the server side closes with 1002 on an unmasked client frame", h.task(function()
    local srv <close>, seen = server(echo)
    local key = "dGhlIHNhbXBsZSBub25jZQ=="
    local s = assert(core.upgrade({ host = "127.0.0.1", port = srv.port, timeout = 5,
      io_timeout = 5, request = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        .. "Connection: Upgrade\r\nSec-WebSocket-Key: " .. key
        .. "\r\nSec-WebSocket-Version: 13\r\n\r\n" }))
    assert.matches("Sec%-WebSocket%-Accept: s3pPLMBiTxaQ9kYGzzhZRbK%+xOo=", s:head().headers_raw)
    assert(s:write(codec.encode(1, "unmasked", true)))
    local buf = ""
    while true do
      local d = s:read(65536, 5)
      if not d then break end
      buf = buf .. d
    end
    s:close()
    local f = assert(codec.decode(buf, 1, { masked = false }))
    assert.equal(8, f.opcode)
    assert.equal(1002, (string.unpack(">I2", f.payload)))
    assert.is_true(h.eventually(function() return seen.closed ~= nil end, 5))
    assert.equal("bad_response", seen.err.code)
  end))

  it("the server refuses a request that is not a WebSocket handshake with 400", h.task(function()
    local srv <close> = server(echo)
    local r = assert(http.request({ url = srv.url .. "/" }))
    assert.equal(400, r.status)
  end))

  it("verifies Sec-WebSocket-Accept and a refused upgrade", h.task(function()
    local srv <close> = assert(http.serve({ handler = function(req)
      if req.path == "/wrong" then
        return { status = 101, headers = { Upgrade = "websocket", Connection = "Upgrade",
                                           ["Sec-WebSocket-Accept"] = "bogus" } }
      end
      return { status = 403, body = "no" }
    end }))
    local c, err = ws.connect(wsurl(srv, "/wrong"), { timeout = 5 })
    assert.is_nil(c)
    assert.equal("bad_response", err.code)
    assert.matches("Accept", err.message)
    c, err = ws.connect(wsurl(srv, "/other"), { timeout = 5 })
    assert.is_nil(c)
    assert.equal(403, err.status)
  end))

  it("refuses a URL that is not ws:// or wss://, and unknown options", h.task(function()
    local c, err = ws.connect("wss://127.0.0.1:1/", { timeout = 2 })   -- wss: spec/lib/wss_spec
    assert.is_nil(c)
    assert.equal("unavailable", err.code)                              -- nothing listens there
    assert.has_error(function() ws.connect("http://x/") end)
    assert.has_error(function() ws.connect("ws://x/", { bogus = 1 }) end)
  end))

  describe("against node's ws package", function()
    local dir = os.getenv("SANDLOT_WS_NPM") or "/tmp/h9-ws-npm"
    local function node_ws()
      local f = io.open(dir .. "/node_modules/ws/package.json")
      if f then f:close() return true end
      local r = sandlot.proc.run({ "sh", "-c", "command -v npm >/dev/null && npm install "
        .. "--silent --prefix " .. dir .. " ws@8" }, { timeout = 120 })
      return r and r.exit_code == 0
    end

    it("echoes through a node ws server and serves a node ws client", h.task(function()
      if not node_ws() then
        pending("npm or the ws package is not available")
        return
      end
      local js = ([[
const { WebSocketServer, WebSocket } = require(%q);
const mode = process.argv[2];
if (mode === "server") {
  const wss = new WebSocketServer({ port: 0, host: "127.0.0.1" });
  wss.on("listening", () => console.log(wss.address().port));
  wss.on("connection", (c) => c.on("message", (d, bin) => c.send(d, { binary: bin })));
  setTimeout(() => process.exit(0), 20000);
} else {
  const c = new WebSocket(process.argv[3]);
  c.on("open", () => { c.send("from node"); c.send(Buffer.alloc(70000, 7)); });
  let n = 0;
  c.on("message", (d, bin) => {
    console.log((bin ? "bin " : "text ") + d.length);
    if (++n === 2) c.close(1000, "ok");
  });
  c.on("close", (code) => { console.log("close " + code); process.exit(0); });
  setTimeout(() => process.exit(1), 15000);
}]]):format(dir .. "/node_modules/ws")
      local path = h.tmpdir() .. "/peer.js"
      local f = assert(io.open(path, "w")) f:write(js) f:close()
      -- sandlot client -> node server
      local p <close> = assert(sandlot.proc.spawn({ "node", path, "server" },
                                                  { stream = true, timeout = 30 }))
      local port
      local line = ""
      while not port do
        local d, which = p:read()
        if not d then break end
        if which == "stdout" then line = line .. d end
        port = line:match("(%d+)\n")
      end
      assert.is_truthy(port)
      local c = assert(ws.connect("ws://127.0.0.1:" .. port .. "/", { timeout = 5 }))
      assert(c:send("to node"))
      assert.same({ "to node", "text" }, { c:receive({ timeout = 5 }) })
      local big = ("z"):rep(300000)
      assert(c:send(big, { binary = true }))
      assert.same({ big, "binary" }, { c:receive({ timeout = 5 }) })
      assert(c:ping("x"))
      c:receive({ timeout = 0.3 })
      assert.equal(1, c.pongs)
      c:close()
      p:kill()
      p:wait()
      -- node client -> sandlot server
      local srv <close> = server(echo)
      local r = assert(sandlot.proc.run({ "node", path, "client", wsurl(srv) }, { timeout = 30 }))
      assert.equal(0, r.exit_code)
      assert.equal("text 9\nbin 70000\nclose 1000\n", r.stdout)
    end))
  end)
end)
