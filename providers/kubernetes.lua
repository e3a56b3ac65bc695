-- providers/kubernetes.lua: Kubernetes pods as sandboxes. One pod per sandbox (container
-- "main", `sleep infinity`, restartPolicy Never), made over the API server's REST JSON and
-- waited for until Running; commands over the pods/exec WebSocket (v5.channel.k8s.io, else
-- v4.channel.k8s.io); files through exec too (cat out, cat or tar in). Reference:
-- ../shared/provider-apis/kubernetes.md (wire facts from the Kubernetes sources it lists).
--
-- Credentials come from a kubeconfig (config.kubeconfig, else $KUBECONFIG's first file, else
-- ~/.kube/config; its current-context or config.context) or, without one, the in-cluster
-- service account (KUBERNETES_SERVICE_HOST/PORT, config.service_account_dir). A bearer token
-- (token, tokenFile) and/or a client certificate (client-certificate(-data) + client-key(-data)):
-- the certificate and key go as PEM text in memory to libcurl (CURLOPT_SSLCERT_BLOB /
-- SSLKEY_BLOB) for REST and to core/tls.c for the exec WebSocket; the key is never written to
-- a file and is scrubbed from messages. exec / auth-provider plugins are not_supported. A CA
-- given as -data is written to a temporary file (a CA certificate is public).
-- Every exec runs under /bin/sh in the pod (cd, env, and on v4 `head -c N` for stdin, which v4
-- cannot end): the image needs a POSIX sh. get_url is not_supported: the API server's proxy
-- (/pods/{name}:{port}/proxy/) needs the bearer token, so its URL is no URL to hand out.
-- A handle is {id = pod name, namespace, workdir}: nothing secret.
local api = require("sandlot.api")
local kconfig = require("sandlot._native.kubernetes_config")
local errors = require("sandlot.errors")
local json = require("sandlot.wire.json")
local tar = require("sandlot.wire.tar")
local wtime = require("sandlot.wire.time")
local check = require("sandlot._check")
local exec = require("sandlot.exec")
local fs = require("sandlot.fs")
local id = require("sandlot.id")
local task = require("sandlot.task")
local ws = require("sandlot.ws")

local M = {
  name = "kubernetes",
  description = "Kubernetes pods (REST JSON; exec and files over the pods/exec WebSocket)",
  capabilities = { files = false, url = false, remote = true, background = true,
                   streams = true },
  config = { kubeconfig = "string", context = "string", namespace = "string", image = "string",
             resources = "table", env = "table", labels = "table", workdir = "string",
             timeout = "number", request_timeout = "number", create_timeout = "number",
             service_account_dir = "string" },
}

local DEFAULT_IMAGE = "debian:bookworm-slim"
local WORKDIR = "/work"
local CONTAINER = "main"
local MANAGED = "app.kubernetes.io/managed-by"     -- label: managed-by=sandlot marks our pods
local LABELS_NOTE = "sandlot.dev/labels"           -- annotation: sandlot's labels as JSON
local POD_NAME = "^[a-z0-9][a-z0-9%-]*$"
local NS_NAME = "^[a-z0-9][a-z0-9%-]*$"
local PROTOCOLS = { "v5.channel.k8s.io", "v4.channel.k8s.io" }
local CHUNK = 256 * 1024                           -- stdin bytes per WebSocket frame
local KEEPALIVE = 20                               -- s between pings on a silent exec
local NOCWD = 111                                  -- the wrapper's exit for a missing cwd
local NOCWD_MARK = "sandlot: no such directory"
-- Waiting reasons that will not clear by themselves: create stops at once on them.
local STUCK = { ErrImagePull = true, ImagePullBackOff = true, InvalidImageName = true,
                CreateContainerConfigError = true, CreateContainerError = true,
                CrashLoopBackOff = true }

local clock = task.now
local function str(v) return type(v) == "string" and v ~= "" and v or nil end

local function fail(code, fmt, ...)
  return nil, errors.new(code, fmt:format(...))
end


-- Status bodies: reason -> code where the status alone says less.
local REASONS = { AlreadyExists = "already_exists", NotFound = "not_found",
                  Unauthorized = "auth_failed", Forbidden = "permission_denied",
                  Invalid = "invalid_input", Conflict = "unavailable",
                  TooManyRequests = "rate_limited", Timeout = "timeout",
                  ServerTimeout = "unavailable", Gone = "not_found" }
local function by_reason(res)
  local j = type(res.json) == "table" and res.json or {}
  return REASONS[j.reason]
end
local ERRORS = {}
for _, s in ipairs({ 400, 401, 403, 404, 409, 410, 422, 429, 500, 503, 504 }) do
  ERRORS[s] = by_reason
end

-- 429 (API Priority and Fairness) and 503 were not carried out: safe to send again.
local RETRY = { attempts = 4, safe = true, statuses = { [429] = true, [503] = true },
                max_after = 30 }

local function request_timeout(ctx) return tonumber(ctx.config.request_timeout) or 60 end

local function client(ctx, c)
  return api.client(ctx, {
    name = "kubernetes", base_url = c.server, timeout = request_timeout(ctx), errors = ERRORS,
    retry = RETRY, ca_file = c.ca_file, insecure = c.insecure or nil,
    client_cert = c.client_cert, client_key = c.client_key,
    auth = function()
      if not c.token then return nil end
      return "Authorization", "Bearer " .. c.token
    end,
  })
end

-- creds and a client, or nil, err.
local function connect(ctx)
  local c, err = kconfig.creds(ctx)
  if not c then return nil, err end
  return c, client(ctx, c)
end

local function pod_of(handle)
  local name, err = check.id(type(handle) == "table" and handle.id or nil, POD_NAME,
                             "the handle's pod name", 63)
  if not name then return nil, err end
  local ns, nerr = check.id(handle.namespace, NS_NAME, "the handle's namespace", 63)
  if not ns then return nil, nerr end
  return name, ns
end

local function pods_path(ns) return "/api/v1/namespaces/" .. api.segment(ns) .. "/pods" end

local function pod_path(handle, what)
  local name, ns = pod_of(handle)
  if not name then return nil, ns end
  return pods_path(ns) .. "/" .. api.segment(name) .. (what or "")
end

-- Pods ---------------------------------------------------------------------------------------

local function get_pod(ctx, handle)
  local p, perr = pod_path(handle)
  if not p then return nil, perr end
  local cr, c = connect(ctx)
  if not cr then return nil, c end
  local v, err = c:call("GET", p, { want = { 200 } })
  if not v then return nil, err end
  if type(v) ~= "table" or type(v.status) ~= "table" then
    return fail("bad_response", "GET pod: not a Pod object")
  end
  return v
end

local function container_status(pod)
  for _, s in ipairs(type(pod.status.containerStatuses) == "table"
                     and pod.status.containerStatuses or {}) do
    if type(s) == "table" and s.name == CONTAINER then return s end
  end
end

-- Why a pod is not running yet: "ImagePullBackOff: Back-off pulling image ..." or the phase.
local function waiting_reason(pod)
  local s = container_status(pod)
  local st = s and type(s.state) == "table" and s.state or {}
  local w = type(st.waiting) == "table" and st.waiting or type(st.terminated) == "table"
            and st.terminated
  if w and type(w.reason) == "string" then
    local msg = type(w.message) == "string" and w.message ~= "" and (": " .. w.message) or ""
    return w.reason .. msg:sub(1, 300), w.reason
  end
  return "phase " .. tostring(pod.status.phase)
end

local function running(pod)
  if pod.metadata and pod.metadata.deletionTimestamp then return false end
  local s = container_status(pod)
  return pod.status.phase == "Running" and s ~= nil and type(s.state) == "table"
         and type(s.state.running) == "table"
end

local OWN = { ["sandlot.purpose"] = true, ["sandlot.name"] = true }

local function string_map(t, what)
  local out = {}
  for k, v in pairs(t or {}) do
    if type(k) ~= "string" or (type(v) ~= "string" and type(v) ~= "number") then
      return fail("invalid_input", "kubernetes: %s must map strings to strings", what)
    end
    out[k] = tostring(v)
  end
  return out
end

-- A label Kubernetes accepts as it is (keys: [prefix/]name, values: 63 of [A-Za-z0-9_.-]).
local function plain_label(k, v)
  local name = k:match("^[%w%.%-]+/(.+)$") or k
  return #name <= 63 and name:match("^%w[%w_%.%-]*$") and name:match("%w$")
         and #v <= 63 and (v == "" or (v:match("^%w[%w_%.%-]*$") and v:match("%w$")))
end

local function pod_body(ctx, opts, name, workdir)
  local cfg = ctx.config
  local lifetime = opts.timeout or cfg.timeout          -- the pod fails at its deadline
  local env = {}
  local merged = {}
  for k, v in pairs(cfg.env or {}) do merged[k] = v end
  for k, v in pairs(opts.env or {}) do merged[k] = v end
  local keys = {}
  for k in pairs(merged) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    if merged[k] ~= false then env[#env + 1] = { name = k, value = tostring(merged[k]) } end
  end
  local user, lerr = string_map(opts.labels, "labels")
  if not user then return nil, lerr end
  local extra, eerr = string_map(cfg.labels, "config.labels")
  if not extra then return nil, eerr end
  local mine = {}
  for k, v in pairs(user) do
    if OWN[k] then return fail("invalid_input", "label %q is sandlot's own", k) end
    mine[k] = v
  end
  if opts.purpose then mine["sandlot.purpose"] = opts.purpose end
  if opts.name then mine["sandlot.name"] = opts.name end
  local labels = { [MANAGED] = "sandlot" }
  for k, v in pairs(extra) do if plain_label(k, v) then labels[k] = v end end
  for k, v in pairs(mine) do if plain_label(k, v) then labels[k] = v end end
  local resources = cfg.resources
  if opts.cpus or opts.memory_mb then
    resources = { limits = {} }
    for k, v in pairs(type(cfg.resources) == "table" and cfg.resources.limits or {}) do
      resources.limits[k] = v
    end
    if opts.cpus then resources.limits.cpu = tostring(opts.cpus) end
    if opts.memory_mb then resources.limits.memory = ("%dMi"):format(math.ceil(opts.memory_mb)) end
  end
  local container = { name = CONTAINER, image = opts.image or cfg.image or DEFAULT_IMAGE,
                      command = { "sleep", "infinity" }, workingDir = workdir,
                      env = #env > 0 and env or nil, resources = resources }
  if opts.disk_mb then
    container.resources = container.resources or { limits = {} }
    container.resources.limits = container.resources.limits or {}
    container.resources.limits["ephemeral-storage"] = ("%dMi"):format(math.ceil(opts.disk_mb))
  end
  return {
    apiVersion = "v1", kind = "Pod",
    metadata = { name = name, labels = labels,
                 annotations = { [LABELS_NOTE] = json.encode(mine) } },
    spec = { restartPolicy = "Never", terminationGracePeriodSeconds = 0,
             automountServiceAccountToken = false, containers = { container },
             activeDeadlineSeconds = lifetime and math.ceil(lifetime) or nil },
  }
end

local function delete_pod(c, path)
  local ok, err = c:call("DELETE", path, { query = { gracePeriodSeconds = "0" },
                                            want = { 200, 202 } })
  if ok or err.code == "not_found" then return true end
  return nil, err
end

---Creates a pod (POST .../pods, name sandlot-<random>) and waits until it is Running, within
---create_timeout (120 s): a waiting reason that will not clear (ImagePullBackOff, ...) or the
---deadline deletes it and is an error naming the reason.
function M.create(ctx, opts)
  if opts.network ~= nil and opts.network ~= "all" then
    return fail("not_supported", "the kubernetes provider does not write NetworkPolicies; " ..
                "use network = \"all\"")
  end
  if opts.mounts then return fail("not_supported", "kubernetes pods cannot mount host paths") end
  if opts.ports then ctx.warn("kubernetes: ports is ignored (no Service is made)") end
  local c, cl = connect(ctx)
  if not c then return nil, cl end
  local ns, nerr = check.id(c.namespace, NS_NAME, "the namespace", 63)
  if not ns then return nil, nerr end
  local base = ctx.config.workdir or WORKDIR
  local workdir = base
  if opts.cwd then
    local w, werr = fs.path(base, opts.cwd)
    if not w then return nil, werr end
    workdir = w
  end
  local handle = { id = "sandlot-" .. id.hex(6), namespace = ns, workdir = workdir }
  local body, berr = pod_body(ctx, opts, handle.id, workdir)
  if not body then return nil, berr end
  local path = pods_path(ns)
  local made, err = cl:call("POST", path, { json = body, want = { 201, 200 } })
  if not made and err.code == "already_exists" then   -- a retried POST that had gone through
    made, err = get_pod(ctx, handle)
  end
  if not made then return nil, err end
  local me = path .. "/" .. handle.id
  local limit = tonumber(ctx.config.create_timeout) or 120
  local start = os.time()
  local deadline = os.time() + limit
  local delay = 0.1
  while true do
    local pod, gerr = get_pod(ctx, handle)
    if not pod then
      task.cleanup(function() delete_pod(cl, me) end)
      return nil, gerr
    end
    if running(pod) then break end
    local why, short = waiting_reason(pod)
    if STUCK[short] or pod.status.phase == "Failed" or pod.status.phase == "Succeeded" then
      task.cleanup(function() delete_pod(cl, me) end)
      return fail("unavailable", "kubernetes: pod %s/%s will not run: %s", ns, handle.id, why)
    end
    if os.time() >= deadline then
      task.cleanup(function() delete_pod(cl, me) end)
      return fail("timeout", "kubernetes: pod %s/%s not Running after %ds: %s", ns, handle.id,
                  limit, why)
    end
    ctx.progress("create", { elapsed = os.time() - start }, { what = why })
    task.sleep(delay)
    delay = math.min(delay * 2, 2)
  end
  return handle
end

---running (Running, the container running), terminated (gone, completed or being deleted),
---unknown (Pending and the rest).
function M.status(ctx, handle)
  local pod, err = get_pod(ctx, handle)
  if not pod and err.code == "not_found" then return "terminated" end
  if not pod then return nil, err end
  if running(pod) then return "running" end
  local phase = pod.status.phase
  if phase == "Succeeded" or phase == "Failed" or (pod.metadata or {}).deletionTimestamp then
    return "terminated"
  end
  return "unknown"
end

function M.reconnect(ctx, handle)
  local pod, err = get_pod(ctx, handle)
  if not pod then return nil, err end
  return handle
end

---Deletes the pod at once (gracePeriodSeconds=0). Idempotent.
function M.destroy(ctx, handle)
  local p, perr = pod_path(handle)
  if not p then return nil, perr end
  local cr, c = connect(ctx)
  if not cr then return nil, c end
  return delete_pod(c, p)
end


---Lists sandlot's pods (label managed-by=sandlot) in the namespace whose sandlot labels
---include every given pair.
function M.list(ctx, opts)
  local c, cl = connect(ctx)
  if not c then return nil, cl end
  local ns, nerr = check.id(c.namespace, NS_NAME, "the namespace", 63)
  if not ns then return nil, nerr end
  local want = {}
  for k, v in pairs(opts and opts.labels or {}) do want[tostring(k)] = tostring(v) end
  local out, cont = {}, nil
  for _ = 1, 1000 do
    local page, err = cl:call("GET", pods_path(ns), {
      query = { labelSelector = MANAGED .. "=sandlot", limit = "500", ["continue"] = cont },
      want = { 200 } })
    if not page then return nil, err end
    if type(page) ~= "table" or type(page.items) ~= "table" then
      return fail("bad_response", "GET pods: not a PodList")
    end
    for _, pod in ipairs(page.items) do
      local md = type(pod) == "table" and type(pod.metadata) == "table" and pod.metadata or {}
      local note = type(md.annotations) == "table" and md.annotations[LABELS_NOTE]
      local labels = type(note) == "string" and json.decode(note) or {}
      if type(labels) ~= "table" then labels = {} end
      local match = type(md.name) == "string" and md.name:match(POD_NAME) ~= nil
                    and md.deletionTimestamp == nil
      for k, v in pairs(want) do if labels[k] ~= v then match = false end end
      if match then
        local spec = type(pod.spec) == "table" and pod.spec or {}
        local ct = type(spec.containers) == "table" and spec.containers[1] or {}
        out[#out + 1] = { id = md.name, namespace = ns,
                          workdir = type(ct.workingDir) == "string" and ct.workingDir or WORKDIR,
                          labels = labels, created_at = wtime.parse(md.creationTimestamp) }
      end
    end
    cont = type(page.metadata) == "table" and str(page.metadata["continue"]) or nil
    if not cont then break end
  end
  table.sort(out, function(x, y) return x.id < y.id end)
  return out
end

-- Exec ---------------------------------------------------------------------------------------
-- The command line: /bin/sh -c SCRIPT sh ARGV..., where SCRIPT changes directory (exit NOCWD
-- with a mark when it cannot), applies env through env(1), and on v4 reads stdin as exactly
-- `bytes` bytes (v4 has no end-of-input signal).

-- spawn: the command replaces the wrapper (its stdin, signals and exit status are the exec's
-- own); a watcher sends it each signal name written to the fifo /tmp/.sandlot-spawn-TAG, and a
-- reaper removes the fifo and the watcher once it has gone.
local SPAWN = table.concat({
  'c=/tmp/.sandlot-spawn-%s',
  'mkfifo -m 600 "$c" 2>/dev/null || { echo "sandlot: cannot make the fifo $c" >&2; exit 125; }',
  '(while :; do read -r s < "$c" || break; kill -s "$s" $$ 2>/dev/null; done) ' ..
  '</dev/null >/dev/null 2>&1 &',
  'w=$!',
  '(while kill -0 $$ 2>/dev/null; do sleep 1; done; kill "$w"; rm -f "$c") ' ..
  '</dev/null >/dev/null 2>&1 &',
  'exec %s' }, "\n")

local function shell_argv(argv, opts, cwd, stdin_bytes, spawn_tag)
  local script = {}
  if cwd then
    script[#script + 1] = ('cd -- "$1" 2>/dev/null || { echo "%s" >&2; exit %d; }; shift')
                          :format(NOCWD_MARK, NOCWD)
  end
  local pre = ""
  local sets, unset = {}, {}
  for k, v in pairs(opts.env or {}) do
    if v == false then unset[#unset + 1] = k else sets[#sets + 1] = k .. "=" .. tostring(v) end
  end
  table.sort(sets)
  table.sort(unset)
  if stdin_bytes then pre = ("head -c %d | "):format(stdin_bytes) end
  if spawn_tag then
    local e = { "env" }
    for _, k in ipairs(unset) do e[#e + 1] = "-u " .. k end
    script[#script + 1] = SPAWN:format(spawn_tag, table.concat(e, " ") .. ' "$@"')
  elseif #sets > 0 or #unset > 0 then
    local e = { "env" }
    for _, k in ipairs(unset) do e[#e + 1] = "-u " .. k end
    -- the assignments are arguments after the cwd; env reads them from "$@"
    script[#script + 1] = pre .. table.concat(e, " ") .. ' "$@"'
  elseif stdin_bytes then
    script[#script + 1] = pre .. '"$@"'
  else
    script[#script + 1] = 'exec "$@"'
  end
  local out = { "/bin/sh", "-c", table.concat(script, "\n"), "sh" }
  if cwd then out[#out + 1] = cwd end
  for _, s in ipairs(sets) do out[#out + 1] = s end
  for _, a in ipairs(argv) do out[#out + 1] = a end
  return out
end

local function escape(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(ch) return ("%%%02X"):format(ch:byte()) end))
end

-- A refused upgrade: the Status body's reason and message (a 403 from >= 1.35 names the
-- missing create permission).
local function refused(c, err, pod)
  local st = err.status
  if not st then return nil, err end
  local v = type(err.body) == "string" and json.decode(err.body) or nil
  local msg = type(v) == "table" and type(v.message) == "string" and v.message
              or ("HTTP " .. st)
  local code = type(v) == "table" and REASONS[v.reason] or nil
  if not code then
    code = ({ [400] = "unavailable", [401] = "auth_failed", [403] = "permission_denied",
              [404] = "not_found", [429] = "rate_limited" })[st] or "unavailable"
  end
  if st == 403 and type(v) ~= "table" then
    -- a bare 403: wsstream's failed handshake (no channel protocol in common), or a proxy that
    -- refuses upgrades; not RBAC, whose answer is a Status
    return fail("not_supported", "kubernetes exec: the API server refused the WebSocket " ..
                "upgrade without a Status: it speaks neither v5.channel.k8s.io nor " ..
                "v4.channel.k8s.io, or a proxy in between refuses upgrades (kubectl falls back " ..
                "to SPDY there, which sandlot does not speak)")
  end
  if st == 403 then
    msg = msg .. " (a WebSocket exec needs get and create on pods/exec; before 1.30, or " ..
          "behind some proxies, only SPDY works, which sandlot does not speak)"
  elseif st == 400 then
    msg = msg .. " (is pod " .. pod .. " still running?)"
  end
  return nil, errors.new(code, "kubernetes exec: " .. c:scrub(msg), { status = st })
end

-- The exit code in the status channel's Status, or nil, err.
local function exit_code(status, cl)
  local v = json.decode(status)
  if type(v) ~= "table" then
    return fail("bad_response", "kubernetes exec: the status channel held no JSON Status")
  end
  if v.status == "Success" then return 0 end
  local code
  local causes = type(v.details) == "table" and type(v.details.causes) == "table"
                 and v.details.causes or {}
  for _, cause in ipairs(causes) do
    if type(cause) == "table" and cause.reason == "ExitCode" then
      code = math.tointeger(tonumber(cause.message))
    end
  end
  if v.reason ~= "NonZeroExitCode" or not code then
    return fail("io_error", "kubernetes exec: %s", cl:scrub(tostring(v.message or v.reason)))
  end
  return code
end

local negotiated = {}            -- server URL -> the channel protocol it chose (this process)

-- Opens the exec WebSocket for argv: the connection (its subprotocol v5 or v4) and the API
-- client (for scrubbing), or nil, err. spawn_tag: the spawn wrapper (stdin open, v5 only).
local function open_exec(ctx, handle, argv, opts, spawn_tag)
  local p, perr = pod_path(handle, "/exec")
  if not p then return nil, perr end
  local c, cl = connect(ctx)
  if not c then return nil, cl end
  local cwd
  if opts.cwd then
    local w, werr = fs.path(handle.workdir or WORKDIR, opts.cwd)
    if not w then return nil, werr end
    cwd = w
  end
  local stdin = opts.stdin
  local has_stdin = stdin ~= nil or spawn_tag ~= nil
  local function open(proto_list, stdin_bytes, probe)
    local cmd = probe and { "true" } or shell_argv(argv, opts, cwd, stdin_bytes, spawn_tag)
    local q = { "container=" .. CONTAINER }
    for _, a in ipairs(cmd) do q[#q + 1] = "command=" .. escape(a) end
    q[#q + 1] = "stdin=" .. tostring(has_stdin and not probe)
    q[#q + 1] = "stdout=true&stderr=true&tty=false"
    local url = c.server:gsub("^http", "ws") .. p .. "?" .. table.concat(q, "&")
    return ws.connect(url, { headers = c.token and { Authorization = "Bearer " .. c.token } or {},
                             subprotocols = proto_list, timeout = request_timeout(ctx),
                             ca_file = c.ca_file, insecure = c.insecure or nil,
                             client_cert = c.client_cert, client_key = c.client_key,
                             keepalive = KEEPALIVE, ping_timeout = request_timeout(ctx),
                             max_message = 16 * 1024 * 1024 })
  end
  local size = opts.stdin_size or (type(stdin) == "string" and #stdin) or nil
  -- A command with stdin is built for its protocol (v4 cannot end stdin: `head -c`), so the
  -- server's choice is known before it runs: asked once per server with `true`, which has no
  -- effect, and only that protocol offered. The command itself never runs twice.
  local function ask()
    local pc, oerr = open(PROTOCOLS, nil, true)
    if not pc then return refused(cl, oerr, handle.id) end
    local chosen = pc.subprotocol
    pc:close(1000)
    if chosen ~= PROTOCOLS[1] and chosen ~= PROTOCOLS[2] then
      return fail("not_supported", "kubernetes exec: the API server chose no v5 or v4 " ..
                  "channel protocol (%s)", tostring(chosen or "none"))
    end
    negotiated[c.server] = chosen
    return chosen
  end
  local built, conn, err
  for attempt = 1, 2 do
    local cached = has_stdin and negotiated[c.server]
    if has_stdin and not cached then
      local chosen, aerr = ask()
      if not chosen then return nil, aerr end
      built = chosen
    else
      built = cached or nil
    end
    if spawn_tag and built == PROTOCOLS[2] then
      return fail("not_supported", "kubernetes spawn: the API server speaks v4.channel.k8s.io, " ..
                  "which cannot end a process's stdin (v5 can, from Kubernetes 1.30)")
    end
    conn, err = open(built and { built } or PROTOCOLS, built == PROTOCOLS[2] and size or nil)
    if conn then break end
    negotiated[c.server] = nil
    -- a remembered protocol the server no longer speaks: refused before anything ran
    local again = cached and attempt == 1 and err.status == 403
                  and type(err.body == "string" and json.decode(err.body) or nil) ~= "table"
    if not again then return refused(cl, err, handle.id) end
  end
  local proto = conn.subprotocol
  if built and proto ~= built then
    negotiated[c.server] = nil
    conn:close(1000)
    return fail("unavailable", "kubernetes exec: the API server changed its channel protocol " ..
                "(%s, not %s); the command was not run", tostring(proto or "none"), built)
  end
  if proto ~= PROTOCOLS[1] and proto ~= PROTOCOLS[2] then
    conn:close(1000)
    return fail("not_supported", "kubernetes exec: the API server offered no v5 or v4 channel " ..
                "protocol (%s)", tostring(proto or "none"))
  end
  return conn, cl
end

-- Runs argv in the pod over the exec WebSocket. opts: env, cwd, stdin (a string, or a producer
-- function returning chunks then nil, with stdin_size), timeout, max_output, on_stdout,
-- on_stderr, idle. Returns the exec result or nil, err.
local function run(ctx, handle, argv, opts)
  local conn, cl = open_exec(ctx, handle, argv, opts)
  if not conn then return nil, cl end
  local stdin, has_stdin, proto = opts.stdin, opts.stdin ~= nil, conn.subprotocol
  local sink = exec.sink{ max_output = opts.max_output, on_stdout = opts.on_stdout,
                          on_stderr = opts.on_stderr }
  local started = os.time()
  local progress = clock()
  -- stdin in its own task, so output is read while it is sent (no deadlock on full pipes)
  local writer, werr
  if has_stdin then
    writer = task.spawn(function()
      local function send(piece)
        for i = 1, #piece, CHUNK do
          local ok, e = conn:send("\0" .. piece:sub(i, i + CHUNK - 1), { binary = true })
          if not ok then werr = e; return false end
          progress = clock()
        end
        return true
      end
      if type(stdin) == "string" then
        if not send(stdin) then return end
      else
        while true do
          local piece, rerr = stdin()
          if piece == nil then
            if rerr then werr = rerr; return end
            break
          end
          if not send(piece) then return end
        end
      end
      if proto == PROTOCOLS[1] then                     -- v5: end of stdin
        local ok, e = conn:send("\255\0", { binary = true })
        if not ok then werr = e end
      end
    end)
  end
  -- frames until the channel-3 Status; a silent dead peer is caught by keepalive pings
  -- (ping_timeout), the command's own deadline by task.timeout
  -- opts.idle (file operations): no frame from the pod and no stdin sent for that long fails
  -- with timeout, so a stalled transfer ends rather than waiting for ever
  local status, rerr
  local function pump()
    while true do
      local wait = opts.idle and math.max(progress + opts.idle - clock(), 0.001) or nil
      local data, kind = conn:receive{ timeout = wait }
      if not data and opts.idle and errors.is(kind, "timeout") and not conn.closed then
        if clock() >= progress + opts.idle then
          rerr = errors.new("timeout", ("kubernetes exec: no data from pod %s for %gs")
                            :format(handle.id, opts.idle))
          return
        end
        goto continue
      end
      if not data then rerr = kind; return end
      progress = clock()
      if kind == "binary" and #data >= 1 then
        local ch = data:byte(1)
        if ch == 1 and #data > 1 then sink:add("stdout", data:sub(2))
        elseif ch == 2 and #data > 1 then sink:add("stderr", data:sub(2))
        elseif ch == 3 then
          status = data:sub(2)
          return
        end
      end
      ::continue::
    end
  end
  local timed_out = false
  if opts.timeout then
    local _, terr = task.timeout(opts.timeout, pump)
    timed_out = terr ~= nil and terr.code == "timeout" and status == nil
  else
    pump()
  end
  if writer and not writer:done() then writer:cancel() end
  conn:close(1000)
  if status == nil then
    if timed_out then                                   -- the deadline passed
      sink:timed_out()
      local r = sink:result()
      r.duration = os.time() - started
      return r
    end
    if rerr == nil or rerr.closed then
      return fail("io_error", "kubernetes exec: the connection closed before the command's " ..
                  "exit status (pod %s)", handle.id)
    end
    return nil, rerr
  end
  if werr and not werr.closed then return nil, werr end
  local code, cerr = exit_code(status, cl)
  if not code then return nil, cerr end
  sink:exit(code)
  local r = sink:result()
  if opts.cwd and r.exit_code == NOCWD and r.stderr == NOCWD_MARK .. "\n" then
    return fail("not_found", "no directory %s in the pod", opts.cwd)
  end
  return r
end

---Runs argv in the pod (exec over WebSocket; see Exec above).
function M.exec(ctx, handle, argv, opts)
  if opts.detach then
    -- the command is started behind setsid by sandlot's wrapper and outlives the exec
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    o.detach = nil
    return run(ctx, handle, argv, o)
  end
  return run(ctx, handle, argv, opts)
end

-- Files --------------------------------------------------------------------------------------
-- Through exec: a file out with cat (streamed to opts.to a frame at a time), in with cat from
-- stdin (a host file sent a chunk at a time), several at once as one tar (tar xf - -C /).

local function abs_path(handle, path)
  return fs.path(handle.workdir or WORKDIR, path)
end

local READ = 'if [ -d "$1" ]; then echo "is a directory" >&2; exit 21; fi; ' ..
             '[ -e "$1" ] || { echo "no such file" >&2; exit 2; }; exec cat -- "$1"'

local function file_error(r, path)
  local e = r.stderr or ""
  if r.exit_code == 2 or e:find("No such file", 1, true) then
    return fail("not_found", "no file %s", path)
  end
  if r.exit_code == 21 or e:find("Is a directory", 1, true) or e:find("Not a directory", 1, true)
  then
    return fail("invalid_input", "%s: is a directory or under a file", path)
  end
  if e:find("Permission denied", 1, true) then return fail("permission_denied", "%s: %s", path,
                                                          e:sub(1, 200)) end
  return fail("io_error", "%s: exit %s: %s", path, tostring(r.exit_code), e:sub(1, 200))
end

function M.read_file(ctx, handle, path, opts)
  local abs, aerr = abs_path(handle, path)
  if not abs then return nil, aerr end
  local sink, serr
  local parts = {}
  if opts and opts.to then
    sink, serr = fs.sink(opts.to)
    if not sink then return nil, serr end
  end
  local failed
  local r, err = run(ctx, handle, { "/bin/sh", "-c", READ, "sh", abs }, {
    max_output = 64 * 1024, idle = request_timeout(ctx),
    on_stdout = function(d)
      if failed then return end
      if sink then
        local ok, e = sink(d)
        if not ok then failed = e end
      else
        parts[#parts + 1] = d
      end
    end })
  if sink then
    local ok, ferr = sink:finish()
    if not ok and not failed then failed = ferr end
  end
  if not r then return nil, err end
  if r.exit_code ~= 0 then return file_error(r, path) end
  if failed then return nil, failed end
  if sink then return sink.bytes end
  return table.concat(parts)
end

local WRITE = 'd=$(dirname -- "$1") && mkdir -p -- "$d" && cat > "$1" && ' ..
              '{ [ -z "$2" ] || chmod "$2" "$1"; }'

function M.write_file(ctx, handle, path, data, opts)
  local abs, aerr = abs_path(handle, path)
  if not abs then return nil, aerr end
  local mode = opts and opts.mode and ("%o"):format(opts.mode) or ""
  local stdin, size = data, data and #data
  if data == nil and opts and opts.from then
    local src, s = fs.source(opts.from, CHUNK)
    if not src then return nil, s end
    stdin, size = src, s
  end
  local r, err = run(ctx, handle, { "/bin/sh", "-c", WRITE, "sh", abs, mode },
                     { stdin = stdin or "", stdin_size = size, max_output = 64 * 1024,
                       idle = request_timeout(ctx) })
  if not r then return nil, err end
  if r.exit_code ~= 0 then return file_error(r, path) end
  return true
end

---Writes several files in one exec: a tar of them, unpacked at / (parents made by tar).
function M.write_files(ctx, handle, files)
  local entries = {}
  for _, f in ipairs(files) do
    local abs, aerr = abs_path(handle, f.path)
    if not abs then return nil, aerr end
    if abs == "/" then return fail("invalid_input", "cannot write / as a file") end
    entries[#entries + 1] = { name = abs:sub(2), data = f.data, mode = f.mode }
  end
  local pieces, size = tar.archive(entries)
  local r, err = run(ctx, handle, { "tar", "xf", "-", "-C", "/" },
                     { stdin = table.concat(pieces), stdin_size = size, max_output = 64 * 1024,
                       idle = request_timeout(ctx) })
  if not r then return nil, err end
  if r.exit_code ~= 0 then
    return fail(r.stderr:find("Not a directory", 1, true) and "invalid_input" or "io_error",
                "write_files: tar: %s", r.stderr:sub(1, 300))
  end
  return true
end

require("sandlot._native.kubernetes_spawn").install(M, { open_exec = open_exec,
                                                       exit_code = exit_code, run = run })

return M
