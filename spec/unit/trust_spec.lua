-- phanes.trust: OpenSSH's StrictModes for what phanes loads as root, on
-- real files and directories (scratch directories under build/spec_tmp,
-- whose parents are the checkout's).
describe("phanes.trust", function()
  local trust = require "phanes.trust"
  local file = require "phanes.file"
  local sys = require "phanes.sys"
  local fakeexec = require "spec.support.fakeexec"
  local dir, uids

  local function mode(s) return tonumber(s, 8) end
  local function root_only()
    if sys.geteuid() ~= 0 then
      pending "needs root (chown)"
      return true
    end
  end

  before_each(function()
    dir = fakeexec.tmpdir()
    uids = trust.uids {}
    assert(file.write(dir .. "/m.lua", "return {}\n", { mode = mode "0644" }))
  end)
  after_each(function()
    os.execute("chmod -R u+w,go-w '" .. dir .. "'")
    fakeexec.rmtree(dir)
  end)

  it("trusts root, the real user and SUDO_UID, nobody else", function()
    local u = trust.uids { SUDO_UID = "1234" }
    assert.is_true(u[0])
    assert.is_true(u[sys.getuid()])
    assert.is_true(u[1234])
    assert.is_nil(u[1235])
    assert.is_nil(trust.uids({ SUDO_UID = "x" })[1235])
    assert.equal(sys.geteuid() == 0, trust.active())
  end)

  it("accepts a file nobody else can change and returns its real path", function()
    assert.equal(sys.realpath(dir .. "/m.lua"), trust.check(dir .. "/m.lua", { uids = uids }))
    assert.truthy(trust.tree(dir, { uids = uids }))
  end)

  it("refuses a group- or world-writable file, naming it, its owner and the fix", function()
    assert(file.chmod(dir .. "/m.lua", mode "0664"))
    local real, err = trust.check(dir .. "/m.lua", { uids = uids })
    assert.is_nil(real)
    local me = (sys.getpwnam(sys.getuid()) or {}).name
    assert.equal(string.format("refusing %s/m.lua (owner %s (uid %d)) as root: %s/m.lua is group-writable "
      .. "(mode 0664, owner %s (uid %d)); if you trust it: chmod go-w %s/m.lua (%s)", dir, me, sys.getuid(),
      dir, me, sys.getuid(), dir, trust.RULE), err)
    assert(file.chmod(dir .. "/m.lua", mode "0646"))
    assert.matches("m%.lua is world%-writable %(mode 0646", select(2, trust.check(dir .. "/m.lua", { uids = uids })))
  end)

  it("refuses a file under a directory others can write, sticky or not", function()
    assert(file.mkdir(dir .. "/a/b", { parents = true, mode = mode "0755" }))
    assert(file.write(dir .. "/a/b/x.lua", "return 1\n", { mode = mode "0644" }))
    assert(file.chmod(dir .. "/a", mode "0775"))
    local _, err = trust.check(dir .. "/a/b/x.lua", { uids = uids, from = "--path" })
    assert.matches("^refusing " .. dir:gsub("%p", "%%%0") .. "/a/b/x%.lua %(owner [^,]+, on the search path from %-%-path%) as root: "
      .. dir:gsub("%p", "%%%0") .. "/a is group%-writable %(mode 0775", err)
    assert(file.chmod(dir .. "/a", mode "1777"))
    _, err = trust.check(dir .. "/a/b/x.lua", { uids = uids })
    assert.matches("/a is world%-writable %(mode 1777, owner [^;]+; move it to a directory only root can write", err)
    assert.matches("world%-writable", select(2, trust.tree(dir, { uids = uids })))
  end)

  it("refuses anything under /tmp (sticky, world-writable)", function()
    local path = os.tmpname()
    local _, err = trust.check(path, { uids = uids })
    os.remove(path)
    assert.matches("as root: /tmp is world%-writable %(mode 1777, owner root", err)
  end)

  it("judges a symlink by where it leads", function()
    local outside = os.tmpname() -- under /tmp
    assert(file.symlink(outside, dir .. "/link.lua"))
    local _, err = trust.check(dir .. "/link.lua", { uids = uids })
    os.remove(outside)
    assert.matches("^refusing " .. dir:gsub("%p", "%%%0") .. "/link%.lua = /tmp/lua_%w+ %(owner", err)
    assert.matches("/tmp is world%-writable", err)
    -- a link from /tmp to a good file: the file is what is read
    local link = os.tmpname()
    os.remove(link)
    assert(file.symlink(dir .. "/m.lua", link))
    local real = trust.check(link, { uids = uids })
    os.remove(link)
    assert.equal(sys.realpath(dir .. "/m.lua"), real)
  end)

  it("refuses a file or a directory owned by another user, unless that user ran sudo", function()
    if root_only() then return end
    assert(file.chown(dir .. "/m.lua", "nobody"))
    local _, err = trust.check(dir .. "/m.lua", { uids = uids })
    assert.matches("^refusing .*/m%.lua %(owner nobody %(uid 65534%)%) as root: .*/m%.lua is owned by nobody "
      .. "%(uid 65534%), not by root or the invoking user; if you trust it: chown root .*/m%.lua", err)
    assert.truthy(trust.check(dir .. "/m.lua", { uids = trust.uids { SUDO_UID = "65534" } }))
    assert(file.chown(dir .. "/m.lua", "root"))
    assert(file.mkdir(dir .. "/d", { mode = mode "0755", owner = "nobody" }))
    assert(file.write(dir .. "/d/x.lua", "return 1\n", { mode = mode "0644", owner = "root" }))
    _, err = trust.check(dir .. "/d/x.lua", { uids = uids })
    assert.matches("%(owner root %(uid 0%)%) as root: .*/d is owned by nobody", err)
    assert.matches("/d is owned by nobody", select(2, trust.tree(dir, { uids = uids })))
  end)

  it("says why it cannot check a missing file", function()
    local _, err = trust.check(dir .. "/none.lua", { uids = uids })
    assert.equal("cannot check " .. dir .. "/none.lua: " .. dir .. "/none.lua: No such file or directory", err)
  end)
end)
