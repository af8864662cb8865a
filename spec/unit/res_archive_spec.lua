-- archive.extracted: real archives (built here with tar and zip), the
-- listing checked before anything is extracted; escapes are refused and
-- nothing lands outside dest.
local fakeexec = require "support.fakeexec"
local F = require "phanes.file"
local archive = require "phanes.res.archive"

local function sh(cmd)
  local ok = os.execute(cmd)
  assert(ok, "failed: " .. cmd)
end

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- a world whose tar/unzip are the real ones (recorded by the fake)
local function world(o)
  local w = fakeexec.world(o)
  local real = function(opts) return require("phanes.exec").run(opts) end
  w.fake:on("tar", real)
  w.fake:on("unzip", real)
  return w
end

-- build(w, name, script): runs script in a fresh dir w.path("/build"), the
-- archive it makes is w.path("/" .. name)
local function build(w, script)
  local dir = w.path "/build"
  sh("rm -rf " .. q(dir) .. " && mkdir " .. q(dir) .. " && cd " .. q(dir) .. " && (" .. script .. ") 2>/dev/null")
end

local function extracted(w, name, extra)
  local o = { src = w.path("/" .. name), dest = w.path "/dest" }
  for k, v in pairs(extra or {}) do o[k] = v end
  return pcall(w.ctx.archive.extracted, o)
end

describe("archive.extracted", function()
  local w
  after_each(function() if w then w.close() w = nil end end)

  it("lists, checks and extracts a tarball, then writes the sentinel; a re-run spawns nothing", function()
    w = world()
    build(w, "mkdir -p bin lib/ollama && echo run > bin/ollama && chmod 755 bin/ollama && echo so > lib/ollama/x.so"
      .. " && ln -s ollama/x.so lib/cur && tar -czf ../good.tgz bin lib")
    local sentinel = w.path "/sentinels/test.archive"
    local ok, r = extracted(w, "good.tgz", { sentinel = sentinel, stamp = "1.0 abc" })
    assert.is_true(ok, tostring(r))
    assert.equal("changed", r.status)
    assert.equal("run\n", fakeexec.read(w.path "/dest/bin/ollama"))
    assert.equal("so\n", fakeexec.read(w.path "/dest/lib/cur"))
    assert.equal("1.0 abc\n", fakeexec.read(sentinel))
    assert.same({ "tar --list --verbose --file " .. w.path "/good.tgz",
      "tar --extract --no-same-owner --no-same-permissions --file " .. w.path "/good.tgz" .. " --directory "
        .. w.path "/dest" },
      w.fake:lines())
    w.fake:reset()
    ok, r = extracted(w, "good.tgz", { sentinel = sentinel, stamp = "1.0 abc" })
    assert.equal("ok", r.status)
    assert.equal(0, w.fake:count())
    -- a new stamp extracts again
    ok, r = extracted(w, "good.tgz", { sentinel = sentinel, stamp = "1.1 def" })
    assert.equal("changed", r.status)
  end)

  -- modes(w, names...) -> "name mode" lines of what landed in dest (lstat)
  local function modes(w, ...)
    local out = {}
    for _, n in ipairs{ ... } do
      local st = assert(F.stat(w.path("/dest/" .. n)))
      out[#out + 1] = n .. " " .. string.format("%o", st.mode)
    end
    return table.concat(out, "\n")
  end
  -- what WIDE's entries must land as: nothing group- or world-writable, setuid or setgid
  local function tamed(w)
    assert.equal(table.concat({ "app/bin 755", "app/bin/lms 755", "app/bin/suid 755", "app/bin/sgid 755",
      "app/open 755", "app/open/f 644" }, "\n"), modes(w, "app/bin", "app/bin/lms", "app/bin/suid", "app/bin/sgid",
      "app/open", "app/open/f"))
  end
  local WIDE = "mkdir -p app/bin app/open && echo run > app/bin/lms && echo s > app/bin/suid && echo g > app/bin/sgid"
    .. " && echo f > app/open/f && chmod 0777 app/bin/lms app/open && chmod 4755 app/bin/suid"
    .. " && chmod 2775 app/bin/sgid && chmod 0666 app/open/f && chmod 0775 app/bin"

  it("extracts a tarball with nothing group- or world-writable, setuid or setgid, whatever its modes", function()
    w = world()
    build(w, WIDE .. " && tar -czf ../wide.tgz app")
    local ok, r = extracted(w, "wide.tgz")
    assert.is_true(ok, tostring(r))
    tamed(w)
    local x = w.fake.calls[#w.fake.calls]
    assert.equal("--no-same-permissions", x.argv[4])
    assert.equal(tonumber("022", 8), x.umask) -- each file is created with its final mode, whatever phanes' umask
  end)

  it("extracts a zip with nothing group- or world-writable, setuid or setgid, whatever its modes", function()
    w = world()
    build(w, WIDE .. " && zip -qr ../wide.zip app")
    local ok, r = extracted(w, "wide.zip")
    assert.is_true(ok, tostring(r))
    tamed(w)
    assert.equal("run\n", fakeexec.read(w.path "/dest/app/bin/lms"))
  end)

  it("keeps a zip's dest root's alone while unzip runs, then gives it its mode back", function()
    w = world()
    build(w, WIDE .. " && zip -qr ../wide.zip app")
    sh("mkdir -m 0755 " .. q(w.path "/dest"))
    local during
    w.fake:on("unzip", function(opts)
      during = F.stat(w.path "/dest").mode
      return require("phanes.exec").run(opts)
    end)
    local ok, r = extracted(w, "wide.zip")
    assert.is_true(ok, tostring(r))
    assert.equal(tonumber("0700", 8), during)
    assert.equal(tonumber("0755", 8), F.stat(w.path "/dest").mode)
  end)

  it("is ok when creates exists; strips leading components", function()
    w = world()
    build(w, "mkdir -p app-1/bin && echo a > app-1/bin/a && tar -cJf ../app.tar.xz app-1")
    local ok, r = extracted(w, "app.tar.xz", { strip = 1, creates = w.path "/dest/bin/a" })
    assert.is_true(ok, tostring(r))
    assert.equal("a\n", fakeexec.read(w.path "/dest/bin/a"))
    assert.equal("--strip-components=1", w.fake.calls[#w.fake.calls].argv[9])
    w.fake:reset()
    ok, r = extracted(w, "app.tar.xz", { strip = 1, creates = w.path "/dest/bin/a" })
    assert.equal("ok", r.status)
    assert.equal(0, w.fake:count())
  end)

  it("lists and checks in a dry run, and extracts nothing", function()
    w = world { dry_run = true }
    build(w, "echo a > a && tar -czf ../a.tgz a")
    local ok, r = extracted(w, "a.tgz")
    assert.is_true(ok, tostring(r))
    assert.equal("would change", r.status)
    assert.is_false(F.exists(w.path "/dest"))
    assert.same({ "tar --list --verbose --file " .. w.path "/a.tgz" }, w.fake:lines())
  end)

  local function refused(w, name, says)
    local ok, err = extracted(w, name)
    assert.is_false(ok)
    assert.matches("refused " .. w.path("/" .. name) .. ": " .. says, tostring(err), 1, true)
    assert.matches("nothing was extracted", tostring(err), 1, true)
    assert.equal(0, w.fake:count "tar --extract")
    assert.equal("failed", w.last().status)
  end

  it("refuses ../ entries: nothing outside dest", function()
    w = world()
    build(w, "echo x > x && tar -cPf ../dotdot.tar --transform 's,^x,../x-escaped,' x")
    sh("mkdir " .. q(w.path "/dest"))
    refused(w, "dotdot.tar", "entry ../x-escaped climbs out with ..")
    assert.is_false(F.exists(w.path "/x-escaped"))
  end)

  it("refuses absolute entries", function()
    w = world()
    build(w, "echo x > x && tar -czPf ../abs.tgz --transform 's,^x,/etc/phanes-spec-escape,' x")
    refused(w, "abs.tgz", "entry /etc/phanes-spec-escape has an absolute path")
    assert.is_false(F.exists "/etc/phanes-spec-escape")
    assert.is_false(F.exists(w.path "/dest"))
  end)

  it("refuses a symlink to /etc and a file written through it", function()
    w = world()
    build(w, "ln -s " .. q(w.path "/outside") .. " etc && mkdir e && echo x > e/passwd-x"
      .. " && tar -czf ../link.tgz --transform 's,^e/,etc/,' etc e/passwd-x")
    sh("mkdir " .. q(w.path "/outside"))
    refused(w, "link.tgz", "symlink etc points to the absolute path " .. w.path "/outside")
    assert.same({}, fakeexec.tree(w.path "/outside"))
  end)

  it("refuses relative symlinks that climb out, and links through links", function()
    w = world()
    build(w, "mkdir -p a && ln -s ../../.. a/up && tar -czf ../up.tgz a")
    refused(w, "up.tgz", "symlink a/up -> ../../.. points out of the destination")
    w.fake:reset()
    build(w, "ln -s . a && ln -s a/.. b && tar -czf ../chain.tgz a b")
    refused(w, "chain.tgz", "symlink b -> a/.. goes through the symlink a")
    w.fake:reset()
    build(w, "mkdir d && ln -s d l && mkdir e && echo x > e/f && tar -czf ../through.tgz --transform 's,^e/,l/,' l e/f")
    refused(w, "through.tgz", "entry l/f goes through the symlink l")
  end)

  it("refuses a link whose name hides the arrow of the listing", function()
    w = world()
    build(w, "ln -s /etc 'a -> b' && tar -czf ../arrow.tgz 'a -> b'")
    refused(w, "arrow.tgz", "ambiguous link entry: a -> b -> /etc")
  end)

  it("refuses symlinks in zip archives and extracts plain ones", function()
    w = world()
    build(w, "mkdir p && echo z > p/z && ln -s /etc p/l && zip -qry ../l.zip p")
    refused(w, "l.zip", "symlink p/l in a zip archive")
    w.fake:reset()
    build(w, "mkdir p && echo z > p/z && zip -qr ../ok.zip p")
    local ok, r = extracted(w, "ok.zip")
    assert.is_true(ok, tostring(r))
    assert.equal("z\n", fakeexec.read(w.path "/dest/p/z"))
  end)

  it("refuses strip for a zip (unzip cannot drop components) before it lists or extracts anything", function()
    w = world()
    build(w, "mkdir p && echo z > p/z && zip -qr ../s.zip p")
    local ok, err = extracted(w, "s.zip", { strip = 1 })
    assert.is_false(ok)
    assert.matches("strip works for tar archives only", tostring(err), 1, true)
    assert.equal(0, w.fake:count "unzip")
    assert.is_nil(fakeexec.read(w.path "/dest/z"))
  end)

  it("checks listings the same way whatever the order", function()
    local entries = { { type = "-", name = "l/f" }, { type = "l", name = "l", target = "d" } }
    assert.equal("entry l/f goes through the symlink l", archive.check(entries))
    assert.is_nil(archive.check { { type = "l", name = "a/b", target = "../c" }, { type = "-", name = "c" } })
    assert.equal("entry dev is a device or fifo", archive.check { { type = "c", name = "dev" } })
  end)
end)
