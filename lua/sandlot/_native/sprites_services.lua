-- sandlot._native.sprites_services: Sprites' services as provider extensions
-- (providers/sprites.lua installs them as M.extensions), kept apart to keep the provider file
-- within its size.
-- sb:extension("service_put", name, {cmd, args, env, dir, needs, http_port}) and the rest:
-- Sprites' own supervised processes (they survive execs and restart), one of which may take
-- the sprite URL's HTTP port. PUT, start and stop answer a log stream ({type: stdout|stderr|
-- exit|error|complete|started|stopping|stopped, data, exit_code, timestamp}), read until the
-- service has started or stopped (or failed), at most request_timeout seconds.
-- Reference: ../shared/provider-apis/sprites.md.
local api = require("sandlot.api")
local errors = require("sandlot.errors")
local json = require("sandlot.wire.json")
local ndjson = require("sandlot.wire.ndjson")
local check = require("sandlot._check")

local M = {}

local SERVICE = "^[%w][%w_.%-]*$"
local DONE = { started = true, stopped = true, complete = true }

local function fail(code, fmt, ...)
  return nil, errors.new(code, fmt:format(...))
end

local function service_of(v)
  if type(v) ~= "table" or type(v.name) ~= "string" then return nil end
  local st = type(v.state) == "table" and v.state or {}
  return { name = v.name, cmd = v.cmd, args = v.args, env = v.env, dir = v.dir, needs = v.needs,
           http_port = v.http_port, status = st.status, pid = st.pid, error = st.error,
           restart_count = st.restart_count }
end

---Sets the provider table P's extensions (service_put, service_list, service_get,
---service_delete, service_start, service_stop, service_logs), given the file's own helpers
---h: {client = fn(ctx) -> api client, path_of = fn(handle, tail) -> /v1/sprites/{name}..,
---request_timeout = fn(ctx) -> seconds}.
function M.install(P, h)
  local client, path_of, request_timeout = h.client, h.path_of, h.request_timeout
  local X = {}
  P.extensions = X

  local function service_path(handle, name, what)
    local n, err = check.id(name, SERVICE, "a service name", 63)
    if not n then return nil, err end
    return path_of(handle, "/services/" .. api.segment(n) .. (what or ""))
  end

  -- A service's log stream until one of `until_` (or its end): the events, or nil, err.
  local function log_stream(ctx, method, p, opts, until_)
    local events, failed, enough = {}, nil, false
    local res, err = client(ctx):stream(method, p, {
      json = opts.json, query = opts.query, want = { 200 }, retry = false,
      timeout = request_timeout(ctx), errors = { [409] = "already_exists" },
      on_frame = ndjson.decoder(function(m)
        if type(m) ~= "table" then return true end
        events[#events + 1] = { type = m.type, data = m.data, exit_code = m.exit_code,
                                timestamp = m.timestamp }
        if m.type == "error" then failed = tostring(m.data or m.error or "failed") end
        if until_[m.type] or m.type == "error" then   -- stop reading: the rest is not ours
          enough = true
          return nil, errors.new("cancelled", "enough of the log stream")
        end
        return true
      end) })
    if not res and not enough and not (err.code == "timeout" and #events > 0) then
      return nil, err
    end
    if failed then return fail("io_error", "sprites service: %s", client(ctx):scrub(failed)) end
    return events
  end

  ---Creates (or replaces) and starts a service: spec = {cmd, args?, env?, dir?, needs?,
  ---http_port?}; returns its start-up log events. 409 (a second HTTP service) is
  ---already_exists.
  function X.service_put(ctx, handle, name, spec)
    if type(spec) ~= "table" or type(spec.cmd) ~= "string" then
      error("service_put: spec.cmd must be a string", 3)
    end
    check.opts(spec, { cmd = "string", args = "table", env = "table", dir = "string",
                       needs = "table", http_port = "integer" }, "service_put", 4)
    local p, perr = service_path(handle, name)
    if not p then return nil, perr end
    local body = { cmd = spec.cmd, args = spec.args and json.array(spec.args) or nil,
                   env = spec.env, dir = spec.dir, needs = spec.needs and json.array(spec.needs)
                   or nil, http_port = spec.http_port }
    return log_stream(ctx, "PUT", p, { json = body }, DONE)
  end

  ---Lists the sprite's services: {{name, cmd, args, http_port, status, pid, ...}}.
  function X.service_list(ctx, handle)
    local p, perr = path_of(handle, "/services")
    if not p then return nil, perr end
    local v, err = client(ctx):call("GET", p, { want = { 200 } })
    if not v then return nil, err end
    local list = type(v) == "table" and (v.services or v) or {}
    local out = {}
    for _, x in ipairs(list) do out[#out + 1] = service_of(x) end
    return out
  end

  ---One service and its state, or not_found.
  function X.service_get(ctx, handle, name)
    local p, perr = service_path(handle, name)
    if not p then return nil, perr end
    local v, err = client(ctx):call("GET", p, { want = { 200 } })
    if not v then return nil, err end
    return service_of(v) or fail("bad_response", "GET /services: not a service")
  end

  ---Stops and removes a service. Idempotent.
  function X.service_delete(ctx, handle, name)
    local p, perr = service_path(handle, name)
    if not p then return nil, perr end
    local ok, err = client(ctx):call("DELETE", p, { want = { 204, 200 }, decode = false })
    if ok or err.code == "not_found" then return true end
    return nil, err
  end

  function X.service_start(ctx, handle, name)
    local p, perr = service_path(handle, name, "/start")
    if not p then return nil, perr end
    return log_stream(ctx, "POST", p, {}, DONE)
  end

  ---Stops a service; one not running (409) is stopped already.
  function X.service_stop(ctx, handle, name)
    local p, perr = service_path(handle, name, "/stop")
    if not p then return nil, perr end
    local ev, err = log_stream(ctx, "POST", p, {}, { stopped = true, complete = true })
    if not ev and err.status == 409 then return {} end
    return ev, err
  end

  ---The service's recent log events (opts.lines, default 100).
  function X.service_logs(ctx, handle, name, opts)
    local p, perr = service_path(handle, name, "/logs")
    if not p then return nil, perr end
    return log_stream(ctx, "GET", p, { query = { lines = (opts and opts.lines) or 100 } }, {})
  end
end

return M
