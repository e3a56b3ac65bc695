-- spec/lib/fs_path_spec.lua: sandlot.fs.path, the kit's lexical join: a path resolved against
-- a base directory and normalized without touching a file; a `..` above "/" is refused.
local fs = require("sandlot.fs")

describe("sandlot.fs.path", function()
  -- { base, path, want }
  local joins = {
    { "/sandbox", "a.txt", "/sandbox/a.txt" },
    { "/sandbox", "a/b/c", "/sandbox/a/b/c" },
    { "/sandbox", "", "/sandbox" },
    { "/sandbox", ".", "/sandbox" },
    { "/sandbox", "./a/./b/", "/sandbox/a/b" },
    { "/sandbox", "a//b///c", "/sandbox/a/b/c" },
    { "/sandbox", "a/../b", "/sandbox/b" },
    { "/sandbox", "..", "/" },
    { "/sandbox", "../etc/passwd", "/etc/passwd" },
    { "/sandbox", "/etc/passwd", "/etc/passwd" },
    { "/sandbox", "/", "/" },
    { "/sandbox", "/a/b/../c", "/a/c" },
    { "/sandbox", "/a/..", "/" },
    { "/", "a", "/a" },
    { "/", "", "/" },
    { "/", "/x/./y/", "/x/y" },
    { "/a/b/", "c", "/a/b/c" },
    { "//a//b", "c", "/a/b/c" },
    { "/a/./b/..", "c", "/a/c" },
    { "/sandbox", "...", "/sandbox/..." },
    { "/sandbox", "..a/b..", "/sandbox/..a/b.." },
    { "/sandbox", "dir with spaces/ü.txt", "/sandbox/dir with spaces/ü.txt" },
    { "/sandbox", "line\nbreak", "/sandbox/line\nbreak" },
  }
  for _, case in ipairs(joins) do
    it(("joins %q and %q to %q"):format(case[1], case[2], case[3]), function()
      assert.equal(case[3], (assert(fs.path(case[1], case[2]))))
    end)
  end

  -- { base, path, what the message says }
  local refused = {
    { "/", "..", "leaves the sandbox" },
    { "/", "../x", "leaves the sandbox" },
    { "/", "/..", "leaves the sandbox" },
    { "/", "a/../..", "leaves the sandbox" },
    { "/sandbox", "../..", "leaves the sandbox" },
    { "/sandbox", "../../etc", "leaves the sandbox" },
    { "/sandbox", "/../etc", "leaves the sandbox" },
    { "/sandbox", "/a/../../b", "leaves the sandbox" },
    { "/sandbox", "a/../../../b", "leaves the sandbox" },
    { "/a", "../../b/../a", "leaves the sandbox" },
    { "/..", "a", "leaves the sandbox" },
    { "/sandbox", "a\0b", "NUL" },
    { "/sandbox", "/a\0", "NUL" },
    { "/sand\0box", "a", "NUL" },
  }
  for _, case in ipairs(refused) do
    it(("refuses %q joined to %q"):format(case[2], case[1]), function()
      local p, err = fs.path(case[1], case[2])
      assert.is_nil(p)
      assert.equal("invalid_input", err.code)
      assert.is_false(err.retryable)
      assert.matches(case[3], err.message, 1, true)
    end)
  end

  it("never clamps: one `..` more than the depth is refused, the depth itself is not",
     function()
    local base = "/a/b/c"
    assert.equal("/", (assert(fs.path(base, "../../.."))))
    assert.is_nil(fs.path(base, "../../../.."))
  end)

  it("names a long path shortened in its error", function()
    local long = ("../"):rep(100)
    local _, err = fs.path("/", long)
    assert.equal("invalid_input", err.code)
    assert.is_true(#err.message < 200)
    assert.matches(long:sub(1, 80) .. "...", err.message, 1, true)
  end)

  -- misuse by the caller raises
  local misuse = {
    { nil, "a" }, { "relative", "a" }, { "", "a" }, { 1, "a" }, { "/", nil }, { "/", 7 },
  }
  for i, case in ipairs(misuse) do
    it("raises for misuse #" .. i, function()
      assert.has_error(function() fs.path(case[1], case[2]) end)
    end)
  end
end)
