-- user, group, authorized_keys and sudoers, on a temp root with fixture
-- passwd/group files and a fake exec.
local fakeexec = require "support.fakeexec"
local context = require "phanes.engine.context"
local F = require "phanes.file"
local lfs = require "lfs"

-- resources that write files need the file primitives (phanes.file)
local fit = it

describe("user", function()
  local w
  after_each(function() if w then w.close() w = nil end end)

  describe("present", function()
    it("creates a missing user with useradd", function()
      w = fakeexec.world()
      w.fake:on("useradd", { code = 0 })
      local r = w.ctx.user.present { name = "alice", groups = { "sudo", "docker" } }
      assert.equal("changed", r.status)
      assert.equal("created in sudo, docker", r.message)
      assert.same({ "useradd --create-home --shell /bin/bash --groups sudo,docker -- alice" }, w.fake:lines())
    end)

    it("creates a system user without home", function()
      w = fakeexec.world()
      w.fake:on("useradd", { code = 0 })
      w.ctx.user.present { name = "svc", system = true, create_home = false, shell = "/usr/sbin/nologin",
        home = "/var/lib/svc" }
      assert.same({ "useradd --system --no-create-home --shell /usr/sbin/nologin --home-dir /var/lib/svc -- svc" },
        w.fake:lines())
    end)

    it("is ok for an existing user, reading /etc/passwd and /etc/group only", function()
      w = fakeexec.world()
      local r = w.ctx.user.present { name = "deploy", groups = { "adm", "deploy" } }
      assert.equal("ok", r.status)
      assert.equal(0, w.run.stats.execs)
    end)

    it("adds missing groups and fixes the shell in one usermod, never removing a group", function()
      w = fakeexec.world()
      w.fake:on("usermod", { code = 0 })
      local r = w.ctx.user.present { name = "deploy", shell = "/bin/bash", groups = { "adm", "sudo", "docker" } }
      assert.equal("shell /bin/sh -> /bin/bash, added to sudo, docker", r.message)
      assert.same({ "usermod --shell /bin/bash --append --groups sudo,docker -- deploy" }, w.fake:lines())
    end)

    it("reads the accounts again after a change", function()
      w = fakeexec.world()
      w.fake:on("usermod", function()
        fakeexec.write(w.path "/etc/group", fakeexec.fixture("facts/group"):gsub("sudo:x:27:", "sudo:x:27:deploy"))
        return { code = 0 }
      end)
      w.ctx.user.present { name = "deploy", groups = { "sudo" } }
      assert.equal("ok", w.ctx.user.present({ name = "deploy", groups = { "sudo" } }).status)
      assert.equal(1, w.fake:count())
    end)

    it("fails clearly for a group that does not exist, plans it in a dry run", function()
      w = fakeexec.world()
      local ok, e = pcall(w.ctx.user.present, { name = "deploy", groups = { "wheel" } })
      assert.is_false(ok)
      assert.matches("group wheel does not exist", e.message)
      w.close()
      w = fakeexec.world{ dry_run = true }
      local r = w.ctx.user.present { name = "deploy", groups = { "wheel" } }
      assert.equal("would change", r.status)
      assert.equal("added to wheel", r.message)
      assert.equal(0, w.fake:count())
    end)

    it("fails with useradd's stderr", function()
      w = fakeexec.world()
      w.fake:on("useradd", { code = 9, stderr = "useradd: user 'alice' already exists\n" })
      local ok, e = pcall(w.ctx.user.present, { name = "alice" })
      assert.is_false(ok)
      assert.is_true(context.is_failure(e))
      assert.equal("useradd failed (exit 9)", e.message)
      assert.matches("already exists", e.detail)
    end)

    it("rejects a bad name before running anything", function()
      w = fakeexec.world()
      local ok, e = pcall(w.ctx.user.present, { name = "-rf" })
      assert.is_false(ok)
      assert.matches("not a valid user name", e.message)
      assert.equal(0, w.fake:count())
    end)
  end)

  describe("group.present", function()
    it("creates a missing group, is ok for an existing one", function()
      w = fakeexec.world()
      w.fake:on("groupadd", { code = 0 })
      assert.equal("ok", w.ctx.group.present({ name = "docker" }).status)
      assert.equal("changed", w.ctx.group.present({ name = "app", system = true }).status)
      assert.same({ "groupadd --system -- app" }, w.fake:lines())
    end)

    it("refuses to renumber a group", function()
      w = fakeexec.world()
      local ok, e = pcall(w.ctx.group.present, { name = "docker", gid = 500 })
      assert.is_false(ok)
      assert.matches("exists with gid 999, not 500", e.message)
    end)
  end)

  describe("authorized_keys", function()
    local KEY1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOne me@laptop"
    local KEY2 = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQTwo other@host"

    local function with_home()
      -- deploy's home lives under the temp root
      local passwd = fakeexec.fixture("facts/passwd"):gsub("/home/deploy", w.path "/home/deploy")
      fakeexec.write(w.path "/etc/passwd", passwd)
      assert(lfs.mkdir(w.path "/home/deploy"))
      return w.path "/home/deploy"
    end

    it("keeps key identity apart from comments and options", function()
      local user = require "phanes.res.user"
      assert.equal("ssh-ed25519 AAAA", user.key_id "ssh-ed25519 AAAA me@x")
      assert.equal("ssh-ed25519 AAAA", user.key_id 'from="10.0.0.1",no-pty ssh-ed25519 AAAA other')
      assert.is_nil(user.key_id "# comment")
      assert.equal("keep\n" .. KEY1 .. "\n", user.keys_content("keep\n", { KEY1 }, false))
      assert.equal("x\n" .. KEY1 .. "\n", user.keys_content("x", { KEY1 }, false))
      local old = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOne old-comment\n"
      assert.equal(old, user.keys_content(old, { KEY1 }, false))
      assert.equal(KEY2 .. "\n", user.keys_content(old, { KEY2 }, true))
    end)

    fit("creates ~/.ssh and the file, owned by the user, then is ok", function()
      w = fakeexec.world()
      local home = with_home()
      local r = w.ctx.user.authorized_keys { user = "deploy", keys = { KEY1, KEY2 } }
      assert.equal("changed", r.status)
      assert.equal("~/.ssh created; created", r.message)
      assert.equal(KEY1 .. "\n" .. KEY2 .. "\n", fakeexec.read(home .. "/.ssh/authorized_keys"))
      local d, f = F.stat(home .. "/.ssh"), F.stat(home .. "/.ssh/authorized_keys")
      assert.equal(tonumber("0700", 8), d.mode)
      assert.equal(tonumber("0600", 8), f.mode)
      assert.equal(1000, d.uid)
      assert.equal(1000, f.uid)
      assert.equal(1000, f.gid)
      assert.equal(home .. "/.ssh/authorized_keys", w.last().target)
      assert.equal("ok", w.ctx.user.authorized_keys({ user = "deploy", keys = { KEY1 } }).status)
      assert.equal(0, w.fake:count())
    end)

    fit("adds missing keys and keeps the others unless exclusive", function()
      w = fakeexec.world()
      local home = with_home()
      assert(lfs.mkdir(home .. "/.ssh"))
      fakeexec.write(home .. "/.ssh/authorized_keys", "ssh-ed25519 AAAAother someone\n")
      w.ctx.user.authorized_keys { user = "deploy", keys = KEY1 }
      assert.equal("ssh-ed25519 AAAAother someone\n" .. KEY1 .. "\n", fakeexec.read(home .. "/.ssh/authorized_keys"))
      w.ctx.user.authorized_keys { user = "deploy", keys = { KEY1 }, exclusive = true }
      assert.equal(KEY1 .. "\n", fakeexec.read(home .. "/.ssh/authorized_keys"))
    end)

    fit("fails for an unknown user, plans it in a dry run", function()
      w = fakeexec.world()
      local ok, e = pcall(w.ctx.user.authorized_keys, { user = "alice", keys = { KEY1 } })
      assert.is_false(ok)
      assert.matches("user alice does not exist", e.message)
      w.close()
      w = fakeexec.world{ dry_run = true }
      local r = w.ctx.user.authorized_keys { user = "alice", keys = { KEY1 } }
      assert.equal("would change", r.status)
      assert.matches(KEY1, r.diff, 1, true)
    end)
  end)

  describe("sudoers", function()
    fit("validates with visudo -cf on a temp copy before installing, 0440", function()
      w = fakeexec.world()
      local seen
      w.fake:on("visudo", function(opts)
        seen = fakeexec.read(opts.argv[3])
        assert.matches("/etc/sudoers.d/%.deploy%.", opts.argv[3])
        return { code = 0 }
      end)
      local r = w.ctx.user.sudoers { name = "deploy", content = "deploy ALL=(ALL) NOPASSWD:ALL" }
      assert.equal("changed", r.status)
      assert.equal("deploy ALL=(ALL) NOPASSWD:ALL\n", seen)
      local path = w.path "/etc/sudoers.d/deploy"
      assert.equal(seen, fakeexec.read(path))
      assert.equal(tonumber("0440", 8), F.stat(path).mode)
      assert.same({ "deploy" }, F.list(w.path "/etc/sudoers.d")) -- no temp file left
      assert.equal("ok", w.ctx.user.sudoers({ name = "deploy", content = "deploy ALL=(ALL) NOPASSWD:ALL\n" }).status)
      assert.equal(1, w.fake:count "visudo")
    end)

    fit("a rule visudo rejects is never installed; the old file stays", function()
      w = fakeexec.world()
      local path = w.path "/etc/sudoers.d/deploy"
      fakeexec.write(path, "deploy ALL=(ALL) ALL\n")
      w.fake:on("visudo", function(opts)
        return { code = 1, stderr = opts.argv[3] .. ":1:7: syntax error\ndeploy ALL=(ALL NOPASSWD\n" }
      end)
      local ok, e = pcall(w.ctx.user.sudoers, { name = "deploy", content = "deploy ALL=(ALL NOPASSWD\n" })
      assert.is_false(ok)
      assert.is_true(context.is_failure(e))
      assert.matches("failed validation %(visudo %-cf .*/etc/sudoers.d/deploy%)", e.message)
      assert.matches("left unchanged", e.message)
      assert.matches("syntax error", e.detail)
      assert.equal("deploy ALL=(ALL) ALL\n", fakeexec.read(path))
      assert.same({ "deploy" }, F.list(w.path "/etc/sudoers.d"))
    end)

    it("refuses a name sudo would ignore", function()
      w = fakeexec.world()
      local ok, e = pcall(w.ctx.user.sudoers, { name = "deploy.conf", content = "x" })
      assert.is_false(ok)
      assert.matches("sudo ignores files", e.message)
    end)
  end)
end)
