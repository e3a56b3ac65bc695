-- sandlot.wire.connect: the Connect protocol's stream envelopes, both directions:
-- [flags u8][length u32 BE][payload JSON]. Flag 0x02 ends the stream; its JSON is {} or
-- {"error": {"code", "message"}, "metadata"}, which becomes a sandlot.error. Flag 0x01
-- (compressed) is refused: sandlot never offers Connect-Content-Encoding. See
-- ../shared/provider-apis/e2b.md ("Connect RPC basics") and namespace.md.
local frames = require("sandlot.wire._frames")
local json = require("sandlot.wire.json")
local errors = require("sandlot.errors")

local M = {}

M.MAX_MESSAGE = 16 * 1024 * 1024
M.FLAG_COMPRESSED = 0x01
M.FLAG_END = 0x02

---Connect error codes -> sandlot codes (https://connectrpc.com/docs/protocol#error-codes).
M.CODES = {
  canceled = "cancelled", unknown = "bad_response", invalid_argument = "invalid_input",
  deadline_exceeded = "timeout", not_found = "not_found", already_exists = "already_exists",
  permission_denied = "permission_denied", resource_exhausted = "quota_exceeded",
  failed_precondition = "invalid_input", aborted = "unavailable", out_of_range = "invalid_input",
  unimplemented = "not_supported", internal = "unavailable", unavailable = "unavailable",
  data_loss = "io_error", unauthenticated = "auth_failed",
}

---Encodes one envelope around a payload string.
---@param payload string
---@param flags? integer
---@return string
function M.envelope(payload, flags)
  return string.pack(">I1s4", flags or 0, payload)
end

---Encodes a message (a value, JSON-encoded) as one envelope.
---@param value any
---@return string
function M.encode(value)
  return M.envelope(json.encode(value), 0)
end

---Encodes the end-of-stream envelope: {} or {"error": {code, message}} (for fakes).
---@param code? string a Connect code
---@param message? string
---@return string
function M.end_stream(code, message)
  local body = code and { error = { code = code, message = message } } or {}
  return M.envelope(json.encode(body), M.FLAG_END)
end

---Turns a Connect error object {code, message} into a sandlot.error (for unary answers and
---end-of-stream messages alike).
---@param e table
---@param fields? table context such as status
---@return sandlot.Error
function M.error(e, fields)
  local code = type(e) == "table" and type(e.code) == "string" and e.code or "unknown"
  local msg = type(e) == "table" and type(e.message) == "string" and e.message or code
  local f = { connect_code = code }
  for k, v in pairs(fields or {}) do f[k] = v end
  return errors.new(M.CODES[code] or "bad_response", msg, f)
end

local function parse(h)
  local flags, len = string.unpack(">I1I4", h)
  if flags & ~(M.FLAG_COMPRESSED | M.FLAG_END) ~= 0 then
    return nil, ("unknown envelope flags 0x%02x"):format(flags)
  end
  if flags & M.FLAG_COMPRESSED ~= 0 then
    return nil, "a compressed envelope (no compression was negotiated)"
  end
  return flags, len
end

---Creates an incremental reader of a response stream. Call it (or :feed) with each chunk;
---each message's decoded JSON goes to on_message(value), which may return nil, err to stop.
---The end-of-stream envelope returns its error as nil, err (mapped through M.CODES), or marks
---the stream ended. :finish() -> true | nil, err: bad_response when the body ended without
---the end-of-stream envelope or inside an envelope. Data after the end is bad_response too.
---@param on_message fun(value: any): any
---@param opts? {max_message?: integer}
---@return table reader {ended: boolean, trailer: table|nil}
function M.decoder(on_message, opts)
  local r
  local function emit(flags, payload)
    if r.ended then return frames.bad("connect", "data after the end of the stream") end
    local v, err = json.decode(payload)
    if v == nil then return nil, err end
    if flags & M.FLAG_END ~= 0 then
      r.ended, r.trailer = true, v
      if type(v) ~= "table" then return frames.bad("connect", "end of stream is not an object") end
      if v.error ~= nil and v.error ~= json.null then return nil, M.error(v.error) end
      return true
    end
    return on_message(v)
  end
  r = frames.reader{ name = "connect", header = 5, parse = parse, emit = emit,
                     max_frame = (opts and opts.max_message) or M.MAX_MESSAGE }
  r.ended = false
  local finish = r.finish
  function r.finish()
    local ok, err = finish()
    if not ok then return nil, err end
    if not r.ended then
      return frames.bad("connect", "the stream ended without an end-of-stream message")
    end
    return true
  end
  return r
end

---Splits a request body holding envelopes (for fakes): returns {{flags, value}...} | nil, err.
---@param s string
---@return table|nil messages
---@return sandlot.Error? err
function M.decode_all(s)
  local out = {}
  local r = frames.reader{ name = "connect", header = 5, parse = parse,
                           max_frame = M.MAX_MESSAGE, emit = function(flags, payload)
    local v, err = json.decode(payload)
    if v == nil then return nil, err end
    out[#out + 1] = { flags = flags, value = v }
    return true
  end }
  local ok, err = r(s)
  if ok then ok, err = r.finish() end
  if not ok then return nil, err end
  return out
end

return M
