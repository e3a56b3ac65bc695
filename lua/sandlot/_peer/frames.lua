-- sandlot._peer.frames: the replica protocol's framing, shared by the host
-- (sandlot.replicate) and the peer (sandlot._peer.serve). A frame is a 4-byte big-endian
-- length and that many bytes of MessagePack (sandlot.core.codec): one message, an array
-- {kind, ...}. Frames above the maximum and undecodable payloads are fatal to the channel: a
-- length-prefixed stream cannot find the next frame after corruption.
local codec = require("sandlot.core.codec")
local errors = require("sandlot.errors")

local M = {}

M.PROTOCOL = 1
M.MAX_FRAME = 16 * 1024 * 1024          -- default cap on one frame's payload
M.MAX_NOISE = 64 * 1024                 -- bytes tolerated before the start marker

---The line the peer writes before its first frame (the host skips anything before it:
---login banners, a profile's output).
function M.marker(nonce)
  return ("\nSANDLOT-PEER/%d %s\n"):format(M.PROTOCOL, nonce)
end

---Encodes one message as a frame.
---@return string|nil frame, sandlot.Error? err invalid_input (a value that cannot cross)
function M.encode(msg, max)
  local payload, err = codec.encode(msg)
  if not payload then return nil, err end
  if #payload > (max or M.MAX_FRAME) then
    return nil, errors.new("invalid_input", ("message of %d bytes is over the frame limit " ..
                           "(%d)"):format(#payload, max or M.MAX_FRAME))
  end
  return string.pack(">s4", payload)
end

local Decoder = {}
Decoder.__index = Decoder

---A decoder for a byte stream: d:feed(bytes), then d:next() until it returns nil.
---opts: max (frame cap), marker (a string to find first; nil: frames from the first byte),
---max_noise (bytes allowed before the marker).
function M.decoder(opts)
  opts = opts or {}
  return setmetatable({ buf = "", pos = 1, max = opts.max or M.MAX_FRAME,
                        marker = opts.marker, max_noise = opts.max_noise or M.MAX_NOISE,
                        noise = "" }, Decoder)
end

function Decoder:feed(data)
  if self.pos > 1 then
    self.buf = self.buf:sub(self.pos) .. data
    self.pos = 1
  else
    self.buf = self.buf .. data
  end
end

local function bad(fmt, ...)
  return nil, errors.new("bad_response", fmt:format(...), { retryable = false })
end

-- excerpt of untrusted bytes for an error message: printable ASCII only, at most 60
local function excerpt(s)
  s = s:sub(1, 60):gsub("[^\32-\126]", "?")
  return s
end

---Returns the next message, or nil when more bytes are needed, or nil, err (fatal).
function Decoder:next()
  if self.failed then return nil, self.failed end
  if self.marker then
    local at = self.buf:find(self.marker, self.pos, true)
    if not at then
      if #self.buf - self.pos + 1 > self.max_noise + #self.marker then
        self.failed = select(2, bad("no protocol start in the first %d bytes of output " ..
                                    "(it began %q)", self.max_noise, excerpt(self.buf)))
        return nil, self.failed
      end
      return nil
    end
    self.noise = self.buf:sub(self.pos, at - 1)
    self.pos = at + #self.marker
    self.marker = nil
  end
  local avail = #self.buf - self.pos + 1
  if avail < 4 then return nil end
  local len = string.unpack(">I4", self.buf, self.pos)
  if len > self.max then
    self.failed = select(2, bad("frame of %d bytes is over the limit (%d)", len, self.max))
    return nil, self.failed
  end
  if avail < 4 + len then return nil end
  local start = self.pos + 4
  local msg, nxt = codec.decode(self.buf:sub(start, start + len - 1))
  self.pos = start + len
  if msg == nil and type(nxt) ~= "number" then
    self.failed = select(2, bad("corrupt frame: %s", nxt and nxt.message or "undecodable"))
    return nil, self.failed
  end
  if nxt ~= len + 1 then
    self.failed = select(2, bad("corrupt frame: %d bytes after the message", len + 1 - nxt))
    return nil, self.failed
  end
  if type(msg) ~= "table" or type(msg[1]) ~= "string" then
    self.failed = select(2, bad("corrupt frame: not a message (a %s)", type(msg)))
    return nil, self.failed
  end
  return msg
end

---Decodes every frame of s (for the fuzz target and specs): the list of messages, or nil, err.
function M.decode_all(s, max)
  local d = M.decoder({ max = max })
  d:feed(s)
  local out = {}
  while true do
    local msg, err = d:next()
    if err then return nil, err end
    if msg == nil then break end
    out[#out + 1] = msg
  end
  return out
end

return M
