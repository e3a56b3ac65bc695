-- examples/hello.lua: the tour. Creates a sandbox on the default provider (local unless
-- SANDLOT_PROVIDER or a config file says otherwise), runs commands, writes and reads a file,
-- lists a directory and destroys the sandbox. `make demo` runs it.
local sandlot = require("sandlot")

local sb = assert(sandlot.create({ env = { GREETING = "hello" } }))
print("created " .. tostring(sb))
for _, w in ipairs(sb.warnings) do print("  warning: " .. w) end

-- an argv list runs without a shell: no quoting to get wrong
local r = assert(sb:exec({ "echo", "argv with 'quotes' and spaces" }))
io.write("exec:      ", r.stdout)

-- a string runs through /bin/sh -c
r = assert(sb:exec("echo \"$GREETING from $(uname -s)\"; echo to-stderr >&2; exit 3"))
local function show(s) return (s:gsub("\n", "\\n")) end
print(("shell:     exit %d, stdout '%s', stderr '%s'"):format(r.exit_code, show(r.stdout),
                                                          show(r.stderr)))

-- files: binary-safe; missing parent directories are created
assert(sb:write_file("/app/hello.txt", "Hello from sandlot!\n"))
io.write("read_file: ", assert(sb:read_file("/app/hello.txt")))
r = assert(sb:exec({ "wc", "-c", "hello.txt" }, { cwd = "/app" }))
io.write("wc -c:     ", r.stdout)

print("ls /app:")
for _, e in ipairs(assert(sb:ls("/app"))) do
  print(("  %-10s %-9s %6d bytes  mode %o"):format(e.name, e.type, e.size, e.mode))
end

-- failures are values with a code, not exceptions
local data, err = sb:read_file("/app/missing.txt")
print(("missing:   %s (code %s)"):format(tostring(data), err.code))

assert(sb:destroy())
print("destroyed; status is now " .. sb:status())
