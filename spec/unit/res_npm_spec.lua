-- npm.installed on the fake transport: which npm command, only when
-- package.json or package-lock.json changed, the reason in a dry run.
local fakeexec = require "support.fakeexec"
local F = require "phanes.file"

local function world(o)
  local w = fakeexec.world(o)
  w.dir = w.path "/app"
  assert(F.mkdir(w.dir, { mode = tonumber("0755", 8) }))
  fakeexec.write(w.dir .. "/package.json", '{"name":"app","version":"1.0.0"}\n')
  -- npm ci, like the real one, starts from an empty node_modules
  w.fake:on("npm", function(opts)
    os.execute("rm -rf '" .. opts.cwd .. "/node_modules' && mkdir '" .. opts.cwd .. "/node_modules'")
    return { code = 0, stdout = "added 0 packages\n" }
  end)
  w.fake:on("runuser", function() return { code = 0 } end)
  return w
end

describe("npm.installed", function()
  local w
  after_each(function() if w then w.close() w = nil end end)

  it("runs npm ci with a lockfile, once: an unchanged project costs no process", function()
    w = world()
    fakeexec.write(w.dir .. "/package-lock.json", '{"lockfileVersion":3}\n')
    local r = w.ctx.npm.installed { dir = w.dir }
    assert.equal("changed", r.status)
    assert.equal("npm ci: no record of an install (node_modules/.phanes-npm)", r.message)
    assert.same({ "npm ci --no-audit --no-fund --omit=dev" }, w.fake:lines "npm")
    assert.equal(w.dir, w.fake.calls[#w.fake.calls].cwd)
    assert.matches("^package.json %x+\npackage%-lock.json %x+\ncommand ci %-%-omit=dev\n$",
      fakeexec.read(w.dir .. "/node_modules/.phanes-npm"))
    w.fake:reset()
    r = w.ctx.npm.installed { dir = w.dir }
    assert.equal("ok", r.status)
    assert.equal(0, w.fake:count())
  end)

  it("runs npm install --omit=dev without a lockfile", function()
    w = world()
    local r = w.ctx.npm.installed { dir = w.dir }
    assert.equal("changed", r.status)
    assert.same({ "npm install --no-audit --no-fund --omit=dev" }, w.fake:lines "npm")
    w.fake:reset()
    assert.equal("ok", w.ctx.npm.installed({ dir = w.dir }).status)
    assert.equal(0, w.fake:count())
  end)

  it("installs again when package.json or the lockfile changed, saying which", function()
    w = world()
    fakeexec.write(w.dir .. "/package-lock.json", '{"lockfileVersion":3}\n')
    w.ctx.npm.installed { dir = w.dir }
    fakeexec.write(w.dir .. "/package-lock.json", '{"lockfileVersion":3,"x":1}\n')
    w.fake:reset()
    local r = w.ctx.npm.installed { dir = w.dir }
    assert.equal("npm ci: package-lock.json changed since the last install", r.message)
    assert.equal(1, w.fake:count "npm ci")
    fakeexec.write(w.dir .. "/package.json", '{"name":"app","version":"1.0.1"}\n')
    r = w.ctx.npm.installed { dir = w.dir }
    assert.equal("npm ci: package.json changed since the last install", r.message)
    assert.equal(2, w.fake:count "npm ci")
  end)

  it("installs again when node_modules was removed", function()
    w = world()
    w.ctx.npm.installed { dir = w.dir }
    os.execute("rm -rf '" .. w.dir .. "/node_modules'")
    w.fake:reset()
    assert.equal("changed", w.ctx.npm.installed({ dir = w.dir }).status)
    assert.equal(1, w.fake:count "npm install")
  end)

  it("ci = false and omit_dev = false: plain npm install", function()
    w = world()
    fakeexec.write(w.dir .. "/package-lock.json", "{}\n")
    w.ctx.npm.installed { dir = w.dir, ci = false, omit_dev = false }
    assert.same({ "npm install --no-audit --no-fund" }, w.fake:lines "npm")
  end)

  it("runs as the owner", function()
    w = world()
    w.ctx.npm.installed { dir = w.dir, owner = "root" }
    assert.same({ "runuser -u root -- npm install --no-audit --no-fund --omit=dev" }, w.fake:lines "runuser")
    assert.equal("/root", w.fake.calls[#w.fake.calls].env.HOME)
  end)

  it("a dry run runs nothing and says why", function()
    w = world { dry_run = true }
    fakeexec.write(w.dir .. "/package-lock.json", "{}\n")
    local r = w.ctx.npm.installed { dir = w.dir }
    assert.equal("would change", r.status)
    assert.equal("npm ci: no record of an install (node_modules/.phanes-npm)", r.message)
    assert.equal(0, w.fake:count())
    assert.is_false(F.exists(w.dir .. "/node_modules"))
    r = w.ctx.npm.installed { dir = w.path "/none" }
    assert.equal("would change", r.status)
    assert.equal("install (no package.json yet)", r.message)
  end)

  it("a failing npm fails with its output, and records nothing", function()
    w = world()
    w.fake:on("npm", { code = 1, stderr = "npm ERR! code EUSAGE\nnpm ERR! lockfile out of sync\n" })
    fakeexec.write(w.dir .. "/package-lock.json", "{}\n")
    local ok, err = pcall(w.ctx.npm.installed, { dir = w.dir })
    assert.is_false(ok)
    assert.equal("npm ci failed (exit 1)", err.message)
    assert.matches("lockfile out of sync", err.detail, 1, true)
    assert.is_false(F.exists(w.dir .. "/node_modules/.phanes-npm"))
  end)

  it("refuses a relative dir, and a dir without package.json", function()
    w = world()
    local ok, err = pcall(w.ctx.npm.installed, { dir = "app" })
    assert.is_false(ok)
    assert.matches("dir (absolute, holding package.json) is required", err.message, 1, true)
    ok, err = pcall(w.ctx.npm.installed, { dir = w.path "/etc" })
    assert.is_false(ok)
    assert.matches("has no package.json", err.message, 1, true)
  end)
end)
