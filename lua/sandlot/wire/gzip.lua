-- sandlot.wire.gzip: gzip (RFC 1952) streams on zlib (sandlot.core.zlib). Decompression is
-- always capped: output past max_output is a bad_response, so a decompression bomb stops
-- there instead of filling memory.
local core = require("sandlot.core.zlib")

local M = {}

M.MAX_OUTPUT = 256 * 1024 * 1024          -- bytes a decompression may produce unless told
M.version = core.version

---Creates a compressor: c:write(s) -> compressed bytes so far, c:finish() -> the rest (the
---trailer included), c:close(). Write and finish return "" while zlib holds data back.
---@param opts? {level?: integer} 0-9 (default 6)
---@return userdata stream
function M.compressor(opts)
  return core.deflater(opts and opts.level)
end

---Creates a decompressor: d:write(s) -> output | nil, err; d:finish() -> "" | nil, err
---(bad_response when the stream was cut short); d:ended(); d:close(). Errors are
---bad_response: corrupt data, data after the end, output past max_output.
---@param opts? {max_output?: integer}
---@return userdata stream
function M.decompressor(opts)
  return core.inflater((opts and opts.max_output) or M.MAX_OUTPUT)
end

---Compresses a string, or the strings of a list (pieces), into one gzip string.
---@param data string|string[]
---@param opts? {level?: integer}
---@return string
function M.compress(data, opts)
  local z <close> = M.compressor(opts)
  local out = {}
  local list = type(data) == "table" and data or { data }
  for i = 1, #list do out[#out + 1] = assert(z:write(list[i])) end
  out[#out + 1] = assert(z:finish())
  return table.concat(out)
end

---Decompresses a whole gzip string.
---@param s string
---@param opts? {max_output?: integer}
---@return string|nil data
---@return sandlot.Error? err bad_response
function M.decompress(s, opts)
  local z <close> = M.decompressor(opts)
  local out, err = z:write(s)
  if not out then return nil, err end
  local tail, ferr = z:finish()
  if not tail then return nil, ferr end
  return out
end

return M
