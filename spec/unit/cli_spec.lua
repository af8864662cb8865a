-- cli.lua: parsing and help in process; every command end to end as a
-- subprocess, as a user runs it, on fixture modules that only touch a temp
-- dir (spec/fixtures/runner, loaded with --path).
local cli = require "phanes.cli"
local json = require "phanes.json"
local runcli = require "spec.support.runcli"

local FIX = "spec/fixtures/runner"

describe("cli", function()
  describe("parse", function()
    it("takes options before and after the command, = or space", function()
      local p = assert(cli.parse { "--config=c.yaml", "apply", "dev", "--dry-run", "--only", "a,b", "--only=c",
        "--set", "x.y=1", "--set", "x.z=2", "-v", "--color", "never" })
      assert.equal("apply", p.cmd)
      assert.same({ "dev" }, p.args)
      assert.equal("c.yaml", p.opts.config)
      assert.is_true(p.opts["dry-run"])
      assert.same({ "a", "b", "c" }, p.opts.only)
      assert.same({ "x.y=1", "x.z=2" }, p.opts.set)
      assert.equal(1, p.opts.verbose) -- a count: -vv is 2
      assert.equal("never", p.opts.color)
    end)
    it("groups short flags and takes a short option's value", function()
      local p = assert(cli.parse { "apply", "-nvk", "-c", "f.yaml", "web" })
      assert.is_true(p.opts["dry-run"] and p.opts.verbose and p.opts["keep-going"])
      assert.equal("f.yaml", p.opts.config)
      assert.same({ "web" }, p.args)
    end)
    it("understands the design's forms", function()
      assert.equal("apply", cli.parse { "--profile", "dev", "--config", "c.yaml" }.cmd)
      local p = cli.parse { "--modules", "baseline,user", "--dry-run" }
      assert.equal("apply", p.cmd)
      assert.same({ "baseline", "user" }, p.opts.modules)
      assert.equal("list", cli.parse({ "--list" }).cmd)
      assert.equal("version", cli.parse({ "--version" }).cmd)
      assert.equal("help", cli.parse({}).cmd)
    end)
    it("accepts --path (boot.lua reads it)", function()
      assert.same({ "x", "y" }, cli.parse({ "--path", "x", "list", "--path=y" }).opts.path)
    end)
    it("rejects unknown commands and options with a guess", function()
      assert.equal("unknown command 'aply' (did you mean 'apply'?)", select(2, cli.parse { "aply" }))
      assert.equal("unknown option --dry-rn (did you mean --dry-run?)", select(2, cli.parse { "apply", "--dry-rn" }))
      assert.equal("unknown option -x", select(2, cli.parse { "-x" }))
      assert.equal("option --config needs a value", select(2, cli.parse { "apply", "--config" }))
      assert.equal("option --json takes no value", select(2, cli.parse { "status", "--json=1" }))
      assert.equal("option --dry-run does not apply to 'status'", select(2, cli.parse { "status", "--dry-run" }))
      assert.match("^%-%-color must be auto, always or never", select(2, cli.parse { "list", "--color=red" }))
    end)
  end)

  describe("as a command", function()
    local dir, env
    before_each(function()
      dir = runcli.tmpdir()
      env = { RUNNER_FIXTURE_DIR = dir, NO_COLOR = "1", PHANES_STATE = "", PHANES_LOCK = dir .. "/machine.lock" }
    end)
    after_each(function() runcli.rmdir(dir) end)
    local function phanes(...) return runcli.run({ ... }, env) end
    local function state() return json.decode(runcli.read(dir .. "/state.json")) end

    it("prints the version", function()
      local r = phanes "version"
      assert.equal(0, r.code)
      assert.match("^phanes %d+%.%d+%.%d+\n$", r.stdout)
    end)

    it("has help with examples on every command", function()
      for _, cmd in ipairs { "apply", "check", "list", "status", "facts", "version", "help" } do
        local r = phanes(cmd, "--help")
        assert.equal(0, r.code)
        assert.match("^usage: phanes", r.stdout)
        assert.equal(r.stdout, phanes("help", cmd).stdout)
        if cmd ~= "version" then assert.match("examples?:", r.stdout) end
      end
      local r = phanes()
      assert.equal(0, r.code)
      assert.match("commands:", r.stdout)
    end)

    it("answers a usage error with the usage line and exit 2", function()
      local r = phanes("apply", "x", "--bogus")
      assert.equal(2, r.code)
      assert.equal("", r.stdout)
      assert.match("^phanes: unknown option %-%-bogus\nusage: phanes COMMAND", r.stderr)
      r = phanes("frobnicate")
      assert.equal(2, r.code)
      assert.match("unknown command 'frobnicate'", r.stderr)
      r = phanes("apply", "--path", FIX)
      assert.equal(2, r.code)
      assert.match("which profile%?.*chain", r.stderr)
      r = phanes("help", "nope")
      assert.equal(2, r.code)
    end)

    it("applies a profile, requirements first, records the state; a second run changes nothing", function()
      local r = phanes("apply", FIX .. "/profiles/chain.lua", "--path", FIX, "--state", dir .. "/state.json")
      assert.equal(0, r.code, r.stderr)
      assert.equal("", r.stderr)
      local a, b, g = r.stdout:find "%[1/4%] alpha", r.stdout:find "%[2/4%] beta", r.stdout:find "%[3/4%] gamma"
      assert.truthy(a and b and g and a < b and b < g)
      assert.match("skipped: swap cannot be enabled in a container", r.stdout)
      assert.match("gamma%s+changed%s+2", r.stdout)
      assert.equal("gamma\n", runcli.read(dir .. "/gamma.txt"))
      local s = state()
      assert.equal(1, s.format)
      for _, m in ipairs { "alpha", "beta", "gamma" } do assert.equal("installed", s.modules[m].status) end
      assert.is_nil(s.modules.skipper)
      assert.match("^%x+$", s.modules.alpha.config_hash)
      r = phanes("apply", "chain", "--path", FIX, "--state", dir .. "/state.json")
      assert.equal(0, r.code)
      assert.not_match("changed file", r.stdout)
      assert.not_match("%s+changed%s+%d", r.stdout)
      assert.match("alpha%s+ok%s+0", r.stdout)
    end)

    it("runs one module file with what it requires", function()
      local r = phanes("apply", FIX .. "/modules/beta.lua", "--path", FIX, "--state", dir .. "/state.json")
      assert.equal(0, r.code, r.stderr)
      assert.match("%[1/2%] alpha.*%[2/2%] beta", r.stdout)
    end)

    it("runs --modules and --only", function()
      local r = phanes("--modules", "beta", "--path", FIX, "--state", dir .. "/state.json")
      assert.equal(0, r.code, r.stderr)
      assert.match("%[2/2%] beta", r.stdout)
      r = phanes("apply", "chain", "--only", "gamma", "--path", FIX, "--state", dir .. "/state.json")
      assert.equal(0, r.code, r.stderr)
      assert.match("%[1/1%] gamma", r.stdout)
      assert.match("warning: %-%-only: 'gamma' requires 'beta'", r.stderr)
    end)

    it("rejects an unknown module or profile with the known ones (exit 2)", function()
      local r = phanes("--modules", "alpah", "--path", FIX, "--dry-run")
      assert.equal(2, r.code)
      assert.match("unknown module 'alpah' %(did you mean 'alpha'%?%); known modules: .*alpha, .*beta", r.stderr)
      r = phanes("apply", "chian", "--path", FIX, "--dry-run")
      assert.equal(2, r.code)
      assert.match("did you mean 'chain'", r.stderr)
      r = phanes("apply", "x", "--path", FIX .. "/bad", "--path", FIX, "--modules", "cyc_a", "--dry-run")
      assert.equal(2, r.code)
    end)

    it("reports a cycle with its path", function()
      local r = phanes("--modules", "cyc_a", "--path", FIX .. "/bad", "--path", FIX, "--dry-run")
      assert.equal(2, r.code)
      assert.match("cycle: cyc_a %-> cyc_b %-> cyc_c %-> cyc_a", r.stderr)
    end)

    it("stops at a failure with exit 1, naming module, resource and stderr tail", function()
      local r = phanes("apply", "fail", "--path", FIX, "--state", dir .. "/state.json")
      assert.equal(1, r.code)
      assert.match("phanes: module 'failing' failed: cmd%.run install nosuch: .*\n    E: Unable to locate package nosuch", r.stderr)
      assert.match("beta%s+not run", r.stdout)
      assert.is_nil(runcli.read(dir .. "/beta.txt"))
      local s = state()
      assert.equal("failed", s.modules.failing.status)
      assert.equal("installed", s.modules.alpha.status)
      r = phanes("apply", "fail", "--path", FIX, "--state", dir .. "/state.json", "--keep-going")
      assert.equal(1, r.code)
      assert.equal("beta\n", runcli.read(dir .. "/beta.txt"))
    end)

    it("shows file:line and a traceback for a Lua error in a module", function()
      local r = phanes("apply", "luaerr", "--path", FIX, "--state", dir .. "/state.json")
      assert.equal(1, r.code)
      assert.match("module 'luaerr' failed with a Lua error: " .. FIX .. "/modules/luaerr%.lua:7: attempt to index a nil value", r.stderr)
      assert.match("stack traceback:", r.stderr)
      assert.not_match("internal error", r.stderr)
    end)

    it("names the file and line of a module that does not even load", function()
      local r = phanes("--modules", "syntax", "--path", FIX .. "/bad", "--dry-run")
      assert.equal(2, r.code)
      assert.match(FIX .. "/bad/modules/syntax%.lua:4:", r.stderr)
    end)

    it("changes nothing and writes no state in a dry run; diffs are masked", function()
      local r = phanes("apply", "greet", "--path", FIX, "--state", dir .. "/state.json", "--dry-run")
      assert.equal(0, r.code, r.stderr)
      assert.match("would change file%.content", r.stdout)
      assert.match("%+from profile", r.stdout)
      assert.match("token=%*%*%*%*%*%*", r.stdout)
      assert.not_match("s3cr3t", r.stdout .. r.stderr)
      assert.is_nil(runcli.read(dir .. "/alpha.txt"))
      assert.is_nil(runcli.read(dir .. "/state.json"))
      assert.is_nil(runcli.read(dir .. "/state.json.lock"))
    end)

    it("prints one JSON report with --json, and writes it with --report", function()
      local r = phanes("apply", "fail", "--path", FIX, "--state", dir .. "/state.json", "--json",
        "--keep-going", "--report", dir .. "/report.json")
      assert.equal(1, r.code)
      local rep = assert(json.decode(r.stdout))
      assert.same(rep, json.decode(runcli.read(dir .. "/report.json")))
      assert.equal(1, rep.exit_code)
      assert.equal("failed", rep.status)
      assert.equal("fail", rep.profile)
      local names = {}
      for i, m in ipairs(rep.modules) do names[i] = m.name .. "=" .. m.status end
      assert.same({ "alpha=changed", "failing=failed", "beta=changed" }, names)
      assert.equal("file.content", rep.modules[1].resources[1].resource)
      assert.match("E: Unable to locate package nosuch", rep.modules[2].error.detail)
      assert.not_match("s3cr3t", r.stdout)
      assert.equal("", r.stderr)
    end)

    it("still writes a report when it cannot start (config error, lock)", function()
      local r = phanes("apply", "greet", "--path", FIX, "--json", "--set", "alpha.nokey=1", "--dry-run")
      assert.equal(2, r.code)
      local rep = json.decode(r.stdout)
      assert.equal(2, rep.exit_code)
      assert.equal("error", rep.status)
      assert.match("nokey", rep.errors[1])
    end)

    it("--report keeps the human output", function()
      local r = phanes("apply", "greet", "--path", FIX, "--dry-run", "--report", dir .. "/r.json")
      assert.equal(0, r.code)
      assert.match("%[1/1%] alpha", r.stdout)
      assert.equal("would change", json.decode(runcli.read(dir .. "/r.json")).modules[1].status)
    end)

    it("colours only when asked or on a terminal, never with NO_COLOR", function()
      local r = phanes("apply", "greet", "--path", FIX, "--dry-run")
      assert.not_match("\27%[", r.stdout)
      r = phanes("apply", "greet", "--path", FIX, "--dry-run", "--color=always")
      assert.match("\27%[", r.stdout)
    end)

    it("refuses to start while another run holds the lock (exit 75)", function()
      local script = dir .. "/hold.lua"
      runcli.write(script, string.format([[
        local sf = assert(require("phanes.engine.statefile").open(%q, { lock = %q }))
        io.stdout:write("locked\n") io.stdout:flush()
        io.stdin:read "l"
        sf:close()
      ]], dir .. "/other/state.json", dir .. "/machine.lock"))
      local holder = io.popen(runcli.binary() .. " lua " .. script .. " > " .. dir .. "/held", "w")
      for _ = 1, 100 do
        if runcli.read(dir .. "/held") == "locked\n" then break end
        os.execute "sleep 0.05"
      end
      local t0 = os.time()
      local r = phanes("apply", "greet", "--path", FIX, "--state", dir .. "/state.json")
      holder:write "\n"
      holder:close()
      assert.equal(75, r.code)
      -- one lock per machine: another state file does not matter
      assert.match("phanes: another phanes run holds " .. dir:gsub("%p", "%%%0") .. "/machine%.lock %(pid %d+%)", r.stderr)
      assert.truthy(os.time() - t0 >= 4)   -- it waited
      assert.is_nil(runcli.read(dir .. "/alpha.txt"))
    end)

    it("keeps a corrupt state aside and carries on; refuses a newer format", function()
      runcli.write(dir .. "/state.json", "garbage")
      local r = phanes("status", "--state", dir .. "/state.json")
      assert.equal(2, r.code)
      assert.match("state%.json: corrupt state file", r.stderr)
      r = phanes("apply", "greet", "--path", FIX, "--state", dir .. "/state.json")
      assert.equal(0, r.code)
      assert.match("warning: .*corrupt state file.*kept as .*state%.json%.corrupt%-", r.stderr)
      assert.equal("installed", state().modules.alpha.status)
      runcli.write(dir .. "/state.json", '{"format": 7, "modules": {}}')
      r = phanes("apply", "greet", "--path", FIX, "--state", dir .. "/state.json")
      assert.equal(2, r.code)
      assert.match("state format 7 is newer", r.stderr)
      assert.equal('{"format": 7, "modules": {}}', runcli.read(dir .. "/state.json"))
    end)

    it("shows the state with status, as a table or JSON", function()
      local r = phanes("status", "--state", dir .. "/state.json")
      assert.equal(0, r.code)
      assert.match("nothing applied on this machine yet", r.stdout)
      phanes("apply", "fail", "--path", FIX, "--state", dir .. "/state.json")
      r = phanes("status", "--state", dir .. "/state.json")
      assert.equal(0, r.code)
      assert.match("module%s+status%s+installed at%s+updated at%s+version", r.stdout)
      assert.match("alpha%s+installed%s+%d%d%d%d%-%d%d%-%d%dT[%d:]+Z%s+%S+%s+2", r.stdout)
      assert.match("failing%s+failed", r.stdout)
      assert.match("failing: module 'failing' failed", r.stdout)
      r = phanes("status", "--json", "--state", dir .. "/state.json")
      local s = json.decode(r.stdout)
      assert.equal("installed", s.modules.alpha.status)
      -- PHANES_STATE is honoured
      env.PHANES_STATE = dir .. "/state.json"
      r = phanes("status", "--json")
      assert.equal("installed", json.decode(r.stdout).modules.alpha.status)
    end)

    it("tells with --config whether a module's config changed since", function()
      phanes("apply", "greet", "--path", FIX, "--state", dir .. "/state.json")
      runcli.write(dir .. "/c.yaml", '{"alpha": {"greeting": "from profile"}}')
      local r = phanes("status", "--state", dir .. "/state.json", "--config", dir .. "/c.yaml", "--path", FIX)
      assert.equal(0, r.code, r.stderr)
      assert.match("alpha%s+installed.*same", r.stdout)
      runcli.write(dir .. "/c.yaml", '{"alpha": {"greeting": "changed"}}')
      r = phanes("status", "--state", dir .. "/state.json", "--config", dir .. "/c.yaml", "--path", FIX)
      assert.match("alpha%s+installed.*changed", r.stdout)
    end)

    it("validates the config with check, naming file and key (exit 2)", function()
      runcli.write(dir .. "/c.yaml", '{"alpha": {"greeting": "hi"}}')
      local r = phanes("check", "greet", "--config", dir .. "/c.yaml", "--path", FIX)
      assert.equal(0, r.code, r.stderr)
      assert.match("^ok: ", r.stdout)
      runcli.write(dir .. "/c.yaml", '{"alpha": {"greting": "hi"}}')
      r = phanes("check", "greet", "--config", dir .. "/c.yaml", "--path", FIX)
      assert.equal(2, r.code)
      assert.match("c%.yaml.*greting", r.stderr)
      r = phanes("check", "--config", dir .. "/nope.yaml", "--path", FIX)
      assert.equal(2, r.code)
      assert.match("cannot read the config", r.stderr)
    end)

    it("stops on Ctrl-C after the current resource, records what completed, exit 130", function()
      local cmd = runcli.command({ "apply", "slow", "--path", FIX, "--state", dir .. "/state.json" }, env, true)
      local sh = io.popen("(" .. cmd .. " > " .. dir .. "/out 2> " .. dir .. "/err) & echo $!; wait $!; echo $?")
      local pid = sh:read "l"
      for _ = 1, 100 do
        if runcli.read(dir .. "/slow.1") then break end
        os.execute "sleep 0.05"
      end
      os.execute("kill -INT " .. pid)   -- phanes itself, as a terminal's Ctrl-C would
      local code = tonumber(sh:read "l")
      sh:close()
      local err = runcli.read(dir .. "/err")
      assert.equal(130, code, err)
      assert.match("interrupted during 'slow'", err)
      assert.truthy(runcli.read(dir .. "/slow.1"))
      assert.is_nil(runcli.read(dir .. "/slow.5"))
      assert.is_nil(runcli.read(dir .. "/beta.txt"))
      local s = state()
      assert.equal("installed", s.modules.alpha.status)
      assert.same({ changing = true }, s.modules.slow) -- it changed the machine: the next run resumes it
      assert.match("slow%s+interrupted", runcli.read(dir .. "/out"))
    end)

    it("prints the facts, as a table or JSON", function()
      local r = phanes "facts"
      assert.equal(0, r.code, r.stderr)
      assert.match("^fact%s+value\n", r.stdout)
      assert.match("\nos%.id%s+%S+", r.stdout)
      r = phanes("facts", "--json")
      assert.is_table(json.decode(r.stdout).os)
    end)

    it("lists modules with their origin, and profiles with their modules", function()
      local r = phanes("list", "--path", FIX)
      assert.equal(0, r.code, r.stderr)
      assert.match("alpha%s+writes alpha%.txt%s+" .. FIX .. "/modules/alpha%.lua", r.stdout)
      assert.match("chain%s+gamma, alpha, skipper", r.stdout)
      r = phanes("list", "-v", "--path", FIX)
      assert.match("requires: alpha", r.stdout)
      assert.match("config: greeting:string, token:string %(secret%)", r.stdout)
      for _, args in ipairs { { "list", "-v", "--path", FIX }, { "list", "-v" }, { "list", "--path", FIX }, { "list" } } do
        r = phanes(table.unpack(args))
        local n = 0
        for line in r.stdout:gmatch "[^\n]+" do
          n = n + 1
          assert.is_true(utf8.len(line) <= 100, "wider than 100 columns: " .. line)
        end
        assert.is_true(n > 20, r.stdout)
      end
      r = phanes "list" -- the plain list cuts a long description and folds a long list of modules
      assert.match("\n  ai +baseline, user, security, swap, updates, ollama,[^\n]*\n +[%w, ]*sillytavern\n", r.stdout)
      assert.match("\n  comfyui +ComfyUI from a pinned git ref[^\n]*%.%.%. ", r.stdout)
      r = phanes("list", "--path", FIX .. "/bad")
      assert.equal(2, r.code)
      assert.match("syntax%.lua:4:", r.stderr)
    end)
  end)
end)

describe("cli conventions", function()
  local dir, env
  before_each(function()
    dir = runcli.tmpdir()
    env = { RUNNER_FIXTURE_DIR = dir, NO_COLOR = "1", PHANES_STATE = "", PHANES_LOCK = dir .. "/machine.lock" }
  end)
  after_each(function() runcli.rmdir(dir) end)
  local function phanes(...) return runcli.run({ ... }, env) end
  local STATE = function() return dir .. "/state.json" end
  local function esc(s) return (s:gsub("%p", "%%%0")) end

  it("--check is --dry-run: nothing is written", function()
    assert.is_true(cli.parse({ "apply", "x", "--check" }).opts["dry-run"])
    assert.is_nil(cli.parse({ "apply", "x", "--check" }).opts.check)
    local r = phanes("apply", "chain", "--check", "--path", FIX, "--state", STATE())
    assert.equal(0, r.code, r.stderr)
    assert.match("^dry run: applying chain", r.stdout)
    assert.match("would change file%.content " .. esc(dir) .. "/gamma%.txt", r.stdout)
    assert.match("%+gamma", r.stdout) -- the diff
    assert.is_nil(runcli.read(dir .. "/gamma.txt"))
    assert.equal("option --check does not apply to 'status'", select(2, cli.parse { "status", "--check" }))
  end)

  it("--diff shows file diffs in a real run, which has none without it", function()
    local r = phanes("apply", "chain", "--path", FIX, "--state", STATE())
    assert.equal(0, r.code, r.stderr)
    assert.match("changed file%.content " .. esc(dir) .. "/gamma%.txt", r.stdout)
    assert.not_match("%+gamma", r.stdout)
    runcli.write(dir .. "/gamma.txt", "old\n")
    r = phanes("apply", "chain", "--diff", "--path", FIX, "--state", STATE())
    assert.equal(0, r.code, r.stderr)
    assert.match("changed file%.content " .. esc(dir) .. "/gamma%.txt%s+%(content%)\n%s+%-%-%- [^\n]*\n%s+%+%+%+ [^\n]*\n.*%-old\n%s+%+gamma", r.stdout)
    assert.equal("gamma\n", runcli.read(dir .. "/gamma.txt"))
  end)

  it("-q prints only changes (named by module) and errors", function()
    local r = phanes("apply", "chain", "-q", "--path", FIX, "--state", STATE())
    assert.equal(0, r.code, r.stderr)
    local lines = {}
    for l in r.stdout:gmatch "[^\n]+" do lines[#lines + 1] = l end
    assert.is_true(#lines > 0)
    for _, l in ipairs(lines) do assert.match("^%a+: changed ", l) end
    assert.match("gamma: changed file%.content " .. esc(dir) .. "/gamma%.txt", r.stdout)
    assert.not_match("%[%d/%d%]", r.stdout)
    assert.not_match("skipped", r.stdout)
    r = phanes("apply", "chain", "--quiet", "--path", FIX, "--state", STATE())
    assert.equal(0, r.code)
    assert.equal("", r.stdout) -- nothing changed: nothing to say
    r = phanes("apply", "fail", "-q", "--path", FIX, "--state", STATE())
    assert.equal(1, r.code)
    assert.match("phanes: ", r.stderr)
  end)

  it("TERM=dumb turns colour off as NO_COLOR does", function()
    local output = require "phanes.engine.output"
    assert.is_true(output.new({ tty = true, no_color = "", term = "xterm-256color" }).color)
    assert.is_false(output.new({ tty = true, no_color = "", term = "dumb" }).color)
    assert.is_true(output.new({ color = "always", tty = true, no_color = "", term = "dumb" }).color)
    local r = runcli.run({ "apply", "chain", "--dry-run", "--path", FIX, "--state", STATE() },
      { RUNNER_FIXTURE_DIR = dir, TERM = "dumb", PHANES_STATE = "" })
    assert.not_match("\27", r.stdout)
    -- on a real terminal: the live line (\r and an erase) only when TERM can rewrite a line
    local function on_tty(term)
      local cmd = runcli.command({ "apply", "chain", "--dry-run", "--path", FIX, "--state", STATE() },
        { RUNNER_FIXTURE_DIR = dir, TERM = term, PHANES_STATE = "", PHANES_LOCK = dir .. "/machine.lock" })
      local p = io.popen("timeout 20 script -qec " .. runcli.quote(cmd) .. " /dev/null </dev/null")
      local text = p:read "a"
      p:close()
      return text
    end
    local dumb = on_tty "dumb"
    assert.not_match("\27", dumb)
    assert.match("would change file%.content", dumb)
    assert.match("\r\27%[K", on_tty "xterm")
  end)

  it("--detailed-exitcode: 4 when a dry run has changes pending, 0 when none", function()
    local r = phanes("apply", "chain", "--dry-run", "--detailed-exitcode", "--path", FIX, "--state", STATE())
    assert.equal(4, r.code, r.stderr)
    assert.equal(4, cli.EXIT.drift)
    r = phanes("apply", "chain", "--dry-run", "--path", FIX, "--state", STATE())
    assert.equal(0, r.code) -- without the flag: 0
    r = phanes("apply", "chain", "--path", FIX, "--state", STATE())
    assert.equal(0, r.code, r.stderr)
    r = phanes("apply", "chain", "--check", "--detailed-exitcode", "--json", "--path", FIX, "--state", STATE())
    assert.equal(0, r.code, r.stderr) -- no drift
    assert.equal(0, json.decode(r.stdout).exit_code)
    runcli.write(dir .. "/gamma.txt", "drifted\n")
    r = phanes("apply", "chain", "-n", "--detailed-exitcode", "--json", "--path", FIX, "--state", STATE())
    assert.equal(4, r.code)
    assert.equal(4, json.decode(r.stdout).exit_code)
    r = phanes("apply", "fail", "--detailed-exitcode", "--path", FIX, "--state", STATE())
    assert.equal(1, r.code) -- a failure stays a failure
    local readme = runcli.read("README.md")
    assert.match("\n| 4 | with `%-%-detailed%-exitcode`", readme)
  end)
end)

describe("cli extra arguments", function()
  it("are an error (exit 2) that names the argument and shows the usage", function()
    for _, c in ipairs {
      { { "version", "x" }, "x", "version" }, { { "list", "web" }, "web", "list" },
      { { "facts", "os" }, "os", "facts" }, { { "status", "dev", "extra" }, "extra", "status" },
      { { "help", "apply", "more" }, "more", "help" },
    } do
      local r = runcli.run(c[1], { NO_COLOR = "1" })
      assert.equal(2, r.code, table.concat(c[1], " "))
      assert.equal("", r.stdout)
      assert.match("^phanes: unexpected argument '" .. c[2] .. "' to '" .. c[3] .. "'\nusage: phanes " .. c[3], r.stderr)
    end
    local r = runcli.run({ "apply", "a", "b", "--dry-run" }, {})
    assert.equal(2, r.code)
    assert.match("one profile at a time", r.stderr)
    r = runcli.run({ "version" }, {})
    assert.equal(0, r.code)
  end)
end)

describe("phanes host add on an existing name", function()
  local dir, env
  before_each(function()
    dir = runcli.tmpdir()
    env = { PHANES_INVENTORY = dir .. "/inventory.yaml", HOME = dir, NO_COLOR = "1" }
  end)
  after_each(function() runcli.rmdir(dir) end)
  local function host(...) return runcli.run({ "host", ... }, env) end
  local function hosts() return json.decode(host("list", "--json").stdout) end

  it("is an error without --update; --update keeps the groups unless new ones are given", function()
    assert.equal(0, host("add", "web1", "deploy@10.0.0.5", "--group", "web", "--group", "eu", "--key", "k1").code)
    local before = runcli.read(dir .. "/inventory.yaml")
    local r = host("add", "web1", "root@10.0.0.9")
    assert.equal(2, r.code)
    assert.equal("phanes: host 'web1' exists (deploy@10.0.0.5); give --update to change it, "
      .. "or `phanes host remove web1` first\n", r.stderr)
    assert.equal(before, runcli.read(dir .. "/inventory.yaml")) -- untouched
    r = host("add", "web1", "root@10.0.0.9", "--update")
    assert.equal(0, r.code, r.stderr)
    assert.match("^updated web1", r.stdout)
    local h = hosts()[1]
    assert.equal("root@10.0.0.9", h.address)
    assert.same({ "web", "eu" }, h.groups)
    assert.match("key: k1", runcli.read(dir .. "/inventory.yaml"))
    assert.equal(0, host("add", "web1", "root@10.0.0.9", "--update", "--group", "db").code)
    assert.same({ "db" }, hosts()[1].groups)
    assert.equal(0, host("add", "new1", "10.0.0.1", "--update").code) -- --update on a new name adds it
  end)

  it("host list --json gives groups as a list, empty or not", function()
    host("add", "a", "10.0.0.1")
    host("add", "b", "10.0.0.2", "--group", "web")
    local r = host("list", "--json")
    assert.match('"groups": %[%]', r.stdout)
    assert.match('"groups": %[%s*"web"%s*%]', r.stdout)
    assert.not_match('"groups": {}', r.stdout)
  end)

  it("host add --help prints the usage", function()
    local r = host("add", "--help")
    assert.equal(0, r.code)
    assert.match("^usage: phanes host add NAME", r.stdout)
  end)
end)
