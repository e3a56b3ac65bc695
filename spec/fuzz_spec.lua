-- spec/fuzz_spec.lua: the fuzz adapters (fuzz/targets.lua) on their seed corpora, in the normal
-- suite: every seed gives a value or nil and a sandlot.error, never a raise (the rule the
-- libFuzzer harness applies to every input).
local sandlot = require("sandlot")
local targets = require("fuzz.targets")

local function seeds(name)
  local r = assert(sandlot.proc.run({ "sh", "-c", "ls fuzz/corpus/" .. name }))
  local list = {}
  for f in r.stdout:gmatch("[^\n]+") do list[#list + 1] = "fuzz/corpus/" .. name .. "/" .. f end
  return list
end

describe("fuzz target config", function()
  it("parses every seed into a config or an invalid_input error", function()
    local list = seeds("config")
    assert.is_true(#list >= 5)
    local good = 0
    for _, path in ipairs(list) do
      local f = assert(io.open(path, "rb"))
      local text = f:read("a")
      f:close()
      local cfg, err = targets.config(text)
      if cfg then good = good + 1
      else assert.equal("invalid_input", err.code, path) end
    end
    assert.is_true(good >= 2)
  end)

  it("gives a config file no I/O, no loading and no metatables", function()
    for _, text in ipairs({ "os.execute('true')", "io.open('/etc/passwd')",
                            "return require('sandlot')", "setmetatable({}, {})",
                            "return { providers = { x = load('return 1') } }" }) do
      local cfg, err = targets.config(text)
      assert.is_nil(cfg, text)
      assert.equal("invalid_input", err.code)
      assert.matches("nil value", err.message)
    end
  end)
end)

describe("fuzz targets for the wire readers", function()
  for _, name in ipairs({ "connect", "ndjson", "stdcopy", "multipart", "peer_frames" }) do
    it(name .. " reads every seed to a value or a sandlot.error", function()
      local list = seeds(name)
      assert.is_true(#list >= 2)
      local good = 0
      for _, path in ipairs(list) do
        local f = assert(io.open(path, "rb"))
        local input = f:read("a")
        f:close()
        local v, err = targets[name](input)
        if v then good = good + 1
        else assert.is_true(sandlot.errors.is(err), path .. ": " .. tostring(err)) end
      end
      assert.is_true(good >= 1, name .. ": no seed is a valid stream")
    end)
  end
end)

describe("fuzz target http_request", function()
  it("parses every seed the same whole and in chunks, or refuses it with 400/413/431", function()
    local list = seeds("http_request")
    assert.is_true(#list >= 5)
    local good, refused = 0, 0
    for _, path in ipairs(list) do
      local f = assert(io.open(path, "rb"))
      local input = f:read("a")
      f:close()
      if targets.http_request(input) then good = good + 1 else refused = refused + 1 end
    end
    assert.is_true(good >= 3 and refused >= 2, ("%d parsed, %d refused"):format(good, refused))
  end)

  it("keeps pipelined requests apart across chunk borders and refuses a body over max_body",
     function()
    local parse = require("sandlot.core.http").parse_request
    local reqs = assert(parse("GET /a HTTP/1.1\r\nX: 1\r\n\r\nGET /b HTTP/1.1\r\n\r\n", 3))
    assert.equal(2, #reqs)
    assert.equal("/b", reqs[2].path)
    local none, status = parse("GET / HTTP/1.1\r\nContent-Length: 5000\r\n\r\n", 1, 1024, 4096)
    assert.is_nil(none)
    assert.equal(413, status)
  end)
end)
