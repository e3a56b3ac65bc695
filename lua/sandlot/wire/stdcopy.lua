-- sandlot.wire.stdcopy: Docker's multiplexed attach/exec stream (stdcopy): frames of
-- [stream u8][0 0 0][length u32 BE][payload], stream 0 stdin, 1 stdout, 2 stderr, 3 a
-- system error. See ../shared/provider-apis/docker.md ("Attach/exec stream").
local frames = require("sandlot.wire._frames")

local M = {}

M.MAX_FRAME = 16 * 1024 * 1024          -- the daemon writes 32 KiB frames; more is a broken peer
M.STREAMS = { [0] = "stdin", [1] = "stdout", [2] = "stderr", [3] = "system" }

---Encodes one frame (for fakes and tests).
---@param stream "stdin"|"stdout"|"stderr"|"system"|integer
---@param data string
---@return string
function M.encode(stream, data)
  local n = type(stream) == "number" and stream
            or ({ stdin = 0, stdout = 1, stderr = 2, system = 3 })[stream]
  if n == nil or M.STREAMS[n] == nil then
    error("stdcopy.encode: unknown stream " .. tostring(stream), 2)
  end
  return string.pack(">I1xxxs4", n, data)
end

local function parse(h)
  local n, z1, z2, z3, len = string.unpack(">I1I1I1I1I4", h)
  if M.STREAMS[n] == nil or z1 ~= 0 or z2 ~= 0 or z3 ~= 0 then
    return nil, ("not a stdcopy frame header (bytes %02x %02x %02x %02x)"):format(n, z1, z2, z3)
  end
  return M.STREAMS[n], len
end

---Creates an incremental reader: call it (or :feed) with each chunk of the stream; it calls
---on_frame(stream, data) for each whole frame, stream being "stdout", "stderr", "stdin" or
---"system". :finish() at the end of the body. Each returns true | nil, err (bad_response:
---a bad header, a frame over max_frame, a frame cut short; or what on_frame returned as
---nil, err).
---@param on_frame fun(stream: string, data: string): any
---@param opts? {max_frame?: integer}
---@return table reader
function M.decoder(on_frame, opts)
  return frames.reader{ name = "stdcopy", header = 8, parse = parse, emit = on_frame,
                        max_frame = (opts and opts.max_frame) or M.MAX_FRAME }
end

return M
