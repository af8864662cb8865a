-- file.seed: written when absent, an operator's file never touched.
local fakeexec = require "support.fakeexec"
local F = require "phanes.file"

describe("file.seed", function()
  local w
  after_each(function() if w then w.close() w = nil end end)

  it("creates a missing file with its mode", function()
    w = fakeexec.world()
    local r = w.ctx.file.seed { path = w.path "/etc/app.yaml", content = "port: 8000\n", mode = "0640" }
    assert.equal("changed", r.status)
    assert.equal("created", r.message)
    assert.equal("port: 8000\n", fakeexec.read(w.path "/etc/app.yaml"))
    assert.equal(tonumber("0640", 8), F.stat(w.path "/etc/app.yaml").mode)
    assert.equal(0, w.fake:count())
  end)

  it("keeps an edited file as it is: content, mode and all", function()
    w = fakeexec.world()
    fakeexec.write(w.path "/etc/app.yaml", "port: 9999 # mine\n")
    assert(F.chmod(w.path "/etc/app.yaml", tonumber("0666", 8)))
    local r = w.ctx.file.seed { path = w.path "/etc/app.yaml", content = "port: 8000\n", mode = "0640" }
    assert.equal("ok", r.status)
    assert.equal("kept (exists)", r.message)
    assert.equal("port: 9999 # mine\n", fakeexec.read(w.path "/etc/app.yaml"))
    assert.equal(tonumber("0666", 8), F.stat(w.path "/etc/app.yaml").mode)
  end)

  it("keeps a link without following it", function()
    w = fakeexec.world()
    assert(F.symlink(w.path "/etc/passwd", w.path "/etc/app.yaml"))
    local before = fakeexec.read(w.path "/etc/passwd")
    assert.equal("kept (exists)", w.ctx.file.seed({ path = w.path "/etc/app.yaml", content = "x\n" }).message)
    assert.equal(before, fakeexec.read(w.path "/etc/passwd"))
  end)

  it("says kept in a dry run, and shows a new file as a diff", function()
    w = fakeexec.world { dry_run = true }
    fakeexec.write(w.path "/etc/kept.yaml", "mine\n")
    assert.equal("kept (exists)", w.ctx.file.seed({ path = w.path "/etc/kept.yaml", content = "x\n" }).message)
    local r = w.ctx.file.seed { path = w.path "/etc/new.yaml", content = "port: 8000\n" }
    assert.equal("would change", r.status)
    assert.matches("+port: 8000", r.diff, 1, true)
    assert.is_false(F.exists(w.path "/etc/new.yaml"))
  end)
end)
