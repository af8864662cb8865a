-- git.checkout against a real local repository (git runs for real, its
-- commands recorded by the fake transport): clone at a ref, no network on a
-- re-run, moving to another ref, a dirty checkout kept, dry runs.
local fakeexec = require "support.fakeexec"
local F = require "phanes.file"

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function sh(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1"))
  local out = p:read "a"
  local ok = p:close()
  assert(ok, cmd .. "\n" .. out)
  return (out:gsub("%s+$", ""))
end

local G = "git -c user.name=spec -c user.email=spec@example.com -c init.defaultBranch=main"

local function world(o)
  local w = fakeexec.world(o)
  w.fake:on("git", function(opts) return require("phanes.exec").run(opts) end)
  -- the upstream: two commits, the first tagged v1
  w.repo = w.path "/upstream"
  sh("mkdir " .. q(w.repo) .. " && cd " .. q(w.repo) .. " && " .. G .. " init -q . && echo one > f && "
    .. G .. " add f && " .. G .. " commit -qm one && " .. G .. " tag v1 && echo two > f && " .. G .. " commit -qam two")
  w.v1 = sh("git -C " .. q(w.repo) .. " rev-parse v1")
  w.main = sh("git -C " .. q(w.repo) .. " rev-parse main")
  w.dest = w.path "/app"
  return w
end

local function head(w) return sh("git -C " .. q(w.dest) .. " rev-parse HEAD") end

describe("git.checkout", function()
  local w
  after_each(function() if w then w.close() w = nil end end)

  it("clones at a tag, then costs no fetch on a re-run", function()
    w = world()
    local r = w.ctx.git.checkout { repo = w.repo, ref = "v1", dest = w.dest }
    assert.equal("changed", r.status)
    assert.equal(w.v1, head(w))
    assert.equal("one", sh("cat " .. q(w.dest .. "/f")))
    w.fake:reset()
    r = w.ctx.git.checkout { repo = w.repo, ref = "v1", dest = w.dest }
    assert.equal("ok", r.status)
    assert.equal(0, w.fake:count("git -C " .. w.dest .. " fetch"))
    assert.equal(0, w.fake:count("git -C " .. w.dest .. " clone"))
  end)

  it("moves to another ref, fetching a commit it does not know yet", function()
    w = world()
    w.ctx.git.checkout { repo = w.repo, ref = "v1", dest = w.dest }
    local r = w.ctx.git.checkout { repo = w.repo, ref = "main", dest = w.dest }
    assert.equal("changed", r.status)
    assert.equal(w.v1:sub(1, 12) .. " -> " .. w.main:sub(1, 12) .. " (main)", r.message)
    assert.equal(w.main, head(w))
    sh("cd " .. q(w.repo) .. " && echo three > f && " .. G .. " commit -qam three")
    local three = sh("git -C " .. q(w.repo) .. " rev-parse HEAD")
    w.fake:reset()
    assert.equal("changed", w.ctx.git.checkout({ repo = w.repo, ref = three, dest = w.dest }).status)
    assert.equal(three, head(w))
    assert.equal(1, w.fake:count("git -C " .. w.dest .. " fetch"))
  end)

  it("never discards changes: fails listing the changed files", function()
    w = world()
    w.ctx.git.checkout { repo = w.repo, ref = "v1", dest = w.dest }
    fakeexec.write(w.dest .. "/f", "edited by hand\n")
    local ok, err = pcall(w.ctx.git.checkout, { repo = w.repo, ref = "main", dest = w.dest })
    assert.is_false(ok)
    assert.matches("has changes to tracked files, not discarded", tostring(err), 1, true)
    assert.matches(" M f", tostring(err), 1, true)
    assert.equal("edited by hand\n", fakeexec.read(w.dest .. "/f"))
    assert.equal(w.v1, head(w))
  end)

  it("shows the current and wanted commit in a dry run, and a clone to come", function()
    w = world()
    w.ctx.git.checkout { repo = w.repo, ref = "v1", dest = w.dest }
    w.run.dry_run, w.ctx.dry_run = true, true
    local r = w.ctx.git.checkout { repo = w.repo, ref = "main", dest = w.dest }
    assert.equal("would change", r.status)
    assert.equal(w.v1:sub(1, 12) .. " -> " .. w.main:sub(1, 12) .. " (main)", r.message)
    assert.equal(w.v1, head(w))
    r = w.ctx.git.checkout { repo = w.repo, ref = "v1", dest = w.path "/other" }
    assert.equal("clone " .. w.repo .. " at v1", r.message)
    assert.is_false(F.exists(w.path "/other"))
  end)

  it("refuses an unknown ref, another origin, and a non-empty directory", function()
    w = world()
    local ok, err = pcall(w.ctx.git.checkout, { repo = w.repo, ref = "v9", dest = w.dest })
    assert.is_false(ok)
    assert.matches("ref v9 is not in " .. w.repo, tostring(err), 1, true)
    sh("rm -rf " .. q(w.dest))
    w.ctx.git.checkout { repo = w.repo, ref = "v1", dest = w.dest }
    ok, err = pcall(w.ctx.git.checkout, { repo = w.path "/elsewhere", ref = "v1", dest = w.dest })
    assert.is_false(ok)
    assert.matches("is a checkout of " .. w.repo, tostring(err), 1, true)
    sh("mkdir " .. q(w.path "/full") .. " && touch " .. q(w.path "/full/x"))
    ok, err = pcall(w.ctx.git.checkout, { repo = w.repo, ref = "v1", dest = w.path "/full" })
    assert.is_false(ok)
    assert.matches("is not empty and is not a git checkout", tostring(err), 1, true)
  end)
end)

describe("git.checkout without a process", function()
  local w
  after_each(function() if w then w.close() w = nil end end)

  it("a re-run at a tag, an annotated tag, a branch or a commit reads .git and runs no git", function()
    w = world()
    sh("cd " .. q(w.repo) .. " && " .. G .. " tag -a -m annotated v1a v1")
    for _, ref in ipairs { "v1", "v1a", "main" } do
      w.ctx.git.checkout { repo = w.repo, ref = ref, dest = w.dest }
      w.fake:reset()
      local r = w.ctx.git.checkout { repo = w.repo, ref = ref, dest = w.dest }
      assert.equal("ok", r.status, ref)
      assert.equal(0, w.fake:count(), ref .. ": " .. table.concat(w.fake:lines(), "; "))
    end
    w.ctx.git.checkout { repo = w.repo, ref = w.v1, dest = w.dest }
    w.fake:reset()
    assert.equal("ok", w.ctx.git.checkout({ repo = w.repo, ref = w.v1, dest = w.dest }).status)
    assert.equal(0, w.fake:count())
    assert.equal(w.v1, head(w))
  end)
end)
