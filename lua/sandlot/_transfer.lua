-- sandlot._transfer: files moved between the host's disk and a sandbox without holding them
-- whole in memory: sb:read_file(path, {to = local}) and sb:write_file(path, nil, {from = local}).
--
-- read_file: the provider's read_file gets opts.to, a temporary path beside the destination.
-- A provider that streams writes the file there (a chunk at a time: sandlot.fs.sink as the
-- on_frame of c:stream, or SFTP straight to disk) and returns the byte count; one that does not
-- returns the data, which is written there once. Only a complete file is renamed onto the
-- destination: a failure leaves no partial file and the destination as it was.
-- write_file: a provider with capabilities.streams gets data = nil and opts.from, and sends the
-- file in chunks; any other gets the file read once into memory.
local errors = require("sandlot.errors")
local fs = require("sandlot.fs")
local id = require("sandlot.id")

local M = {}

local function part_of(to)
  return to .. ".sandlot-" .. id.hex(8) .. ".part"
end

-- The destination's directory must exist; the destination may not be a directory.
local function check_dest(to)
  local st = fs.stat(to)
  if st and st.type == "directory" then
    return nil, errors.new("invalid_input", ("read_file: opts.to %s is a directory"):format(to))
  end
  local dir = to:match("^(.*)/[^/]*$")
  if dir and dir ~= "" then
    local dst = fs.stat(dir)
    if not dst or dst.type ~= "directory" then
      return nil, errors.new("not_found", ("read_file: no directory %s for opts.to"):format(dir))
    end
  end
  return true
end

---Reads path from the sandbox into the host file `to`. `call(op, ...)` is the sandbox's
---provider call (errors already carry the sandbox's context). Returns the bytes written.
---@param call fun(op: string, ...): any, sandlot.Error?
---@param path string
---@param to string
---@return integer|nil bytes, sandlot.Error? err
function M.read_to(call, path, to)
  local ok, derr = check_dest(to)
  if not ok then return nil, derr end
  local part = part_of(to)
  local r, err = call("read_file", path, { to = part })
  if r == nil then
    os.remove(part)
    return nil, err
  end
  local n
  if type(r) == "string" then                 -- a provider that does not stream
    local sink, serr = fs.sink(part)
    if not sink then return nil, serr end
    local wok, werr = sink(r)
    local fok, ferr = sink:finish()
    if not (wok and fok) then
      os.remove(part)
      return nil, werr or ferr
    end
    n = #r
  elseif math.type(r) == "integer" then
    local st = fs.stat(part)
    if not st or st.size ~= r then
      os.remove(part)
      return nil, errors.new("internal", ("read_file: the provider reported %d bytes written to " ..
        "opts.to, the file holds %s"):format(r, st and tostring(st.size) or "nothing"))
    end
    n = r
  else
    os.remove(part)
    return nil, errors.new("internal", "read_file: the provider returned a " .. type(r) ..
                           " for opts.to (the byte count or the data expected)")
  end
  local rok, rerr = os.rename(part, to)
  if not rok then
    os.remove(part)
    return nil, errors.new("io_error", ("read_file: cannot rename onto %s: %s"):format(to,
                           tostring(rerr)))
  end
  return n
end

---What write_file passes to the provider for a host file `from`: {data = nil, opts = opts
---plus from} when the provider streams (capabilities.streams), else {data = the file's
---contents, opts}; size is the file's.
---@param caps table|nil the provider's capabilities
---@param from string
---@param opts table the provider's write_file opts (mode)
---@return table|nil args {data?, opts, size}, sandlot.Error? err
function M.write_args(caps, from, opts)
  local st, serr = fs.stat(from)
  if not st then
    return nil, errors.new(serr.code or "not_found", ("write_file: opts.from %s: %s")
      :format(from, serr.message or tostring(serr)))
  end
  if st.type ~= "file" then
    return nil, errors.new("invalid_input", ("write_file: opts.from %s is not a file"):format(from))
  end
  if caps and caps.streams then
    local o = { from = from }
    for k, v in pairs(opts) do o[k] = v end
    return { opts = o, size = st.size }
  end
  local data, rerr = fs.read(from)
  if not data then return nil, rerr end
  return { data = data, opts = opts, size = #data }
end

return M
