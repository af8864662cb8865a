-- The sillytavern module and the ai profile on one disposable Debian test
-- host, against local fixtures served over HTTP from the harness bridge:
-- a SillyTavern-shaped repository (spec/fixtures/ai/sillytavern: server.js,
-- a package.json whose one dependency is a local file: package, a
-- lockfile, a postinstall script that counts npm runs), tagged 1.0.0 with
-- the release branch one commit further, and an extension repository; both
-- served as git repositories over HTTP (dumb protocol). Node.js and npm
-- come from Debian (the harness's apt cache). The host is then looked at:
-- the checkout at the pinned commit, npm run once, the service enabled and
-- answering on localhost only, the seeded config keeping a hand edit, a
-- re-run touching nothing, a lost state file detected.
--
-- The ai profile then runs on the same host (minimal + ollama + comfyui +
-- sillytavern), every module the real one: ollama from the fixture archive
-- of ai_spec.lua, comfyui from the ComfyUI-shaped repository and the local
-- wheel indexes of ai_apps_spec.lua (spec/support/fixtures.lua). The host
-- is looked at (ollama and comfyui answering on localhost); its no-op
-- re-run changes nothing and is measured (PHANES_BENCH_AI=FILE: the
-- figures for spec/bench/run).
--
--   PHANES_TEST_ID=c7 spec/run build/phanes integration spec/integration/ai_sillytavern_spec.lua
local th = require "spec.support.testhost"
local on = require "spec.support.onhost"
local fx = require "spec.support.fixtures"
local runcli = require "spec.support.runcli"
local json = require "phanes.json"
local F = require "phanes.file"

local sh, trim, yes, phanes, report, local_sh = on.sh, on.trim, on.yes, on.phanes, on.report, on.local_sh

local ST = "apply sillytavern --only sillytavern --config st.yaml"
local AI = "apply ai --config ai.yaml"

local q = th.quote

-- every resource of every module ok (a module may skip itself: swap in a
-- container; one with detect probes that all pass is noop)
local function all_ok(r)
  for _, m in ipairs(r.modules) do
    if m.status ~= "skipped" and m.status ~= "noop" then
      assert.equal("ok", m.status, m.name .. ": " .. json.encode(m.error or ""))
    end
    for _, ev in ipairs(m.resources) do
      -- a dry run does not ask the health URL (the service may not be there yet)
      local want = (r.dry_run and ev.resource == "fetch.check") and "skipped" or "ok"
      assert.equal(want, ev.status, m.name .. " " .. ev.resource .. " " .. tostring(ev.target))
    end
  end
end

describe("sillytavern on a test host", function()
  local available, why = th.available()
  if not available then
    it("needs test hosts", function() pending(why) end)
    return
  end

  local dir, srv, base, sums = nil, nil, nil, {}

  local function fixtures()
    dir = require("lfs").currentdir() .. "/build/spec_tmp/st_fixture"
    local_sh("rm -rf " .. q(dir) .. " && mkdir -p " .. q(dir .. "/www"))
    -- SillyTavern: 1.0.0, then the release branch one commit further
    local work = q(dir .. "/st")
    sums.tag = fx.repo("spec/fixtures/ai/sillytavern", dir .. "/st",
      { branch = "release", message = "1.0.0", tag = "1.0.0" })
    local_sh("cd " .. work .. " && echo '// release' >> server.js && " .. fx.G .. " commit -qam release")
    fx.publish(dir .. "/st", dir .. "/www/sillytavern.git")
    sums.release = trim(local_sh("git -C " .. work .. " rev-parse release"))
    sums.ext = fx.repo("spec/fixtures/ai/sillytavern-ext", dir .. "/ext", { message = "ext" })
    fx.publish(dir .. "/ext", dir .. "/www/ext.git")
    -- Ollama, as in ai_spec.lua: the stand-in binary packed like the release
    fx.ollama(dir .. "/ollama")
    local_sh("mkdir -p " .. q(dir .. "/www/v0.0.1") .. " && cd " .. q(dir .. "/ollama") .. " && tar -czf "
      .. q(dir .. "/www/v0.0.1/ollama-linux-amd64.tgz") .. " bin lib")
    sums.ollama = F.sha256_file(dir .. "/www/v0.0.1/ollama-linux-amd64.tgz")
    -- ComfyUI, as in ai_apps_spec.lua: the repository at v0.0.1, the indexes
    sums.comfyui = fx.comfyui(dir)
  end

  local function st_section()
    return {
      "sillytavern:",
      "  repo: " .. base .. "/sillytavern.git",
      '  ref: "1.0.0"',
      "  extensions:",
      "    - { name: fixture-ext, repo: \"" .. base .. "/ext.git\", ref: main }",
    }
  end

  setup(function()
    fixtures()
    th.down(1)
    th.up(1)
    srv = fx.serve(dir)
    base = srv.base
    runcli.write(dir .. "/st.yaml", table.concat(st_section(), "\n") .. "\n")
    local ai = {
      "username: st",
      'ssh_public_key: "' .. trim(local_sh("cat " .. q(th.key() .. ".pub"))) .. '"',
      "ollama:",
      '  version: "0.0.1"',
      "  archive_url: " .. base .. "/v{version}/ollama-linux-{arch}.tgz",
      "  sha256: " .. sums.ollama,
    }
    for _, l in ipairs(st_section()) do ai[#ai + 1] = l end
    for _, l in ipairs(fx.comfyui_config(base)) do ai[#ai + 1] = l end
    runcli.write(dir .. "/ai.yaml", table.concat(ai, "\n") .. "\n")
    assert(th.cp(1, runcli.binary(), "/usr/local/bin/phanes"))
    assert(th.cp(1, dir .. "/st.yaml", "/root/st.yaml"))
    assert(th.cp(1, dir .. "/ai.yaml", "/root/ai.yaml"))
  end)
  teardown(function()
    if srv then srv.stop() end
    th.down()
    if dir then os.execute("rm -rf " .. q(dir)) end
  end)

  it("plans in a dry run and touches nothing", function()
    local out, code, err = phanes(ST .. " --dry-run")
    assert.equal(0, code, out .. err)
    assert.matches("would change git.checkout /opt/sillytavern", out, 1, true)
    assert.matches("would change npm.installed /opt/sillytavern", out, 1, true)
    assert.matches("+ExecStart=/usr/bin/node server.js --port 8000 --listen false", out, 1, true)
    assert.is_false(yes "test -e /opt/sillytavern")
    assert.is_false(yes "getent passwd sillytavern >/dev/null")
    assert.is_false(yes "test -e /etc/systemd/system/sillytavern.service")
  end)

  it("installs: the pinned checkout, npm run once, the service on localhost only", function()
    local out, code, err = phanes(ST)
    assert.equal(0, code, out .. err)
    -- Node.js from Debian
    assert.matches("^ii", sh "dpkg -l nodejs | tail -1")
    assert.matches("^ii", sh "dpkg -l npm | tail -1")
    -- the checkout at the pinned tag, the sillytavern user's
    assert.equal(sums.tag, trim(sh "runuser -u sillytavern -- git -C /opt/sillytavern rev-parse HEAD"))
    assert.equal("sillytavern sillytavern\nsillytavern sillytavern",
      trim(sh "stat -c '%U %G' /opt/sillytavern/.git/HEAD /opt/sillytavern"))
    local uid = sh("getent passwd sillytavern"):match "^sillytavern:x:(%d+):"
    assert.is_true(tonumber(uid) < 1000)
    -- npm ci ran once, as the user: the local dependency is linked
    assert.equal("ran\n", sh "cat /opt/sillytavern/npm-runs.log")
    assert.equal("sillytavern", trim(sh "stat -c %U /opt/sillytavern/npm-runs.log"))
    assert.equal("st-local fixture", sh("cd /opt/sillytavern && runuser -u sillytavern -- node -e "
      .. q "process.stdout.write(require('st-local').name)"))
    assert.matches("command ci %-%-omit=dev", sh "cat /opt/sillytavern/node_modules/.phanes-npm")
    -- the config, seeded
    assert.matches("\nport: 8000\n", sh "cat /opt/sillytavern/config.yaml")
    assert.equal("640 sillytavern", trim(sh "stat -c '%a %U' /opt/sillytavern/config.yaml"))
    -- the extension
    assert.equal(sums.ext, trim(sh("runuser -u sillytavern -- git -C "
      .. "/opt/sillytavern/public/scripts/extensions/third-party/fixture-ext rev-parse HEAD")))
    -- the service: enabled, run by its user, answering on 127.0.0.1:8000 only
    assert.equal("active", trim(sh "systemctl is-active sillytavern"))
    assert.equal("enabled", trim(sh "systemctl is-enabled sillytavern"))
    assert.equal("sillytavern", trim(sh "ps -o user= -p $(systemctl show -p MainPID --value sillytavern)"))
    assert.matches("st-local fixture", sh "curl -fsS http://127.0.0.1:8000/", 1, true)
    assert.equal("127.0.0.1:8000", trim(sh "ss -ltnH 'sport = :8000' | awk '{print $4}'"))
    local ok = th.run("curl -fsS -m 3 http://" .. th.ip(1) .. ":8000/")
    assert.is_false(ok)
    assert.equal("1.0.0\n", sh "cat /var/lib/phanes/sentinels/sillytavern.installed")
  end)

  it("keeps a hand-edited config; a re-run touches nothing: no npm, no git fetch, no restart", function()
    sh "echo 'port: 9999 # mine' >> /opt/sillytavern/config.yaml"
    local config = sh "cat /opt/sillytavern/config.yaml"
    local pid = trim(sh "systemctl show -p MainPID --value sillytavern")
    local stamps = sh "stat -c %Y /opt/sillytavern/node_modules/.phanes-npm /etc/systemd/system/sillytavern.service"
    local r, code, text = report(ST)
    assert.equal(0, code, text)
    all_ok(r)
    for _, ev in ipairs(r.modules[1].resources) do
      if ev.resource == "file.seed" then assert.equal("kept (exists)", ev.message) end
    end
    print(("\n  sillytavern re-run on the host: %d processes, %.0f ms"):format(r.execs, r.duration * 1000))
    assert.equal(config, sh "cat /opt/sillytavern/config.yaml")
    assert.equal("ran\n", sh "cat /opt/sillytavern/npm-runs.log")
    assert.equal(pid, trim(sh "systemctl show -p MainPID --value sillytavern"))
    assert.equal(stamps, sh "stat -c %Y /opt/sillytavern/node_modules/.phanes-npm /etc/systemd/system/sillytavern.service")
    assert.equal(sums.tag, trim(sh "runuser -u sillytavern -- git -C /opt/sillytavern rev-parse HEAD"))
  end)

  it("with the state file deleted: detected installed, nothing reinstalled", function()
    sh "rm -f /var/lib/phanes/state.json"
    local out, code, err = phanes "status"
    assert.equal(0, code, out .. err)
    assert.matches("sillytavern%s+installed%s+not in the state", out)
    local st = json.decode((phanes "status --json"))
    assert.is_true(st.detected.sillytavern.installed)
    assert.equal(4, #st.detected.sillytavern.checks) -- 2 files, 1 dir, the URL
    local pid = trim(sh "systemctl show -p MainPID --value sillytavern")
    -- the plan: nothing to do (every resource ok: the module is a no-op)
    local r, rcode, text = report(ST .. " --dry-run")
    assert.equal(0, rcode, text)
    all_ok(r)
    assert.equal(1, r.counts.noop, text) -- detected, though the state file does not know it
    assert.is_false(r.modules[#r.modules].detected.in_state, text)
    r, rcode, text = report(ST)
    assert.equal(0, rcode, text)
    all_ok(r)
    assert.equal("ran\n", sh "cat /opt/sillytavern/npm-runs.log")
    assert.equal(pid, trim(sh "systemctl show -p MainPID --value sillytavern"))
    assert.equal("noop", r.modules[#r.modules].status, text)
    assert.equal("installed", json.decode(sh "cat /var/lib/phanes/state.json").modules.sillytavern.status)
  end)

  it("status says what a failed probe is when the service is down", function()
    sh "systemctl stop sillytavern"
    local out = phanes "status"
    assert.matches("sillytavern%s+not found%s+url http://127.0.0.1:8000/: curl exit 7", out)
    local r, code, text = report(ST)
    assert.equal(0, code, text)
    assert.equal("active", trim(sh "systemctl is-active sillytavern"))
    assert.equal("ran\n", sh "cat /opt/sillytavern/npm-runs.log")
  end)

  it("moves to the release branch: checkout, npm only when the lockfile changed, a restart", function()
    local pid = trim(sh "systemctl show -p MainPID --value sillytavern")
    local out, code, err = phanes(ST .. " --set sillytavern.ref=release")
    assert.equal(0, code, out .. err)
    assert.equal(sums.release, trim(sh "runuser -u sillytavern -- git -C /opt/sillytavern rev-parse HEAD"))
    -- server.js changed, package.json and the lockfile did not: no npm run
    assert.equal("ran\n", sh "cat /opt/sillytavern/npm-runs.log")
    assert.is_not.equal(pid, trim(sh "systemctl show -p MainPID --value sillytavern"))
    assert.matches("st-local fixture", sh "curl -fsS http://127.0.0.1:8000/", 1, true)
    assert.matches("# mine", sh "cat /opt/sillytavern/config.yaml", 1, true)
  end)

  it("the ai profile applies its real modules: ollama and comfyui answer on localhost only", function()
    local out, code, err = phanes(AI .. " --set sillytavern.ref=release")
    assert.equal(0, code, out .. err)
    assert.equal('{"version":"0.0.0-fixture"}', sh "curl -fsS http://127.0.0.1:11434/api/version")
    -- comfyui: the fixture repository at v0.0.1, its requirement and the CPU torch in the venv
    assert.equal(sums.comfyui, trim(sh "runuser -u comfyui -- git -C /opt/comfyui rev-parse HEAD"))
    assert.equal("1.0 cpu", trim(sh("/opt/comfyui/venv/bin/python -c "
      .. q "import comfy_fixture_dep as a, torch; print(a.VERSION, torch.VARIANT)")))
    assert.equal("active", trim(sh "systemctl is-active comfyui"))
    assert.equal("enabled", trim(sh "systemctl is-enabled comfyui"))
    assert.equal("comfyui", trim(sh "ps -o user= -p $(systemctl show -p MainPID --value comfyui)"))
    local stats = json.decode(sh "curl -fsS http://127.0.0.1:8188/system_stats")
    assert.equal("fixture", stats.system.comfyui_version)
    assert.equal("cpu", stats.system.torch)
    assert.equal("/opt/comfyui/venv", stats.system.prefix)
    assert.equal("127.0.0.1:8188", trim(sh "ss -ltnH 'sport = :8188' | awk '{print $4}'"))
    assert.is_false((th.run("curl -fsS -m 3 http://" .. th.ip(1) .. ":8188/system_stats")))
    assert.equal("v0.0.1\n", sh "cat /var/lib/phanes/sentinels/comfyui.installed")
    assert.matches("st-local fixture", sh "curl -fsS http://127.0.0.1:8000/", 1, true)
  end)

  it("the ai profile's no-op re-run changes nothing, is fast and spawns few processes", function()
    local PIDS = "systemctl show -p MainPID --value ollama comfyui sillytavern"
    local STAMPS = "stat -c %Y /opt/comfyui/venv/.phanes-requirements /etc/systemd/system/comfyui.service "
      .. "/opt/sillytavern/node_modules/.phanes-npm /usr/local/bin/ollama"
    local pids, stamps, seen = sh(PIDS), sh(STAMPS), srv.requests()
    -- each no-op run: the report, and the CPU time of the whole process tree (bash's time)
    local function noop()
      local t = sh("cd /root && bash -c 'TIMEFORMAT=\"%R %U %S\"; { time phanes " .. AI
        .. " --set sillytavern.ref=release --json >/root/noop.json 2>/root/err; } 2>/root/time'; cat /root/time")
      local real, user, sys = t:match "([%d.]+) ([%d.]+) ([%d.]+)"
      local r = assert(json.decode(sh "cat /root/noop.json"), sh "cat /root/noop.json /root/err")
      return r, tonumber(real), tonumber(user) + tonumber(sys)
    end
    local walls, cpus, execs, best = {}, {}, {}, nil
    for i = 1, 5 do
      local r, _, cpu = noop()
      assert.equal(0, r.exit_code, json.encode(r))
      all_ok(r)
      if i == 1 then
        local names = {}
        for _, m in ipairs(r.modules) do names[#names + 1] = m.name end
        assert.equal("baseline,user,security,swap,updates,ollama,comfyui,sillytavern", table.concat(names, ","))
      end
      walls[i], cpus[i], execs[i] = r.duration, cpu, r.execs
      if not best or r.duration < best.duration then best = r end
    end
    table.sort(walls)
    table.sort(cpus)
    local load = tonumber(local_sh("cut -d' ' -f1 /proc/loadavg"):match "[%d.]+")
    local cores = tonumber(trim(local_sh "nproc"))
    local mods = {}
    for _, m in ipairs(best.modules) do mods[#mods + 1] = ("%s %.0f"):format(m.name, (m.duration or 0) * 1000) end
    print(("\n  ai profile no-op on the host: %d processes, wall best %.0f ms, median %.0f ms; CPU best %.0f ms"
      .. " (load %.1f on %d cores)\n  modules (ms): %s"):format(execs[1], walls[1] * 1000, walls[3] * 1000,
      cpus[1] * 1000, load, cores, table.concat(mods, ", ")))
    local bench = os.getenv "PHANES_BENCH_AI"
    if bench and bench ~= "" then
      runcli.write(bench, ("%.1f %.1f %d %.1f %.1f\n"):format(walls[1] * 1000, walls[3] * 1000, execs[1],
        cpus[1] * 1000, load))
    end
    -- nothing restarted, rewritten or fetched again (no git, no pip, no download)
    assert.equal(pids, sh(PIDS))
    assert.equal(stamps, sh(STAMPS))
    assert.equal(seen, srv.requests(), "the fixture server was asked something")
    assert.equal("ran\n", sh "cat /opt/sillytavern/npm-runs.log")
    for i = 1, 5 do assert.is_true(execs[i] < 10, "processes: " .. tostring(execs[i])) end
    assert.is_true(cpus[1] < 0.3, "CPU time, best of 5: " .. tostring(cpus[1]))
    -- wall time is the machine's when it is oversubscribed: checked when it is not
    if load < cores then assert.is_true(walls[1] < 0.3, "wall time, best of 5: " .. tostring(walls[1])) end
  end)
end)
