-- sandlot._native.daytona: Daytona's native checkpoints (providers/daytona.lua installs them),
-- kept apart to keep the provider file within its size. A checkpoint is a Daytona snapshot of
-- the sandbox (POST /sandbox/{id}/snapshot {name}: the sandbox is `snapshotting`, then back;
-- the snapshot is built until `active`), named sandlot-<sandbox id>-<hex> so that a sandbox's
-- own are found with GET /snapshots?name= (a case-insensitive substring match, filtered here
-- by prefix); its id is the native id. create_from creates a sandbox with snapshot = that id,
-- after GET /snapshots/{id} (the service answers an unknown snapshot with a 400 on create).
-- Reference: ../shared/provider-apis/daytona.md.
local errors = require("sandlot.errors")
local check = require("sandlot._check")
local api = require("sandlot.api")
local id = require("sandlot.id")

local M = {}

M.TIMEOUT = 600            -- seconds a snapshot may take to become active
local ID = "^[%w][%w_.%-]*$"

local function fail(code, fmt, ...)
  return nil, errors.new(code, fmt:format(...))
end

local function snapshot_id(v)
  return check.id(v, ID, "a Daytona snapshot id", 128)
end

---Adds checkpoint, checkpoints, create_from and delete_checkpoint to the provider table P.
---h: {main = fn(ctx) -> client, call = fn(c, method, path, opts), sandbox_path = fn(handle,
---tail), wait_state = fn(ctx, handle, want, timeout, what), time = fn(rfc3339) -> unix s}.
function M.install(P, h)
  local function get(c, key)
    local seg, serr = api.segment(key)
    if not seg then return nil, serr end
    local sn, err = c:call("GET", "/snapshots/" .. seg, { want = { 200 } })
    if not sn then return nil, err end
    if type(sn) ~= "table" or not snapshot_id(sn.id) then
      return fail("bad_response", "GET /snapshots/{id}: not a snapshot")
    end
    return sn
  end

  local function wait_active(c, name)
    return c:poll(function()
      local sn, err = get(c, name)
      if not sn then return nil, err end
      if sn.state == "active" then return sn end
      if sn.state == "error" or sn.state == "build_failed" then
        return nil, errors.new("unavailable", ("snapshot %s is in state %s: %s"):format(name,
          sn.state, c:scrub(tostring(sn.errorReason or "no reason given"))), { retryable = false })
      end
      return false
    end, { timeout = M.TIMEOUT, interval = 0.1, max_interval = 2,
           what = ("snapshot %s is not active"):format(name) })
  end

  ---Snapshots the sandbox and waits until the snapshot is active: {id, created_at, comment}.
  function P.checkpoint(ctx, handle, opts)
    local c, cerr = h.main(ctx)
    if not c then return nil, cerr end
    local path, perr = h.sandbox_path(handle, "/snapshot")
    if not path then return nil, perr end
    local name = ("sandlot-%s-%s"):format(handle.id, id.hex(6))
    local ok, err = h.call(c, "POST", path, { json = { name = name }, want = { 200, 201 } })
    if not ok then return nil, err end
    local back, werr = h.wait_state(ctx, handle, { started = true }, M.TIMEOUT,
                                    "started after the snapshot")
    if not back then return nil, werr end
    local sn, serr = wait_active(c, name)
    if not sn then return nil, serr end
    return { id = sn.id, created_at = h.time(sn.createdAt), comment = opts and opts.comment }
  end

  ---The sandbox's snapshots (GET /snapshots?name=sandlot-<id>-, every page), newest first.
  function P.checkpoints(ctx, handle)
    local c, cerr = h.main(ctx)
    if not c then return nil, cerr end
    local path, perr = h.sandbox_path(handle)
    if not path then return nil, perr end
    local prefix = ("sandlot-%s-"):format(handle.id)
    local out = {}
    for page = 1, 100 do
      local v, err = c:call("GET", "/snapshots", { query = { name = prefix, page = page,
                                                             limit = 100 }, want = { 200 } })
      if not v then return nil, err end
      if type(v) ~= "table" or type(v.items) ~= "table" then
        return fail("bad_response", "GET /snapshots: no items")
      end
      for _, sn in ipairs(v.items) do
        if type(sn) == "table" and snapshot_id(sn.id) and type(sn.name) == "string"
           and sn.name:sub(1, #prefix) == prefix and sn.state ~= "removing" then
          out[#out + 1] = { id = sn.id, created_at = h.time(sn.createdAt) }
        end
      end
      if page >= (math.tointeger(v.totalPages) or 1) then break end
    end
    table.sort(out, function(a, b)
      if a.created_at ~= b.created_at then return a.created_at > b.created_at end
      return a.id > b.id
    end)
    return out
  end

  ---Creates a sandbox from an active snapshot.
  function P.create_from(ctx, opts, native_id)
    local sid, ierr = snapshot_id(native_id)
    if not sid then return nil, ierr end
    local c, cerr = h.main(ctx)
    if not c then return nil, cerr end
    local sn, err = get(c, sid)
    if not sn then
      if errors.is(err, "not_found") then
        return fail("not_found", "daytona: no snapshot %s (deleted?)", sid)
      end
      return nil, err
    end
    if sn.state ~= "active" then
      return fail("unavailable", "daytona: snapshot %s is %s, not active", sid,
                  tostring(sn.state))
    end
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    o.snapshot = sn.id
    return P.create(ctx, o)
  end

  ---Deletes a snapshot (DELETE /snapshots/{id}).
  function P.delete_checkpoint(ctx, native_id)
    local sid, ierr = snapshot_id(native_id)
    if not sid then return nil, ierr end
    local c, cerr = h.main(ctx)
    if not c then return nil, cerr end
    local ok, err = c:call("DELETE", "/snapshots/" .. api.segment(sid), { want = { 200, 204 } })
    if ok == nil then return nil, err end
    return true
  end
end

return M
