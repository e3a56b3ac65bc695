-- sandlot.cli.check_provider: `sandlot check-provider FILE_OR_NAME`: checks a provider's table,
-- then runs the conformance suite (spec/conformance/) against it under busted and prints a
-- short table (result, case), the failures with repo-relative paths, and a summary line; or
-- the runner's full output (--verbose), or one JSON document (--json).
local cli = require("sandlot.cli")
local caps_cmd = require("sandlot.cli.caps")
local exists = require("sandlot._paths").exists

local REPORT = "sandlot.cli._check_report"   -- the busted output handler, preloaded below

local M = {
  summary = "run the provider conformance suite against a provider",
  usage = "sandlot check-provider FILE_OR_NAME [options] [-- BUSTED_OPTIONS]",
  args = { min = 1, max = 1, name = "FILE_OR_NAME" },
  options = {
    { "--filter", arg = "PATTERN", summary = "run only the cases whose name matches (a Lua " ..
      "pattern)" },
    { "--big-file-mb", arg = "N", number = true, min = 1, summary = "size of the big-file " ..
      "case (default 50)" },
    { "--label", arg = "TEXT", summary = "the provider's name in the case names" },
    { "--verbose", short = "-v", summary = "print the runner's full output" },
  },
  json = true,
  rest = true,
  help = [[
FILE_OR_NAME is a provider file (./my_provider.lua), a provider module name (local, for
providers/local.lua on the search path) or a provider configured in sandlot.config.lua.
The provider is checked first (misspelled or missing functions), then the conformance suite
runs against it: exec, files, handles, telemetry. Optional operations it lacks must return
not_supported. Options after -- go to busted. Exits 0 when every case passes, 1 when one
fails, when the provider cannot be loaded, or when no case matches --filter.
]],
}

-- "/a/lua/../spec" -> "/a/spec"
local function normalize(path)
  local n
  repeat path, n = path:gsub("/[^/]+/%.%./", "/", 1) until n == 0
  return (path:gsub("/[^/]+/%.%.$", ""))
end

-- Makes every path below the sandlot tree in s relative to it.
local function relative_to(root)
  local prefixes = { root .. "/", normalize(root) .. "/" }
  return function(s)
    s = tostring(s or "")
    for _, p in ipairs(prefixes) do
      local at = 1
      repeat
        local i, j = s:find(p, at, true)
        if i then s = s:sub(1, i - 1) .. s:sub(j + 1); at = i end
      until not i
    end
    return s
  end
end

-- The output handler: records every case in order; at the end prints the table (or JSON) and
-- the summary line, unless verbose, when the gtest output (spec/support/summary.lua) is shown.
local function report_handler(state)
  return function(options)
    local busted = require("busted")
    local base = state.verbose and dofile(state.root .. "/spec/support/summary.lua")(options)
                 or require("busted.outputHandlers.base")()
    local rel = state.rel
    local prefix = "conformance: " .. state.label .. " "
    local cases, failed_by = state.cases, {}

    local function name_of(element)
      local n = base.getFullName(element)
      if n:sub(1, #prefix) == prefix then n = n:sub(#prefix + 1) end
      return n
    end
    local function where(trace)
      if type(trace) ~= "table" then return nil end
      local src = type(trace.source) == "string" and trace.source:gsub("^@", "")
                  or trace.short_src
      return rel(src), trace.currentline
    end
    local function on_fail(element, _, message, trace)
      local file, line = where(trace)
      local entry = { message = rel(message), file = file, line = line }
      if element.descriptor == "it" then
        failed_by[element] = entry
      else                               -- a setup or describe failed: a case of its own
        entry.name, entry.status = name_of(element), "error"
        cases[#cases + 1] = entry
      end
      return nil, true
    end

    local subscribe = base.subscribe
    base.subscribe = function(h, opts)
      subscribe(h, opts)
      busted.subscribe({ "failure" }, on_fail)
      busted.subscribe({ "error" }, on_fail)
      busted.subscribe({ "test", "end" }, function(element, _, status)
        local file, line = where(element.trace)
        local entry = failed_by[element] or {}
        entry.name, entry.file, entry.line = name_of(element), entry.file or file,
                                             entry.line or line
        entry.status = ({ success = "passed", failure = "failed", error = "error",
                          pending = "pending" })[status] or status
        if status == "pending" and element.message then entry.message = rel(element.message) end
        cases[#cases + 1] = entry
        return nil, true
      end)
      busted.subscribe({ "suite", "end" }, function()
        local n = { passed = 0, failed = 0, pending = 0 }
        for _, x in ipairs(cases) do
          local k = x.status == "error" and "failed" or x.status
          n[k] = (n[k] or 0) + 1
        end
        state.summary = n
        if state.verbose then return nil, true end
        if state.json then
          local list = cli.array()
          for _, x in ipairs(cases) do list[#list + 1] = x end
          cli.json({ provider = state.ref, capabilities = state.caps, tests = list,
                     summary = n })
          return nil, true
        end
        local SHOWN = { passed = "ok     ", failed = "FAILED ", error = "ERROR  ",
                        pending = "pending" }
        for _, x in ipairs(cases) do
          cli.out("  ", SHOWN[x.status] or x.status, " ", x.name, "\n")
        end
        for _, x in ipairs(cases) do
          if x.status == "failed" or x.status == "error" then
            cli.out("\n", x.status == "error" and "ERROR " or "FAILED ", x.name, "\n")
            if x.file then cli.out("  ", x.file, ":", tostring(x.line or "?"), "\n") end
            cli.out("  ", (x.message:gsub("\n", "\n  ")), "\n")
          end
        end
        cli.out(("tests: %d passed, %d failed, %d pending\n"):format(n.passed, n.failed,
                                                                      n.pending))
        return nil, true
      end)
    end
    return base
  end
end

function M.run(o)
  local c = cli.get("check-provider")
  local ref, json, verbose = o.args[1], o.opts.json, o.opts.verbose
  if json and verbose then return cli.usage_error(c, "--json and --verbose exclude each other") end
  local caps, rc = caps_cmd.load(c, ref, json)
  if not caps then return rc end
  local label = o.opts.label or ref
  if not json then
    cli.out(("provider %s\n"):format(ref))
    caps_cmd.print(caps)
    cli.out("\n")
  end

  local root = require("sandlot._paths").root()
  local suite = root and root .. "/spec/conformance/check.lua"
  if not suite or not exists(suite) then
    return nil, "the conformance suite (spec/conformance/) is not installed next to " ..
                "sandlot's Lua library"
  end
  if not pcall(require, "busted.runner") then
    return nil, "busted is not installed (apt install lua-busted)"
  end
  package.path = root .. "/?.lua;" .. root .. "/?/init.lua;" .. package.path
  package.loaded["spec.conformance.target"] = {
    provider = ref, label = label, big_file_mb = o.opts.big_file_mb,
  }
  local state = { ref = ref, label = label, caps = caps, json = json, verbose = verbose,
                  root = root, rel = relative_to(root), cases = {} }
  package.loaded[REPORT] = report_handler(state)
  local bargs = { "--config-file=" .. root .. "/spec/conformance/busted.lua",
                  "--output=" .. REPORT }
  if o.opts.filter then bargs[#bargs + 1] = "--filter=" .. o.opts.filter end
  for _, a in ipairs(o.rest) do bargs[#bargs + 1] = a end
  bargs[#bargs + 1] = suite
  _G.arg = { [0] = "sandlot check-provider" }
  for j, a in ipairs(bargs) do _G.arg[j] = a end
  -- exits 1 when a case failed; returns when all passed (or none ran)
  require("busted.runner")({ standalone = false })
  local n = state.summary
  if not n then return nil, "the conformance suite did not run" end
  if n.passed + n.failed + n.pending == 0 then
    return nil, o.opts.filter and ("no case matches --filter '%s'"):format(o.opts.filter)
                or "no case ran"
  end
  return n.failed > 0 and cli.FAILED or cli.OK
end

return M
