-- sandlot._base64: standard base64 (RFC 4648, with padding) for moving files through a
-- provider's exec when it has no file operations of its own.
local M = {}

local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local enc, dec = {}, {}
for i = 0, 63 do
  local c = alphabet:sub(i + 1, i + 1)
  enc[i] = c
  dec[c:byte()] = i
end

-- every 3-byte group maps to 4 characters; precomputing pairs of 12 bits halves the lookups
local pair = {}
for i = 0, 4095 do pair[i] = enc[i >> 6] .. enc[i & 63] end

---Encodes a string.
---@param s string
---@return string
function M.encode(s)
  local out, n = {}, 0
  local len = #s
  local full = len - len % 3
  local byte = string.byte
  for i = 1, full, 3 do
    local a, b, c = byte(s, i, i + 2)
    local v = (a << 16) | (b << 8) | c
    n = n + 1
    out[n] = pair[v >> 12] .. pair[v & 4095]
  end
  local rest = len - full
  if rest == 1 then
    local v = byte(s, len) << 16
    n = n + 1
    out[n] = pair[v >> 12] .. "=="
  elseif rest == 2 then
    local a, b = byte(s, len - 1, len)
    local v = (a << 16) | (b << 8)
    n = n + 1
    out[n] = pair[v >> 12] .. enc[(v >> 6) & 63] .. "="
  end
  return table.concat(out)
end

---Decodes a string, ignoring whitespace. Returns nil on malformed input.
---@param s string
---@return string|nil
function M.decode(s)
  s = s:gsub("%s", "")
  if #s % 4 ~= 0 then return nil end
  local out, n = {}, 0
  local char, byte = string.char, string.byte
  for i = 1, #s, 4 do
    local a, b, c, d = byte(s, i, i + 3)
    local va, vb = dec[a], dec[b]
    if not va or not vb then return nil end
    if d == 61 then                       -- '='
      if c == 61 then
        n = n + 1
        out[n] = char(((va << 18 | vb << 12) >> 16) & 255)
      else
        local vc = dec[c]
        if not vc then return nil end
        local v = va << 18 | vb << 12 | vc << 6
        n = n + 1
        out[n] = char((v >> 16) & 255, (v >> 8) & 255)
      end
      if i + 4 <= #s then return nil end
    else
      local vc, vd = dec[c], dec[d]
      if not vc or not vd then return nil end
      local v = va << 18 | vb << 12 | vc << 6 | vd
      n = n + 1
      out[n] = char((v >> 16) & 255, (v >> 8) & 255, v & 255)
    end
  end
  return table.concat(out)
end

return M
