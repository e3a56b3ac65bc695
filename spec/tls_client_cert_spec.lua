-- spec/tls_client_cert_spec.lua: TLS client certificates, PEM text in memory, on both
-- transports (sandlot.http.request -> libcurl blobs; sandlot.ws.connect -> http.upgrade ->
-- core/tls.c) against sandlot.http.serve{tls = {cert, key, client_ca}}, which reports the
-- verified peer's CN (req.tls_client_cn) or why one was refused (req.tls_client_error). Also:
-- a pooled easy handle (and curl's connection cache) never carries one certificate over to a
-- request with another or none; a mismatched or non-PEM key is a clear error that never
-- quotes the key.
local sandlot = require("sandlot")
local http = require("sandlot.http")
local ws = require("sandlot.ws")
local h = require("spec.helper")

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- the lines of a PEM body (the planted marker a leak check looks for)
local function body_lines(pem)
  local out = {}
  for line in pem:gmatch("[^\n]+") do
    if not line:find("^%-%-%-%-%-") then out[#out + 1] = line end
  end
  return out
end

local function leaks(text, pem)
  for _, line in ipairs(body_lines(pem)) do
    if text:find(line, 1, true) then return line end
  end
end

describe("TLS client certificates", function()
  local certs, srv, cert, key, icert, ikey, ca

  lazy_setup(function()
    if not sandlot.http.serve then return end
    certs = require("spec.support.tls").certs()
    if not certs then return end
    cert, key = slurp(certs.client_cert), slurp(certs.client_key)
    icert, ikey = slurp(certs.intruder_cert), slurp(certs.intruder_key)
    ca = slurp(certs.ca)
    srv = assert(sandlot.http.serve{
      tls = { cert = certs.cert, key = certs.key, client_ca = certs.ca },
      handler = function(req)
        if req.path == "/ws" then
          if not req.tls_client_cn then return { status = 401, body = "no client certificate" } end
          return { websocket = function(w) w:send("cn=" .. req.tls_client_cn) end }
        end
        return { status = 200, body = ("cn=%s err=%s"):format(tostring(req.tls_client_cn),
                                                            tostring(req.tls_client_error)) }
      end,
    })
  end)

  lazy_teardown(function()
    if srv then srv:close() end
  end)

  before_each(function()
    if not srv then pending("needs sandlot.http.serve and the openssl CLI") end
  end)

  local function get(extra)
    local o = { url = srv.url .. "/who", ca_file = certs.ca, retry = false, timeout = 10 }
    for k, v in pairs(extra or {}) do o[k] = v end
    return http.request(o)
  end

  it("sends a certificate from memory over REST; the server sees its CN", h.task(function()
    local res = assert(get({ client_cert = cert, client_key = key }))
    assert.equal("cn=sandlot-client err=nil", res.body)
    res = assert(get())
    assert.equal("cn=nil err=nil", res.body)
    res = assert(get({ client_cert = icert, client_key = ikey }))
    assert.matches("^cn=nil err=unable to", res.body)       -- verify / get the issuer
  end))

  it("never lets a pooled handle or connection carry a certificate to another request",
     h.task(function()
    -- same shape but the certificate: with cert, without, with, the other, without again
    local want = { "cn=sandlot-client", "cn=nil", "cn=sandlot-client", "cn=nil err=unable",
                   "cn=nil err=nil" }
    local with = { client_cert = cert, client_key = key }
    local other = { client_cert = icert, client_key = ikey }
    for round = 1, 2 do
      for i, o in ipairs({ with, {}, with, other, {} }) do
        local res = assert(get(o))
        assert.equal(want[i], res.body:sub(1, #want[i]), ("round %d, request %d"):format(round, i))
      end
    end
    assert.is_true(http.stats().pooled >= 1)
    -- new connections resume curl's cached TLS session: the server still knows the client
    for i = 1, 3 do
      local res = assert(get({ client_cert = cert, client_key = key, fresh_connect = true }))
      assert.equal("cn=sandlot-client err=nil", res.body, "fresh connection " .. i)
      res = assert(get({ fresh_connect = true }))
      assert.equal("cn=nil err=nil", res.body, "fresh connection without " .. i)
    end
  end))

  it("sends the certificate on the WebSocket (core/tls.c); without it: refused",
     h.task(function()
    local url = srv.url:gsub("^https", "wss") .. "/ws"
    local c = assert(ws.connect(url, { ca_file = certs.ca, client_cert = cert, client_key = key }))
    assert.equal("cn=sandlot-client", assert(c:receive()))
    c:close()
    -- a chain after the certificate (here its CA) goes along
    c = assert(ws.connect(url, { ca_file = certs.ca, client_cert = cert .. ca, client_key = key }))
    assert.equal("cn=sandlot-client", assert(c:receive()))
    c:close()
    local _, err = ws.connect(url, { ca_file = certs.ca })
    assert.equal(401, err.status)
    _, err = ws.connect(url, { ca_file = certs.ca, client_cert = icert, client_key = ikey })
    assert.equal(401, err.status)
    -- the CA as PEM text works as well as a file
    local srv2 = assert(sandlot.http.serve{
      tls = { cert = certs.cert, key = certs.key, client_ca = ca },
      handler = function(req) return { status = 200, body = tostring(req.tls_client_cn) } end })
    local res = assert(http.request{ url = srv2.url, ca_file = certs.ca, retry = false,
                                     client_cert = cert, client_key = key })
    srv2:close()
    assert.equal("sandlot-client", res.body)
  end))

  it("refuses a key of another certificate or not PEM, never quoting the key", h.task(function()
    assert.is_true(#body_lines(ikey) >= 2)
    -- the check sees a planted key
    assert.equal(body_lines(ikey)[1], leaks("oops " .. ikey, ikey))
    local texts = {}
    -- (over REST after a request with the right key: curl's connection cache compares the
    -- certificate, not the key, so the pair is checked before curl sees it)
    assert(get({ client_cert = cert, client_key = key }))
    local r0, err = get({ client_cert = cert, client_key = ikey })
    assert.is_table(err, r0 and r0.body)
    assert.equal("invalid_input", err.code)
    assert.matches("does not match", err.message)
    texts[#texts + 1] = tostring(err)
    local url = srv.url:gsub("^https", "wss") .. "/ws"
    local _, werr = ws.connect(url, { ca_file = certs.ca, client_cert = cert, client_key = ikey })
    assert.equal("invalid_input", werr.code)
    assert.matches("does not match", werr.message)
    texts[#texts + 1] = tostring(werr)
    local broken = ikey:gsub("\n[A-Za-z0-9+/]", "\n!", 1)
    _, werr = ws.connect(url, { ca_file = certs.ca, client_cert = cert, client_key = broken })
    assert.equal("invalid_input", werr.code)
    assert.matches("client key", werr.message)
    texts[#texts + 1] = tostring(werr)
    _, err = get({ client_cert = cert, client_key = broken })
    assert.is_table(err)
    texts[#texts + 1] = tostring(err)
    for _, t in ipairs(texts) do
      assert.is_nil(leaks(t, ikey), "the key leaked: " .. t)
      assert.is_nil(leaks(t, broken), "the key leaked: " .. t)
    end
    assert.has_error(function() get({ client_cert = cert }) end)
    assert.has_error(function() ws.connect(url, { client_key = key }) end)
  end))
end)
