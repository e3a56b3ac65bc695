-- spec/otlp_spec.lua: OTLP/HTTP JSON export (sandlot.otlp) to a local receiver on
-- sandlot.http.serve that checks the shape the OTLP specification gives: the path, the
-- content type, resourceSpans/scopeSpans/spans, hex ids of the right lengths, times as
-- decimal strings, span kinds and status codes. Also traceparent on provider HTTP calls, and
-- export that never blocks or fails an operation when the collector is down.
local sandlot = require("sandlot")
local http = require("sandlot.http")
local json = require("sandlot.wire.json")
local otlp = require("sandlot.otlp")
local h = require("spec.helper")

-- A strict OTLP receiver: returns srv with srv.spans (all accepted) and srv.rejected (why).
local function receiver(opts)
  local srv
  local spans, rejected, resources = {}, {}, {}
  local function reject(why)
    rejected[#rejected + 1] = why
    return { status = 400, headers = { ["content-type"] = "application/json" },
             body = json.encode({ code = 3, message = why }) }
  end
  srv = assert(http.serve({ host = "127.0.0.1", port = 0, handler = function(req)
    if opts and opts.hang then sandlot.sleep(30) end
    if req.method ~= "POST" or req.path ~= "/v1/traces" then
      return reject("wrong method or path: " .. req.method .. " " .. req.path)
    end
    if not (req.headers["content-type"] or ""):match("^application/json") then
      return reject("content type " .. tostring(req.headers["content-type"]))
    end
    local doc = json.decode(req.body)
    if type(doc) ~= "table" or type(doc.resourceSpans) ~= "table" then
      return reject("no resourceSpans")
    end
    for _, rs in ipairs(doc.resourceSpans) do
      local attrs = {}
      for _, a in ipairs(rs.resource and rs.resource.attributes or {}) do
        if type(a.key) ~= "string" or type(a.value) ~= "table" then
          return reject("bad attribute")
        end
        attrs[a.key] = a.value.stringValue or a.value.intValue or a.value.boolValue
      end
      resources[#resources + 1] = attrs
      for _, ss in ipairs(rs.scopeSpans or {}) do
        if type(ss.scope) ~= "table" or type(ss.scope.name) ~= "string" then
          return reject("scope without a name")
        end
        for _, sp in ipairs(ss.spans or {}) do
          if not (type(sp.traceId) == "string" and sp.traceId:match("^%x+$") and #sp.traceId == 32)
          then return reject("traceId " .. tostring(sp.traceId)) end
          if not (type(sp.spanId) == "string" and sp.spanId:match("^%x+$") and #sp.spanId == 16)
          then return reject("spanId " .. tostring(sp.spanId)) end
          if sp.parentSpanId ~= nil and not (type(sp.parentSpanId) == "string"
                                              and #sp.parentSpanId == 16) then
            return reject("parentSpanId " .. tostring(sp.parentSpanId))
          end
          for _, f in ipairs({ "startTimeUnixNano", "endTimeUnixNano" }) do
            if type(sp[f]) ~= "string" or not sp[f]:match("^%d+$") then
              return reject(f .. " is not a decimal string")
            end
          end
          if tonumber(sp.endTimeUnixNano) < tonumber(sp.startTimeUnixNano) then
            return reject("ends before it starts")
          end
          if math.type(sp.kind) ~= "integer" or sp.kind < 0 or sp.kind > 5 then
            return reject("kind " .. tostring(sp.kind))
          end
          if type(sp.status) ~= "table" or (sp.status.code ~= 1 and sp.status.code ~= 2) then
            return reject("status")
          end
          spans[#spans + 1] = sp
        end
      end
    end
    return { status = 200, headers = { ["content-type"] = "application/json" }, body = "{}" }
  end }))
  srv.spans, srv.rejected, srv.resources = spans, rejected, resources
  return srv
end

describe("OTLP export", function()
  after_each(function() otlp.stop() end)

  it("exports spans with resource attributes, nesting and status", function()
    local srv = receiver()
    assert(otlp.start({ endpoint = srv.url }))
    local sb = assert(sandlot.create("local", { isolation = "none" }))
    assert(sb:exec({ "true" }))
    local _, err = sb:read_file("no-such-file")
    assert.equal("not_found", err.code)
    sb:destroy()
    otlp.flush()
    local stats = otlp.stats()
    srv:close()
    assert.same({}, srv.rejected)
    assert.equal(0, stats.dropped)
    local by = {}
    for _, sp in ipairs(srv.spans) do by[sp.name] = sp end
    assert.truthy(by["sandlot.create"] and by["sandlot.exec"] and by["sandlot.destroy"])
    assert.equal(stats.trace_id, by["sandlot.exec"].traceId)
    assert.equal(2, by["sandlot.read_file"].status.code)     -- not_found: an error status
    assert.equal(1, by["sandlot.exec"].status.code)
    assert.equal("sandlot", srv.resources[1]["service.name"])
    assert.equal(sandlot.version, srv.resources[1]["service.version"])
    assert.equal("lua", srv.resources[1]["telemetry.sdk.language"])
    assert.equal(stats.exported, #srv.spans)
  end)

  it("sends traceparent on HTTP calls, naming an exported span of the same trace", function()
    local srv = receiver()
    local seen
    local api = assert(http.serve({ host = "127.0.0.1", port = 0, handler = function(req)
      seen = req.headers.traceparent
      return { status = 200, body = "ok" }
    end }))
    local no_trace = assert(http.get(api.url .. "/x"))
    assert.equal(200, no_trace.status)
    assert.is_nil(seen)                                     -- off: no header
    assert(otlp.start({ endpoint = srv.url }))
    assert(http.get(api.url .. "/y"))
    otlp.flush()
    api:close()
    srv:close()
    local trace, span = (seen or ""):match("^00%-(%x+)%-(%x+)%-01$")
    assert.equal(otlp.stats() and otlp.stats().trace_id, trace)
    local found = false
    for _, sp in ipairs(srv.spans) do
      if sp.spanId == span then found = sp.kind == 3 end      -- the HTTP client span
    end
    assert.is_true(found, "no exported CLIENT span has the traceparent's span id")
  end)

  it("never blocks or fails an operation when the collector is down or hangs", function()
    -- down: a port nothing listens on
    local gone = assert(http.serve({ host = "127.0.0.1", port = 0, handler = function() end }))
    local url = gone.url
    gone:close()
    assert(otlp.start({ endpoint = url }))
    local sb = assert(sandlot.create("local", { isolation = "none" }))
    local r = assert(sb:exec({ "echo", "fine" }))
    assert.equal("fine\n", r.stdout)
    sb:destroy()
    otlp.flush()
    local stats = otlp.stats()
    assert.truthy(stats.dropped >= 3, "dropped " .. stats.dropped)
    assert.equal(0, stats.exported)
    -- hangs: each export is bounded by otlp.TIMEOUT, and operations do not wait for it
    local slow = receiver({ hang = true })
    local saved = otlp.TIMEOUT
    otlp.TIMEOUT = 0.5
    assert(otlp.start({ endpoint = slow.url }))
    local t0 = require("sandlot.core.timer").now()
    local sb2 = assert(sandlot.create("local", { isolation = "none" }))
    assert(sb2:exec({ "true" }))
    sb2:destroy()
    local op_s = (require("sandlot.core.timer").now() - t0) / 1e9
    otlp.flush()
    otlp.TIMEOUT = saved
    slow:close()
    assert.truthy(op_s < 0.5, ("operations took %.2fs while the collector hung"):format(op_s))
    assert.truthy(otlp.stats().dropped >= 1)
  end)

  it("is switched on by SANDLOT_OTLP_ENDPOINT in a script, and refuses a bad one", function()
    local srv = receiver()
    local script = "local sb = sandlot.create('local', {isolation = 'none'}) " ..
                   "sb:exec({'true'}) sb:destroy()"
    local code, _, err = h.host({ "-e", script }, { env = { SANDLOT_OTLP_ENDPOINT = srv.url } })
    assert.equal(0, code, err)
    h.eventually(function() return #srv.spans >= 3 end, 10)
    srv:close()
    assert.same({}, srv.rejected)
    local c2, _, err2 = h.host({ "-e", "require('sandlot')" },
                               { env = { SANDLOT_OTLP_ENDPOINT = "localhost:4318" } })
    assert.equal(0, c2)
    assert.matches("SANDLOT_OTLP_ENDPOINT: .*must be an http:// or https:// URL", err2)
    assert.is_nil(otlp.start({ endpoint = "ftp://x" }))
  end)
end)
