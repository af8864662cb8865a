-- The comfyui and lmstudio modules end to end on one disposable Debian test
-- host, against local fixtures served over HTTP from the harness bridge
-- address (python3 -m http.server, git's dumb HTTP protocol):
--   - comfyui.git: a ComfyUI-shaped repository (spec/fixtures/ai/comfyui:
--     main.py serving /system_stats with the stdlib, importing its
--     requirement and torch) tagged v0.0.1 and v0.0.2, and a custom node
--     (spec/fixtures/ai/comfyui_node) with a requirement of its own;
--   - a simple index of tiny wheels built here (spec/fixtures/ai/
--     comfyui_wheel.py) standing in for PyPI, and two torch indexes (a
--     "cpu" and a "cuda" torch) standing in for download.pytorch.org;
--   - an LM Studio-shaped archive with an `lms` CLI (spec/fixtures/ai/
--     lmstudio) whose `lms server start` serves /v1/models, packed with
--     careless modes (a 0777 bin/lms and bin, a 0777 directory with a 0666
--     and a setuid file in it).
-- The host is then looked at: the checkout at the pinned commit, the venv
-- holding the requirements, torch from the index the host calls for, the
-- services enabled and answering on localhost only, nothing extracted
-- under /opt/lmstudio writable by group or others (nor setuid), the seeded settings
-- surviving a hand edit, the sentinels. A re-run (and one without the state
-- file) changes nothing and asks the fixture server nothing (no git, no
-- pip); a dirty checkout, a wrong sha256 and an unreachable mirror fail
-- their module while the other one still runs with -k.
--
--   PHANES_TEST_ID=c6 spec/run build/phanes integration spec/integration/ai_apps_spec.lua
local th = require "spec.support.testhost"
local on = require "spec.support.onhost"
local fx = require "spec.support.fixtures"
local runcli = require "spec.support.runcli"
local json = require "phanes.json"
local F = require "phanes.file"

local sh, trim, yes, phanes, local_sh = on.sh, on.trim, on.yes, on.phanes, on.local_sh

local BOTH = "apply /root/both.lua --only comfyui,lmstudio --config config.yaml"
local COMFY = "apply comfyui --only comfyui --config config.yaml"

local q = th.quote
local ZERO = string.rep("0", 63) .. "1"

local function module_of(r, name)
  for _, m in ipairs(r.modules) do if m.name == name then return m end end
  error("no module " .. name .. " in the report")
end

describe("comfyui and lmstudio on a test host", function()
  local available, why = th.available()
  if not available then
    it("needs test hosts", function() pending(why) end)
    return
  end

  local dir, srv, base, sums = nil, nil, nil, {}

  local function fixtures()
    dir = require("lfs").currentdir() .. "/build/spec_tmp/ai_apps_fixture"
    local_sh("rm -rf " .. q(dir) .. " && mkdir -p " .. q(dir .. "/www"))
    -- ComfyUI: v0.0.1, then v0.0.2 one commit further; a custom node
    sums.v1 = fx.comfyui(dir)
    local comfy, G = q(dir .. "/comfyui"), fx.G
    local_sh("cd " .. comfy .. " && echo 'a second release' > NEWS && " .. G .. " add NEWS && " .. G
      .. " commit -qm two && " .. G .. " tag v0.0.2")
    sums.v2 = trim(local_sh("git -C " .. comfy .. " rev-parse HEAD"))
    fx.publish(dir .. "/comfyui", dir .. "/www/comfyui.git")
    sums.node = fx.repo("spec/fixtures/ai/comfyui_node", dir .. "/node", { tag = "v1" })
    fx.publish(dir .. "/node", dir .. "/www/node.git")
    -- LM Studio: one top directory (strip 1), modes as careless as an archive may hold
    for _, v in ipairs { "0.0.1", "0.0.2" } do
      local top = dir .. "/LM-Studio-" .. v
      local out = dir .. "/www/lmstudio/" .. v .. "/LM-Studio-" .. v .. "-x64.tar.gz"
      local_sh("rm -rf " .. q(top) .. " && cp -r spec/fixtures/ai/lmstudio " .. q(top) .. " && cd " .. q(top)
        .. " && mkdir share && echo w > share/open && echo s > share/suid && chmod 0777 bin bin/lms share"
        .. " && chmod 0666 share/open && chmod 4755 share/suid && cd - >/dev/null && mkdir -p "
        .. q(dir .. "/www/lmstudio/" .. v) .. " && tar -C " .. q(dir) .. " -czf " .. q(out) .. " LM-Studio-" .. v)
      sums[v] = F.sha256_file(out)
    end
    -- 0.0.3: an entry climbing out of dir
    local evil = dir .. "/www/lmstudio/0.0.3/LM-Studio-0.0.3-x64.tar.gz"
    local_sh("mkdir -p " .. q(dir .. "/www/lmstudio/0.0.3") .. " && echo x > " .. q(dir .. "/evil") .. " && tar -C "
      .. q(dir) .. " -czPf " .. q(evil) .. " --transform 's,^evil,LM-Studio-0.0.3/../../../etc/phanes-lms-evil,' evil")
    sums["0.0.3"] = F.sha256_file(evil)
  end

  setup(function()
    fixtures()
    th.down(1)
    th.up(1)
    srv = fx.serve(dir)
    base = srv.base
    local lines = fx.comfyui_config(base)
    for _, l in ipairs {
      "  custom_nodes:",
      "    - { name: fixture-node, repo: " .. base .. "/node.git, ref: v1 }",
      "lmstudio:",
      '  version: "0.0.1"',
      "  archive_url: " .. base .. "/lmstudio/{version}/LM-Studio-{version}-x64.tar.gz",
      "  sha256: " .. sums["0.0.1"],
      "  strip: 1",
      "  server: true",
      "  port: 1235",
      "  settings: |",
      '    {"contextLength": 4096}',
      "",
    } do lines[#lines + 1] = l end
    local cfg = dir .. "/config.yaml"
    runcli.write(cfg, table.concat(lines, "\n"))
    local both = dir .. "/both.lua"
    runcli.write(both, 'return { name = "both", description = "comfyui and lmstudio", '
      .. 'modules = { "comfyui", "lmstudio" } }\n')
    assert(th.cp(1, runcli.binary(), "/usr/local/bin/phanes"))
    assert(th.cp(1, cfg, "/root/config.yaml"))
    assert(th.cp(1, both, "/root/both.lua"))
  end)
  teardown(function()
    if srv then srv.stop() end
    th.down()
    if dir then os.execute("rm -rf " .. q(dir)) end
  end)

  it("plans in a dry run and touches nothing", function()
    local out, code, err = phanes(BOTH .. " --dry-run")
    assert.equal(0, code, out .. err)
    assert.matches("would change git.checkout /opt/comfyui", out, 1, true)
    assert.matches("create venv; install torch; pip install -r /opt/comfyui/requirements.txt (not there yet)", out, 1, true)
    assert.matches("+ExecStart=/opt/comfyui/venv/bin/python /opt/comfyui/main.py --listen 127.0.0.1 --port 8188 --cpu",
      out, 1, true)
    assert.matches("would change fetch.file /var/cache/phanes/lmstudio/LM-Studio-0.0.1-x64.tar.gz", out, 1, true)
    assert.is_false(yes "test -e /opt/comfyui")
    assert.is_false(yes "test -e /opt/lmstudio")
    assert.is_false(yes "getent passwd comfyui >/dev/null")
    assert.is_false(yes "test -e /etc/systemd/system/comfyui.service")
  end)

  it("installs both: checkout at the pinned commit, venv, services on localhost", function()
    local out, code, err = phanes(BOTH)
    assert.equal(0, code, out .. err)
    -- the checkout, owned by comfyui, at v0.0.1
    assert.equal(sums.v1, trim(sh "runuser -u comfyui -- git -C /opt/comfyui rev-parse HEAD"))
    assert.equal("comfyui comfyui", trim(sh "stat -c '%U %G' /opt/comfyui /opt/comfyui/main.py /opt/comfyui/venv | sort -u"))
    assert.equal(sums.node, trim(sh "runuser -u comfyui -- git -C /opt/comfyui/custom_nodes/fixture-node rev-parse HEAD"))
    -- the venv holds the requirements, torch from the CPU index
    local py = "/opt/comfyui/venv/bin/python -c "
    assert.equal("1.0 1.0 cpu", trim(sh(py .. "'import comfy_fixture_dep as a, comfy_node_dep as b, torch; "
      .. "print(a.VERSION, b.VERSION, torch.VARIANT)'")))
    assert.matches("^%x+ /opt/comfyui/custom_nodes/fixture%-node/requirements.txt\n%x+ /opt/comfyui/requirements.txt\n$",
      sh "cat /opt/comfyui/venv/.phanes-requirements")
    -- the service: enabled, run by comfyui, on 127.0.0.1:8188 only
    assert.equal("active", trim(sh "systemctl is-active comfyui"))
    assert.equal("enabled", trim(sh "systemctl is-enabled comfyui"))
    assert.equal("comfyui", trim(sh "ps -o user= -p $(systemctl show -p MainPID --value comfyui)"))
    assert.equal("127.0.0.1:8188", trim(sh "ss -ltnH 'sport = :8188' | awk '{print $4}'"))
    local stats = json.decode(sh "curl -fsS http://127.0.0.1:8188/system_stats")
    assert.equal("cpu", stats.system.torch)
    assert.is_true(stats.system.cpu)
    assert.equal("/opt/comfyui/venv", stats.system.prefix)
    assert.same({ "example_node.py.example", "fixture-node" }, stats.custom_nodes)
    assert.equal("v0.0.1\n", sh "cat /var/lib/phanes/sentinels/comfyui.installed")
    -- LM Studio: the archive (top directory stripped), lms on PATH
    assert.equal("lms 0.0.1-fixture", trim(sh "lms version"))
    assert.equal("/opt/lmstudio/bin/lms", trim(sh "readlink /usr/local/bin/lms"))
    assert.equal("fixture\n", sh "cat /opt/lmstudio/README")
    -- packed 0777 (bin/lms on root's PATH), 0666 and setuid: root's, writable by root alone, no setuid
    local packed = sh "tar -tvzf /var/cache/phanes/lmstudio/LM-Studio-0.0.1-x64.tar.gz | awk '{print $1, $6}'"
    for _, e in ipairs { "drwxrwxrwx LM-Studio-0.0.1/bin/", "-rwxrwxrwx LM-Studio-0.0.1/bin/lms",
      "drwxrwxrwx LM-Studio-0.0.1/share/", "-rw-rw-rw- LM-Studio-0.0.1/share/open", "-rwsr-xr-x LM-Studio-0.0.1/share/suid" } do
      assert.matches(e .. "\n", packed, 1, true)
    end
    assert.equal("755 755 755 644 755",
      trim(sh "cd /opt/lmstudio && stat -c %a bin bin/lms share share/open share/suid | paste -sd' '"))
    assert.equal("", sh "find /opt/lmstudio \\( -perm /6022 ! -type l \\) -o ! -user root -o ! -group root")
    assert.equal('{"contextLength": 4096}\n', sh "cat /var/lib/lmstudio/.lmstudio/settings.json")
    assert.equal("640 lmstudio", trim(sh "stat -c '%a %U' /var/lib/lmstudio/.lmstudio/settings.json"))
    assert.equal("active", trim(sh "systemctl is-active lmstudio"))
    assert.equal("enabled", trim(sh "systemctl is-enabled lmstudio"))
    -- a oneshot unit (lms server start returns): the server is the process lms left in its cgroup
    assert.equal("lmstudio", trim(sh "ps -o user= -p $(cat /var/lib/lmstudio/.lms-fixture.pid)"))
    assert.equal("0", trim(sh "systemctl show -p MainPID --value lmstudio"))
    assert.equal("127.0.0.1:1235", trim(sh "ss -ltnH 'sport = :1235' | awk '{print $4}'"))
    assert.matches('"lms": "0.0.1-fixture"', sh "curl -fsS http://127.0.0.1:1235/v1/models", 1, true)
    assert.equal("0.0.1 " .. sums["0.0.1"] .. "\n", sh "cat /var/lib/phanes/sentinels/lmstudio.installed")
  end)

  local function unchanged(label)
    local pids = sh "systemctl show -p MainPID --value comfyui; cat /var/lib/lmstudio/.lms-fixture.pid"
    local seen = srv.requests()
    local r, code, text = on.report(BOTH)
    assert.equal(0, code, text)
    for _, m in ipairs(r.modules) do
      for _, ev in ipairs(m.resources) do
        assert.equal("ok", ev.status, m.name .. " " .. ev.resource .. " " .. tostring(ev.target))
      end
    end
    assert.equal(seen, srv.requests(), "the fixture server was asked something")
    assert.equal(pids, sh "systemctl show -p MainPID --value comfyui; cat /var/lib/lmstudio/.lms-fixture.pid")
    print(("\n  comfyui + lmstudio %s: %d processes, %.0f ms"):format(label, r.execs, r.duration * 1000))
    return r
  end

  it("keeps a hand-edited settings file, and a re-run changes nothing: no git, no pip, no restart", function()
    sh "echo '{\"contextLength\": 8192}' > /var/lib/lmstudio/.lmstudio/settings.json"
    local mtime = sh "stat -c %Y /opt/comfyui/venv/.phanes-requirements /opt/lmstudio/bin/lms"
    local r = unchanged "re-run"
    local lm = module_of(r, "lmstudio")
    local kept = false
    for _, ev in ipairs(lm.resources) do
      if ev.resource == "file.seed" then kept = ev.message == "kept (exists)" end
    end
    assert.is_true(kept)
    assert.equal('{"contextLength": 8192}\n', sh "cat /var/lib/lmstudio/.lmstudio/settings.json")
    assert.equal(mtime, sh "stat -c %Y /opt/comfyui/venv/.phanes-requirements /opt/lmstudio/bin/lms")
  end)

  it("without the state file: everything found in place, nothing reinstalled", function()
    sh "rm -f /var/lib/phanes/state.json"
    unchanged "without the state file"
  end)

  it("takes torch from the CUDA index when nvidia-smi is there", function()
    sh "printf '#!/bin/sh\\necho fixture\\n' > /usr/local/bin/nvidia-smi && chmod 755 /usr/local/bin/nvidia-smi"
    local out, code, err = phanes(COMFY .. " --set comfyui.venv=/opt/comfyui/venv-gpu")
    sh "rm -f /usr/local/bin/nvidia-smi"
    assert.equal(0, code, out .. err)
    local stats = json.decode(sh "curl -fsS http://127.0.0.1:8188/system_stats")
    assert.equal("cuda", stats.system.torch)
    assert.is_false(stats.system.cpu)
    assert.equal("/opt/comfyui/venv-gpu", stats.system.prefix)
    assert.matches("--port 8188\n", sh "cat /etc/systemd/system/comfyui.service", 1, true)
    -- back: the CPU venv is there already, no pip run
    local seen = srv.requests()
    out, code, err = phanes(COMFY)
    assert.equal(0, code, out .. err)
    assert.equal(seen, srv.requests())
    assert.equal("cpu", json.decode(sh "curl -fsS http://127.0.0.1:8188/system_stats").system.torch)
  end)

  it("a dirty checkout fails comfyui listing the file; lmstudio still runs with -k", function()
    sh "echo '# edited on the host' >> /opt/comfyui/main.py"
    sh "rm -f /var/lib/phanes/sentinels/lmstudio.installed"
    local out, code, err = phanes(BOTH .. " -k --set comfyui.ref=v0.0.2")
    assert.equal(1, code, out .. err)
    assert.matches("/opt/comfyui: has changes to tracked files, not discarded", out .. err, 1, true)
    assert.matches(" M main.py", out .. err, 1, true)
    assert.matches("# edited on the host\n$", sh "cat /opt/comfyui/main.py")
    assert.equal(sums.v1, trim(sh "runuser -u comfyui -- git -C /opt/comfyui rev-parse HEAD"))
    assert.equal("0.0.1 " .. sums["0.0.1"] .. "\n", sh "cat /var/lib/phanes/sentinels/lmstudio.installed")
    -- the edit undone by hand: the ref moves, the service restarts on the new checkout
    sh "runuser -u comfyui -- git -C /opt/comfyui checkout -- main.py"
    local pid = trim(sh "systemctl show -p MainPID --value comfyui")
    out, code, err = phanes(COMFY .. " --set comfyui.ref=v0.0.2")
    assert.equal(0, code, out .. err)
    assert.equal(sums.v2, trim(sh "runuser -u comfyui -- git -C /opt/comfyui rev-parse HEAD"))
    assert.is_not.equal(pid, trim(sh "systemctl show -p MainPID --value comfyui"))
    assert.equal("v0.0.2\n", sh "cat /var/lib/phanes/sentinels/comfyui.installed")
  end)

  it("a wrong sha256 fails lmstudio and installs nothing; comfyui still runs with -k", function()
    local before = sh "sha256sum /opt/lmstudio/bin/lms"
    local out, code, err = phanes(BOTH .. " -k --set comfyui.ref=v0.0.2 --set lmstudio.version=0.0.2 "
      .. "--set lmstudio.sha256=" .. ZERO)
    assert.equal(1, code, out .. err)
    assert.matches("sha256 mismatch for " .. base .. "/lmstudio/0.0.2/LM-Studio-0.0.2-x64.tar.gz: expected "
      .. ZERO .. ", got " .. sums["0.0.2"], out .. err, 1, true)
    assert.matches("\ncomfyui%s+noop%s", out) -- detected, nothing to change
    assert.is_false(yes "test -e /var/cache/phanes/lmstudio/LM-Studio-0.0.2-x64.tar.gz")
    assert.equal(before, sh "sha256sum /opt/lmstudio/bin/lms")
    assert.equal("0.0.1 " .. sums["0.0.1"] .. "\n", sh "cat /var/lib/phanes/sentinels/lmstudio.archive")
  end)

  it("refuses an LM Studio archive with ../ entries: nothing written outside; comfyui still runs with -k", function()
    local out, code, err = phanes(BOTH .. " -k --set comfyui.ref=v0.0.2 --set lmstudio.version=0.0.3 "
      .. "--set lmstudio.sha256=" .. sums["0.0.3"])
    assert.equal(1, code, out .. err)
    assert.matches("refused /var/cache/phanes/lmstudio/LM%-Studio%-0%.0%.3%-x64%.tar%.gz: entry [^\n]*phanes%-lms%-evil "
      .. "climbs out with %.%.", out .. err)
    assert.matches("\ncomfyui%s+noop%s", out) -- detected, nothing to change
    assert.is_false(yes "test -e /etc/phanes-lms-evil")
    assert.equal("0.0.1 " .. sums["0.0.1"] .. "\n", sh "cat /var/lib/phanes/sentinels/lmstudio.archive")
    assert.equal("lms 0.0.1-fixture", trim(sh "lms version"))
  end)

  it("an unreachable mirror fails comfyui naming it; lmstudio still runs with -k", function()
    local gw = base:match "^http://([%d.]+):"
    local out, code, err = phanes(BOTH .. " -k --set comfyui.ref=v0.0.2 --set comfyui.venv=/opt/comfyui/venv-x "
      .. "--set comfyui.pypi_index=http://" .. gw .. ":9/simple --set comfyui.torch_index=http://" .. gw .. ":9/torch")
    assert.equal(1, code, out .. err)
    assert.matches("python.venv /opt/comfyui/venv-x: pip install torch failed (exit 1)", out .. err, 1, true)
    assert.matches("with the index http://" .. gw .. ":9/simple, http://" .. gw .. ":9/torch: is it reachable",
      out .. err, 1, true)
    -- lmstudio ran: ok, or changed by the restart the failed run before owed it (a resumed module)
    local st = out:match "\nlmstudio%s+(%a+)%s"
    assert.is_true(st == "ok" or st == "changed", out)
    assert.equal("active", trim(sh "systemctl is-active lmstudio"))
    assert.is_false(yes "test -e /opt/comfyui/venv-x/.phanes-requirements")
    assert.matches("/opt/comfyui/venv/bin/python", sh "cat /etc/systemd/system/comfyui.service", 1, true)
    -- the installed one still answers
    assert.equal("fixture", json.decode(sh "curl -fsS http://127.0.0.1:8188/system_stats").system.comfyui_version)
  end)
end)
