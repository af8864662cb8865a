-- The core end to end on a disposable Debian 12 test host: the fixture
-- profile spec/fixtures/core (every resource kind once) is applied with
-- the real binary inside the host, and the host is then checked on its own
-- terms (dpkg -s, stat, getent, systemctl, sudo -l, file contents), not
-- through phanes' report. Then: a re-run changes nothing and spawns a few
-- processes only; drift is shown by --dry-run and left alone, and repaired
-- by apply; facts, list and status read the host.
--
-- Run as root (about 20 s with a warm apt cache):
--   PHANES_TEST_ID=phc build/phanes lua /usr/bin/busted spec/integration/core_spec.lua
-- (PHANES_TEST_ID and the other PHANES_TEST_* variables of spec/hosts/testhost
-- keep concurrent users of the harness apart; PHANES_TESTHOST picks another script).
local th = require "spec.support.testhost"
local runcli = require "spec.support.runcli"
local json = require "phanes.json"

local TOKEN = "tok-Zq81-secret"
local CONFIG = "core_files:\n  token: \"" .. TOKEN .. "\"\n"

local on = require "spec.support.onhost"
local sh, trim, yes, phanes = on.sh, on.trim, on.yes, on.phanes

local APPLY = "apply core/profiles/core.lua --path core --config config.yaml"

local function report(args) return on.report(APPLY .. " " .. (args or "")) end

local function find(r, module, resource, target)
  for _, m in ipairs(r.modules) do
    if m.name == module then
      if not resource then return m end
      for _, ev in ipairs(m.resources) do
        if ev.resource == resource and ev.target == target then return ev end
      end
    end
  end
end

describe("core on a test host", function()
  if not on.use() then return end -- a fresh host 1
  local seen = {} -- every output, to look for the secret
  local function keep(...) for _, s in ipairs { ... } do seen[#seen + 1] = s end end

  setup(function()
    sh "rm -rf /root/core /root/config.yaml"
    assert(th.cp(1, runcli.binary(), "/usr/local/bin/phanes"))
    assert(th.cp(1, "spec/fixtures/core", "/root/core"))
    on.put("/root/config.yaml", CONFIG)
  end)

  it("plans everything in a dry run on a fresh host and touches nothing", function()
    local out, code, err = phanes(APPLY .. " --dry-run")
    keep(out, err)
    assert.equal(0, code, out .. err)
    assert.matches("would change pkg.installed tree", out, 1, true)
    assert.matches("would change service.running core-sleep", out, 1, true)
    assert.matches("+managed by phanes", out, 1, true)
    assert.matches("dry run done, nothing changed", out, 1, true)
    -- the host, unchanged
    assert.matches("not installed", sh("dpkg -s tree 2>&1", true))
    assert.equal("", trim(sh("getent passwd corey", true)))
    assert.equal("", trim(sh("getent group coregrp", true)))
    assert.is_false(yes "test -e /srv/core")
    assert.is_false(yes "test -e /etc/systemd/system/core-sleep.service")
    assert.is_false(yes "test -e /var/lib/core")
    assert.is_false(yes "test -e /var/lib/phanes/state.json")
  end)

  it("applies: the host is as the modules say", function()
    local out, code, err = phanes(APPLY)
    keep(out, err)
    assert.equal(0, code, out .. err)
    -- pkg
    assert.matches("Status: install ok installed", sh "dpkg -s tree")
    -- files
    assert.equal("750 root root directory", trim(sh "stat -c '%a %U %G %F' /srv/core"))
    assert.equal("managed by phanes\n", sh "cat /srv/core/motd")
    assert.equal("644 root", trim(sh "stat -c '%a %U' /srv/core/motd"))
    assert.equal("token=" .. TOKEN .. "\n", sh "cat /srv/core/token")
    assert.equal("600", trim(sh "stat -c '%a' /srv/core/token"))
    assert.equal("# app.conf for th1\ntoken = " .. TOKEN .. "\nitem = one\nitem = two\n", sh "cat /srv/core/app.conf")
    assert.equal("640", trim(sh "stat -c '%a' /srv/core/app.conf"))
    assert.equal("net.ipv4.ip_forward = 1\n", sh "cat /etc/sysctl.d/90-core.conf")
    assert.equal("/usr/bin/tree", trim(sh "readlink /usr/local/bin/core-tree"))
    assert.is_false(yes "test -e /srv/core/obsolete")
    -- nothing left behind by atomic writes
    assert.equal("", trim(sh "ls -A /srv/core /etc/sudoers.d /etc/sysctl.d | grep -i 'phanes\\|tmp' || true"))
    -- service
    assert.equal("active", trim(sh "systemctl is-active core-sleep"))
    assert.equal("enabled", trim(sh "systemctl is-enabled core-sleep"))
    -- users
    assert.matches("^corey:x:%d+:%d+::/home/corey:/bin/bash", sh "getent passwd corey")
    assert.matches("^coregrp:x:%d+:", sh "getent group coregrp")
    assert.matches("coregrp", sh "id -nG corey")
    assert.equal("700 corey", trim(sh "stat -c '%a %U' /home/corey/.ssh"))
    assert.equal("600 corey", trim(sh "stat -c '%a %U' /home/corey/.ssh/authorized_keys"))
    assert.matches("core@spec", sh "cat /home/corey/.ssh/authorized_keys")
    assert.equal("440 root", trim(sh "stat -c '%a %U' /etc/sudoers.d/corey"))
    assert.matches("(root) NOPASSWD: /usr/bin/tree", sh "sudo -l -U corey", 1, true)
    -- commands
    assert.is_true(yes "test -s /var/lib/core/stamp")
    assert.equal("ran\n", sh "cat /var/lib/core/unless.log")
    -- state
    local state = assert(json.decode(sh "cat /var/lib/phanes/state.json"))
    assert.equal(1, state.format)
    for _, m in ipairs { "core_cmd", "core_service", "core_users", "core_files", "core_pkg" } do
      assert.equal("installed", state.modules[m].status, m)
      assert.equal("1", state.modules[m].version)
      assert.matches("^%x+$", state.modules[m].config_hash)
    end
  end)

  it("changes nothing on a re-run, with two processes", function()
    local stamp = sh "stat -c %Y /var/lib/core/stamp"
    local r, code, text = report()
    keep(text)
    assert.equal(0, code, text)
    assert.same({ ok = 5 }, r.counts)
    for _, m in ipairs(r.modules) do
      for _, ev in ipairs(m.resources) do assert.equal("ok", ev.status, m.name .. " " .. ev.resource) end
    end
    -- one systemctl show, the unless guard: nothing else (packages come
    -- from dpkg's status file)
    assert.equal(2, r.execs)
    assert.equal(stamp, sh "stat -c %Y /var/lib/core/stamp")
    assert.equal("ran\n", sh "cat /var/lib/core/unless.log")
  end)

  it("shows drift in a dry run without touching it, and apply repairs it", function()
    sh "echo drifted > /srv/core/motd; chmod 0666 /srv/core/app.conf; systemctl stop core-sleep; rm /usr/local/bin/core-tree"
    local r, code, text = report "--dry-run"
    keep(text)
    assert.equal(0, code, text)
    local motd = find(r, "core_files", "file.content", "/srv/core/motd")
    assert.equal("would change", motd.status)
    assert.matches("-drifted\n+managed by phanes", motd.diff, 1, true)
    assert.matches("0666 -> 0640", find(r, "core_files", "file.template", "/srv/core/app.conf").message, 1, true)
    local svc = find(r, "core_service", "service.running", "core-sleep")
    assert.equal("would change", svc.status)
    assert.matches("start", svc.message)
    assert.equal("would change", find(r, "core_files", "file.symlink", "/usr/local/bin/core-tree").status)
    assert.equal("ok", find(r, "core_users").status)
    assert.equal("ok", find(r, "core_pkg").status)
    -- still drifted
    assert.equal("drifted\n", sh "cat /srv/core/motd")
    assert.equal("666", trim(sh "stat -c %a /srv/core/app.conf"))
    assert.equal("inactive", trim(sh("systemctl is-active core-sleep", true)))
    assert.is_false(yes "test -L /usr/local/bin/core-tree")
    -- the text form shows the diff and the planned start too
    local out = phanes(APPLY .. " --dry-run")
    keep(out)
    assert.matches("-drifted", out, 1, true)
    assert.matches("would change service.running core-sleep  (start", out, 1, true)

    local out2, code2, err2 = phanes(APPLY)
    keep(out2, err2)
    assert.equal(0, code2, out2 .. err2)
    assert.equal("managed by phanes\n", sh "cat /srv/core/motd")
    assert.equal("640", trim(sh "stat -c %a /srv/core/app.conf"))
    assert.equal("active", trim(sh "systemctl is-active core-sleep"))
    assert.equal("/usr/bin/tree", trim(sh "readlink /usr/local/bin/core-tree"))
    local again = report()
    assert.same({ ok = 5 }, again.counts)
  end)

  it("reads the host: facts, list, status", function()
    local out, code = phanes "facts --json"
    assert.equal(0, code, out)
    local f = assert(json.decode(out))
    assert.equal("debian", f.os.id)
    assert.equal("12", f.os.version_id)
    assert.equal("bookworm", f.os.codename)
    assert.equal("systemd", f.init)
    assert.equal("x86_64", f.arch)
    assert.equal("th1", f.hostname)
    assert.truthy(f.memory_mb > 0)
    assert.truthy(f.cpus >= 1)
    out, code = phanes "facts"
    assert.equal(0, code)
    assert.matches("os.pretty_name%s+Debian GNU/Linux 12", out)

    out, code = phanes "list --path core"
    assert.equal(0, code, out)
    assert.matches("core_pkg%s+installs tree%s+core/modules/core_pkg.lua", out)
    assert.matches("baseline", out) -- the embedded ones too
    assert.matches("embedded", out)

    out, code = phanes "status"
    assert.equal(0, code, out)
    assert.matches("/var/lib/phanes/state.json", out, 1, true)
    for _, m in ipairs { "core_cmd", "core_service", "core_users", "core_files", "core_pkg" } do
      assert.matches(m .. "%s+installed%s+%d%d%d%d%-%d%d%-%d%dT", out)
    end
    out, code = phanes "status core/profiles/core.lua --json --path core --config config.yaml"
    assert.equal(0, code, out)
    local st = assert(json.decode(out))
    assert.equal("th1", st.hostname)
    assert.is_false(st.modules.core_files.config_changed)
    -- a config change shows up as such
    out = phanes "status core/profiles/core.lua --path core --config config.yaml --set core_files.motd=hi"
    assert.matches("core_files%s.-changed", out)
  end)

  it("stops at a bad config with exit 2 and touches nothing on the host", function()
    local before = sh "sha256sum /var/lib/phanes/state.json /srv/core/motd; stat -c %Y /var/lib/core/stamp"
    sh "printf 'core_files:\\n  token: 12\\n  motd_: x\\n' > /root/bad.yaml; printf 'core_files:\\n  motd: [x\\n' > /root/broken.yaml"
    local out, code, err = phanes "apply core/profiles/core.lua --path core --config bad.yaml"
    assert.equal(2, code, out .. err)
    assert.matches("bad.yaml:2:3: core_files.token: expected a string, got an integer", err, 1, true)
    assert.matches("bad.yaml:3:3: unknown key 'core_files.motd_' (did you mean 'core_files.motd'?)", err, 1, true)
    assert.matches("then try: phanes check core/profiles/core.lua --path core --config bad.yaml", err, 1, true)
    out, code, err = phanes "apply core/profiles/core.lua --path core --config broken.yaml"
    assert.equal(2, code, out .. err)
    assert.matches("^phanes: broken%.yaml:%d+:%d+: ", err)
    out, code, err = phanes "apply core/profiles/core.lua --path core --config config.yaml --only core_fils"
    assert.equal(2, code, out .. err)
    assert.matches("core_files", err, 1, true)
    assert.equal(before, sh "sha256sum /var/lib/phanes/state.json /srv/core/motd; stat -c %Y /var/lib/core/stamp")
  end)

  it("never shows the secret", function()
    keep((sh "cat /var/lib/phanes/state.json"), (sh "journalctl --no-pager -q 2>/dev/null | tail -n 300"))
    assert.truthy(#seen > 8)
    for i, text in ipairs(seen) do
      assert.is_nil(text:find(TOKEN, 1, true), "secret in output " .. i .. ":\n" .. text)
    end
  end)
end)
