-- sandlot._native.docker: docker's native checkpoints, its files (tar archives through
-- /containers/{id}/archive), published ports and list/gc; providers/docker.lua installs them,
-- kept apart to keep the provider file within its size. A checkpoint is an image committed from the
-- container (POST /commit, paused while it is taken: ../shared/provider-apis/docker.md), named
-- sandlot-checkpoint:<hex> and labelled sandlot.checkpoint=1, sandlot.checkpoint.of=<sandbox
-- id>, sandlot.checkpoint.comment; its id (sha256:...) is the native id. create_from makes a
-- new container from that image, with the working directory the sandbox had. The image also
-- carries the container's labels; its lifetime and durable id are blanked, so a sandbox made
-- from it has its own.
local errors = require("sandlot.errors")
local check = require("sandlot._check")
local json = require("sandlot.wire.json")
local id = require("sandlot.id")
local tar = require("sandlot.wire.tar")

local M = {}

local REPO = "sandlot-checkpoint"
local IMAGE_ID = "^sha256:" .. ("[0-9a-f]"):rep(64) .. "$"
-- labels of the sandbox that must not pass to the sandboxes made from its image
local BLANK = { "sandlot.expires", "sandlot.durable_id" }

local function image_id(native_id)
  return check.id(native_id, IMAGE_ID, "a docker checkpoint id (sha256:<64 hex>)", 71)
end

local function unix_time(v)
  if math.type(v) == "integer" then return v end
  return nil
end

---Adds checkpoint, checkpoints, create_from, delete_checkpoint, read_file, write_files,
---write_file, get_url, list and gc to the provider table P.
---h: {client = fn(ctx) -> c | nil, err, container = fn(handle) -> path | nil, err,
---inspect = fn(ctx, handle) -> info | nil, err, open = fn(ctx, handle) -> c, path | nil, err,
---resolve = fn(handle, path) -> abs | nil, err, workdir = the default working directory}.
function M.install(P, h)
  ---Commits the container to an image (paused meanwhile): {id, created_at, comment}.
  function P.checkpoint(ctx, handle, opts)
    local c, cerr = h.client(ctx)
    if not c then return nil, cerr end
    local path, perr = h.container(handle)
    if not path then return nil, perr end
    local comment = opts and opts.comment
    local labels = { ["sandlot.checkpoint"] = "1", ["sandlot.checkpoint.of"] = handle.id,
                     ["sandlot.checkpoint.comment"] = comment }
    for _, k in ipairs(BLANK) do labels[k] = "" end
    local made, err = c:call("POST", "/commit", {
      query = { container = handle.container, repo = REPO, tag = id.hex(8), pause = "true",
                comment = comment },
      json = { Labels = labels }, want = { 201 }, timeout = 600 })
    if not made then return nil, err end
    local iid, ierr = image_id(type(made) == "table" and made.Id or nil)
    if not iid then return nil, errors.wrap(ierr, { via = "POST /commit" }) end
    return { id = iid, created_at = os.time(), comment = comment }
  end

  ---The sandbox's checkpoint images, newest first.
  function P.checkpoints(ctx, handle)
    local c, cerr = h.client(ctx)
    if not c then return nil, cerr end
    local sid, serr = check.id(type(handle) == "table" and handle.id or nil, nil,
                               "the handle's sandbox id")
    if not sid then return nil, serr end
    local list, err = c:call("GET", "/images/json", { query = { filters = json.encode({
      label = { "sandlot.checkpoint=1", "sandlot.checkpoint.of=" .. sid } }) }, want = { 200 } })
    if not list then return nil, err end
    if type(list) ~= "table" then
      return nil, errors.new("bad_response", "docker: the image list is not a list")
    end
    local out = {}
    for _, im in ipairs(list) do
      if type(im) == "table" and image_id(im.Id) then
        local labels = type(im.Labels) == "table" and im.Labels or {}
        local comment = labels["sandlot.checkpoint.comment"]
        out[#out + 1] = { id = im.Id, created_at = unix_time(im.Created),
                          comment = comment ~= "" and comment or nil }
      end
    end
    table.sort(out, function(a, b)
      if (a.created_at or 0) ~= (b.created_at or 0) then
        return (a.created_at or 0) > (b.created_at or 0)
      end
      return a.id > b.id
    end)
    return out
  end

  ---Creates a container from a checkpoint image (never pulled: it exists here or nowhere).
  function P.create_from(ctx, opts, native_id)
    local iid, ierr = image_id(native_id)
    if not iid then return nil, ierr end
    local c, cerr = h.client(ctx)
    if not c then return nil, cerr end
    local info, err = c:call("GET", "/images/" .. iid .. "/json", { want = { 200 } })
    if not info then
      if errors.is(err, "not_found") then
        return nil, errors.new("not_found", ("docker: no checkpoint image %s on this daemon " ..
          "(deleted, or taken on another)"):format(iid), { via = err.via, status = err.status })
      end
      return nil, err
    end
    local labels = type(info) == "table" and type(info.Config) == "table"
                   and info.Config.Labels or {}
    if type(labels) ~= "table" or labels["sandlot.checkpoint"] ~= "1" then
      return nil, errors.new("invalid_input", ("docker: image %s is not a sandlot checkpoint")
        :format(iid))
    end
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    o.image, o.pull = iid, false
    local wd = labels["sandlot.workdir"]
    if o.cwd == nil and type(wd) == "string" and wd:match("^/") then o.cwd = wd end
    return P.create(ctx, o)
  end

  ---Removes a checkpoint image (409 while a container made from it still exists).
  function P.delete_checkpoint(ctx, native_id)
    local iid, ierr = image_id(native_id)
    if not iid then return nil, ierr end
    local c, cerr = h.client(ctx)
    if not c then return nil, cerr end
    local ok, err = c:call("DELETE", "/images/" .. iid, { want = { 200 } })
    if ok then return true end
    if err.status == 409 then
      return nil, errors.new("unavailable", ("docker: checkpoint image %s is still used by a " ..
        "container (destroy the sandboxes made from it first): %s"):format(iid, err.message),
        { via = err.via, status = 409, retryable = false })
    end
    return nil, err
  end

  -- Files -------------------------------------------------------------------------------------

  ---Reads a file through GET /containers/{id}/archive (a tar holding the file).
  function P.read_file(ctx, handle, path)
    local c, base = h.open(ctx, handle)
    if not c then return nil, base end
    local abs, aerr = h.resolve(handle, path)
    if not abs then return nil, aerr end
    for _ = 1, 8 do                           -- follows symlinks a few levels
      local body, err = c:call("GET", base .. "/archive", { query = { path = abs },
                               max_body = 8 * 1024 ^ 3 // 1, timeout = 3600, want = { 200 },
                               decode = false })
      if not body then return nil, err end
      local entries, terr = tar.list(body)
      if not entries then return nil, terr end
      local e = entries[1]
      if not e then
        return nil, errors.new("bad_response", ("read %s: the daemon sent no file"):format(path))
      end
      if e.type == "directory" then
        return nil, errors.new("invalid_input", ("%s is a directory"):format(path))
      end
      if e.type ~= "symlink" then return e.data or "" end
      local nxt, lerr = h.resolve(handle, e.linkname:sub(1, 1) == "/" and e.linkname
                                        or abs:match("^(.*)/[^/]*$") .. "/" .. e.linkname)
      if not nxt then return nil, lerr end
      abs = nxt
    end
    return nil, errors.new("invalid_input",
                           ("%s: too many levels of symbolic links"):format(path))
  end

  -- PUT /archive refusing a file over a directory, or a directory over a file.
  local function refused(_, msg)
    if msg:find("overwrite") or msg:find("not a directory") then return "invalid_input" end
  end

  ---Writes several files in one archive (parent directories are created by the daemon).
  function P.write_files(ctx, handle, files)
    local c, path = h.open(ctx, handle)
    if not c then return nil, path end
    local entries = {}
    for i, f in ipairs(files) do
      local abs, err = h.resolve(handle, f.path)
      if not abs then return nil, err end
      entries[i] = { name = abs:sub(2), data = f.data, mode = f.mode }
    end
    local pieces, size = tar.archive(entries)
    local ok, err = c:call("PUT", path .. "/archive", {
      query = { path = "/", noOverwriteDirNonDir = "true" },
      headers = { ["Content-Type"] = "application/x-tar" }, body_size = size,
      timeout = 60 + size / 1e6, body = pieces,
      want = { 200 }, errors = { [400] = refused, [500] = refused, [403] = "permission_denied" } })
    if not ok then return nil, err end
    return true
  end

  function P.write_file(ctx, handle, path, data, opts)
    return P.write_files(ctx, handle, { { path = path, data = data, mode = opts and opts.mode } })
  end

  ---http://127.0.0.1:<published port> for a port given to create's `ports`.
  function P.get_url(ctx, handle, port)
    local info, err = h.inspect(ctx, handle)
    if not info then return nil, err end
    local ports = (info.NetworkSettings or {}).Ports
    local b = type(ports) == "table" and ports[port .. "/tcp"]
    if type(b) ~= "table" or type(b[1]) ~= "table" then
      return nil, errors.new("invalid_input", ("port %d is not published (create with ports = " ..
        "{%d} and network = \"all\")"):format(port, port))
    end
    local ip = b[1].HostIp
    if ip == nil or ip == "" or ip == "0.0.0.0" then ip = "127.0.0.1" end
    if ip:find(":") then ip = "[" .. ip .. "]" end
    return ("http://%s:%s"):format(ip, b[1].HostPort)
  end

  -- list and gc -------------------------------------------------------------------------------

  -- GET /containers/json for sandlot containers with every label given (k = v, or k = true
  -- for "has k").
  local function containers(ctx, labels)
    local c, cerr = h.client(ctx)
    if not c then return nil, cerr end
    local filter = { "sandlot=1" }
    for k, v in pairs(labels or {}) do
      filter[#filter + 1] = v == true and tostring(k) or tostring(k) .. "=" .. tostring(v)
    end
    table.sort(filter)                       -- one query for one set of labels
    local list, err = c:call("GET", "/containers/json", {
      query = { all = "true", filters = json.encode({ label = filter }) }, want = { 200 } })
    if not list then return nil, err end
    if type(list) ~= "table" then
      return nil, errors.new("bad_response", "docker: the container list is not a list")
    end
    return list
  end

  ---Lists the provider's sandboxes (plain handles, as create returns them), optionally only
  ---those carrying the given labels.
  ---@param opts? {labels?: table<string, string|true>}
  ---@return table[]|nil handles, sandlot.Error? err
  function P.list(ctx, opts)
    local list, err = containers(ctx, opts and opts.labels)
    if not list then return nil, err end
    local out = {}
    for _, ct in ipairs(list) do
      local labels = ct.Labels or {}
      if type(labels["sandlot.id"]) == "string" then
        out[#out + 1] = { id = labels["sandlot.id"], container = ct.Id,
                          workdir = labels["sandlot.workdir"] or h.workdir, image = ct.Image,
                          labels = labels, created_at = ct.Created }
      end
    end
    table.sort(out, function(x, y) return x.id < y.id end)
    return out
  end

  ---Lists sandlot containers and removes those the rule (see the top of this file) selects.
  ---@param opts? {all?: boolean, older_than?: number, dry_run?: boolean}
  ---@return table|nil report {{id, container, state, reason, removed}}, sandlot.Error? err
  function P.gc(ctx, opts)
    opts = opts or {}
    local list, err = containers(ctx, nil)
    if not list then return nil, err end
    local now = os.time()
    local report = {}
    for _, ct in ipairs(list) do
      local labels = ct.Labels or {}
      local reason
      if labels["sandlot.keep"] == "1" then reason = nil
      elseif opts.all then reason = "all"
      elseif ct.State ~= "running" and ct.State ~= "paused" then reason = ct.State
      elseif tonumber(labels["sandlot.expires"] or "") and
             tonumber(labels["sandlot.expires"]) < now then reason = "expired"
      elseif opts.older_than and ct.Created and now - ct.Created > opts.older_than then
        reason = "older than " .. opts.older_than .. "s"
      end
      local entry = { id = labels["sandlot.id"], container = ct.Id, state = ct.State,
                      reason = reason or "kept", removed = false }
      if reason and not opts.dry_run then
        entry.removed = P.destroy(ctx, { container = ct.Id }) == true
      end
      report[#report + 1] = entry
    end
    return report
  end
end

return M
