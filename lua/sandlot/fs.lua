-- sandlot.fs: local file-system calls for providers and scripts (the thin Lua face of
-- sandlot.core.fs). fs.root(dir) opens a confined root: every path given to its methods is
-- resolved below dir, and `..` or a symlink leaving it is refused with invalid_input.
-- fs.path(base, path) is the lexical join for paths a provider resolves on its own side.
local core = require("sandlot.core.fs")
local errors = require("sandlot.errors")
local check = require("sandlot._check")

local d = require("sandlot._doc").register
local M = {
  root = d(core.root, "Opens a confined root at dir: root:stat/lstat/resolve/readdir/mkdir/" ..
           "unlink/rmdir/rmtree/rename/readlink/open/close\nresolve every path below dir and " ..
           "refuse `..` or a symlink leaving it (invalid_input).\n@param dir string\n" ..
           "@return userdata|nil root, sandlot.Error? err", "(dir)"),
  stat = d(core.stat, "Returns {type, size, mode, mtime, ...} of a path (following symlinks).\n" ..
           "@return table|nil st, sandlot.Error? err not_found, permission_denied", "(path)"),
  lstat = d(core.lstat, "As stat, without following a final symlink.", "(path)"),
  mkdir = d(core.mkdir, "Creates a directory.\n@param path string\n@param mode? integer\n" ..
            "@return true|nil ok, sandlot.Error? err", "(path, mode)"),
  chmod = d(core.chmod, "Changes a path's mode.\n@return true|nil ok, sandlot.Error? err",
            "(path, mode)"),
  symlink = d(core.symlink, "Creates a symlink at path pointing to target.\n" ..
              "@return true|nil ok, sandlot.Error? err", "(target, path)"),
  readlink = d(core.readlink, "Returns a symlink's target.\n@return string|nil target, " ..
               "sandlot.Error? err", "(path)"),
}

---Joins path to base and normalizes the result lexically, touching no file: empty and `.`
---components are dropped and `..` removes the one before it; a `..` that would climb above
---"/" is refused, never clamped. For providers that resolve a sandbox's paths themselves
---(docker: relative to the working directory; ssh: below its root, with base "/").
---@param base string an absolute directory, the base of a relative path
---@param path string absolute or relative
---@return string|nil abs a normalized absolute path ("/" or "/a/b"), sandlot.Error? err
---  invalid_input for a `..` above "/" or a NUL byte
function M.path(base, path)
  if type(base) ~= "string" or base:sub(1, 1) ~= "/" then
    error("sandlot.fs.path: base must be an absolute path", 2)
  end
  if type(path) ~= "string" then error("sandlot.fs.path: path must be a string", 2) end
  local full = path:sub(1, 1) == "/" and path or base .. "/" .. path
  local shown = #path > 80 and path:sub(1, 80) .. "..." or path
  if full:find("%z") then
    return nil, errors.new("invalid_input", ("path %q contains a NUL byte"):format(shown))
  end
  local parts = {}
  for part in full:gmatch("[^/]+") do
    if part == ".." then
      if #parts == 0 then
        return nil, errors.new("invalid_input",
          ("path %q leaves the sandbox: '..' climbs above /"):format(shown))
      end
      parts[#parts] = nil
    elseif part ~= "." then
      parts[#parts + 1] = part
    end
  end
  return "/" .. table.concat(parts, "/")
end

---A path in a sandbox, for providers: `path` resolved against the handle's workdir (checked:
---an absolute path without NUL or newline, at most 4096 bytes), else against `default`.
---@param handle table a provider handle ({workdir?})
---@param default string the provider's working directory
---@param path string absolute or relative
---@return string|nil abs, sandlot.Error? err invalid_input
function M.in_workdir(handle, default, path)
  local wd = default
  if handle.workdir ~= nil then
    local w, err = check.id(handle.workdir, "^/[^%z\n]*$",
                            "the handle's workdir", 4096)
    if not w then return nil, err end
    wd = w
  end
  return M.path(wd, path)
end

---Creates a directory and its missing parents (plain host path).
---@param path string
---@param mode? integer applied to the directories it creates (default 0755)
---@return true|nil ok, sandlot.Error? err
function M.mkdir_p(path, mode)
  local prefix = path:sub(1, 1) == "/" and "/" or ""
  local cur = prefix
  for part in path:gmatch("[^/]+") do
    cur = (cur == "" or cur == "/") and (cur .. part) or (cur .. "/" .. part)
    local ok, err = core.mkdir(cur, mode)
    if not ok and err.code ~= "already_exists" then return nil, err end
  end
  local st, err = core.stat(path)
  if not st then return nil, err end
  if st.type ~= "directory" then
    return nil, errors.new("invalid_input", path .. ": not a directory")
  end
  return true
end

---Creates a directory and its missing parents below a confined root.
---@param root userdata a sandlot.fs.root
---@param rel string
---@param mode? integer
---@return true|nil ok, sandlot.Error? err
function M.mkdir_below(root, rel, mode)
  local cur = ""
  for part in rel:gmatch("[^/]+") do
    cur = cur == "" and part or (cur .. "/" .. part)
    if part ~= "." and part ~= ".." then
      local ok, err = root:mkdir(cur, mode)
      if not ok then
        if err.code ~= "already_exists" then return nil, err end
        local st, serr = root:stat(cur)
        if not st then return nil, serr end
        if st.type ~= "directory" then
          return nil, errors.new("invalid_input", cur .. ": exists and is not a directory")
        end
      end
    end
  end
  return true
end

local function io_code(msg)
  return msg:find("No such file") and "not_found"
      or msg:find("Permission denied") and "permission_denied"
      or msg:find("Is a directory") and "invalid_input" or "io_error"
end

---Reads a whole host file.
---@param path string
---@return string|nil data, sandlot.Error? err
function M.read(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, errors.new(io_code(err), err) end
  local data = f:read("a")
  f:close()
  return data
end

---Writes a whole host file atomically (temporary file, then rename) with the given mode.
---@param path string
---@param data string
---@param mode? integer default 0600
---@return true|nil ok, sandlot.Error? err
function M.write(path, data, mode)
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then return nil, errors.new("io_error", err) end
  core.chmod(tmp, mode or 384)
  local ok, werr = f:write(data)
  f:close()
  if not ok then
    os.remove(tmp)
    return nil, errors.new("io_error", tostring(werr))
  end
  local rok, rerr = os.rename(tmp, path)
  if not rok then return nil, errors.new("io_error", tostring(rerr)) end
  return true
end

local Sink = {}
Sink.__index = Sink

function Sink:__call(chunk)
  if not self._f then return nil, errors.new("io_error", "fs.sink: already finished") end
  local ok, err = self._f:write(chunk)
  if not ok then
    return nil, errors.new("io_error", ("cannot write %s: %s"):format(self.path, tostring(err)))
  end
  self.bytes = self.bytes + #chunk
  return true
end

---Ends the file: closes it. Returns true, or nil, err (io_error) when the data did not reach it.
function Sink:finish()
  local f = self._f
  if not f then return true end
  self._f = nil
  local ok, err = f:close()
  if not ok then
    return nil, errors.new("io_error", ("cannot write %s: %s"):format(self.path, tostring(err)))
  end
  return true
end

Sink.close = Sink.finish
Sink.__close = Sink.finish
Sink.__gc = function(self) if self._f then self._f:close() end end

---Creates a host file for writing in pieces (mode 0600; failing with already_exists if the
---path exists, and never through a symlink): sink(chunk) -> true | nil, err; sink:finish()
---closes it; sink.bytes counts what was written. It is the on_frame of an api client's
---c:stream, so a download goes to disk a chunk at a time.
---@param path string
---@return table|nil sink, sandlot.Error? err not_found (no such directory), already_exists,
---  permission_denied
function M.sink(path)
  local dir, base = path:match("^(.*)/([^/]+)$")
  if not dir then dir, base = ".", path end
  local root, rerr = core.root(dir == "" and "/" or dir)
  if not root then return nil, rerr end
  local f, err = root:open(base, "x", 384)
  root:close()
  if not f then return nil, err end
  return setmetatable({ _f = f, path = path, bytes = 0 }, Sink)
end

---Opens a host file for reading in chunks: returns a producer (each call the next chunk of at
---most `chunk` bytes, then nil, closing the file) and the file's size, as sandlot.http's
---body producer and body_size take them.
---@param path string
---@param chunk? integer bytes per piece, default 1 MiB
---@return function|nil producer, integer|sandlot.Error size_or_err
function M.source(path, chunk)
  chunk = chunk or 1048576
  local st, serr = core.stat(path)
  if not st then return nil, serr end
  if st.type ~= "file" then return nil, errors.new("invalid_input", path .. " is not a file") end
  local f, err = io.open(path, "rb")
  if not f then return nil, errors.new(io_code(err), err) end
  return function()
    if not f then return nil end
    local piece = f:read(chunk)
    if piece == nil then
      f:close()
      f = nil
    end
    return piece
  end, st.size
end

return M
