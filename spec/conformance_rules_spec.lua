-- spec/conformance_rules_spec.lua: the conformance rules that check an absence or a shape can
-- fail: each passes on the local provider and fails, saying why, on a provider built to break
-- it (spec/conformance/broken.lua).
local sandlot = require("sandlot")
local h = require("spec.helper")
local rules = require("spec.conformance.rules")

describe("conformance rules", function()
  local tmp, made

  lazy_setup(function()
    tmp = h.tmpdir()
    made = {}
    local providers = { ["rules-ok"] = { "local", state_dir = tmp .. "/ok", isolation = "none" } }
    for _, fault in ipairs({ "leaky", "literal", "shapeless" }) do
      local file = tmp .. "/" .. fault .. ".lua"
      local f = assert(io.open(file, "w"))
      f:write(('return require("spec.conformance.broken")(%q)\n'):format(fault))
      f:close()
      providers["rules-" .. fault] = { file, state_dir = tmp .. "/" .. fault, isolation = "none" }
    end
    sandlot.config.set({ providers = providers })
  end)

  lazy_teardown(function()
    sandlot.config.reset()
    h.rmtree(tmp)
  end)

  after_each(function()
    for _, sb in ipairs(made or {}) do sb:destroy() end
    made = {}
  end)

  -- a create function for a configured provider
  local function creator(provider)
    return function(opts)
      local o = {}
      for k, v in pairs(opts or {}) do o[k] = v end
      local sb = assert(sandlot.create(provider, o))
      made[#made + 1] = sb
      return sb
    end
  end

  local function fails(fn, pattern)
    local ok, err = pcall(fn)
    assert.is_false(ok, "the rule passed on a provider that breaks it")
    assert.matches(pattern, tostring(type(err) == "table" and err.message or err))
  end

  -- a broken provider is a file configured like any other (its sandboxes live in tmp)
  local function broken_provider(fault)
    return "rules-" .. fault
  end

  describe("does not leak the host environment", function()
    it("passes on the local provider", function()
      rules.no_host_env(creator("rules-ok")())
    end)

    it("fails on a provider that passes the host environment through", function()
      fails(function() rules.no_host_env(creator(broken_provider("leaky"))()) end,
            "the sandbox sees the host's SANDLOT_CONF_CANARY")
      assert.is_nil(os.getenv(rules.CANARY_NAME), "the canary is removed afterwards")
    end)
  end)

  describe("env = {X = false} removes X", function()
    it("passes on the local provider", function()
      rules.env_false(creator("rules-ok"))
    end)

    it("fails on a provider that exports X=false", function()
      fails(function() rules.env_false(creator(broken_provider("literal"))) end,
            "env = {X = false} must remove X")
    end)
  end)

  describe("exec's result shape", function()
    it("passes on the local provider", function()
      rules.result_shape(creator("rules-ok")())
    end)

    it("fails on a provider returning {code, out, err}, saying what exec must return",
      function()
        local sb = creator(broken_provider("shapeless"))()
        fails(function() rules.result_shape(sb) end,
              "provider broken%-shapeless: exec must return {exit_code = integer, stdout = " ..
              "string, stderr = string.*exit_code is nil %(the result has: code, err, out%)")
      end)
  end)
end)
