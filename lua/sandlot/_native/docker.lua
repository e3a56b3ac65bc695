-- sandlot._native.docker: docker's native checkpoints (providers/docker.lua installs them), kept
-- apart to keep the provider file within its size. A checkpoint is an image committed from the
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

---Adds checkpoint, checkpoints, create_from and delete_checkpoint to the provider table P.
---h: {client = fn(ctx) -> c | nil, err, container = fn(handle) -> path | nil, err}.
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
end

return M
