-- spec/fakes/canned.lua: a canned process for the fakes' `canned_exec` option (bench figure 7):
-- the shape of a local provider process (read, wait, write, close_stdin, kill, close) whose
-- output and exit are given up front, so a fake answers an exec at once, without a sandbox.
local M = {}

---A process that yields res.stdout, then res.stderr, then exits with res.exit_code.
---@param res {exit_code?: integer, stdout?: string, stderr?: string}
function M.process(res)
  local q = {}
  for _, s in ipairs({ "stdout", "stderr" }) do
    if (res[s] or "") ~= "" then q[#q + 1] = { s, res[s] } end
  end
  local p = {}
  function p.read()
    local x = table.remove(q, 1)
    if x then return x[1], x[2] end
    return nil
  end
  function p.wait() return { exit_code = res.exit_code or 0 } end
  function p.write() return true end
  function p.close_stdin() return true end
  function p.kill() return true end
  function p.close() return true end
  return p
end

return M
