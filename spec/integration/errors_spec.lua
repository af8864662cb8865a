-- Errors are features: each failure the user can meet, for real, with the
-- binary as a subprocess. The fixture modules (spec/fixtures/errors) only
-- touch $ERR_DIR, a temp dir; the full-disk case mounts a tiny tmpfs in a
-- private mount namespace (root only). Nothing here changes this machine.
--
--   build/phanes lua /usr/bin/busted spec/integration/errors_spec.lua
local runcli = require "spec.support.runcli"
local json = require "phanes.json"
local F = require "phanes.file"
local sys = require "phanes.sys"

local FIX = "spec/fixtures/errors"
local TOKEN = "S3cr3t-Tok-77"
local GOOD = "e_write:\n  name: web\n  token: \"" .. TOKEN .. "\"\n"

local q = runcli.quote

describe("errors", function()
  local dir, work, state, seen
  local function keep(...) for _, s in ipairs { ... } do seen[#seen + 1] = s end end

  before_each(function()
    dir = runcli.tmpdir()
    work = dir .. "/work"
    assert(F.mkdir(work, { parents = true }))
    state = dir .. "/state/state.json"
    runcli.write(dir .. "/good.yaml", GOOD)
    seen = {}
  end)
  after_each(function() runcli.rmdir(dir) end)

  local function env(extra)
    local e = { ERR_DIR = work, NO_COLOR = "1", PHANES_LOCK = dir .. "/machine.lock" }
    for k, v in pairs(extra or {}) do e[k] = v end
    return e
  end
  -- phanes apply PROFILE with the fixture path, the state in the temp dir
  local function apply(profile, config, args, extra_env)
    local argv = { "apply", profile, "--path", FIX, "--state", state }
    if config then
      local path = dir .. "/" .. (config:match "^[%w_]+%.yaml$" and config or "config.yaml")
      if not config:match "^[%w_]+%.yaml$" then runcli.write(path, config) end
      argv[#argv + 1] = "--config"
      argv[#argv + 1] = path
    end
    for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
    local r = runcli.run(argv, env(extra_env))
    keep(r.stdout, r.stderr)
    return r
  end
  local function listing(path)
    local p = io.popen("cd " .. q(path) .. " && find . | sort")
    local s = p:read "a"
    p:close()
    return s
  end

  describe("bad config stops before anything runs (exit 2)", function()
    it("bad YAML: file:line:col", function()
      local r = apply("e_ok", 'e_write:\n  name: web\n  token: "unterminated\n  port: 1\n')
      assert.equal(2, r.code)
      assert.matches("config.yaml:5:1: found unexpected end of stream %(while scanning a quoted scalar at 3:10%)", r.stderr)
      assert.equal(".\n", listing(work))
      assert.is_nil(F.exists(state) or nil)
    end)

    it("wrong type, unknown key with a did-you-mean, all at once", function()
      local r = apply("e_ok", 'e_write:\n  name: 12\n  token: "x"\n  prot: 80\n')
      assert.equal(2, r.code)
      assert.matches("config.yaml:2:3: e_write.name: expected a string, got an integer", r.stderr, 1, true)
      assert.matches("config.yaml:4:3: unknown key 'e_write.prot' (did you mean 'e_write.port'?)", r.stderr, 1, true)
      assert.equal(".\n", listing(work))
    end)

    it("missing required: where to set it", function()
      local r = apply("e_ok", "e_write:\n  name: web\n")
      assert.equal(2, r.code)
      assert.matches("e_write.token: required (set it in ", r.stderr, 1, true)
      assert.matches("--set e_write.token=", r.stderr, 1, true)
      assert.equal(".\n", listing(work))
      -- the --json report says why too
      r = apply("e_ok", "e_write:\n  name: web\n", { "--json" })
      local rep = assert(json.decode(r.stdout))
      assert.equal("error", rep.status)
      assert.equal(2, rep.exit_code)
      assert.matches("e_write.token: required", rep.errors[1], 1, true)
    end)

    it("unknown profile or module: the list of known ones", function()
      local r = apply("e_okk", "good.yaml")
      assert.equal(2, r.code)
      assert.matches("unknown profile or module 'e_okk'", r.stderr, 1, true)
      assert.matches("profiles: .*e_fail, e_lua, e_ok, e_slow", r.stderr)
      r = runcli.run({ "--modules", "e_write,e_wrte", "--path", FIX, "--config", dir .. "/good.yaml",
        "--state", state }, env())
      assert.equal(2, r.code)
      assert.matches("unknown module 'e_wrte'", r.stderr, 1, true)
      assert.matches("known modules: .*e_after, e_fail, e_luaerr, e_slow, e_write", r.stderr)
      assert.equal(".\n", listing(work))
    end)
  end)

  it("a Lua error in a user's module: file:line and traceback, exit 1, no crash", function()
    local r = apply("e_lua", "good.yaml")
    assert.equal(1, r.code)
    assert.matches("module 'e_luaerr' failed with a Lua error: [^\n]*spec/fixtures/errors/modules/e_luaerr%.lua:9: "
      .. "attempt to index a nil value %(local 'settings'%)", r.stderr)
    assert.matches("stack traceback:\n%s+[^\n]*e_luaerr%.lua:9: in [^\n]*apply", r.stderr) -- in field 'apply'
    assert.is_nil(r.stderr:find("lua/phanes/", 1, true)) -- the user's frames only
    assert.is_nil(r.stderr:find("internal error", 1, true))
    assert.matches("e_luaerr%s+failed", r.stdout)
    assert.matches("e_after%s+not run", r.stdout)
    local st = json.decode(runcli.read(state))
    assert.equal("failed", st.modules.e_luaerr.status)
    assert.matches("e_luaerr.lua:9:", st.modules.e_luaerr.last_error, 1, true)
  end)

  it("a resource failure names module, resource, stderr tail; --keep-going goes on", function()
    local r = apply("e_fail", "good.yaml")
    assert.equal(1, r.code)
    assert.matches("module 'e_fail' failed: cmd.run break things: [^\n]*exit 3", r.stderr)
    assert.matches("\n    W: first line\n    E: broken thing\n", r.stderr, 1, true)
    assert.matches("e_after%s+not run", r.stdout)
    assert.is_nil(F.exists(work .. "/after.txt") or nil)
    r = apply("e_fail", "good.yaml", { "--keep-going", "--json" })
    assert.equal(1, r.code)
    local rep = assert(json.decode(r.stdout))
    assert.equal("failed", rep.status)
    assert.same({ "changed", "failed", "changed" }, { rep.modules[1].status, rep.modules[2].status, rep.modules[3].status })
    assert.equal("cmd.run", rep.modules[2].error.resource)
    assert.matches("E: broken thing", rep.modules[2].error.detail, 1, true)
    assert.equal("after\n", runcli.read(work .. "/after.txt"))
    local st = json.decode(runcli.read(state))
    assert.equal("failed", st.modules.e_fail.status)
    assert.equal("installed", st.modules.e_after.status)
  end)

  it("Ctrl-C halfway: stops after the current resource, records what completed, exit 130", function()
    runcli.write(dir .. "/config.yaml", GOOD)
    local cmd = runcli.command({ "apply", "e_slow", "--path", FIX, "--state", state, "--config",
      dir .. "/config.yaml" }, env(), true)
    local sh = io.popen("(" .. cmd .. " > " .. dir .. "/out 2> " .. dir .. "/err) & echo $!; wait $!; echo $?")
    local pid = sh:read "l"
    local t0 = sys.now()
    while not F.exists(work .. "/slow.started") and sys.now() - t0 < 10 do sys.sleep(0.02) end
    assert.truthy(F.exists(work .. "/slow.started"))
    os.execute("kill -INT " .. pid)
    local code = tonumber(sh:read "l")
    sh:close()
    local out, err = runcli.read(dir .. "/out"), runcli.read(dir .. "/err")
    keep(out, err)
    assert.equal(130, code, out .. err)
    -- the slow command finished (it was the current resource), step3 never started
    assert.equal("done\n", runcli.read(work .. "/slow.done"))
    assert.is_nil(F.exists(work .. "/step3") or nil)
    assert.is_nil(F.exists(work .. "/after.txt") or nil)
    assert.matches("interrupted during 'e_slow' (stopped after its current resource); completed: e_write", err, 1, true)
    local st = assert(json.decode(runcli.read(state)))
    assert.equal("installed", st.modules.e_write.status)
    assert.same({ changing = true }, st.modules.e_slow) -- it changed the machine: the next run resumes it
    -- the same command again finishes the job
    local r = apply("e_slow", "config.yaml")
    assert.equal(0, r.code, r.stdout .. r.stderr)
    assert.equal("3\n", runcli.read(work .. "/step3"))
  end)

  it("a second concurrent apply waits, then fails clearly (exit 75)", function()
    runcli.write(dir .. "/config.yaml", GOOD)
    local cmd = runcli.command({ "apply", "e_ok", "--path", FIX, "--state", state, "--config",
      dir .. "/config.yaml" }, env { ERR_HOLD = "8" }, true)
    local first = io.popen("(" .. cmd .. " > " .. dir .. "/out1 2>&1); echo $?")
    -- while it holds the lock (its command sleeps), no command line holds the secret
    local t0, holding, leaks = sys.now(), false, {}
    while not holding and sys.now() - t0 < 10 do
      sys.sleep(0.02)
      leaks = {}
      for _, pid in ipairs(F.list "/proc") do
        local cmdline = pid:match "^%d+$" and F.read("/proc/" .. pid .. "/cmdline")
        if cmdline then
          cmdline = cmdline:gsub("%z", " ")
          if cmdline == "sleep 8 " then holding = true end
          if cmdline:find(TOKEN, 1, true) then leaks[#leaks + 1] = cmdline end
        end
      end
    end
    assert.is_true(holding)
    assert.same({}, leaks)
    local t1 = sys.now()
    local r = apply("e_ok", "config.yaml")
    local waited = sys.now() - t1
    assert.equal(75, r.code)
    assert.matches("another phanes run holds " .. dir .. "/machine.lock (pid ", r.stderr, 1, true)
    assert.matches("%(pid %d+%); wait for it to finish", r.stderr)
    assert.truthy(waited >= 4.5 and waited < 8, "waited " .. waited)
    assert.equal("0", first:read "l")
    first:close()
    local st = assert(json.decode(runcli.read(state)))
    assert.equal("installed", st.modules.e_write.status)
  end)

  it("a corrupt state file is kept aside and reported", function()
    assert(F.mkdir(dir .. "/state", { parents = true }))
    runcli.write(state, '{"format": 1, "modules": {')
    local r = runcli.run({ "status", "--state", state }, env())
    assert.equal(2, r.code)
    assert.matches(state .. ": corrupt state file", r.stderr, 1, true)
    r = apply("e_ok", "good.yaml")
    assert.equal(0, r.code, r.stderr)
    local kept = r.stderr:match "kept as (%S+%.corrupt%-%d+T%d+Z)"
    assert.truthy(kept, r.stderr)
    assert.equal('{"format": 1, "modules": {', runcli.read(kept))
    assert.equal("installed", json.decode(runcli.read(state)).modules.e_write.status)
  end)

  describe("a full disk", function()
    local root = sys.geteuid() == 0
    local fit = root and it or pending
    -- run phanes in a private mount namespace with a 64 KiB tmpfs at dir/full
    local function in_ns(shell)
      assert(F.mkdir(dir .. "/full", {}))
      local p = io.popen("unshare -m --propagation private sh -c " .. q("mount -t tmpfs -o size=64k tmpfs "
        .. q(dir .. "/full") .. " && " .. shell .. "; echo \"exit=$?\"; find " .. q(dir .. "/full") .. " | sort") .. " 2>&1")
      local out = p:read "a"
      p:close()
      keep(out)
      return out
    end
    local function phanes_cmd(args, e)
      return runcli.command({ "apply", "e_ok", "--path", FIX, "--config", dir .. "/good.yaml",
        table.unpack(args) }, e)
    end

    fit("for a managed file: No space left on device, naming the path, nothing half-written", function()
      local out = in_ns(phanes_cmd({ "--state", state, "--set", "e_write.size=200000" }, env { ERR_DIR = dir .. "/full" }))
      assert.matches("exit=1\n", out, 1, true)
      assert.matches("file.content " .. dir .. "/full/out/e_write.conf: " .. dir
        .. "/full/out/e_write.conf: No space left on device", out, 1, true)
      -- the directory was made; no file, no temp file left
      assert.matches("\n" .. dir .. "/full/out\n$", out)
    end)

    fit("for the state file: says so, stops, exit 1", function()
      local out = in_ns("dd if=/dev/zero of=" .. q(dir .. "/full/fill") .. " bs=1k count=64 2>/dev/null; "
        .. phanes_cmd({ "--state", dir .. "/full/state.json" }, env()))
      assert.matches("exit=1\n", out, 1, true)
      assert.matches("cannot write the state file: " .. dir .. "/full/state.json: No space left on device", out, 1, true)
      assert.matches("the run stopped after 'e_write'", out, 1, true)
      assert.is_nil(out:find("state.json\n", 1, true)) -- no state file, no temp file
      assert.is_nil(out:find("state.json.", 1, true) and not out:find("state.json.lock", 1, true) or nil)
    end)
  end)

  it("never shows a secret: output, --json, diffs, state", function()
    local r = apply("e_ok", "good.yaml", { "--dry-run" })
    assert.matches("+token ******", r.stdout, 1, true)
    r = apply("e_ok", "good.yaml", { "--json", "-v" })
    assert.equal(0, r.code)
    runcli.write(dir .. "/config2.yaml", GOOD .. "  port: 9090\n")
    r = apply("e_ok", "config2.yaml", { "--dry-run", "--json" })
    local rep = assert(json.decode(r.stdout))
    local diff = rep.modules[1].resources[2].diff
    assert.matches("-port 8080\n+port 9090", diff, 1, true)
    assert.matches(" token ******", diff, 1, true)
    r = apply("e_fail", "good.yaml", { "--set", "e_write.name=" .. TOKEN })
    keep(runcli.read(state))
    assert.equal("token " .. TOKEN, runcli.read(work .. "/out/e_write.conf"):match "token [^\n]+")
    assert.truthy(#seen >= 8)
    for i, text in ipairs(seen) do
      assert.is_nil(text:find(TOKEN, 1, true), "secret in output " .. i .. ":\n" .. text)
    end
  end)
end)
