-- sandlot.wire.chunked: HTTP/1.1 chunked transfer coding, read incrementally from a body taken
-- with its framing (sandlot.http's raw_chunked), for services whose messages are the chunks
-- (Sprites' HTTP exec: one frame per chunk). Each chunk's payload is handed on whole; a chunk
-- over max_chunk bytes, a malformed size line or a body cut short is bad_response.
local errors = require("sandlot.errors")

local M = {}

M.MAX_CHUNK = 16 * 1024 * 1024

local function bad(fmt, ...)
  return nil, errors.new("bad_response", "chunked: " .. fmt:format(...), { retryable = false })
end

---Encodes payloads as a chunked body, ending with the last chunk (for fakes and specs).
---@param ... string
---@return string
function M.encode(...)
  local out = {}
  for i = 1, select("#", ...) do
    local s = select(i, ...)
    if #s > 0 then out[#out + 1] = ("%x\r\n%s\r\n"):format(#s, s) end
  end
  out[#out + 1] = "0\r\n\r\n"
  return table.concat(out)
end

---Creates a reader calling on_chunk(payload) for each chunk (which may return nil, err to
---stop). The reader is callable with body bytes (true | nil, err), so it can be an api
---stream's on_frame; reader:finish() -> true | nil, err (the last chunk never came).
---@param on_chunk fun(payload: string): any
---@param opts? {max_chunk?: integer}
---@return table reader
function M.decoder(on_chunk, opts)
  local max = (opts and opts.max_chunk) or M.MAX_CHUNK
  local buf = ""                -- bytes not yet consumed (a size line, a payload in progress)
  local state = "size"          -- size | data | crlf | trailer | done
  local need = 0
  local parts, got = {}, 0
  local failed
  local r = {}

  local function fail(...)
    local _, e = bad(...)
    failed = e
    return nil, e
  end

  function r.feed(_, chunk)
    if chunk == nil then chunk = _ end
    if failed then return nil, failed end
    buf = buf .. chunk
    local pos = 1
    while true do
      if state == "size" or state == "trailer" then
        local nl = buf:find("\r\n", pos, true)
        if not nl then
          if #buf - pos > 1024 then return fail("a size or trailer line over 1024 bytes") end
          break
        end
        local line = buf:sub(pos, nl - 1)
        pos = nl + 2
        if state == "trailer" then
          if line == "" then state = "done" end
        else
          local hex = line:match("^(%x+)[ \t]*;?.*$")
          if not hex or #hex > 8 then return fail("a bad chunk size line %q", line:sub(1, 40)) end
          need = tonumber(hex, 16)
          if need > max then
            return fail("a chunk of %d bytes is over the limit of %d", need, max)
          end
          state = need == 0 and "trailer" or "data"
        end
      elseif state == "data" then
        local take = math.min(need - got, #buf - pos + 1)
        if take <= 0 then break end
        parts[#parts + 1] = buf:sub(pos, pos + take - 1)
        got, pos = got + take, pos + take
        if got < need then break end
        local payload = #parts == 1 and parts[1] or table.concat(parts)
        parts, got, state = {}, 0, "crlf"
        local ok, err = on_chunk(payload)
        if ok == nil and err ~= nil then
          failed = err
          return nil, err
        end
      elseif state == "crlf" then
        if #buf - pos + 1 < 2 then break end
        if buf:sub(pos, pos + 1) ~= "\r\n" then return fail("a chunk not followed by CRLF") end
        pos, state = pos + 2, "size"
      else                                   -- done: what follows is not ours
        if pos <= #buf then return fail("%d bytes after the last chunk", #buf - pos + 1) end
        break
      end
    end
    buf = buf:sub(pos)
    return true
  end

  function r.finish()
    if failed then return nil, failed end
    if state ~= "done" then return fail("the body ended before its last chunk") end
    return true
  end

  return setmetatable(r, { __call = function(self, chunk) return self:feed(chunk) end })
end

return M
