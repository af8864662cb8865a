-- phanes.state: the run lock, checked against flock(1) in other processes.
describe("phanes.state.lock", function()
  local state = require "phanes.state"
  local exec = require "phanes.exec"
  local file = require "phanes.file"
  local sys = require "phanes.sys"
  local dir, path

  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(file.mkdir(dir))
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
