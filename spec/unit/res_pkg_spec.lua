-- pkg resources against a fake exec: which commands run, and when.
local fakeexec = require "support.fakeexec"
local context = require "phanes.engine.context"

local DPKG = "dpkg-query -W --showformat=${Package}\\t${db:Status-Abbrev}\\t${Version}\\n"
local INSTALL = "apt-get -q -y -o DPkg::Lock::Timeout=300 install -o Dpkg::Options::=--force-confdef "
  .. "-o Dpkg::Options::=--force-confold"
local UPDATE = "apt-get -q -y -o DPkg::Lock::Timeout=300 update"

local function age(w, seconds)
  local lfs = require "lfs"
  local t = os.time() - seconds
  assert(lfs.touch(w.path "/var/cache/apt/pkgcache.bin", t, t))
  assert(lfs.touch(w.path "/var/lib/apt/lists", t, t))
end

describe("pkg", function()
  local w
  after_each(function() if w then w.close() w = nil end end)

  describe("installed", function()
    it("is ok when all are installed, with one dpkg-query for many resources", function()
      w = fakeexec.world()
      local r = w.ctx.pkg.installed { "nginx", "curl" }
      assert.same({ changed = false, status = "ok" }, { changed = r.changed, status = r.status })
      w.ctx.pkg.installed { "git" }
      w.ctx.pkg.installed "bash"
      assert.same({ DPKG }, w.fake:lines())
      assert.equal(1, w.run.stats.execs)
      assert.same({ module = "test", resource = "pkg.installed", target = "nginx curl", status = "ok" },
        { module = w.events[1].module, resource = w.events[1].resource, target = w.events[1].target,
          status = w.events[1].status })
      assert.is_number(w.events[1].duration)
    end)

    it("reads dpkg's status file when it can: no process at all", function()
      w = fakeexec.world()
      os.execute("mkdir -p '" .. w.path "/var/lib/dpkg/updates" .. "'")
      fakeexec.write(w.path "/var/lib/dpkg/status", fakeexec.fixture "facts/dpkg-status.txt")
      assert.equal("ok", w.ctx.pkg.installed({ "nginx", "curl", "libfoo1" }).status)
      assert.equal("ok", w.ctx.pkg.absent({ "telnet", "halfdone-not-there" }).status)
      assert.equal(0, w.run.stats.execs)
      -- a package the file lists as not installed is installed as usual
      w.fake:on("apt-get", { code = 0 })
      assert.equal("install halfdone", w.ctx.pkg.installed({ "halfdone" }).message)
    end)

    it("asks dpkg-query when dpkg's journal holds updates not in the status file yet", function()
      w = fakeexec.world()
      os.execute("mkdir -p '" .. w.path "/var/lib/dpkg/updates" .. "'")
      fakeexec.write(w.path "/var/lib/dpkg/status", "Package: nginx\nStatus: deinstall ok config-files\n")
      fakeexec.write(w.path "/var/lib/dpkg/updates/0000", "Package: nginx\nStatus: install ok installed\n")
      assert.equal("ok", w.ctx.pkg.installed({ "nginx" }).status)
      assert.same({ DPKG }, w.fake:lines())
    end)

    it("installs only the missing ones, in one apt-get call", function()
      w = fakeexec.world()
      w.fake:on("apt-get", { code = 0 })
      local r = w.ctx.pkg.installed { "nginx", "redis-server", "curl", "telnet" }
      assert.is_true(r.changed)
      assert.equal("changed", r.status)
      assert.equal("install redis-server telnet", r.message)
      assert.same({ DPKG, INSTALL .. " --no-install-recommends redis-server telnet" }, w.fake:lines())
      local call = w.fake.calls[2]
      assert.equal("noninteractive", call.env.DEBIAN_FRONTEND)
      -- the table is updated in place: asking again spawns nothing
      w.fake:reset()
      assert.equal("ok", w.ctx.pkg.installed({ "redis-server" }).status)
      assert.same({}, w.fake:lines())
    end)

    it("reads the packages again for a name it has not seen since an install", function()
      w = fakeexec.world()
      w.fake:on("apt-get", { code = 0 })
      w.ctx.pkg.installed { "docker.io" }
      w.fake:on("dpkg-query -W", { stdout = "containerd\tii \t1.6\n" })
      assert.equal("ok", w.ctx.pkg.installed({ "containerd" }).status) -- pulled in as a dependency
      assert.equal(2, w.fake:count "dpkg-query")
    end)

    it("allows recommends when asked", function()
      w = fakeexec.world()
      w.fake:on("apt-get", { code = 0 })
      w.ctx.pkg.installed { "redis-server", recommends = true }
      assert.same({ INSTALL .. " redis-server" }, w.fake:lines "apt-get")
    end)

    it("updates the apt cache first when it is older than apt_cache_max_age", function()
      w = fakeexec.world{ config = { apt_cache_max_age = 3600 } }
      age(w, 7200)
      w.fake:on("apt-get", { code = 0 })
      w.ctx.pkg.installed { "redis-server" }
      assert.same({ UPDATE, INSTALL .. " --no-install-recommends redis-server" }, w.fake:lines "apt-get")
      -- once per run
      w.ctx.pkg.installed { "jq" }
      assert.equal(1, w.fake:count(UPDATE))
    end)

    it("updates when the lists are empty, and not when fresh", function()
      w = fakeexec.world()
      w.fake:on("apt-get", { code = 0 })
      w.ctx.pkg.installed { "jq" }
      assert.equal(0, w.fake:count(UPDATE))
      w.close()
      w = fakeexec.world()
      os.remove(w.path "/var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages")
      w.fake:on("apt-get", { code = 0 })
      w.ctx.pkg.installed { "jq" }
      assert.equal(1, w.fake:count(UPDATE))
    end)

    it("updates and retries once when apt does not know a package", function()
      w = fakeexec.world()
      w.fake:on("apt-get", { code = 0 })
      w.fake:on(INSTALL, { { code = 100, stderr = "E: Unable to locate package jq\n" }, { code = 0 } })
      assert.equal("changed", w.ctx.pkg.installed({ "jq" }).status)
      assert.same({ INSTALL .. " --no-install-recommends jq", UPDATE,
        INSTALL .. " --no-install-recommends jq" }, w.fake:lines "apt-get")
    end)

    it("fails with apt's stderr when the package really does not exist", function()
      w = fakeexec.world()
      w.fake:on("apt-get", { code = 0 })
      w.fake:on(INSTALL, { code = 100, stderr = "Reading package lists...\nE: Unable to locate package nope\n" })
      local ok, e = pcall(w.ctx.pkg.installed, { "nope" })
      assert.is_false(ok)
      assert.is_true(context.is_failure(e))
      assert.equal("pkg.installed", e.resource)
      assert.equal("nope", e.target)
      assert.equal("apt-get install failed (exit 100)", e.message)
      assert.matches("Unable to locate package nope", e.detail)
      assert.equal("failed", w.last().status)
      assert.equal(2, w.fake:count(INSTALL))
    end)

    it("says clearly when the dpkg lock is held", function()
      w = fakeexec.world()
      w.fake:on(INSTALL, { code = 100, stderr = "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242 (unattended-upgr)\n" })
      local ok, e = pcall(w.ctx.pkg.installed, { "jq" })
      assert.is_false(ok)
      assert.matches("lock is held by another process", e.message)
      assert.matches("unattended%-upgr", e.detail)
    end)

    it("plans in a dry run and runs nothing but the query", function()
      w = fakeexec.world{ dry_run = true }
      age(w, 10 * 86400)
      local r = w.ctx.pkg.installed { "nginx", "redis-server" }
      assert.equal("would change", r.status)
      assert.is_true(r.changed)
      assert.equal("install redis-server", r.message)
      assert.same({ DPKG }, w.fake:lines())
    end)

    it("rejects what is not a package name", function()
      w = fakeexec.world()
      assert.has_error(function() w.ctx.pkg.installed { "nginx; rm -rf /" } end)
      assert.equal(0, w.fake:count())
    end)
  end)

  describe("absent", function()
    it("removes only the installed ones", function()
      w = fakeexec.world()
      w.fake:on("apt-get", { code = 0 })
      assert.equal("ok", w.ctx.pkg.absent({ "telnet", "redis-server" }).status) -- rc is not installed
      local r = w.ctx.pkg.absent { "ufw", "telnet", purge = true }
      assert.equal("purge ufw", r.message)
      assert.same({ "apt-get -q -y -o DPkg::Lock::Timeout=300 purge ufw" }, w.fake:lines "apt-get")
    end)
  end)

  describe("refresh", function()
    it("updates only when older than max_age", function()
      w = fakeexec.world()
      w.fake:on("apt-get", { code = 0 })
      age(w, 600)
      local r = w.ctx.pkg.refresh { max_age = 3600 }
      assert.equal("ok", r.status)
      assert.equal("10 min old", r.message)
      age(w, 7200)
      r = w.ctx.pkg.refresh { max_age = 3600 }
      assert.equal("changed", r.status)
      assert.equal("apt-get update (2 h old)", r.message)
      assert.equal("ok", w.ctx.pkg.refresh({ max_age = 3600 }).status) -- once per run
      assert.same({ UPDATE }, w.fake:lines())
    end)

    it("reads a cache age with a fraction of a second (real mtimes have one)", function()
      w = fakeexec.world()
      age(w, 90) -- whole seconds on disk, but now() has a fraction
      -- a second may tick between the touch and the check on a loaded machine
      local s = w.ctx.pkg.refresh({ max_age = 3600 }).message:match("^(%d+) s old$")
      assert.truthy(s == "90" or s == "91", s)
    end)

    it("would update in a dry run without running it", function()
      w = fakeexec.world{ dry_run = true }
      age(w, 7200)
      assert.equal("would change", w.ctx.pkg.refresh({ max_age = 60 }).status)
      assert.same({}, w.fake:lines())
    end)
  end)
end)
