-- docs/man.lua: writes the sandlot(1) man page (roff) on stdout from the command table in
-- sandlot.cli, so the page lists exactly the commands and options the binary has.
-- `make` runs it: build/sandlot docs/man.lua > build/sandlot.1
local cli = require("sandlot.cli")

local function esc(s)
  s = tostring(s):gsub("\\", "\\e"):gsub("%-", "\\-")
  return (s:gsub("\n%.", "\n\\&."):gsub("^%.", "\\&."):gsub("\n'", "\n\\&'"))
end

local out = {}
local function w(...) for i = 1, select("#", ...) do out[#out + 1] = select(i, ...) end end

local version = require("sandlot").version
w('.TH SANDLOT 1 "" "sandlot ', esc(version), '" "User Commands"\n')
w(".SH NAME\nsandlot \\- a provider-agnostic sandbox host (Lua 5.4 on one libuv loop)\n")
w(".SH SYNOPSIS\n.B sandlot\n[\\fIoptions\\fR] [\\fIscript.lua\\fR [\\fIargs\\fR]]\n.br\n",
  ".B sandlot\n\\fICOMMAND\\fR [\\fIargs\\fR]\n")
w(".SH DESCRIPTION\n", esc([[
sandlot runs Lua scripts that create sandboxes (this machine under bubblewrap, SSH hosts,
Docker, cloud services), run commands in them, move files and tear them down, concurrently,
from straight-line code. With no arguments it starts a REPL.]]), "\n")
w(".SH OPTIONS\n")
for _, o in ipairs({
  { "\\-e \\fICODE\\fR", "run CODE (may be repeated)" },
  { "\\-i", "start the REPL after running the script or \\-e code" },
  { "\\-v, \\-\\-version", "print the version" },
  { "\\-h, \\-\\-help", "print the usage" },
  { "\\-", "run the script on stdin" },
  { "\\-\\-", "stop handling options" },
}) do
  w(".TP\n", o[1], "\n", o[2], "\n")
end
w(".SH COMMANDS\n")
for _, n in ipairs(cli.NAMES) do
  local c = cli.get(n)
  w(".SS ", esc(c.usage), "\n", esc(c.summary), ".\n")
  if c.help then w(".PP\n", esc((c.help:gsub("%s+$", ""))), "\n") end
  for _, o in ipairs(c.options) do
    local flag = (o.short and (o.short .. ", ") or "") .. o[1] .. (o.arg and (" " .. o.arg) or "")
    w(".TP\n\\fB", esc(flag), "\\fR\n", esc(o.summary or ""), "\n")
  end
end
w(".SH EXIT STATUS\n0 success; 1 failure; 2 usage error.\n")
w(".SH ENVIRONMENT\n")
for _, e in ipairs({
  { "SANDLOT_CONFIG",
    "the config file (otherwise ./sandlot.config.lua, then $XDG_CONFIG_HOME/sandlot/config.lua)" },
  { "SANDLOT_PROVIDER", "the default provider name" },
  { "SANDLOT_PATH", "colon-separated directories searched for providers/ and plugins/" },
  { "SANDLOT_LEDGER", "off disables the ledger of durable sandboxes" },
  { "XDG_STATE_HOME", "where the ledger lives (sandlot/ledger.db)" },
  { "SANDLOT_TELEMETRY", "a file that receives telemetry as JSON lines" },
  { "DOCKER_HOST", "the Docker daemon for the docker provider" },
}) do
  w(".TP\n.B ", e[1], "\n", esc(e[2]), "\n")
end
w(".SH SEE ALSO\n",
  esc("The README of the sandlot tree (installed under share/sandlot), lua5.4(1)."), "\n")
io.write(table.concat(out))
