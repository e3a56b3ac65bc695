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
    local code, out = h.host({ "-e", "x = 20", "-e", "require('sandlot').sleep(0.01) print(x + 1)" })
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
    local code, _, err = h.host({ "-e", "error(require('sandlot').errors.new('not_found', 'no such sandbox', {op = 'exec'}))" })
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

  it("rejects unknown options", function()
    local code, _, err = h.host({ "--bogus" })
    assert.equal(1, code)
    assert.matches("unrecognized option", err)
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

  it("loads libcurl and libssh2 only when a script first uses sandlot.http or sandlot.ssh", function()
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
    local code, _, err = h.host({ "-e", "require('sandlot.core.http')" }, { bin = dir .. "/sandlot" })
    h.rmtree(dir)
    assert.equal(1, code)
    assert.matches("module http.so not found", err, 1, true)
    assert.matches("no file '" .. dir .. "/lib/sandlot/http.so'", err, 1, true)
  end)
end)
