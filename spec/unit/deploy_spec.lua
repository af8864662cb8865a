-- deploy's local side: names, the directory walk and what it refuses, the
-- manifest and its diff, the tar stream (unpacked by the real tar), the
-- command line.
local tree = require "phanes.deploy.tree"
local deploy = require "phanes.deploy"
local fx = require "spec.support.fakeexec"
local q = require("phanes.remote.util").shquote

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local function sh(cmd) assert(os.execute(cmd), cmd) end

describe("deploy names", function()
  it("takes a plain word as a site name and nothing else", function()
    for _, ok in ipairs { "blog", "my-site", "site_2", "A1", string.rep("a", 64) } do
      assert.is_true(tree.valid_site(ok), ok)
    end
    for _, bad in ipairs { "", "..", ".", "../etc", "a/b", "a b", "-x", "_x", "blog\n", "été", string.rep("a", 65), "a;b", "$(x)" } do
      assert.is_false(tree.valid_site(bad), bad)
    end
    assert.is_false(tree.valid_site(nil))
  end)

  it("makes release ids from the UTC time and the tree hash, and checks them", function()
    local id = tree.release_id(0, "0123456789abcdef")
    assert.equal("19700101T000000Z-01234567", id)
    assert.is_true(tree.valid_id(id))
    assert.is_true(tree.valid_id(id .. "-2"))
    for _, bad in ipairs { "", "current", "../x", id .. "/..", "19700101T000000Z-0123456", "19700101T000000Z-0123456g" } do
      assert.is_false(tree.valid_id(bad), bad)
    end
  end)
end)

describe("deploy tree", function()
  local dir
  before_each(function()
    dir = fx.tmpdir()
    sh("mkdir -p " .. q(dir .. "/s/css") .. " " .. q(dir .. "/s/sub/deep"))
    write(dir .. "/s/index.html", "hello\n")
    write(dir .. "/s/css/a.css", "body{}\n")
    write(dir .. "/s/run.sh", "#!/bin/sh\n")
    sh("chmod 755 " .. q(dir .. "/s/run.sh") .. " && chmod 600 " .. q(dir .. "/s/css/a.css"))
    sh("ln -s ../index.html " .. q(dir .. "/s/css/home") .. " && ln -s sub/deep " .. q(dir .. "/s/d"))
  end)
  after_each(function() sh("rm -rf " .. q(dir)) end)

  it("walks the directory: files with sha256 and 0644/0755, directories, links that stay inside", function()
    local t = assert(tree.scan(dir .. "/s"))
    assert.equal(3, t.files)
    assert.equal(6 + 7 + 10, t.bytes)
    local f = t.by_path["index.html"]
    assert.equal(require("phanes.file").sha256 "hello\n", f.sha)
    assert.equal(tonumber("644", 8), f.mode)
    assert.equal(tonumber("644", 8), t.by_path["css/a.css"].mode)
    assert.equal(tonumber("755", 8), t.by_path["run.sh"].mode)
    assert.equal("l", t.by_path["css/home"].kind)
    assert.equal("../index.html", t.by_path["css/home"].target)
    assert.equal("d", t.by_path["sub/deep"].kind)
  end)

  it("refuses a missing, an empty or a non-directory DIR, links out of it, and reserved names", function()
    local _, e = tree.scan(dir .. "/nope")
    assert.matches("no such directory", e)
    sh("mkdir -p " .. q(dir .. "/e/only/dirs"))
    _, e = tree.scan(dir .. "/e")
    assert.matches("empty", e)
    _, e = tree.scan(dir .. "/s/index.html")
    assert.matches("not a directory", e)
    local outs = { "/etc/passwd", "../../x", "../..", "../d/../../..", "../sub/../.." }
    for _, target in ipairs(outs) do
      sh("ln -sfn " .. q(target) .. " " .. q(dir .. "/s/css/out"))
      _, e = tree.scan(dir .. "/s")
      assert.matches("css/out: a symlink pointing outside", e, 1, true)
    end
    -- through a link to ".": lexically inside, physically out
    sh("rm " .. q(dir .. "/s/css/out") .. " && ln -s . " .. q(dir .. "/s/here") .. " && ln -s here/../x " .. q(dir .. "/s/y"))
    _, e = tree.scan(dir .. "/s")
    assert.matches("y: a symlink pointing outside", e, 1, true)
    sh("rm " .. q(dir .. "/s/y") .. " && ln -s y " .. q(dir .. "/s/loop1") .. " && ln -s loop1 " .. q(dir .. "/s/y"))
    _, e = tree.scan(dir .. "/s")
    assert.matches("pointing outside", e)
    sh("rm " .. q(dir .. "/s/y") .. " " .. q(dir .. "/s/loop1"))
    write(dir .. "/s/.phanes-manifest", "x")
    _, e = tree.scan(dir .. "/s")
    assert.matches("phanes' own", e)
    sh("rm " .. q(dir .. "/s/.phanes-manifest"))
    write(dir .. "/s/bad\nname", "x")
    _, e = tree.scan(dir .. "/s")
    assert.matches("control character", e)
  end)

  it("writes a manifest that reads back, and diffs by content and mode", function()
    local t = assert(tree.scan(dir .. "/s"))
    local text = tree.text(t.entries)
    assert.matches("^d\tcss\nf\t644\t7\t%x+\tcss/a%.css\nl\t%.%./index%.html\tcss/home\nl\tsub/deep\td\n", text)
    local old = tree.parse(text)
    assert.same(t.by_path["index.html"], old["index.html"])
    local d = tree.diff(old, t.entries)
    assert.equal(0, #d.upload)
    assert.equal(3, #d.link)
    -- one file changed, one mode changed, one new
    write(dir .. "/s/index.html", "changed\n")
    sh("chmod 755 " .. q(dir .. "/s/css/a.css"))
    write(dir .. "/s/new.txt", "n")
    local t2 = assert(tree.scan(dir .. "/s"))
    d = tree.diff(old, t2.entries)
    local up = {}
    for _, e in ipairs(d.upload) do up[#up + 1] = e.path end
    assert.same({ "css/a.css", "index.html", "new.txt" }, up)
    assert.same({ "run.sh" }, d.link)
    assert.equal(7 + 8 + 1, d.bytes)
    -- no previous release: everything goes
    assert.equal(4, #tree.diff({}, t2.entries).upload)
  end)

  it("tars the directories, links and changed files, and the real tar unpacks them", function()
    local t = assert(tree.scan(dir .. "/s"))
    local d = tree.diff({ ["run.sh"] = t.by_path["run.sh"] }, t.entries)
    local data = assert(tree.tar(dir .. "/s", t, d, { { name = ".phanes-manifest", data = tree.text(t.entries) } }))
    write(dir .. "/r.tar", data)
    sh("mkdir " .. q(dir .. "/out") .. " && tar -x -f " .. q(dir .. "/r.tar") .. " -C " .. q(dir .. "/out"))
    local p = assert(io.popen("cd " .. q(dir .. "/out") .. " && find . | sort && cat index.html && readlink css/home && stat -c %a css/a.css"))
    local out = p:read "a"
    p:close()
    assert.equal(table.concat({ ".", "./.phanes-manifest", "./css", "./css/a.css", "./css/home", "./d", "./index.html",
      "./sub", "./sub/deep", "hello", "../index.html", "644", "" }, "\n"), out)
    -- a file that changes between the walk and the tar is refused
    write(dir .. "/s/index.html", "other\n")
    local none, e = tree.tar(dir .. "/s", t, d, {})
    assert.is_nil(none)
    assert.matches("changed while deploying", e)
  end)
end)

describe("deploy command line", function()
  it("takes DIR, --site, --keep, --list, --rollback --to", function()
    local p = assert(deploy.parse { "deploy", "./public", "--site", "blog", "--keep=3" })
    assert.equal("./public", p.dir)
    assert.equal("blog", p.site)
    assert.equal(3, p.keep)
    p = assert(deploy.parse { "deploy", "--list" })
    assert.equal("default", p.site)
    assert.equal(5, p.keep)
    p = assert(deploy.parse { "deploy", "--rollback", "--to", "20260102T030405Z-1a2b3c4d" })
    assert.equal("20260102T030405Z-1a2b3c4d", p.to)
  end)

  it("refuses what it cannot use before anything is sent", function()
    local cases = {
      { { "deploy" }, "which directory" },
      { { "deploy", "a", "b" }, "one directory at a time" },
      { { "deploy", "a", "--site", "../x" }, "plain word" },
      { { "deploy", "a", "--keep", "0" }, "--keep" },
      { { "deploy", "a", "--keep", "two" }, "--keep" },
      { { "deploy", "--rollback", "--to", "../x" }, "not a release id" },
      { { "deploy", "a", "--to", "20260102T030405Z-1a2b3c4d" }, "--to goes with --rollback" },
      { { "deploy", "--list", "--rollback" }, "not both" },
      { { "deploy", "--list", "a" }, "take no directory" },
      { { "deploy", "a", "--frobnicate" }, "unknown option" },
    }
    for _, c in ipairs(cases) do
      local p, e = deploy.parse(c[1])
      assert.is_nil(p, table.concat(c[1], " "))
      assert.matches(c[2], e, 1, true)
    end
  end)

  it("exits 2 on refused input without connecting (no inventory, no host)", function()
    local home = fx.tmpdir()
    local bin = require("phanes.sys").exe()
    local p = assert(io.popen("HOME=" .. q(home) .. " " .. q(bin) .. " deploy " .. q(home .. "/missing") .. " 2>&1"))
    local out = p:read "a"
    local _, _, code = p:close()
    assert.equal(2, code)
    assert.matches("no such directory", out)
    p = assert(io.popen("HOME=" .. q(home) .. " " .. q(bin) .. " deploy " .. q(home) .. " --site 'a b' 2>&1"))
    out = p:read "a"
    _, _, code = p:close()
    assert.equal(2, code)
    assert.matches("plain word", out)
    sh("rm -rf " .. q(home))
  end)
end)
