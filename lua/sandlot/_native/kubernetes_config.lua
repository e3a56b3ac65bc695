-- sandlot._native.kubernetes_config: where providers/kubernetes.lua finds its API server and
-- credentials, kept apart to keep the provider file within its size. A kubeconfig
-- (config.kubeconfig, else $KUBECONFIG's first existing file, else ~/.kube/config; its
-- current-context or config.context), or without one the in-cluster service account
-- (KUBERNETES_SERVICE_HOST/PORT and config.service_account_dir). Read on every call: a token
-- file may be rotated. Reference: ../shared/provider-apis/kubernetes.md, "Authentication".
local errors = require("sandlot.errors")
local base64 = require("sandlot.wire.base64")
local check = require("sandlot._check")
local fs = require("sandlot.fs")
local id = require("sandlot.id")

local M = {}

local SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

local function fail(code, fmt, ...)
  return nil, errors.new(code, fmt:format(...))
end

local function read_text(path, what)
  local f, oerr = io.open(path, "rb")
  if not f then return fail("auth_failed", "kubernetes: cannot read %s %s: %s", what, path,
                            tostring(oerr):gsub("^[^:]*: ", "")) end
  local s = f:read("a")
  f:close()
  return s
end

local function named(list, name, what, file)
  for _, e in ipairs(type(list) == "table" and list or {}) do
    if type(e) == "table" and e.name == name and type(e[what]) == "table" then return e[what] end
  end
  return fail("invalid_input", "kubernetes: %s has no %s named %q", file, what, tostring(name))
end

local ca_files = {}                 -- CA data -> the temporary file holding it (this process)
-- the files go when the Lua state closes (the host's normal exit): the module table holds
-- their reaper until then
M._ca_reaper = setmetatable({}, { __gc = function()
  for _, path in pairs(ca_files) do os.remove(path) end
end })

local function ca_file_of(data)
  if ca_files[data] then return ca_files[data] end
  local path = (os.getenv("TMPDIR") or "/tmp") .. "/sandlot-kube-ca-" .. id.hex(8) .. ".crt"
  local sink, err = fs.sink(path)
  if not sink then return nil, err end
  local ok, werr = sink(data)
  local fok, ferr = sink:finish()
  if not (ok and fok) then return nil, werr or ferr end
  ca_files[data] = path
  return path
end

local function str(v) return type(v) == "string" and v ~= "" and v or nil end

local CERT_PEM = "%-%-%-%-%-BEGIN CERTIFICATE%-%-%-%-%-"
local KEY_PEM = "%-%-%-%-%-BEGIN [A-Z ]*PRIVATE KEY%-%-%-%-%-"

-- The PEM text of user[field] (a file, relative to the kubeconfig) or user[field .. "-data"]
-- (base64 of it): text | nil | nil, err. Messages name the field and the file, never the
-- content (a key's).
local function pem_of(user, field, rel, uname, pattern)
  local text, from
  if str(user[field .. "-data"]) then
    from = field .. "-data"
    text = base64.decode((user[from]:gsub("%s+", "")))
    if not text then
      return nil, errors.new("invalid_input", ("kubernetes: user %q's %s is not base64")
                             :format(tostring(uname), from))
    end
  elseif str(user[field]) then
    local path = rel(user[field])
    from = field .. " " .. path
    local t, rerr = read_text(path, "the " .. field)
    if not t then return nil, rerr end
    text = t
  else
    return nil
  end
  if not text:find(pattern) then
    return nil, errors.new("invalid_input", ("kubernetes: user %q's %s is not PEM (%s)")
                           :format(tostring(uname), from, field == "client-key"
                                   and "no BEGIN ... PRIVATE KEY block"
                                   or "no BEGIN CERTIFICATE block"))
  end
  if text:find("-----BEGIN ENCRYPTED PRIVATE KEY-----", 1, true)
     or text:find("Proc-Type: 4,ENCRYPTED", 1, true) then
    return nil, errors.new("not_supported", ("kubernetes: user %q's %s is encrypted; give " ..
                           "an unencrypted key"):format(tostring(uname), from))
  end
  return text
end

-- A kubeconfig's endpoint and credentials: {server, token | token_file, client_cert +
-- client_key (PEM text), ca_file, insecure, namespace} or nil, err.
local function from_kubeconfig(file, want_context)
  local text, rerr = read_text(file, "the kubeconfig")
  if not text then return nil, rerr end
  local okl, yaml = pcall(require, "lyaml")      -- Debian lua-yaml
  if not okl then
    return fail("not_supported", "kubernetes: reading a kubeconfig needs lua-yaml (Debian " ..
                "package lua-yaml)")
  end
  local okp, doc = pcall(yaml.load, text)
  if not okp or type(doc) ~= "table" then
    return fail("invalid_input", "kubernetes: %s is not a YAML kubeconfig", file)
  end
  local cname = want_context or str(doc["current-context"])
  if not cname then
    return fail("invalid_input", "kubernetes: %s has no current-context (set the provider's " ..
                "context)", file)
  end
  local cx, cerr = named(doc.contexts, cname, "context", file)
  if not cx then return nil, cerr end
  local cluster, klerr = named(doc.clusters, cx.cluster, "cluster", file)
  if not cluster then return nil, klerr end
  local user = {}
  if cx.user ~= nil then
    local u, uerr = named(doc.users, cx.user, "user", file)
    if not u then return nil, uerr end
    user = u
  end
  local dir = file:match("^(.*)/[^/]*$") or "."
  local function rel(p) return p:sub(1, 1) == "/" and p or (dir .. "/" .. p) end
  local out = { server = str(cluster.server), namespace = str(cx.namespace),
                insecure = cluster["insecure-skip-tls-verify"] == true }
  if not out.server then return fail("invalid_input", "kubernetes: cluster %q has no server",
                                     tostring(cx.cluster)) end
  if str(cluster["certificate-authority-data"]) then
    local pem = base64.decode(cluster["certificate-authority-data"])
    if not pem then return fail("invalid_input", "kubernetes: certificate-authority-data is " ..
                                "not base64") end
    local p, perr = ca_file_of(pem)
    if not p then return nil, perr end
    out.ca_file = p
  elseif str(cluster["certificate-authority"]) then
    out.ca_file = rel(cluster["certificate-authority"])
  end
  local cert, cerr2 = pem_of(user, "client-certificate", rel, cx.user, CERT_PEM)
  if cerr2 then return nil, cerr2 end
  local key, kerr = pem_of(user, "client-key", rel, cx.user, KEY_PEM)
  if kerr then return nil, kerr end
  if (cert == nil) ~= (key == nil) then
    return fail("invalid_input", "kubernetes: user %q has a client-%s but no client-%s (give " ..
                "both, as a file or as -data)", tostring(cx.user),
                cert and "certificate" or "key", cert and "key" or "certificate")
  end
  out.client_cert, out.client_key = cert, key
  if user.exec ~= nil or user["auth-provider"] ~= nil then
    if not (str(user.token) or str(user.tokenFile) or cert) then
      return fail("not_supported", "kubernetes: user %q gets its credentials from an exec or " ..
                  "auth-provider plugin, which sandlot does not run; use a bearer token",
                  tostring(cx.user))
    end
  end
  out.token = str(user.token)
  if not out.token and str(user.tokenFile) then out.token_file = rel(user.tokenFile) end
  return out
end

local function from_service_account(ctx)
  local host, port = os.getenv("KUBERNETES_SERVICE_HOST"), os.getenv("KUBERNETES_SERVICE_PORT")
  if not str(host) then return nil end
  local root = ctx.config.service_account_dir or SA_DIR
  local out = { server = ("https://%s:%s"):format(host:find(":", 1, true) and "[" .. host .. "]"
                                                  or host, str(port) or "443"),
                token_file = root .. "/token", ca_file = root .. "/ca.crt" }
  local ns = io.open(root .. "/namespace", "rb")
  if ns then
    out.namespace = str((ns:read("a") or ""):match("^%s*(.-)%s*$"))
    ns:close()
  end
  return out
end

local function exists(path)
  local st = fs.stat(path)
  return st ~= nil and st.type == "file"
end

---The endpoint and credentials for ctx: {server, token, client_cert, client_key, ca_file,
---insecure, namespace}, or nil, err.
function M.creds(ctx)
  local file = ctx.config.kubeconfig
  if not file then
    local env = str(os.getenv("KUBECONFIG"))
    if env then
      for p in env:gmatch("[^:]+") do
        if exists(p) then file = p; break end
      end
    end
  end
  if not file and os.getenv("HOME") and exists(os.getenv("HOME") .. "/.kube/config") then
    file = os.getenv("HOME") .. "/.kube/config"
  end
  local c, err
  if file then
    c, err = from_kubeconfig(file, ctx.config.context)
  else
    c = from_service_account(ctx)
    if not c then
      return fail("auth_failed", "kubernetes: no kubeconfig (config.kubeconfig, KUBECONFIG, " ..
                  "~/.kube/config) and not in a cluster (KUBERNETES_SERVICE_HOST)")
    end
  end
  if not c then return nil, err end
  if c.token_file then
    local t, terr = read_text(c.token_file, "the token file")
    if not t then return nil, terr end
    c.token = str(t:match("^%s*(.-)%s*$"))
  end
  if c.token then
    local t, terr = check.token(c.token, "the Kubernetes bearer token")
    if not t then return nil, terr end
    c.token = t
  end
  c.server = c.server:gsub("/+$", "")
  if not c.server:match("^https?://[^/]+") then
    return fail("invalid_input", "kubernetes: the server is not an http(s) URL")
  end
  c.namespace = ctx.config.namespace or c.namespace or "default"
  return c
end

return M
