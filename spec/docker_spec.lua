-- spec/docker_spec.lua: what the docker provider does beyond the conformance suite, against a
-- real daemon (spec/support/docker.lua): labels, network, images and pulls, output framing,
-- containers removed behind sandlot's back, gc, and the daemon dying mid-exec (last).
local sandlot = require("sandlot")
local h = require("spec.helper")
local docker = require("spec.support.docker")

describe("docker provider #docker", function()
  local suite = docker.suite({ dk = {}, dk_140 = { api_version = "1.40" },
                               dk_bad_version = { api_version = "1.41/../../containers" } })
  local need, api = suite.need, suite.api

  local function create(opts) return suite.create("dk", opts) end

  local function inspect(sb)
    return api({ path = "/containers/" .. sb.handle.container .. "/json" }).json
  end

  it("labels every container and keeps the network off by default", function()
    if not need() then return end
    local sb <close> = create({ labels = { team = "x" }, purpose = "spec" })
    local info = inspect(sb)
    assert.equal("1", info.Config.Labels.sandlot)
    assert.equal(sb.id, info.Config.Labels["sandlot.id"])
    assert.equal("x", info.Config.Labels.team)
    assert.equal("spec", info.Config.Labels["sandlot.purpose"])
    assert.equal("none", info.HostConfig.NetworkMode)
    local r = assert(sb:exec({ "ls", "/sys/class/net" }))
    assert.equal("lo\n", r.stdout)
    sb:destroy()
  end)

  it("applies memory, cpus, env and cwd", function()
    if not need() then return end
    local sb <close> = create({ memory_mb = 64, cpus = 0.5, env = { A = "1" }, cwd = "/work" })
    local info = inspect(sb)
    assert.equal(64 * 1024 * 1024, info.HostConfig.Memory)
    assert.equal(500000000, info.HostConfig.NanoCpus)
    local r = assert(sb:exec({ "sh", "-c", "echo $A; pwd" }))
    assert.equal("1\n/work\n", r.stdout)
    assert(sb:write_file("rel.txt", "r"))
    assert.equal("r", assert(sb:exec({ "cat", "/work/rel.txt" })).stdout)
    sb:destroy()
  end)

  it("refuses what it cannot honour", function()
    if not need() then return end
    local sb, err = sandlot.create("dk", { network = { "example.com" } })
    assert.is_nil(sb)
    assert.equal("not_supported", err.code)
    sb, err = sandlot.create("dk", { ports = { 8080 } })
    assert.is_nil(sb)
    assert.equal("invalid_input", err.code)
  end)

  it("reports a missing image clearly when pulling is off", function()
    if not need() then return end
    local sb, err = sandlot.create("dk", { image = "sandlot-test/absent:1" })
    assert.is_nil(sb)
    assert.equal("not_found", err.code)
    assert.matches("pull", err.message)
  end)

  it("reports an image that cannot be pulled, without hanging", function()
    if not need() then return end
    local sb, err = sandlot.timeout(120, function()
      return sandlot.create("dk", { image = "127.0.0.1:1/sandlot/nope:1", pull = true })
    end)
    assert.is_nil(sb)
    assert.is_truthy(err.code == "not_found" or err.code == "unavailable", tostring(err))
    assert.matches("pull", err.message)
  end)

  it("demultiplexes large interleaved stdout and stderr", function()
    if not need() then return end
    local sb <close> = create()
    local r = assert(sb:exec({ "sh", "-c",
      "i=0; while [ $i -lt 2000 ]; do echo out$i; echo err$i >&2; i=$((i+1)); done; " ..
      "head -c 1000000 /dev/zero" }))
    local want_out, want_err = {}, {}
    for i = 0, 1999 do
      want_out[#want_out + 1] = "out" .. i .. "\n"
      want_err[#want_err + 1] = "err" .. i .. "\n"
    end
    want_out[#want_out + 1] = ("\0"):rep(1000000)
    assert.equal(table.concat(want_err), r.stderr)
    assert.is_true(table.concat(want_out) == r.stdout)
    sb:destroy()
  end)

  it("pauses on stop and unpauses on start", function()
    if not need() then return end
    local sb <close> = create()
    assert(sb:stop())
    assert.is_true(inspect(sb).State.Paused)
    assert.equal("stopped", sb:status())
    local r, err = sb:exec({ "true" })
    assert.is_nil(r)
    assert.equal("unavailable", err.code)
    assert(sb:start())
    assert.equal(0, assert(sb:exec({ "true" })).exit_code)
    sb:destroy()
  end)

  it("ends a container at the end of its lifetime", function()
    if not need() then return end
    local sb <close> = create({ timeout = 1 })
    assert.equal("running", sb:status())
    assert.is_truthy(h.eventually(function() return sb:status() == "stopped" end, 15))
    sb:destroy()
  end)

  -- the processes still running whose command line, NULs dropped ("sleep30" for `sleep 30`),
  -- has `word`
  local function running(sb, word)
    local r = assert(sb:exec({ "sh", "-c", 'for f in /proc/[0-9]*/cmdline; do ' ..
      '[ "$f" = /proc/$$/cmdline ] && continue; l=; { read -r l <"$f"; } 2>/dev/null; ' ..
      'case $l in *"$1"*) echo "$l";; esac; done', "sh", word }))
    return r.stdout
  end

  local function leftovers(sb)
    return assert(sb:exec({ "sh", "-c", "ls -a /tmp | grep '^[.]sandlot-' || true" })).stdout
  end

  it("kills the command's process group on timeout, grandchildren too, and cleans up",
     function()
    if not need() then return end
    local sb <close> = create()
    local r = assert(sb:exec({ "sh", "-c", "sleep 301 & (sleep 302 &); cat; sleep 303" },
                             { timeout = 0.5, stdin = "in" }))
    assert.is_true(r.timed_out)
    assert.equal(137, r.exit_code)
    assert.equal("in", r.stdout)
    assert.is_truthy(h.eventually(function()
      return running(sb, "sleep30") == "" and leftovers(sb) == ""
    end, 5), running(sb, "sleep30") .. leftovers(sb))
    sb:destroy()
  end)

  it("kills the command's process group when the exec is cancelled", function()
    if not need() then return end
    local sb <close> = create()
    local t = sandlot.spawn(function() return sb:exec({ "sh", "-c", "sleep 311 & sleep 312" }) end)
    assert.is_truthy(h.eventually(function() return running(sb, "sleep31") ~= "" end, 5))
    t:cancel()
    assert.is_truthy(h.eventually(function()
      return running(sb, "sleep31") == "" and leftovers(sb) == ""
    end, 5), running(sb, "sleep31") .. leftovers(sb))
    sb:destroy()
  end)

  it("runs a command without a pid file or an extra process when runc leads its group",
     function()
    if not need() then return end
    local sb <close> = create()
    local r = assert(sb:exec({ "sh", "-c",
      'read -r a b c d e f rest </proc/$PPID/stat; echo "$e $f $PPID"; ls -a /tmp' }))
    local pgrp, sid, wrapper = r.stdout:match("^(%d+) (%d+) (%d+)\n")
    assert.equal(wrapper, pgrp)            -- the command runs in the wrapper's group
    assert.equal(wrapper, sid)
    assert.is_nil(r.stdout:find(".sandlot-exec-", 1, true))
    sb:destroy()
  end)

  it("falls back to a setsid session and a pid file where the wrapper leads no group",
     function()
    if not need() then return end
    local sb <close> = create()
    local s = require("providers.docker")._scripts
    local tag = "0123456789ab"
    local pidfile = "/tmp/.sandlot-exec-" .. tag
    -- the wrapper run from a shell of the exec's own group: not the leader of a group
    local t = sandlot.spawn(function()
      return sb:exec({ "sh", "-c", 'sh -c "$1" sandlot "$2" /dev/null sh -c "$3"; echo "rc $?"',
                       "sh", "#" .. pidfile .. "\n" .. s.wrap, pidfile,
                       "sleep 321 & sleep 322" })
    end)
    assert.is_truthy(h.eventually(function()
      return assert(sb:exec({ "cat", pidfile }, {})).exit_code == 0
    end, 5))
    local pid = assert(sb:exec({ "cat", pidfile })).stdout:gsub("%s+$", "")
    local st = assert(sb:exec({ "cat", "/proc/" .. pid .. "/stat" })).stdout
    local sid = st:match("^%d+ %b() %S+ %d+ %d+ (%d+)")
    assert.equal(pid, sid)                  -- the command leads a session of its own
    assert.equal(0, assert(sb:exec({ "/bin/sh", "-c", s.kill, "sandlot", tag })).exit_code)
    local r = assert(sandlot.timeout(10, function() return t:join() end))
    assert.equal("rc 137\n", r.stdout)      -- the wrapper saw its command killed, and ended
    assert.equal("", running(sb, "sleep32"))
    assert.equal("", leftovers(sb))
    sb:destroy()
  end)

  it("finds a wrapper that leads its group by its command line, without a pid file",
     function()
    if not need() then return end
    local sb <close> = create()
    local s = require("providers.docker")._scripts
    local tag = "000000000001"
    local pidfile = "/tmp/.sandlot-exec-" .. tag
    -- setsid: the wrapper leads a session and group of its own, as an exec's does
    local t = sandlot.spawn(function()
      return sb:exec({ "sh", "-c", 'setsid sh -c "$1" sandlot "$2" /dev/null sh -c "$3"; ' ..
                       'echo "rc $?"', "sh", "#" .. pidfile .. "\n" .. s.wrap, pidfile,
                       "sleep 341 & sleep 342" })
    end)
    assert.is_truthy(h.eventually(function() return running(sb, "sleep34") ~= "" end, 5))
    assert.equal("", leftovers(sb))         -- no pid file on this path
    assert.equal(0, assert(sb:exec({ "/bin/sh", "-c", s.kill, "sandlot", tag })).exit_code)
    local r = assert(sandlot.timeout(10, function() return t:join() end))
    assert.equal("rc 137\n", r.stdout)
    assert.equal("", running(sb, "sleep34"))
    sb:destroy()
  end)

  -- spawn (the provider contract's live process) ---------------------------------------------

  local function spawn(sb, argv, opts)
    return assert(sb:spawn(argv, opts))
  end

  local function drain(p)
    local out = {}
    while true do
      local stream, data = p:read(30)
      if not stream then
        assert.is_nil(data)
        return table.concat(out)
      end
      out[#out + 1] = stream .. ":" .. data
    end
  end

  it("spawns with stdin over the exec's attach stream, not a file uploaded first", function()
    if not need() then return end
    local sb <close> = create()
    -- the check sees an uploaded stdin file: plant one where an upload went
    assert(sb:write_file("/tmp/.sandlot-stdin-planted", "x"))
    assert.matches(".sandlot-stdin-", assert(sb:exec({ "ls", "-a", "/tmp" })).stdout, 1, true)
    assert(sb:rm("/tmp/.sandlot-stdin-planted"))
    local p <close> = spawn(sb, { "sh", "-c", 'read -r l; echo "got $l"; ls -a /tmp; cat' })
    assert(p:write("line\n"))
    assert(p:write("more\0bytes"))
    assert(p:close_stdin())
    local out = drain(p)
    assert.matches("^stdout:got line\n", out)
    assert.is_nil(out:find(".sandlot-stdin-", 1, true))
    assert.matches("more%zbytes$", out)
    assert.equal(0, assert(p:wait(30)).exit_code)
    local info = api({ path = "/exec/" .. p._inner.eid .. "/json" }).json
    assert.is_true(info.OpenStdin)                -- AttachStdin: the daemon's pipe
    assert.is_false(info.ProcessConfig.tty)
    assert.equal("", leftovers(sb))
    sb:destroy()
  end)

  it("gives exec's stdin over the attach stream: streamed, binary, or not read at all",
     function()
    if not need() then return end
    local sb <close> = create()
    local chunks, sent = {}, {}
    for i = 1, 64 do chunks[i] = string.rep(string.char(i % 256, 0, 255), 10000) end
    for i = 1, #chunks do sent[i] = chunks[i] end
    local r = assert(sb:exec({ "sh", "-c", "ls -a /tmp >&2; cat" },
                             { stdin = function() return table.remove(chunks, 1) end }))
    assert.equal(0, r.exit_code)
    assert.is_true(r.stdout == table.concat(sent), "stdout differs from the stdin written")
    assert.is_nil(r.stderr:find(".sandlot-stdin-", 1, true))
    -- a command that never reads: the writer is dropped, the result comes
    local big = string.rep("x", 4 * 1024 * 1024)
    local q = assert(sb:exec({ "sh", "-c", "echo ignored" }, { stdin = big }))
    assert.same({ 0, "ignored\n" }, { q.exit_code, q.stdout })
    assert.equal("", leftovers(sb))
    sb:destroy()
  end)

  it("kill and close reach a spawned command's process group", function()
    if not need() then return end
    local sb <close> = create()
    local p <close> = spawn(sb, { "sh", "-c", "sleep 401 & echo up; wait" })
    assert.same({ "stdout", "up\n" }, { p:read(30) })
    assert.is_truthy(running(sb, "sleep 401") ~= "")
    assert.is_true(p:kill())                      -- TERM to the group: the child goes too
    local r = assert(p:wait(30))
    assert.same({ 143, 15 }, { r.exit_code, r.signal })
    assert.is_truthy(h.eventually(function() return running(sb, "sleep 401") == "" end, 5))
    local ok, err = p:kill()
    assert.is_nil(ok)
    assert.equal("not_found", err.code)
    local q = spawn(sb, { "sh", "-c", "sleep 402 & echo up; exec sleep 403" })
    assert.same({ "stdout", "up\n" }, { q:read(30) })
    q:close()                                     -- no wait: SIGKILL to the group, queued
    assert.is_truthy(h.eventually(function()
      return running(sb, "sleep 40") == "" and leftovers(sb) == ""
    end, 5), running(sb, "sleep 40") .. leftovers(sb))
    sb:destroy()
  end)

  it("maps a refused attach like any API answer (api c:upgrade)", function()
    if not need() then return end
    local c = require("sandlot.api").client({ config = {} },
                                            { unix_socket = suite.env.socket,
                                              base_url = "http://docker" })
    local s, err = c:upgrade("POST", "/exec/0123456789ab/start",
                             { json = { Detach = false, Tty = false } })
    assert.is_nil(s)
    assert.equal("not_found", err.code)
    assert.equal(404, err.status)
    assert.equal("POST /exec/0123456789ab/start", err.via)
    assert.matches("No such exec instance", err.message, 1, true)
  end)

  it("refuses a handle whose container is not an id before it enters a URL path", function()
    if not need() then return end
    local sb <close> = create()
    local saved = sandlot.to_map(sb)
    local other = create()                 -- what an edited handle might try to reach
    local bads = { "../../version", sb.handle.container .. "/../" .. other.handle.container,
                   "x", ("a"):rep(65), "ABCDEF0123456789", sb.handle.container .. "?a=1", 7 }
    for _, bad in ipairs(bads) do
      local m = sandlot.to_map(sb)
      m.handle.container = bad
      local sb2 = assert(sandlot.from_map(m))
      for _, op in ipairs({ "exec", "read_file", "write_file", "status", "reconnect", "stop",
                            "start", "destroy" }) do
        local args = { exec = { { "true" } }, read_file = { "x" }, write_file = { "x", "d" } }
        local r, err = sb2[op](sb2, table.unpack(args[op] or {}))
        assert.is_nil(r, op .. " " .. tostring(bad))
        assert.equal("invalid_input", err.code, op .. " " .. tostring(bad))
      end
    end
    assert.equal("running", other:status())  -- nothing reached the other container
    assert.equal("running", assert(sandlot.from_map(saved)):status())
    other:destroy()
    sb:destroy()
  end)

  it("refuses an api_version that is not a version before it enters the URL path", function()
    if not need() then return end
    local sb, err = sandlot.create("dk_bad_version", {})
    assert.is_nil(sb)
    assert.equal("invalid_input", err.code)
    assert.matches("api_version", err.message, 1, true)
    local ok <close> = assert(sandlot.create("dk_140", {}))   -- a real version is taken
    assert.equal(0, assert(ok:exec({ "true" })).exit_code)
  end)

  it("refuses a path whose '..' leaves the container's root, instead of clamping it",
     function()
    if not need() then return end
    local sb <close> = create()
    assert.matches("root:", assert(sb:read_file("../etc/passwd")))   -- inside: fine
    local cases = {
      function() return sb:read_file("/../etc/passwd") end,
      function() return sb:read_file("../../etc/passwd") end,
      function() return sb:write_file("../../../tmp/x", "d") end,
      function() return sb:write_files({ { path = "/a/../../b", data = "d" } }) end,
      function() return sb:exec({ "true" }, { cwd = "/.." }) end,
    }
    for i, f in ipairs(cases) do
      local r, err = f()
      assert.is_nil(r, i)
      assert.equal("invalid_input", err.code, i)
    end
    local _, err = sandlot.create("dk", { cwd = "../.." })
    assert.equal("invalid_input", err.code)
    assert.equal(1, assert(sb:exec({ "test", "-e", "/tmp/x" })).exit_code)   -- not clamped
    sb:destroy()
  end)

  it("removes a variable given as false, at create and at exec", function()
    if not need() then return end
    local sb <close> = create({ env = { A = "1", B = "2", C = false } })
    local show = { "sh", "-c", 'echo "${A-unset} ${B-unset} ${C-unset}"' }
    assert.equal("1 2 unset\n", assert(sb:exec(show)).stdout)
    assert.equal("unset 2 unset\n", assert(sb:exec(show, { env = { A = false } })).stdout)
    assert.equal("1 x unset\n", assert(sb:exec(show, { env = { B = "x" } })).stdout)
    sb:destroy()
  end)

  it("lists its sandboxes as plain handles, filtered by labels, and gc is public", function()
    if not need() then return end
    local dk = require("providers.docker")
    local ctx = { config = { host = suite.env.host }, warn = function() end }
    local a <close> = create({ labels = { team = "list-a" } })
    local b <close> = create({ labels = { team = "list-b" } })
    local only = assert(dk.list(ctx, { labels = { team = "list-a" } }))
    assert.equal(1, #only)
    local plain = {}                       -- the handle, beside what list adds for gc
    for k, v in pairs(only[1]) do if k ~= "labels" and k ~= "created_at" then plain[k] = v end end
    assert.same(a.handle, plain)
    assert.same({ "list-a", a.durable_id }, { only[1].labels.team,
                                              only[1].labels["sandlot.durable_id"] })
    assert.is_number(only[1].created_at)
    local ids = {}
    for _, hd in ipairs(assert(dk.list(ctx))) do ids[hd.id] = true end
    assert.is_true(ids[a.id] and ids[b.id])
    local m = sandlot.to_map(b)
    m.id, m.handle = only[1].id, only[1]
    local back = assert(sandlot.from_map(m))
    assert.equal(0, assert(back:exec({ "true" })).exit_code)
    local report = assert(dk.gc(ctx, { all = true, dry_run = true }))
    local seen = {}
    for _, e in ipairs(report) do seen[e.id] = e end
    assert.equal("all", seen[a.id].reason)
    assert.is_false(seen[a.id].removed)
    assert.equal("running", a:status())
    a:destroy()
    b:destroy()
  end)

  it("gives not_found for a container removed behind its back", function()
    if not need() then return end
    local sb = create()
    local saved = sandlot.to_map(sb)
    api({ method = "DELETE", path = "/containers/" .. sb.handle.container,
          query = { force = "true" } })
    local r, err = sb:exec({ "true" })
    assert.is_nil(r)
    assert.equal("not_found", err.code)
    for op, args in pairs({ read_file = { "x.txt" }, write_file = { "x.txt", "data" } }) do
      r, err = sb[op](sb, table.unpack(args))
      assert.is_nil(r)
      assert.equal("not_found", err.code, op)
    end
    assert.equal("terminated", sb:status())
    r, err = assert(sandlot.from_map(saved)):reconnect()
    assert.is_nil(r)
    assert.equal("not_found", err.code)
    assert.is_true(sb:destroy())
  end)

  it("sandlot gc removes dead sandboxes and orphans, and keeps live and kept ones", function()
    if not need() then return end
    local live = create()
    local dead = create()
    local kept = create({ labels = { ["sandlot.keep"] = "1" } })
    local orphan = create()
    api({ method = "POST", path = "/containers/" .. dead.handle.container .. "/kill" })
    assert.is_truthy(h.eventually(function() return dead:status() == "stopped" end, 10))
    -- the ledger says these two are destroyed: orphans, unless labelled sandlot.keep=1
    local l = assert(require("sandlot.ledger").open())
    assert(l:set_state(orphan.durable_id, "destroyed"))
    assert(l:set_state(kept.durable_id, "destroyed"))
    local function gc(...)
      return h.host({ "gc", "--provider", "docker", ... },
                    { env = { DOCKER_HOST = suite.env.host } })
    end
    local function row(out, id)
      for line in out:gmatch("[^\n]+") do
        if line:find(id, 1, true) then return line end
      end
    end
    local code, out, errout = gc()
    assert.equal(0, code, errout)
    assert.matches("^leftover .* would destroy +exited", row(out, dead.id))
    assert.matches("^orphan .* would destroy +the ledger says destroyed", row(out, orphan.id))
    assert.is_nil(row(out, live.id))
    assert.is_nil(row(out, kept.id))
    assert.equal("stopped", dead:status())
    assert.equal("running", orphan:status())
    code, out, errout = gc("--yes")
    assert.equal(0, code, errout)
    assert.matches("^leftover .* destroyed", row(out, dead.id))
    assert.matches("^orphan .* destroyed", row(out, orphan.id))
    assert.equal("terminated", dead:status())
    assert.equal("terminated", orphan:status())
    assert.equal("running", live:status())
    assert.equal("running", kept:status())
    live:destroy()
    kept:destroy()
  end)

  it("returns an error, not a hang, when the daemon dies mid-exec", function()
    if not need() then return end
    if not suite.env.own then
      pending("the daemon in use is not ours to kill")
      return
    end
    local sb = create()
    local t = sandlot.spawn(function() return sb:exec({ "sleep", "60" }) end)
    sandlot.sleep(0.5)
    suite.env.proc:kill("KILL")            -- dockerd only: its group is cleaned at teardown
    local r, err = sandlot.timeout(30, function() return t:join() end)
    assert.is_nil(r)
    assert.is_truthy(err.code == "unavailable" or err.code == "io_error", tostring(err))
    assert.not_equal("timeout", err.code)
    r, err = sb:exec({ "true" })
    assert.is_nil(r)
    assert.equal("unavailable", err.code)
  end)
end)
