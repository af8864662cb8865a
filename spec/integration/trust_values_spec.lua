-- Config values that would inject a directive into a config file, or break
-- a run halfway, on a disposable Debian 12 test host: `phanes apply` (not
-- just check) with each planted value, then the host is looked at: the
-- exit code is 2, no config file holds the injected directive (none of the
-- service's files was written at all), sshd still takes passwords after a
-- malformed key, and nothing under /etc, /home, /usr, /var/lib changed.
--
-- Run as root:
--   PHANES_TEST_ID=fe spec/run build/phanes integration spec/integration/trust_values_spec.lua
local th = require "spec.support.testhost"
local runcli = require "spec.support.runcli"

local ED = "AAAAC3NzaC1lZDI1NTE5AAAAIAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g"
local BASE = "username: deploy\nssh_public_key: \"ssh-ed25519 " .. ED .. " me@laptop\"\n"

-- Each attack: the modules it runs, its config, the file:line:col and key
-- of the error, the files it aimed at and what must not be in them.
local ATTACKS = {
  { name = "nginx server_name serving /etc", modules = "nginx",
    config = BASE .. "nginx:\n  server_name: \"x; location / { root /etc; }\"\n",
    at = "config.yaml:4:3: nginx.server_name: ", files = { "/etc/nginx/sites-available/default" }, bad = "root /etc" },
  { name = "caddy site with a new directive", modules = "caddy",
    config = BASE .. "caddy:\n  site: \":80 {\\n\\troot * /etc\\n\\tfile_server browse\\n}\\n:81\"\n",
    at = "config.yaml:4:3: caddy.site: ", files = { "/etc/caddy/Caddyfile" }, bad = "/etc" },
  { name = "fail2ban bantime disabling the sshd jail", modules = "security",
    config = BASE .. "security:\n  fail2ban_bantime: \"1h\\nenabled = false\"\n",
    at = "config.yaml:4:3: security.fail2ban_bantime: ", files = { "/etc/fail2ban/jail.local" }, bad = "enabled = false" },
  { name = "docker log_max_size moving data-root", modules = "docker",
    config = BASE .. "docker:\n  log_max_size: '10m\", \"data-root\": \"/tmp/x'\n",
    at = "config.yaml:4:3: docker.log_max_size: ", files = { "/etc/docker/daemon.json" }, bad = "data-root" },
  { name = "updates mail turning automatic reboots on", modules = "updates",
    config = BASE .. "updates:\n  mail: \"root@example.com\\\";\\nUnattended-Upgrade::Automatic-Reboot \\\"true\\\";\\n//\"\n",
    at = "config.yaml:4:3: updates.mail: ",
    files = { "/etc/apt/apt.conf.d/52phanes-unattended-upgrades", "/etc/apt/apt.conf.d/20auto-upgrades" },
    bad = "Automatic-Reboot \"true\"" },
  { name = "monitoring bind opening netdata to all", modules = "monitoring",
    config = BASE .. "monitoring:\n  bind: \"127.0.0.1:19999\\n    bind to = 0.0.0.0\"\n",
    at = "config.yaml:4:3: monitoring.bind: ", files = { "/etc/netdata/netdata.conf" }, bad = "0.0.0.0" },
  { name = "redis password with a space", modules = "redis",
    config = BASE .. "redis:\n  password: \"has space\"\n",
    at = "config.yaml:4:3: redis.password: ", files = { "/etc/redis/redis.conf" }, bad = "has space" },
  { name = "swap size that is no size", modules = "swap",
    config = BASE .. "swap:\n  size: lots\n", at = "config.yaml:4:3: swap.size: ",
    files = { "/etc/sysctl.d/60-phanes-swap.conf", "/swapfile" } },
  { name = "timezone that does not exist", modules = "baseline",
    config = BASE .. "timezone: Mars/Olympus\n", at = "config.yaml:3:1: timezone: ",
    files = { "/etc/timezone" }, bad = "Mars" },
  { name = "ssh key that is not a key", modules = "user,security",
    config = "username: deploy\nssh_public_key: \"hello world\"\n", at = "config.yaml:2:1: ssh_public_key: ",
    files = { "/etc/ssh/sshd_config", "/home/deploy/.ssh/authorized_keys" }, bad = "hello world" },
  { name = "ssh key whose data is of another type", modules = "user,security",
    config = "username: deploy\nssh_public_key: \"ssh-rsa " .. ED .. " me@laptop\"\n",
    at = "config.yaml:2:1: ssh_public_key: ", files = { "/etc/ssh/sshd_config", "/home/deploy/.ssh/authorized_keys" },
    bad = "me@laptop" },
}

local on = require "spec.support.onhost"
local sh = on.sh

-- Everything phanes could have touched: path, size, mode, owner, mtime of
-- every file under these trees.
local TREES = "/etc /home /root/.ssh /usr /opt /srv /var/lib/phanes /var/lib/dpkg /var/www /swapfile"
local function snapshot()
  return sh("find " .. TREES .. " -xdev -printf '%p %s %m %u %T@\\n' 2>/dev/null | sort | sha256sum", true)
end

local function password_login()
  return (sh("sshd -T -C user=deploy,host=client,addr=192.0.2.1 | grep -i '^passwordauthentication'"))
end

describe("config values on a test host", function()
  if not on.use() then return end -- a fresh host 1

  local before, before_pw, before_keys, dir
  teardown(function() runcli.rmdir(dir) end)
  setup(function()
    dir = runcli.tmpdir()
    assert(th.cp(1, runcli.binary(), "/usr/local/bin/phanes"))
    sh "mkdir -p /root/cfg"
    before_pw = password_login()
    before_keys = sh "cat /home/deploy/.ssh/authorized_keys"
    before = snapshot()
  end)

  local function apply(modules, text, extra)
    on.put("/root/cfg/config.yaml", text)
    local out, rc, err = on.phanes("apply --modules " .. modules .. " --config config.yaml " .. (extra or ""),
      { dir = "/root/cfg" })
    return out .. err, rc
  end

  for _, a in ipairs(ATTACKS) do
    it("refuses " .. a.name .. ": exit 2, nothing written", function()
      local out, rc = apply(a.modules, a.config)
      assert.equal(2, rc, out)
      assert.truthy(out:find(a.at, 1, true), out)
      for _, f in ipairs(a.files) do
        local text = sh("cat " .. f .. " 2>/dev/null || true")
        if a.bad then assert.is_nil(text:find(a.bad, 1, true), f .. " has the injected value:\n" .. text) end
      end
      assert.equal(before, snapshot(), "the host changed")
    end)
  end

  it("reports every value at once with file:line:col, on apply and check alike", function()
    local lines = { "username: deploy", 'ssh_public_key: "hello world"', "timezone: Mars/Olympus",
      "swap:", "  size: lots", "redis:", '  password: "has space"', "nginx:",
      '  server_name: "x; location / { root /etc; }"' }
    local text = table.concat(lines, "\n") .. "\n"
    for _, cmd in ipairs { "apply", "check" } do
      on.put("/root/cfg/all.yaml", text)
      local out, rc, err = on.phanes(cmd .. " --modules baseline,user,security,swap,redis,nginx --config all.yaml",
        { dir = "/root/cfg" })
      out = out .. err
      assert.equal(2, rc, out)
      for _, at in ipairs { "all.yaml:2:1: ssh_public_key: ", "all.yaml:3:1: timezone: ", "all.yaml:5:3: swap.size: ",
        "all.yaml:7:3: redis.password: ", "all.yaml:9:3: nginx.server_name: " } do
        assert.truthy(out:find(at, 1, true), cmd .. ": no " .. at .. " in:\n" .. out)
      end
      assert.is_nil(out:find("has space", 1, true))
    end
    assert.equal(before, snapshot(), "the host changed")
  end)

  it("keeps sshd taking passwords and authorized_keys as they were after a malformed key", function()
    assert.equal(before_pw, password_login())
    assert.truthy(before_pw:lower():match "passwordauthentication yes", before_pw)
    assert.equal(before_keys, sh "cat /home/deploy/.ssh/authorized_keys")
  end)

  -- Last: this one runs baseline and user for real.
  it("does not turn password login off when the admin's only key on the host is malformed", function()
    local keys = "/home/deploy/.ssh/authorized_keys"
    sh("cp " .. keys .. " /root/keys.saved && printf 'hello world\nssh-rsa " .. ED .. " other-type\n' > " .. keys)
    local out, rc = apply("security", "username: deploy\nsecurity:\n  ufw: false\n  fail2ban: false\n")
    sh("cp /root/keys.saved " .. keys)
    assert.equal(1, rc, out)
    assert.truthy(out:find("refusing to turn off SSH password login", 1, true), out)
    assert.equal(before_pw, password_login())
    assert.is_nil(sh("cat /etc/ssh/sshd_config"):find("Managed by phanes", 1, true))
  end)

  -- Over SSH the config is checked by the phanes on the target, against the
  -- target's zoneinfo: the controller needs none.
  it("checks the time zone on the target with --remote", function()
    local home = dir .. "/home"
    assert(require("phanes.file").mkdir(home .. "/.ssh", { parents = true }))
    runcli.write(home .. "/.ssh/known_hosts", th.known_hosts(1))
    runcli.write(home .. "/tz.yaml", "timezone: Mars/Olympus\n")
    local argv = { "--remote", "root@" .. th.ip(1), "--key", th.key(), "check", "--modules", "baseline",
      "--config", home .. "/tz.yaml" }
    local r = runcli.run(argv, { HOME = home, SSH_AUTH_SOCK = "", NO_COLOR = "1" })
    assert.equal(2, r.code, r.stdout .. r.stderr)
    assert.truthy((r.stdout .. r.stderr):find("timezone: 'Mars/Olympus' is not a time zone", 1, true),
      r.stdout .. r.stderr)
    runcli.write(home .. "/tz.yaml", "timezone: Europe/Paris\n")
    r = runcli.run(argv, { HOME = home, SSH_AUTH_SOCK = "", NO_COLOR = "1" })
    assert.equal(0, r.code, r.stdout .. r.stderr)
  end)

  it("still writes plain values: nginx with two names, a size and a root, accepted by nginx -t", function()
    local out, rc = apply("nginx", BASE .. "nginx:\n  server_name: \"example.com www.example.com\"\n" ..
      "  client_max_body_size: 32m\n  root: /var/www/site\n")
    assert.equal(0, rc, out)
    local site = sh "cat /etc/nginx/sites-available/default"
    assert.truthy(site:find("\n    server_name example.com www.example.com;\n", 1, true), site)
    assert.truthy(site:find("\n    client_max_body_size 32m;\n", 1, true), site)
    assert.truthy(site:find("\n    root /var/www/site;\n", 1, true), site)
    sh "nginx -t"
  end)
end)
