-- service resources against a fake exec and canned `systemctl show` output.
local fakeexec = require "support.fakeexec"
local context = require "phanes.engine.context"

local SHOW = "systemctl show --no-pager -p Id,Names,LoadState,ActiveState,SubState,UnitFileState "

describe("service", function()
  local w
  after_each(function() if w then w.close() w = nil end end)

  local function ok_on(prefix) w.fake:on(prefix, { code = 0 }) end

  describe("running", function()
    it("is ok for a running, enabled unit; one systemctl show per unit, once", function()
      w = fakeexec.world()
      assert.equal("ok", w.ctx.service.running({ "nginx" }).status)
      assert.equal("ok", w.ctx.service.running({ "ssh", enabled = true }).status)
      assert.equal("ok", w.ctx.service.running({ "sshd" }).status)     -- alias: known already
      assert.equal("ok", w.ctx.service.running({ "docker.socket" }).status)
      assert.equal("ok", w.ctx.service.running({ "systemd-journald" }).status) -- static: cannot enable
      assert.equal("ok", w.ctx.service.running({ "nginx.service" }).status)
      assert.same({ SHOW .. "nginx.service", SHOW .. "ssh.service", SHOW .. "docker.socket",
        SHOW .. "systemd-journald.service" }, w.fake:lines())
    end)

    it("asks nothing about a unit that has no unit file", function()
      w = fakeexec.world{ dry_run = true }
      assert.equal("would change", w.ctx.service.running({ "netdata" }).status)
      assert.equal("ok", w.ctx.service.stopped({ "apache3" }).status)
      assert.equal(0, w.fake:count())
      -- a template unit's instance has the template's file
      w.unit_file "getty@.service"
      w.fake:on("systemctl show", { stdout = "Id=getty@tty1.service\nNames=getty@tty1.service\n"
        .. "LoadState=loaded\nActiveState=active\nSubState=running\nUnitFileState=enabled\n" })
      assert.equal("ok", w.ctx.service.running({ "getty@tty1" }).status)
      assert.same({ SHOW .. "getty@tty1.service" }, w.fake:lines())
    end)

    it("starts and enables in one call", function()
      w = fakeexec.world()
      ok_on "systemctl --no-pager enable --now cron"
      local r = w.ctx.service.running { "cron" }
      assert.equal("changed", r.status)
      assert.equal("started, enabled", r.message)
      assert.same({ "systemctl --no-pager enable --now cron" }, w.fake:lines "systemctl --no-pager")
      -- the cache follows
      assert.equal("ok", w.ctx.service.running({ "cron" }).status)
      assert.equal(2, w.fake:count())
    end)

    it("starts a failed unit without restarting it", function()
      w = fakeexec.world()
      ok_on "systemctl --no-pager start fail2ban"
      local r = w.ctx.service.running { "fail2ban", restart = true }
      assert.equal("started", r.message)
      assert.same({ "systemctl --no-pager start fail2ban" }, w.fake:lines "systemctl --no-pager")
    end)

    it("restarts or reloads only when asked and already running", function()
      w = fakeexec.world()
      ok_on "systemctl --no-pager restart nginx"
      ok_on "systemctl --no-pager reload ssh"
      assert.equal("ok", w.ctx.service.running({ "nginx", restart = false }).status)
      assert.equal("restarted", w.ctx.service.running({ "nginx", restart = true }).message)
      assert.equal("reloaded", w.ctx.service.running({ "ssh", reload = true }).message)
      assert.same({ "systemctl --no-pager restart nginx", "systemctl --no-pager reload ssh" },
        w.fake:lines "systemctl --no-pager")
    end)

    it("disables when enabled = false", function()
      w = fakeexec.world()
      ok_on "systemctl --no-pager disable apt-daily.timer"
      assert.equal("disabled", w.ctx.service.running({ "apt-daily.timer", enabled = false }).message)
    end)

    it("asks systemctl again for a unit it has not seen", function()
      w = fakeexec.world()
      w.ctx.service.running { "nginx" }
      w.unit_file "redis.service"
      w.fake:on("systemctl show", { stdout = "Id=redis-server.service\nNames=redis-server.service redis.service\n"
        .. "LoadState=loaded\nActiveState=active\nSubState=running\nUnitFileState=enabled\n" })
      assert.equal("ok", w.ctx.service.running({ "redis" }).status)
      assert.equal("ok", w.ctx.service.running({ "redis-server" }).status) -- the same unit
      assert.same({ SHOW .. "nginx.service", SHOW .. "redis.service" }, w.fake:lines())
    end)

    it("fails with the stderr and the unit's status when start fails", function()
      w = fakeexec.world()
      w.fake:on("systemctl --no-pager enable --now cron", { code = 1,
        stderr = "Job for cron.service failed because the control process exited with error code.\n" })
      w.fake:on("systemctl --no-pager status", { code = 3, stdout = "cron.service - Regular background program\n"
        .. "   Active: failed (Result: exit-code)\nMay 1 cron[42]: bad config line 3\n" })
      local ok, e = pcall(w.ctx.service.running, { "cron" })
      assert.is_false(ok)
      assert.is_true(context.is_failure(e))
      assert.equal("systemctl enable --now cron failed", e.message)
      assert.matches("Job for cron.service failed", e.detail)
      assert.matches("bad config line 3", e.detail)
      assert.equal("failed", w.last().status)
    end)

    it("fails clearly for a unit that is not there or masked", function()
      w = fakeexec.world()
      local ok, e = pcall(w.ctx.service.running, { "nope" })
      assert.is_false(ok)
      assert.equal("unit nope.service not found: is its package installed?", e.message)
      ok, e = pcall(w.ctx.service.running, { "masked" })
      assert.is_false(ok)
      assert.matches("is masked", e.message)
    end)

    it("plans in a dry run, also for a unit a package would bring", function()
      w = fakeexec.world{ dry_run = true }
      local r = w.ctx.service.running { "cron", restart = true }
      assert.equal("would change", r.status)
      assert.equal("start, enable", r.message)
      r = w.ctx.service.running { "nginx", restart = true }
      assert.equal("restart", r.message)
      r = w.ctx.service.running { "nope" }
      assert.equal("would change", r.status)
      assert.equal(2, w.fake:count()) -- a show each for cron and nginx; nope has no unit file
    end)

    it("needs systemd, or skips when optional", function()
      w = fakeexec.world{ facts = { init = "sh", container = "docker" } }
      local ok, e = pcall(w.ctx.service.running, { "nginx" })
      assert.is_false(ok)
      assert.matches("services need systemd, and init here is sh %(in a docker container%)", e.message)
      local r = w.ctx.service.running { "nginx", optional = true }
      assert.equal("skipped", r.status)
      assert.equal("skipped", w.last().status)
      assert.matches("need systemd", w.last().message)
      assert.equal(0, w.fake:count())
    end)

    it("in a dry run without systemd, plans the rest and says a real run would fail", function()
      w = fakeexec.world{ dry_run = true, facts = { init = "sh" } }
      local r = w.ctx.service.running { "nginx" }
      assert.equal("skipped", r.status)
      assert.matches("init here is sh: a real run would fail here", r.message)
      assert.equal(0, w.fake:count())
    end)
  end)

  describe("stopped", function()
    it("stops and disables in one call, and is ok when already so", function()
      w = fakeexec.world()
      ok_on "systemctl --no-pager disable --now apache2"
      assert.equal("stopped, disabled", w.ctx.service.stopped({ "apache2" }).message)
      assert.equal("ok", w.ctx.service.stopped({ "apache2" }).status)
      assert.equal("ok", w.ctx.service.stopped({ "cron" }).status)
      assert.equal("not installed", w.ctx.service.stopped({ "nope" }).message)
      assert.same({ "systemctl --no-pager disable --now apache2" }, w.fake:lines "systemctl --no-pager")
    end)

    it("keeps it enabled when asked", function()
      w = fakeexec.world()
      ok_on "systemctl --no-pager stop apache2"
      assert.equal("stopped", w.ctx.service.stopped({ "apache2", enabled = true }).message)
    end)
  end)

  it("daemon_reload runs systemctl daemon-reload and forgets the states", function()
    w = fakeexec.world()
    ok_on "systemctl --no-pager daemon-reload"
    w.ctx.service.running { "nginx" }
    assert.equal("changed", w.ctx.service.daemon_reload().status)
    w.ctx.service.running { "nginx" }
    assert.equal(2, w.fake:count "systemctl show")
  end)

  it("a package install refreshes the service states", function()
    w = fakeexec.world()
    w.fake:on("apt-get", { code = 0 })
    w.ctx.service.running { "nginx" }
    w.ctx.pkg.installed { "redis-server" }
    w.unit_file "redis-server.service"
    w.fake:on("systemctl show", { stdout = "Id=redis-server.service\nNames=redis-server.service\n"
      .. "LoadState=loaded\nActiveState=active\nSubState=running\nUnitFileState=enabled\n" })
    assert.equal("ok", w.ctx.service.running({ "redis-server" }).status)
    assert.same({ SHOW .. "nginx.service", SHOW .. "redis-server.service" }, w.fake:lines "systemctl show")
  end)

  describe("with the units the last run asked (hints)", function()
    it("reads them all with the first unit asked: one systemctl for a no-op run", function()
      w = fakeexec.world{ hints = { units = { "nginx.service", "ssh.service", "gone.service",
        "ufw.service", "cron.service", "nginx.service" } } }
      assert.equal("ok", w.ctx.service.running({ "ssh" }).status)
      assert.equal("ok", w.ctx.service.running({ "nginx" }).status)
      assert.equal("ok", w.ctx.service.running({ "sshd" }).status)
      assert.equal("ok", w.ctx.service.running({ "ufw" }).status)
      assert.equal("ok", w.ctx.service.stopped({ "cron" }).status)
      -- the asked one first; no unit file, no question (gone); each once
      assert.same({ SHOW .. "ssh.service nginx.service ufw.service cron.service" }, w.fake:lines())
      assert.same({ "cron.service", "nginx.service", "ssh.service", "sshd.service", "ufw.service" },
        w.run:units_of "test")
    end)

    it("reads a unit again when something changed after it was read", function()
      w = fakeexec.world{ hints = { units = { "cron.service", "nginx.service", "ufw.service" } } }
      ok_on "systemctl --no-pager enable --now cron"
      assert.equal("changed", w.ctx.service.running({ "cron" }).status)
      -- cron's start could have moved nginx: asked again (with ufw, still unasked)
      assert.equal("ok", w.ctx.service.running({ "nginx" }).status)
      assert.equal("ok", w.ctx.service.running({ "ufw" }).status)
      assert.equal("ok", w.ctx.service.running({ "cron" }).status) -- asked: kept current
      assert.same({ SHOW .. "cron.service nginx.service ufw.service",
        SHOW .. "nginx.service ufw.service" }, w.fake:lines "systemctl show")
    end)

    it("trusts what it read through a dry run: planned changes change nothing", function()
      w = fakeexec.world{ dry_run = true, hints = { units = { "nginx.service" } } }
      assert.equal("would change", w.ctx.service.running({ "cron" }).status)
      assert.equal("ok", w.ctx.service.running({ "nginx" }).status)
      assert.same({ SHOW .. "cron.service nginx.service" }, w.fake:lines "systemctl show")
    end)
  end)
end)
