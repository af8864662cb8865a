-- systemd.unit, systemd.dropin and sentinels on a fake transport: files
-- written under a temp root, daemon-reload only on a change, diffs in a
-- dry run.
local fakeexec = require "support.fakeexec"
local F = require "phanes.file"

local SHOW = "Id=app.service\nNames=app.service\nLoadState=loaded\nActiveState=inactive\nSubState=dead\n"
  .. "UnitFileState=disabled\n"

local function world(o)
  o = o or {}
  o.services = o.services or SHOW
  local w = fakeexec.world(o)
  w.run.paths.systemd_dir = w.path "/etc/systemd/system"
  w.run.paths.sentinels_dir = w.path "/var/lib/phanes/sentinels"
  w.fake:on("systemctl --no-pager daemon-reload", { code = 0 })
  w.fake:on("systemctl --no-pager enable --now app.service", { code = 0 })
  w.fake:on("systemctl --no-pager restart app.service", { code = 0 })
  return w
end

local UNIT = "[Unit]\nDescription=app\n\n[Service]\nExecStart=/usr/local/bin/app\n"

describe("systemd.unit", function()
  local w
  after_each(function() if w then w.close() w = nil end end)

  it("writes the unit, reloads systemd and starts it; a re-run spawns nothing but one show", function()
    w = world()
    local r = w.ctx.systemd.unit { name = "app", content = UNIT, running = true }
    assert.is_true(r.changed)
    assert.equal(UNIT, fakeexec.read(w.path "/etc/systemd/system/app.service"))
    assert.equal(tonumber("0644", 8), F.stat(w.path "/etc/systemd/system/app.service").mode)
    assert.equal(1, w.fake:count "systemctl --no-pager daemon-reload")
    assert.equal(1, w.fake:count "systemctl --no-pager enable --now app.service")
    assert.equal(0, w.fake:count "systemctl --no-pager restart")
    local kinds = {}
    for _, ev in ipairs(w.events) do kinds[#kinds + 1] = ev.resource .. " " .. ev.status end
    assert.same({ "systemd.unit changed", "service.daemon_reload changed", "service.running changed" }, kinds)
    w.fake:reset()
    r = w.ctx.systemd.unit { name = "app.service", content = UNIT, running = true }
    assert.is_false(r.changed)
    assert.equal(0, w.fake:count "systemctl --no-pager daemon-reload")
    assert.equal(0, w.fake:count "systemctl --no-pager enable")
  end)

  it("restarts a running service when its unit changed", function()
    w = world { services = SHOW:gsub("ActiveState=inactive", "ActiveState=active"):gsub("disabled", "enabled") }
    fakeexec.write(w.path "/lib/systemd/system/app.service", "")
    assert(F.mkdir(w.path "/etc/systemd/system", { parents = true }))
    fakeexec.write(w.path "/etc/systemd/system/app.service", "old\n")
    w.ctx.systemd.unit { name = "app", content = UNIT, running = true }
    assert.equal(1, w.fake:count "systemctl --no-pager restart app.service")
  end)

  it("shows the diff in a dry run and writes nothing", function()
    w = world { dry_run = true }
    assert(F.mkdir(w.path "/etc/systemd/system", { parents = true }))
    fakeexec.write(w.path "/etc/systemd/system/app.service", "[Unit]\nDescription=old\n")
    local r = w.ctx.systemd.unit { name = "app", content = UNIT }
    assert.equal("would change", r.status)
    assert.matches("-Description=old", r.diff, 1, true)
    assert.matches("+ExecStart=/usr/local/bin/app", r.diff, 1, true)
    assert.equal("[Unit]\nDescription=old\n", fakeexec.read(w.path "/etc/systemd/system/app.service"))
    assert.equal(0, w.fake:count "systemctl --no-pager daemon-reload")
  end)

  it("renders a template given as template (the same as src)", function()
    w = world()
    local r = w.ctx.systemd.unit { name = "ollama", template = "ollama/ollama.service", vars = { prefix = "/opt/y" } }
    assert.is_true(r.changed)
    assert.matches("ExecStart=/opt/y/bin/ollama serve", fakeexec.read(w.path "/etc/systemd/system/ollama.service"), 1, true)
  end)

  it("renders a template given as src", function()
    w = world()
    local r = w.ctx.systemd.unit { name = "ollama", src = "ollama/ollama.service", vars = { prefix = "/opt/x" } }
    assert.is_true(r.changed)
    assert.matches("ExecStart=/opt/x/bin/ollama serve", fakeexec.read(w.path "/etc/systemd/system/ollama.service"), 1, true)
    assert.is_false(pcall(w.ctx.systemd.unit, { name = "app" }))
  end)

  it("refuses a bad name", function()
    w = world()
    assert.is_false(pcall(w.ctx.systemd.unit, { name = "../x", content = UNIT }))
  end)
end)

describe("systemd.dropin", function()
  local w
  after_each(function() if w then w.close() w = nil end end)

  it("writes <unit>.d/<name>.conf, reloads only when it changed", function()
    w = world()
    local text = "[Service]\nEnvironment=\"APP_PORT=8080\"\n"
    local r = w.ctx.systemd.dropin { unit = "app", name = "phanes", content = text }
    assert.is_true(r.changed)
    assert.equal(text, fakeexec.read(w.path "/etc/systemd/system/app.service.d/phanes.conf"))
    assert.equal(1, w.fake:count "systemctl --no-pager daemon-reload")
    r = w.ctx.systemd.dropin { unit = "app", name = "phanes", content = text }
    assert.is_false(r.changed)
    assert.equal(1, w.fake:count "systemctl --no-pager daemon-reload")
  end)

  it("shows a new drop-in as a diff in a dry run", function()
    w = world { dry_run = true }
    local r = w.ctx.systemd.dropin { unit = "app", name = "phanes", content = "[Service]\nEnvironment=\"A=1\"\n" }
    assert.equal("would change", r.status)
    assert.matches("+Environment=\"A=1\"", r.diff, 1, true)
    assert.is_false(F.exists(w.path "/etc/systemd/system/app.service.d"))
  end)
end)

describe("sentinel", function()
  local w
  after_each(function() if w then w.close() w = nil end end)

  it("marks a step last; done tells it", function()
    w = world { module = "ollama" }
    assert.is_false(w.ctx.sentinel.done { "install", stamp = "1.0" })
    assert.equal("changed", w.ctx.sentinel.mark({ "install", stamp = "1.0" }).status)
    assert.equal("1.0\n", fakeexec.read(w.path "/var/lib/phanes/sentinels/ollama.install"))
    assert.is_true(w.ctx.sentinel.done { "install", stamp = "1.0" })
    assert.is_false(w.ctx.sentinel.done { "install", stamp = "1.1" })
    assert.equal("ok", w.ctx.sentinel.mark({ "install", stamp = "1.0" }).status)
    assert.equal(w.path "/var/lib/phanes/sentinels/ollama.install", w.ctx.sentinel.path "install")
    assert.equal(0, w.fake:count())
  end)

  it("writes nothing in a dry run", function()
    w = world { dry_run = true, module = "ollama" }
    assert.equal("would change", w.ctx.sentinel.mark("install").status)
    assert.is_false(F.exists(w.path "/var/lib/phanes/sentinels"))
  end)
end)
