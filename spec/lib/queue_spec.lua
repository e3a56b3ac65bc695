-- spec/lib/queue_spec.lua: sandlot.queue, the bounded queue between a stream's callback task
-- and a reader: order, the byte bound (put waits), cancelling a get without losing an item,
-- close draining what is left, wait_for.
local sandlot = require("sandlot")
local queue = require("sandlot.queue")
local h = require("spec.helper")

describe("sandlot.queue", function()
  it("hands items over in order and ends with the close's error", h.task(function()
    local q = queue.new()
    local got = {}
    local reader = sandlot.spawn(function()
      while true do
        local v, err = q:get()
        if v == nil then return err end
        got[#got + 1] = v
      end
    end)
    for i = 1, 5 do assert(q:put(i, 1)) end
    q:close(sandlot.errors.new("io_error", "the stream broke"))
    local err = reader:join()
    assert.same({ 1, 2, 3, 4, 5 }, got)
    assert.equal("io_error", err.code)
  end))

  it("makes put wait while max_bytes are queued", h.task(function()
    local q = queue.new{ max_bytes = 10 }
    local done = 0
    local writer = sandlot.spawn(function()
      for i = 1, 4 do assert(q:put(i, 5)); done = i end
    end)
    sandlot.sleep(0.05)
    assert.equal(2, done)                               -- 10 bytes queued: the third waits
    assert.is_true(q:full())
    assert.equal(1, q:get())
    sandlot.sleep(0.05)
    assert.equal(3, done)
    assert.equal(2, q:get()); assert.equal(3, q:get())
    writer:join()
    assert.equal(4, q:get())
    assert.equal(0, q.bytes)
  end))

  it("loses nothing when a waiting get is cancelled (a read with a time limit)", h.task(function()
    local q = queue.new()
    local v, err = sandlot.timeout(0.05, q.get, q)
    assert.is_nil(v)
    assert.equal("timeout", err.code)
    assert(q:put("kept", 4))
    assert.equal("kept", q:get())
    q:close()
    assert.is_nil(q:get())
    assert.is_nil(select(2, q:get()))                   -- closed without an error: nil, nil
  end))

  it("wait_for wakes on wake() and stops at close", h.task(function()
    local q = queue.new()
    local flag = false
    local t = sandlot.spawn(function() return q:wait_for(function() return flag end) end)
    sandlot.sleep(0.02)
    flag = true
    q:wake()
    assert.is_true(t:join())
    local t2 = sandlot.spawn(function() return q:wait_for(function() return false end) end)
    sandlot.sleep(0.02)
    q:close()
    assert.is_nil(t2:join())
  end))
end)
