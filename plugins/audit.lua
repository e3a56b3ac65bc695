-- audit: one JSON line per operation (create, exec, destroy) in the plugin's data file
-- ($XDG_STATE_HOME/sandlot/plugins/audit/data/audit.jsonl), secrets redacted by the host's
-- redactor before anything is written.
-- Config: plugins = { audit = { config = { file = "x.jsonl" } } }
local FILE = config.file or "audit.jsonl"
state.lines = state.lines or 0

local function write(rec)
  rec.time = os.time()
  local line = sandlot.json(sandlot.redact(rec))
  sandlot.data.append(FILE, line .. "\n")
  state.lines = state.lines + 1
end

return {
  name = "audit", version = "1.0.0", priority = 90,
  before_create = function(opts)
    write({ op = "create", image = opts.image, name = opts.name, env = opts.env,
            labels = opts.labels })
  end,                                  -- nothing returned: the options stay as they are
  after_create = function(sb)
    write({ op = "created", sandbox = sb.id, provider = sb.provider, durable_id = sb.durable_id })
  end,
  after_exec = function(r, sb)
    write({ op = "exec", sandbox = sb.id, command = sb.command, exit_code = r.exit_code,
            signal = r.signal, timed_out = r.timed_out, stdout_bytes = r.stdout_bytes,
            stderr_bytes = r.stderr_bytes })
  end,
  before_destroy = function(sb) write({ op = "destroy", sandbox = sb.id }) end,
  migrate = function(old) return old end,
}
