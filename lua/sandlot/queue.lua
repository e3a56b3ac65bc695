-- sandlot.queue: a bounded queue between tasks, for providers whose output arrives in a
-- callback (a streamed HTTP body) while the caller reads it elsewhere (a spawn's p:read). A
-- waiting task sleeps in a helper task that put, close and wake cancel; cancelling the waiter
-- (read with a time limit) leaves every queued item in place.
local task = require("sandlot.task")
local errors = require("sandlot.errors")

local M = {}

local Queue = {}
Queue.__index = Queue

---Creates a queue that holds up to max_bytes (put waits above it).
---@param opts? {max_bytes?: integer}
---@return table queue {bytes, closed, err}
function M.new(opts)
  return setmetatable({ items = {}, first = 1, last = 0, bytes = 0, waiting = {},
                        max_bytes = opts and opts.max_bytes or 4 * 1024 * 1024 }, Queue)
end

-- Sleeps until wake; nil, err when the calling task is cancelled meanwhile.
local function sleep(q)
  local t = task.spawn(task.sleep, 86400)
  q.waiting[#q.waiting + 1] = t
  local _, _, err = pcall(t.join, t)       -- a sleeper woken before it ran raises here
  if not t:done() then
    t:cancel()
    return nil, err or errors.new("cancelled", "the wait was cancelled")
  end
  return true
end

---Wakes every task waiting in get, put or wait_for.
function Queue:wake()
  local w = self.waiting
  self.waiting = {}
  for i = 1, #w do w[i]:cancel() end
end

---Waits until pred() is true, or the queue is closed (then its error, if any).
---@return true|nil ok, sandlot.Error? err
function Queue:wait_for(pred)
  while not pred() do
    if self.closed then return nil, self.err end
    local ok, err = sleep(self)
    if not ok then return nil, err end
  end
  return true
end

---Adds an item of `size` bytes, first waiting while the queue is full (not once closed).
---@return true|nil ok, sandlot.Error? err cancelled
function Queue:put(item, size)
  while self.bytes >= self.max_bytes and not self.closed do
    local ok, err = sleep(self)
    if not ok then return nil, err end
  end
  self.last = self.last + 1
  self.items[self.last] = { item, size or 0 }
  self.bytes = self.bytes + (size or 0)
  self:wake()
  return true
end

---Takes the next item, waiting for one. nil once closed and empty (with the close's error,
---if any); nil, err when the calling task is cancelled.
function Queue:get()
  while true do
    local e = self.items[self.first]
    if e then
      self.items[self.first], self.first = nil, self.first + 1
      self.bytes = self.bytes - e[2]
      self:wake()
      return e[1]
    end
    if self.closed then return nil, self.err end
    local ok, err = sleep(self)
    if not ok then return nil, err end
  end
end

---Tells whether the queue holds max_bytes or more.
function Queue:full()
  return self.bytes >= self.max_bytes
end

---Ends the queue: get drains what is left, then returns nil, err. Idempotent.
function Queue:close(err)
  if not self.closed then self.closed, self.err = true, err end
  self:wake()
end

return M
