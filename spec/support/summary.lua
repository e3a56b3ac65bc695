-- busted output handler: gtest-style lines, then the `tests: N passed, M failed, K pending`
-- line CI reads. With SANDLOT_TEST_SUMMARY set, also appends "passed failed pending" there.
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
      local path = os.getenv("SANDLOT_TEST_SUMMARY")
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
