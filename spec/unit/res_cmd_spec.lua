-- cmd.run: guards, dry run, failures.
local fakeexec = require "support.fakeexec"
local context = require "phanes.engine.context"

describe("cmd.run", function()
  local w
  after_each(function() if w then w.close() w = nil end end)

  it("runs without guards, every time, with env, cwd and timeout", function()
    w = fakeexec.world()
    w.fake:on("locale-gen", { code = 0, stdout = "Generating locales...\n" })
    local r = w.ctx.cmd.run { argv = { "locale-gen", "en_US.UTF-8" }, desc = "generate locales",
      env = { LANG = "C" }, cwd = "/", timeout = 30 }
    assert.equal("changed", r.status)
    assert.equal("Generating locales...\n", r.stdout)
    assert.equal("generate locales", w.last().target)
    assert.equal("locale-gen en_US.UTF-8", w.last().message)
    local c = w.fake.calls[1]
    assert.same({ LANG = "C" }, c.env)
    assert.equal("/", c.cwd)
    assert.equal(30, c.timeout)
    w.ctx.cmd.run { argv = { "locale-gen", "en_US.UTF-8" } }
    assert.equal(2, w.fake:count "locale-gen")
  end)

  it("is ok when creates exists, without running anything", function()
    w = fakeexec.world()
    local r = w.ctx.cmd.run { argv = { "mkswap", "/swapfile" }, creates = w.path "/etc/passwd" }
    assert.equal("ok", r.status)
    assert.equal("creates " .. w.path "/etc/passwd" .. " exists", r.message)
    assert.equal(0, w.fake:count())
  end)

  it("runs when creates is missing", function()
    w = fakeexec.world()
    w.fake:on("mkswap", { code = 0 })
    assert.equal("changed", w.ctx.cmd.run({ argv = { "mkswap", "/swapfile" }, creates = w.path "/nope" }).status)
  end)

  it("is ok when unless succeeds, runs when it fails", function()
    w = fakeexec.world()
    w.fake:on("test -x /usr/local/bin/x", { code = 0 })
    local r = w.ctx.cmd.run { shell = "curl -fsSL https://x/install.sh | sh", unless = { "test", "-x", "/usr/local/bin/x" } }
    assert.equal("ok", r.status)
    assert.equal("unless succeeded", r.message)
    w.fake:on("test -x /usr/local/bin/x", { code = 1 })
    w.fake:on("sh -c curl", { code = 0 })
    assert.equal("changed", w.ctx.cmd.run({ shell = "curl -fsSL https://x/install.sh | sh",
      unless = { "test", "-x", "/usr/local/bin/x" } }).status)
    assert.same({ "test -x /usr/local/bin/x", "test -x /usr/local/bin/x", "sh -c curl -fsSL https://x/install.sh | sh" },
      w.fake:lines())
  end)

  it("only_if as a shell string: runs when it succeeds", function()
    w = fakeexec.world()
    w.fake:on("sh -c ufw status | grep -q inactive", { code = 1 })
    local r = w.ctx.cmd.run { argv = { "ufw", "--force", "enable" }, only_if = "ufw status | grep -q inactive" }
    assert.equal("only_if failed", r.message)
    w.fake:on("sh -c ufw status | grep -q inactive", { code = 0 })
    w.fake:on("ufw", { code = 0 })
    assert.equal("changed", w.ctx.cmd.run({ argv = { "ufw", "--force", "enable" },
      only_if = "ufw status | grep -q inactive" }).status)
  end)

  it("in a dry run still runs the read-only guards, never the command", function()
    w = fakeexec.world{ dry_run = true }
    w.fake:on("test", { code = 1 })
    local r = w.ctx.cmd.run { argv = { "install-it" }, unless = { "test", "-e", "/x" } }
    assert.equal("would change", r.status)
    assert.equal("run install-it", r.message)
    assert.same({ "test -e /x" }, w.fake:lines())
  end)

  it("fails with the stderr tail on a non-zero exit, or when it cannot start", function()
    w = fakeexec.world()
    w.fake:on("false", { code = 2, stderr = "line1\nsomething broke\n" })
    local ok, e = pcall(w.ctx.cmd.run, { argv = { "false" }, desc = "break" })
    assert.is_false(ok)
    assert.is_true(context.is_failure(e))
    assert.equal("command (break) failed (exit 2)", e.message)
    assert.equal("line1\nsomething broke", e.detail)
    w.fake:on("nosuch", function() return nil end)
    ok, e = pcall(w.ctx.cmd.run, { argv = { "nosuch" } })
    assert.is_false(ok)
    assert.matches("No such file or directory", e.message)
  end)

  it("requires argv or shell", function()
    w = fakeexec.world()
    local ok, e = pcall(w.ctx.cmd.run, { desc = "nothing" })
    assert.is_false(ok)
    assert.matches("argv %(a list%) or shell %(a string%) is required", e.message)
  end)
end)
