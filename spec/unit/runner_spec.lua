-- runner.lua: in process, with fake signals and a fake exec; the modules
-- only touch a temp dir.
local runner = require "phanes.engine.runner"
local output = require "phanes.engine.output"
local statefile = require "phanes.engine.statefile"
local json = require "phanes.json"
local runcli = require "spec.support.runcli"

local function sink()
  local s = { buf = {} }
  function s:write(...) for _, v in ipairs { ... } do self.buf[#self.buf + 1] = tostring(v) end return self end
  function s:flush() end
  function s:text() return table.concat(self.buf) end
  return s
end

describe("runner", function()
  local dir, out, err, fake_sys, execs, killed
  before_each(function()
    dir = runcli.tmpdir()
    out, err = sink(), sink()
    execs, killed = {}, 0
    local real = require "phanes.sys"
    fake_sys = { signals = 0, now = real.now, trap_signals = function() end }
    function fake_sys.interrupted() return fake_sys.signals end
  end)
  after_each(function() runcli.rmdir(dir) end)

  -- exec: records argv; `fail` in argv[1] fails with stderr.
  local function fake_exec(opts)
    execs[#execs + 1] = opts.argv or { opts.shell }
    if opts.argv and opts.argv[1] == "ctrl-c" and opts.argv[2] == "twice" then
      fake_sys.signals = fake_sys.signals + 2
    end
    if opts.stream then opts.stream("stdout", "output\n") end
    if opts.argv and opts.argv[1] == "fail" then
      return { code = 2, stdout = "", stderr = "line1\nE: it broke\n", duration = 0 }
    end
    if opts.argv and opts.argv[1] == "ctrl-c" and not opts.argv[2] then fake_sys.signals = fake_sys.signals + 1 end
    return { code = 0, stdout = "", stderr = "", duration = 0 }
  end

  local function mod(name, apply, extra)
    local m = { name = name, apply = apply, version = "1" }
    for k, v in pairs(extra or {}) do m[k] = v end
    return m
  end
  local function writes(name, content)
    return mod(name, function(ctx) ctx.file.content { path = dir .. "/" .. name, content = content or name } end)
  end
  local function runs(name, argv)
    return mod(name, function(ctx) ctx.cmd.run { argv = argv } end)
  end

  local function go(mods, opts)
    opts = opts or {}
    local o = output.new { color = "never", out = out, err = err, tty = opts.tty or false,
      secrets = opts.secrets, verbose = opts.verbose }
    local sf = opts.sf or opts.state and assert(statefile.open(dir .. "/state.json", { lock = dir .. "/machine.lock" }))
    local code, report = runner.run {
      mods = mods, config = opts.config or {}, dry_run = opts.dry_run, keep_going = opts.keep_going,
      json = opts.json, out = o, state = sf, sys = fake_sys, exec = opts.exec or fake_exec, profile = "test",
      tick = opts.tick, still_running = opts.still_running,
      exec_mod = { run = fake_exec, kill_all = function() killed = killed + 1 end },
      hash = function(m) return "hash-" .. m.name end, secrets = opts.secrets, previous = opts.previous,
      context = require "phanes.engine.context",
    }
    if sf then sf:close() end
    return code, report
  end

  local function state()
    local text = runcli.read(dir .. "/state.json")
    return text and json.decode(text)
  end

  it("runs modules in order and reports ok and changed", function()
    runcli.write(dir .. "/same", "same")
    local code, report = go({ writes "a", writes("same", "same") }, { state = true })
    assert.equal(0, code)
    assert.equal("a", runcli.read(dir .. "/a"))
    assert.equal("changed", report.modules[1].status)
    assert.equal(1, report.modules[1].changed)
    assert.equal("ok", report.modules[2].status)
    local text = out:text()
    assert.match("%[1/2%] a\n", text)
    assert.match("%[2/2%] same\n", text)
    assert.match("changed file%.content " .. dir:gsub("%p", "%%%0") .. "/a", text)
    assert.match("\n      ok file%.content .*/same\n", text) -- piped: every resource says its line as it ends
    assert.match("a%s+changed%s+1%s+%d", text)
    local s = state()
    assert.equal("installed", s.modules.a.status)
    assert.equal("hash-a", s.modules.a.config_hash)
    assert.equal("1", s.modules.a.version)
    assert.equal("installed", s.modules.same.status)
  end)

  it("writes the state once in a no-op re-run, and hands on the units asked last time", function()
    local seen
    -- a module that asks about units as the service resource does
    local svc = mod("svc", function(ctx)
      seen = ctx.run.hints.units
      ctx.run:note_unit(ctx.module, "b.service")
      ctx.run:note_unit(ctx.module, "a.service")
    end)
    local sf = assert(statefile.open(dir .. "/state.json", { lock = dir .. "/machine.lock" }))
    go({ writes "a", svc }, { sf = sf })
    assert.equal(3, sf.writes)               -- a (its change noted, then done), svc: both new
    assert.same({}, seen)
    assert.same({ "a.service", "b.service" }, state().modules.svc.units)
    -- again: nothing changes, one write (the run's time)
    sf = assert(statefile.open(dir .. "/state.json", { lock = dir .. "/machine.lock" }))
    local code = go({ writes "a", svc }, { sf = sf })
    assert.equal(0, code)
    assert.equal(1, sf.writes)
    assert.same({ "a.service", "b.service" }, seen)
    -- a dry run writes nothing at all, and takes the hints from the state read
    sf = assert(statefile.open(dir .. "/state.json", { lock = dir .. "/machine.lock" }))
    go({ writes "a", svc }, { sf = sf, dry_run = true })
    assert.is_nil(sf.writes)
    seen = nil
    go({ writes "a", svc }, { dry_run = true, previous = assert(statefile.read(dir .. "/state.json")) })
    assert.same({ "a.service", "b.service" }, seen)
  end)

  it("shows every resource with -v", function()
    runcli.write(dir .. "/same", "same")
    go({ writes("same", "same") }, { verbose = true })
    assert.match("ok file%.content .*/same", out:text())
  end)

  it("streams each command's output under its resource with -v, and its command line at verbose 2", function()
    local chunky = function(opts)
      execs[#execs + 1] = opts.argv
      opts.stream("stdout", "first line\nsecond ")
      opts.stream("stderr", "half\nprogress 5%\rprogress 100%\r\nno newline at the end")
      return { code = 0, stdout = "", stderr = "", duration = 0 }
    end
    go({ runs("r", { "build-it", "--fast" }) }, { verbose = true, exec = chunky })
    local text = out:text()
    assert.matches("\n      cmd%.run build%-it %-%-fast\n        first line\n        second half\n"
      .. "        progress 100%%\n        no newline at the end\n      changed cmd%.run build%-it", text)
    assert.is_nil(text:find("$ build-it", 1, true))
    out = sink()
    go({ runs("r", { "build-it", "--fast" }) }, { verbose = 2, exec = chunky })
    assert.matches("\n      cmd%.run build%-it %-%-fast\n        %$ build%-it %-%-fast\n        first line\n", out:text())
    out = sink()
    go({ runs("r", { "build-it", "--fast" }) }, { exec = chunky })
    assert.is_nil(out:text():find("first line", 1, true))
  end)

  it("stops at a failed module: names module, resource, stderr tail; exit 1", function()
    local code, report = go({ writes "a", runs("bad", { "fail", "x" }), writes "c" }, { state = true })
    assert.equal(1, code)
    assert.same({ "changed", "failed", "not run" },
      { report.modules[1].status, report.modules[2].status, report.modules[3].status })
    assert.is_nil(runcli.read(dir .. "/c"))
    local e = err:text()
    assert.match("phanes: module 'bad' failed: cmd%.run fail x: ", e)
    assert.match("\n    E: it broke", e)
    local s = state()
    assert.equal("failed", s.modules.bad.status)
    assert.match("module 'bad' failed", s.modules.bad.last_error)
    assert.is_nil(s.modules.c)
    assert.match("failed in", out:text())
  end)

  it("goes on after a failure with keep_going, still exit 1", function()
    local code, report = go({ runs("bad", { "fail" }), writes "c" }, { keep_going = true, state = true })
    assert.equal(1, code)
    assert.equal("changed", report.modules[2].status)
    assert.equal("c", runcli.read(dir .. "/c"))
    assert.equal("installed", state().modules.c.status)
  end)

  it("stops, exit 1, when the state file cannot be written (even with keep_going)", function()
    local recorded = {}
    local sf = { path = dir .. "/state.json", close = function() end }
    function sf.record(_, name)
      recorded[#recorded + 1] = name
      return nil, "cannot write the state file: " .. dir .. "/state.json: No space left on device"
    end
    local code, report = go({ writes "a", writes "b" }, { sf = sf, keep_going = true })
    assert.equal(1, code)
    assert.same({ "a" }, recorded)
    assert.equal("changed", report.modules[1].status)
    assert.equal("not run", report.modules[2].status)
    assert.matches("No space left on device", report.state_error, 1, true)
    assert.matches("phanes: cannot write the state file: .*\nthe run stopped after 'a'", err:text())
    assert.is_nil(runcli.read(dir .. "/b"))
  end)

  it("reports ctx.fail as the module's own failure, without a traceback", function()
    local code, report = go({ mod("guard", function(ctx) ctx.fail("refusing: no key for admin", "set ssh_public_key") end) },
      { state = true })
    assert.equal(1, code)
    assert.equal("module 'guard' failed: refusing: no key for admin\n    set ssh_public_key", report.modules[1].error.message)
    assert.is_nil(report.modules[1].error.traceback)
    assert.is_nil(err:text():find("traceback", 1, true))
    assert.equal("failed", state().modules.guard.status)
  end)

  it("turns a Lua error into file:line and a traceback, not a crash", function()
    local m = dofile "spec/fixtures/runner/modules/luaerr.lua"
    local code, report = go({ m, writes "c" })
    assert.equal(1, code)
    local e = err:text()
    assert.match("module 'luaerr' failed with a Lua error: spec/fixtures/runner/modules/luaerr%.lua:7: attempt to index", e)
    assert.match("stack traceback:\n.*luaerr%.lua:7", e)
    assert.not_match("runner%.lua", e)   -- the runner's own frames are cut
    assert.equal("failed", report.modules[1].status)
    assert.match("luaerr%.lua:7", report.modules[1].error.traceback)
  end)

  it("marks a module that skips itself, with its reason", function()
    local code, report = go({ mod("sk", function(ctx) ctx.skip "no swap in a container" end), writes "c" },
      { state = true })
    assert.equal(0, code)
    assert.equal("skipped", report.modules[1].status)
    assert.equal("no swap in a container", report.modules[1].reason)
    assert.match("skipped: no swap in a container", out:text())
    assert.is_nil(state().modules.sk)
  end)

  it("stops after the current resource on Ctrl-C, records what completed, exit 130", function()
    local two = mod("two", function(ctx)
      ctx.file.content { path = dir .. "/two.1", content = "1" }
      ctx.cmd.run { argv = { "ctrl-c" } }          -- the signal arrives during this one
      ctx.file.content { path = dir .. "/two.2", content = "2" }
    end)
    local code, report = go({ writes "one", two, writes "three" }, { state = true })
    assert.equal(130, code)
    assert.equal("1", runcli.read(dir .. "/two.1"))
    assert.is_nil(runcli.read(dir .. "/two.2"))
    assert.is_nil(runcli.read(dir .. "/three"))
    assert.same({ "changed", "interrupted", "not run" },
      { report.modules[1].status, report.modules[2].status, report.modules[3].status })
    local s = state()
    assert.equal("installed", s.modules.one.status)
    assert.same({ changing = true }, s.modules.two) -- it changed the machine: the next run resumes it
    assert.match("interrupted during 'two' %(stopped after its current resource%); completed: one", err:text())
    assert.equal(0, killed)
  end)

  it("kills running commands on a second Ctrl-C, once", function()
    -- both signals arrive while the command runs; its output reaches the runner
    local code = go({ runs("m", { "ctrl-c", "twice" }), writes "after" })
    assert.equal(130, code)
    assert.equal(1, killed)
    assert.is_nil(runcli.read(dir .. "/after"))
  end)

  it("writes no state in a dry run, and shows masked diffs", function()
    runcli.write(dir .. "/a", "old\n")
    local code, report = go({ mod("a", function(ctx)
      ctx.file.content { path = dir .. "/a", content = "password=hunter2-pw\n" }
    end) }, { dry_run = true, state = false, secrets = { "hunter2-pw" } })
    assert.equal(0, code)
    assert.equal("old\n", runcli.read(dir .. "/a"))
    assert.is_nil(runcli.read(dir .. "/state.json"))
    assert.equal("would change", report.modules[1].status)
    local text = out:text()
    assert.match("would change file%.content", text)
    assert.match("%+password=%*%*%*%*%*%*", text)
    assert.not_match("hunter2", text)
    assert.not_match("hunter2", json.encode(report))
  end)

  it("prints nothing on stdout in json mode, and gives the report's shape", function()
    local code, report = go({ writes "a", runs("bad", { "fail" }) }, { json = true, keep_going = true })
    assert.equal(1, code)
    assert.equal("", out:text())
    assert.equal(1, report.format)
    assert.equal("apply", report.command)
    assert.equal("test", report.profile)
    assert.equal(1, report.exit_code)
    assert.equal("failed", report.status)
    assert.is_number(report.duration)
    local a = report.modules[1]
    assert.equal("a", a.name)
    assert.equal("file.content", a.resources[1].resource)
    assert.equal(dir .. "/a", a.resources[1].target)
    assert.equal("changed", a.resources[1].status)
    assert.equal("cmd.run", report.modules[2].error.resource)
    assert.match("E: it broke", report.modules[2].error.detail)
    assert.same({ changed = 1, failed = 1 }, report.counts)
  end)

  describe("progress", function()
    it("on a terminal: the live line names module, resource, command and time from the first moment", function()
      local seen
      local m = mod("m", function(ctx)
        ctx.file.content { path = dir .. "/quiet", content = "q" }
        ctx.cmd.run { argv = { "slow-thing", "--now" }, desc = "the slow one" }
      end)
      local real = fake_exec
      fake_exec = function(opts)
        seen = seen or out:text() -- what the terminal shows while the command runs
        return real(opts)
      end
      local code = go({ m }, { tty = true })
      fake_exec = real
      assert.equal(0, code)
      assert.match("\r\27%[K      [|/\\-] m cmd%.run the slow one  %$ slow%-thing %-%-now  0%.0s$", seen)
      -- ok and changed lines: changed ones stay as lines, ok ones only pass in the live line
      assert.not_match("\n      ok ", out:text())
    end)

    it("off a terminal: a step running over still_running says so, and its line when it ends", function()
      local exec = require("phanes.exec").run
      local code = go({ runs("m", { "sleep", "0.7" }) }, { exec = exec, tick = 0.05, still_running = 0.3 })
      assert.equal(0, code)
      local text = out:text()
      assert.match("\n      still running: m cmd%.run [^\n]*%$ sleep 0%.7 %(0%.%ds%)\n", text)
      local n = select(2, text:gsub("still running", ""))
      assert.equal(2, n) -- at 0.3 s and 0.6 s
      assert.match("still running[^\n]*\n[^\n]*\n      changed cmd%.run", text)
    end)
  end)

  describe("errors", function()
    it("a typo in a resource name suggests the right one, at the user's line", function()
      local m = dofile "spec/fixtures/runner/modules/typo.lua"
      local code, report = go({ m })
      assert.equal(1, code)
      local e = report.modules[1].error
      assert.equal("config", e.kind)
      assert.equal("spec/fixtures/runner/modules/typo.lua:4", e.where)
      assert.match("module 'typo' failed: ctx%.pkg%.instaled: no such resource %(did you mean ctx%.pkg%.installed%?%)",
        err:text())
      assert.match("%(spec/fixtures/runner/modules/typo%.lua:4%)", err:text())
    end)

    it("a missing required argument is named, not 'failed file.content nil'", function()
      local m = mod("noarg", function(ctx) ctx.file.content { content = "x" } end)
      local code, report = go({ m })
      assert.equal(1, code)
      assert.match("module 'noarg' failed: file%.content: missing required argument 'path' %(spec/unit/runner_spec%.lua:%d+%)",
        err:text())
      assert.not_match("nil", err:text() .. out:text())
      assert.equal("failed", report.modules[1].resources[1].status)
      assert.equal("file.content", report.modules[1].error.resource)
      -- not a table at all
      code = go({ mod("str", function(ctx) ctx.user.present "bob" end) })
      assert.equal(1, code)
      assert.match("user%.present: expects a table of arguments { name = %.%.%. }", err:text())
    end)

    it("an argument a resource does not take is named, with the closest one, at the user's line", function()
      local m = mod("ownr", function(ctx) ctx.file.content { path = "/x", content = "x", ownr = "root" } end)
      local code, report = go({ m })
      assert.equal(1, code)
      assert.match("module 'ownr' failed: file%.content: unknown argument 'ownr' %(did you mean 'owner'%?%); it takes "
        .. "backup, content, group, mode, owner, path, replace_link, secret, validate %(spec/unit/runner_spec%.lua:%d+%)", err:text())
      assert.equal("config", report.modules[1].error.kind)
      -- positional arguments are always taken; a declared option too
      code = go({ mod("pos", function(ctx) ctx.pkg.installed { "curl", recommends = true, recomends = true } end) })
      assert.equal(1, code)
      assert.match("pkg%.installed: unknown argument 'recomends' %(did you mean 'recommends'%?%)", err:text())
    end)

    it("a bug in phanes' own code is an internal error, with the user's line that led there", function()
      -- a resource body compiled as if it were one of phanes' own files
      local body = assert(load("return function() local t = nil; return t.x end", "@lua/phanes/res/fake.lua"))()
      local m = mod("bug", function(ctx) ctx.run:resource(ctx, "fake.thing", "t", body) end)
      local code, report = go({ m })
      assert.equal(1, code)
      local e = report.modules[1].error
      assert.equal("internal", e.kind)
      assert.match("^module 'bug' failed with an internal error %(a bug in phanes, please report it%): lua/phanes/", e.message)
      assert.match("called from spec/unit/runner_spec%.lua:%d+", e.message)
    end)

    it("classifies each error once: the same object from the resource to the report", function()
      local errors = require "phanes.engine.errors"
      local caught
      local m = mod("m", function(ctx)
        local ok, e = pcall(ctx.cmd.run, { argv = { "fail" } })
        caught = e
        error(e, 0)
      end)
      local _, report = go({ m })
      assert.is_true(errors.is(caught, "resource"))
      assert.equal("cmd.run", caught.resource)
      assert.equal(output.format_error(caught, "m"), report.modules[1].error.message)
    end)
  end)
end)
