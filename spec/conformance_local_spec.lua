-- spec/conformance_local_spec.lua: the conformance suite against the local provider, with and
-- without bubblewrap, and against an exec-only reduction of it (the generic fallbacks).
local sandlot = require("sandlot")
local h = require("spec.helper")
local conformance = require("spec.conformance")

describe("local provider", function()
  local tmp

  lazy_setup(function()
    tmp = h.tmpdir()
    sandlot.config.set({
      default = "conf-ns",
      providers = {
        ["conf-ns"] = { "local", state_dir = tmp .. "/ns", isolation = "namespaces" },
        ["conf-none"] = { "local", state_dir = tmp .. "/none", isolation = "none" },
        ["conf-exec"] = { "spec/conformance/exec_only.lua", state_dir = tmp .. "/exec",
                          isolation = "namespaces" },
      },
    })
  end)

  lazy_teardown(function()
    sandlot.config.reset()
    h.rmtree(tmp)
  end)

  local ns = require("spec.support.namespaces").skip
  conformance({ provider = "conf-ns", label = "local, isolation = namespaces", skip = ns })
  conformance({ provider = "conf-none", label = "local, isolation = none" })
  conformance({ provider = "conf-exec", label = "exec-only provider (fallbacks)", skip = ns })
end)
