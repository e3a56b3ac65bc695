-- spec/sandbox_spec.lua: the sandbox API itself: ways to call create, misuse that raises, error
-- context, <close>, to_map/from_map (JSON, versions, overrides) and a handle restored in a
-- second process.
local sandlot = require("sandlot")
local h = require("spec.helper")
local cjson = require("cjson")

describe("sandlot sandbox API", function()
  local tmp

  before_each(function()
    tmp = h.tmpdir()
    sandlot.config.set({ default = "t", providers = {
      t = { "local", state_dir = tmp .. "/state" } } })
  end)

  after_each(function()
    sandlot.config.reset()
    h.rmtree(tmp)
  end)

  it("creates from opts, (name, opts), opts.provider or a provider table", function()
    local list = {
      assert(sandlot.create()),
      assert(sandlot.create({ name = "a" })),
      assert(sandlot.create("t", { name = "b" })),
      assert(sandlot.create({ provider = "t" })),
    }
    for _, sb in ipairs(list) do
      assert.equal("t", sb.provider)
      assert.equal("running", sb:status())
    end
    local lp = require("providers.local")
    local direct = assert(sandlot.create(lp, { isolation = "none" }))
    assert.equal("local", direct.provider)
    assert.equal("sandlot.sandbox(local:" .. direct.id .. ")", tostring(direct))
    direct:destroy()
    assert.equal("sandlot.sandbox(local:" .. direct.id .. ", destroyed)", tostring(direct))
    local named = assert(sandlot.create(lp, { isolation = "none", name = "web" }))
    assert.equal("sandlot.sandbox(local:" .. named.id .. ", web)", tostring(named))
    named:destroy()
    for _, sb in ipairs(list) do assert(sb:destroy()) end
  end)

  it("offers every operation as sandlot.op(sb, ...) and sb:op(...)", function()
    local sb = assert(sandlot.create())
    assert(sandlot.write_file(sb, "f", "x"))
    assert.equal("x", sandlot.read_file(sb, "f"))
    assert.equal("x", sb:read_file("f"))
    assert.equal("x", sandlot.exec(sb, { "cat", "f" }).stdout)
    assert.same(sandlot.caps(sb), sb:caps())
    assert(sandlot.destroy(sb))
  end)

  it("raises on misuse", function()
    local sb = assert(sandlot.create())
    local cases = {
      function() sandlot.exec("not a sandbox", { "true" }) end,
      function() sb:exec(42) end,
      function() sb:exec({ "a", {} }) end,
      function() sb:exec({ "true" }, { timeout = -1 }) end,
      function() sb:exec({ "true" }, { env = { ["A=B"] = "x" } }) end,
      function() sb:exec({ "true" }, { cwd = "" }) end,
      function() sb:read_file(nil) end,
      function() sb:read_file("a\0b") end,
      function() sb:write_file("f", 42) end,
      function() sb:write_file("f", "x", { mode = "rwx" }) end,
      function() sb:mkdir("d", { parent = true }) end,
      function() sb:rm("d", { recursiv = true }) end,
      function() sb:write_files({ { "only a path" } }) end,
      function() sb:get_url(70000) end,
      function() sb:await_ready({ timeout = 0 }) end,
      function() sandlot.create({ memory_mb = 1.5 }) end,
      function() sandlot.create({ network = "some" }) end,
      function() sandlot.create({ ports = { "80" } }) end,
      function() sandlot.create({ mounts = { { "/a", "/b" } } }) end,
      function() sandlot.create({ bogus = true }) end,
      function() sandlot.create("t", { provider = "t" }) end,
      function() sandlot.from_map({}, { bogus = 1 }) end,
    }
    for i, fn in ipairs(cases) do
      assert.has_error(fn, nil, "case " .. i .. " did not raise")
    end
    sb:destroy()
  end)

  it("puts op, provider and sandbox on every error", function()
    local sb = assert(sandlot.create())
    local r, err = sb:read_file("missing")
    assert.is_nil(r)
    assert.same({ "not_found", "read_file", "t", sb.id },
                { err.code, err.op, err.provider, sb.id })
    assert.equal(sb.id, err.sandbox)
    assert.matches("^t: read_file: not_found: ", tostring(err))
    local none, cerr = sandlot.create("no_such_provider_xyz", {})
    assert.is_nil(none)
    assert.equal("not_found", cerr.code)
    assert.equal("create", cerr.op)
    sb:destroy()
  end)

  it("destroys a sandbox when a <close> variable goes out of scope", function()
    local id
    do
      local sb <close> = assert(sandlot.create())
      id = sb.id
      assert(sb:write_file("f", "x"))
    end
    assert.is_nil(require("sandlot.fs").stat(tmp .. "/state/" .. id))
  end)

  describe("to_map / from_map", function()
    it("is versioned, JSON-safe and round-trips", function()
      local sb = assert(sandlot.create())
      local m = sandlot.to_map(sb)
      assert.same({ version = 1, provider = "t", id = sb.id, durable_id = sb.durable_id,
                    handle = { id = sb.id } }, m)
      local back = assert(sandlot.from_map(cjson.decode(cjson.encode(m))))
      assert.equal(sb.id, back.id)
      assert(back:reconnect())
      sb:destroy()
    end)

    it("rejects maps that are not from to_map", function()
      local bad = {
        "not a table",
        { version = 2, provider = "t", id = "x", handle = { id = "x" } },
        { version = 1, provider = 3, id = "x", handle = { id = "x" } },
        { version = 1, provider = "t", id = "x", handle = { id = "y" } },
        { version = 1, provider = "t", id = "x" },
      }
      for _, m in ipairs(bad) do
        local sb, err = sandlot.from_map(m)
        assert.is_nil(sb)
        assert.equal("invalid_input", err.code)
      end
      local sb, err = sandlot.from_map({ version = 1, provider = "unknown_xyz", id = "x",
                                         handle = { id = "x" } })
      assert.is_nil(sb)
      assert.equal("not_found", err.code)
    end)

    it("raises when a provider puts something that is not JSON-safe in its handle", function()
      local lp = require("providers.local")
      local leaky = {
        name = "leaky",
        create_options = { isolation = "string" },
        create = function(ctx, o)
          local hd = assert(lp.create(ctx, o))
          hd.fn = print
          return hd
        end,
        destroy = lp.destroy, status = lp.status, exec = lp.exec,
      }
      local sb = assert(sandlot.create(leaky, { isolation = "none" }))
      assert.has_error(function() sandlot.to_map(sb) end)
      sb:destroy()
    end)

    it("takes a provider override for providers that are not loadable by name", function()
      local lp = require("providers.local")
      local sb = assert(sandlot.create(lp, { isolation = "none" }))
      local m = sandlot.to_map(sb)
      m.provider = "not-loadable"
      assert.is_nil(sandlot.from_map(m))
      local back = assert(sandlot.from_map(m, { provider = lp }))
      assert.equal("not-loadable", back.provider)
      assert.equal("ok\n", assert(back:exec({ "echo", "ok" })).stdout)
      back:destroy()
    end)

    it("survives a restart: one process creates and saves, another restores and execs", function()
      local save = tmp .. "/handle.json"
      local env = { XDG_STATE_HOME = tmp .. "/xdg-state", SANDLOT_CONFIG = false,
                    SANDLOT_PROVIDER = false }
      local rc, out, err = h.host({ "-e", ([[
        local sandlot = require("sandlot")
        local sb = assert(sandlot.create())
        assert(sb:write_file("note.txt", "written by the first process"))
        local f = assert(io.open(%q, "w"))
        f:write(require("cjson").encode(sandlot.to_map(sb)))
        f:close()
        io.write(sb.id)
      ]]):format(save) }, { env = env })
      assert.equal(0, rc, err)
      local id = out
      rc, out, err = h.host({ "-e", ([[
        local sandlot = require("sandlot")
        local f = assert(io.open(%q))
        local sb = assert(sandlot.from_map(require("cjson").decode(f:read("a"))))
        f:close()
        assert(sb:reconnect())
        local r = assert(sb:exec({ "cat", "note.txt" }))
        io.write(sb.id, " ", r.stdout)
        assert(sb:destroy())
      ]]):format(save) }, { env = env })
      assert.equal(0, rc, err)
      assert.equal(id .. " written by the first process", out)
    end)
  end)

  it("keeps env values and secrets out of telemetry metadata", function()
    local metas = {}
    sandlot.telemetry.attach("sandbox-spec", { { "sandlot", "*", "stop" } },
      function(_, _, meta) metas[#metas + 1] = cjson.encode(meta) end)
    local ok, perr = pcall(function()
      local sb = assert(sandlot.create({ env = { API_TOKEN = "tok-123456" } }))
      assert(sb:exec({ "true" }, { env = { PASSWORD = "pw-654321" } }))
      sb:destroy()
    end)
    sandlot.telemetry.detach("sandbox-spec")
    assert(ok, perr)
    assert.is_true(#metas >= 3)
    for _, m in ipairs(metas) do
      assert.is_nil(m:find("tok-123456", 1, true))
      assert.is_nil(m:find("pw-654321", 1, true))
    end
  end)

  it("runs operations on many sandboxes concurrently", function()
    local results, errs = sandlot.map({ 1, 2, 3, 4, 5, 6, 7, 8 }, function(i)
      local sb <close> = assert(sandlot.create())
      assert(sb:write_file("n", tostring(i)))
      return assert(sb:exec({ "cat", "n" })).stdout
    end, { limit = 8 })
    assert.is_nil(errs)
    assert.same({ "1", "2", "3", "4", "5", "6", "7", "8" }, results)
  end)
end)
