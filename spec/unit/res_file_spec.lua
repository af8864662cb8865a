-- file resources on paths under a temp dir (they need phanes.file).
local fakeexec = require "support.fakeexec"
local context = require "phanes.engine.context"
local F = require "phanes.file"
local loader = require "phanes.loader"

local fit = it
local function mode(path) return string.format("%04o", F.stat(path, true).mode) end

describe("file", function()
  local w
  after_each(function() if w then w.close() w = nil end end)

  it("takes modes as octal strings only", function()
    local file = require "phanes.res.file"
    assert.equal(420, file.parse_mode "0644")
    assert.equal(tonumber("1777", 8), file.parse_mode "1777")
    local ok, e = pcall(file.parse_mode, 644, "file.content", "/x")
    assert.is_false(ok)
    assert.matches("octal string", e.message)
    assert.matches("decimal 644", e.message)
    assert.is_false((pcall(file.parse_mode, "0999")))
  end)

  it("edits lines", function()
    local edit = require("phanes.res.file").line_edit
    assert.equal("a\nb=2\nc\n", edit("a\nb=1\nc\n", { line = "b=2", match = "^b=" }))
    assert.equal("a\n", edit("a\n", { line = "a" }))                       -- present: unchanged
    assert.equal("a", edit("a", { line = "a" }))                           -- untouched text
    assert.equal("a\nb\n", edit("a", { line = "b" }))                      -- appended
    assert.equal("x=1\nx=2\n", edit("x=1\nx=0\n", { line = "x=2", match = "^x=0" }))
    assert.equal("b=1\nb=2\n", edit("b=1\nb=9\n", { line = "b=2", match = "^b=" })) -- last match replaced
    assert.equal("a\nc\n", edit("a\n#b\nc\n", { match = "^#?b", absent = true }))
    assert.equal("x\n", edit("", { line = "x" }))
  end)

  describe("content", function()
    fit("creates, then is ok, then fixes content with a diff", function()
      w = fakeexec.world()
      local path = w.path "/etc/motd"
      local r = w.ctx.file.content { path = path, content = "hello\n" }
      assert.equal("changed", r.status)
      assert.equal("created", r.message)
      assert.equal("hello\n", fakeexec.read(path))
      assert.equal("0644", mode(path))
      assert.equal("ok", w.ctx.file.content({ path = path, content = "hello\n" }).status)
      r = w.ctx.file.content { path = path, content = "hello world\n" }
      assert.equal("changed", r.status)
      assert.equal("content", r.message)
      assert.matches("%-hello\n%+hello world\n", r.diff)
      assert.equal(r.diff, w.last().diff)
      assert.equal(0, w.fake:count())
    end)

    fit("fixes the mode alone without rewriting, and keeps an unset mode", function()
      w = fakeexec.world()
      local path = w.path "/etc/app.conf"
      fakeexec.write(path, "x\n")
      F.chmod(path, tonumber("0600", 8))
      assert.equal("ok", w.ctx.file.content({ path = path, content = "x\n" }).status)
      local r = w.ctx.file.content { path = path, content = "x\n", mode = "0640" }
      assert.equal("mode 0600 -> 0640", r.message)
      assert.equal("0640", mode(path))
      assert.is_nil(r.diff)
    end)

    fit("compares the owner", function()
      w = fakeexec.world()
      local path = w.path "/etc/owned"
      fakeexec.write(path, "x\n")
      assert.equal("ok", w.ctx.file.content({ path = path, content = "x\n", owner = "root", group = 0 }).status)
      local r = w.ctx.file.content { path = path, content = "x\n", owner = 1000 }
      assert.equal("owner root -> 1000", r.message)
      assert.equal(1000, F.stat(path).uid)
    end)

    fit("validates on a temp file and installs only when it passes", function()
      w = fakeexec.world()
      local path = w.path "/etc/sshd_config"
      fakeexec.write(path, "Port 22\n")
      local checked
      w.fake:on("sshd -t -f", function(opts)
        checked = fakeexec.read(opts.argv[4])
        return { code = 0 }
      end)
      local r = w.ctx.file.content { path = path, content = "Port 2222\n", validate = { "sshd", "-t", "-f", "%s" } }
      assert.equal("changed", r.status)
      assert.equal("Port 2222\n", checked)
      assert.equal("Port 2222\n", fakeexec.read(path))
      for _, n in ipairs(F.list(w.path "/etc")) do assert.is_nil(n:match "phanes") end
    end)

    fit("a failed validation leaves the old file and shows the validator's stderr", function()
      w = fakeexec.world()
      local path = w.path "/etc/sshd_config"
      fakeexec.write(path, "Port 22\n")
      w.fake:on("sshd -t -f", function(opts)
        return { code = 255, stderr = opts.argv[4] .. " line 1: Bad configuration option: Prot\n" }
      end)
      local ok, e = pcall(w.ctx.file.content, { path = path, content = "Prot 2222\n",
        validate = { "sshd", "-t", "-f", "%s" } })
      assert.is_false(ok)
      assert.is_true(context.is_failure(e))
      assert.equal("file.content", e.resource)
      assert.equal(path, e.target)
      assert.matches("failed validation", e.message)
      assert.equal(path .. " line 1: Bad configuration option: Prot", e.detail) -- temp path shown as the target
      assert.equal("Port 22\n", fakeexec.read(path))
      for _, n in ipairs(F.list(w.path "/etc")) do assert.is_nil(n:match "phanes") end
      assert.equal("failed", w.last().status)
    end)

    fit("keeps a backup when asked", function()
      w = fakeexec.world()
      local path = w.path "/etc/keep.conf"
      fakeexec.write(path, "old\n")
      w.ctx.file.content { path = path, content = "new\n", backup = true }
      local baks = {}
      for _, n in ipairs(F.list(w.path "/etc")) do if n:match "^keep%.conf%..*%.bak$" then baks[#baks + 1] = n end end
      assert.equal(1, #baks)
      assert.equal("old\n", fakeexec.read(w.path("/etc/" .. baks[1])))
    end)

    fit("never shows secret content: no diff, masked events", function()
      w = fakeexec.world{ secrets = { "pa55word" } }
      local path = w.path "/etc/secret.conf"
      local r = w.ctx.file.content { path = path, content = "requirepass pa55word\n", secret = true }
      assert.equal("created, (secret content changed)", r.message)
      assert.is_nil(r.diff)
      assert.equal("0600", mode(path))
      -- not marked secret, but the value is a run secret: the diff is masked
      r = w.ctx.file.content { path = path, content = "requirepass pa55word\nbind 1\n" }
      assert.is_nil(w.last().diff:find "pa55word")
      assert.matches("requirepass %*%*%*%*%*%*", w.last().diff)
    end)

    fit("fails clearly on a directory in the way or a missing parent", function()
      w = fakeexec.world()
      local ok, e = pcall(w.ctx.file.content, { path = w.path "/etc", content = "x" })
      assert.is_false(ok)
      assert.matches("is a directory, not a regular file", e.message)
      ok, e = pcall(w.ctx.file.content, { path = w.path "/nope/x.conf", content = "x" })
      assert.is_false(ok)
      assert.is_true(context.is_failure(e))
    end)
  end)

  describe("dry run", function()
    fit("writes nothing and reports diffs, also under a directory that does not exist yet", function()
      w = fakeexec.world{ dry_run = true }
      fakeexec.write(w.path "/etc/motd", "old\n")
      fakeexec.write(w.path "/etc/hosts", "127.0.0.1 localhost\n")
      local before = fakeexec.tree(w.root)
      local r = w.ctx.file.content { path = w.path "/etc/motd", content = "new\n", mode = "0600" }
      assert.equal("would change", r.status)
      assert.is_true(r.changed)
      assert.equal("content, mode 0644 -> 0600", r.message)
      assert.matches("%-old\n%+new\n", r.diff)
      r = w.ctx.file.content { path = w.path "/etc/redis/redis.conf", content = "bind 127.0.0.1\nport 6379\n",
        owner = "redis" }
      assert.equal("would change", r.status)
      assert.matches("%+bind 127.0.0.1\n%+port 6379\n", r.diff)
      assert.equal("would change", w.ctx.file.line({ path = w.path "/etc/hosts", line = "10.0.0.1 db" }).status)
      assert.equal("would change", w.ctx.file.directory({ path = w.path "/srv/app" }).status)
      assert.equal("would change", w.ctx.file.absent({ path = w.path "/etc/hosts" }).status)
      assert.equal("would change", w.ctx.file.symlink({ path = w.path "/etc/link", target = "/x" }).status)
      assert.equal("would change", w.ctx.file.content({ path = w.path "/etc/v", content = "x",
        validate = { "false" } }).status)
      assert.same(before, fakeexec.tree(w.root))
      assert.equal(0, w.fake:count())
    end)
  end)

  describe("template", function()
    local dir
    before_each(function()
      dir = fakeexec.tmpdir()
      os.execute("mkdir -p " .. dir .. "/templates/demo")
      fakeexec.write(dir .. "/templates/demo/app.conf", "port {{ port }}\n")
      table.insert(loader.dirs, 1, dir)
    end)
    after_each(function()
      table.remove(loader.dirs, 1)
      fakeexec.rmtree(dir)
    end)

    fit("renders and writes, is ok the second time", function()
      w = fakeexec.world()
      local path = w.path "/etc/app.conf"
      local r = w.ctx.file.template { path = path, src = "demo/app.conf", vars = { port = 8080 }, mode = "0640" }
      assert.equal("changed", r.status)
      assert.equal("port 8080\n", fakeexec.read(path))
      assert.equal("0640", mode(path))
      assert.equal("file.template", w.last().resource)
      assert.is_false(w.ctx.file.template({ path = path, src = "demo/app.conf", vars = { port = 8080 } }).changed)
    end)

    it("fails naming the template on an undefined variable, writing nothing", function()
      w = fakeexec.world()
      local ok, e = pcall(w.ctx.file.template, { path = w.path "/etc/app.conf", src = "demo/app.conf", vars = {} })
      assert.is_false(ok)
      assert.matches("app.conf:1:", e.message, 1, true)
      assert.is_nil(fakeexec.read(w.path "/etc/app.conf"))
      assert.equal("failed", w.last().status)
    end)
  end)

  describe("line", function()
    fit("replaces the matching line, appends, creates the file, removes", function()
      w = fakeexec.world()
      local path = w.path "/etc/sysctl.conf"
      fakeexec.write(path, "# tuning\nvm.swappiness=60\n")
      local r = w.ctx.file.line { path = path, line = "vm.swappiness=10", match = "^vm%.swappiness" }
      assert.equal("changed", r.status)
      assert.equal("# tuning\nvm.swappiness=10\n", fakeexec.read(path))
      assert.equal("ok", w.ctx.file.line({ path = path, line = "vm.swappiness=10", match = "^vm%.swappiness" }).status)
      w.ctx.file.line { path = path, line = "net.core.somaxconn=1024" }
      assert.equal("# tuning\nvm.swappiness=10\nnet.core.somaxconn=1024\n", fakeexec.read(path))
      w.ctx.file.line { path = path, match = "^vm%.", absent = true }
      assert.equal("# tuning\nnet.core.somaxconn=1024\n", fakeexec.read(path))
      local new = w.path "/etc/new.conf"
      w.ctx.file.line { path = new, line = "a=1" }
      assert.equal("a=1\n", fakeexec.read(new))
      assert.equal("ok", w.ctx.file.line({ path = w.path "/etc/none", match = "x", absent = true }).status)
    end)
  end)

  describe("directory, absent, symlink", function()
    fit("makes a directory with parents and mode, then fixes the mode", function()
      w = fakeexec.world()
      local path = w.path "/srv/app/data"
      assert.equal("created", w.ctx.file.directory({ path = path, mode = "0750" }).message)
      assert.equal("directory", F.stat(path).type)
      assert.equal("0750", mode(path))
      assert.equal("ok", w.ctx.file.directory({ path = path, mode = "0750" }).status)
      assert.equal("mode 0750 -> 0700", w.ctx.file.directory({ path = path, mode = "0700" }).message)
      local ok, e = pcall(w.ctx.file.directory, { path = w.path "/etc/passwd" })
      assert.is_false(ok)
      assert.matches("not a directory", e.message)
    end)

    fit("removes a file, refuses a directory unless recursive", function()
      w = fakeexec.world()
      assert.equal("ok", w.ctx.file.absent({ path = w.path "/etc/none" }).status)
      assert.equal("changed", w.ctx.file.absent({ path = w.path "/etc/passwd" }).status)
      assert.is_nil(fakeexec.read(w.path "/etc/passwd"))
      local ok, e = pcall(w.ctx.file.absent, { path = w.path "/etc/apt" })
      assert.is_false(ok)
      assert.matches("recursive = true", e.message)
      assert.equal("changed", w.ctx.file.absent({ path = w.path "/etc/apt", recursive = true }).status)
      assert.is_nil(F.stat(w.path "/etc/apt"))
    end)

    fit("makes and retargets a symlink, refuses to replace a file unless forced", function()
      w = fakeexec.world()
      local path = w.path "/etc/link"
      assert.equal("changed", w.ctx.file.symlink({ path = path, target = "/etc/passwd" }).status)
      assert.equal("/etc/passwd", F.readlink(path))
      assert.equal("ok", w.ctx.file.symlink({ path = path, target = "/etc/passwd" }).status)
      assert.equal("changed", w.ctx.file.symlink({ path = path, target = "/etc/group" }).status)
      assert.equal("/etc/group", F.readlink(path))
      local ok, e = pcall(w.ctx.file.symlink, { path = w.path "/etc/group", target = "/x" })
      assert.is_false(ok)
      assert.matches("force = true", e.message)
      assert.equal("changed", w.ctx.file.symlink({ path = w.path "/etc/group", target = "/x", force = true }).status)
      assert.equal("/x", F.readlink(w.path "/etc/group"))
    end)

    -- a link on PATH to a user's program, turned into a root-owned file
    local function linked(o)
      w = fakeexec.world(o)
      local prog, link = w.path "/home/lms/bin/lms", w.path "/usr/local/bin/lms"
      assert(F.mkdir(w.path "/home/lms/bin", { parents = true }))
      assert(F.mkdir(w.path "/usr/local/bin", { parents = true }))
      assert(F.write(prog, "ELF\n", { mode = tonumber("0755", 8) }))
      assert(F.symlink(prog, link))
      return prog, link
    end

    fit("content with replace_link: an old link is replaced by the file, never written through", function()
      local prog, link = linked()
      local o = { path = link, content = "#!/bin/sh\n", mode = "0755", replace_link = { "/elsewhere", prog } }
      local r = w.ctx.file.content(o)
      assert.equal("changed", r.status)
      assert.equal("symlink -> " .. prog .. " replaced by a file", r.message)
      assert.matches("+#!/bin/sh", r.diff, 1, true)
      assert.equal("file", F.stat(link).type)
      assert.equal("#!/bin/sh\n", fakeexec.read(link))
      assert.equal("0755", mode(link))
      assert.equal("ELF\n", fakeexec.read(prog)) -- what the link pointed to is untouched
      assert.equal("ok", w.ctx.file.content(o).status)
      -- without replace_link a link in a root directory is followed (e.g. /etc/resolv.conf): the
      -- user's program would be overwritten; with it, another link refuses and nothing changes
      F.remove(link)
      assert(F.symlink(prog, link))
      local ok, e = pcall(w.ctx.file.content, { path = link, content = "x\n", replace_link = { "/elsewhere" } })
      assert.is_false(ok)
      assert.equal(link, e.target)
      assert.matches("is a symlink to " .. prog .. ", not a file; phanes replaces only a link to /elsewhere",
        e.message, 1, true)
      assert.equal(prog, F.readlink(link))
      assert.equal("ELF\n", fakeexec.read(prog))
      assert.equal("changed", w.ctx.file.template({ path = link, src = "lmstudio/lms", mode = "0755",
        vars = { user = "lms", home = "/home/lms", lms = prog }, replace_link = { prog } }).status)
      assert.equal("file", F.stat(link).type)
      assert.equal("ELF\n", fakeexec.read(prog))
    end)

    fit("content with replace_link in a dry run: would change, the link stays", function()
      local prog, link = linked { dry_run = true }
      local r = w.ctx.file.content { path = link, content = "#!/bin/sh\n", replace_link = { prog } }
      assert.equal("would change", r.status)
      assert.equal("symlink -> " .. prog .. " replaced by a file", r.message)
      assert.not_matches("ELF", r.diff, 1, true) -- the diff is of the new file, not of the user's program
      assert.equal(prog, F.readlink(link))
    end)
  end)

  -- As root: links and foreign files planted in a directory another user
  -- can write fail the resource, naming the path and the owner, in a dry
  -- run too, and the file behind them is left as it was.
  describe("in a directory another user owns", function()
    local root = require("phanes.sys").geteuid() == 0
    local SECRET = "root:x:0:0::/root:/bin/bash\n"

    -- a world with /srv/conf.d owned by uid 1000 and a root file /etc/shadow
    local function planted(o)
      w = fakeexec.world(o)
      local dir = w.path "/srv/conf.d"
      assert(F.mkdir(dir, { parents = true, owner = 1000, group = 1000, mode = tonumber("0755", 8) }))
      assert(F.write(w.path "/etc/shadow", SECRET, { mode = tonumber("0640", 8) }))
      return dir
    end

    local function intact()
      assert.equal(SECRET, fakeexec.read(w.path "/etc/shadow"))
      local st = F.stat(w.path "/etc/shadow")
      assert.equal("0640", mode(w.path "/etc/shadow"))
      assert.equal(0, st.uid)
      assert.equal(0, st.gid)
    end

    local function fails(fn, o, pattern)
      local ok, e = pcall(fn, o)
      assert.is_false(ok)
      assert.is_true(context.is_failure(e))
      assert.matches(pattern, e.message, 1, true)
      return e
    end

    fit("refuses a symlink as the target of content, template, line and directory", function()
      if not root then pending "needs root" return end
      local dir = planted()
      local link = dir .. "/app.conf"
      assert(F.symlink(w.path "/etc/shadow", link))
      local msg = link .. ": a symlink owned by root, in " .. dir .. ", a directory "
      fails(w.ctx.file.content, { path = link, content = "x\n", owner = 1000 }, msg)
      fails(w.ctx.file.content, { path = link, content = SECRET, mode = "0666" }, msg)
      fails(w.ctx.file.line, { path = link, line = "x" }, msg)
      fails(w.ctx.file.directory, { path = link, owner = 1000 }, msg)
      intact()
      assert.equal("link", F.stat(link).type)
      w.close()
      dir = planted { dry_run = true }
      assert(F.symlink(w.path "/etc/shadow", dir .. "/app.conf"))
      local e = fails(w.ctx.file.content, { path = dir .. "/app.conf", content = "x\n" }, "a symlink")
      assert.not_matches("root:x", e.message .. tostring(e.detail), 1, true) -- no diff of the secret
      intact()
    end)

    fit("refuses a linked directory on the way and a file of a third user", function()
      if not root then pending "needs root" return end
      local dir = planted()
      assert(F.symlink(w.path "/etc", dir .. "/sub"))
      fails(w.ctx.file.content, { path = dir .. "/sub/shadow", content = "x" }, dir .. "/sub: a symlink")
      assert(F.write(dir .. "/other.conf", "x", { owner = 2000 }))
      fails(w.ctx.file.content, { path = dir .. "/other.conf", content = "y" }, "owned by uid 2000")
      intact()
      -- the directory's owner's own files and new files are fine
      assert(F.write(dir .. "/own.conf", "a\n", { owner = 1000, mode = tonumber("0644", 8) }))
      assert.equal("changed", w.ctx.file.content({ path = dir .. "/own.conf", content = "b\n" }).status)
      assert.equal(1000, F.stat(dir .. "/own.conf").uid)
      assert.equal("changed", w.ctx.file.content({ path = dir .. "/new.conf", content = "n\n" }).status)
    end)

    fit("validates a copy in a private directory, not in the one the user can write", function()
      if not root then pending "needs root" return end
      local dir = planted()
      local path = dir .. "/app.conf"
      local seen
      w.fake:on("check-conf", function(opts)
        seen = opts.argv[2]
        return { code = 0 }
      end)
      local r = w.ctx.file.content { path = path, content = "a\n", validate = { "check-conf", "%s" } }
      assert.equal("changed", r.status)
      assert.is_nil(seen:find(dir, 1, true))
      assert.matches("/phanes%-%w+/app%.conf$", seen)
      assert.is_nil(F.stat(seen:match "^(.*)/"))        -- removed afterwards
      assert.same({ "app.conf" }, F.list(dir))
    end)

    fit("authorized_keys: a link for ~/.ssh or for the file fails the resource", function()
      if not root then pending "needs root" return end
      local home = planted()
      local passwd = fakeexec.fixture("facts/passwd"):gsub("/home/deploy", home)
      fakeexec.write(w.path "/etc/passwd", passwd)
      local key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOp1 me@laptop"
      assert(F.symlink(w.path "/etc", home .. "/.ssh"))
      fails(w.ctx.user.authorized_keys, { user = "deploy", keys = { key } }, home .. "/.ssh: a symlink")
      assert(F.remove(home .. "/.ssh"))
      assert(F.mkdir(home .. "/.ssh", { owner = 1000, group = 1000, mode = tonumber("0700", 8) }))
      assert(F.symlink(w.path "/etc/shadow", home .. "/.ssh/authorized_keys"))
      fails(w.ctx.user.authorized_keys, { user = "deploy", keys = { key } },
        home .. "/.ssh/authorized_keys: a symlink owned by root, in " .. home .. "/.ssh")
      intact()
      assert.equal("root", F.stat(w.path "/etc").owner)
    end)
  end)
end)
