-- spec/conformance/exec_only.lua: a provider with only the required functions (create, destroy,
-- status, exec), delegating to the local provider. Running the conformance suite on it checks
-- the fallbacks: files over exec (base64 through the shell), write_files as repeated
-- write_file, await_ready and reconnect by status, and not_supported for the rest.
local lp = require("providers.local")

return {
  name = "exec-only",
  description = "the local provider reduced to create/destroy/status/exec (for specs)",
  config = { state_dir = "string", isolation = "string" },
  create = function(ctx, opts) return lp.create(ctx, opts) end,
  destroy = function(ctx, handle) return lp.destroy(ctx, handle) end,
  status = function(ctx, handle) return lp.status(ctx, handle) end,
  exec = function(ctx, handle, argv, opts) return lp.exec(ctx, handle, argv, opts) end,
}
