-- The run and ctx: events, masking, failures, interrupts, templates, and
-- how few processes a no-op module costs.
local fakeexec = require "support.fakeexec"
local context = require "phanes.engine.context"
local loader = require "phanes.loader"

describe("context", function()
  local w
  after_each(function() if w then w.close() w = nil end end)

  it("a no-op module of 10 pkg/service resources spawns one dpkg-query and a systemctl per unit", function()
    w = fakeexec.world()
    local ctx = w.ctx
    ctx.pkg.installed { "nginx" }
    ctx.service.running { "nginx", enabled = true }
    ctx.pkg.installed { "openssh-server" }
    ctx.service.running { "ssh", reload = false }
    ctx.pkg.installed { "ufw" }
    ctx.service.running { "ufw" }
    ctx.pkg.installed { "curl", "wget", "git" }
    ctx.service.stopped { "cron" }
    ctx.pkg.absent { "telnet" }
    ctx.service.running { "apt-daily.timer" }
    assert.equal(10, #w.events)
    for _, ev in ipairs(w.events) do assert.equal("ok", ev.status, ev.resource .. " " .. ev.target) end
    assert.equal(6, w.run.stats.execs)
    assert.equal(1, w.fake:count "dpkg-query")
    assert.equal(5, w.fake:count "systemctl show") -- nginx, ssh, ufw, cron, apt-daily.timer
    assert.equal(10, w.run.stats.resources)
    assert.equal(0, w.run.stats.changed)
  end)

  it("raises INTERRUPTED before the next resource once a signal came", function()
    local n = 0
    w = fakeexec.world{ interrupted = function() return n end }
    w.ctx.pkg.installed { "nginx" }
    n = 1
    local ok, e = pcall(w.ctx.pkg.installed, { "curl" })
    assert.is_false(ok)
    assert.equal(context.INTERRUPTED, e)
    assert.equal(1, #w.events) -- the interrupted resource did not start
  end)

  it("masks secrets in messages, diffs, targets and failures", function()
    w = fakeexec.world{ secrets = { "s3cret-pw", "hunter2-pw" } }
    w.fake:on("sh -c", { code = 1, stderr = "auth failed for s3cret-pw\n" })
    local ok, e = pcall(w.ctx.cmd.run, { shell = "login --password s3cret-pw" })
    assert.is_false(ok)
    assert.equal("command login --password ****** failed (exit 1)", e.message)
    assert.equal("auth failed for ******", e.detail)
    assert.equal("login --password ******", e.target)
    local ev = w.last()
    assert.equal("login --password ******", ev.target)
    assert.equal("failed", ev.status)
    assert.is_nil(ev.message:find "s3cret-pw")
    assert.equal("a ****** b ****** ******", w.run:mask "a s3cret-pw b hunter2-pw hunter2-pw")
    w.run:emit{ module = "m", resource = "r", target = "t", status = "changed", diff = "+pass hunter2-pw\n" }
    assert.equal("+pass ******\n", w.last().diff)
  end)

  it("masks short secrets in free text only as whole words, and none under 4 bytes", function()
    w = fakeexec.world{ secrets = { "e", "abc123", "hunter2-pw" } }
    assert.equal("exit_code ****** abc1234 ******", w.run:mask "exit_code abc123 abc1234 hunter2-pw")
    w.run:emit{ module = "m", resource = "r", target = "/etc/x.conf", status = "changed",
      diff = "+requirepass abc123\n+maxabc123 1\n" }
    assert.equal("/etc/x.conf", w.last().target)
    assert.equal("+requirepass ******\n+maxabc123 1\n", w.last().diff)
  end)

  it("tells failures, skips and Lua errors apart", function()
    w = fakeexec.world()
    local f = context.failure{ resource = "x", target = "/y", message = "bad", detail = "tail" }
    assert.is_true(context.is_failure(f))
    assert.is_false(context.is_failure "bad")
    assert.equal("x /y: bad\ntail", tostring(f))
    local ok, e = pcall(w.ctx.skip, "in a container")
    assert.is_false(ok)
    assert.equal("in a container", context.is_skip(e))
    assert.is_nil(context.is_skip(f))
    -- a bug inside a resource: a failed event, and the error goes on with its traceback
    ok, e = pcall(w.run.resource, w.run, w.ctx, "x.y", "t", function() local t = nil; return t.x end)
    assert.is_false(ok)
    assert.is_false(context.is_failure(e))
    assert.matches("attempt to index", e)
    assert.matches("stack traceback", e)
    assert.equal("failed", w.last().status)
  end)

  it("passes ctx.exec to the transport and counts it", function()
    w = fakeexec.world()
    w.fake:on("uname", { stdout = "x86_64\n" })
    assert.equal("x86_64\n", w.ctx.exec({ argv = { "uname", "-m" } }).stdout)
    assert.equal(1, w.run.stats.execs)
  end)

  describe("templates", function()
    local dir
    before_each(function()
      dir = fakeexec.tmpdir()
      os.execute("mkdir -p " .. dir .. "/templates/demo")
      fakeexec.write(dir .. "/templates/demo/app.conf", "port {{ port }}\nname {{ name }}\n")
      table.insert(loader.dirs, 1, dir)
    end)
    after_each(function()
      table.remove(loader.dirs, 1)
      fakeexec.rmtree(dir)
    end)

    it("renders templates/<src> from the search path", function()
      w = fakeexec.world()
      assert.equal("port 80\nname web\n", w.ctx.template("demo/app.conf", { port = 80, name = "web" }))
    end)

    it("names the template file and line of an undefined variable", function()
      w = fakeexec.world()
      local ok, e = pcall(w.ctx.template, "demo/app.conf", { port = 80 })
      assert.is_false(ok)
      assert.is_true(context.is_failure(e))
      assert.matches(dir .. "/templates/demo/app.conf:2:", e.message, 1, true)
      assert.matches("name", e.message)
    end)

    it("says which template is missing", function()
      w = fakeexec.world()
      local ok, e = pcall(w.ctx.template, "demo/nope.conf", {})
      assert.is_false(ok)
      assert.equal("templates/demo/nope.conf", e.target)
      assert.matches("not found on the search path", e.message)
    end)
  end)
end)
