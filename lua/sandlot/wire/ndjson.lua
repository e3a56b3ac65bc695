-- sandlot.wire.ndjson: newline-delimited JSON, read incrementally (Docker's pull progress,
-- Vercel and Sprites command streams). A line is one JSON value; blank lines are skipped;
-- a line over max_line bytes, malformed JSON, or text after the last newline is bad_response.
local json = require("sandlot.wire.json")
local errors = require("sandlot.errors")

local M = {}

M.MAX_LINE = 1024 * 1024

local function bad(fmt, ...)
  return nil, errors.new("bad_response", "ndjson: " .. fmt:format(...), { retryable = false })
end

---Encodes values as NDJSON text, one line each (for fakes and request bodies).
---@param ... any
---@return string
function M.encode(...)
  local out = {}
  for i = 1, select("#", ...) do out[i] = json.encode((select(i, ...))) .. "\n" end
  return table.concat(out)
end

---Creates an incremental reader. reader:feed(chunk) -> {values...} | nil, err gives the
---values of the lines the chunk completes; reader:finish() -> true | nil, err at the end.
---With on_value, each value is also passed to on_value(v) (which may return nil, err to stop),
---and the reader is callable with a chunk (returning true | nil, err), so it can be given as
---an api stream's on_frame.
---@param on_value? fun(v: any): any
---@param opts? {max_line?: integer}
---@return table reader
function M.decoder(on_value, opts)
  if type(on_value) == "table" and opts == nil then on_value, opts = nil, on_value end
  local max = (opts and opts.max_line) or M.MAX_LINE
  local pending, plen = {}, 0           -- the current line's pieces, before its newline
  local failed
  local r = {}

  function r.feed(_, chunk)
    if chunk == nil then chunk = _ end
    if failed then return nil, failed end
    local out = {}
    local pos = 1
    while true do
      local nl = chunk:find("\n", pos, true)
      local piece = chunk:sub(pos, (nl or 0) - 1)
      if plen + #piece > max then
        local _, e = bad("a line is over the limit of %d bytes", max)
        failed = e
        return nil, e
      end
      if not nl then
        if piece ~= "" then
          pending[#pending + 1] = piece
          plen = plen + #piece
        end
        break
      end
      local text = piece
      if plen > 0 then
        pending[#pending + 1] = piece
        text = table.concat(pending)
        pending, plen = {}, 0
      end
      if not text:find("^%s*$") then
        local v, err = json.decode(text)
        if v == nil then
          failed = err
          return nil, err
        end
        out[#out + 1] = v
        if on_value then
          local ok, verr = on_value(v)
          if ok == nil and verr ~= nil then
            failed = verr
            return nil, verr
          end
        end
      end
      pos = nl + 1
    end
    return out
  end

  function r.finish()
    if failed then return nil, failed end
    if plen > 0 then
      local text = table.concat(pending)
      if not text:find("^%s*$") then
        local _, e = bad("the stream ended inside a line (%d bytes without a newline)", plen)
        failed = e
        return nil, e
      end
    end
    return true
  end

  return setmetatable(r, { __call = function(self, chunk)
    local ok, err = self:feed(chunk)
    if ok == nil then return nil, err end
    return true
  end })
end

return M
