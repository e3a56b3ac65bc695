-- spec/kubernetes_spec.lua: what the kubernetes provider does beyond the conformance suite, on
-- the strict fake (spec/fakes/kubernetes.lua): kubeconfig and in-cluster credentials, the pod
-- body, list by labels, exec over v5 and v4 (stdin on both), the Status bodies onto sandlot's
-- codes, the 1.35 create rule for WebSocket exec, a pod that never runs, malformed JSON, a
-- dropped exec, 429 with Retry-After, TLS (a CA from -data, a wrong CA), client certificates
-- (files and -data; another CA's refused, a mismatched or partial pair a clear error), and the
-- token and the client key kept out of errors and handles (planted ones).
local sandlot = require("sandlot")
local sandbox = require("sandlot.sandbox")
local json = require("sandlot.wire.json")
local sys = require("sandlot.core.sys")
local h = require("spec.helper")

local ns_why = require("spec.support.namespaces").skip()
if ns_why then
  describe("kubernetes provider", function() pending(ns_why) end)
  return
end

describe("kubernetes provider", function()
  local k, fake, tmp, kc, sa

  local function provider(extra)
    local p = { "kubernetes", kubeconfig = kc, image = "busybox", create_timeout = 20 }
    for key, v in pairs(extra or {}) do p[key] = v end
    return p
  end

  lazy_setup(function()
    if not sandlot.http.serve then return end
    k = require("spec.fakes.kubernetes").start{ namespaces = { "default", "team" } }
    fake = k.fake
    tmp = h.tmpdir("kube-spec")
    kc = k.kubeconfig(tmp .. "/config")
    local tf = assert(io.open(tmp .. "/tok", "w"))
    tf:write(k.token .. "\n")
    tf:close()
    sa = tmp .. "/sa"
    assert(sandlot.proc.run({ "mkdir", "-p", sa }))
    for name, text in pairs({ token = k.token, namespace = "team\n", ["ca.crt"] = "" }) do
      local f = assert(io.open(sa .. "/" .. name, "w"))
      f:write(text)
      f:close()
    end
    sandlot.config.set({ providers = {
      kt = provider({ kubeconfig = k.kubeconfig(tmp .. "/tokfile", { token = false,
                                                 extra_user = { tokenFile = "tok" } }) }),
      kc = provider({ kubeconfig = k.kubeconfig(tmp .. "/cert", { token = false, extra_user = {
        ["client-certificate-data"] = "AAAA", ["client-key-data"] = "AAAA" } }) }),
      ke = { "kubernetes", image = "busybox" },
      kin = { "kubernetes", service_account_dir = sa },
      kube = provider(),
      ["kube-team"] = provider({ kubeconfig = k.kubeconfig(tmp .. "/team",
          { namespace = "team" }) }),
      ["kube-bad"] = provider({ kubeconfig = k.kubeconfig(tmp .. "/bad",
          { token = "wrong-token-1" }) }),
      ["kube-other"] = provider({ context = "other", request_timeout = 2 }),
      ["kube-quick"] = provider({ create_timeout = 1 }),
      ["kube-short"] = provider({ request_timeout = 1 }),
      ["kube-missing"] = provider({ kubeconfig = tmp .. "/nothing-here" }),
    } })
  end)

  lazy_teardown(function()
    sandlot.config.reset()
    if k then k.stop() end
    if tmp then h.rmtree(tmp) end
  end)

  before_each(function()
    if not k then return pending("needs sandlot.http.serve") end
    fake.faults, fake.rejected, fake.denied = {}, {}, {}
    fake.drop_exec_after, fake.stall_exec_after, fake.stalled = nil, nil, nil
    fake.version, fake.subprotocols = "1.35", { "v5.channel.k8s.io", "v4.channel.k8s.io" }
    fake.rbac = { ["pods/exec"] = { get = true, create = true } }
  end)

  local function last(route)
    local found
    for _, r in ipairs(fake.requests) do if r.route == route then found = r end end
    return found
  end

  it("creates a labelled pod, waits for Running, runs commands and deletes it", h.task(function()
    fake.start_delay = 1
    local sb = assert(sandlot.create("kube", { env = { A = "1", B = false },
        labels = { team = "x" },
                                               cpus = 2, memory_mb = 512 }))
    fake.start_delay = 0
    local p = fake.pods["default/" .. sb.id]
    assert.is_table(p)
    local md, c = p.obj.metadata, p.obj.spec.containers[1]
    assert.equal("sandlot", md.labels["app.kubernetes.io/managed-by"])
    assert.equal("x", md.labels.team)
    assert.equal("x", json.decode(md.annotations["sandlot.dev/labels"]).team)
    assert.same({ "sleep", "infinity" }, c.command)
    assert.same({ { name = "A", value = "1" } }, c.env)
    assert.same({ cpu = "2", memory = "512Mi" }, c.resources.limits)
    assert.equal("Never", p.obj.spec.restartPolicy)
    assert.same({ id = sb.id, namespace = "default", workdir = "/work" }, sb.handle)
    local r = assert(sb:exec({ "sh", "-c", 'echo "$A:$PWD"; echo err >&2; exit 3' }))
    assert.same({ 3, "1:/work\n", "err\n" }, { r.exit_code, r.stdout, r.stderr })
    r = assert(sb:exec({ "cat" }, { stdin = "through stdin" }))
    assert.equal("through stdin", r.stdout)
    assert.equal("running", sb:status())
    assert(sb:destroy())
    assert.equal("0", last("DELETE /api/v1/namespaces/default/pods/" .. sb.id).query
                      :match("gracePeriodSeconds=(%d+)"))
    assert.equal("terminated", sb:status())
    assert.same({}, k.rejected())
  end))

  it("falls back to v4 (stdin read as an exact byte count) and refuses neither", h.task(function()
    local sb = assert(sandlot.create("kube", {}))
    fake.subprotocols = { "v4.channel.k8s.io" }
    local data = ("0123456789"):rep(30000)
    local r = assert(sb:exec({ "wc", "-c" }, { stdin = data }))
    assert.equal(tostring(#data), r.stdout:match("%d+"))
    assert(sb:write_file("/tmp/v4.bin", data))
    assert.equal(data, assert(sb:read_file("/tmp/v4.bin")))
    -- each command ran once: the protocol was asked with `true`, never by running the write
    local runs = {}
    for _, rq in ipairs(fake.requests) do
      if rq.route:find("/exec", 1, true) then
        local q = rq.query or ""
        if q:find("v4.bin", 1, true) then runs[#runs + 1] = q end
      end
    end
    assert.equal(2, #runs, table.concat(runs, "\n"))      -- the write and the read
    for _ = 1, 3 do                                       -- asked once, then remembered
      assert(sb:exec({ "cat" }, { stdin = "x" }))
    end
    local probes = 0
    for _, rq in ipairs(fake.requests) do
      if rq.route:find("/exec", 1, true) and (rq.query or ""):match("command=true&") then
        probes = probes + 1
      end
    end
    assert.is_true(probes >= 1 and probes <= 2, "probes: " .. probes)
    -- spawn needs v5 (v4 cannot end stdin): refused before anything runs
    local before = #fake.requests
    local p, perr = sb:spawn({ "sh", "-c", "echo ran > /tmp/spawned" })
    assert.is_nil(p)
    assert.equal("not_supported", perr.code)
    assert.matches("v4", perr.message)
    for i = before + 1, #fake.requests do
      assert.is_nil((fake.requests[i].query or ""):find("spawned", 1, true))
    end
    -- wsstream takes the client's first offer it supports, not the server's first
    fake.subprotocols = { "v5.channel.k8s.io", "v4.channel.k8s.io" }
    local url = k.url:gsub("^http", "ws") .. "/api/v1/namespaces/default/pods/" .. sb.id ..
                "/exec?container=main&command=true&stdout=true"
    local conn = assert(sandlot.ws.connect(url, {
      headers = { Authorization = "Bearer " .. k.token },
      subprotocols = { "v4.channel.k8s.io", "v5.channel.k8s.io" } }))
    assert.equal("v4.channel.k8s.io", conn.subprotocol)
    conn:close(1000)
    -- a client that goes away ends the command's stdin (wsstream closes its channels): a v4
    -- client's only way to send EOF
    local script = "cat%3E%2Ftmp%2Fin%3Becho%20eof%3E%2Ftmp%2Feof"     -- cat>/tmp/in;echo eof>...
    conn = assert(sandlot.ws.connect(url:gsub("command=true", "") .. "&command=sh&command=-c" ..
                                     "&command=" .. script .. "&stdin=true", {
      headers = { Authorization = "Bearer " .. k.token }, subprotocols = { "v4.channel.k8s.io" } }))
    assert(conn:send("\0half", { binary = true }))
    conn:close(1000)
    local seen
    for _ = 1, 100 do
      seen = assert(sb:exec({ "cat", "/tmp/eof" })).stdout
      if seen ~= "" then break end
      sandlot.sleep(0.05)
    end
    assert.equal("eof\n", seen)
    assert.equal("half", assert(sb:read_file("/tmp/in")))
    -- a server that no longer speaks the remembered v4: refused before anything ran, asked
    -- again, and the command runs once on v5
    fake.subprotocols = { "v5.channel.k8s.io" }
    local marks = #fake.requests
    assert.equal("once\n", assert(sb:exec({ "sh", "-c", "cat; echo once >> /tmp/once; " ..
                                            "cat /tmp/once" }, { stdin = "" })).stdout)
    local tries = 0
    for i = marks + 1, #fake.requests do
      if (fake.requests[i].query or ""):find("once", 1, true) then tries = tries + 1 end
    end
    assert.equal(2, tries)                              -- the refused upgrade and the run
    -- a server speaking neither: wsstream's handshake fails, a bare 403 (kubectl's cue for SPDY)
    fake.subprotocols = { "v3.channel.k8s.io" }
    local _, err = sb:exec({ "true" })
    assert.equal("not_supported", err.code)
    assert.truthy(err.message:find("SPDY", 1, true))
    assert.same({}, k.rejected())
    assert(sb:destroy())
  end))

  it("spawns on one exec stream; a signal goes through the wrapper's fifo, which goes with " ..
     "the process", h.task(function()
    local sb = assert(sandlot.create("kube", {}))
    local p <close> = assert(sb:spawn({ "sh", "-c",
      "trap 'echo got-int; exit 7' INT; echo up; while :; do sleep 0.1; done" }))
    local out = ""
    while not out:find("up\n", 1, true) do out = out .. assert(select(2, p:read(10))) end
    local fifos = assert(sb:exec({ "sh", "-c", "ls -a /tmp | grep -c '^.sandlot-spawn-'" }))
    assert.equal("1\n", fifos.stdout)                       -- the check sees a live one
    assert.is_true(p:kill("INT"))                           -- the shell's own trap runs
    while not out:find("got-int\n", 1, true) do
      local _, data = p:read(10)
      if not data then break end
      out = out .. data
    end
    assert.matches("got%-int", out)
    local r = assert(p:wait(10))
    assert.equal(7, r.exit_code)
    assert.is_nil(r.signal)
    local _, kerr = p:kill()
    assert.equal("not_found", kerr.code)
    local gone = h.eventually(function()
      return assert(sb:exec({ "sh", "-c", "ls -a /tmp | grep -c '^.sandlot-spawn-'" })).stdout
             == "0\n"
    end, 10)
    assert.is_true(gone, "the fifo outlived its process")
    assert(sb:destroy())
  end))

  it("lists sandlot's pods by label, in the configured namespace", h.task(function()
    local tag = "t" .. math.random(1e6)
    local a = assert(sandlot.create("kube", { labels = { batch = tag } }))
    local b = assert(sandlot.create("kube-team", { labels = { batch = tag } }))
    local r = assert(sandbox._context("kube"))
    local list = assert(r.p.ops.list(r.ctx, { labels = { batch = tag } }))
    assert.equal(1, #list)
    assert.equal(a.id, list[1].id)
    assert.equal(a.durable_id, list[1].labels[sandlot.ledger.LABEL])
    assert.is_number(list[1].created_at)
    assert.equal("team", b.handle.namespace)
    assert.truthy(last("GET /api/v1/namespaces/default/pods").query
                  :find("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dsandlot", 1, true))
    assert(a:destroy())
    assert(b:destroy())
  end))

  it("maps Status bodies onto sandlot's codes", h.task(function()
    -- a wrong token is the server's verdict (fake.denied); no credential at all is a refusal
    local _, err = sandlot.create("kube-bad", {})
    assert.equal("auth_failed", err.code)
    assert.same({}, k.rejected())
    assert.equal(401, fake.denied[#fake.denied].status)
    local unauth = assert(sandlot.http.request({
      url = k.url .. "/api/v1/namespaces/default/pods" }))
    assert.equal(401, unauth.status)
    assert.equal("Unauthorized", json.decode(unauth.body).reason)
    assert.equal(1, #k.rejected())
    fake.rejected = {}
    local sb = assert(sandlot.create("kube", {}))
    -- 404: a pod that is gone
    local m = sandlot.to_map(sb)
    m.handle.id, m.id = "sandlot-gone", "sandlot-gone"
    local gone = assert(sandlot.from_map(m))
    _, err = gone:exec({ "true" })
    assert.equal("not_found", err.code)
    -- 400: exec into a completed pod
    fake:complete(sb.id, "Succeeded")
    _, err = sb:exec({ "true" })
    assert.equal("unavailable", err.code)
    assert.equal(400, err.status)
    assert.equal("terminated", sb:status())
    assert(sb:destroy())
    -- 422: what the API calls invalid
    local r = assert(sandbox._context("kube"))
    local res = assert(sandlot.http.request({ url = k.url .. "/api/v1/namespaces/default/pods",
      method = "POST", json = { apiVersion = "v1", kind = "Pod", metadata = { name = "x" },
                                spec = { containers = {} } },
      headers = { Authorization = "Bearer " .. k.token } }))
    assert.equal(422, res.status)
    assert.equal("Invalid", json.decode(res.body).reason)
    assert.is_table(r)
    -- 409: a duplicate name
    res = assert(sandlot.http.request({ url = k.url .. "/api/v1/namespaces/default/pods",
      method = "POST", json = { apiVersion = "v1", kind = "Pod", metadata = { name = "dup" },
                                spec = { containers = { { name = "main", image = "x" } } } },
      headers = { Authorization = "Bearer " .. k.token } }))
    assert.equal(201, res.status)
    res = assert(sandlot.http.request({ url = k.url .. "/api/v1/namespaces/default/pods",
      method = "POST", json = { apiVersion = "v1", kind = "Pod", metadata = { name = "dup" },
                                spec = { containers = { { name = "main", image = "x" } } } },
      headers = { Authorization = "Bearer " .. k.token } }))
    assert.equal(409, res.status)
    assert.equal("AlreadyExists", json.decode(res.body).reason)
    fake:kill("default/dup")
    -- a namespace that does not exist
    m = sandlot.to_map(sb)
    m.handle.namespace = "ghost"
    local ghost = assert(sandlot.from_map(m))
    assert.equal("terminated", ghost:status())
  end))

  it("needs create on pods/exec for a WebSocket exec from 1.35 on", h.task(function()
    local sb = assert(sandlot.create("kube", {}))
    fake.rbac = { ["pods/exec"] = { get = true } }
    local _, err = sb:exec({ "true" })
    assert.equal("permission_denied", err.code)
    assert.equal(403, err.status)
    assert.matches("create", err.message)
    fake.version = "1.34"                              -- get alone was enough before
    assert.equal(0, assert(sb:exec({ "true" })).exit_code)
    fake.rbac = {}
    _, err = sb:exec({ "true" })
    assert.equal("permission_denied", err.code)
    fake.rbac = { ["pods/exec"] = { get = true, create = true } }
    assert(sb:destroy())
  end))

  it("stops waiting for a pod that will not run, naming the reason", h.task(function()
    local sb, err = sandlot.create("kube", { image = "example/pull-backoff:1" })
    assert.is_nil(sb)
    assert.equal("unavailable", err.code)
    assert.matches("ImagePullBackOff", err.message)
    fake.start_delay = 30
    sb, err = sandlot.create("kube-quick", {})
    fake.start_delay = 0
    assert.is_nil(sb)
    assert.equal("timeout", err.code)
    assert.matches("ContainerCreating", err.message)
    sandlot.sleep(0.2)                                 -- the cleanup deletes them
    for key in pairs(fake.pods) do assert.is_nil(key:find("pull", 1, true)) end
  end))

  it("answers malformed JSON, a dropped exec and 429 with clear errors", h.task(function()
    local sb = assert(sandlot.create("kube", {}))
    fake:inject({ route = "GET /api/v1/namespaces/default/pods/" .. sb.id, body = "{not json",
                  times = 1 })
    local _, err = sb:status()
    assert.equal("bad_response", err.code)
    fake.drop_exec_after = 2
    _, err = sb:exec({ "sh", "-c", "for i in 1 2 3 4 5; do echo $i; sleep 0.05; done" })
    assert.equal("io_error", err.code)
    assert.matches("closed before", err.message)
    fake.drop_exec_after = nil
    fake:inject({ route = "GET /api/v1/namespaces/default/pods/" .. sb.id, status = 429,
                  retry_after = 1, times = 1 })
    assert.equal("running", assert(sb:status()))     -- retried after Retry-After
    fake:inject({ route = "GET /api/v1/namespaces/default/pods/" .. sb.id, status = 429,
                  retry_after = 0, times = 10 })
    _, err = sb:status()
    assert.equal("rate_limited", err.code)
    fake.faults = {}
    assert(sb:destroy())
  end))

  it("a file transfer the pod stops feeding fails with timeout after request_timeout, " ..
     "leaving no host file", h.task(function()
    local sb = assert(sandlot.create("kube-short", {}))
    local data = ("0123456789abcdef"):rep(65536)         -- 1 MiB: several output frames
    assert(sb:write_file("big.dat", data))
    fake.stall_exec_after = 1
    local t0 = os.time()
    local back, err = sb:read_file("big.dat")
    assert.is_nil(back)
    assert.equal("timeout", err.code)
    assert.matches("no data from pod", err.message)
    local dir = h.tmpdir()
    back, err = sb:read_file("big.dat", { to = dir .. "/out.dat" })
    assert.is_nil(back)
    assert.equal("timeout", err.code)
    assert.equal("", assert(sandlot.proc.run({ "ls", "-A", dir })).stdout)
    assert.is_true(os.time() - t0 <= 10)
    assert.equal(2, fake.stalled)                       -- both reads met the stall
    fake.stall_exec_after = nil
    assert.equal(data, assert(sb:read_file("big.dat")))
    assert(sb:destroy())
    h.rmtree(dir)
  end))

  it("reads credentials from the kubeconfig's contexts, files and the service account",
     h.task(function()
    -- another context of the same file: its server does not answer
    local _, err = sandlot.create("kube-other", {})
    assert.equal("unavailable", err.code)
    _, err = sandlot.create("kube-missing", {})
    assert.equal("auth_failed", err.code)
    -- tokenFile, relative to the kubeconfig
    local sb = assert(sandlot.create("kt", {}))
    assert(sb:destroy())
    -- a client certificate that is not PEM: said so, before anything is sent
    _, err = sandlot.create("kc", {})
    assert.equal("invalid_input", err.code)
    assert.matches("client%-certificate%-data is not PEM", err.message)
    -- KUBECONFIG, first existing file of the list
    sys.setenv("KUBECONFIG", tmp .. "/none:" .. kc)
    local ok, serr = pcall(function()
      sb = assert(sandlot.create("ke", {}))
      assert(sb:destroy())
    end)
    -- the in-cluster service account (a root of our own)
    local host, port = k.url:match("^http://([^:/]+):(%d+)")
    sys.setenv("KUBECONFIG", tmp .. "/none")
    local home = os.getenv("HOME")
    sys.setenv("HOME", tmp)
    sys.setenv("KUBERNETES_SERVICE_HOST", host)
    sys.setenv("KUBERNETES_SERVICE_PORT", port)
    local r = assert(sandbox._context("kin"))
    local ok2, serr2 = pcall(function()
      -- https with the account's (empty) ca.crt: refused in TLS, naming that file
      local _, lerr = r.p.ops.list(r.ctx, {})
      assert.is_table(lerr)
      assert.truthy(tostring(lerr):find(sa .. "/ca.crt", 1, true), tostring(lerr))
    end)
    sys.setenv("KUBECONFIG", nil)
    sys.setenv("HOME", home)
    sys.setenv("KUBERNETES_SERVICE_HOST", nil)
    sys.setenv("KUBERNETES_SERVICE_PORT", nil)
    assert(ok, serr)
    assert(ok2, serr2)
  end))

  it("keeps the token out of errors, logs and serialized handles", h.task(function()
    local sb = assert(sandlot.create("kube", {}))
    -- the plant: the server echoes the token in its messages
    fake:inject({ route = "GET /api/v1/namespaces/default/pods/" .. sb.id, status = 500,
                  reason = "InternalError", message = "bad token " .. k.token, times = 10 })
    local _, err = sb:status()
    local text = tostring(err) .. json.encode(sandlot.to_map(sb))
    assert.truthy(("bad token " .. k.token):find(k.token, 1, true))   -- would be seen
    assert.is_nil(text:find(k.token, 1, true), "the token leaked: " .. text)
    fake.faults = {}
    assert(sb:destroy())
  end))
end)

describe("kubernetes provider over TLS", function()
  local k, tmp, certs

  lazy_setup(function()
    if not sandlot.http.serve then return end
    certs = require("spec.support.tls").certs()
    if not certs then return end
    k = require("spec.fakes.kubernetes").start{ tls = { cert = certs.cert, key = certs.key,
                                                        client_ca = certs.ca } }
    tmp = h.tmpdir("kube-tls")
  end)

  lazy_teardown(function()
    sandlot.config.reset()
    if k then k.stop() end
    if tmp then h.rmtree(tmp) end
  end)

  it("verifies the server with the kubeconfig's CA (-data and file); a wrong CA is an error",
     h.task(function()
    if not k then return pending("needs sandlot.http.serve and the openssl CLI") end
    local f = assert(io.open(certs.ca))
    local pem = f:read("a")
    f:close()
    sandlot.config.set({ providers = {
      data = { "kubernetes", image = "busybox", kubeconfig = k.kubeconfig(tmp .. "/d",
                                                                          { ca_data = pem }) },
      file = { "kubernetes", image = "busybox", kubeconfig = k.kubeconfig(tmp .. "/f",
                                                                          { ca_file = certs.ca }) },
      wrong = { "kubernetes", image = "busybox", kubeconfig = k.kubeconfig(tmp .. "/w",
                                                               { ca_file = certs.other_ca }) },
    } })
    for _, name in ipairs({ "data", "file" }) do
      local sb = assert(sandlot.create(name, {}))
      assert.equal("tls\n", assert(sb:exec({ "echo", "tls" })).stdout)
      assert(sb:write_file("x.txt", "over wss"))
      assert.equal("over wss", assert(sb:read_file("x.txt")))
      assert(sb:destroy())
    end
    -- the CA given as -data goes to a temporary file for the process's life, not beyond it
    local script = ("local c = require('sandlot._native.kubernetes_config') " ..
      "local cr = assert(c.creds({ config = { kubeconfig = %q } })) " ..
      "assert(io.open(cr.ca_file)):close() print(cr.ca_file)"):format(tmp .. "/d")
    local rc, out, perr = h.host({ "-e", script }, { env = { TMPDIR = tmp } })
    assert.equal(0, rc, perr)
    local ca_tmp = out:match("^(%S+)\n$")
    assert.truthy(ca_tmp and ca_tmp:find(tmp, 1, true) == 1, out)
    assert.is_nil(io.open(ca_tmp), "the CA's temporary file outlived its process")
    local sb, err = sandlot.create("wrong", {})
    assert.is_nil(sb)
    assert.matches("certificate", tostring(err):lower())
    assert.same({}, k.rejected())
  end))

  local function slurp(path)
    local f = assert(io.open(path, "rb"))
    local text = f:read("a")
    f:close()
    return text
  end

  it("authenticates with a client certificate (files or -data) over REST and exec",
     h.task(function()
    if not k then return pending("needs sandlot.http.serve and the openssl CLI") end
    local fake = k.fake
    -- files relative to the kubeconfig's directory
    assert(sandlot.proc.run({ "cp", certs.client_cert, tmp .. "/me.crt" }))
    assert(sandlot.proc.run({ "cp", certs.client_key, tmp .. "/me.key" }))
    sandlot.config.set({ providers = {
      cfile = { "kubernetes", image = "busybox", kubeconfig = k.kubeconfig(tmp .. "/cf",
          { token = false, ca_file = certs.ca, client_cert = "me.crt", client_key = "me.key" }) },
      cdata = { "kubernetes", image = "busybox", kubeconfig = k.kubeconfig(tmp .. "/cd",
          { token = false, ca_file = certs.ca, client_cert_data = slurp(certs.client_cert),
            client_key_data = slurp(certs.client_key) }) },
    } })
    for _, name in ipairs({ "cfile", "cdata" }) do
      fake.requests = {}
      local sb = assert(sandlot.create(name, {}))
      assert.equal("cert\n", assert(sb:exec({ "echo", "cert" })).stdout)
      assert(sb:write_file("c.txt", "by certificate"))
      assert.equal("by certificate", assert(sb:read_file("c.txt")))
      assert(sb:destroy())
      local users = {}
      for _, r in ipairs(fake.requests) do users[r.user or "none"] = true end
      assert.same({ ["sandlot-client"] = true }, users)      -- REST and exec alike
      assert.truthy(fake.execs > 0)
    end
    assert.same({}, k.rejected())
  end))

  it("refuses another CA's certificate, a mismatched or partial pair, never quoting the key",
     h.task(function()
    if not k then return pending("needs sandlot.http.serve and the openssl CLI") end
    local key, ikey = slurp(certs.client_key), slurp(certs.intruder_key)
    local marker = key:match("\n([A-Za-z0-9+/=]+)\n")          -- a line of the key's body
    assert.truthy(marker and #marker >= 16)
    local function cfg(name, o)
      o.token, o.ca_file = false, certs.ca
      return { "kubernetes", image = "busybox", request_timeout = 5,
               kubeconfig = k.kubeconfig(tmp .. "/" .. name, o) }
    end
    sandlot.config.set({ providers = {
      good = cfg("good", { client_cert_data = slurp(certs.client_cert), client_key_data = key }),
      intruder = cfg("intr", { client_cert_data = slurp(certs.intruder_cert),
                               client_key_data = ikey }),
      mismatch = cfg("mis", { client_cert_data = slurp(certs.client_cert),
                              client_key_data = ikey }),
      mismatch2 = cfg("mis2", { client_cert_data = slurp(certs.intruder_cert),
                                client_key_data = key }),
      halfcert = cfg("half", { client_cert = certs.client_cert }),
      notpem = cfg("np", { client_cert_data = slurp(certs.client_cert),
                           client_key_data = key:gsub("PRIVATE KEY", "PUBLIC THING") }),
      encrypted = cfg("enc", { client_cert_data = slurp(certs.client_cert),
          client_key_data = key:gsub("PRIVATE KEY", "ENCRYPTED PRIVATE KEY") }),
    } })
    local texts = {}
    local clock = require("sandlot.core.timer").now         -- ns, monotonic
    local t0 = clock()
    local _, err = sandlot.create("intruder", {})
    assert.equal("auth_failed", err.code)
    assert.is_true((clock() - t0) / 1e9 < 10)                  -- no hang
    texts[#texts + 1] = tostring(err)
    for _, name in ipairs({ "mismatch", "mismatch2" }) do
      _, err = sandlot.create(name, {})
      assert.equal("invalid_input", err.code, tostring(err))
      assert.matches("does not match", err.message)
      texts[#texts + 1] = tostring(err)
    end
    _, err = sandlot.create("halfcert", {})
    assert.equal("invalid_input", err.code)
    assert.matches("no client%-key", err.message)
    texts[#texts + 1] = tostring(err)
    _, err = sandlot.create("notpem", {})
    assert.equal("invalid_input", err.code)
    assert.matches("client%-key%-data is not PEM", err.message)
    texts[#texts + 1] = tostring(err)
    _, err = sandlot.create("encrypted", {})
    assert.equal("not_supported", err.code)
    assert.matches("encrypted", err.message)
    texts[#texts + 1] = tostring(err)
    -- a server that echoes the key (the plant): scrubbed from the message
    local sb = assert(sandlot.create("good", {}))
    k.fake:inject({ route = "GET /api/v1/namespaces/default/pods/" .. sb.id, status = 500,
                    reason = "InternalError", message = "echo " .. marker, times = 10 })
    local _, serr = sb:status()
    texts[#texts + 1] = tostring(serr)
    texts[#texts + 1] = tostring(sb) .. json.encode(sandlot.to_map(sb))
    k.fake.faults = {}
    assert(sb:destroy())
    assert.truthy(("echo " .. marker):find(marker, 1, true))   -- the check would see it
    for _, t in ipairs(texts) do
      assert.is_nil(t:find(marker, 1, true), "the key leaked: " .. t)
      for line in ikey:gmatch("[^\n]+") do
        if not line:find("^%-") then assert.is_nil(t:find(line, 1, true), "leaked: " .. t) end
      end
    end
    k.fake.rejected = {}
  end))
end)
