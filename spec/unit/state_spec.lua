-- phanes.state: the run lock, checked against flock(1) in other processes.
describe("phanes.state.lock", function()
  local state = require "phanes.state"
  local exec = require "phanes.exec"
  local file = require "phanes.file"
  local sys = require "phanes.sys"
  local dir, path

  before_each(function()
    dir = require("spec.support.fakeexec").tmpdir() -- `phanes lua` runs scripts from here as root
    path = dir .. "/phanes.lock"
  end)
  after_each(function() assert(file.remove(dir, true)) end)

  -- Can another process take the lock right now?
  local function free()
    local r = assert(exec.run { argv = { "flock", "-n", path, "true" } })
    return r.code == 0
  end

  it("holds an exclusive lock until unlock", function()
    local l = assert(state.lock(path))
    assert.equal(tonumber("600", 8), file.stat(path).mode)
    assert.is_false(free())
    assert.is_true(l:unlock())
    assert.is_true(free())
    assert.is_true(l:unlock()) -- twice is fine
    assert.equal("phanes.state.lock (released)", tostring(l))
  end)

  it("refuses a second lock at once, even in the same process", function()
    local l = assert(state.lock(path))
    local t0 = sys.now()
    local none, err, code = state.lock(path)
    assert.is_nil(none)
    assert.equal(path .. ": locked by another phanes run (pid " .. sys.getpid() .. ")", err)
    assert.equal("locked", code)
    none, err = state.lock(path, { wait = false })
    assert.equal(path .. ": locked by another phanes run (pid " .. sys.getpid() .. ")", err)
    assert.truthy(sys.now() - t0 < 0.5)
    l:unlock()
    assert(state.lock(path)):unlock()
  end)

  it("is released by <close> and by the garbage collector", function()
    do
      local l <close> = assert(state.lock(path))
      assert.is_false(free())
    end
    assert.is_true(free())
    local l = assert(state.lock(path))
    assert.is_false(free())
    l = nil -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    assert.is_true(free())
  end)

  describe("waiting", function()
    -- Until the background flock(1) started by a test has the lock.
    local function held_elsewhere()
      for _ = 1, 100 do
        if not free() then return true end
        sys.sleep(0.02)
      end
      return false
    end

    it("gives up after opts.timeout", function()
      assert(exec.run { argv = { "sh", "-c", 'flock "$0" sleep 3 >/dev/null 2>&1 &', path } })
      assert.is_true(held_elsewhere())
      local t0 = sys.now()
      local none, err = state.lock(path, { wait = true, timeout = 0.3 })
      local waited = sys.now() - t0
      assert.is_nil(none)
      assert.equal(path .. ": locked by another phanes run", err)
      assert.truthy(waited >= 0.3 and waited < 2, waited)
    end)

    it("gets the lock once the other run lets go", function()
      assert(exec.run { argv = { "sh", "-c", 'flock "$0" sleep 0.5 >/dev/null 2>&1 &', path } })
      assert.is_true(held_elsewhere())
      local t0 = sys.now()
      local l = assert(state.lock(path, { timeout = 10 })) -- a timeout implies wait
      assert.truthy(sys.now() - t0 < 5)
      assert.is_false(free())
      l:unlock()
    end)

    it("stops waiting when a trapped signal arrives", function()
      local script = dir .. "/wait.lua"
      assert(file.write(script, [[
        local state, sys, exec = require "phanes.state", require "phanes.sys", require "phanes.exec"
        local path = ...
        sys.trap_signals()
        local held = assert(state.lock(path))
        exec.run { shell = "(sleep 0.3; kill -INT $PPID) >/dev/null 2>&1 &" }
        local t0 = sys.now()
        local none, err = state.lock(path, { wait = true })
        io.write(tostring(none), "|", err, "|", tostring(sys.now() - t0 < 5))
        held:unlock()
      ]]))
      local r = assert(exec.run { argv = { sys.exe(), "lua", script, path }, timeout = 20 })
      assert.equal(0, r.code, r.stderr)
      assert.equal("nil|" .. path .. ": interrupted while waiting for the lock|true", r.stdout)
    end)
  end)

  it("when phanes is killed, holds the lock until every command it started is gone", function()
    local script, pidfile = dir .. "/run.lua", dir .. "/sleep.pid"
    local f = assert(io.open(script, "w"))
    -- a grandchild: the shell forks sleep, so the death signal misses it
    f:write(string.format([[
      local lock = assert(require("phanes.state").lock(%q))
      require("phanes.exec").run { shell = "sleep 318 & echo $! >%s; wait" }
    ]], path, pidfile))
    f:close()
    local r = assert(exec.run { shell = string.format("%q lua %q >/dev/null 2>&1 & echo $!",
      sys.exe() or "build/phanes", script) })
    local parent = r.stdout:match "%d+"
    local child
    for _ = 1, 250 do
      local pf = io.open(pidfile)
      child = pf and pf:read "n"
      if pf then pf:close() end
      if child then break end
      sys.sleep(0.02)
    end
    assert.truthy(child, "the command did not start")
    local function alive(pid)
      local st = io.open("/proc/" .. pid .. "/stat")
      local s = st and st:read "a" or ""
      if st then st:close() end
      return s:match "^%d+ %(sleep%) [^Z]" ~= nil
    end
    -- $! is known before the forked shell has become sleep (slow under ASan)
    for _ = 1, 250 do
      if alive(child) then break end
      sys.sleep(0.02)
    end
    assert.is_true(alive(child))
    assert.is_false(free())
    assert(exec.run { argv = { "kill", "-KILL", parent } })
    local t0 = sys.now()
    while sys.now() - t0 < 10 do
      local is_free = free()
      if is_free then
        assert.is_false(alive(child), "the lock was free while sleep " .. child .. " still ran")
        break
      end
      sys.sleep(0.02)
    end
    assert.is_true(free())
    assert.is_false(alive(child))
  end)

  it("reports a path it cannot open", function()
    local none, err, code = state.lock(dir .. "/no/such/lock")
    assert.is_nil(none)
    assert.equal(dir .. "/no: No such file or directory", err) -- the part that is missing
    assert.equal("missing", code)
  end)

  it("raises on misuse", function()
    assert.has_error(function() state.lock() end)
    assert.has_error(function() state.lock({}) end)
    assert.has_error(function() state.lock(path, "wait") end)
    assert.has_error(function() state.lock(path, { wait = "yes" }) end)
    assert.has_error(function() state.lock(path, { timeout = -1 }) end)
    assert.has_error(function() state.lock(path, { timeout = "1" }) end)
  end)
end)

-- phanes.state read/write/set_aside: no link followed, nothing planted
-- trusted. Owners other than root are made with chown on files in a temp
-- directory (root only; skipped otherwise).
describe("phanes.state files", function()
  local state = require "phanes.state"
  local file = require "phanes.file"
  local sys = require "phanes.sys"
  local lfs = require "lfs"
  local dir, target
  local NOBODY = 65534

  local function sh(cmd) assert(os.execute(cmd), cmd) end
  local function read(p)
    local f = assert(io.open(p))
    local s = f:read "a"
    f:close()
    return s
  end
  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(file.mkdir(dir))
    target = dir .. "/target"
    sh("echo precious >" .. target)
  end)
  after_each(function() assert(file.remove(dir, true)) end)

  it("writes atomically (mode, no temp left) and reads back", function()
    local p = dir .. "/state.json"
    assert.is_true(state.write(p, "one\n"))
    assert.is_true(state.write(p, "two\n", tonumber("0640", 8)))
    assert.equal("two\n", state.read(p))
    assert.equal("rw-r-----", lfs.attributes(p, "permissions"))
    local names = {}
    for n in lfs.dir(dir) do if n ~= "." and n ~= ".." then names[#names + 1] = n end end
    table.sort(names)
    assert.same({ "state.json", "target" }, names)
  end)

  it("says what is missing", function()
    local none, err, code = state.read(dir .. "/nope.json")
    assert.is_nil(none)
    assert.equal(dir .. "/nope.json: No such file or directory", err)
    assert.equal("missing", code)
    none, err, code = state.write(dir .. "/no/such/state.json", "x")
    assert.equal(dir .. "/no: No such file or directory", err)
    assert.equal("missing", code)
  end)

  it("never follows a symlink at the state or lock path, even where only root writes", function()
    local p = dir .. "/state.json"
    assert(lfs.link(target, p, true))
    for _, try in ipairs {
      function() return state.read(p) end,
      function() return state.write(p, "owned\n") end,
      function() return state.lock(p) end,
    } do
      local none, err, code = try()
      assert.is_nil(none)
      assert.equal("unsafe", code)
      assert.matches(p .. ": refusing: a symlink owned by root", err, 1, true)
    end
    assert.equal("precious\n", read(target))
    assert.equal("link", lfs.symlinkattributes(p, "mode"))
  end)

  describe("in a directory others can write", function()
    if sys.geteuid() ~= 0 then pending("needs root to chown") return end
    local open
    before_each(function()
      open = dir .. "/open"
      assert(file.mkdir(open))
      sh("chmod 1777 " .. open)
    end)

    it("refuses a file of another owner, naming path and owner", function()
      local p = open .. "/state.json"
      sh("echo '{}' >" .. p .. " && chown " .. NOBODY .. " " .. p)
      local none, err, code = state.read(p)
      assert.is_nil(none)
      assert.equal("unsafe", code)
      assert.matches(p .. ": refusing: a file owned by ", err, 1, true)
      assert.matches("uid " .. NOBODY, err, 1, true)
      none, err = state.write(p, "x")
      assert.is_nil(none)
      assert.equal("{}\n", read(p))
      assert.is_nil((state.lock(p)))
    end)

    it("refuses a hard link (written in place, the lock could be any file)", function()
      local p = open .. "/lock"
      sh("ln " .. target .. " " .. p)
      local none, err, code = state.lock(p)
      assert.is_nil(none)
      assert.equal("unsafe", code)
      assert.matches("2 hard links", err, 1, true)
      assert.equal("precious\n", read(target))
    end)

    it("refuses a symlinked directory on the way that is not root's", function()
      sh("ln -s " .. dir .. " " .. open .. "/sub && chown -h " .. NOBODY .. " " .. open .. "/sub")
      local none, err, code = state.write(open .. "/sub/target", "owned\n")
      assert.is_nil(none)
      assert.equal("unsafe", code)
      assert.matches(open .. "/sub: refusing: a symlink owned by ", err, 1, true)
      assert.matches("(uid " .. NOBODY .. ")", err, 1, true)
      assert.equal("precious\n", read(target))
    end)

    it("writes its own file there", function()
      assert.is_true(state.write(open .. "/mine.json", "ok\n"))
      assert.equal("ok\n", state.read(open .. "/mine.json"))
    end)
  end)

  it("follows a root symlink in a directory only root writes", function()
    if sys.geteuid() ~= 0 then pending("needs root") return end
    assert(file.mkdir(dir .. "/real"))
    assert(lfs.link(dir .. "/real", dir .. "/via", true))
    assert.is_true(state.write(dir .. "/via/state.json", "ok\n"))
    assert.equal("ok\n", read(dir .. "/real/state.json"))
  end)

  it("sets a file aside under a name never used before", function()
    local p = dir .. "/state.json"
    local asides = {}
    for i = 1, 3 do
      sh("echo bad" .. i .. " >" .. p)
      asides[i] = assert(state.set_aside(p, ".corrupt-X"))
    end
    assert.same({ p .. ".corrupt-X", p .. ".corrupt-X-2", p .. ".corrupt-X-3" }, asides)
    for i = 1, 3 do assert.equal("bad" .. i .. "\n", read(asides[i])) end
    assert.is_nil(lfs.symlinkattributes(p, "mode"))
    local none, _, code = state.set_aside(p, ".corrupt-X")
    assert.is_nil(none)
    assert.equal("missing", code)
    assert.has_error(function() state.set_aside(p, "/x") end)
    assert.has_error(function() state.write(p) end)
  end)
end)
