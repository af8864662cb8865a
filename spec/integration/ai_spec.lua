-- The ollama module end to end on a disposable Debian test host, against
-- local fixtures: a stand-in ollama (spec/fixtures/ollama/ollama.c, built
-- static here) packed like the release archive (bin/ollama, lib/ollama/),
-- served over HTTP from the harness bridge address; ollama.archive_url
-- points there, with the fixture's sha256. The host is then looked at:
-- the binary, the user, the unit and its drop-in, the API answering on
-- localhost only, the models pulled. A re-run changes nothing; a wrong
-- sha256 and malicious archives fail the module and write nothing.
-- Then the fixture module spec/fixtures/ai/modules/appx.lua: git.checkout
-- of a repository served over HTTP (dumb protocol) as its own user, and
-- file.seed keeping a hand edit.
--
--   PHANES_TEST_ID=fp spec/run build/phanes integration spec/integration/ai_spec.lua
local th = require "spec.support.testhost"
local on = require "spec.support.onhost"
local fx = require "spec.support.fixtures"
local runcli = require "spec.support.runcli"
local F = require "phanes.file"

local sh, trim, yes, phanes, local_sh = on.sh, on.trim, on.yes, on.phanes, on.local_sh

local APPLY = "apply ollama --only ollama --config config.yaml"

local q = th.quote
local ZERO = string.rep("0", 63) .. "1"

describe("ollama on a test host", function()
  local available, why = th.available()
  if not available then
    it("needs test hosts", function() pending(why) end)
    return
  end

  local dir, srv, base, sums = nil, nil, nil, {}

  -- the fixture archives in dir/www/v<version>/ollama-linux-amd64.tgz
  local function fixtures()
    dir = require("lfs").currentdir() .. "/build/spec_tmp/ai_fixture"
    local_sh("rm -rf " .. q(dir))
    fx.ollama(dir .. "/root")
    local function pack(version, script)
      local www = dir .. "/www/v" .. version
      local_sh("mkdir -p " .. q(www) .. " && cd " .. q(dir .. "/root") .. " && " .. script:gsub("OUT", q(www .. "/ollama-linux-amd64.tgz")))
      sums[version] = F.sha256_file(www .. "/ollama-linux-amd64.tgz")
    end
    pack("0.0.1", "tar -czf OUT bin lib")
    pack("0.0.3", "tar -czf OUT bin lib") -- served, but the config's sha256 is wrong
    pack("0.0.4", "echo x > ../evil && tar -czPf OUT bin --transform 's,^\\.\\./evil,../../etc/phanes-evil,' ../evil")
    pack("0.0.5", "ln -sfn /etc ../evil-link && mkdir -p ../e && echo x > ../e/phanes-evil2 && "
      .. "tar -C .. -czf OUT --transform 's,^evil-link,share/evil,;s,^e/,share/evil/,' evil-link e/phanes-evil2")
    -- a repository: v1, then main one commit further, served as upstream.git
    local G = fx.G .. " -c init.defaultBranch=main"
    local work = q(dir .. "/work")
    local_sh("mkdir " .. work .. " && cd " .. work .. " && " .. G .. " init -q . && echo one > f && " .. G
      .. " add f && " .. G .. " commit -qm one && " .. G .. " tag v1 && echo two > f && " .. G .. " commit -qam two")
    fx.publish(dir .. "/work", dir .. "/www/upstream.git")
    sums.v1 = trim(local_sh("git -C " .. work .. " rev-parse v1"))
    sums.main = trim(local_sh("git -C " .. work .. " rev-parse main"))
  end

  setup(function()
    fixtures()
    th.down(1)
    th.up(1)
    srv = fx.serve(dir) -- on the bridge th.up made
    base = srv.base
    local cfg = dir .. "/config.yaml"
    runcli.write(cfg, table.concat({
      "ollama:",
      '  version: "0.0.1"',
      "  archive_url: " .. base .. "/v{version}/ollama-linux-{arch}.tgz",
      "  sha256: " .. sums["0.0.1"],
      "  keep_alive: 10m",
      "  env:",
      '    OLLAMA_NUM_PARALLEL: "2"',
      "  models: [tiny:1b, other]",
      "",
    }, "\n"))
    assert(th.cp(1, runcli.binary(), "/usr/local/bin/phanes"))
    assert(th.cp(1, cfg, "/root/config.yaml"))
    assert(th.cp(1, "spec/fixtures/ai", "/root/ai"))
  end)
  teardown(function()
    if srv then srv.stop() end
    th.down()
    if dir then os.execute("rm -rf " .. q(dir)) end
  end)

  it("plans in a dry run, showing the unit, and touches nothing", function()
    local out, code, err = phanes(APPLY .. " --dry-run")
    assert.equal(0, code, out .. err)
    assert.matches("would change fetch.file /var/cache/phanes/ollama/ollama-linux-amd64-0.0.1.tgz", out, 1, true)
    assert.matches("+ExecStart=/usr/local/bin/ollama serve", out, 1, true)
    assert.matches('+Environment="OLLAMA_HOST=127.0.0.1:11434"', out, 1, true)
    assert.is_false(yes "test -e /usr/local/bin/ollama")
    assert.is_false(yes "test -e /etc/systemd/system/ollama.service")
    assert.is_false(yes "getent passwd ollama >/dev/null")
    assert.is_false(yes "test -e /var/cache/phanes/ollama")
  end)

  it("installs: the host runs the fixture as the ollama service", function()
    local out, code, err = phanes(APPLY)
    assert.equal(0, code, out .. err)
    -- the archive, into /usr/local
    assert.equal("755", trim(sh "stat -c %a /usr/local/bin/ollama"))
    assert.equal("fixture\n", sh "cat /usr/local/lib/ollama/libfixture.so")
    assert.equal("0.0.1 amd64 " .. sums["0.0.1"] .. "\n", sh "cat /var/lib/phanes/sentinels/ollama.archive")
    -- the user
    local uid, shell = sh("getent passwd ollama"):match "^ollama:x:(%d+):%d+:[^:]*:/usr/share/ollama:([^\n]*)"
    assert.truthy(uid, sh "getent passwd ollama")
    assert.is_true(tonumber(uid) < 1000)
    assert.equal("/bin/false", shell)
    -- the unit and its drop-in
    assert.matches("ExecStart=/usr/local/bin/ollama serve\nUser=ollama\n", sh "cat /etc/systemd/system/ollama.service", 1, true)
    assert.equal("# Managed by phanes (module ollama): edit the config, not this file.\n[Service]\n"
      .. 'Environment="OLLAMA_HOST=127.0.0.1:11434"\n'
      .. 'Environment="OLLAMA_MODELS=/usr/share/ollama/.ollama/models"\n'
      .. 'Environment="OLLAMA_KEEP_ALIVE=10m"\n'
      .. 'Environment="OLLAMA_NUM_PARALLEL=2"\n',
      sh "cat /etc/systemd/system/ollama.service.d/phanes.conf")
    assert.equal("active", trim(sh "systemctl is-active ollama"))
    assert.equal("enabled", trim(sh "systemctl is-enabled ollama"))
    assert.matches("OLLAMA_NUM_PARALLEL=2", sh "systemctl show -p Environment ollama", 1, true)
    -- the API, on localhost only, run by the ollama user
    assert.equal('{"version":"0.0.0-fixture"}', sh "curl -fsS http://127.0.0.1:11434/api/version")
    assert.equal("127.0.0.1:11434", trim(sh "ss -ltnH 'sport = :11434' | awk '{print $4}'"))
    assert.equal("ollama", trim(sh "ps -o user= -p $(systemctl show -p MainPID --value ollama)"))
    -- the models, pulled through the service
    assert.equal("other\ntiny:1b\n", sh "ls /usr/share/ollama/.ollama/models")
    assert.equal("ollama ollama", trim(sh "stat -c '%U %G' /usr/share/ollama/.ollama/models/tiny:1b"))
    assert.equal("0.0.1 amd64 " .. sums["0.0.1"] .. "\n", sh "cat /var/lib/phanes/sentinels/ollama.installed")
  end)

  it("changes nothing on a re-run: no download, no restart, no pull", function()
    local pid = trim(sh "systemctl show -p MainPID --value ollama")
    local mtime = sh "stat -c %Y /usr/share/ollama/.ollama/models/tiny:1b /usr/local/bin/ollama"
    local r, code, text = on.report(APPLY)
    assert.equal(0, code, text)
    for _, m in ipairs(r.modules) do
      for _, ev in ipairs(m.resources) do
        assert.equal("ok", ev.status, m.name .. " " .. ev.resource .. " " .. tostring(ev.target))
        assert.is_not.equal("cmd.run", ev.resource)
        assert.is_not.equal("fetch.file", ev.resource)
      end
    end
    -- systemctl show, curl, ollama list
    assert.is_true(r.execs <= 4, "execs: " .. tostring(r.execs))
    print(("\n  ollama re-run on the host: %d processes, %.0f ms"):format(r.execs, r.duration * 1000))
    assert.equal(pid, trim(sh "systemctl show -p MainPID --value ollama"))
    assert.equal(mtime, sh "stat -c %Y /usr/share/ollama/.ollama/models/tiny:1b /usr/local/bin/ollama")
  end)

  it("a wrong sha256 fails the module and installs nothing", function()
    local before = sh "sha256sum /usr/local/bin/ollama"
    local out, code, err = phanes(APPLY .. " --set ollama.version=0.0.3 --set ollama.sha256=" .. ZERO)
    assert.equal(1, code, out .. err)
    assert.matches("sha256 mismatch for " .. base .. "/v0.0.3/ollama-linux-amd64.tgz: expected " .. ZERO
      .. ", got " .. sums["0.0.3"], out .. err, 1, true)
    assert.is_false(yes "test -e /var/cache/phanes/ollama/ollama-linux-amd64-0.0.3.tgz")
    assert.is_false(yes "test -e /var/cache/phanes/ollama/ollama-linux-amd64-0.0.3.tgz.part")
    assert.equal(before, sh "sha256sum /usr/local/bin/ollama")
    assert.equal("0.0.1 amd64 " .. sums["0.0.1"] .. "\n", sh "cat /var/lib/phanes/sentinels/ollama.archive")
    assert.equal("0.0.1 amd64 " .. sums["0.0.1"] .. "\n", sh "cat /var/lib/phanes/sentinels/ollama.installed")
  end)

  it("an unreachable mirror fails the module naming the URL", function()
    local gw = base:match "^http://([%d.]+):"
    local url = "http://" .. gw .. ":9/v0.0.6/ollama-linux-amd64.tgz"
    local out, code, err = phanes(APPLY .. " --set ollama.version=0.0.6 --set ollama.sha256=" .. ZERO
      .. " --set ollama.archive_url=http://" .. gw .. ":9/v{version}/ollama-linux-{arch}.tgz")
    assert.equal(1, code, out .. err)
    assert.matches("download of " .. url .. " failed (exit 7); nothing was installed at", out .. err, 1, true)
    assert.is_false(yes "test -e /var/cache/phanes/ollama/ollama-linux-amd64-0.0.6.tgz")
    assert.is_false(yes "test -e /var/cache/phanes/ollama/ollama-linux-amd64-0.0.6.tgz.part")
  end)

  it("refuses an archive with ../ entries: nothing written outside /usr/local", function()
    local before = sh "sha256sum /usr/local/bin/ollama"
    local out, code, err = phanes(APPLY .. " --set ollama.version=0.0.4 --set ollama.sha256=" .. sums["0.0.4"])
    assert.equal(1, code, out .. err)
    assert.matches("refused /var/cache/phanes/ollama/ollama-linux-amd64-0.0.4.tgz: entry ../../etc/phanes-evil climbs out with ..",
      out .. err, 1, true)
    assert.is_false(yes "test -e /etc/phanes-evil")
    assert.equal(before, sh "sha256sum /usr/local/bin/ollama")
    assert.equal("0.0.1 amd64 " .. sums["0.0.1"] .. "\n", sh "cat /var/lib/phanes/sentinels/ollama.archive")
  end)

  it("refuses a symlink to /etc with a file through it", function()
    local out, code, err = phanes(APPLY .. " --set ollama.version=0.0.5 --set ollama.sha256=" .. sums["0.0.5"])
    assert.equal(1, code, out .. err)
    assert.matches("symlink share/evil points to the absolute path /etc", out .. err, 1, true)
    assert.is_false(yes "test -e /etc/phanes-evil2")
    assert.is_false(yes "test -L /usr/local/share/evil")
    -- and the service still answers
    assert.equal('{"version":"0.0.0-fixture"}', sh "curl -fsS http://127.0.0.1:11434/api/version")
  end)

  local function appx(ref)
    return phanes("apply /root/ai/modules/appx.lua --path /root/ai --set appx.repo=" .. base
      .. "/upstream.git --set appx.ref=" .. ref)
  end

  it("checks a repository out at a tag as its user and seeds its config", function()
    local out, code, err = appx "v1"
    assert.equal(0, code, out .. err)
    assert.equal(sums.v1, trim(sh "runuser -u appx -- git -C /opt/appx/src rev-parse HEAD"))
    assert.equal("one\n", sh "cat /opt/appx/src/f")
    assert.equal("appx appx", trim(sh "stat -c '%U %G' /opt/appx/src/.git/HEAD"))
    assert.equal("port: 8000\n", sh "cat /opt/appx/config.yaml")
    assert.equal("640 appx", trim(sh "stat -c '%a %U' /opt/appx/config.yaml"))
  end)

  it("keeps a hand-edited config, and moves the checkout only when the ref changes", function()
    sh "echo 'port: 9000 # mine' > /opt/appx/config.yaml"
    local out, code, err = appx "v1"
    assert.equal(0, code, out .. err)
    assert.equal("port: 9000 # mine\n", sh "cat /opt/appx/config.yaml")
    assert.matches("\nappx%s+ok%s+0%s", out)
    out, code, err = appx "main"
    assert.equal(0, code, out .. err)
    assert.equal(sums.main, trim(sh "runuser -u appx -- git -C /opt/appx/src rev-parse HEAD"))
    assert.equal("port: 9000 # mine\n", sh "cat /opt/appx/config.yaml")
  end)

  it("never discards a change in the checkout: fails listing the file", function()
    sh "echo 'edited on the host' > /opt/appx/src/f"
    local out, code, err = appx "v1"
    assert.equal(1, code, out .. err)
    assert.matches("has changes to tracked files, not discarded", out .. err, 1, true)
    assert.matches(" M f", out .. err, 1, true)
    assert.equal("edited on the host\n", sh "cat /opt/appx/src/f")
    assert.equal(sums.main, trim(sh "runuser -u appx -- git -C /opt/appx/src rev-parse HEAD"))
  end)
end)
