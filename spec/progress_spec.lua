-- spec/progress_spec.lua: the one-line progress display (sandlot._progress) and the
-- telemetry.progress events behind it: text, redraw throttling, clearing when the operation
-- ends, and that the host shows it only on a terminal and not with -q or SANDLOT_QUIET=1.
local progress = require("sandlot._progress")
local telemetry = require("sandlot.telemetry")
local h = require("spec.helper")
local pty = require("spec.support.pty")

describe("sandlot._progress", function()
  after_each(function() progress.detach() end)

  it("writes what, sizes, percent and elapsed time", function()
    assert.equal("sandlot: docker: create: pulling alpine 12.0 MB / 30.0 MB (40%)",
                 progress.text("create", { done = 12 * 1048576, total = 30 * 1048576 },
                               { what = "pulling alpine", provider = "docker", unit = "bytes" }))
    assert.equal("sandlot: write_file: writing big (3.0 MB)",
                 progress.text("write_file", { total = 3 * 1048576 },
                               { what = "writing big", unit = "bytes" }))
    assert.equal("sandlot: e2b: create: waiting for the sandbox 7s",
                 progress.text("create", { elapsed = 7.4 }, { what = "waiting for the sandbox",
                                                             provider = "e2b" }))
  end)

  it("redraws one line at most every INTERVAL, and clears it when a span ends", function()
    local buf = {}
    local out = {
      write = function(self, ...)
        for i = 1, select("#", ...) do buf[#buf + 1] = select(i, ...) end
        return self
      end,
      flush = function() end,
    }
    local saved = progress.INTERVAL
    progress.INTERVAL = 60                              -- no second redraw, however slow this is
    assert.is_true(progress.attach(out))
    assert.is_false(progress.attach(out))               -- once
    for i = 1, 50 do
      telemetry.progress("create", { done = i, total = 50 }, { what = "pulling x" })
    end
    local text = table.concat(buf)
    assert.equal(1, select(2, text:gsub("pulling x", "")))   -- 50 events, one redraw
    assert.matches("^\r\27%[Ksandlot: create: pulling x 1 / 50 %(2%%%)$", text)
    telemetry.span("create", {}, function() end)
    progress.INTERVAL = saved
    assert.equal("\r\27[K", buf[#buf])                  -- cleared at the span's stop
  end)

  it("is free when nothing listens", function()
    assert.is_false(telemetry.active())
    telemetry.progress("create", { done = 1 }, { what = "x" })   -- no handler, no error
  end)
end)

describe("the host's progress line", function()
  local script = "local sb = sandlot.create('local', { isolation = 'none' }) " ..
                 "sb:write_file('big', ('x'):rep(3 * 1048576)) sb:destroy() print('done')"

  it("shows on a terminal and is cleared after", function()
    local ok, err = pty.build()
    if not ok then pending("needs cc and forkpty: " .. tostring(err)) return end
    local s = pty.start({ h.BIN, "-e", script }, { env = { TERM = "xterm" } })
    s:expect("done")
    s:wait()
      local seen = s.out
    s:close()
    assert.matches("sandlot: local: write_file: writing big (3.0 MB)", seen, 1, true)
    assert.matches("\r\27[Kdone", seen, 1, true)
  end)

  it("is off with -q, with SANDLOT_QUIET=1, and when stderr is not a terminal", function()
    local ok, err = pty.build()
    if not ok then pending("needs cc and forkpty: " .. tostring(err)) return end
    for _, case in ipairs({ { { h.BIN, "-q", "-e", script }, {} },
                            { { h.BIN, "-e", script }, { SANDLOT_QUIET = "1" } } }) do
      local env = { TERM = "xterm" }
      for k, v in pairs(case[2]) do env[k] = v end
      local s = pty.start(case[1], { env = env })
      s:expect("done")
      s:wait()
      local seen = s.out
      s:close()
      assert.is_nil(seen:find("writing big", 1, true), table.concat(case[1], " "))
    end
    local code, _, stderr = h.host({ "-e", script })
    assert.equal(0, code)
    assert.equal("", stderr)
  end)
end)
