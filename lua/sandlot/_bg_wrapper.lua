-- sandlot._bg_wrapper: the POSIX sh scripts sandlot.background runs in a sandbox (busybox sh
-- is enough): prepare a per-process directory, run the command detached with its output in
-- files, follow them, probe them, fetch a byte range, forward a signal. Everything runs
-- through /bin/sh -c with arguments ("$1"), never spliced into the script.
local M = {}

-- Everything runs through /bin/sh -c with arguments ("$1"), never spliced into the script.

-- $1 = process id: makes <base>/<id> with empty out and err; prints its absolute path. The
-- base is .sandlot/proc below the sandbox's root (cwd "/"), else $TMPDIR or /tmp.
M.PREPARE = [[
for b in "${PWD%/}/.sandlot/proc" "${TMPDIR:-/tmp}/.sandlot-proc"; do
  d=$b/$1
  if { mkdir -p "$d" && : >"$d/out" && : >"$d/err"; } 2>/dev/null; then
    printf '%s\n' "$d"; exit 0
  fi
done
echo "sandlot: cannot create a process directory (tried \$PWD/.sandlot/proc and /tmp)" >&2
exit 1
]]

-- $1 = dir, $2... = argv. Runs the command (in a session of its own where setsid exists) with
-- its output appended to out and err, forwards signals written to dir/kill to its process
-- group, and writes "status out_bytes err_bytes" to dir/exit (atomically) when it ends. The
-- forwarder stops with the runner, or when dir is gone (the sandbox destroyed under it).
M.RUNNER = [[
d=$1; shift
if command -v setsid >/dev/null 2>&1; then
  setsid "$@" >>"$d/out" 2>>"$d/err" </dev/null &
else
  "$@" >>"$d/out" 2>>"$d/err" </dev/null &
fi
c=$! w=$$
echo "$c" >"$d/pid"
(while [ ! -e "$d/exit" ] && [ -d "$d" ] && kill -0 "$w" 2>/dev/null; do
  if [ -e "$d/kill" ]; then
    g=$(cat "$d/kill"); rm -f "$d/kill"
    kill -s "$g" -- "-$c" 2>/dev/null || kill -s "$g" "$c" 2>/dev/null
  fi
  sleep 0.1 2>/dev/null || sleep 1
done) </dev/null >/dev/null 2>&1 &
wait "$c"; s=$?
printf '%s %s %s\n' "$s" "$(wc -c <"$d/out")" "$(wc -c <"$d/err")" >"$d/exit.tmp"
mv -f "$d/exit.tmp" "$d/exit"
]]

-- $1 = the runner script, $2... its arguments: starts it detached from this exec (setsid, or
-- HUP ignored where setsid is missing) and returns at once; a provider whose exec detaches by
-- itself (opts.detach; local) sets SANDLOT_DETACHED=1 and the runner runs in the foreground.
M.LAUNCH = [[
r=$1; shift
if [ "$SANDLOT_DETACHED" = 1 ]; then exec sh -c "$r" sh "$@"; fi
if command -v setsid >/dev/null 2>&1; then
  setsid sh -c "$r" sh "$@" </dev/null >/dev/null 2>&1 &
else
  (trap '' HUP; exec sh -c "$r" sh "$@") </dev/null >/dev/null 2>&1 &
fi
p=$! i=0
while [ -r "/proc/$p/stat" ] && [ "$i" -lt 100 ]; do   # until it is in a session of its own
  set -- $(cat "/proc/$p/stat" 2>/dev/null)
  [ "$6" = "$p" ] && break
  i=$((i + 1)); sleep 0.01 2>/dev/null || break
done
]]

-- $1 = dir, $2 = stdout offset, $3 = stderr offset: streams both files from those offsets
-- until dir/exit exists (then the host fetches what the tails had not sent yet).
M.FOLLOW = [[
d=$1
tail -c +$(($2 + 1)) -f "$d/out" & a=$!
tail -c +$(($3 + 1)) -f "$d/err" >&2 & b=$!
while [ ! -e "$d/exit" ] && [ -d "$d" ] && kill -0 "$a" 2>/dev/null; do
  sleep 0.1 2>/dev/null || sleep 1
done
kill "$a" "$b" 2>/dev/null
exit 0
]]

-- $1 = dir: "out_bytes err_bytes" and the exit line (or "-"), or "missing". The exit file is
-- read first: when it is there, the sizes read after it are final.
M.PROBE = [[
d=$1
[ -d "$d" ] || { echo missing; exit 0; }
x=$(cat "$d/exit" 2>/dev/null || echo -)
o=$(wc -c <"$d/out" 2>/dev/null || echo -)
e=$(wc -c <"$d/err" 2>/dev/null || echo -)
printf '%s %s\n%s\n' $o $e "$x"
]]

-- $1 = file, $2 = offset, $3 = count: those bytes of the file.
M.FETCH = [[tail -c +$(($2 + 1)) "$1" | head -c "$3"]]

-- $1 = dir, $2 = signal name: asks the runner to signal the command's process group.
M.KILL = [[
[ -e "$1/exit" ] && { echo exited >&2; exit 3; }
printf '%s\n' "$2" >"$1/kill.tmp" && mv -f "$1/kill.tmp" "$1/kill"
]]

function M.sh(script, ...)
  return { "/bin/sh", "-c", script, "sh", ... }
end

return M
