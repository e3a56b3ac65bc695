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
