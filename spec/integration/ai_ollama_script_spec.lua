-- The ollama module's install-script path (method: script) on a disposable
-- Debian test host: the stand-in install script (spec/fixtures/ollama/
-- install.sh, its archive URL pointed at the fixture server) and the
-- stand-in ollama (spec/fixtures/ollama/ollama.c, packed like the release
-- archive) are served over HTTP from the harness bridge address. The host
-- is looked at: the script ran once, the service runs phanes' unit on
-- localhost only; a re-run asks the server nothing; a wrong script_sha256
-- runs nothing.
--
--   PHANES_TEST_ID=c6 spec/run build/phanes integration spec/integration/ai_ollama_script_spec.lua
local th = require "spec.support.testhost"
local on = require "spec.support.onhost"
local fx = require "spec.support.fixtures"
local runcli = require "spec.support.runcli"
local F = require "phanes.file"

local sh, trim, yes, phanes, local_sh = on.sh, on.trim, on.yes, on.phanes, on.local_sh

local APPLY = "apply ollama --only ollama --config config.yaml"

local q = th.quote
local ZERO = string.rep("0", 63) .. "1"

describe("ollama's install script on a test host", function()
  local available, why = th.available()
  if not available then
    it("needs test hosts", function() pending(why) end)
    return
  end

  local dir, srv, base, script_sum = nil, nil, nil, nil

  setup(function()
    dir = require("lfs").currentdir() .. "/build/spec_tmp/ai_ollama_script"
    local_sh("rm -rf " .. q(dir) .. " && mkdir -p " .. q(dir .. "/www/v0.0.1"))
    fx.ollama(dir .. "/root")
    local_sh("cd " .. q(dir .. "/root") .. " && tar -czf " .. q(dir .. "/www/v0.0.1/ollama-linux-amd64.tgz") .. " bin lib")
    th.down(1)
    th.up(1)
    srv = fx.serve(dir)
    base = srv.base
    local text = F.read "spec/fixtures/ollama/install.sh":gsub("@BASE@", base)
    runcli.write(dir .. "/www/install.sh", text)
    script_sum = F.sha256(text)
    local cfg = dir .. "/config.yaml"
    runcli.write(cfg, table.concat({
      "ollama:",
      '  version: "0.0.1"',
      "  method: script",
      "  script_url: " .. base .. "/install.sh",
      "  script_sha256: " .. script_sum,
      "",
    }, "\n"))
    assert(th.cp(1, runcli.binary(), "/usr/local/bin/phanes"))
    assert(th.cp(1, cfg, "/root/config.yaml"))
  end)
  teardown(function()
    if srv then srv.stop() end
    th.down()
    if dir then os.execute("rm -rf " .. q(dir)) end
  end)

  it("a wrong script_sha256 runs nothing", function()
    local out, code, err = phanes(APPLY .. " --set ollama.script_sha256=" .. ZERO)
    assert.equal(1, code, out .. err)
    assert.matches("sha256 mismatch for " .. base .. "/install.sh: expected " .. ZERO .. ", got " .. script_sum,
      out .. err, 1, true)
    assert.is_false(yes "test -e /usr/local/bin/ollama")
    assert.is_false(yes "ls /var/cache/phanes/ollama/install-*.sh >/dev/null 2>&1")
  end)

  it("runs the checked script once; the service runs phanes' unit on localhost", function()
    local out, code, err = phanes(APPLY)
    assert.equal(0, code, out .. err)
    assert.matches("changed%s+cmd.run", out)
    assert.equal("0.0.1\n", sh "cat /usr/local/lib/ollama/.installed-by-script")
    assert.matches("# Managed by phanes (module ollama)", sh "cat /etc/systemd/system/ollama.service", 1, true)
    assert.equal("active", trim(sh "systemctl is-active ollama"))
    assert.equal("enabled", trim(sh "systemctl is-enabled ollama"))
    assert.equal("ollama", trim(sh "ps -o user= -p $(systemctl show -p MainPID --value ollama)"))
    assert.equal('{"version":"0.0.0-fixture"}', sh "curl -fsS http://127.0.0.1:11434/api/version")
    assert.equal("127.0.0.1:11434", trim(sh "ss -ltnH 'sport = :11434' | awk '{print $4}'"))
    assert.equal("0.0.1 amd64 script " .. script_sum .. "\n", sh "cat /var/lib/phanes/sentinels/ollama.script")
    assert.equal("0.0.1 amd64 script " .. script_sum .. "\n", sh "cat /var/lib/phanes/sentinels/ollama.installed")
  end)

  it("a re-run changes nothing and asks the server nothing", function()
    local pid = trim(sh "systemctl show -p MainPID --value ollama")
    local seen = srv.requests()
    local r, code, text = on.report(APPLY)
    assert.equal(0, code, text)
    for _, m in ipairs(r.modules) do
      for _, ev in ipairs(m.resources) do
        assert.equal("ok", ev.status, m.name .. " " .. ev.resource .. " " .. tostring(ev.target))
      end
    end
    assert.equal(seen, srv.requests())
    assert.equal(pid, trim(sh "systemctl show -p MainPID --value ollama"))
  end)
end)
