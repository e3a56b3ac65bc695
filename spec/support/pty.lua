-- spec/support/pty.lua: drives a command on a pseudo-terminal for the REPL spec. Builds
-- spec/support/pty.c with cc on first use; a session collects everything the terminal shows
-- and waits for text with a deadline, so a broken REPL fails a spec instead of hanging it.
local sandlot = require("sandlot")
local h = require("spec.helper")

local M = {}

local built, built_dir                    -- the compiled helper, once per run

---Compiles the pty helper into a temporary directory; returns its path or nil, message.
function M.build()
  if built then return built end
  local dir = h.tmpdir()
  built_dir = dir
  local bin = dir .. "/pty"
  local r, err = sandlot.proc.run({ "cc", "-O1", "-o", bin, "spec/support/pty.c", "-lutil" },
                                  { timeout = 60 })
  if not r then return nil, tostring(err) end
  if r.exit_code ~= 0 then return nil, r.stderr end
  built = bin
  return bin
end

---Removes the compiled helper (for a teardown).
function M.cleanup()
  if built_dir then h.rmtree(built_dir) end
  built, built_dir = nil, nil
end

local Session = {}
Session.__index = Session

---Starts argv on a terminal (100x24) under a hard limit of opts.limit seconds (default 60).
---opts.env is merged into the environment.
function M.start(argv, opts)
  opts = opts or {}
  local bin = assert(M.build())
  local cmd = { bin, tostring(opts.limit or 60) }
  for i = 1, #argv do cmd[#cmd + 1] = argv[i] end
  local p = assert(sandlot.proc.spawn(cmd, { stdin = "pipe", stream = true, env = opts.env }))
  local s = setmetatable({ p = p, out = "", pos = 1, eof = false }, Session)
  s.reader = sandlot.spawn(function()
    while true do
      local chunk = p:read()
      if chunk == nil then break end
      s.out = s.out .. chunk
    end
    s.eof = true
  end)
  return s
end

---Types text on the terminal ("\r" is Enter, "\x03" Ctrl-C, "\x04" Ctrl-D).
function Session:send(text)
  assert(self.p:write(text))
end

---Waits until `text` (plain) shows up after what earlier expects consumed; returns the output
---before it. Fails with the transcript after `secs` (default 10).
function Session:expect(text, secs)
  local at, stop
  h.eventually(function()
    at, stop = self.out:find(text, self.pos, true)
    return at ~= nil or self.eof
  end, secs or 10)
  if not at then
    at, stop = self.out:find(text, self.pos, true)
  end
  if not at then
    error(("expected %q on the terminal; it shows:\n%s"):format(text, self:transcript()), 2)
  end
  local before = self.out:sub(self.pos, at - 1)
  self.pos = stop + 1
  return before
end

---Types a line and waits for the next prompt; returns what was printed in between (without
---the echoed line, "\r\n" turned into "\n").
function Session:eval(line, secs)
  self:send(line .. "\r")
  self:expect(line .. "\r", secs)                     -- its "\n" starts what follows
  local out = (self:expect("\n> ", secs):gsub("\r", "") .. "\n"):sub(2)
  -- the line editor may redraw the line it echoed (after a Ctrl-C under load): the first
  -- match above was then the redraw, and the echo itself leads what was printed
  if #out > #line + 1 and out:sub(1, #line + 1) == line .. "\n" then out = out:sub(#line + 2) end
  return out
end

---Waits for the command to exit; returns its exit code (124 when the limit killed it).
function Session:wait(secs)
  local r, err = sandlot.timeout(secs or 10, function()
    self.reader:join()                      -- the terminal closes when the command exits
    return self.p:wait()
  end)
  if not r then return nil, err end
  return r.exit_code
end

function Session:transcript()
  return (self.out:gsub("\r", ""))
end

function Session:close()
  self.p:close()
  self.reader:cancel()
end

return M
