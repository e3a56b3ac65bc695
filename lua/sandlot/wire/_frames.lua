-- sandlot.wire._frames: the incremental reader behind the length-prefixed stream formats
-- (wire.stdcopy, wire.connect): a fixed header that gives a payload length, then the payload.
-- Whole frames are handed on; a partial one is kept as pieces (no copy per chunk), never more
-- than the header plus max_frame bytes of it.
local errors = require("sandlot.errors")

local M = {}

local function bad(name, fmt, ...)
  return nil, errors.new("bad_response", name .. ": " .. fmt:format(...), { retryable = false })
end
M.bad = bad

---Creates a reader. spec = {name, header = bytes, max_frame = bytes,
---parse = fn(header) -> kind, length | nil, message, emit = fn(kind, payload) -> nil | nil, err}.
---The reader is callable with a chunk (and has :feed(chunk)); both return true | nil, err.
---:finish() returns true, or a bad_response when a frame is cut short.
---@param spec table
---@return table reader
function M.reader(spec)
  local hlen, max, name = spec.header, spec.max_frame, spec.name
  local parse, emit = spec.parse, spec.emit
  local head = ""               -- a partial header
  local kind, need              -- the current frame's kind and how many payload bytes remain
  local parts, got = {}, 0      -- the payload so far
  local failed                  -- the first error: the stream is unusable after it
  local r = {}

  function r.feed(_, chunk)
    if chunk == nil then chunk = _ end  -- r.feed(chunk) or r:feed(chunk)
    if failed then return nil, failed end
    local pos, n = 1, #chunk
    while pos <= n do
      if need == nil then
        local take = hlen - #head
        head = head .. chunk:sub(pos, pos + take - 1)
        pos = pos + take
        if #head < hlen then break end
        local k, len = parse(head)
        if k == nil then
          local _, e = bad(name, "%s", len)
          failed = e
          return nil, e
        end
        if len > max then
          local _, e = bad(name, "a frame of %d bytes is over the limit of %d", len, max)
          failed = e
          return nil, e
        end
        head, kind, need, parts, got = "", k, len, {}, 0
      end
      local take = math.min(need - got, n - pos + 1)
      if take > 0 then
        parts[#parts + 1] = (pos == 1 and take == n) and chunk or chunk:sub(pos, pos + take - 1)
        got = got + take
        pos = pos + take
      end
      if got == need then
        local payload = #parts == 1 and parts[1] or table.concat(parts)
        local k = kind
        kind, need, parts, got = nil, nil, {}, 0
        local ok, err = emit(k, payload)
        if ok == nil and err ~= nil then
          failed = err
          return nil, err
        end
      end
    end
    return true
  end

  function r.finish()
    if failed then return nil, failed end
    if need ~= nil or head ~= "" then
      local _, e = bad(name, "the stream ended inside a frame (%d of %d bytes)",
                       need and got or #head, need or hlen)
      failed = e
      return nil, e
    end
    return true
  end

  return setmetatable(r, { __call = r.feed })
end

return M
