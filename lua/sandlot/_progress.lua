-- sandlot._progress: the one-line progress display on a terminal. Long operations (an image
-- pull, waiting for a cloud sandbox, a transfer over 1 MB, a replicate) emit
-- {"sandlot", op, "progress"} telemetry events through telemetry.progress; scripts can attach
-- to them like any event. When stderr is a terminal and SANDLOT_QUIET is unset, the host
-- attaches this renderer: one line on stderr, redrawn at most 10 times a second, cleared when
-- the operation's span ends.
local telemetry = require("sandlot.telemetry")
local timer = require("sandlot.core.timer")

local M = {}

M.ID = "sandlot.progress"
M.INTERVAL = 0.1            -- seconds between redraws

local function size(n)
  if n >= 1073741824 then return ("%.1f GB"):format(n / 1073741824) end
  if n >= 1048576 then return ("%.1f MB"):format(n / 1048576) end
  if n >= 1024 then return ("%.0f KB"):format(n / 1024) end
  return ("%d B"):format(n)
end

---The text of one progress event (without the line clearing): "docker: create: pulling
---alpine 12.3 MB / 30.1 MB (41%)".
---@param op string
---@param m table measurements {done?, total?, elapsed?}
---@param meta table metadata {what, provider?, unit? ("bytes")}
---@return string
function M.text(op, m, meta)
  local parts = { "sandlot: " }
  if meta.provider then parts[#parts + 1] = tostring(meta.provider) .. ": " end
  parts[#parts + 1] = op .. ": " .. tostring(meta.what or "working")
  local done, total = tonumber(m.done), tonumber(m.total)
  local bytes = meta.unit == "bytes"
  if done and total and total > 0 then
    parts[#parts + 1] = (" %s / %s (%d%%)"):format(bytes and size(done) or tostring(done),
                                                  bytes and size(total) or tostring(total),
                                                  math.floor(done * 100 / total))
  elseif done then
    parts[#parts + 1] = " " .. (bytes and size(done) or tostring(done))
  elseif total then
    parts[#parts + 1] = " (" .. (bytes and size(total) or tostring(total)) .. ")"
  end
  if tonumber(m.elapsed) then parts[#parts + 1] = (" %ds"):format(math.floor(m.elapsed)) end
  return table.concat(parts)
end

---Tells whether the display should be on: stderr is a terminal and SANDLOT_QUIET is unset
---(or "0").
---@return boolean
function M.wanted()
  local q = os.getenv("SANDLOT_QUIET")
  if q and q ~= "" and q ~= "0" then return false end
  return require("sandlot.core.sys").isatty(2)
end

---Attaches the renderer writing to `out` (default io.stderr). Returns true, or false when it
---was already attached.
---@param out? file*
---@return boolean
function M.attach(out)
  out = out or io.stderr
  local shown, last = false, -math.huge
  local ok = pcall(telemetry.attach, M.ID, { { "sandlot", "*", "progress" },
                                              { "sandlot", "*", "stop" },
                                              { "sandlot", "*", "exception" } },
    function(event, m, meta)
      if event[3] ~= "progress" then
        if shown then
          out:write("\r\27[K")
          out:flush()
          shown = false
        end
        return
      end
      local now = timer.now() / 1e9
      if now - last < M.INTERVAL and not m.final then return end
      last = now
      out:write("\r\27[K", M.text(event[2], m, meta))
      out:flush()
      shown = true
    end)
  return ok
end

---Detaches the renderer.
function M.detach()
  return telemetry.detach(M.ID)
end

return M
