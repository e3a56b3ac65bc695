-- spec/bench_cases_spec.lua: every case of bench/cases.lua runs once, tiny, through the built
-- host as `make bench` runs it, so a library change that breaks the benchmark fails here
-- (make bench only reports: a broken case shows as "skipped: failed" and fails nothing).
-- Timing is never asserted: only that each case runs and prints its figure.
local sandlot = require("sandlot")
local task = require("sandlot.task")
local json = require("sandlot.wire.json")
local docker = require("spec.support.docker")
local sshd = require("spec.support.sshd")
local h = require("spec.helper")

local function run_case(...)
  local rc, out, err = h.host({ "bench/cases.lua", ... }, { timeout = 120 })
  assert.equal(0, rc, ("case %s failed: %s"):format(select(1, ...), err))
  local first = out:match("^(%S+)")
  assert.is_truthy(tonumber(first), "the case prints its figure first, got: " .. out)
  return out
end

describe("bench cases", function()
  local tmp

  lazy_setup(function() tmp = h.tmpdir() end)
  lazy_teardown(function() h.rmtree(tmp) end)

  it("local exec and handles run", function()
    run_case("local_exec", "none", "2")
    run_case("handles", "3", "1")
  end)

  it("plugins runs: hook p50, bytes per state, reload time", function()
    local out = run_case("plugins", "50", tmp)
    local f = {}
    for w in out:gmatch("%S+") do f[#f + 1] = tonumber(w) end
    assert.equal(3, #f, "p50 us, bytes, reload ms: " .. out)
    assert.is_true(f[2] > 1000, "a state has a size")
  end)

  it("the replication cases run (figure 10)", function()
    -- without namespaces (a chroot) the cases run unconfined: what they measure still runs
    local iso = require("spec.support.namespaces").why() and "none" or "namespaces"
    local out = run_case("replicate_local", iso, "cold")
    assert.is_true(tonumber(out:match("^%S+%s+(%S+)")) > 1000000,
                   "the cold start ships the binary")
    out = run_case("replicate_local", "none", "warm")
    assert.equal(0, tonumber(out:match("^%S+%s+(%S+)")), "the warm start ships nothing")
    run_case("replicate_calls", iso, "20")
    run_case("replicate_pipelined", iso, "128", "8")
  end)

  it("the ledger's stall and per-create cases run", function()
    local out = run_case("ledger_stall", "4", "2", "on")
    local f = {}
    for w in out:gmatch("%S+") do f[#f + 1] = tonumber(w) end
    assert.equal(4, #f, "p99, max, wall, journal writes: " .. out)
    assert.equal(24, f[4])
    run_case("ledger_stall", "4", "2", "off")
    run_case("ledger_create", "3")
  end)

  it("scale runs, with every exec of the batch in flight at once", function()
    local out = run_case("scale", "50", "10")
    local f = {}
    for w in out:gmatch("%S+") do f[#f + 1] = tonumber(w) end
    assert.equal(8, #f, "create, destroy, batch, in flight, heap, rss, hwm, nofile: " .. out)
    assert.equal(10, f[4], "the 10 execs of the batch were in flight together")
    assert.is_true(f[8] >= 1024, "open-files soft limit")
  end)

  -- Figure 7 (bench/fig7.lua): the canned fake in a process of its own, and each of
  -- bench/peers.lua's modes through the provider; then the fake holds no live sandbox and
  -- refused nothing. The SDKs' side (bench/sdk/*.mjs) runs when BENCH_SDK_DIR names an npm
  -- prefix holding every SDK (installing them takes minutes): pending otherwise.
  local function with_fake(p, fn)
    local fake <close> = assert(sandlot.proc.spawn({ h.BIN, "bench/peer_fake.lua", p },
                                                   { stream = true }))
    local line = ""
    assert(task.timeout(60, function()
      while not line:find("\n") do
        local data, which = fake:read()
        assert(data, "the fake exited before it listened")
        if which == "stdout" then line = line .. data end
      end
      return true
    end))
    line = line:match("^[^\n]*")
    local ok, err = pcall(fn, line, json.decode(line))
    fake:kill("KILL")
    fake:wait()
    assert(ok, err)
  end

  local function numbers(out)
    local f = {}
    for w in out:gmatch("%S+") do f[#f + 1] = assert(tonumber(w), "not a number: " .. out) end
    return f
  end

  -- each fake's list call (through its own API), and a create to plant a live sandbox with
  local function api_of(p, f)
    local bearer = { Authorization = "Bearer " .. f.token }
    local post = { Authorization = "Bearer " .. f.token, ["Content-Type"] = "application/json" }
    if p == "e2b" then
      return { url = f.url .. "/v2/sandboxes", headers = { ["X-API-Key"] = f.token } },
             { url = f.url .. "/v2/sandboxes", body = '{"templateID":"base"}',
               headers = { ["X-API-Key"] = f.token, ["Content-Type"] = "application/json" } }
    elseif p == "daytona" then
      return { url = f.url .. "/api/sandbox", headers = bearer },
             { url = f.url .. "/api/sandbox", body = "{}", headers = post }
    elseif p == "vercel" then
      local q = "?teamId=" .. f.team
      return { url = f.url .. "/v2/sandboxes" .. q .. "&project=" .. f.project, headers = post },
             { url = f.url .. "/v3/sandboxes" .. q, headers = post,
               body = json.encode({ projectId = f.project }) }
    end
    return { url = f.url .. "/v1/sprites", headers = bearer },
           { url = f.url .. "/v1/sprites", body = '{"name":"planted"}', headers = post }
  end

  -- the sandboxes the fake still has live (through its own API), and what it refused
  local function leftovers(p, f)
    local list = api_of(p, f)
    local res = assert(sandlot.http.request({ url = list.url, headers = list.headers }))
    assert.equal(200, res.status, res.body)
    local live = json.decode(res.body)
    if p == "vercel" then live = live.sandboxes end
    if p == "sprites" then live = live.sprites end
    if p == "daytona" then
      live = live.items
      local rej = assert(sandlot.http.request({ url = f.url .. "/_fake/rejected" }))
      assert.same({}, json.decode(rej.body))
    end
    return #live
  end

  for _, p in ipairs(require("bench.fig7").PROVIDERS) do
    it("figure 7's sandlot side runs every mode against the canned " .. p .. " fake",
       h.task(function()
      with_fake(p, function(line, f)
        local function peer(...)
          local rc, out, err = h.host({ "bench/peers.lua", p, line, ... },
                                      { timeout = 120, env = { SANDLOT_LEDGER = "off" } })
          assert.equal(0, rc, ("peers.lua %s failed: %s"):format(table.concat({ ... }, " "), err))
          return out
        end
        local seq = numbers(peer("seq", "2"))
        assert.equal(2, #seq, "seconds and CPU seconds")
        assert.is_true(seq[1] > 0 and seq[2] >= 0)
        assert.equal(2, #numbers(peer("conc", "4", "2")))
        local rss = numbers(peer("handles", "3"))
        assert.is_true(rss[1] >= rss[2] and rss[2] > 1000, "peak RSS and RSS in KiB")
        peer("oneshot")
        assert.equal(0, leftovers(p, f), "every sandbox was destroyed")
        -- a sandbox left live is seen (planted through the fake's API): the check can fail
        local _, plant = api_of(p, f)
        local res = assert(sandlot.http.request({ method = "POST", url = plant.url,
                                                  headers = plant.headers, body = plant.body }))
        assert.is_true(res.status == 200 or res.status == 201, res.body)
        assert.equal(1, leftovers(p, f))
      end)
    end))

    it("figure 7's SDK side (bench/sdk/" .. p .. ".mjs) runs its modes", h.task(function()
      local dir = os.getenv("BENCH_SDK_DIR")
      if not dir or dir == "" then
        return pending("BENCH_SDK_DIR (an npm prefix holding the SDKs) is not set")
      end
      local why = require("spec.support.npm").missing()
      if why then return pending(why) end
      assert(sandlot.proc.run({ "cp", "bench/sdk/" .. p .. ".mjs", dir .. "/" .. p .. ".mjs" }))
      assert(sandlot.proc.run({ "cp", "bench/sdk/_modes.mjs", dir .. "/_modes.mjs" }))
      with_fake(p, function(line, f)
        local function sdk(...)
          local r = assert(sandlot.proc.run({ "node", dir .. "/" .. p .. ".mjs", line, ... },
                                            { timeout = 300 }))
          assert.equal(0, r.exit_code, r.stderr)
          return r.stdout
        end
        assert.equal(2, #numbers(sdk("seq", "2")))
        assert.equal(2, #numbers(sdk("conc", "4", "2")))
        assert.equal(2, #numbers(sdk("handles", "2")))
        sdk("oneshot")
        assert.equal(0, leftovers(p, f), "every sandbox was destroyed")
      end)
    end))
  end

  describe("#docker", function()
    local env, why

    lazy_setup(function() env, why = docker.start() end)
    lazy_teardown(function() docker.stop(env) end)

    it("docker exec, the exec agent and lifecycle run", function()
      if not env then pending(docker.unavailable(why)) return end
      run_case("docker_exec", env.host, env.image, "1")
      run_case("docker_life", env.host, env.image, "1")
      local out = run_case("docker_agent", env.host, env.image, "2")
      assert.is_truthy(tonumber(out:match("^%S+%s+(%S+)")), "the agent's start second: " .. out)
      run_case("replicate_docker", env.host, env.image)
    end)
  end)

  describe("#ssh", function()
    local srv, why

    lazy_setup(function() srv, why = sshd.start() end)
    lazy_teardown(function() if srv then srv:stop() end end)

    it("ssh exec, client exec, concurrent execs and SFTP both ways run", function()
      if not srv then
        if os.getenv("CI") then error("sshd is required in CI: " .. tostring(why)) end
        pending(why)
        return
      end
      -- the options as bench/run.lua passes them: JSON on the command line
      local o = json.encode({ host = srv.host, port = srv.port, user = srv.user,
                              key_file = srv.key, known_hosts = srv.known_hosts,
                              base_dir = srv.dir .. "/sandboxes" })
      local out = run_case("ssh_exec", o, "2")
      assert.equal(1, tonumber(out:match("^%S+%s+(%S+)")), "one SSH connection for the execs")
      run_case("ssh_client_exec", o, "2")
      out = run_case("ssh_concurrent", o, "3", "2", "3")
      assert.equal(1, tonumber(out:match("^%S+%s+(%S+)")), "one SSH connection for 3 sandboxes")
      local f = assert(io.open(tmp .. "/up", "wb"))
      f:write(("x"):rep(100000))
      f:close()
      run_case("sftp", o, "up", tmp .. "/up", srv.dir .. "/bench-file")
      run_case("sftp", o, "down", tmp .. "/down", srv.dir .. "/bench-file")
      local back = assert(io.open(tmp .. "/down", "rb"))
      assert.equal(100000, #back:read("a"))
      back:close()
    end)
  end)
end)
