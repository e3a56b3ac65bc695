-- spec/lib/api_spec.lua: sandlot.api against a scriptable fake service
-- (spec/fakes/api_server.c): the status map, the service's message, secrets a server echoes
-- back, transport failures, streams through wire decoders, polling, and URL path segments.
local sandlot = require("sandlot")
local api = require("sandlot.api")
local http = require("sandlot.http")
local json = require("sandlot.wire.json")
local ndjson = require("sandlot.wire.ndjson")
local fake = require("spec.fakes.api_server")

local TOKEN = "tok-9f8e7d6c5b4a39281706"

describe("sandlot.api", function()
  local srv

  lazy_setup(function() srv = fake.start() end)
  lazy_teardown(function()
    if srv then srv.stop() end
    fake.cleanup()
  end)

  local function client(extra, config)
    local spec = { name = "fake", base_url = srv.url,
                   auth = { header = "Authorization", prefix = "Bearer ", config = "token" },
                   retry = false }
    for k, v in pairs(extra or {}) do spec[k] = v end
    return api.client({ config = config or { token = TOKEN } }, spec)
  end

  local function q(status, body, more)
    local t = { status = status, body = body }
    for k, v in pairs(more or {}) do t[k] = v end
    return { query = t }
  end

  it("returns decoded JSON and sends the auth header built from config", function()
    local c = client()
    local v, res = c:call("POST", "/echo", { json = { n = 3 } })
    assert.equal(200, res.status)
    assert.equal("Bearer " .. TOKEN, v.authorization)
    assert.equal("POST", v.method)
    assert.same({ n = 3 }, json.decode(v.body))
    local mp = require("sandlot.wire.multipart")
    local pieces, _, ct = mp.encode({ { name = "f", filename = "a", data = "xyz" } })
    v = assert(c:call("PUT", "/echo", { body = pieces, headers = { ["Content-Type"] = ct } }))
    assert.equal("xyz", assert(mp.parse(v.body, ct))[1].data)
    local n = assert(c:call("GET", "/x", q(200, '{"n":3,"f":1.5}')))
    assert.equal("integer", math.type(n.n))
    assert.equal(1.5, n.f)
    assert.equal("plain", assert(c:call("GET", "/x", q(200, "plain", { ctype = "text/plain" }))))
  end)

  local cases = {
    { 400, "invalid_input" }, { 401, "auth_failed" }, { 403, "auth_failed" },
    { 404, "not_found" }, { 409, "already_exists" }, { 402, "quota_exceeded" },
    { 429, "rate_limited" }, { 418, "invalid_input" }, { 422, "invalid_input" },
    { 500, "unavailable" }, { 502, "unavailable" }, { 503, "unavailable" },
    { 504, "unavailable" }, { 501, "not_supported" },
  }
  for _, case in ipairs(cases) do
    it(("maps HTTP %d to %s, with status and via and no op"):format(case[1], case[2]), function()
      local v, err = client():call("GET", "/thing", q(case[1], '{"message":"said so"}'))
      assert.is_nil(v)
      assert.equal(case[2], err.code)
      assert.equal(case[1], err.status)
      assert.equal("GET /thing", err.via)
      assert.is_nil(err.op)
      assert.matches("said so", err.message, 1, true)
    end)
  end

  it("lets a spec and a call override the map", function()
    local c = client({ errors = { [409] = "unavailable" } })
    local _, err = c:call("POST", "/x", q(409, "{}"))
    assert.equal("unavailable", err.code)
    _, err = c:call("POST", "/x", { query = { status = 409 }, errors = { [409] = "not_found" } })
    assert.equal("not_found", err.code)
  end)

  it("tells quota answers from rate limits and keeps Retry-After", function()
    local _, err = client():call("GET", "/x", q(429, '{"error":{"message":"Quota exceeded"}}'))
    assert.equal("quota_exceeded", err.code)
    _, err = client():call("GET", "/x", q(429, '{"message":"slow down"}', { retry_after = 7 }))
    assert.equal("rate_limited", err.code)
    assert.is_true(err.retryable)
    assert.equal(7, err.retry_after)
  end)

  it("takes the service's message from the common error shapes", function()
    local shapes = { '{"message":"m1"}', '{"error":"m1"}', '{"error":{"message":"m1"}}',
                     '{"detail":"m1"}', '{"errors":[{"message":"m1"}]}' }
    for _, body in ipairs(shapes) do
      local _, err = client():call("GET", "/x", q(400, body))
      assert.matches("HTTP 400: m1", err.message, 1, true)
    end
  end)

  it("never lets a secret the server echoes back reach an error", function()
    -- the plant: the fake really echoes the header back
    local res = assert(http.request{ url = srv.url .. "/x?status=401&body=" ..
                                     "%7B%22message%22%3A%22bad%20%7Bauth%7D%22%7D",
                                     headers = { Authorization = "Bearer " .. TOKEN } })
    assert.matches(TOKEN, res.body, 1, true)
    local bodies = { '{"message":"bad {auth}"}', '{"error":{"message":"{auth}"}}',
                     "token was {auth}", '{"token":"{auth}"}' }
    for _, body in ipairs(bodies) do
      for _, ctype in ipairs({ "application/json", "text/plain" }) do
        local _, err = client():call("GET", "/x", q(401, body, { ctype = ctype }))
        assert.equal("auth_failed", err.code)
        local text = tostring(err) .. json.encode({ message = err.message, via = err.via })
        assert.is_nil(text:find(TOKEN, 1, true), text)
        assert.is_nil(text:find(TOKEN:sub(1, 12), 1, true), text)
      end
    end
    -- a secret under another config name is scrubbed too
    local c = client({ auth = { header = "X-Api-Key", config = "api_key" } },
                     { api_key = "k-1234567890abcdef" })
    local v = assert(c:call("GET", "/echo"))
    assert.equal("", v.authorization)
    local _, err = c:call("GET", "/x", q(400, '{"message":"k-1234567890abcdef is bad"}'))
    assert.is_nil(tostring(err):find("k-1234567890abcdef", 1, true))
  end)

  it("keeps an echoed secret out of telemetry", function()
    local telemetry = require("sandlot.telemetry")
    local seen = {}
    local function dump(v, depth)
      if type(v) ~= "table" or depth > 6 then return tostring(v) end
      local out = {}
      for k, x in pairs(v) do out[#out + 1] = tostring(k) .. "=" .. dump(x, depth + 1) end
      return "{" .. table.concat(out, ",") .. "}"
    end
    telemetry.attach("api_spec", { { "sandlot", "*", "*" } }, function(ev, m, meta)
      seen[#seen + 1] = table.concat(ev, ".") .. dump(m, 0) .. dump(meta, 0)
    end)
    local ok, err = pcall(function()
      local _, e = client():call("GET", "/x", q(401, '{"message":"bad {auth}"}'))
      return e
    end)
    telemetry.detach("api_spec")
    assert(ok, err)
    assert.equal("auth_failed", err.code)
    assert.is_true(#seen > 0)               -- the request was recorded
    local all = table.concat(seen, "\n")
    assert.matches("/x", all, 1, true)
    assert.is_nil(all:find(TOKEN, 1, true))
  end)

  it("refuses to call without the credential it needs", function()
    local _, err = client({}, {}):call("GET", "/echo")
    assert.equal("auth_failed", err.code)
    assert.equal("GET /echo", err.via)
  end)

  it("reports a transport failure with via and without op", function()
    local c = api.client({ config = {} }, { base_url = "http://127.0.0.1:1", retry = false })
    local _, err = c:call("DELETE", "/things/1")
    assert.equal("unavailable", err.code)
    assert.equal("DELETE /things/1", err.via)
    assert.is_nil(err.op)
    assert.is_true(err.retryable)
  end)

  it("gives bad_response for malformed JSON and for an unwanted 2xx", function()
    local _, err = client():call("GET", "/x", q(200, '{"a":'))
    assert.equal("bad_response", err.code)
    _, err = client():call("GET", "/x", { query = { status = 200 }, want = { 201 } })
    assert.equal("bad_response", err.code)
    assert.equal(200, err.status)
  end)

  it("negotiates a version prefix once per key", function()
    local calls = 0
    local spec = { base_url = srv.url, retry = false, negotiate = function(c)
      calls = calls + 1
      local v, err = c:call("GET", "/x", q(200, '{"v":"1.41"}'))
      if not v then return nil, err end
      return "/v" .. v.v
    end }
    for _ = 1, 3 do
      local v = assert(api.client({ config = {} }, spec):call("GET", "/echo"))
      assert.equal("/v1.41/echo", v.path)
    end
    assert.equal(1, calls)
  end)

  it("streams a body through a wire decoder", function()
    local got = {}
    local body = '{"i":1}\n{"i":2}\n{"i":3}\n'
    local res = assert(client():stream("GET", "/s", { query = { body = body },
      on_frame = ndjson.decoder(function(v) got[#got + 1] = v.i end) }))
    assert.equal(200, res.status)
    assert.same({ 1, 2, 3 }, got)
    local _, err = client():stream("GET", "/s", { query = { body = '{"i":1}\n{"i":' },
      on_frame = ndjson.decoder(function() end) })
    assert.equal("bad_response", err.code)
    assert.equal("GET /s", err.via)
    _, err = client():stream("GET", "/s", { query = { body = '{"i":1}\nnot json\n' },
      on_frame = ndjson.decoder(function() end) })
    assert.equal("bad_response", err.code)
    _, err = client():stream("GET", "/s", { query = { status = 404, body = '{"message":"no"}' },
      on_frame = function() error("not called for an error answer") end })
    assert.equal("not_found", err.code)
  end)

  it("polls until ready, and stops on timeout, on an error and on cancel", function()
    local c = client()
    local n = assert(c:poll(function()
      local v, err = c:call("GET", "/count", { query = { key = "poll1" } })
      if not v then return nil, err end
      return v.n >= 3 and v.n
    end, { timeout = 30, interval = 0.01 }))
    assert.equal(3, n)
    local v, err = c:poll(function() return false end, { timeout = 0.05, interval = 0.01 })
    assert.is_nil(v)
    assert.equal("timeout", err.code)
    err = select(2, c:poll(function() return nil, sandlot.errors.new("not_found", "gone") end,
                    { timeout = 5 }))
    assert.equal("not_found", err.code)
    local t = sandlot.spawn(function()
      return c:poll(function() return false end, { timeout = 60, interval = 0.01 })
    end)
    sandlot.sleep(0.05)
    t:cancel()
    local ok, r1, r2 = pcall(t.join, t)
    local e = ok and r2 or r1
    assert.equal("cancelled", e.code)
  end)

  it("checks and escapes URL path segments", function()
    assert.equal("abc-1_2.x~", api.segment("abc-1_2.x~"))
    assert.equal("a%20b%3Fc", api.segment("a b?c"))
    assert.equal("42", api.segment(42))
    for _, bad in ipairs({ "", ".", "..", "a/b", "../etc", "a\0b", "a\nb", "a\\b", {}, 1.5 }) do
      local s, err = api.segment(bad)
      assert.is_nil(s)
      assert.equal("invalid_input", err.code)
    end
  end)

  it("raises on misuse", function()
    assert.has_error(function() client():call("GET", "/x", { jsn = {} }) end)
    assert.has_error(function() client():call("GET", "no-slash") end)
    assert.has_error(function() client():call("get", "/x") end)
    assert.has_error(function() api.client({}, { nope = 1, base_url = "x" }) end)
  end)
end)
