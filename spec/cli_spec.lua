-- spec/cli_spec.lua: the sandlot host binary: options, exit codes, tracebacks, arg.
local h = require("spec.helper")

describe("sandlot host CLI", function()
  it("prints its version and help", function()
    local code, out = h.host({ "--version" })
    assert.equal(0, code)
    assert.matches("^sandlot %d+%.%d+%.%d+", out)
    local code2, out2 = h.host({ "--help" })
    assert.equal(0, code2)
    assert.matches("usage: sandlot", out2)
  end)

  it("runs -e code (repeatable) as tasks that may wait", function()
    local code, out = h.host({ "-e", "x = 20",
                               "-e", "require('sandlot').sleep(0.01) print(x + 1)" })
    assert.equal(0, code)
    assert.equal("21\n", out)
  end)

  it("runs a script with arg and ... like lua", function()
    local dir = h.tmpdir()
    local f = assert(io.open(dir .. "/s.lua", "w"))
    f:write("print(arg[0], arg[1], arg[2], ...)\nprint(select('#', ...))\n")
    f:close()
    local code, out = h.host({ dir .. "/s.lua", "a b", "c" })
    h.rmtree(dir)
    assert.equal(0, code)
    assert.equal(dir .. "/s.lua\ta b\tc\ta b\tc\n2\n", out)
  end)

  it("has `sandlot` as a global in scripts and -e, loaded on first use", function()
    local code, out, err = h.host({ "-e", "print(rawget(_G, 'sandlot') == nil)",
                                    "-e", "print(sandlot == require('sandlot'), sandlot.sleep(0))",
                                    "-e", "print(rawget(_G, 'sandlot') ~= nil, no_such_global)" })
    assert.equal(0, code, err)
    assert.equal("true\ntrue\ttrue\ntrue\tnil\n", out)
    local dir = h.tmpdir()
    local f = assert(io.open(dir .. "/pasted.lua", "w"))
    f:write("local r = assert(sandlot.proc.run({ 'echo', 'pasted' }))\nio.write(r.stdout)\n")
    f:close()
    local c2, out2, err2 = h.host({ dir .. "/pasted.lua" })
    h.rmtree(dir)
    assert.equal(0, c2, err2)
    assert.equal("pasted\n", out2)
  end)

  it("runs the script on stdin with -", function()
    local code, out = h.host({ "-" }, { stdin = "print('from stdin')" })
    assert.equal(0, code)
    assert.equal("from stdin\n", out)
  end)

  it("exits 1 with the message and a traceback when the script fails", function()
    local code, _, err = h.host({ "-e", "local function f() error('broken thing') end f()" })
    assert.equal(1, code)
    assert.matches("broken thing", err)
    assert.matches("stack traceback", err)
    assert.matches("in local 'f'", err)
  end)

  it("prints error tables with their __tostring", function()
    local code, _, err = h.host({ "-e", "error(require('sandlot').errors.new('not_found', " ..
                                        "'no such sandbox', {op = 'exec'}))" })
    assert.equal(1, code)
    assert.matches("exec: not_found: no such sandbox", err, 1, true)
  end)

  it("reports syntax errors and missing scripts with exit 1", function()
    local code, _, err = h.host({ "-e", "this is not lua" })
    assert.equal(1, code)
    assert.matches("syntax error", err)
    local code2, _, err2 = h.host({ "/nonexistent/script.lua" })
    assert.equal(1, code2)
    assert.matches("cannot open", err2)
  end)

  it("rejects unknown options as a usage error (exit 2), suggesting a near one", function()
    local code, _, err = h.host({ "--bogus" })
    assert.equal(2, code)
    assert.matches("^sandlot: unrecognized option '%-%-bogus'\n", err)
    code, _, err = h.host({ "--verison" })
    assert.equal(2, code)
    assert.matches("unrecognized option '--verison' (did you mean '--version'?)", err, 1, true)
    code, _, err = h.host({ "-e" })
    assert.equal(2, code)
    assert.matches("'-e' needs an argument", err, 1, true)
  end)

  it("prints the sandlot: prefix once, also on the engine's own reports", function()
    local code, _, err = h.host({ "-e", "require('sandlot').spawn(function() error('boom') end)" })
    assert.equal(1, code)
    assert.matches("^sandlot: a task failed and nobody joined it: ", err)   -- the prefix is there
    assert.not_matches("sandlot: sandlot:", err, 1, true)
    code, _, err = h.host({ "-e", "error('sandlot: raised with the prefix')" })
    assert.equal(1, code)
    assert.matches("^sandlot: %(command line%):1: sandlot: raised", err)   -- not at the start
    code, _, err = h.host({ "-e", "error('sandlot: at the start', 0)" })
    assert.equal(1, code)
    assert.matches("^sandlot: at the start\n", err)
  end)

  it("os.exit kills children still running and exits with the code", function()
    local dir = h.tmpdir()
    local code = h.host({ "-e", ([[
      local p = require("sandlot").proc.spawn({"sh", "-c", "echo $$ > %s/pid; exec sleep 30"})
      require("sandlot").sleep(0.2)
      os.exit(3)]]):format(dir) })
    assert.equal(3, code)
    local f = assert(io.open(dir .. "/pid"))
    local pid = f:read("n")
    f:close()
    h.rmtree(dir)
    assert.is_true(h.eventually(function() return not h.alive(pid) end, 5))
  end)

  -- libcurl and libssh2 bring ~30 shared libraries; the binary loads them on first use
  local function probe(use)
    return ([[
      local function mapped(lib)
        for l in io.lines("/proc/self/maps") do if l:find(lib, 1, true) then return true end end
        return false
      end
      local s = require("sandlot")
      s.proc.run({"true"})
      print(mapped("libcurl"), mapped("libssh2"))
      assert(%s)
      print(mapped("libcurl"), mapped("libssh2"))]]):format(use)
  end

  it("loads libcurl and libssh2 only when a script first uses sandlot.http or sandlot.ssh",
     function()
    local code, out, err = h.host({ "-e", probe("s.ssh.connect") })
    assert.equal("", err)
    assert.equal(0, code)
    assert.equal("false\tfalse\nfalse\ttrue\n", out)
    code, out, err = h.host({ "-e", probe("s.http.request") })
    assert.equal("", err)
    assert.equal(0, code)
    assert.matches("^false\tfalse\ntrue\t", out)  -- Debian's libcurl links libssh2 itself
  end)

  it("says where it looked when the HTTP module is missing", function()
    if require("sandlot._paths").exists("/usr/local/lib/sandlot/http.so") then
      pending("an installed sandlot in /usr/local would be found")
      return
    end
    local dir = h.tmpdir()
    assert(require("sandlot").proc.run({ "cp", h.BIN, dir .. "/sandlot" }))
    local code, _, err = h.host({ "-e", "require('sandlot.core.http')" },
                                { bin = dir .. "/sandlot" })
    h.rmtree(dir)
    assert.equal(1, code)
    assert.matches("module http.so not found", err, 1, true)
    assert.matches("no file '" .. dir .. "/lib/sandlot/http.so'", err, 1, true)
  end)
end)

-- The conventions every command follows, through the built host: help from the one command
-- table, exit codes 0 / 1 / 2, "did you mean", one message prefix, --json.
describe("sandlot commands: conventions", function()
  local json = require("sandlot.wire.json")
  local env = { SANDLOT_CONFIG = false, SANDLOT_PROVIDER = false,
                XDG_CONFIG_HOME = "/nonexistent" }
  local function host(args, opts)
    opts = opts or {}
    opts.env = opts.env or env
    return h.host(args, opts)
  end

  local list
  lazy_setup(function()
    local code, out = host({ "help", "--json" })
    assert.equal(0, code)
    list = assert(json.decode(out)).commands
  end)

  it("help --json lists every command with its usage and options", function()
    local names = {}
    for _, c in ipairs(list) do
      names[#names + 1] = c.name
      assert.matches("^sandlot " .. c.name:gsub("%-", "%%-"), c.usage)
      assert.is_string(c.summary)
      local has = {}
      for _, o in ipairs(c.options) do has[o.name] = true end
      assert.is_true(has["--help"], c.name)
      if c.name ~= "shell" then                -- a terminal session shows no document
        assert.is_true(has["--json"], c.name)
      end
    end
    assert.same({ "caps", "check-provider", "checkpoint", "config", "create", "destroy", "exec",
                  "gc", "help", "logs", "plugins", "ps", "rm", "shell" }, names)
  end)

  it("`help CMD`, `CMD --help` and `CMD -h` print the same usage and exit 0, for every command",
    function()
      for _, c in ipairs(list) do
        local code, out, err = host({ "help", c.name })
        assert.equal(0, code, err)
        assert.equal("", err)
        assert.equal("usage: " .. c.usage .. "\n", out:match("^[^\n]*\n"))
        for _, flag in ipairs({ "--help", "-h" }) do
          local code2, out2, err2 = host({ c.name, flag })
          assert.equal(0, code2, c.name .. " " .. flag .. ": " .. err2)
          assert.equal(out, out2)
        end
        local _, one = host({ "help", c.name, "--json" })
        assert.same(c, json.decode(one))
      end
    end)

  it("the list names every command", function()
    local code, out = host({ "help" })
    assert.equal(0, code)
    for _, c in ipairs(list) do
      local row = "  " .. c.name .. (" "):rep(17 - #c.name) .. c.summary .. "\n"
      assert.matches(row, out, 1, true)
    end
    assert.not_matches("help commands", select(2, host({ "--help" })), 1, true)
  end)

  -- {args, exit code, a pattern stderr must match (plain)}
  local cases = {
    { { "help" }, 0, nil },
    { { "help", "gc" }, 0, nil },
    { { "frobnicate" }, 2, "sandlot: unknown command 'frobnicate'" },
    { { "chek-provider" }, 2, "unknown command 'chek-provider' (did you mean 'check-provider'?)" },
    { { "help", "gcc" }, 2, "sandlot: help: no command named 'gcc' (did you mean 'gc'?)" },
    { { "help", "gc", "caps" }, 2, "sandlot: help: too many arguments" },
    { { "gc", "--yes", "--dry-run" }, 2,
      "sandlot: gc: --yes and --dry-run contradict each other\nusage: sandlot gc" },
    { { "gc", "--provder", "x" }, 2, "sandlot: gc: unknown option '--provder' " ..
                                     "(did you mean '--provider'?)" },
    { { "gc", "--provider" }, 2, "sandlot: gc: --provider needs a value (NAME)" },
    { { "gc", "--provider", "local", "--older-than", "soon" }, 2,
      "--older-than needs a duration such as 90, 15m, 2h or 3d, got 'soon'" },
    { { "gc", "--provider", "local", "extra" }, 2, "sandlot: gc: unexpected argument 'extra'" },
    { { "gc", "--yes=1", "--provider", "local" }, 2, "sandlot: gc: --yes takes no value" },
    { { "gc", "--provider", "local" }, 0, nil },
    { { "gc", "--provider", "locla" }, 1,
      "sandlot: gc: locla: not_found: no provider named 'locla'" },
    { { "rm" }, 2, "sandlot: rm: missing ID" },
    { { "rm", "sb-0000000000000000" }, 1, "sandlot: rm: no such sandbox: sb-0000000000000000" },
    { { "gc", "--provider", "locla" }, 1, "(did you mean 'local'?)" },
    { { "caps" }, 2, "sandlot: caps: missing FILE_OR_NAME" },
    { { "caps", "local" }, 0, nil },
    { { "caps", "dockr" }, 1, "(did you mean 'docker'?)" },
    { { "check-provider" }, 2, "sandlot: check-provider: missing FILE_OR_NAME" },
    { { "check-provider", "local", "--json", "--verbose" }, 2, "exclude each other" },
    { { "check-provider", "local", "--big-file-mb", "0" }, 2,
      "--big-file-mb needs a number >= 1" },
    { { "check-provider", "local", "--filter", "no such case xyz" }, 1,
      "sandlot: check-provider: no case matches --filter 'no such case xyz'" },
  }
  for _, c in ipairs(cases) do
    it(("exits %d for sandlot %s"):format(c[2], table.concat(c[1], " ")), function()
      local tmp = h.tmpdir()
      local e = { XDG_STATE_HOME = tmp }
      for k, v in pairs(env) do e[k] = v end
      local code, out, err = host(c[1], { env = e, timeout = 120 })
      h.rmtree(tmp)
      assert.equal(c[2], code, out .. err)
      if c[3] then assert.matches(c[3], err, 1, true) else assert.equal("", err) end
      assert.not_matches("sandlot: sandlot:", err, 1, true)
      if c[2] == 2 then assert.equal("", out) end          -- usage errors go to stderr only
    end)
  end

  it("caps --json gives the provider and how it does each operation", function()
    local code, out = host({ "caps", "local", "--json" })
    assert.equal(0, code)
    local doc = assert(json.decode(out))
    assert.equal("local", doc.provider)
    assert.equal("native", doc.capabilities.exec)
    assert.equal("write_file", doc.capabilities.write_files)
    local _, text = host({ "caps", "local" })
    assert.matches("provider local\n", text, 1, true)
    assert.matches("  write_files  write_file\n", text, 1, true)
  end)
end)

describe("did you mean, and where a provider name came from", function()
  local tmp
  before_each(function() tmp = h.tmpdir() end)
  after_each(function() h.rmtree(tmp) end)

  local function run(config, code, extra)
    local f = assert(io.open(tmp .. "/sandlot.config.lua", "w"))
    f:write(config)
    f:close()
    local env = { SANDLOT_CONFIG = false, SANDLOT_PROVIDER = false,
                  XDG_CONFIG_HOME = tmp .. "/xdg", XDG_STATE_HOME = tmp .. "/state" }
    for k, v in pairs(extra or {}) do env[k] = v end
    local bin = assert(require("sandlot.core.sys").realpath(h.BIN))
    return h.host({ "-e", code }, { bin = bin, cwd = tmp, env = env })
  end
  local create = "print(select(2, require('sandlot').create({})))"

  it("a default naming no provider says so, where it came from and the configured names",
    function()
      local cfg = "return { default = 'prod', providers = { prd = 'local', dev = 'local' } }"
      local code, out = run(cfg, create)
      assert.equal(0, code)
      assert.matches("not_found: no provider named 'prod' (from default in sandlot.config.lua)",
                     out, 1, true)
      assert.matches("(did you mean 'prd'?); configured: dev, prd", out, 1, true)
      code, out = run(cfg, create, { SANDLOT_PROVIDER = "dcoker" })
      assert.equal(0, code)
      assert.matches("no provider named 'dcoker' (from $SANDLOT_PROVIDER)", out, 1, true)
      assert.matches("(did you mean 'docker'?); configured: dev, prd", out, 1, true)
      -- a configured default that exists is used as before
      code, out = run("return { default = 'dev', providers = { dev = 'local' } }",
                      "local sb = assert(require('sandlot').create({})) " ..
                      "print(sb.provider) sb:destroy()")
      assert.equal(0, code)
      assert.equal("dev\n", out)
    end)

  it("suggests config keys, provider options, provider names and create options", function()
    local cases = {
      { "return { defualt = 'local' }", create,
        "defualt: expected only the keys 'default', 'providers', 'ledger' and 'plugins', " ..
        "got an unknown key " ..
        "(did you mean 'default'?)" },
      { "return { providers = { d = { 'docker', hots = 'x' } } }",
        "print(select(2, require('sandlot').create('d', {})))",
        "providers.d.hots: unknown option for provider docker (did you mean 'host'?)" },
      { "return { providers = { mine = 'local' } }",
        "print(select(2, require('sandlot').create('mien', {})))",
        "no provider named 'mien'" },
      { "return { providers = { mine = 'local' } }",
        "print(select(2, require('sandlot').create('mien', {})))", "(did you mean 'mine'?)" },
      { "return {}", "require('sandlot').create('local', { netwrok = 'none' })",
        "create (provider local): unknown option 'netwrok' (did you mean 'network'?)" },
    }
    for _, c in ipairs(cases) do
      local _, out, err = run(c[1], c[2])
      assert.matches(c[3], out .. err, 1, true)
    end
  end)
end)
