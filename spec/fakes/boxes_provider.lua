-- spec/fakes/boxes_provider.lua: the small HTTP provider of providers/README.md ("An HTTP
-- provider"), for the "boxes" fake service (spec/fakes/boxes.lua). Only mapping: endpoint,
-- auth, errors and polling come from sandlot.api, the exec stream from sandlot.wire.ndjson.
local api = require("sandlot.api")
local errors = require("sandlot.errors")
local ndjson = require("sandlot.wire.ndjson")
local b64 = require("sandlot.wire.base64")

local M = {
  name = "boxes",
  description = "the boxes fake service (a walkthrough of the provider kit)",
  capabilities = {},
  config = { url = "string", token = "string" },
}

local specs = {}                          -- base URL -> api spec, made once

local function client(ctx)
  local url = ctx.config.url
  if not specs[url] then
    specs[url] = { name = "boxes", base_url = url,
                   auth = { header = "Authorization", prefix = "Bearer ", config = "token" },
                   errors = { [409] = "unavailable" } }   -- 409: the box is not running yet
  end
  return api.client(ctx, specs[url])
end

-- /v1/boxes/<id><tail>, the id checked before it enters the path
local function box(handle, tail)
  local sid, err = api.segment(handle.id)
  if not sid then return nil, err end
  return "/v1/boxes/" .. sid .. (tail or "")
end

function M.status(ctx, handle)
  local path, perr = box(handle)
  if not path then return nil, perr end
  local b, err = client(ctx):call("GET", path)
  if not b then
    if err.code == "not_found" then return "terminated" end
    return nil, err
  end
  return ({ running = "running", starting = "stopped" })[b.state] or "unknown"
end

function M.create(ctx, opts)
  local c = client(ctx)
  local b, err = c:call("POST", "/v1/boxes", { json = { image = opts.image, env = opts.env },
                                               want = { 201 } })
  if not b then return nil, err end
  local handle = { id = b.id }
  local ok, werr = c:poll(function()
    local st, serr = M.status(ctx, handle)
    if not st then return nil, serr end
    return st == "running"
  end, { timeout = opts.timeout or 60, interval = 0.05, max_interval = 1,
         what = "the box did not start" })
  if not ok then return nil, werr end
  return handle
end

function M.exec(ctx, handle, argv, opts)
  local path, perr = box(handle, "/exec")
  if not path then return nil, perr end
  local out, errs, done = {}, {}, nil
  local stdin = opts.stdin
  if type(stdin) == "function" then
    local parts = {}
    for chunk in stdin do parts[#parts + 1] = chunk end
    stdin = table.concat(parts)
  end
  local ok, err = client(ctx):stream("POST", path, {
    json = { argv = argv, env = opts.env, cwd = opts.cwd, timeout = opts.timeout,
             stdin = stdin and b64.encode(stdin) },
    timeout = opts.timeout and opts.timeout + 30 or false,
    on_frame = ndjson.decoder(function(m)
      if m.stream then
        local data, derr = b64.decode(m.data)
        if not data then return nil, derr end
        local into = m.stream == "stderr" and errs or out
        into[#into + 1] = data
        local hook = m.stream == "stderr" and opts.on_stderr or opts.on_stdout
        if hook then hook(data) end
      elseif m.error then
        done = errors.new(m.error.code == "not_found" and "not_found" or "io_error",
                          tostring(m.error.message))
      elseif m.exit_code then
        done = m
      end
    end) })
  if not ok then return nil, err end
  if done == nil then return nil, errors.new("bad_response", "the exec stream had no end") end
  if errors.is(done) then return nil, done end
  -- (a provider on the kit hands frames to sandlot.exec.sink once it lands)
  return { exit_code = done.exit_code, stdout = table.concat(out), stderr = table.concat(errs),
           timed_out = done.timed_out == true, truncated = false }
end

function M.destroy(ctx, handle)
  local path, perr = box(handle)
  if not path then return nil, perr end
  local ok, err = client(ctx):call("DELETE", path, { want = { 204 } })
  if ok or err.code == "not_found" then return true end
  return nil, err
end

return M
