-- spec/lib/cassette_spec.lua: SANDLOT_RECORD and SANDLOT_REPLAY (lua/sandlot/_cassette.lua).
-- A child host records a sequence of exchanges (sandlot.http and sandlot.api, a streamed body,
-- a binary body, an error status, a dropped connection) against a sandlot.http.serve fake that
-- checks its credentials, then stops the fake; a second child replays the cassette with the
-- fake gone and must print the same results. The planted secrets must not be in the cassette.
local sandlot = require("sandlot")
local json = require("sandlot.wire.json")
local h = require("spec.helper")

local SECRET = "tok9f3e1c7a5b"          -- Authorization: Bearer SECRET
local SECRET2 = "key4d2b8e6f0a"         -- {"api_key": SECRET2} in a request body

local SCRIPT = [=[
local sandlot = require("sandlot")
local http = sandlot.http
local api = require("sandlot.api")
local json = require("sandlot.wire.json")
local SECRET, SECRET2 = os.getenv("T_SECRET"), os.getenv("T_SECRET2")
local url, srv = os.getenv("FAKE_URL"), nil
if not url then
  srv = assert(http.serve({ handler = function(req)
    if req.headers.authorization ~= "Bearer " .. SECRET then
      return { status = 401, body = "no" }
    end
    if req.path == "/items" then
      return { status = 200, headers = { ["Content-Type"] = "application/json" },
               body = json.encode({ items = { "a", "b" }, page = req.query }) }
    elseif req.path == "/create" then
      local v = json.decode(req.body)
      if v.api_key ~= SECRET2 then return { status = 403, body = "bad key" } end
      return { status = 201, headers = { ["Content-Type"] = "application/json" },
               body = json.encode({ id = "sb-1", name = v.name }) }
    elseif req.path == "/bin" then
      return { status = 200, body = "\0\1\2\255\254 binary" }
    elseif req.path == "/events" then
      local i = 0
      return { status = 200, body = function()
        i = i + 1
        if i <= 3 then return json.encode({ n = i }) .. "\n" end
      end }
    elseif req.path == "/drop" then
      return { drop = true }
    end
    return { status = 404, body = "not here: " .. req.path }
  end }))
  url = srv.url
end
local out = {}
local function note(r, e)
  if r then out[#out + 1] = { status = r.status, body = r.body, json = r.json }
  else out[#out + 1] = { err = e.code } end
end
local auth = { Authorization = "Bearer " .. SECRET }
local first = os.getenv("MISMATCH") and "/other" or "/items"
local r, e = http.request({ url = url .. first, query = { page = 2 }, headers = auth })
if not r and e.expected then
  print("MISMATCH " .. json.encode({ code = e.code, expected = e.expected, actual = e.actual,
                                     message = e.message }))
  os.exit(0)
end
note(r, e)
note(http.request({ url = url .. "/create", json = { api_key = SECRET2, name = "x" },
                    headers = auth }))
note(http.request({ url = url .. "/bin", headers = auth }))
note(http.request({ url = url .. "/missing", headers = auth }))
note(http.request({ url = url .. "/drop", headers = auth, retry = false }))
local c = api.client({ config = { token = SECRET } }, { base_url = url,
  auth = { header = "Authorization", prefix = "Bearer ", config = "token" } })
local v = c:call("GET", "/items", { query = { page = 3 } })
out[#out + 1] = { api = v }
local frames = {}
local res = c:stream("GET", "/events", { on_frame = function(ch) frames[#frames + 1] = ch end })
out[#out + 1] = { stream = table.concat(frames), status = res and res.status }
if os.getenv("SANDLOT_REPLAY") then
  local s, uerr = http.upgrade({ url = url .. "/attach" })
  print("UPGRADE " .. tostring(s == nil and uerr.code))
end
if srv then srv:close() print("URL " .. url) end
print("RESULT " .. json.encode(out))
]=]

local function run(dir, env)
  env.T_SECRET, env.T_SECRET2 = SECRET, SECRET2
  local code, out, err = h.host({ dir .. "/script.lua" }, { env = env, timeout = 60 })
  assert.equal(0, code, err)
  return out
end

local read = h.read

describe("SANDLOT_RECORD and SANDLOT_REPLAY", function()
  local dir, cassette, recorded, url

  setup(function()
    dir = h.tmpdir()
    local f = assert(io.open(dir .. "/script.lua", "w"))
    f:write(SCRIPT)
    f:close()
    cassette = dir .. "/cassette.jsonl"
    local out = run(dir, { SANDLOT_RECORD = cassette })
    recorded = out:match("RESULT ([^\n]+)")
    url = out:match("URL (%S+)")
  end)

  teardown(function() if dir then h.rmtree(dir) end end)

  it("records every exchange, one JSON object per line, in order", function()
    assert.is_truthy(recorded, "the recording run printed no result")
    local lines = {}
    for line in read(cassette):gmatch("[^\n]+") do lines[#lines + 1] = assert(json.decode(line)) end
    assert.equal(7, #lines)
    for i, e in ipairs(lines) do assert.equal(i, e.seq) end
    assert.same({ "GET", "/items", "page=2", 200 },
                { lines[1].method, lines[1].path, lines[1].query, lines[1].status })
    assert.equal(201, lines[2].status)
    assert.is_truthy(lines[3].body_b64)                 -- bytes that are not UTF-8
    assert.equal(404, lines[4].status)
    assert.is_truthy(lines[5].error)                    -- the dropped connection
    assert.is_true(lines[7].streamed)
    local res = json.decode(recorded)
    assert.same({ "a", "b" }, res[1].json.items)
    assert.equal("sb-1", res[2].json.id)                -- the fake accepted the key
    assert.equal("\0\1\2\255\254 binary", res[3].body)
    assert.equal('{"n":1}\n{"n":2}\n{"n":3}\n', res[7].stream)
  end)

  it("keeps the planted secrets out of the cassette (and the check can see them)", function()
    local text = read(cassette)
    local function leaks(s) return s:find(SECRET, 1, true) or s:find(SECRET2, 1, true) end
    assert.is_falsy(leaks(text), "a secret is in the cassette")
    assert.matches("%[REDACTED%]", text)
    -- the same search finds them in an unscrubbed line of the same shape
    local planted = json.encode({ request = { headers = { Authorization = "Bearer " .. SECRET },
                                              body = json.encode({ api_key = SECRET2 }) } })
    assert.is_truthy(leaks(text .. planted .. "\n"))
    assert.is_truthy(planted:find(SECRET2, 1, true))
  end)

  it("replays the cassette with the fake stopped and gives the same results", function()
    assert.is_truthy(url)
    local out = run(dir, { SANDLOT_REPLAY = cassette, FAKE_URL = url })
    assert.equal(recorded, out:match("RESULT ([^\n]+)"))
    assert.equal("not_supported", out:match("UPGRADE (%S+)"))
  end)

  it("fails a request that does not match with the expected and the actual request", function()
    local out = run(dir, { SANDLOT_REPLAY = cassette, FAKE_URL = url, MISMATCH = "1" })
    local m = assert(json.decode(assert(out:match("MISMATCH ([^\n]+)"), out)))
    assert.equal("invalid_input", m.code)
    assert.equal("GET /items?page=2", m.expected)
    assert.equal("GET /other?page=2", m.actual)
    assert.matches("expected GET /items%?page=2, got GET /other%?page=2", m.message)
  end)

  it("refuses SANDLOT_RECORD and SANDLOT_REPLAY together", function()
    local script = "require('sandlot').http.request({url='http://127.0.0.1:1/'})"
    local env = { SANDLOT_RECORD = dir .. "/x", SANDLOT_REPLAY = cassette }
    local code, _, err = h.host({ "-e", script }, { env = env })
    assert.are_not.equal(0, code)
    assert.matches("not both", err)
  end)

  it("names a missing cassette with not_found", h.task(function()
    local code, out = h.host({ "-e", [[local r, e = require('sandlot').http.request(
      {url='http://127.0.0.1:1/'}) print(e.code)]] },
      { env = { SANDLOT_REPLAY = dir .. "/nope.jsonl" } })
    assert.equal(0, code)
    assert.equal("not_found\n", out)
    assert.is_truthy(sandlot)
  end))
end)
