-- apt.repo: list file, key (text or fetched once), apt cache marked stale.
local fakeexec = require "support.fakeexec"
local F = require "phanes.file"

local fit = it
local LINE = "deb [signed-by=/etc/apt/keyrings/docker.asc] https://download.docker.com/linux/debian bookworm stable"
local KEY = "-----BEGIN PGP PUBLIC KEY BLOCK-----\nabc\n-----END PGP PUBLIC KEY BLOCK-----\n"
local UPDATE = "apt-get -q -y -o DPkg::Lock::Timeout=300 update"

describe("apt.repo", function()
  local w
  after_each(function() if w then w.close() w = nil end end)

  fit("writes the list and the key text, then the next install updates first", function()
    w = fakeexec.world()
    w.fake:on("apt-get", { code = 0 })
    local r = w.ctx.apt.repo { name = "docker", line = LINE, key = KEY }
    assert.equal("changed", r.status)
    assert.equal(LINE .. "\n", fakeexec.read(w.path "/etc/apt/sources.list.d/docker.list"))
    assert.equal(KEY, fakeexec.read(w.path "/etc/apt/keyrings/docker.asc"))
    assert.equal("0644", string.format("%04o", F.stat(w.path "/etc/apt/keyrings/docker.asc").mode))
    assert.equal(w.path "/etc/apt/sources.list.d/docker.list", w.last().target)
    w.ctx.pkg.installed { "docker-ce" }
    assert.same({ UPDATE, "apt-get -q -y -o DPkg::Lock::Timeout=300 install -o Dpkg::Options::=--force-confdef "
      .. "-o Dpkg::Options::=--force-confold --no-install-recommends docker-ce" }, w.fake:lines "apt-get")
  end)

  fit("is ok when nothing changed, and then the cache is not marked stale", function()
    w = fakeexec.world()
    w.ctx.apt.repo { name = "docker", line = LINE, key = KEY }
    assert.is_true(w.run:was_invalidated "apt_lists")
    w.run.invalidated = {}
    assert.equal("ok", w.ctx.apt.repo({ name = "docker", line = LINE, key = KEY }).status)
    assert.is_false(w.run:was_invalidated "apt_lists")
  end)

  fit("fetches key_url with curl only when the key file is missing", function()
    w = fakeexec.world()
    fakeexec.write(w.path "/bin/curl", "")
    w.fake:on(w.path "/bin/curl", { stdout = KEY })
    local r = w.ctx.apt.repo { name = "docker", line = LINE, key_url = "https://download.docker.com/linux/debian/gpg" }
    assert.equal("changed", r.status)
    assert.equal(KEY, fakeexec.read(w.path "/etc/apt/keyrings/docker.asc"))
    assert.same({ w.path "/bin/curl" .. " -fsSL --retry 2 --max-time 60 https://download.docker.com/linux/debian/gpg" },
      w.fake:lines())
    assert.equal("ok", w.ctx.apt.repo({ name = "docker", line = LINE,
      key_url = "https://download.docker.com/linux/debian/gpg" }).status)
    assert.equal(1, w.fake:count())
  end)

  fit("uses wget without curl, and says what to do with neither", function()
    w = fakeexec.world()
    local ok, e = pcall(w.ctx.apt.repo, { name = "pgdg", line = "deb x y z", key_url = "https://x/key.gpg" })
    assert.is_false(ok)
    assert.matches("needs curl or wget", e.message)
    fakeexec.write(w.path "/bin/wget", "")
    w.fake:on(w.path "/bin/wget", { stdout = "\1\2binary" })
    w.ctx.apt.repo { name = "pgdg", line = { "deb x y z", "deb-src x y z" }, key_url = "https://x/key.gpg" }
    assert.equal("\1\2binary", fakeexec.read(w.path "/etc/apt/keyrings/pgdg.gpg"))
    assert.equal("deb x y z\ndeb-src x y z\n", fakeexec.read(w.path "/etc/apt/sources.list.d/pgdg.list"))
  end)

  fit("plans in a dry run: fetch and list as diff, nothing written or fetched", function()
    w = fakeexec.world{ dry_run = true }
    local before = fakeexec.tree(w.root)
    local r = w.ctx.apt.repo { name = "docker", line = LINE, key_url = "https://download.docker.com/linux/debian/gpg" }
    assert.equal("would change", r.status)
    assert.matches("fetch key https://download.docker.com/linux/debian/gpg", r.message, 1, true)
    assert.matches("+" .. LINE, r.diff, 1, true)
    assert.same(before, fakeexec.tree(w.root))
    assert.equal(0, w.fake:count())
    assert.equal("would change", w.ctx.pkg.refresh({ max_age = 86400 }).status) -- sources would change
  end)

  it("requires a sane name", function()
    w = fakeexec.world()
    assert.has_error(function() w.ctx.apt.repo { name = "../x", line = "deb x" } end)
  end)
end)
