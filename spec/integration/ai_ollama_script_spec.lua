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
local runcli = require "spec.support.runcli"
local json = require "phanes.json"
local F = require "phanes.file"

local function sh(cmd, allow_fail)
  local ok, out, code = th.exec(1, cmd)
  if not ok and not allow_fail then error(("host: %s\nexit %s:\n%s"):format(cmd, tostring(code), out), 2) end
  return out, code
end

local function trim(s) return (s:gsub("%s+$", "")) end
local function yes(test) return trim(sh(test .. " && echo yes || echo no")) == "yes" end

local function phanes(args)
  local out = sh("cd /root && phanes " .. args .. " 2>/root/err; echo \"exit=$?\"")
  local body, rc = out:match "^(.-)exit=(%d+)\n?$"
  return body, tonumber(rc), sh "cat /root/err"
end

local APPLY = "apply ollama --only ollama --config config.yaml"

local function local_sh(cmd)
  local ok, out, code = th.run(cmd)
  if not ok then error(("local: %s\nexit %s:\n%s"):format(cmd, tostring(code), out), 2) end
  return out
end

local q = th.quote
local ZERO = string.rep("0", 63) .. "1"

describe("ollama's install script on a test host", function()
  local available, why = th.available()
  if not available then
    it("needs test hosts", function() pending(why) end)
    return
  end

  local dir, serve_pid, base, script_sum = nil, nil, nil, nil

  local function serve()
    local gw = th.env().PROXY:match "^http://([%d.]+):"
    for _ = 1, 5 do
      local port = math.random(30000, 39999)
      local pid = trim(local_sh("setsid /usr/bin/python3 -m http.server " .. port .. " --bind " .. gw
        .. " --directory " .. q(dir .. "/www") .. " >" .. q(dir .. "/http.log") .. " 2>&1 </dev/null & echo $!"))
      os.execute "sleep 1"
      if th.run("kill -0 " .. pid) then
        serve_pid, base = pid, "http://" .. gw .. ":" .. port
        return
      end
    end
    error("no fixture HTTP server could start:\n" .. local_sh("cat " .. q(dir .. "/http.log")))
  end

  local function requests() return #(F.read(dir .. "/http.log") or ""):gsub("[^\n]", "") end

  setup(function()
    dir = require("lfs").currentdir() .. "/build/spec_tmp/ai_ollama_script"
    local_sh("rm -rf " .. q(dir) .. " && mkdir -p " .. q(dir .. "/root/bin") .. " " .. q(dir .. "/root/lib/ollama")
      .. " " .. q(dir .. "/www/v0.0.1"))
    local_sh("cc -static -O2 -Wall -Wextra -Werror -o " .. q(dir .. "/root/bin/ollama") .. " spec/fixtures/ollama/ollama.c")
    local_sh("cd " .. q(dir .. "/root") .. " && tar -czf " .. q(dir .. "/www/v0.0.1/ollama-linux-amd64.tgz") .. " bin lib")
    th.down(1)
    th.up(1)
    serve()
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
    if serve_pid then os.execute("kill " .. serve_pid .. " 2>/dev/null") end
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
    local seen = requests()
    local out, code, err = phanes(APPLY .. " --json")
    assert.equal(0, code, out .. err)
    local r = assert(json.decode(out))
    for _, m in ipairs(r.modules) do
      for _, ev in ipairs(m.resources) do
        assert.equal("ok", ev.status, m.name .. " " .. ev.resource .. " " .. tostring(ev.target))
      end
    end
    assert.equal(seen, requests())
    assert.equal(pid, trim(sh "systemctl show -p MainPID --value ollama"))
  end)
end)
