-- spec/lib/http_provider_spec.lua: the walkthrough provider of providers/README.md
-- (spec/fakes/boxes_provider.lua) against its fake service (spec/fakes/boxes.lua under
-- busybox httpd): the kit end to end, through sandlot's public API.
local sandlot = require("sandlot")
local http = require("sandlot.http")
local server = require("spec.fakes.boxes_server")

describe("an HTTP provider on the kit", function()
  local srv, why

  lazy_setup(function()
    srv, why = server.start()
    if srv then
      sandlot.config.set({ providers = {
        bx = { "spec/fakes/boxes_provider.lua", url = srv.url, token = srv.token },
        bx_bad = { "spec/fakes/boxes_provider.lua", url = srv.url, token = "bx_wrong_token_42" },
      } })
    end
  end)

  lazy_teardown(function()
    sandlot.config.reset()
    if srv then srv.stop() end
  end)

  local function need()
    if not srv then error("the boxes fake did not start: " .. tostring(why)) end
  end

  it("creates (polling until running), runs commands and destroys", function()
    need()
    local sb <close> = assert(sandlot.create("bx", { env = { A = "1", B = "2" } }))
    assert.equal("running", sb:status())
    local r = assert(sb:exec({ "sh", "-c", 'echo "$A ${B-unset}"; echo err >&2; exit 3' },
                             { env = { B = false } }))
    assert.same({ 3, "1 unset\n", "err\n" }, { r.exit_code, r.stdout, r.stderr })
    r = assert(sb:exec({ "cat" }, { stdin = "in\0put" }))
    assert.equal("in\0put", r.stdout)
    assert.is_true(sb:write_file("d/f.txt", "data"))       -- the exec fallbacks work through it
    assert.equal("data", assert(sb:read_file("d/f.txt")))
    assert.equal("data", assert(sb:exec({ "cat", "f.txt" }, { cwd = "d" })).stdout)
    assert.is_true(sb:destroy())
    assert.equal("terminated", sb:status())
    local _, err = sb:exec({ "true" })
    assert.equal("not_found", err.code)
    assert.equal("exec", err.op)
  end)

  it("maps the service's errors, and keeps an echoed token out of them", function()
    need()
    -- the plant: the fake echoes the credential it was given
    local res = assert(http.request{ url = srv.url .. "/v1/boxes", method = "POST", json = {},
                                     headers = { Authorization = "Bearer bx_wrong_token_42" } })
    assert.equal(401, res.status)
    assert.matches("bx_wrong_token_42", res.body, 1, true)
    local sb, err = sandlot.create("bx_bad", {})
    assert.is_nil(sb)
    assert.equal("auth_failed", err.code)
    assert.equal("POST /v1/boxes", err.via)
    assert.is_nil(tostring(err):find("bx_wrong_token_42", 1, true))
  end)

  it("refuses an edited handle before its id enters a URL", function()
    need()
    local sb <close> = assert(sandlot.create("bx", {}))
    for _, bad in ipairs({ "../../v1/boxes", "a/b", "..", "a\nb" }) do
      local m = sandlot.to_map(sb)
      m.handle.id, m.id = bad, bad
      local sb2 = assert(sandlot.from_map(m))
      for _, op in ipairs({ "exec", "status", "destroy" }) do
        local r, err = sb2[op](sb2, op == "exec" and { "true" } or nil)
        assert.is_nil(r, op)
        assert.equal("invalid_input", err.code, op)
      end
    end
    sb:destroy()
  end)
end)
