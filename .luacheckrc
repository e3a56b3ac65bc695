-- luacheck (Debian's lua-check): `make lint` runs it on the Lua tree. Lua 5.4 everywhere.
std = "lua54"
max_line_length = 100
codes = true
-- W542 (empty if branch): an `if` used as a case list names a case that needs nothing, with a
-- comment saying why. W581 (`not (x > y)`): how a NaN is refused.
-- Unused names starting with _ are on purpose: a <close> guard (luacheck 1.1 counts only its
-- reads) or an argument a callback's signature requires.
ignore = { "542", "581", "21[123]/_.*" }
exclude_files = { "fuzz/corpus/**", "build/**", "build-san/**", "build-fuzz/**" }
-- the host's lazy global (core/main.c), and what the REPL installs
read_globals = { "sandlot" }
-- specs swap io.stdout / io.stderr to capture what is printed (W122), and their callbacks and
-- fakes' methods take arguments they do not read (W212)
files["spec/**"] = { std = "+busted", globals = { "SANDLOT_TEST_SUMMARY_FILE", "arg" },
                     ignore = { "122", "212" } }
files["spec/fakes/boxes.lua"] = { read_globals = { "BOXES_HOME" } }   -- set by its CGI wrapper
files["spec/run.lua"] = { globals = { "arg" } }
files["lua/sandlot/_repl.lua"] = { globals = { "help", "print", "sandlot" } }
files["fuzz/targets.lua"] = { read_globals = { "fuzz_budget" } }
-- a plugin runs in its own state (core/plugin_state.c): `config` is its config table, `state`
-- the global that survives between hook calls and that a reload migrates
files["plugins/**"] = { globals = { "state" }, read_globals = { "config" } }
-- generated stubs (docs/types.lua): signatures only
files["types/**"] = { ignore = { "212" } }
