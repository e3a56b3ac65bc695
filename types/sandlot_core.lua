---@meta
-- LuaCATS stubs of sandlot's C modules, written by docs/types.lua (`make docs`) from
-- the comments in core/*.c. Not loaded at run time.

---@class sandlot_core_sched
local sandlot_core_sched = {}
---sched.can_wait() -> bool: whether a blocking call made here could wait (a task's own thread
function sandlot_core_sched.can_wait() end
---sched.cancelled() -> code | nil: whether the calling task has been cancelled
function sandlot_core_sched.cancelled() end
---sched.cleanup(fn, ...) -> task: a cleanup task (a destroy queued by a __close that could not
function sandlot_core_sched.cleanup(fn, ...) end
---sched.current() -> task | nil
function sandlot_core_sched.current() end
---sched.daemon(fn, ...) -> task: a daemon task (a follower of a background process). The host
function sandlot_core_sched.daemon(fn, ...) end
---sched.live() -> number of tasks not yet done
function sandlot_core_sched.live() end
---sched.run() -> true | nil, err: drives the loop until every task is done (stock lua).
function sandlot_core_sched.run() end
---sched.spawn(fn, ...) -> task
function sandlot_core_sched.spawn(fn, ...) end
---sched.unobserved() -> {task, ...}: failed tasks nobody joined; clears the list
function sandlot_core_sched.unobserved() end
package.loaded["sandlot.core.sched"] = sandlot_core_sched

---@class sandlot_core_timer
local sandlot_core_timer = {}
---timer.now() -> integer nanoseconds on a monotonic clock
function sandlot_core_timer.now() end
---timer.sleep(seconds) -> true | nil, err   (err.code == "cancelled" | "timeout")
function sandlot_core_timer.sleep(seconds) end
package.loaded["sandlot.core.timer"] = sandlot_core_timer

---@class sandlot_core_proc
local sandlot_core_proc = {}
---proc.run() owns its Proc: cancelling the waiting task kills the whole group.
function sandlot_core_proc.run() end
---proc.spawn(opts) -> proc | nil, err
function sandlot_core_proc.spawn(opts) end
package.loaded["sandlot.core.proc"] = sandlot_core_proc

---@class sandlot_core_errors
local sandlot_core_errors = {}
---errors.is(v [, code]) -> bool
function sandlot_core_errors.is(v, code) end
---errors.new(code, message [, fields]) -> err; an unknown code is misuse and raises
function sandlot_core_errors.new(code, message, fields) end
package.loaded["sandlot.core.errors"] = sandlot_core_errors

---@class sandlot_core_sys
local sandlot_core_sys = {}
---sys.b64decode(s) -> string | nil: whitespace is skipped; anything else outside the
function sandlot_core_sys.b64decode(s) end
---sys.b64encode(s) -> string: RFC 4648 base64 with padding, no line breaks
function sandlot_core_sys.b64encode(s) end
---sys.environ() -> {NAME = value, ...}
function sandlot_core_sys.environ() end
---sys.getpid() -> integer
function sandlot_core_sys.getpid() end
---sys.isatty(fd) -> bool
function sandlot_core_sys.isatty(fd) end
---sys.now() -> integer nanoseconds, monotonic
function sandlot_core_sys.now() end
---sys.random(n) -> n bytes from the kernel's CSPRNG (getrandom(2), 1 <= n <= 256): ids
function sandlot_core_sys.random(n) end
---sys.realpath(path) -> path | nil, err
function sandlot_core_sys.realpath(path) end
---sys.rss() -> integer bytes: this process's peak resident set size
function sandlot_core_sys.rss() end
---sys.setenv(name, value | nil) -> true: sets (or, for nil, removes) a variable of this
function sandlot_core_sys.setenv(name, value) end
---sys.sha256(s) -> 64 lower-case hex digits (content addresses of shipped files)
function sandlot_core_sys.sha256(s) end
package.loaded["sandlot.core.sys"] = sandlot_core_sys

---@class sandlot_core_fs
local sandlot_core_fs = {}
---fs.chmod(path, mode) -> true | nil, err
function sandlot_core_fs.chmod(path, mode) end
---fs.lstat(path) -> {type, size, mode, mtime} | nil, err
function sandlot_core_fs.lstat(path) end
---fs.mkdir(path [, mode=0755]) -> true | nil, err
function sandlot_core_fs.mkdir(path, mode) end
---fs.readlink(path) -> target | nil, err
function sandlot_core_fs.readlink(path) end
---fs.root(path) -> root | nil, err   (path must be a directory)
function sandlot_core_fs.root(path) end
---fs.stat(path) -> {type, size, mode, mtime} | nil, err
function sandlot_core_fs.stat(path) end
---fs.symlink(target, path) -> true | nil, err
function sandlot_core_fs.symlink(target, path) end
package.loaded["sandlot.core.fs"] = sandlot_core_fs

---@class sandlot_core_outbuf
local sandlot_core_outbuf = {}
---outbuf.new([max_output]) -> ob   max_output: bytes kept per stream (default 16 MiB)
function sandlot_core_outbuf.new(max_output) end
function sandlot_core_outbuf.signal_name(...) end
---outbuf.signal_number(name) -> integer | nil;  outbuf.signal_name(n) -> string | nil
function sandlot_core_outbuf.signal_number(name) end
package.loaded["sandlot.core.outbuf"] = sandlot_core_outbuf

---@class sandlot_core_zlib
local sandlot_core_zlib = {}
---zlib.deflater([level]) -> stream: gzip output; level 0-9, default 6
function sandlot_core_zlib.deflater(level) end
---zlib.inflater(max_output) -> stream: gzip input only; output capped at max_output bytes
function sandlot_core_zlib.inflater(max_output) end
package.loaded["sandlot.core.zlib"] = sandlot_core_zlib

---@class sandlot_core_sqlite
local sandlot_core_sqlite = {}
---sqlite.open(path [, opts]) -> db | nil, err
function sandlot_core_sqlite.open(path, opts) end
package.loaded["sandlot.core.sqlite"] = sandlot_core_sqlite

---@class sandlot_core_codec
local sandlot_core_codec = {}
---codec.decode(s [, pos]) -> v, next_pos | nil, err (bad_response). pos is 1-based.
function sandlot_core_codec.decode(s, pos) end
---codec.encode(v [, max_bytes]) -> string | nil, err (invalid_input)
function sandlot_core_codec.encode(v, max_bytes) end
package.loaded["sandlot.core.codec"] = sandlot_core_codec

---@class sandlot_core_event
local sandlot_core_event = {}
---event.new() -> ev
function sandlot_core_event.new() end
package.loaded["sandlot.core.event"] = sandlot_core_event

---@class sandlot_core_channel
local sandlot_core_channel = {}
---channel.stdio() -> ch | nil, err
function sandlot_core_channel.stdio() end
package.loaded["sandlot.core.channel"] = sandlot_core_channel

---@class sandlot_core_term
local sandlot_core_term = {}
---term.raw(fd) -> mode | nil, err: the terminal on fd in raw mode (no echo, no line editing,
function sandlot_core_term.raw(fd) end
---term.reader(fd) -> reader | nil, err
function sandlot_core_term.reader(fd) end
---term.signal(name) -> watcher: name as "WINCH" or "SIGWINCH"
function sandlot_core_term.signal(name) end
---term.size(fd) -> rows, cols | nil, err
function sandlot_core_term.size(fd) end
package.loaded["sandlot.core.term"] = sandlot_core_term

---@class sandlot_core_ws
local sandlot_core_ws = {}
function sandlot_core_ws.accept(...) end
function sandlot_core_ws.decode(...) end
function sandlot_core_ws.encode(...) end
function sandlot_core_ws.mask(...) end
function sandlot_core_ws.utf8(...) end
package.loaded["sandlot.core.ws"] = sandlot_core_ws

---@class sandlot_core_http
local sandlot_core_http = {}
---http.escape(s) -> percent-encoded s
function sandlot_core_http.escape(s) end
---http.fetch(method, url, headers, body, ...) -> response, maybe_json | nil, err
function sandlot_core_http.fetch(method, url, headers, body, ...) end
---http.header_lines(headers, has_json, user_agent) -> {"Name: value", ...} | nil, why
function sandlot_core_http.header_lines(headers, has_json, user_agent) end
---http.merge(defaults, opts) -> table: a new table with the fields of defaults, then those of
function sandlot_core_http.merge(defaults, opts) end
---http.parse_headers(raw) -> {lowercased name = value}: every line "name: value" (name without
function sandlot_core_http.parse_headers(raw) end
---http.parse_request(bytes [, chunk [, max_head [, max_body]]]) -> {req, ...}, used | nil,
function sandlot_core_http.parse_request(bytes, chunk, max_head, max_body) end
---http.parse_response_head(bytes [, max]) -> head {status, http_version, reason, headers_raw,
function sandlot_core_http.parse_response_head(bytes, max) end
---http.request(opts) -> req | nil, err   Starts the transfer at once; see sandlot.http for
function sandlot_core_http.request(opts) end
function sandlot_core_http.serve(...) end
---http.stats() -> {requests = live transfers, sockets = watched sockets, pooled = idle easy
function sandlot_core_http.stats() end
---http.unknown(opts, known) -> bool: true when opts is not a table or has a key that known
function sandlot_core_http.unknown(opts, known) end
function sandlot_core_http.upgrade(...) end
package.loaded["sandlot.core.http"] = sandlot_core_http

---@class sandlot_core_ssh
local sandlot_core_ssh = {}
function sandlot_core_ssh.connect(...) end
package.loaded["sandlot.core.ssh"] = sandlot_core_ssh
