-- luacheck (Debian's lua-check): `make lint` runs it on the Lua tree. Lua 5.4 everywhere.
std = "lua54"
max_line_length = 100
codes = true
exclude_files = { "fuzz/corpus/**", "build/**", "build-san/**", "build-fuzz/**" }
-- the host's lazy global (core/main.c), and what the REPL installs
read_globals = { "sandlot" }
files["spec/**"] = { std = "+busted", globals = { "SANDLOT_TEST_SUMMARY_FILE", "arg" } }
files["spec/run.lua"] = { globals = { "arg" } }
files["lua/sandlot/_repl.lua"] = { globals = { "help", "print", "sandlot" } }
files["fuzz/targets.lua"] = { read_globals = { "fuzz_budget" } }
