-- bench/peer_fake.lua PROVIDER: the strict fake of PROVIDER (spec/fakes/e2b.lua, daytona.lua,
-- vercel.lua or sprites.lua) in a process of its own for figure 7, so the client measured
-- (sandlot or the official SDK under Node) pays none of the fake's CPU or memory. The fake
-- runs canned (`canned_exec`): no local sandbox behind a sandbox, and every exec answers at
-- once with what `echo hello` prints, in the shape the client asked for (Daytona's daemon
-- returns a command's whole output, so sandlot's exec script gets its framing: exit status,
-- then stdout and stderr base64-encoded; Vercel's log lines carry text, so sandlot's exec
-- wrapper gets its output base64-encoded too). Anything else exits 127. Prints one JSON line
-- {"url", "sandbox_url", "token", "team", "project"} once it listens, then serves until killed.
-- Run from the repository root: build/sandlot bench/peer_fake.lua e2b|daytona|vercel|sprites
package.path = "./?.lua;" .. package.path
local sandlot = require("sandlot")
local json = require("sandlot.wire.json")
local b64 = require("sandlot.wire.base64")

local provider = arg[1]
local HELLO = "hello\n"

local function missing(what)
  return { exit_code = 127, stdout = "", stderr = "canned fake: not `echo hello`: " .. what }
end

local function e2b_exec(cmd, args)
  local line = cmd .. " " .. table.concat(args, " ")
  if not line:find("echo", 1, true) or not line:find("hello", 1, true) then
    return missing(line)
  end
  return { exit_code = 0, stdout = HELLO }
end

-- What providers/daytona.lua's exec script prints for `echo hello` (see exec_script there).
local SANDLOT_FRAMED = ("sandlot:rc 0\nsandlot:o %d\n%s\nsandlot:e 0\nsandlot:end\n")
                         :format(#HELLO, b64.encode(HELLO))

local function daytona_exec(command)
  if not command:find("echo", 1, true) or not command:find("hello", 1, true) then
    return missing(command:sub(1, 80))
  end
  if command:find("sandlot:rc", 1, true) then return { exit_code = 0, stdout = SANDLOT_FRAMED } end
  return { exit_code = 0, stdout = HELLO }
end

-- Vercel: providers/vercel.lua's wrapper (sh -c '... head -c ... | base64') prints the output
-- base64-encoded; the SDK's runCommand("echo", {"hello"}) gets it as it is.
local function vercel_exec(cmd, args)
  local line = cmd .. " " .. table.concat(args, " ")
  if not line:find("echo", 1, true) or not line:find("hello", 1, true) then
    return missing(line:sub(1, 80))
  end
  if line:find("head -c", 1, true) then
    return { exit_code = 0, stdout = b64.encode(HELLO) .. "\n" }
  end
  return { exit_code = 0, stdout = HELLO }
end

-- Sprites: both sides run `echo hello` as it is (the frames carry raw bytes).
local function sprites_exec(command)
  if command ~= "echo hello" then return missing(command:sub(1, 80)) end
  return { exit_code = 0, stdout = HELLO }
end

local f
if provider == "vercel" then
  f = require("spec.fakes.vercel").start({ canned_exec = vercel_exec })
elseif provider == "sprites" then
  f = require("spec.fakes.sprites").start({ canned_exec = sprites_exec })
elseif provider == "e2b" then
  f = require("spec.fakes.e2b").start({ canned_exec = e2b_exec })
elseif provider == "daytona" then
  f = require("spec.fakes.daytona").start({ canned_exec = daytona_exec, start_delay = 0 })
else
  io.stderr:write("usage: peer_fake.lua e2b|daytona|vercel|sprites\n")
  os.exit(2)
end
io.stdout:write(json.encode({ url = f.url, sandbox_url = f.sandbox_url or json.null,
                              token = f.token, team = f.team or json.null,
                              project = f.project or json.null }), "\n")
io.stdout:flush()
-- serves until killed; a cancelled sleep (SIGTERM cancels the main task) ends the script
-- instead of spinning: sleep answers nil at once from then on
while sandlot.sleep(3600) do end
f.stop()
