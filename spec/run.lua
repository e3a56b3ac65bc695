-- spec/run.lua: runs busted inside the sandlot host (so every spec body runs in the main task
-- and can yield to the loop). Extra arguments go to busted: `make test SPEC_ARGS="-t ssh"`.
local args = { ... }
-- only this run reports to CI's summary file (see spec/support/summary.lua)
SANDLOT_TEST_SUMMARY_FILE = os.getenv("SANDLOT_TEST_SUMMARY")
arg = { [0] = "busted" }
for i = 1, #args do arg[i] = args[i] end
require("busted.runner")({ standalone = false })
