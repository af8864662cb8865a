-- A module's detect probes in apply (engine/runner.lua, engine/detect.lua):
-- probes that pass on a module that changes nothing make it "noop", in the
-- plan, the report and the --json report, with or without the state; a
-- change is never hidden; a module without detect prints what it printed
-- before. In process on the fake transport (spec/support/fakeexec.lua:
-- a command nobody answered fails the spec), the modules' files in a temp
-- dir; then end to end with the fixture module spec/fixtures/detect
-- (beacon), as a user runs it.
local runner = require "phanes.engine.runner"
local output = require "phanes.engine.output"
local statefile = require "phanes.engine.statefile"
local fakeexec = require "support.fakeexec"
local json = require "phanes.json"
local runcli = require "spec.support.runcli"

local function sink()
  local s = { buf = {} }
  function s:write(...) for _, v in ipairs { ... } do self.buf[#self.buf + 1] = tostring(v) end return self end
  function s:flush() end
  function s:text() return table.concat(self.buf) end
  return s
end

local function lit(s) return (s:gsub("%p", "%%%0")) end

describe("detect probes in apply", function()
  local dir, out, fake
  before_each(function()
    dir = runcli.tmpdir()
    out = sink()
    fake = fakeexec.new()
  end)
  after_each(function() runcli.rmdir(dir) end)

  -- a module writing DIR/NAME (content), with detect probes when given
  local function mod(name, content, detect)
    return { name = name, version = "1", detect = detect, apply = function(ctx)
      ctx.file.content { path = dir .. "/" .. name, content = content }
    end }
  end

  local function go(mods, opts)
    opts = opts or {}
    out = sink()
    local o = output.new { color = "never", out = out, err = sink(), tty = false, quiet = opts.quiet }
    if opts.secrets then o:add_secrets(opts.secrets) end
    local sf = opts.sf or opts.state and assert(statefile.open(dir .. "/state.json", { lock = dir .. "/machine.lock" }))
    local code, report = runner.run {
      mods = mods, config = {}, dry_run = opts.dry_run, keep_going = opts.keep_going, json = opts.json, out = o, state = sf,
      previous = opts.previous, exec = fake.exec, profile = "test", hash = function(m) return "hash-" .. m.name end,
      sys = { now = require("phanes.sys").now, interrupted = function() return 0 end, trap_signals = function() end },
      exec_mod = { run = fake.exec, kill_all = function() end },
    }
    if sf then sf:close() end
    -- durations vary: the text with each one as 0.0s
    return code, report, (out:text():gsub("%d+%.%ds", "0.0s"))
  end

  local function state() return json.decode(runcli.read(dir .. "/state.json") or "null") end

  it("probes pass and nothing to change: noop, said with the probes, in the text and the report", function()
    runcli.write(dir .. "/app", "v1")
    local probes = { files = { dir .. "/app" }, dirs = { dir } }
    for _, dry in ipairs { true, false } do
      local code, report, text = go({ mod("app", "v1", probes) }, { dry_run = dry })
      assert.equal(0, code)
      assert.equal("noop", report.modules[1].status)
      assert.same({ noop = 1 }, report.counts)
      assert.equal("ok", report.modules[1].resources[1].status)
      assert.equal(table.concat({
        "[1/1] app",
        "      ok file.content " .. dir .. "/app",
        "      noop (detected: 2 probes passed)",
        "",
        "module  status  changed  time",
        "app     noop          0  0.0s",
        (dry and "dry run done, nothing changed" or "done") .. " in 0.0s", "" }, "\n"), text)
    end
    assert.equal("v1", runcli.read(dir .. "/app"))
    assert.same({}, fake.calls) -- files and directories cost no process
  end)

  it("the --json report: status noop and what each probe found", function()
    runcli.write(dir .. "/app", "v1")
    fake:on("app-check", { code = 0 })
    local code, report, text = go({ mod("app", "v1", { files = { dir .. "/app" }, command = { "app-check", "--quiet" } }) },
      { json = true, dry_run = true })
    assert.equal(0, code)
    assert.equal("", text)
    local m = json.decode(json.encode(report)).modules[1]
    assert.equal("noop", m.status)
    assert.equal(0, m.changed)
    assert.same({ probes = 2, checks = {
      { probe = "file", target = dir .. "/app", ok = true, why = "a file" },
      { probe = "command", target = "app-check --quiet", ok = true, why = "exit 0" } } }, m.detected)
    assert.equal(1, report.execs) -- the probe's command went through the run's exec (counted)
  end)

  it("probes pass but a resource would change: the change shows, never noop", function()
    runcli.write(dir .. "/app", "v1")
    local probes = { files = { dir .. "/app" } }
    local code, report, text = go({ mod("app", "v2", probes) }, { dry_run = true })
    assert.equal(0, code)
    assert.equal("would change", report.modules[1].status)
    assert.is_nil(report.modules[1].detected)
    assert.same({ ["would change"] = 1 }, report.counts)
    assert.match("would change file%.content " .. lit(dir) .. "/app  %(content%)", text)
    assert.match("%+v2", text)
    assert.not_match("\n      noop ", text)
    assert.equal("v1", runcli.read(dir .. "/app"))
    code, report, text = go({ mod("app", "v2", probes) }, { state = true })
    assert.equal("changed", report.modules[1].status)
    assert.not_match("\n      noop ", text)
    assert.equal("v2", runcli.read(dir .. "/app"))
    assert.equal("installed", state().modules.app.status)
  end)

  it("probes that fail change nothing: the output and report of a module without detect", function()
    runcli.write(dir .. "/app", "v1")
    fake:on("app-check", { code = 1 })
    local _, plain, plain_text = go({ mod("app", "v1") }, { dry_run = true })
    for _, probes in ipairs {
      { files = { dir .. "/missing" } },                    -- a file not there
      { dirs = { dir .. "/app" } },                          -- a file, not a directory
      { files = { dir .. "/app" }, command = { "app-check" } }, -- the command exits 1
      {},                                                    -- no probe at all
    } do
      local code, report, text = go({ mod("app", "v1", probes) }, { dry_run = true })
      assert.equal(0, code)
      assert.equal(plain_text, text)
      assert.equal("ok", report.modules[1].status)
      assert.is_nil(report.modules[1].detected)
      assert.same(plain.counts, report.counts)
    end
  end)

  it("a module without detect: today's output, line for line", function()
    runcli.write(dir .. "/app", "v1")
    local code, report, text = go({ mod("app", "v1"), mod("new", "n") }, { state = true })
    assert.equal(0, code)
    assert.equal(table.concat({
      "[1/2] app",
      "      ok file.content " .. dir .. "/app",
      "[2/2] new",
      "      changed file.content " .. dir .. "/new  (created)",
      "",
      "module  status   changed  time",
      "app     ok             0  0.0s",
      "new     changed        1  0.0s",
      "done in 0.0s", "" }, "\n"), text)
    assert.same({ ok = 1, changed = 1 }, report.counts)
    assert.is_nil(report.modules[1].detected)
    assert.same({}, fake.calls)
  end)

  it("the state lost: noop in the plan, and the apply records the module again without a change", function()
    runcli.write(dir .. "/app", "v1")
    local probes = { files = { dir .. "/app" } }
    local lost = statefile.read(dir .. "/state.json") -- no file: an empty state, as apply --dry-run reads it
    local _, report, text = go({ mod("app", "v1", probes) }, { dry_run = true, previous = lost })
    assert.equal("noop", report.modules[1].status)
    assert.is_false(report.modules[1].detected.in_state)
    assert.match("\n      noop %(detected: 1 probe passed; not in the state, an apply records it%)\n", text)
    assert.is_nil(runcli.read(dir .. "/state.json"))
    _, report, text = go({ mod("app", "v1", probes) }, { state = true })
    assert.equal("noop", report.modules[1].status)
    assert.equal(0, report.modules[1].changed)
    assert.match("\n      noop %(detected: 1 probe passed; recorded in the state again%)\n", text)
    local s = state()
    assert.equal("installed", s.modules.app.status)
    assert.equal("hash-app", s.modules.app.config_hash)
    assert.equal("1", s.modules.app.version)
    -- known now: noop, nothing more to say, nothing rewritten but the run's time
    local sf = assert(statefile.open(dir .. "/state.json", { lock = dir .. "/machine.lock" }))
    local installed_at = s.modules.app.installed_at
    _, report, text = go({ mod("app", "v1", probes) }, { sf = sf })
    assert.equal(1, sf.writes)
    assert.equal("noop", report.modules[1].status)
    assert.match("\n      noop %(detected: 1 probe passed%)\n", text)
    assert.is_true(report.modules[1].detected.in_state)
    assert.equal(installed_at, state().modules.app.installed_at)
  end)

  it("the state keeps an installed module's probes, but none that would carry a secret", function()
    runcli.write(dir .. "/app", "v1")
    go({ mod("app", "v1", { files = { dir .. "/app" } }) }, { state = true })
    assert.same({ files = { dir .. "/app" } }, state().modules.app.probes)
    fake:on("curl", { code = 0 })
    go({ mod("app", "v1", { files = { dir .. "/app" }, url = "http://u:Tok3n-s3cret@127.0.0.1:9/x" }) },
      { state = true, secrets = { "Tok3n-s3cret" } })
    assert.equal("installed", state().modules.app.status)
    assert.is_nil(state().modules.app.probes)
    assert.is_nil(runcli.read(dir .. "/state.json"):find("Tok3n", 1, true))
  end)

  it("a health URL its own fetch.check found answering is not asked again; a dry run asks it", function()
    runcli.write(dir .. "/app", "v1")
    local url = "http://127.0.0.1:8123/health"
    fake:on("/usr/bin/curl", { code = 0, stdout = "up" })
    fake:on("curl", { code = 0 })
    local m = { name = "svc", version = "1", detect = { files = { dir .. "/app" }, url = url },
      apply = function(ctx)
        ctx.file.content { path = dir .. "/app", content = "v1" }
        ctx.fetch.check { url = url }
      end }
    local _, report = go({ m }, { state = true })
    assert.equal("noop", report.modules[1].status)
    assert.equal("answered (fetch.check)", report.modules[1].detected.checks[2].why)
    assert.equal(1, #fake.calls) -- fetch.check's curl, no second one
    assert.equal(1, report.execs)
    fake:reset()
    _, report = go({ m }, { dry_run = true })
    assert.equal("skipped", report.modules[1].resources[2].status) -- a dry run's fetch.check asks nothing
    assert.equal("noop", report.modules[1].status)
    assert.same({ "curl -fsS -o /dev/null -m 5 " .. url }, fake:lines())
    -- the service down: the probe fails, an ordinary ok
    fake:on("curl", { code = 7 })
    fake:reset()
    _, report = go({ m }, { dry_run = true })
    assert.equal("ok", report.modules[1].status)
  end)

  it("-q prints nothing for a noop module (not a change); a skipped or failed module is never probed", function()
    runcli.write(dir .. "/app", "v1")
    local probes = { files = { dir .. "/app" }, command = { "app-check" } }
    local _, report, text = go({ mod("app", "v1", { files = { dir .. "/app" } }) }, { quiet = true })
    assert.equal("noop", report.modules[1].status)
    assert.equal("", text)
    local skipper = { name = "sk", detect = probes, apply = function(ctx) ctx.skip "not here" end }
    local failing = { name = "bad", detect = probes, apply = function(ctx) ctx.fail "broken" end }
    local code
    code, report = go({ skipper, failing }, { keep_going = true })
    assert.equal(1, code)
    assert.equal("skipped", report.modules[1].status)
    assert.equal("failed", report.modules[2].status)
    assert.same({}, fake.calls) -- app-check never asked
  end)

  describe("as a command (spec/fixtures/detect: beacon)", function()
    local env
    before_each(function()
      env = { NO_COLOR = "1", PHANES_STATE = "", PHANES_LOCK = dir .. "/machine.lock" }
    end)
    local function phanes(...)
      local argv = { "apply", "--modules", "beacon", "--path", "spec/fixtures/detect", "--set", "beacon.dir=" .. dir .. "/b",
        "--state", dir .. "/state.json" }
      for _, a in ipairs { ... } do argv[#argv + 1] = a end
      return runcli.run(argv, env)
    end

    it("installs, then with the state deleted plans and applies noop, records it again, reinstalls nothing", function()
      local r = phanes()
      assert.equal(0, r.code, r.stdout .. r.stderr)
      assert.match("beacon%s+changed%s+3", r.stdout)
      assert.equal("installed\n", runcli.read(dir .. "/b/installs.log"))
      os.remove(dir .. "/state.json")
      r = phanes("--dry-run")
      assert.equal(0, r.code, r.stdout .. r.stderr)
      assert.match("\n      noop %(detected: 4 probes passed; not in the state, an apply records it%)\n", r.stdout)
      assert.match("\nbeacon%s+noop%s+0%s", r.stdout)
      r = phanes("--dry-run", "--json", "--detailed-exitcode")
      assert.equal(0, r.code, r.stdout .. r.stderr) -- noop is no drift
      local rep = assert(json.decode(r.stdout))
      assert.equal("noop", rep.modules[1].status)
      assert.equal(4, rep.modules[1].detected.probes)
      assert.is_false(rep.modules[1].detected.in_state)
      assert.is_nil(runcli.read(dir .. "/state.json"))
      r = phanes()
      assert.equal(0, r.code, r.stdout .. r.stderr)
      assert.match("noop %(detected: 4 probes passed; recorded in the state again%)", r.stdout)
      assert.equal("installed", json.decode(runcli.read(dir .. "/state.json")).modules.beacon.status)
      assert.equal("installed\n", runcli.read(dir .. "/b/installs.log"))
      -- another greeting: the probes still pass, the change is shown and made
      r = phanes("--set", "beacon.greeting=bye")
      assert.equal(0, r.code, r.stdout .. r.stderr)
      assert.match("changed file%.content [^\n]*/beacon%.conf", r.stdout)
      assert.match("\nbeacon%s+changed%s+1%s", r.stdout)
      assert.not_match("\n      noop ", r.stdout)
      assert.equal("greeting=bye\n", runcli.read(dir .. "/b/beacon.conf"))
    end)

    it("status without --config checks the probes the state recorded (the config it was applied with)", function()
      assert.equal(0, phanes().code)
      local st = json.decode(runcli.read(dir .. "/state.json")).modules.beacon
      assert.same({ files = { dir .. "/b/bin/beacon", dir .. "/b/beacon.conf" }, dirs = { dir .. "/b" },
        command = { dir .. "/b/bin/beacon", "--check" } }, st.probes)
      local function status(...)
        return runcli.run({ "status", "--path", "spec/fixtures/detect", "--state", dir .. "/state.json", ... }, env)
      end
      local r = status("--json")
      assert.equal(0, r.code, r.stdout .. r.stderr)
      local found = assert(json.decode(r.stdout)).detected.beacon
      assert.is_true(found.installed)
      assert.equal(4, #found.checks)
      assert.match("\nbeacon%s+installed%s", status().stdout)
      -- the install gone: the recorded probes say so
      os.remove(dir .. "/b/beacon.conf")
      found = assert(json.decode(status("--json").stdout)).detected.beacon
      assert.is_false(found.installed)
      assert.equal(dir .. "/b/beacon.conf", found.checks[#found.checks].target)
    end)
  end)
end)
