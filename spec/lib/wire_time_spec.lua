-- spec/lib/wire_time_spec.lua: sandlot.wire.time, RFC 3339 to epoch seconds and back (UTC,
-- offsets, fractions; nil for what is not a timestamp).
local wtime = require("sandlot.wire.time")

describe("sandlot.wire.time", function()
  it("parses RFC 3339 in UTC and with offsets", function()
    local cases = {
      { "1970-01-01T00:00:00Z", 0 },
      { "2024-02-29T12:34:56Z", 1709210096 },
      { "2024-02-29T12:34:56.123456789Z", 1709210096 },
      { "2024-02-29T14:34:56+02:00", 1709210096 },
      { "2024-02-29T07:04:56-05:30", 1709210096 },
      { "1969-12-31T23:59:59Z", -1 },
      { "2000-03-01 00:00:00z", 951868800 },
    }
    for _, c in ipairs(cases) do assert.equal(c[2], wtime.parse(c[1]), c[1]) end
    for _, bad in ipairs({ "", "2024-02-29", "2024-02-29T12:34:56", "yesterday",
                           "2024-02-29T12:34:56+0", 42 }) do
      assert.is_nil(wtime.parse(bad), tostring(bad))
    end
  end)

  it("formats epoch seconds and reads them back", function()
    assert.equal("2024-02-29T12:34:56Z", wtime.format(1709210096))
    for _, t in ipairs({ 0, 86399, 951782400, 1709210096, 4102444800 }) do
      assert.equal(t, wtime.parse(wtime.format(t)))
    end
  end)
end)
