-- spec/config_spec.lua: config files (search order, validation messages naming file and key),
-- env() secrets resolved only for the provider in use, and the provider selection precedence.
local sandlot = require("sandlot")
local h = require("spec.helper")
local config = sandlot.config

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

describe("sandlot.config", function()
  local tmp

  before_each(function()
    tmp = h.tmpdir()
  end)

  after_each(function()
    config.reset()
    h.rmtree(tmp)
  end)

  describe("validation", function()
    local cases = {
      { "a syntax error", "return {", "expected" },
      { "a runtime error", "error('boom')", "boom" },
      { "not a table", "return 42", "%(file%): expected a table to be returned, got number" },
      { "an unknown key", "return {defualt = 'x'}", "defualt: expected only the keys" },
      { "a bad default", "return {default = 3}", "default: expected a provider name" },
      { "providers not a table", "return {providers = 'local'}", "providers: expected a table" },
      { "a provider without module", "return {providers = {p = {host = 'x'}}}",
        "providers%.p%[1%]: expected the provider module name" },
      { "a bad provider name", "return {providers = {['a b'] = 'local'}}",
        "providers%.a b: expected a provider name" },
      { "a function option", "return {providers = {p = {'local', f = print}}}",
        "providers%.p%.f: expected a string, number" },
    }
    for _, c in ipairs(cases) do
      it("names the file and key for " .. c[1], function()
        local path = write(tmp .. "/config.lua", c[2])
        local cfg, err = config.load(path)
        assert.is_nil(cfg)
        assert.equal("invalid_input", err.code)
        assert.matches(path, err.message, 1, true)
        assert.matches(c[3], err.message)
      end)
    end

    it("reports a missing file as not_found", function()
      local cfg, err = config.load(tmp .. "/nope.lua")
      assert.is_nil(cfg)
      assert.equal("not_found", err.code)
    end)

    it("raises for an invalid table given in code", function()
      assert.has_error(function() config.set({ providers = 1 }) end)
    end)

    it("checks a provider's options against what it declares", function()
      write(tmp .. "/c.lua", "return {providers = {dev = {'local', stat_dir = '/x'}}}")
      config.set(assert(dofile(tmp .. "/c.lua")))
      local sb, err = sandlot.create("dev", {})
      assert.is_nil(sb)
      assert.equal("invalid_input", err.code)
      assert.matches("providers%.dev%.stat_dir: unknown option for provider local", err.message)
      assert.matches("state_dir", err.message)
    end)
  end)

  describe("secrets from the environment", function()
    local fixture

    before_each(function()
      -- a provider that needs an api_key; it wrongly echoes it into its handle, which
      -- to_map must still never show
      fixture = write(tmp .. "/keyed.lua", [[
        local lp = require("providers.local")
        return {
          name = "keyed",
          config = { api_key = "string", state_dir = "string" },
          create = function(ctx, opts)
            local h, err = lp.create(ctx, { isolation = "none" })
            if not h then return nil, err end
            h.api_key = ctx.config.api_key
            return h
          end,
          destroy = function(ctx, h) return lp.destroy(ctx, h) end,
          status = function(ctx, h) return lp.status(ctx, h) end,
          exec = function(ctx, h, argv, o) return lp.exec(ctx, h, argv, o) end,
        }
      ]])
    end)

    it("fails only when the provider needing it is used, naming the variable", function()
      local path = write(tmp .. "/config.lua", ([[
        return {
          default = "plain",
          providers = {
            plain = { "local", state_dir = %q, isolation = "none" },
            keyed = { %q, api_key = env "SANDLOT_SPEC_MISSING_KEY", state_dir = %q },
          },
        }]]):format(tmp .. "/s", fixture, tmp .. "/s"))
      assert(config.use(path))
      local sb = assert(sandlot.create())         -- the default does not need the key
      assert.equal("plain", sb.provider)
      sb:destroy()
      local k, err = sandlot.create("keyed", {})
      assert.is_nil(k)
      assert.equal("invalid_input", err.code)
      assert.matches("SANDLOT_SPEC_MISSING_KEY is not set", err.message)
      assert.matches("providers%.keyed%.api_key", err.message)
    end)

    it("resolves the variable, hands it to the provider, keeps it out of to_map", function()
      config.set({ providers = { keyed = { fixture, state_dir = tmp .. "/s",
        api_key = config.env("HOME") } } })
      local sb = assert(sandlot.create("keyed", {}))
      assert.equal(os.getenv("HOME"), sb._ctx.config.api_key)
      local m = sandlot.to_map(sb)
      assert.equal("[REDACTED]", m.handle.api_key)
      assert.is_nil(require("cjson").encode(m):find(os.getenv("HOME"), 1, true))
      local back = assert(sandlot.from_map(m))
      assert.equal(os.getenv("HOME"), back._ctx.config.api_key)  -- resolved again
      assert.equal("ok\n", assert(back:exec({ "echo", "ok" })).stdout)
      sb:destroy()
    end)

    it("uses the default when the variable is unset", function()
      config.set({ providers = { keyed = { fixture, state_dir = tmp .. "/s",
        api_key = config.env("SANDLOT_SPEC_MISSING_KEY", "fallback-value") } } })
      local sb = assert(sandlot.create("keyed", {}))
      assert.equal("fallback-value", sb._ctx.config.api_key)
      sb:destroy()
    end)
  end)

  describe("selection precedence", function()
    -- run in a child process: SANDLOT_PROVIDER and SANDLOT_CONFIG are read from its env
    local function select_in_child(env, explicit)
      local code = ("local c = require('sandlot').config; local n, src = c.select(%s); " ..
                    "io.write(tostring(n), ' ', tostring(src))"):format(
                    explicit and ("%q"):format(explicit) or "nil")
      local bin = assert(require("sandlot.core.sys").realpath(h.BIN))
      local r = assert(sandlot.proc.run({ bin, "-e", code }, { env = env, cwd = tmp,
                                                              timeout = 30 }))
      assert.equal(0, r.exit_code, r.stderr)
      return r.stdout
    end

    it("goes argument > SANDLOT_PROVIDER > config default > local", function()
      local cfgfile = write(tmp .. "/cfg.lua", "return {default = 'fromconfig'}")
      local none = { SANDLOT_CONFIG = false, SANDLOT_PROVIDER = false,
                     XDG_CONFIG_HOME = tmp .. "/empty" }
      assert.equal("local built-in default", select_in_child(none))
      local with_cfg = { SANDLOT_CONFIG = cfgfile, SANDLOT_PROVIDER = false }
      assert.equal("fromconfig config default", select_in_child(with_cfg))
      local with_env = { SANDLOT_CONFIG = cfgfile, SANDLOT_PROVIDER = "fromenv" }
      assert.equal("fromenv SANDLOT_PROVIDER", select_in_child(with_env))
      assert.equal("fromarg argument", select_in_child(with_env, "fromarg"))
    end)

    it("finds ./sandlot.config.lua, then $XDG_CONFIG_HOME/sandlot/config.lua", function()
      assert(require("sandlot.fs").mkdir_p(tmp .. "/xdg/sandlot"))
      write(tmp .. "/xdg/sandlot/config.lua", "return {default = 'fromxdg'}")
      local env = { SANDLOT_CONFIG = false, SANDLOT_PROVIDER = false,
                    XDG_CONFIG_HOME = tmp .. "/xdg" }
      assert.equal("fromxdg config default", select_in_child(env))
      write(tmp .. "/sandlot.config.lua", "return {default = 'fromcwd'}")
      assert.equal("fromcwd config default", select_in_child(env))
    end)

    it("fails clearly when SANDLOT_CONFIG names a missing file", function()
      local rc, _, err = h.host({ "-e", "assert(require('sandlot').create())" },
                                { env = { SANDLOT_CONFIG = tmp .. "/missing.lua",
                                          SANDLOT_PROVIDER = false } })
      assert.equal(1, rc)
      assert.matches("not_found: config .*missing%.lua: no such file", err)
    end)
  end)
end)
