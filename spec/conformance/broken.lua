-- spec/conformance/broken.lua: the local provider with one deliberate fault, to show that the
-- conformance rules (spec/conformance/rules.lua) can fail. `fault` picks the fault:
--   "leaky"    exec passes the host's whole environment into the sandbox
--   "literal"  env = {X = false} sets X to the string "false" (as a naive export would)
--   "shapeless" exec returns {code, out, err} instead of {exit_code, stdout, stderr}
local lp = require("providers.local")
local sys = require("sandlot.core.sys")

return function(fault)
  local M = {}
  for k, v in pairs(lp) do M[k] = v end
  M.name = "broken-" .. fault
  M.description = "the local provider with a deliberate fault (" .. fault .. "), for specs"
  function M.exec(ctx, handle, argv, opts)
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    if fault == "leaky" then
      local env = sys.environ()
      for k, v in pairs(opts.env or {}) do env[k] = v end
      o.env = env
    elseif fault == "literal" and opts.env then
      o.env = {}
      for k, v in pairs(opts.env) do o.env[k] = tostring(v) end
    end
    local r, err = lp.exec(ctx, handle, argv, o)
    if r and fault == "shapeless" then
      return { code = r.exit_code, out = r.stdout, err = r.stderr }
    end
    return r, err
  end
  if fault == "literal" then
    function M.create(ctx, opts)
      local o = {}
      for k, v in pairs(opts) do o[k] = v end
      if opts.env then
        o.env = {}
        for k, v in pairs(opts.env) do o.env[k] = tostring(v) end
      end
      return lp.create(ctx, o)
    end
  end
  return M
end
