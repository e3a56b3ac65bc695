-- sandlot.background: durable background processes (sb:spawn(cmd, {background = true})). A
-- POSIX sh wrapper in the sandbox runs the command detached from the host, appending stdout and
-- stderr to files in a per-process directory and recording the exit status there; the host
-- follows those files (through the provider's spawn) and persists the output in the ledger as
-- offset-addressed chunks, in batches, under a per-stream cap that keeps head and tail. After a
-- host restart, sandlot.process(id) continues from the last persisted offsets.
local errors = require("sandlot.errors")
local task = require("sandlot.task")
local check = require("sandlot._check")
local shapes = require("sandlot._shapes")
local redact = require("sandlot._redact")
local json = require("sandlot.wire.json")
local ids = require("sandlot.id")
local ledger = require("sandlot.ledger")

local M = {}

M.CAP = 8 * 1048576           -- default cap per stream: 4 MiB of head, 4 MiB of tail
M.FLUSH_SECONDS = 0.1         -- a batch is written at least this often while output comes
M.FLUSH_BYTES = 256 * 1024    -- ... or once this much is queued
M.CHUNK_BYTES = 64 * 1024     -- chunks are coalesced up to this size
M.FETCH_BYTES = 4 * 1048576   -- missing bytes are fetched from the log in pieces of this size
M.POLL_SECONDS = 0.05         -- read{follow} and wait poll at this interval

local STREAMS = { "stdout", "stderr" }
local FILE = { stdout = "out", stderr = "err" }

local wrapper = require("sandlot._bg_wrapper")
local PREPARE, RUNNER, LAUNCH, FOLLOW = wrapper.PREPARE, wrapper.RUNNER, wrapper.LAUNCH,
                                        wrapper.FOLLOW
local PROBE, FETCH, KILL, sh = wrapper.PROBE, wrapper.FETCH, wrapper.KILL, wrapper.sh

-- Helpers -------------------------------------------------------------------------------------

local function now() return os.time() end

local function encode(v)
  if v == nil then return false end
  local ok, s = pcall(json.encode, v)
  return ok and s or false
end

local function decode(s)
  if type(s) ~= "string" then return nil end
  local ok, v = pcall(json.decode, s)
  return ok and v or nil
end

local take_over                            -- defined with M.process
local live = setmetatable({}, { __mode = "v" })   -- id -> process this host holds

---A background process (sb:spawn{background = true}, sandlot.process(id)): its output is
---kept as offset-addressed chunks; p:read{offset, follow}, p:wait, p:kill.
---@class sandlot.BackgroundProcess
---@field id string its durable id (pr-...)
---@field state string "running", "exited" or "lost"
local Proc = { __name = "sandlot.background" }
Proc.__index = Proc

function Proc:__tostring()
  return ("sandlot.background(%s, %s)"):format(self.id, self.state)
end

local function perr(self, code, msg, fields)
  fields = fields or {}
  fields.process = self.id
  fields.sandbox = self.sandbox_id
  return errors.new(code, msg, fields)
end

local function open_ledger(op)
  if not ledger.enabled() then
    return nil, errors.new("not_supported", op .. ": background processes need the ledger " ..
                           "(it is off: SANDLOT_LEDGER=off or ledger = false)", { op = op })
  end
  local l, err = ledger.open()
  if not l then return nil, errors.wrap(err, { op = op }) end
  return l
end

-- The in-sandbox commands: exec through the sandbox layer (its error context), cwd "/".
local function run(self, argv, opts)
  local sandbox = require("sandlot.sandbox")
  local o = { cwd = "/", timeout = 60, max_output = M.FETCH_BYTES + 4096 }
  for k, v in pairs(opts or {}) do o[k] = v end
  local r, err = sandbox._call(self.sb, "exec", argv, o)
  if not r then return nil, err end
  return r
end

-- Persistence ---------------------------------------------------------------------------------
-- Output arrives into self.queue[stream] = {{offset, data}, ...} (offset = bytes of the stream
-- seen before it). flush() writes the queue in one transaction: head chunks below cap/2 are
-- kept, the tail is a window of about cap/2 bytes whose oldest chunks are deleted as newer
-- ones come; the middle range that was dropped is recorded in gaps.

local function gap_of(self, stream, reason)
  for _, g in ipairs(self.ranges) do
    if g.stream == stream and g.reason == reason and (reason == "cap" or g.to == nil) then
      return g
    end
  end
end

local function split(list, data, offset)
  local i = 1
  while i <= #data do
    local piece = data:sub(i, i + M.CHUNK_BYTES - 1)
    list[#list + 1] = { offset = offset + i - 1, data = piece }
    i = i + #piece
  end
end

local function flush(self, fields)
  local head = self.cap // 2
  local chunks, deletes, at = {}, {}, now()
  for _, s in ipairs(STREAMS) do
    local q = self.queue[s]
    self.queue[s] = {}
    -- coalesce the queue into pieces of at most CHUNK_BYTES, cut at the head's end
    local parts, buf, start = {}, {}, nil
    local function cut()
      if start then
        local d = table.concat(buf)
        if start < head and start + #d > head then
          split(parts, d:sub(1, head - start), start)
          split(parts, d:sub(head - start + 1), head)
        else
          split(parts, d, start)
        end
      end
      buf, start = {}, nil
    end
    for _, c in ipairs(q) do
      if start == nil then start = c.offset end
      buf[#buf + 1] = c.data
    end
    cut()
    local tail = self.tail[s]
    for _, p in ipairs(parts) do
      if p.offset < head then
        chunks[#chunks + 1] = { stream = s, offset = p.offset, data = p.data, at = at }
      else
        tail[#tail + 1] = { offset = p.offset, size = #p.data, data = p.data }
        tail.bytes = tail.bytes + #p.data
      end
    end
    local budget = self.cap - head
    local dropped_to
    while #tail > 1 and tail.bytes - tail[1].size >= budget do
      local first = table.remove(tail, 1)
      tail.bytes = tail.bytes - first.size
      if not first.data then
        deletes[#deletes + 1] = { stream = s, from = first.offset, to = first.offset + first.size }
      end
      dropped_to = first.offset + first.size
    end
    for _, t in ipairs(tail) do
      if t.data then
        chunks[#chunks + 1] = { stream = s, offset = t.offset, data = t.data, at = at }
        t.data = nil
      end
    end
    if dropped_to then
      local g = gap_of(self, s, "cap")
      if not g then
        g = { stream = s, from = head, reason = "cap" }
        self.ranges[#self.ranges + 1] = g
      end
      g.to = dropped_to
    end
  end
  local cols = { stdout_bytes = self.offsets.stdout, stderr_bytes = self.offsets.stderr,
                 gaps = encode(self.ranges), updated_at = at }
  for k, v in pairs(fields or {}) do cols[k] = v end
  local ok, err = self.ledger.db:proc_append(self.id, chunks, deletes, cols)
  self.last_flush = require("sandlot.core.sys").now()
  self.queued = 0
  if not ok then
    -- the bytes stay in the sandbox's log: a later reattach fetches them from there
    self.persist_error = err
    return nil, err
  end
  self.persisted = { stdout = self.offsets.stdout, stderr = self.offsets.stderr }
  return true
end

local function add(self, stream, data)
  local q = self.queue[stream]
  q[#q + 1] = { offset = self.offsets[stream], data = data }
  self.offsets[stream] = self.offsets[stream] + #data
  self.queued = self.queued + #data
  if self.queued >= M.FLUSH_BYTES or (require("sandlot.core.sys").now() - self.last_flush)
      / 1e9 >= M.FLUSH_SECONDS then
    flush(self)
  end
end

-- Marks output that cannot be had any more: [from, to) of a stream (to nil: to its unknown
-- end), with the reason.
local function lose(self, stream, from, to, why)
  if to ~= nil and to <= from then return end
  self.ranges[#self.ranges + 1] = { stream = stream, from = from, to = to, reason = "lost",
                                why = why }
end

local function finish(self, state, res, err)
  self.state = state
  if res then self.result = res end
  if err then self.error = err end
  local fields = { state = state, ended_at = now() }
  if res then fields.exit_code = res.exit_code; fields.signal = res.signal or false end
  if err then fields.error = encode(ledger.redact_error(err)) end
  flush(self, fields)
end

-- Stops following here without an end: flushes, and lets the next sandlot.process(id) take
-- over at once (a host killed with SIGKILL cannot; its death is seen instead).
local function release(self)
  flush(self, { host_id = false })
end

-- Following -----------------------------------------------------------------------------------

-- Parses PROBE's answer: {missing = true} or {sizes = {stdout, stderr}, exit = {status,
-- stdout, stderr} | nil}.
local function parse_probe(text)
  if text:match("^missing") then return { missing = true } end
  local o, e, rest = text:match("^(%S+) (%S+)\n(.*)$")
  if not o then return nil end
  local p = { sizes = { stdout = tonumber(o), stderr = tonumber(e) } }
  local s, xo, xe = rest:match("^(%d+) (%d+) (%d+)")
  if s then p.exit = { status = tonumber(s), stdout = tonumber(xo), stderr = tonumber(xe) } end
  return p
end

local function probe(self)
  local r, err = run(self, sh(PROBE, self.log_dir))
  if not r then return nil, err end
  local p = r.exit_code == 0 and parse_probe(r.stdout)
  if not p then
    return nil, perr(self, "bad_response", ("process %s: the wrapper's state in %s cannot be " ..
                     "read: %s"):format(self.id, self.log_dir, (r.stderr .. r.stdout):sub(1, 200)))
  end
  return p
end

-- Checks the log files against what was already persisted: a file shorter than that was
-- truncated or replaced. Returns true, or marks the loss and returns nil, err.
local function check_logs(self, p)
  if p.missing then
    local err = perr(self, "not_found", ("process %s: its log directory %s is gone from the " ..
      "sandbox: output after stdout byte %d and stderr byte %d is lost")
      :format(self.id, self.log_dir, self.offsets.stdout, self.offsets.stderr))
    for _, s in ipairs(STREAMS) do lose(self, s, self.offsets[s], nil, "log directory gone") end
    return nil, err
  end
  for _, s in ipairs(STREAMS) do
    local size = p.sizes[s]
    if size == nil then
      lose(self, s, self.offsets[s], p.exit and p.exit[s] or nil, "log file missing")
      return nil, perr(self, "io_error", ("process %s: the log file %s/%s is missing: %s " ..
        "bytes from %d on are lost"):format(self.id, self.log_dir, FILE[s], s, self.offsets[s]))
    end
    local want = p.exit and p.exit[s] or self.offsets[s]
    if size < want or size < self.offsets[s] then
      local from = math.max(size, self.offsets[s])
      local to = math.max(want, self.offsets[s])
      if size < self.offsets[s] then from = self.offsets[s]; to = p.exit and p.exit[s] or nil end
      lose(self, s, from, to, "log truncated")
      return nil, perr(self, "io_error", ("process %s: the log file %s/%s has %d bytes, but %d " ..
        "were written (%d already persisted): it was truncated or replaced; %s bytes %d..%s " ..
        "are lost"):format(self.id, self.log_dir, FILE[s], size, math.max(want,
        self.offsets[s]), self.offsets[s], s, from, to and tostring(to) or "end"))
    end
  end
  return true
end

-- Fetches [offset, to) of a stream from its log file with exec, in pieces.
local function fetch(self, stream, to)
  while self.offsets[stream] < to do
    local n = math.min(to - self.offsets[stream], M.FETCH_BYTES)
    local r, err = run(self, sh(FETCH, self.log_dir .. "/" .. FILE[stream],
                                tostring(self.offsets[stream]), tostring(n)))
    if not r then return nil, err end
    if r.exit_code ~= 0 or #r.stdout == 0 then
      return nil, perr(self, "io_error", ("process %s: cannot read %s/%s from byte %d: %s")
        :format(self.id, self.log_dir, FILE[stream], self.offsets[stream], r.stderr:sub(1, 200)))
    end
    add(self, stream, r.stdout:sub(1, n))
  end
  return true
end

local function result_of(status)
  local res = { exit_code = status }
  if status > 128 and status <= 128 + 64 then res.signal = status - 128 end
  return res
end

-- The follower: a daemon task per process this host follows. Streams the log files through
-- the provider's spawn; when the command has ended, fetches what the tails had not sent and
-- records the exit. Cancelled (the host exits): flushes what it has and leaves the process
-- running in the ledger, for the next sandlot.process(id).
local function follow(self)
  local sandbox = require("sandlot.sandbox")
  local failures = 0
  while true do
    local p, err = probe(self)
    if not p then
      if task.cancelled() then return release(self) end
      failures = failures + 1
      if failures >= 3 then
        for _, s in ipairs(STREAMS) do
          lose(self, s, self.offsets[s], nil, "sandbox unreachable")
        end
        return finish(self, "lost", nil, err)
      end
      task.sleep(0.5 * failures)
    else
      self.catch_up = p.sizes
      local ok, lerr = check_logs(self, p)
      if not ok then
        return finish(self, "lost", p.exit and result_of(p.exit.status), lerr)
      end
      if p.exit then
        for _, s in ipairs(STREAMS) do
          local fok, ferr = fetch(self, s, p.exit[s])
          if not fok then
            if task.cancelled() then return release(self) end
            lose(self, s, self.offsets[s], p.exit[s], "log unreadable")
            return finish(self, "lost", result_of(p.exit.status), ferr)
          end
        end
        return finish(self, "exited", result_of(p.exit.status))
      end
      local sp, serr = sandbox.spawn(self.sb, sh(FOLLOW, self.log_dir,
        tostring(self.offsets.stdout), tostring(self.offsets.stderr)), { cwd = "/" })
      if not sp then
        if task.cancelled() then return release(self) end
        failures = failures + 1
        if failures >= 3 then
          for _, s in ipairs(STREAMS) do lose(self, s, self.offsets[s], nil, "cannot follow") end
          return finish(self, "lost", nil, serr)
        end
        task.sleep(0.5 * failures)
      else
        self.follower = sp
        while true do
          local stream, data = sp:read(M.FLUSH_SECONDS)
          if stream then
            add(self, stream, data)
          elseif errors.is(data, "timeout") and not task.cancelled() then
            if self.queued > 0 then flush(self) end
          else
            break                       -- the end of the follower, or we were cancelled
          end
        end
        self.follower = nil
        sp:close()
        if task.cancelled() then return release(self) end
        flush(self)
      end
    end
  end
end

local function start_follower(self)
  self.task = task.daemon(function()
    local ok, err = pcall(follow, self)
    if not ok then
      io.stderr:write(("sandlot: warning: following process %s: %s\n"):format(self.id,
                                                                              tostring(err)))
    end
  end)
end

-- Objects -------------------------------------------------------------------------------------

local function new(l, row, sb)
  local self = setmetatable({
    id = row.id, sandbox_id = row.sandbox_id, argv = decode(row.argv), log_dir = row.log_dir,
    state = row.state, cap = row.cap_bytes, ledger = l, sb = sb,
    offsets = { stdout = row.stdout_bytes or 0, stderr = row.stderr_bytes or 0 },
    queue = { stdout = {}, stderr = {} }, queued = 0, last_flush = 0,
    tail = { stdout = { bytes = 0 }, stderr = { bytes = 0 } },
    ranges = decode(row.gaps) or {}, error = decode(row.error),
  }, Proc)
  self.persisted = { stdout = self.offsets.stdout, stderr = self.offsets.stderr }
  if row.exit_code then self.result = result_of(row.exit_code) end
  return self
end

-- Rebuilds the cap's tail window from the ledger (a reattaching host continues it).
local function load_tail(self)
  for _, s in ipairs(STREAMS) do
    local rows, err = self.ledger.db:proc_extents(self.id, s, self.cap // 2)
    if not rows then return nil, err end
    local t = { bytes = 0 }
    for _, r in ipairs(rows) do
      t[#t + 1] = { offset = r.offset, size = r.size }
      t.bytes = t.bytes + r.size
    end
    self.tail[s] = t
  end
  return true
end

local BG_OPTS = { background = "boolean", env = "table", cwd = "string",
                  cap = function(v)
                    return math.type(v) == "integer" and v >= 2, "an integer >= 2"
                  end }

---Starts cmd in the sandbox as a durable background process (sb:spawn(cmd, {background =
---true})). opts: env, cwd, cap (bytes kept per stream, default 8 MiB: the first and the last
---cap/2). Needs the ledger and a sandbox created with it (sb.durable_id).
---@return table|nil process, sandlot.Error? err not_supported (ledger off; not journaled),
---  not_found, unavailable, ...
function M.spawn(sb, cmd, opts)
  local argv = check.argv(cmd, "spawn", 3)
  opts = check.opts(opts, BG_OPTS, "spawn", 3)
  if opts.background ~= true then error("spawn: background must be true or absent", 2) end
  check.env(opts.env, "spawn", 3)
  local l, err = open_ledger("spawn")
  if not l then return nil, err end
  if not sb.durable_id then
    return nil, errors.new("not_supported", "spawn: a background process needs a sandbox " ..
      "journaled in the ledger (sb.durable_id); this one was made without it",
      { op = "spawn", provider = sb.provider, sandbox = sb.id })
  end
  local host, herr = l:own_host()
  if not host then return nil, herr end
  local id = "pr-" .. ids.hex(8)
  local self = setmetatable({ id = id, sb = sb, sandbox_id = sb.durable_id }, Proc)
  local r, rerr = run(self, sh(PREPARE, id))
  if not r then return nil, rerr end
  if r.exit_code ~= 0 then
    return nil, perr(self, "io_error", "spawn: " .. (r.stderr:gsub("%s+$", "")), { op = "spawn" })
  end
  local dir = r.stdout:match("^([^\n]+)")
  local t = now()
  local row = { id = id, sandbox_id = sb.durable_id, argv = encode(redact.scrub(argv)),
                cwd = opts.cwd, log_dir = dir, state = "running", host_id = host.id,
                cap_bytes = opts.cap or M.CAP, created_at = t, updated_at = t }
  local ok, ierr = l.db:proc_insert(row)
  if not ok then return nil, errors.wrap(ierr, { op = "spawn" }) end
  local full = sh(LAUNCH, RUNNER, dir)
  for _, a in ipairs(argv) do full[#full + 1] = a end
  local lr, lerr = run(self, full, { cwd = opts.cwd or "/", env = opts.env, detach = true,
                                     timeout = 30 })
  if not lr or lr.exit_code ~= 0 then
    local e = lerr or perr(self, "io_error", "spawn: the wrapper did not start: " ..
                                              (lr.stderr:gsub("%s+$", "")))
    l.db:proc_append(id, nil, nil, { state = "lost", error = encode(ledger.redact_error(e)),
                                     ended_at = now() })
    return nil, e
  end
  self = new(l, row, sb)
  live[id] = self
  start_follower(self)
  return self
end

-- Follows a process no live host follows: reconnects to its sandbox, claims the row (only
-- from the host that had it, so two hosts never follow at once), rebuilds the cap's tail and
-- starts the follower. A sandbox that is gone (not_found) makes the process lost; one that
-- cannot be reached now is an error, and the process stays as it is.
take_over = function(self, row, host)
  local l = self.ledger
  -- following needs the sandbox, not its exclusive use: the owner's claim moves to the
  -- follower (take), and the owner's live handle keeps working
  local sb, serr = require("sandlot.sandbox").get(row.sandbox_id, { take = true })
  if not sb and not errors.is(serr, "not_found") then return nil, serr end   -- for now
  if not sb then
    for _, s in ipairs(STREAMS) do lose(self, s, self.offsets[s], nil, "sandbox gone") end
    self.error = errors.wrap(serr, { process = self.id })
    self.state = "lost"
    self.passive = nil
    l.db:proc_append(self.id, nil, nil, { state = "lost", gaps = encode(self.ranges),
      error = encode(ledger.redact_error(self.error)), ended_at = now() })
    return self
  end
  local ok, terr = l.db:proc_append(self.id, nil, nil, { host_id = host.id },
                                    row.host_id or false)
  if not ok then
    if errors.is(terr, "already_exists") then self.passive = true; return self end
    return nil, terr
  end
  self.sb, self.passive = sb, nil
  local lok, lerr = load_tail(self)
  if not lok then return nil, lerr end
  start_follower(self)
  return self
end

---Reattaches to a background process by its durable id, from any process: reads the ledger,
---reconnects to its sandbox and, when no live host follows it, continues following from the
---last persisted offsets (fetching what was written meanwhile from the sandbox's log files).
---@param id string
---@return table|nil process, sandlot.Error? err not_found (no such process), not_supported
---  (ledger off), io_error, unavailable
function M.process(id, opts)
  if type(id) ~= "string" or id == "" then
    error("process: a process id (string) expected, got " .. type(id), 2)
  end
  check.opts(opts, {}, "process")
  local self = live[id]
  if self then return self end
  local l, err = open_ledger("process")
  if not l then return nil, err end
  local row
  row, err = l.db:proc_get(id)
  if not row then return nil, errors.wrap(err, { op = "process", process = id }) end
  local host, herr = l:own_host()
  if not host then return nil, herr end
  self = new(l, row, nil)
  live[id] = self
  if row.state ~= "running" then return self end
  if row.host_id and l:host_alive(row.host_id) ~= false then
    self.passive = true                   -- another live host follows it: read the ledger
    return self
  end
  return take_over(self, row, host)
end

---Lists the processes of a sandbox (by durable id; nil: every one), newest first, as rows.
function M.list(sandbox_id)
  local l, err = open_ledger("processes")
  if not l then return nil, err end
  local rows
  rows, err = l.db:proc_list(sandbox_id)
  if not rows then return nil, err end
  for _, r in ipairs(rows) do r.argv = decode(r.argv); r.gaps = decode(r.gaps) end
  return rows
end

-- Methods -------------------------------------------------------------------------------------

-- A passive reader refreshes its view from the ledger.
local function refresh(self)
  if not self.passive then return true end
  local row, err = self.ledger.db:proc_get(self.id)
  if not row then return nil, err end
  self.state = row.state
  self.offsets = { stdout = row.stdout_bytes, stderr = row.stderr_bytes }
  self.persisted = { stdout = row.stdout_bytes, stderr = row.stderr_bytes }
  self.ranges = decode(row.gaps) or {}
  self.error = decode(row.error)
  if row.exit_code then self.result = result_of(row.exit_code) end
  if row.state == "running" and (row.host_id == nil
                                 or self.ledger:host_alive(row.host_id) == false) then
    local host, herr = self.ledger:own_host()        -- nobody follows it any more: take over
    if not host then return nil, herr end
    self.offsets = { stdout = row.stdout_bytes, stderr = row.stderr_bytes }
    local ok, terr = take_over(self, row, host)
    if not ok then return nil, terr end
  end
  return true
end

-- The gap covering `offset` of a stream, if any.
local function gap_at(self, stream, offset)
  for _, g in ipairs(self.ranges) do
    if g.stream == stream and offset >= g.from and (g.to == nil or offset < g.to) then
      return g
    end
  end
end

-- Chunks of one stream from `from`: the ledger's, then what is queued in memory.
local function stream_chunks(self, stream, from, out)
  local limit = self.persisted[stream]
  local pos = from
  while pos < limit do
    local rows, err = self.ledger.db:proc_chunks(self.id, stream, pos, 64)
    if not rows then return nil, err end
    if #rows == 0 then break end
    for _, r in ipairs(rows) do
      if r.offset > pos then
        local g = gap_at(self, stream, pos)
        out[#out + 1] = { stream = stream, offset = pos, dropped = r.offset - pos,
                          reason = g and g.reason or "cap" }
        pos = r.offset
      end
      local skip = pos - r.offset
      out[#out + 1] = { stream = stream, offset = pos, data = r.data:sub(skip + 1) }
      pos = r.offset + #r.data
    end
  end
  for _, c in ipairs(self.queue[stream] or {}) do
    local e = c.offset + #c.data
    if e > pos then
      out[#out + 1] = { stream = stream, offset = pos, data = c.data:sub(pos - c.offset + 1) }
      pos = e
    end
  end
  local g = gap_at(self, stream, pos)
  if g and g.reason == "lost" then
    out[#out + 1] = { stream = stream, offset = pos, dropped = g.to and (g.to - pos) or nil,
                      reason = "lost", why = g.why }
    if g.to then pos = g.to end
  end
  return pos
end

local READ_OPTS = { offset = function(v)
                      return v == nil or (math.type(v) == "integer" and v >= 0)
                        or type(v) == "table", "an integer >= 0 or {stdout =, stderr =}"
                    end,
                    follow = "boolean", stream = function(v)
                      return v == "stdout" or v == "stderr", "\"stdout\" or \"stderr\""
                    end,
                    timeout = shapes.seconds }

local function ended(self)
  return self.state ~= "running"
end

---Returns the output from an offset: a list of chunks {stream, offset, data} (and markers
---{stream, offset, dropped = bytes|nil, reason = "cap"|"lost"} for bytes that are not kept),
---ending with {stream = "exit", exit_code, signal} once the process has ended and everything
---was returned; and the offsets to continue from ({stdout =, stderr =}). opts.offset: an
---integer (for each selected stream) or {stdout =, stderr =}; opts.stream: one stream only;
---opts.follow: wait until there is something new or the process ends, at most opts.timeout
---seconds (default 60), then nil, err{timeout}.
---@return table[]|nil chunks, table|sandlot.Error next_or_err
function Proc:read(opts)
  opts = check.opts(opts, READ_OPTS, "read")
  local streams = opts.stream and { opts.stream } or STREAMS
  local from = {}
  for _, s in ipairs(streams) do
    local o = opts.offset
    from[s] = type(o) == "table" and (o[s] or 0) or o or 0
  end
  local deadline = require("sandlot.core.sys").now() + (opts.timeout or 60) * 1e9
  while true do
    local ok, err = refresh(self)
    if not ok then return nil, err end
    local was_ended = ended(self)
    local out, nxt = {}, {}
    for _, s in ipairs(streams) do
      local pos, cerr = stream_chunks(self, s, from[s], out)
      if not pos then return nil, cerr end
      nxt[s] = pos
    end
    local complete = true
    for _, s in ipairs(streams) do
      if nxt[s] < self.offsets[s] then complete = false end
    end
    if was_ended and complete then
      out[#out + 1] = { stream = "exit", exit_code = self.result and self.result.exit_code,
                        signal = self.result and self.result.signal,
                        lost = self.state == "lost" or nil }
    end
    if #out > 0 or not opts.follow then return out, nxt end
    if require("sandlot.core.sys").now() > deadline then
      return nil, perr(self, "timeout", ("read: no output from %s for %gs")
                                         :format(self.id, opts.timeout or 60),
                       { op = "read", retryable = true })
    end
    local sok, serr = task.sleep(self.passive and 4 * M.POLL_SECONDS or M.POLL_SECONDS)
    if not sok then return nil, serr end
  end
end

---Waits for the process to end: {exit_code, signal} (a signal n shows as exit_code 128 + n),
---or nil, err: timeout, or the reason its end is unknown (the sandbox or its log is gone).
---@param opts? {timeout?: number} seconds (default: until it ends)
function Proc:wait(opts)
  opts = check.opts(opts, { timeout = shapes.seconds }, "wait")
  local deadline = opts.timeout and require("sandlot.core.sys").now() + opts.timeout * 1e9
  while true do
    local ok, err = refresh(self)
    if not ok then return nil, err end
    if self.state == "exited" then return self.result end
    if self.state == "lost" then
      if self.result then return self.result end
      local e = self.error
      if type(e) == "table" and not errors.is(e) then
        e = errors.new(e.code or "io_error", e.message or "output lost")
      end
      return nil, e or perr(self, "io_error", "process " .. self.id .. " was lost")
    end
    if deadline and require("sandlot.core.sys").now() > deadline then
      return nil, perr(self, "timeout", ("wait: %s still running after %gs")
                                         :format(self.id, opts.timeout),
                       { op = "wait", retryable = true })
    end
    local sok, serr = task.sleep(self.passive and 4 * M.POLL_SECONDS or M.POLL_SECONDS)
    if not sok then return nil, serr end
  end
end

local SIGNALS = { TERM = true, KILL = true, INT = true, HUP = true, QUIT = true, USR1 = true,
                  USR2 = true, STOP = true, CONT = true, ALRM = true }

---Sends a signal to the process's group (through the wrapper: it takes up to ~0.1 s).
---@param signal? string "TERM" (default), "KILL", "INT", "HUP", "QUIT", "USR1", "USR2",
---  "STOP", "CONT", "ALRM" (with or without "SIG")
---@return true|nil ok, sandlot.Error? err not_found (it has ended), ...
function Proc:kill(signal)
  signal = (signal or "TERM")
  if type(signal) ~= "string" or not SIGNALS[signal:gsub("^SIG", "")] then
    error("kill: signal must be a name such as \"TERM\" or \"KILL\"", 2)
  end
  signal = signal:gsub("^SIG", "")
  local ok, err = refresh(self)
  if not ok then return nil, err end
  if ended(self) then
    return nil, perr(self, "not_found", ("kill: process %s has ended"):format(self.id),
                     { op = "kill" })
  end
  if not self.sb then
    local sb, serr = require("sandlot.sandbox").get(self.sandbox_id, { take = true })
    if not sb then return nil, serr end
    self.sb = sb
  end
  local r, rerr = run(self, sh(KILL, self.log_dir, signal))
  if not r then return nil, rerr end
  if r.exit_code == 3 then
    return nil, perr(self, "not_found", ("kill: process %s has ended"):format(self.id),
                     { op = "kill" })
  end
  if r.exit_code ~= 0 then
    return nil, perr(self, "io_error", "kill: " .. r.stderr:sub(1, 200), { op = "kill" })
  end
  return true
end

---Waits until this host has caught up with the log in the sandbox (the bytes written before it
---started following are in), or the process has ended, at most `timeout` seconds (default 10).
---A passive reader (another live host follows) returns at once.
---@return boolean caught_up
function Proc:sync(timeout)
  local deadline = require("sandlot.core.sys").now() + (timeout or 10) * 1e9
  while not self.passive and self.state == "running" do
    local c = self.catch_up
    if c and self.offsets.stdout >= (c.stdout or 0) and self.offsets.stderr >= (c.stderr or 0)
    then return true end
    if require("sandlot.core.sys").now() > deadline or not task.sleep(M.POLL_SECONDS) then
      return false
    end
  end
  return true
end

---Flushes what is queued and stops following here (the process keeps running; a later
---sandlot.process(id) continues). Idempotent.
function Proc:close()
  if self.task and not self.task:done() then
    self.task:cancel()
    if require("sandlot.core.sched").can_wait() then pcall(self.task.join, self.task) end
  end
  if live[self.id] == self then live[self.id] = nil end
  return true
end
Proc.__close = function(self) self:close() end

---Byte ranges not kept: {{stream, from, to (nil: to the end), reason = "cap"|"lost", why},
---...}; reason "cap": dropped by the cap; "lost": could not be had (the log was truncated or
---is gone, the sandbox is unreachable).
function Proc:gaps()
  local out = {}
  for _, g in ipairs(self.ranges) do out[#out + 1] = g end
  return out
end

M.Proc = Proc

return M
