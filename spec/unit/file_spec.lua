-- phanes.file: files from Lua through the C primitive.
describe("phanes.file", function()
  local file = require "phanes.file"
  local exec = require "phanes.exec"
  local sys = require "phanes.sys"
  local dir

  before_each(function()
    dir = assert(file.mkdtemp())
  end)

  after_each(function()
    assert(file.remove(dir, true))
    assert.is_false(file.exists(dir))
  end)

  local function oct(s) return tonumber(s, 8) end

  describe("read and write", function()
    it("round-trips binary data", function()
      local data = "line 1\n\0\255 binary\r\n" .. string.rep("x", 200000)
      assert.is_true(file.write(dir .. "/f", data))
      assert.equal(data, file.read(dir .. "/f"))
      assert.is_true(file.write(dir .. "/empty", ""))
      assert.equal("", file.read(dir .. "/empty"))
    end)

    it("reads files whose size stat does not know", function()
      local s = assert(file.read "/proc/self/status")
      assert.truthy(s:match "Pid:")
    end)

    it("returns nil, err, errno for a missing file", function()
      local data, err, errno = file.read(dir .. "/none")
      assert.is_nil(data)
      assert.equal(dir .. "/none: No such file or directory", err)
      assert.equal(2, errno)
    end)

    it("creates 0644 by default, exactly opts.mode when given", function()
      assert(file.write(dir .. "/a", "x"))
      assert.equal(oct "644", file.stat(dir .. "/a").mode)
      assert(file.write(dir .. "/b", "x", { mode = oct "0600" }))
      assert.equal(oct "600", file.stat(dir .. "/b").mode)
      assert(file.write(dir .. "/c", "x", { mode = oct "4775" }))
      assert.equal(oct "4775", file.stat(dir .. "/c").mode)
    end)

    it("keeps an existing file's mode and owner unless told otherwise", function()
      local p = dir .. "/keep"
      assert(file.write(p, "1", { mode = oct "640", owner = "nobody", group = "nogroup" }))
      assert(file.write(p, "2"))
      local st = file.stat(p)
      assert.equal(oct "640", st.mode)
      assert.equal("nobody", st.owner)
      assert.equal("nogroup", st.group)
      assert.equal("2", file.read(p))
    end)

    it("sets owner and group by name or id", function()
      local p = dir .. "/owned"
      assert(file.write(p, "x", { owner = "nobody", group = 65534 }))
      local st = file.stat(p)
      assert.equal(65534, st.uid)
      assert.equal(65534, st.gid)
      assert(file.write(p, "x", { owner = 0, group = "root" }))
      assert.equal("root", file.stat(p).owner)
    end)

    it("replaces atomically and leaves no temp file behind", function()
      local p = dir .. "/conf"
      assert(file.write(p, "old"))
      local f = assert(io.open(p)) -- a reader of the old file keeps it whole
      assert(file.write(p, "new"))
      assert.equal("old", f:read "a")
      f:close()
      assert.equal("new", file.read(p))
      assert.same({ "conf" }, file.list(dir))
    end)

    it("writes through a symlink to an existing file", function()
      assert(file.write(dir .. "/real", "a"))
      assert(file.symlink("real", dir .. "/link"))
      assert(file.write(dir .. "/link", "b"))
      assert.equal("link", file.stat(dir .. "/link").type)
      assert.equal("b", file.read(dir .. "/real"))
    end)

    it("fails cleanly when the directory does not exist", function()
      local ok, err, errno = file.write(dir .. "/no/such/f", "x")
      assert.is_nil(ok)
      assert.equal(dir .. "/no/such/f: No such file or directory", err)
      assert.equal(2, errno)
    end)

    it("fails cleanly under a regular file", function()
      assert(file.write(dir .. "/plain", "x"))
      local ok, err = file.write(dir .. "/plain/f", "x")
      assert.is_nil(ok)
      assert.equal(dir .. "/plain/f: Not a directory", err)
    end)

    it("reports an unknown user or group and writes nothing", function()
      local ok, err = file.write(dir .. "/u", "x", { owner = "phanes-no-such-user" })
      assert.is_nil(ok)
      assert.equal(dir .. "/u: unknown user 'phanes-no-such-user'", err)
      ok, err = file.write(dir .. "/u", "x", { group = "phanes-no-such-group" })
      assert.is_nil(ok)
      assert.equal(dir .. "/u: unknown group 'phanes-no-such-group'", err)
      assert.same({}, file.list(dir))
    end)

    it("reports a full disk, removes the temp file, keeps the old content", function()
      -- A 64 KiB tmpfs in a private mount namespace, written by a child phanes.
      local sdir = require("spec.support.fakeexec").tmpdir() -- not under /tmp: see tmpdir()
      local script = sdir .. "/enospc.lua"
      local mnt = dir .. "/mnt"
      assert(file.mkdir(mnt))
      assert(file.write(script, [[
        local file = require "phanes.file"
        local mnt = ...
        assert(file.write(mnt .. "/conf", "old"))
        local ok, err = file.write(mnt .. "/conf", string.rep("x", 1024 * 1024))
        io.write(tostring(ok), "|", err, "|", file.read(mnt .. "/conf"), "|",
          table.concat(file.list(mnt), ","))
      ]]))
      local r = assert(exec.run { argv = { "unshare", "-m", "sh", "-c",
        'mount -t tmpfs -o size=64k tmpfs "$1" && exec "$2" lua "$3" "$1"', "sh", mnt, sys.exe(), script } })
      require("spec.support.fakeexec").rmtree(sdir)
      if r.code ~= 0 and r.stderr:match "unshare" then
        pending("no mount namespace here: " .. r.stderr)
        return
      end
      assert.equal(0, r.code, r.stderr)
      assert.equal("nil|" .. mnt .. "/conf: No space left on device|old|conf", r.stdout)
    end)
  end)

  describe("stat", function()
    it("describes files, directories and links", function()
      assert(file.write(dir .. "/f", "12345", { mode = oct "640" }))
      local st = assert(file.stat(dir .. "/f"))
      assert.equal("file", st.type)
      assert.equal(oct "640", st.mode)
      assert.equal(5, st.size)
      assert.equal(sys.geteuid(), st.uid)
      assert.is_string(st.owner)
      assert.is_string(st.group)
      assert.truthy(math.abs(st.mtime - sys.time()) < 60)
      assert.equal("directory", file.stat(dir).type)
      assert.equal(oct "700", file.stat(dir).mode)
      assert(file.symlink("f", dir .. "/l"))
      local l = file.stat(dir .. "/l")
      assert.equal("link", l.type)
      assert.equal("f", l.target)
      local followed = file.stat(dir .. "/l", true)
      assert.equal("file", followed.type)
      assert.is_nil(followed.target)
      assert.equal("other", file.stat("/dev/null", true).type)
    end)

    it("returns nil, err, errno when absent", function()
      local st, err, errno = file.stat(dir .. "/none")
      assert.is_nil(st)
      assert.equal(dir .. "/none: No such file or directory", err)
      assert.equal(2, errno)
      assert.is_false(file.exists(dir .. "/none"))
      assert(file.symlink("dangling", dir .. "/d"))
      assert.is_true(file.exists(dir .. "/d"))
    end)
  end)

  describe("mkdir", function()
    it("creates with the exact mode, parents on request", function()
      local ok, created = file.mkdir(dir .. "/a", { mode = oct "2775" })
      assert.is_true(ok)
      assert.is_true(created)
      assert.equal(oct "2775", file.stat(dir .. "/a").mode)
      ok, created = file.mkdir(dir .. "/a")
      assert.is_true(ok)
      assert.is_false(created)
      local none, err = file.mkdir(dir .. "/x/y/z")
      assert.is_nil(none)
      assert.equal(dir .. "/x/y/z: No such file or directory", err)
      assert(file.mkdir(dir .. "/x//y/z/", { parents = true, mode = oct "700", owner = "nobody" }))
      assert.equal(oct "755", file.stat(dir .. "/x/y").mode)
      assert.equal(oct "700", file.stat(dir .. "/x/y/z").mode)
      assert.equal("nobody", file.stat(dir .. "/x/y/z").owner)
      assert.equal("root", file.stat(dir .. "/x/y").owner)
    end)

    it("fails when a file is in the way", function()
      assert(file.write(dir .. "/f", ""))
      local ok, err = file.mkdir(dir .. "/f")
      assert.is_nil(ok)
      assert.equal(dir .. "/f: Not a directory", err)
      ok, err = file.mkdir(dir .. "/f/g", { parents = true })
      assert.is_nil(ok)
      assert.equal(dir .. "/f/g: Not a directory", err)
    end)
  end)

  describe("remove", function()
    it("removes files, empty dirs, and is fine when absent", function()
      assert(file.write(dir .. "/f", ""))
      assert.is_true(file.remove(dir .. "/f"))
      assert.is_false(file.exists(dir .. "/f"))
      assert.is_true(file.remove(dir .. "/f"))
      assert(file.mkdir(dir .. "/d"))
      assert.is_true(file.remove(dir .. "/d"))
    end)

    it("refuses a non-empty directory unless recursive", function()
      assert(file.mkdir(dir .. "/t/u/v", { parents = true }))
      assert(file.write(dir .. "/t/u/v/f", "x"))
      local ok, err = file.remove(dir .. "/t")
      assert.is_nil(ok)
      assert.equal(dir .. "/t: Directory not empty", err)
      assert.is_true(file.remove(dir .. "/t", true))
      assert.is_false(file.exists(dir .. "/t"))
    end)

    it("does not follow symlinks when recursive", function()
      assert(file.mkdir(dir .. "/outside"))
      assert(file.write(dir .. "/outside/keep", "x"))
      assert(file.mkdir(dir .. "/t"))
      assert(file.symlink(dir .. "/outside", dir .. "/t/link"))
      assert.is_true(file.remove(dir .. "/t", true))
      assert.equal("x", file.read(dir .. "/outside/keep"))
      assert.is_true(file.remove(dir .. "/outside/", true))
    end)
  end)

  describe("links, modes, owners, listing", function()
    it("replaces a symlink atomically", function()
      assert(file.symlink("one", dir .. "/l"))
      assert.equal("one", file.readlink(dir .. "/l"))
      assert(file.symlink("two", dir .. "/l"))
      assert.equal("two", file.readlink(dir .. "/l"))
      assert.same({ "l" }, file.list(dir))
      local none, err = file.readlink(dir .. "/none")
      assert.is_nil(none)
      assert.equal(dir .. "/none: No such file or directory", err)
      none, err = file.symlink("x", dir .. "/no/l")
      assert.is_nil(none)
      assert.equal(dir .. "/no/l: No such file or directory", err)
    end)

    it("chmod and chown", function()
      assert(file.write(dir .. "/f", ""))
      assert.is_true(file.chmod(dir .. "/f", oct "600"))
      assert.equal(oct "600", file.stat(dir .. "/f").mode)
      assert.is_true(file.chown(dir .. "/f", "nobody"))
      assert.equal("nobody", file.stat(dir .. "/f").owner)
      assert.is_true(file.chown(dir .. "/f", nil, "nogroup"))
      assert.equal("nobody", file.stat(dir .. "/f").owner)
      assert.equal("nogroup", file.stat(dir .. "/f").group)
      local ok, err = file.chown(dir .. "/f", "phanes-no-such-user")
      assert.is_nil(ok)
      assert.equal(dir .. "/f: unknown user 'phanes-no-such-user'", err)
      ok, err = file.chmod(dir .. "/none", oct "600")
      assert.is_nil(ok)
      assert.equal(dir .. "/none: No such file or directory", err)
    end)

    it("lists a directory sorted", function()
      for _, n in ipairs { "b", "a", "C", ".hidden", "a2" } do assert(file.write(dir .. "/" .. n, "")) end
      assert.same({ ".hidden", "C", "a", "a2", "b" }, file.list(dir))
      local none, err = file.list(dir .. "/none")
      assert.is_nil(none)
      assert.equal(dir .. "/none: No such file or directory", err)
    end)
  end)

  describe("sha256", function()
    it("hashes strings and files", function()
      assert.equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", file.sha256 "")
      assert.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", file.sha256 "abc")
      local data = string.rep("0123456789", 100000)
      assert(file.write(dir .. "/f", data))
      local r = assert(exec.run { argv = { "sha256sum", dir .. "/f" } })
      assert.equal(r.stdout:match "^%x+", file.sha256_file(dir .. "/f"))
      assert.equal(file.sha256(data), file.sha256_file(dir .. "/f"))
      local none, err = file.sha256_file(dir .. "/none")
      assert.is_nil(none)
      assert.equal(dir .. "/none: No such file or directory", err)
      none, err = file.sha256_file(dir)
      assert.is_nil(none)
      assert.equal(dir .. ": Is a directory", err)
    end)
  end)

  -- As root, a path is walked one component at a time without following
  -- links: in a directory another user can write (here nobody's, or a
  -- sticky world-writable one like /tmp), a symlink, a file of a third
  -- user, or a file with several hard links is refused and nothing changes.
  describe("in directories others can write", function()
    local root = sys.geteuid() == 0
    local user, secret -- nobody's directory, a root file it must not reach
    local SECRET = "root only\n"

    local function as_nobody(...)
      local r = assert(exec.run { argv = { "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", ... } })
      assert.equal(0, r.code, r.stderr)
    end

    -- the root file is as it was: content, mode, owner
    local function intact()
      assert.equal(SECRET, file.read(secret))
      local st = file.stat(secret)
      assert.equal(oct "600", st.mode)
      assert.equal(0, st.uid)
      assert.equal(0, st.gid)
      assert.same({ "secret" }, file.list(dir .. "/rootdir"))
    end

    before_each(function()
      if not root then return end
      assert(file.chmod(dir, oct "755"))
      user = dir .. "/user"
      assert(file.mkdir(user, { owner = "nobody", group = "nogroup", mode = oct "755" }))
      assert(file.mkdir(dir .. "/rootdir", { mode = oct "755" }))
      secret = dir .. "/rootdir/secret"
      assert(file.write(secret, SECRET, { mode = oct "600" }))
    end)

    local function refused(pattern, ok, err, errno)
      assert.is_nil(ok)
      assert.equal(1, errno) -- EPERM
      assert.matches(pattern, err, 1, true)
    end

    it("refuses a symlink at the end, planted by the user, for every operation", function()
      if not root then pending "needs root" return end
      as_nobody("ln", "-s", secret, user .. "/authorized_keys")
      local p = user .. "/authorized_keys"
      local msg = p .. ": a symlink owned by nobody, in " .. user .. ", a directory nobody can write"
      refused(msg, file.write(p, "x", { owner = "nobody" }))
      refused(msg, file.read(p))
      refused(msg, file.chmod(p, oct "644"))
      refused(msg, file.chown(p, "nobody", "nogroup"))
      refused(msg, file.stat(p, true))
      refused(msg, file.mkdir(p))
      refused(msg, file.check(p))
      intact()
      -- the link itself can be looked at and removed
      assert.equal("link", file.stat(p).type)
      assert.equal(secret, file.readlink(p))
      assert(file.remove(p))
      intact()
      assert(file.write(p, "key\n", { owner = "nobody", mode = oct "600" }))
      assert.equal("nobody", file.stat(p).owner)
    end)

    it("refuses a symlink in the middle of the path", function()
      if not root then pending "needs root" return end
      as_nobody("ln", "-s", dir .. "/rootdir", user .. "/.ssh")
      local p = user .. "/.ssh/secret"
      local msg = user .. "/.ssh: a symlink owned by nobody, in " .. user
      refused(msg, file.write(p, "x"))
      refused(msg, file.read(p))
      refused(msg, file.chown(p, "nobody"))
      refused(msg, file.chmod(user .. "/.ssh", oct "777"))
      refused(msg, file.mkdir(user .. "/.ssh/new", { parents = true }))
      refused(msg, file.write(user .. "/.ssh/new", "x"))
      refused(msg, file.stat(p))
      refused(msg, file.list(user .. "/.ssh"))
      refused(msg, file.remove(p))
      refused(msg, file.symlink("/x", user .. "/.ssh/l"))
      refused(msg, file.mkdtemp(user .. "/.ssh/tmp-"))
      assert.is_false(file.exists(p))
      intact()
    end)

    it("refuses a file of a third user, and one with several hard links", function()
      if not root then pending "needs root" return end
      local p = user .. "/other"
      assert(file.write(p, "x", { owner = 4321, group = 4321 }))
      refused(p .. ": owned by uid 4321, in " .. user .. ", a directory nobody can write", file.read(p))
      refused("owned by uid 4321", file.write(p, "y"))
      refused("owned by uid 4321", file.chmod(p, oct "600"))
      assert.equal(4321, file.stat(p).uid)
      assert(exec.run { argv = { "ln", secret, user .. "/hard" } })
      refused("a file owned by root with 2 hard links", file.chown(user .. "/hard", "nobody"))
      refused("2 hard links", file.read(user .. "/hard"))
      refused("owned by uid 4321", file.check(p))
      assert.same({ true, false }, { file.check(user .. "/absent") })
      assert.same({ true, true }, { file.check(secret) })
      intact()
    end)

    it("refuses links in a sticky world-writable directory, naming every user", function()
      if not root then pending "needs root" return end
      local tmp = dir .. "/tmp"
      assert(file.mkdir(tmp, { mode = oct "1777" }))
      as_nobody("ln", "-s", secret, tmp .. "/report.json")
      refused(tmp .. "/report.json: a symlink owned by nobody, in " .. tmp .. ", a directory every user can write",
        file.write(tmp .. "/report.json", "{}"))
      intact()
      assert(file.write(tmp .. "/mine", "{}")) -- a new root file there is fine
      -- a directory of another user there: nothing inside is touched
      as_nobody("mkdir", tmp .. "/nobodys")
      refused(tmp .. "/nobodys: owned by nobody, in " .. tmp .. ", a directory every user can write",
        file.write(tmp .. "/nobodys/f", "x"))
      refused(tmp .. "/nobodys: owned by nobody", file.mkdir(tmp .. "/nobodys/d/e", { parents = true }))
      assert.same({}, file.list(tmp .. "/nobodys"))
    end)

    it("still works on the user's own files and follows root's links in root's directories", function()
      if not root then pending "needs root" return end
      local ssh = user .. "/.ssh"
      as_nobody("mkdir", "-m", "700", ssh)
      as_nobody("sh", "-c", "echo old > " .. ssh .. "/authorized_keys")
      assert.equal("old\n", file.read(ssh .. "/authorized_keys"))
      assert(file.write(ssh .. "/authorized_keys", "new\n", { mode = oct "600" }))
      local st = file.stat(ssh .. "/authorized_keys")
      assert.equal("nobody", st.owner) -- kept
      assert(file.chmod(ssh, oct "700"))
      assert(file.chown(ssh .. "/authorized_keys", "nobody", "nogroup"))
      assert(file.write(ssh .. "/root-owned", "x", { owner = "root" }))
      assert.equal("x", file.read(ssh .. "/root-owned"))
      -- /etc/resolv.conf style: root's link in a root directory, followed
      assert(file.symlink("rootdir/secret", dir .. "/link"))
      assert.equal(SECRET, file.read(dir .. "/link"))
      assert(file.chmod(dir .. "/link", oct "640"))
      assert.equal(oct "640", file.stat(secret).mode)
      assert(file.symlink("../rootdir", dir .. "/rootdir/up"))
      assert.equal(SECRET, file.read(dir .. "/rootdir/up/up/up/secret"))
      assert.equal(SECRET, file.read(dir .. "/rootdir/../rootdir/./secret"))
      assert(file.symlink("loop", dir .. "/loop"))
      local ok, err = file.read(dir .. "/loop")
      assert.is_nil(ok)
      assert.equal(dir .. "/loop: Too many levels of symbolic links", err)
    end)
  end)

  describe("mkdtemp", function()
    it("makes a new 0700 directory under the prefix, a new one each time", function()
      local a = assert(file.mkdtemp(dir .. "/run-"))
      local b = assert(file.mkdtemp(dir .. "/run-"))
      assert.not_equal(a, b)
      assert.matches("^" .. dir:gsub("%p", "%%%0") .. "/run%-[%w]+$", a)
      assert.equal(#dir + 11, #a)
      for _, p in ipairs { a, b } do
        local st = file.stat(p)
        assert.equal("directory", st.type)
        assert.equal(oct "700", st.mode)
        assert.equal(sys.geteuid(), st.uid)
      end
      local d = assert(file.mkdtemp())
      assert.matches("/phanes%-[%w]+$", d)
      assert.equal(oct "700", file.stat(d).mode)
      assert(file.remove(d))
      local ok, err = file.mkdtemp(dir .. "/none/x-")
      assert.is_nil(ok)
      assert.equal(dir .. "/none/x-: No such file or directory", err)
      assert.has_error(function() file.mkdtemp(dir .. "/") end)
    end)
  end)

  it("raises on misuse", function()
    assert.has_error(function() file.read() end)
    assert.has_error(function() file.write(dir .. "/f") end)
    assert.has_error(function() file.write(dir .. "/f", {}) end)
    assert.has_error(function() file.write(dir .. "/f", "x", "0644") end)
    assert.has_error(function() file.write(dir .. "/f", "x", { mode = "0644" }) end)
    assert.has_error(function() file.write(dir .. "/f", "x", { mode = 99999 }) end)
    assert.has_error(function() file.write(dir .. "/f", "x", { owner = {} }) end)
    assert.has_error(function() file.mkdir(dir .. "/d", { group = true }) end)
    assert.has_error(function() file.chmod(dir, "755") end)
    assert.has_error(function() file.sha256() end)
    assert.has_error(function() file.symlink("x") end)
    assert.same({}, file.list(dir))
  end)
end)

-- file.diff against GNU diff -u: same text, timestamps in the headers aside.
describe("phanes.file.diff", function()
  local file = require "phanes.file"
  local exec = require "phanes.exec"
  local dir

  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(file.mkdir(dir))
  end)
  after_each(function() assert(file.remove(dir, true)) end)

  local function gnu(old, new, context)
    assert(file.write(dir .. "/old", old))
    assert(file.write(dir .. "/new", new))
    local r = assert(exec.run { argv = { "diff", "-U" .. (context or 3), dir .. "/old", dir .. "/new" } })
    assert.truthy(r.code == 0 or r.code == 1, r.stderr)
    return (r.stdout:gsub("^%-%-%- [^\n]*\n%+%+%+ [^\n]*\n", "--- a\n+++ b\n"))
  end

  local cases = {
    { "a\nb\nc\n", "a\nB\nc\n" },
    { "a\nb\nc\n", "a\nb\nc\nd\n" },
    { "a\nb\nc\n", "b\nc\n" },
    { "", "one\ntwo\n" },
    { "one\ntwo\n", "" },
    { "a\nb", "a\nc" },
    { "a\nb", "a\nb\n" },
    { "a\nb\n", "a\nb" },
    { "x", "y" },
    { "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n14\n15\n16\n17\n18\n19\n20\n",
      "1\nII\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n14\n15\n16\n17\n18\nXIX\n20\n" },
    { "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n", "1\nII\n3\n4\n5\n6\n7\n8\nIX\n10\n" },
    { "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n", "1\nII\n3\n4\n5\n6\n7\n8\n9\nX\n" },
    { "a\n\n\nb\n", "a\n\nb\n\n" },
    { "keep\nold1\nold2\nold3\nkeep2\n", "keep\nnew1\nnew2\nkeep2\n" },
    { "PermitRootLogin yes\nPasswordAuthentication yes\nX11Forwarding yes\n",
      "PermitRootLogin no\nPasswordAuthentication no\nX11Forwarding yes\nAllowUsers deploy\n" },
  }

  it("matches diff -u on typical cases", function()
    for i, c in ipairs(cases) do
      for _, ctx in ipairs { 3, 1, 0 } do
        assert.equal(gnu(c[1], c[2], ctx), file.diff(c[1], c[2], { context = ctx }),
          "case " .. i .. " context " .. ctx)
      end
    end
  end)

  it("is empty for equal texts and uses opts.from and opts.to", function()
    assert.equal("", file.diff("a\n", "a\n"))
    assert.equal("", file.diff("", ""))
    assert.equal("--- /etc/x (current)\n+++ /etc/x (wanted)\n@@ -1 +1 @@\n-a\n+b\n",
      file.diff("a\n", "b\n", { from = "/etc/x (current)", to = "/etc/x (wanted)" }))
  end)

  it("gives a minimal diff that patch(1) applies, on random texts", function()
    math.randomseed(42)
    local words = { "a", "b", "c", "d", "", "e" }
    local function text(n)
      local t = {}
      for i = 1, n do t[i] = words[math.random(#words)] end
      return table.concat(t, "\n") .. (math.random(4) == 1 and "" or "\n")
    end
    local function changed(d)
      local n = 0
      for l in d:gmatch "[^\n]*" do if l:match "^[-+][^-+]" or l == "-" or l == "+" then n = n + 1 end end
      return n
    end
    for i = 1, 60 do
      local old, new = text(math.random(0, 30)), text(math.random(0, 30))
      local ours = file.diff(old, new)
      assert.equal(changed(gnu(old, new)), changed(ours), "size of diff " .. i)
      if ours ~= "" then
        assert(file.write(dir .. "/p", old))
        local r = assert(exec.run { argv = { "patch", "-s", dir .. "/p" }, stdin = ours })
        assert.equal(0, r.code, r.stdout .. r.stderr .. "\n" .. ours)
        assert.equal(new, file.read(dir .. "/p"), "patched " .. i)
      end
    end
  end)

  it("stays fast on huge unrelated inputs, still correct", function()
    local a, b = {}, {}
    for i = 1, 100000 do a[i] = "old " .. i; b[i] = "new " .. i end
    local old, new = table.concat(a, "\n") .. "\n", table.concat(b, "\n") .. "\n"
    local t0 = require("phanes.sys").now()
    local d = file.diff(old, new)
    assert.truthy(require("phanes.sys").now() - t0 < 5)
    local head = "--- a\n+++ b\n@@ -1,100000 +1,100000 @@\n-old 1\n-old 2\n"
    assert.equal(head, d:sub(1, #head))
    assert(file.write(dir .. "/p", old))
    local r = assert(exec.run { argv = { "patch", "-s", dir .. "/p" }, stdin = d })
    assert.equal(0, r.code, r.stderr)
    assert.equal(new, file.read(dir .. "/p"))
  end)

  it("raises on misuse", function()
    assert.has_error(function() file.diff() end)
    assert.has_error(function() file.diff("a", {}) end)
    assert.has_error(function() file.diff("a", "b", { context = -1 }) end)
    assert.has_error(function() file.diff("a", "b", { from = {} }) end)
    assert.has_error(function() file.diff("a", "b", "c") end)
  end)
end)
