-- busted output handler: gtest-style lines, then the `tests: N passed, M failed, K pending`
-- line CI reads. When spec/run.lua (the top-level suite) was started with SANDLOT_TEST_SUMMARY
-- set, also appends "passed failed pending" there. Nested runs the specs start themselves
-- (check-provider against deliberately broken providers) inherit the variable but must not
-- report, so the path comes from the runner, not from the environment.
return function(options)
  local busted = require("busted")
  local handler = require("busted.outputHandlers.gtest")(options)
  local subscribe = handler.subscribe
  handler.subscribe = function(h, opts)
    -- a spec file that does not load is an error whose element has no trace, which makes
    -- busted's gtest handler raise at the end of the suite (and lose the summary): complete
    -- it with the file's name, first (priority 1)
    busted.subscribe({ "suite", "end" }, function()
      for _, list in ipairs({ handler.errors, handler.failures }) do
        for _, e in ipairs(list) do
          local el = e.element
          if el and not (el.trace and el.trace.short_src and el.trace.currentline) then
            el.trace = el.trace or {}
            el.trace.short_src = el.trace.short_src or tostring(el.name or "?")
            el.trace.currentline = el.trace.currentline or 0
          end
        end
      end
      return nil, true
    end, { priority = 1 })
    subscribe(h, opts)
    busted.subscribe({ "suite", "end" }, function()
      local failed = handler.failuresCount + handler.errorsCount
      io.stdout:write(("tests: %d passed, %d failed, %d pending\n")
        :format(handler.successesCount, failed, handler.pendingsCount))
      local path = rawget(_G, "SANDLOT_TEST_SUMMARY_FILE")
      if path and path ~= "" then
        local f = io.open(path, "a")
        if f then
          f:write(("%d %d %d\n"):format(handler.successesCount, failed, handler.pendingsCount))
          f:close()
        end
      end
      return nil, true
    end)
  end
  return handler
end
