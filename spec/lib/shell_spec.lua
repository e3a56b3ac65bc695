-- spec/lib/shell_spec.lua: sandlot.shell's command-line pieces for providers, run through a
-- real /bin/sh and env(1) where they are meant to run.
local sandlot = require("sandlot")
local shell = require("sandlot.shell")

describe("sandlot.shell", function()
  describe("env_argv", function()
    it("returns argv itself when env changes nothing", function()
      local argv = { "echo", "hi" }
      assert.equal(argv, shell.env_argv(nil, argv))
      assert.equal(argv, shell.env_argv({}, argv))
      assert.equal(argv, shell.env_argv({ A = "1" }, argv))        -- sets only with opts.set
    end)

    it("removes variables given as false, sorted, and sets the rest with opts.set", function()
      assert.same({ "env", "-u", "A", "-u", "B", "--", "printenv" },
                  shell.env_argv({ B = false, A = false, C = "3" }, { "printenv" }))
      assert.same({ "/usr/bin/env", "-u", "B", "--", "A=1", "C=x y", "printenv" },
                  shell.env_argv({ C = "x y", B = false, A = 1 }, { "printenv" },
                                 { set = true, program = "/usr/bin/env" }))
    end)

    it("runs as meant under env(1): the unset variable is gone, the set one is there", function()
      local script = 'echo "${SANDLOT_SPEC_GONE-unset} $SANDLOT_SPEC_SET"'
      local argv = shell.env_argv({ SANDLOT_SPEC_GONE = false, SANDLOT_SPEC_SET = "v=1" },
                                  { "/bin/sh", "-c", script }, { set = true })
      local r = assert(sandlot.proc.run(argv, { env = { SANDLOT_SPEC_GONE = "planted" } }))
      assert.equal("unset v=1\n", r.stdout)
      -- the plant is seen without the unset
      r = assert(sandlot.proc.run({ "/bin/sh", "-c", 'echo "${SANDLOT_SPEC_GONE-unset}"' },
                                  { env = { SANDLOT_SPEC_GONE = "planted" } }))
      assert.equal("planted\n", r.stdout)
    end)

    it("refuses a name that is not a shell identifier", function()
      assert.has_error(function() shell.env_argv({ ["A=B"] = false }, { "true" }) end)
    end)
  end)
end)
