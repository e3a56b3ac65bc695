-- spec/lib/check_spec.lua: the one argument checker (sandlot._check): options with "did you
-- mean", types, argv, env (false removes), path, mode, timeout, and the world-input helpers
-- providers use on handle fields.
local check = require("sandlot._check")
local sandlot = require("sandlot")
local h = require("spec.helper")

local function raises(fn, pattern)
  local ok, msg = pcall(fn)
  assert.is_false(ok, "expected an error matching " .. pattern)
  assert.matches(pattern, tostring(msg))
end

describe("sandlot._check", function()
  describe("suggest", function()
    -- { name, candidates, expected }
    local cases = {
      { "stauts", { "start", "status", "stop" }, "status" },        -- a transposition is 1
      { "stauts", { "status", "start" }, "status" },
      { "strat", { "stop", "start", "status" }, "start" },
      { "Exec", { "exec", "env" }, "exec" },                         -- case-insensitive
      { "timout", { "timeout", "cwd" }, "timeout" },
      { "ab", { "ac", "ad", "ab2" }, "ab2" },                       -- one edit each: by name
      { "xy", { "xb", "xa" }, "xa" },                               -- a tie goes to the first
      { "zzzzzz", { "env", "cwd" }, nil },
      { "", { "env" }, nil },
    }
    for _, c in ipairs(cases) do
      it(("%q -> %s"):format(c[1], tostring(c[3])), function()
        for _ = 1, 20 do                                           -- any table order
          local set = {}
          for _, n in ipairs(c[2]) do set[n] = true end
          assert.equal(c[3], check.suggest(c[1], set))
          assert.equal(c[3], check.suggest(c[1], c[2]))
        end
      end)
    end
  end)

  describe("opts", function()
    local spec = { timeout = "number", env = "table", limit = "integer", any = "any",
                   cb = "function", flag = true,
                   port = function(v) return math.type(v) == "integer" and v > 0, "a port" end }
    local cases = {
      { { timout = 1 }, "f: unknown option 'timout' %(did you mean 'timeout'%?%)" },
      { { zzzz = 1 }, "f: unknown option 'zzzz'$" },
      { { [1] = "x" }, "f: unknown option '1'" },
      { { timeout = "1" }, "f: opts.timeout must be a number, got string" },
      { { limit = 1.5 }, "f: opts.limit must be an integer, got float" },
      { { cb = 1 }, "f: opts.cb must be a function, got integer" },
      { { port = -1 }, "f: opts.port must be a port" },
      { "x", "f: opts must be a table" },
    }
    for _, c in ipairs(cases) do
      it("raises: " .. c[2], function()
        raises(function() check.opts(c[1], spec, "f") end, c[2])
      end)
    end

    it("returns opts, {} for nil, and takes any value where the spec says true/any", function()
      local o = { flag = {}, any = print, limit = 3, port = 80 }
      assert.equal(o, check.opts(o, spec, "f"))
      assert.same({}, check.opts(nil, spec, "f"))
    end)

    it("blames the caller of the checked function", function()
      local function api(opts)
        local o = check.opts(opts, spec, "api")
        return o
      end
      local ok, msg = pcall(function() api({ bogus = 1 }) end)   -- this line is blamed
      assert.is_false(ok)
      assert.matches("check_spec.lua:%d+: api: unknown option", msg)
    end)
  end)

  describe("values", function()
    local raising = {
      { "argv", function() check.argv({}, "exec") end, "exec: command must be a non%-empty" },
      { "argv", function() check.argv("", "exec") end, "exec: empty command" },
      { "argv", function() check.argv({ "a", {} }, "exec") end, "command%[2%] must be a string" },
      { "argv", function() check.argv({ "a\0b" }, "exec") end, "command%[1%] contains a NUL" },
      { "env", function() check.env({ ["1X"] = "v" }, "exec") end, "invalid variable name 1X" },
      { "env", function() check.env({ ["A=B"] = "v" }, "exec") end, "invalid variable name A=B" },
      { "env", function() check.env({ X = true }, "exec") end,
        "env.X must be a string, a number" },
      { "env", function() check.env({ X = "a\0" }, "exec") end, "env.X contains a NUL" },
      { "env", function() check.env("X=1", "exec") end, "exec: env must be a table" },
      { "path", function() check.path("", "ls") end, "ls: path must be a non%-empty string" },
      { "path", function() check.path("a\0", "ls") end, "ls: path contains a NUL byte" },
      { "mode", function() check.mode("9", "w") end, "w: mode must be an integer" },
      { "mode", function() check.mode(4096, "w") end, "w: mode must be an integer" },
      { "timeout", function() check.timeout(0, "x") end, "x: opts.timeout must be a number" },
      { "timeout", function() check.timeout(math.huge, "x") end, "must be a number of seconds" },
      { "type", function() check.type(1, "string", "map: list") end,
        "map: list must be a string, got integer" },
    }
    for _, c in ipairs(raising) do
      it(c[1] .. " raises: " .. c[3], function() raises(c[2], c[3]) end)
    end

    it("normalises argv, mode and env", function()
      assert.same({ "/bin/sh", "-c", "echo hi" }, check.argv("echo hi", "exec"))
      assert.same({ "printf", "1", "x" }, check.argv({ "printf", 1, "x" }, "exec"))
      assert.equal(420, check.mode("644", "w"))
      assert.is_nil(check.mode(nil, "w"))
      local env = { A = "1", B = 2, C = false }
      assert.equal(env, check.env(env, "exec"))
      assert.same({ A = "1", B = "2", KEEP = "k" },
                  check.apply_env({ C = "gone", KEEP = "k" }, env))
    end)
  end)

  describe("inside", function()
    -- { path, stays inside the root }
    local cases = {
      { "a/b", true }, { "/a/b", true }, { ".", true }, { "/", true }, { "a/../b", true },
      { "a/./../b/..", true }, { "//a//..//b", true }, { "...", true }, { "..a/b", true },
      { "..", false }, { "/..", false }, { "../x", false }, { "a/../../x", false },
      { "a/b/../../../x", false }, { "/./../x", false }, { ("../"):rep(40) .. "x", false },
    }
    for _, c in ipairs(cases) do
      it(("%s %q"):format(c[2] and "keeps" or "refuses", c[1]), function()
        local v, err = check.inside(c[1])
        if c[2] then
          assert.equal(c[1], v)
        else
          assert.is_nil(v)
          assert.equal("invalid_input", err.code)
          assert.matches("leaves the sandbox root", err.message, 1, true)
        end
      end)
    end
  end)

  describe("world input (handle fields)", function()
    -- { fn, value, ok }
    local cases = {
      { "id", "a1b2c3", true }, { "id", "my-box_1.x", true }, { "id", "", false },
      { "id", "../etc", false }, { "id", "a/b", false }, { "id", "..", false },
      { "id", "-rf", false }, { "id", ("a"):rep(129), false }, { "id", 42, false },
      { "id", "a b", false }, { "id", "a;rm", false }, { "id", "a\n", false },
      { "token", "tok_abc-123.x=", true }, { "token", "a b", false }, { "token", "a'b", false },
      { "token", "a$(x)", false }, { "token", "", false }, { "token", {}, false },
    }
    for _, c in ipairs(cases) do
      it(("%s(%s) is %s"):format(c[1], tostring(c[2]):gsub("\n", "\\n"), c[3] and "kept"
                                 or "invalid_input"), function()
        local v, err
        if c[1] == "id" then v, err = check.id(c[2], nil, "sandbox id")
        else v, err = check.token(c[2], "api token") end
        if c[3] then
          assert.equal(c[2], v)
        else
          assert.is_nil(v)
          assert.equal("invalid_input", err.code)
          assert.is_false(err.retryable)
        end
      end)
    end

    it("takes a pattern and a maximum length", function()
      assert.equal("abc123", check.id("abc123", "^%x+$", "container id", 64))
      assert.is_nil(check.id("xyz", "^%x+$", "container id"))
      assert.is_nil(check.id(("a"):rep(65), "^%x+$", "container id", 64))
    end)

    it("never shows a bad token's value in the error", function()
      local _, err = check.token("s3cret value", "api token")
      assert.is_nil(tostring(err):find("s3cret", 1, true))
      assert.matches("api token %(12 bytes%) is not valid", tostring(err))
    end)
  end)

  describe("used by the public functions", function()
    -- { call, message }
    local cases = {
      { function() sandlot.proc.run({ "true" }, { timout = 1 }) end,
        "proc.run: unknown option 'timout' %(did you mean 'timeout'%?%)" },
      { function() sandlot.proc.run({ "true" }, { env = { ["A B"] = "1" } }) end,
        "invalid variable name A B" },
      { function() sandlot.http.request({ url = "http://x", methd = "GET" }) end,
        "http.request: unknown option 'methd' %(did you mean 'method'%?%)" },
      { function() sandlot.map({}, print, { limt = 2 }) end,
        "map: unknown option 'limt' %(did you mean 'limit'%?%)" },
      { function() sandlot.create("local", { imaeg = "x" }) end,
        "create %(provider local%): unknown option 'imaeg' %(did you mean 'image'%?%)" },
      { function() sandlot.create("local", { isolation = 1 }) end,
        "create %(provider local%): opts.isolation must be a string" },
      { function() sandlot.create("local", { env = { ["1"] = "x" } }) end,
        "create: env: invalid variable name 1" },
    }
    for _, c in ipairs(cases) do
      it(c[2], h.task(function() raises(c[1], c[2]) end))
    end

    it("provider.check suggests one name for a typo, whatever the table order", function()
      local provider = require("sandlot.provider")
      for _ = 1, 20 do
        local ok, err = provider.check({ name = "x", create = print, destroy = print,
                                         exec = print, stauts = print, strat = print })
        assert.is_nil(ok)
        local text = table.concat(err.problems, "\n")
        assert.matches("unknown name 'stauts' (did you mean 'status'?)", text, 1, true)
        assert.matches("unknown name 'strat' (did you mean 'start'?)", text, 1, true)
      end
    end)

    it("the sandbox API: exec options, env names, argv", h.task(function()
      local sb = assert(sandlot.create("local", { isolation = "none" }))
      local ok, err = pcall(function()
        raises(function() sb:exec({ "true" }, { stdni = "x" }) end,
               "exec: unknown option 'stdni' %(did you mean 'stdin'%?%)")
        raises(function() sb:exec({ "true" }, { env = { ["X-Y"] = "1" } }) end,
               "exec: env: invalid variable name X%-Y")
        raises(function() sb:exec({ "true" }, { max_output = -1 }) end,
               "exec: opts.max_output must be an integer >= 0")
        raises(function() sb:exec({ "true" }, { timeout = 0 }) end,
               "exec: opts.timeout must be a number of seconds > 0")
        raises(function() sb:mkdir("d", { parent = true }) end,
               "mkdir: unknown option 'parent' %(did you mean 'parents'%?%)")
        raises(function() sb:update({ env = { [""] = "x" } }) end,
               "update: env: invalid variable name")
      end)
      sb:destroy()
      assert(ok, err)
    end))
  end)
end)
