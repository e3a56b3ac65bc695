-- sandlot.wire.tar: a small ustar writer and reader (with PAX records for long or non-ASCII
-- names and big sizes, and GNU long names when reading), for providers that move files as tar
-- archives (Docker's archive endpoints), optionally gzip-compressed (sandlot.wire.gzip). Data
-- is never copied into a plain archive: the writer returns the pieces, which callers stream
-- one after another. The reader never raises: a malformed archive is a bad_response.
local errors = require("sandlot.errors")
local gzip = require("sandlot.wire.gzip")

local M = {}

local BLOCK = 512
local ZEROS = ("\0"):rep(BLOCK)

local function octal(n, width)             -- width counts the terminating NUL
  local s = ("%o"):format(n)
  if #s > width - 1 then return nil end
  return ("0"):rep(width - 1 - #s) .. s .. "\0"
end

local function field(s, width)
  s = s or ""
  if #s > width then return nil end
  return s .. ("\0"):rep(width - #s)
end

local function raw_header(name, size, mode, typeflag, mtime, linkname, prefix)
  local parts = {
    field(name, 100), octal(mode, 8), octal(0, 8), octal(0, 8), octal(size, 12),
    octal(mtime, 12), "        ", typeflag, field(linkname, 100), "ustar\0", "00",
    field("root", 32), field("root", 32), octal(0, 8), octal(0, 8), field(prefix, 155),
    ("\0"):rep(12),
  }
  local h = table.concat(parts)
  assert(#h == BLOCK, "tar: bad header layout")
  local sum = 0
  for i = 1, BLOCK do sum = sum + h:byte(i) end
  return h:sub(1, 148) .. ("%06o\0 "):format(sum) .. h:sub(157)
end

local function pad(size)
  local r = size % BLOCK
  return r == 0 and "" or ZEROS:sub(1, BLOCK - r)
end

local function pax_record(key, value)
  local body = " " .. key .. "=" .. value .. "\n"
  local n = #body + 1
  while #tostring(n) + #body ~= n do n = #tostring(n) + #body end
  return n .. body
end

-- Splits a name into ustar's prefix and name fields, or returns nil when it cannot fit.
local function split_name(name)
  if #name <= 100 then return "", name end
  for i = #name - 1, 1, -1 do
    if name:sub(i, i) == "/" and i - 1 <= 155 and #name - i <= 100 then
      return name:sub(1, i - 1), name:sub(i + 1)
    end
  end
  return nil
end

local TYPEFLAG = { file = "0", directory = "5", symlink = "2" }

---Returns the pieces (strings) of one archive entry: headers, the data itself (not copied),
---padding. entry = {name, data | size, type = "file"|"directory"|"symlink", mode, mtime,
---linkname}.
---@param e table
---@return string[] pieces
function M.entry(e)
  local data = e.data or ""
  local typ = e.type or "file"
  local size = typ == "file" and #data or 0
  local name = e.name
  if typ == "directory" and name:sub(-1) ~= "/" then name = name .. "/" end
  local mode = e.mode or (typ == "directory" and 493 or 420)
  local mtime = e.mtime or os.time()
  local pieces = {}
  local prefix, short = split_name(name)
  local records = {}
  if not prefix or name:find("[\128-\255]") then
    records[#records + 1] = pax_record("path", name)
    prefix, short = "", name:sub(-100):gsub("[\128-\255]", "_")
  end
  if size >= 8 ^ 11 then records[#records + 1] = pax_record("size", tostring(size)) end
  if e.linkname and #e.linkname > 100 then
    records[#records + 1] = pax_record("linkpath", e.linkname)
  end
  if #records > 0 then
    local pax = table.concat(records)
    pieces[#pieces + 1] = raw_header("PaxHeaders/" .. short:sub(-80), #pax, 420, "x", mtime,
                                     "", "")
    pieces[#pieces + 1] = pax .. pad(#pax)
  end
  pieces[#pieces + 1] = raw_header(short, size >= 8 ^ 11 and 0 or size, mode,
                                   TYPEFLAG[typ] or "0", mtime,
                                   (e.linkname or ""):sub(1, 100), prefix)
  if size > 0 then
    pieces[#pieces + 1] = data
    if size % BLOCK ~= 0 then pieces[#pieces + 1] = pad(size) end
  end
  return pieces
end

---Returns the pieces of a whole archive of entries (see M.entry), end marker included. With
---opts.gzip the archive is compressed (.tar.gz) and comes back as one piece.
---@param entries table[]
---@param opts? {gzip?: boolean, level?: integer}
---@return string[] pieces, integer size
function M.archive(entries, opts)
  local pieces, size = {}, 0
  for _, e in ipairs(entries) do
    if type(e) ~= "table" or type(e.name) ~= "string" or e.name == "" then
      error("tar.archive: each entry needs a name", 2)
    end
    for _, p in ipairs(M.entry(e)) do
      pieces[#pieces + 1] = p
      size = size + #p
    end
  end
  pieces[#pieces + 1] = ZEROS .. ZEROS
  size = size + 2 * BLOCK
  if opts and opts.gzip then
    local gz = gzip.compress(pieces, { level = opts.level })
    return { gz }, #gz
  end
  return pieces, size
end

local function cstr(s)
  return (s:match("^[^%z]*"))
end

local function number(s)
  local b = s:byte(1)
  if b and b >= 128 then                   -- base-256 (GNU) for big values
    local n = b & 0x7f
    for i = 2, #s do n = n * 256 + s:byte(i) end
    return n
  end
  return tonumber(cstr(s):match("^%s*([0-7]*)"), 8) or 0
end

local function parse_pax(data, into)
  local pos = 1
  while pos <= #data do
    local digits = data:match("^(%d+) ", pos)
    local len = tonumber(digits or "")
    if not len or len <= #digits + 1 or pos + len - 1 > #data then
      return nil, "malformed PAX record"
    end
    local rec = data:sub(pos, pos + len - 1)
    local k, v = rec:match("^%d+ ([^=]+)=(.*)\n$")
    if not k then return nil, "malformed PAX record" end
    into[k] = v
    pos = pos + len
  end
  return true
end

local TYPES = { ["0"] = "file", ["\0"] = "file", ["7"] = "file", ["5"] = "directory",
                ["2"] = "symlink", ["1"] = "link" }

local function bad(fmt, ...)
  return nil, errors.new("bad_response", "tar: " .. fmt:format(...), { retryable = false })
end

---Reads the entries of an archive held in a string: a list of
---{name, type, size, mode, mtime, linkname, data} (data for files only; type "file",
---"directory", "symlink", "link" or "other"). With opts.gzip the string is a .tar.gz,
---inflated to at most opts.max_size bytes first.
---@param s string
---@param opts? {gzip?: boolean, max_size?: integer}
---@return table[]|nil entries
---@return sandlot.Error? err bad_response: a bad checksum, truncated data, bad PAX records,
---  a corrupt gzip stream or one that inflates past max_size
function M.list(s, opts)
  if type(s) ~= "string" then return bad("expected the archive as a string") end
  if opts and opts.gzip then
    local plain, err = gzip.decompress(s, { max_output = opts.max_size })
    if not plain then return nil, err end
    s = plain
  end
  local out = {}
  local pos = 1
  local pax, global = {}, {}
  local longname, longlink
  while pos + BLOCK - 1 <= #s do
    local h = s:sub(pos, pos + BLOCK - 1)
    if h == ZEROS then return out end
    local sum = 0
    for i = 1, BLOCK do sum = sum + ((i > 148 and i <= 156) and 32 or h:byte(i)) end
    if sum ~= number(h:sub(149, 156)) then
      return bad("bad header checksum at byte %d", pos - 1)
    end
    local typeflag = h:sub(157, 157)
    local size = number(h:sub(125, 136))
    if pax.size then size = math.tointeger(tonumber(pax.size)) end
    if not size or size < 0 then return bad("bad size at byte %d", pos - 1) end
    local dstart = pos + BLOCK
    if dstart + size - 1 > #s then return bad("truncated archive (an entry of %d bytes)", size) end
    pos = dstart + size + (size % BLOCK == 0 and 0 or BLOCK - size % BLOCK)
    local ok = true
    if typeflag == "x" then
      ok = parse_pax(s:sub(dstart, dstart + size - 1), pax)
    elseif typeflag == "g" then
      ok = parse_pax(s:sub(dstart, dstart + size - 1), global)
    elseif typeflag == "L" then
      longname = cstr(s:sub(dstart, dstart + size - 1))
    elseif typeflag == "K" then
      longlink = cstr(s:sub(dstart, dstart + size - 1))
    else
      local name = cstr(h:sub(1, 100))
      if h:sub(258, 262) == "ustar" then
        local prefix = cstr(h:sub(346, 500))
        if prefix ~= "" then name = prefix .. "/" .. name end
      end
      name = pax.path or longname or global.path or name
      local e = {
        name = name,
        type = TYPES[typeflag] or "other",
        size = size,
        mode = number(h:sub(101, 108)) & 4095,
        mtime = math.floor(tonumber(pax.mtime or "") or number(h:sub(137, 148))),
        linkname = pax.linkpath or longlink or cstr(h:sub(158, 257)),
      }
      if e.type == "file" then e.data = s:sub(dstart, dstart + size - 1) end
      pax, longname, longlink = {}, nil, nil
      out[#out + 1] = e
    end
    if not ok then return bad("malformed PAX record at byte %d", dstart - 1) end
  end
  if pos <= #s then return bad("truncated archive (a partial header)") end
  return out
end

return M
