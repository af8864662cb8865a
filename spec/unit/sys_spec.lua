-- phanes.sys: clocks, signals, process and machine identity, users.
describe("phanes.sys", function()
  local sys = require "phanes.sys"
  local exec = require "phanes.exec"
  local file = require "phanes.file"

  local function sh(cmd)
    local r = assert(exec.run { shell = cmd })
    assert.equal(0, r.code, r.stderr)
    return (r.stdout:gsub("\n$", ""))
  end

  -- Runs a Lua script in a fresh phanes process (signal handlers must not
  -- be installed in the process running the specs).
  local fakeexec = require "spec.support.fakeexec"
  local function phanes_lua(script, prefix)
    local dir = fakeexec.tmpdir() -- not /tmp: as root, phanes lua refuses scripts there
    local path = dir .. "/script.lua"
    assert(file.write(path, script))
    local argv = { sys.exe(), "lua", path }
    for i, a in ipairs(prefix or {}) do table.insert(argv, i, a) end
    local r = assert(exec.run { argv = argv, timeout = 20 })
    fakeexec.rmtree(dir)
    assert.equal(0, r.code, r.stderr)
    return r.stdout
  end

  it("has a monotonic clock, the wall clock and sleep", function()
    local t0 = sys.now()
    assert.is_true(sys.sleep(0.05))
    local dt = sys.now() - t0
    assert.truthy(dt >= 0.05 and dt < 1, dt)
    assert.truthy(math.abs(sys.time() - os.time()) <= 1)
    assert.is_true(sys.sleep(0))
  end)

  it("counts SIGINT and SIGTERM once trapped; a running child carries on", function()
    local out = phanes_lua [[
      local sys, exec = require "phanes.sys", require "phanes.exec"
      sys.trap_signals()
      io.write(sys.interrupted(), "|")
      local r = exec.run { shell = "kill -INT $PPID; sleep 0.2; kill -TERM $PPID; sleep 0.2; echo done" }
      io.write(sys.interrupted(), "|", r.stdout, "|", tostring(r.code))
    ]]
    assert.equal("0|2|done\n|0", out)
  end)

  it("with trap_signals(n), the n-th signal stops the running child", function()
    local out = phanes_lua [[
      local sys, exec = require "phanes.sys", require "phanes.exec"
      sys.trap_signals(2)
      local r = exec.run { shell = "kill -INT $PPID; sleep 0.2; echo still; kill -INT $PPID; sleep 10; echo never" }
      io.write(sys.interrupted(), "|", r.stdout, "|", tostring(r.signal), "|", tostring(r.duration < 5))
    ]]
    assert.equal("2|still\n|15|true", out)
  end)

  it("a trapped signal cuts sys.sleep short", function()
    local out = phanes_lua [[
      local sys, exec = require "phanes.sys", require "phanes.exec"
      sys.trap_signals()
      exec.run { shell = "(sleep 0.2; kill -TERM $PPID) >/dev/null 2>&1 &" }
      local t0 = sys.now()
      local full = sys.sleep(10)
      io.write(tostring(full), "|", sys.interrupted(), "|", tostring(sys.now() - t0 < 5))
    ]]
    assert.equal("false|1|true", out)
  end)

  it("names signals", function()
    assert.equal("SIGTERM", sys.signal_name(15))
    assert.equal("SIGINT", sys.signal_name(2))
    assert.equal("SIGKILL", sys.signal_name(9))
    assert.equal("signal 999", sys.signal_name(999))
  end)

  it("knows the process", function()
    assert.equal(tonumber(sh "id -u"), sys.getuid())
    assert.equal(tonumber(sh "id -u"), sys.geteuid())
    assert.equal(tostring(sys.getpid()), sh "echo $PPID")
    assert.truthy(sys.exe():match "/phanes$")
    assert.is_true(file.exists(sys.exe()))
    assert.equal(os.getenv "PATH", sys.environ().PATH)
    assert.truthy(sys.maxrss() > 1000)
    assert.is_false(sys.isatty(0))
    assert.is_false(sys.isatty(12345))
  end)

  it("knows the machine", function()
    assert.equal(sh "hostname", sys.hostname())
    local u = sys.uname()
    assert.equal("Linux", u.sysname)
    assert.equal(sh "uname -m", u.machine)
    assert.equal(sh "uname -r", u.release)
    assert.equal(sys.hostname(), u.nodename)
    local v = assert(sys.statvfs "/")
    assert.truthy(v.size > 0 and v.avail <= v.size)
    local none, err = sys.statvfs "/phanes-no-such-dir"
    assert.is_nil(none)
    assert.equal("/phanes-no-such-dir: No such file or directory", err)
  end)

  it("looks up users and groups by name or id", function()
    local root = assert(sys.getpwnam "root")
    assert.same({ name = "root", uid = 0, gid = 0, home = "/root", shell = root.shell }, root)
    assert.equal("root", sys.getpwnam(0).name)
    assert.is_nil(sys.getpwnam "phanes-no-such-user")
    local g = assert(sys.getgrnam "root")
    assert.equal(0, g.gid)
    assert.is_table(g.members)
    assert.equal("root", sys.getgrnam(0).name)
    assert.is_nil(sys.getgrnam "phanes-no-such-group")
  end)

  it("reads a password from the terminal without echo", function()
    local probe = assert(exec.run { argv = { "sh", "-c", "command -v script" } })
    if probe.code ~= 0 then
      pending "script(1) is not installed"
      return
    end
    local dir = fakeexec.tmpdir()
    local path = dir .. "/getpass.lua"
    assert(file.write(path, [[
      local s, err = require("phanes.sys").getpass("Secret: ")
      io.write("got[", tostring(s), "]")
    ]]))
    -- script(1) gives the child a terminal; the answer is typed after the prompt.
    local r = assert(exec.run { argv = { "sh", "-c",
      '(sleep 0.5; printf "hunter2\\n"; sleep 0.5) | script -qec "$0 lua $1" /dev/null', sys.exe(), path },
      timeout = 10 })
    fakeexec.rmtree(dir)
    assert.truthy(r.stdout:match "Secret: ", r.stdout)
    assert.truthy(r.stdout:match "got%[hunter2%]", r.stdout)
    local _, echoes = r.stdout:gsub("hunter2", "")
    assert.equal(1, echoes) -- only our own output, no echo
  end)

  it("getpass without a terminal is a clean error", function()
    local out = phanes_lua([[
      local s, err = require("phanes.sys").getpass()
      io.write(tostring(s), "|", err)
    ]], { "setsid", "-w" }) -- no controlling terminal
    assert.equal("nil|/dev/tty: No such device or address", out)
  end)

  it("raises on misuse", function()
    assert.has_error(function() sys.sleep(-1) end)
    assert.has_error(function() sys.sleep "x" end)
    assert.has_error(function() sys.signal_name "TERM" end)
    assert.has_error(function() sys.trap_signals "x" end)
    assert.has_error(function() sys.isatty() end)
    assert.has_error(function() sys.getpwnam() end)
    assert.has_error(function() sys.statvfs() end)
  end)
end)
