-- phanes.exec: running programs from Lua through the C primitive.
describe("phanes.exec", function()
  local exec = require "phanes.exec"

  local tmpdir = require("spec.support.fakeexec").tmpdir

  -- Our open descriptors and our children, to prove nothing leaks.
  local function open_fds()
    local lfs = require "lfs"
    local n, names = 0, {}
    for fd in lfs.dir "/proc/self/fd" do
      if fd:match "^%d+$" and tonumber(fd) < 1024 then -- valgrind keeps its own above
        n = n + 1
        names[#names + 1] = fd .. " -> " .. tostring(lfs.symlinkattributes("/proc/self/fd/" .. fd, "target"))
      end
    end
    return n, table.concat(names, "\n")
  end
  local function children()
    local pid = require("phanes.sys").getpid()
    local f = assert(io.open("/proc/" .. pid .. "/task/" .. pid .. "/children"))
    local s = f:read "a"
    f:close()
    return s
  end

  it("runs an argv and captures stdout, stderr and the exit code", function()
    local r = assert(exec.run { argv = { "sh", "-c", "echo out; echo err >&2; exit 3" } })
    assert.equal("out\n", r.stdout)
    assert.equal("err\n", r.stderr)
    assert.equal(3, r.code)
    assert.is_nil(r.signal)
    assert.is_false(r.timed_out)
    assert.is_number(r.duration)
    assert.truthy(r.duration >= 0 and r.duration < 5)
  end)

  it("passes arguments verbatim, without a shell", function()
    local r = assert(exec.run { argv = { "printf", "%s|", "a b", "$HOME", "'q'", "" } })
    assert.equal("a b|$HOME|'q'||", r.stdout)
    assert.equal(0, r.code)
  end)

  it("runs opts.shell with /bin/sh -c", function()
    local r = assert(exec.run { shell = "echo $((1 + 2)) | tr 3 x" })
    assert.equal("x\n", r.stdout)
    assert.equal(0, r.code)
  end)

  it("reports a signal instead of an exit code", function()
    local r = assert(exec.run { shell = "kill -TERM $$" })
    assert.is_nil(r.code)
    assert.equal(15, r.signal)
  end)

  it("returns nil, err, errno when the program cannot start", function()
    local r, err, errno = exec.run { argv = { "phanes-no-such-program" } }
    assert.is_nil(r)
    assert.equal("exec: phanes-no-such-program: No such file or directory", err)
    assert.equal(2, errno)
    local plain = os.tmpname() -- mode 0600: not executable, even for root
    r, err = exec.run { argv = { plain } }
    os.remove(plain)
    assert.is_nil(r)
    assert.equal("exec: " .. plain .. ": Permission denied", err)
  end)

  it("runs in opts.cwd and reports a missing one cleanly", function()
    local d = tmpdir()
    local r = assert(exec.run { argv = { "pwd" }, cwd = d })
    assert.equal(d .. "\n", r.stdout)
    local none, err, errno = exec.run { argv = { "pwd" }, cwd = d .. "/nope" }
    os.execute("rm -rf " .. d)
    assert.is_nil(none)
    assert.equal("exec: cannot enter " .. d .. "/nope: No such file or directory", err)
    assert.equal(2, errno)
  end)

  it("gives the child opts.umask; without it the child inherits phanes' own", function()
    local r = assert(exec.run { shell = "umask", umask = tonumber("027", 8) })
    assert.equal("0027\n", r.stdout)
    r = assert(exec.run { shell = "umask", umask = 0 })
    assert.equal("0000\n", r.stdout)
    local own = assert(exec.run { shell = "umask" }).stdout
    local d = tmpdir()
    r = assert(exec.run { shell = "umask; touch f; mkdir g; stat -c %a f g", cwd = d, umask = tonumber("077", 8) })
    os.execute("rm -rf " .. d)
    assert.equal("0077\n600\n700\n", r.stdout)
    assert.equal(own, assert(exec.run { shell = "umask" }).stdout) -- phanes' own is untouched
  end)

  it("feeds opts.stdin; without it stdin is /dev/null", function()
    local r = assert(exec.run { argv = { "cat" }, stdin = "hello\0world" })
    assert.equal("hello\0world", r.stdout)
    r = assert(exec.run { argv = { "cat" } })
    assert.equal("", r.stdout)
    r = assert(exec.run { argv = { "cat" }, stdin = "" })
    assert.equal("", r.stdout)
  end)

  it("moves large inputs and outputs both ways without deadlock", function()
    local big = string.rep("0123456789abcdef", 512 * 1024) -- 8 MiB
    local r = assert(exec.run { argv = { "cat" }, stdin = big, timeout = 30 })
    assert.equal(#big, #r.stdout)
    assert.truthy(r.stdout == big)
    r = assert(exec.run { shell = "head -c 3000000 /dev/zero >&2; head -c 5000000 /dev/zero; head -c 3000000 /dev/zero >&2", timeout = 30 })
    assert.equal(5000000, #r.stdout)
    assert.equal(6000000, #r.stderr)
  end)

  it("survives a child that does not read its stdin", function()
    local r = assert(exec.run { argv = { "true" }, stdin = string.rep("x", 4 * 1024 * 1024) })
    assert.equal(0, r.code)
  end)

  it("adds opts.env to the environment; false removes a variable", function()
    local r = assert(exec.run { shell = 'printf "%s|%s|%s" "$PHANES_T" "$N" "${HOME-unset}"',
      env = { PHANES_T = "a b", N = 42, HOME = false } })
    assert.equal("a b|42|unset", r.stdout)
    r = assert(exec.run { shell = 'echo "$PATH"' })
    assert.equal(os.getenv "PATH" .. "\n", r.stdout)
  end)

  it("starts from an empty environment with clear_env", function()
    local r = assert(exec.run { argv = { "/usr/bin/env" }, clear_env = true, env = { ONLY = "1" } })
    assert.equal("ONLY=1\n", r.stdout)
    r = assert(exec.run { argv = { "/usr/bin/env" }, clear_env = true })
    assert.equal("", r.stdout)
  end)

  it("looks the program up in opts.env.PATH", function()
    local d = tmpdir()
    local f = assert(io.open(d .. "/phanes-probe", "w"))
    f:write "#!/bin/sh\necho probed\n"
    f:close()
    os.execute("chmod +x " .. d .. "/phanes-probe")
    local r = exec.run { argv = { "phanes-probe" }, env = { PATH = d .. ":/usr/bin:/bin" } }
    os.execute("rm -rf " .. d)
    assert.equal("probed\n", r.stdout)
  end)

  it("merges stderr into stdout in order", function()
    local r = assert(exec.run { shell = "echo 1; echo 2 >&2; echo 3", merge = true })
    assert.equal("1\n2\n3\n", r.stdout)
    assert.equal("", r.stderr)
  end)

  it("streams output as it arrives and still captures it", function()
    local seen = { stdout = {}, stderr = {} }
    local sys = require "phanes.sys"
    local t0, first = sys.now(), nil
    local r = assert(exec.run {
      shell = "echo a; sleep 0.3; echo b >&2; echo c",
      stream = function(kind, chunk)
        first = first or sys.now() - t0
        table.insert(seen[kind], chunk)
      end,
    })
    assert.equal("a\nc\n", table.concat(seen.stdout))
    assert.equal("b\n", table.concat(seen.stderr))
    assert.truthy(r.duration - first >= 0.25, "the first chunk came at the end")
    assert.equal("a\nc\n", r.stdout)
    assert.equal("b\n", r.stderr)
  end)

  it("gives a silent command's stream a \"tick\" turn every opts.tick seconds", function()
    local ticks, other = 0, 0
    local res = assert(exec.run { argv = { "sleep", "0.35" }, tick = 0.1, stream = function(kind, chunk)
      if kind == "tick" then
        assert.equal("", chunk)
        ticks = ticks + 1
      else
        other = other + 1
      end
    end })
    assert.equal(0, res.code)
    assert.is_true(ticks >= 2 and ticks <= 4, "ticks: " .. ticks)
    assert.equal(0, other)
    -- without tick, no tick calls; a tick that raises ends the run like any callback
    ticks = 0
    assert(exec.run { argv = { "sleep", "0.15" }, stream = function(kind) if kind == "tick" then ticks = ticks + 1 end end })
    assert.equal(0, ticks)
    local ok, e = pcall(exec.run, { argv = { "sleep", "5" }, tick = 0.05, stream = function(kind)
      if kind == "tick" then error("stop here", 0) end
    end })
    assert.is_false(ok)
    assert.equal("stop here", e)
    assert.has_error(function() exec.run { argv = { "true" }, tick = -1 } end,
      "exec.run: opts.tick must be a positive number of seconds")
  end)

  it("reaps the child and closes its pipes when the stream callback raises", function()
    local before = open_fds()
    local pid
    local t0 = os.time()
    local ok, err = pcall(exec.run, {
      shell = "echo $$; exec sleep 30",
      stream = function(_, chunk)
        pid = chunk:match "%d+"
        error({ boom = true })
      end,
    })
    assert.is_false(ok)
    assert.same({ boom = true }, err)
    assert.truthy(os.time() - t0 < 10)
    assert.is_string(pid)
    assert.is_nil(io.open("/proc/" .. pid .. "/stat")) -- gone: no zombie
    assert.equal("", children())
    local after, listing = open_fds()
    assert.equal(before, after, listing)
  end)

  it("times out: SIGTERM to the process group", function()
    local t0 = require("phanes.sys").now()
    local r = assert(exec.run { shell = "sleep 30 & sleep 30", timeout = 0.2 })
    assert.is_true(r.timed_out)
    assert.equal(15, r.signal)
    assert.truthy(require("phanes.sys").now() - t0 < 2)
  end)

  it("times out: SIGKILL 2 s later when SIGTERM is ignored", function()
    local r = assert(exec.run { shell = "trap '' TERM; echo started; sleep 30", timeout = 1 })
    assert.is_true(r.timed_out)
    assert.equal(9, r.signal)
    assert.equal("started\n", r.stdout)
    assert.truthy(r.duration >= 3 and r.duration < 6, r.duration)
  end)

  it("does not wait for background processes that keep the pipes open", function()
    local r = assert(exec.run { shell = "sleep 3 & echo done", timeout = 10 })
    assert.equal("done\n", r.stdout)
    assert.truthy(r.duration < 2)
  end)

  it("runs the child in its own process group", function()
    local r = assert(exec.run { shell = "echo $$; cut -d' ' -f5 /proc/$$/stat" })
    local pid, pgid = r.stdout:match "(%d+)\n(%d+)"
    assert.equal(pid, pgid)
    assert.are_not.equal(tostring(require("phanes.sys").getpid()), pgid)
  end)

  it("leaks no descriptor into the child", function()
    -- Descriptors phanes itself inherited without close-on-exec pass on too;
    -- anything else the child sees beyond 0-2 (and ls's own 3) is a leak.
    local lfs = require "lfs"
    local want = { ["0"] = true, ["1"] = true, ["2"] = true, ["3"] = true }
    for fd in lfs.dir "/proc/self/fd" do
      local f = io.open("/proc/self/fdinfo/" .. fd)
      local info = f and f:read "a"
      local flags = info and info:match "flags:%s*(%d+)"
      if f then f:close() end
      if flags and tonumber(flags, 8) & tonumber("2000000", 8) == 0 and tonumber(fd) > 2 then
        want[fd] = true
      end
    end
    local r = assert(exec.run { argv = { "ls", "/proc/self/fd" }, stdin = "" })
    local got = {}
    for fd in r.stdout:gmatch "%d+" do got[fd] = true end
    assert.same(want, got)
  end)

  it("leaks no descriptor and no child across many runs", function()
    local before = open_fds()
    for _ = 1, 200 do
      assert(exec.run { argv = { "true" }, stdin = "x" })
      assert(exec.run { argv = { "phanes-no-such-program" } } == nil)
    end
    assert.equal(before, open_fds())
    assert.equal("", children())
  end)

  it("kill_all() sends SIGTERM to running children", function()
    local killed
    local r = assert(exec.run {
      shell = "echo ready; sleep 30",
      timeout = 20,
      stream = function() killed = exec.kill_all() end,
    })
    assert.equal(1, killed)
    assert.equal(15, r.signal)
    assert.is_false(r.timed_out)
    assert.equal(0, exec.kill_all())
  end)

  it("a child dies with phanes, also when phanes is killed with SIGKILL", function()
    local sys = require "phanes.sys"
    local d = tmpdir()
    local script, pidfile = d .. "/run.lua", d .. "/child.pid"
    local f = assert(io.open(script, "w"))
    f:write(string.format([[require("phanes.exec").run { shell = "echo $$ >%s; exec sleep 317" }]], pidfile))
    f:close()
    local bin = sys.exe() or "build/phanes"
    local r = assert(exec.run { shell = string.format("%q lua %q >/dev/null 2>&1 & echo $!", bin, script) })
    local parent = r.stdout:match "%d+"
    local child
    for _ = 1, 200 do
      local pf = io.open(pidfile)
      child = pf and pf:read "n"
      if pf then pf:close() end
      if child then break end
      sys.sleep(0.02)
    end
    assert.truthy(child, "the child did not start")
    local function alive(pid)
      local cf = io.open("/proc/" .. pid .. "/cmdline")
      local cmd = cf and cf:read "a" or ""
      if cf then cf:close() end
      local st = io.open("/proc/" .. pid .. "/stat")
      local zombie = st and (st:read "a"):match "^%d+ %b() Z"
      if st then st:close() end
      return cmd:find("sleep", 1, true) ~= nil and not zombie
    end
    -- the pid file is written before the shell execs sleep: wait for it
    local up = false
    for _ = 1, 250 do
      if alive(child) then up = true break end
      sys.sleep(0.02)
    end
    assert.is_true(up)
    assert(exec.run { argv = { "kill", "-KILL", parent } })
    local gone = false
    for _ = 1, 250 do
      if not alive(child) then gone = true break end
      sys.sleep(0.02)
    end
    assert.is_true(gone, "sleep " .. child .. " outlived its phanes")
    os.execute("rm -rf " .. d)
  end)

  it("raises on misuse", function()
    local bad = {
      {},
      { argv = {} },
      { argv = "ls" },
      { argv = { "ls", 1 } },
      { argv = { "ls" }, shell = "ls" },
      { shell = 1 },
      { argv = { "ls" }, env = "X=1" },
      { argv = { "ls" }, env = { X = {} } },
      { argv = { "ls" }, env = { ["A=B"] = "1" } },
      { argv = { "ls" }, timeout = -1 },
      { argv = { "ls" }, timeout = "1" },
      { argv = { "ls" }, stream = "print" },
      { argv = { "ls" }, cwd = 1 },
      { argv = { "ls" }, umask = "022" },
      { argv = { "ls" }, umask = 512 },
      { argv = { "ls" }, umask = -1 },
      { argv = { "ls" }, umask = 1.5 },
      { argv = { "ls" }, stdin = {} },
      { argv = { "ls" }, merge = "yes" },
      { argv = { "ls" }, imput = "x" },
    }
    for _, opts in ipairs(bad) do
      assert.has_error(function() exec.run(opts) end)
    end
    assert.has_error(function() exec.run() end)
    assert.has_error(function() exec.run "ls" end)
    assert.has_error(function() exec.run { argv = { "ls" }, imput = "x" } end, "exec.run: unknown option imput")
    assert.has_error(function() exec.run { argv = { "ls" }, umask = "022" } end,
      "exec.run: opts.umask must be an integer from 0 to 0777 (tonumber(\"022\", 8)), got string")
  end)

  it("is cheap enough to call often", function()
    local sys = require "phanes.sys"
    local t0 = sys.now()
    for _ = 1, 100 do assert(exec.run { argv = { "true" } }) end
    local per = (sys.now() - t0) / 100
    assert.truthy(per < 0.05, "exec.run of true took " .. per .. " s")
  end)
  -- exec.spawn and exec.wait: several children at once, one poll.
  describe("spawn and wait", function()
    local sys = require "phanes.sys"

    -- Wait until every proc has exited: per index, its streams joined and
    -- its exit event.
    local function collect(procs, timeout)
      local got = {}
      for i = 1, #procs do got[i] = { stdout = {}, stderr = {}, result = {} } end
      local running = #procs
      local t0 = sys.now()
      while running > 0 do
        assert(sys.now() - t0 < (timeout or 10), "the children did not end")
        local events
        events, running = assert(exec.wait(procs, 1))
        for _, ev in ipairs(events) do
          assert.equal(procs[ev.index], ev.proc)
          if ev.kind == "exit" then got[ev.index].exit = ev
          else table.insert(got[ev.index][ev.kind], ev.data) end
        end
      end
      for _, g in ipairs(got) do
        for _, k in ipairs { "stdout", "stderr", "result" } do g[k] = table.concat(g[k]) end
      end
      return got
    end

    it("runs children side by side and hands out their output and exits as events", function()
      local before = open_fds()
      local t0 = sys.now()
      local procs = {}
      for i = 1, 3 do
        procs[i] = assert(exec.spawn { argv = { "sh", "-c", "echo out$0; sleep 0.6; echo err$0 >&2; exit $0", tostring(i) } })
        assert.is_number(procs[i]:pid())
      end
      local got = collect(procs)
      local took = sys.now() - t0
      assert.truthy(took < 1.5, "took " .. took .. " s: not side by side")
      for i = 1, 3 do
        assert.equal("out" .. i .. "\n", got[i].stdout)
        assert.equal("err" .. i .. "\n", got[i].stderr)
        assert.equal(i, got[i].exit.code)
        assert.is_nil(got[i].exit.signal)
        assert.is_nil(procs[i]:pid()) -- reaped
      end
      -- done procs are skipped; nothing left to wait for returns at once
      local events, running = exec.wait(procs)
      assert.same({}, events)
      assert.equal(0, running)
      for _, p in ipairs(procs) do p:close() end
      assert.equal(before, open_fds())
      assert.equal("", children())
    end)

    it("gives the child a result pipe on fd 3 only when asked, and merges stderr when asked", function()
      local p = assert(exec.spawn { shell = 'printf "{\\"ok\\": true}" >&3; echo text; echo warn >&2', result = true })
      local q = assert(exec.spawn { shell = "echo x >&3 || echo no-fd3 >&2; echo y", merge = true })
      local got = collect { p, q }
      assert.equal('{"ok": true}', got[1].result)
      assert.equal("text\n", got[1].stdout)
      assert.equal("warn\n", got[1].stderr)
      assert.matches("no%-fd3\ny\n$", got[2].stdout)
      assert.equal("", got[2].stderr)
      assert.equal("", got[2].result)
    end)

    it("gives the child opts.umask", function()
      local p = assert(exec.spawn { shell = "umask", umask = tonumber("022", 8) })
      local q = assert(exec.spawn { shell = "umask", umask = tonumber("077", 8) })
      local got = collect { p, q }
      assert.equal("0022\n", got[1].stdout)
      assert.equal("0077\n", got[2].stdout)
    end)

    it("writes opts.stdin (up to PIPE_BUF bytes) on a pipe that is the child's fd 0, closed after it", function()
      local before = open_fds()
      local text = string.rep("k", 4095) .. "\n"
      local p = assert(exec.spawn { shell = "wc -c; test -p /dev/stdin && echo pipe" })
      local q = assert(exec.spawn { shell = "wc -c; test -p /dev/stdin && echo pipe", stdin = text })
      local r = assert(exec.spawn { argv = { "true" }, stdin = text }) -- gone before it reads: no SIGPIPE for us
      local got = collect { p, q, r }
      assert.equal("0\n", got[1].stdout) -- /dev/null, not a pipe
      assert.equal("4096\npipe\n", got[2].stdout)
      assert.equal(0, got[3].exit.code)
      for _, x in ipairs { p, q, r } do x:close() end
      assert.equal(before, open_fds())
    end)

    it("carries large outputs of several children without loss", function()
      local procs = {}
      for i = 1, 3 do
        procs[i] = assert(exec.spawn { shell = "head -c 3000000 /dev/zero; head -c 1000000 /dev/zero >&2; head -c 2000000 /dev/zero >&3", result = true })
      end
      for _, g in ipairs(collect(procs, 30)) do
        assert.equal(3000000, #g.stdout)
        assert.equal(1000000, #g.stderr)
        assert.equal(2000000, #g.result)
        assert.equal(0, g.exit.code)
      end
    end)

    it("returns by the timeout with nothing, and reports a signal; kill signals the group", function()
      local p = assert(exec.spawn { argv = { "sleep", "30" } })
      local t0 = sys.now()
      local events, running = exec.wait({ p }, 0.2)
      local took = sys.now() - t0
      assert.same({}, events)
      assert.equal(1, running)
      assert.truthy(took >= 0.15 and took < 1, "took " .. took)
      assert.is_true(p:kill())
      local got = collect { p }
      assert.equal(15, got[1].exit.signal)
      assert.is_nil(got[1].exit.code)
      assert.is_false(p:kill()) -- reaped: nothing to signal
    end)

    it("close and garbage collection kill and reap a running child, with its grandchildren's group", function()
      local before = open_fds()
      local p = assert(exec.spawn { shell = "sleep 30 & sleep 30; wait", result = true })
      local pid = p:pid()
      p:close()
      p:close() -- idempotent
      assert.is_nil(p:pid())
      assert.is_false(os.execute("kill -0 " .. pid .. " 2>/dev/null") == true)
      do
        local q <close> = assert(exec.spawn { argv = { "sleep", "30" } })
        assert.is_number(q:pid())
      end
      local _ = assert(exec.spawn { argv = { "sleep", "30" } })
      _ = nil
      collectgarbage()
      collectgarbage()
      assert.equal(before, open_fds())
      -- the group's grandchild (sleep &) got the SIGKILL too
      local t0 = sys.now()
      while children() ~= "" and sys.now() - t0 < 2 do sys.sleep(0.05) end
      assert.equal("", children())
    end)

    it("a proc closed before its exit was seen is reported as exited", function()
      local p = assert(exec.spawn { argv = { "sleep", "30" } })
      p:close()
      local events, running = exec.wait { p }
      assert.equal(1, #events)
      assert.equal("exit", events[1].kind)
      assert.equal(9, events[1].signal)
      assert.equal(0, running)
    end)

    it("returns nil, err, errno when the program cannot start, and leaks nothing", function()
      local before = open_fds()
      local p, err, errno = exec.spawn { argv = { "phanes-no-such-program" }, result = true }
      assert.is_nil(p)
      assert.equal("exec: phanes-no-such-program: No such file or directory", err)
      assert.equal(2, errno)
      collectgarbage()
      assert.equal(before, open_fds())
      assert.equal("", children())
    end)

    it("write_result writes to the result pipe of a spawned phanes, and refuses an fd 3 that is no pipe", function()
      local d = tmpdir()
      local script = d .. "/child.lua"
      local f = assert(io.open(script, "w"))
      f:write 'local ok, err = require("phanes.exec").write_result(("r"):rep(200000)) print(ok, err)\n'
      -- what it runs does not get the pipe
      f:write 'print(require("phanes.exec").run({ shell = "echo x >&3 2>/dev/null || echo none" }).stdout)\n'
      f:close()
      local p = assert(exec.spawn { argv = { sys.exe(), "lua", script }, result = true, env = { PHANES_RESULT_FD = "3" } })
      local q = assert(exec.spawn { argv = { sys.exe(), "lua", script } })
      local got = collect({ p, q }, 20)
      os.execute("rm -rf " .. d)
      assert.equal(string.rep("r", 200000), got[1].result)
      assert.equal("true\tnil\nnone\n\n", got[1].stdout)
      assert.matches("^nil\texec.write_result: fd 3", got[2].stdout)
    end)

    it("raises on misuse", function()
      for _, opts in ipairs {
        { argv = { "ls" }, stdin = string.rep("x", 4097) },
        { argv = { "ls" }, stdin = 42 },
        { argv = { "ls" }, timeout = 1 },
        { argv = { "ls" }, stream = print },
        { argv = { "ls" }, result = "yes" },
        { argv = {} },
      } do
        assert.has_error(function() exec.spawn(opts) end)
      end
      assert.has_error(function() exec.spawn { argv = { "ls" }, stdin = string.rep("x", 4097) } end,
        "exec.spawn: opts.stdin has 4097 bytes, at most 4096")
      assert.has_error(function() exec.run { argv = { "ls" }, result = true } end, "exec.run: unknown option result")
      assert.has_error(function() exec.wait { 1 } end, "exec.wait: procs[1] is not a process of exec.spawn")
      assert.has_error(function() exec.wait({}, -1) end)
      assert.has_error(function() exec.write_result() end)
    end)
  end)
end)
