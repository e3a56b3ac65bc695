-- spec/support/tls.lua: throwaway certificates made with the openssl CLI for the TLS specs: a
-- CA, a server certificate it signs for localhost and 127.0.0.1, one it signs for another
-- name only, a client certificate it signs (CN sandlot-client, clientAuth), and a second CA
-- that signs nothing the servers present but one client certificate (CN intruder). EC P-256
-- keys (fast).
local sandlot = require("sandlot")
local h = require("spec.helper")

local M = {}

local function run(argv)
  local r = assert(sandlot.proc.run(argv, { timeout = 60 }))
  assert(r.exit_code == 0, ("%s failed: %s"):format(table.concat(argv, " "), r.stderr))
end

local function ca(dir, name)
  run({ "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-days", "2", "-subj", "/CN=" .. name, "-keyout", dir .. "/" .. name .. ".key",
        "-out", dir .. "/" .. name .. ".crt", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign" })
end

local function leaf(dir, name, san, signer, usage)
  local base = dir .. "/" .. name
  run({ "openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-subj", "/CN=" .. name, "-keyout", base .. ".key", "-out", base .. ".csr" })
  local f = assert(io.open(base .. ".ext", "w"))
  f:write((san and "subjectAltName=" .. san .. "\n" or "") .. "extendedKeyUsage="
          .. (usage or "serverAuth") .. "\nbasicConstraints=CA:FALSE\n")
  f:close()
  run({ "openssl", "x509", "-req", "-in", base .. ".csr", "-CA", dir .. "/" .. signer .. ".crt",
        "-CAkey", dir .. "/" .. signer .. ".key", "-CAcreateserial", "-days", "2",
        "-extfile", base .. ".ext", "-out", base .. ".crt" })
end

local made

---Returns {dir, ca, other_ca, cert, key, wrong_cert, wrong_key, client_cert, client_key,
---intruder_cert, intruder_key} (paths), made once per run; nil, why when the openssl CLI is
---missing.
function M.certs()
  if made then return made end
  local r = sandlot.proc.run({ "sh", "-c", "command -v openssl" }, { timeout = 10 })
  if not r or r.exit_code ~= 0 then return nil, "needs the openssl CLI" end
  local dir = h.tmpdir()
  ca(dir, "ca")
  ca(dir, "other-ca")
  leaf(dir, "server", "DNS:localhost,IP:127.0.0.1", "ca")
  leaf(dir, "wrong", "DNS:not-this-host.example", "ca")
  leaf(dir, "sandlot-client", nil, "ca", "clientAuth")
  leaf(dir, "intruder", nil, "other-ca", "clientAuth")
  made = { dir = dir, ca = dir .. "/ca.crt", other_ca = dir .. "/other-ca.crt",
           cert = dir .. "/server.crt", key = dir .. "/server.key",
           wrong_cert = dir .. "/wrong.crt", wrong_key = dir .. "/wrong.key",
           client_cert = dir .. "/sandlot-client.crt", client_key = dir .. "/sandlot-client.key",
           intruder_cert = dir .. "/intruder.crt", intruder_key = dir .. "/intruder.key" }
  return made
end

---Removes the certificates.
function M.cleanup()
  if made then h.rmtree(made.dir) end
  made = nil
end

return M
