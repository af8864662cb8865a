-- The vault end to end on one disposable Debian 12 test host: a config
-- field `!vault app.password` is resolved from the host's block of an
-- encrypted vault (password from vault.password_command), the module writes
-- it to a file, and the host is checked: the file has the value; the value
-- is nowhere in phanes' output, the state file, the audit log, or any
-- process's command line (polled inside the host during the run).
--
--   PHANES_TEST_ID=fi spec/run build/phanes integration spec/integration/vault_spec.lua
local th = require "spec.support.testhost"
local runcli = require "spec.support.runcli"
local vault = require "phanes.vault"

local SECRET = "Vlt-" .. string.format("%x", os.time()) .. "-Qz7w"
local DEFAULT = "Dflt-Only-" .. string.format("%x", os.time())
local PASSWORD = "integration vault password"

local on = require "spec.support.onhost"
local sh, phanes = on.sh, on.phanes

local POLL = [[
#!/bin/sh
# every process's argv, as fast as the host allows, until /root/stop
: > /root/hits
n=0
while [ ! -e /root/stop ]; do
  for f in /proc/[0-9]*/cmdline; do
    grep -qaF -f /root/pattern "$f" 2>/dev/null && { tr '\0' ' ' < "$f"; echo; } >> /root/hits
  done
  n=$((n + 1))
  echo $n > /root/polls
done
touch /root/stopped
]]

describe("the vault on a test host", function()
  if not on.use() then return end -- a fresh host 1

  local dir
  setup(function()
    dir = runcli.tmpdir()
    local host = (sh "hostname"):gsub("%s+$", "")
    local plain = "defaults:\n  app:\n    user: appuser\n    password: " .. DEFAULT .. "\nhosts:\n  "
      .. host .. ":\n    app:\n      password: " .. SECRET .. "\n"
    runcli.write(dir .. "/secrets.vault.yaml", vault.seal(plain, PASSWORD))
    runcli.write(dir .. "/vault.pw", PASSWORD .. "\n")
    runcli.write(dir .. "/pattern", SECRET .. "\n")
    runcli.write(dir .. "/poll.sh", POLL)
    runcli.write(dir .. "/config.yaml", table.concat({
      "vault:",
      "  file: secrets.vault.yaml",
      "  password_command: cat /root/vault.pw",
      "vaulted:",
      "  user: !vault app.user",
      "  password: !vault app.password",
      "state_path: /var/lib/phanes/state.json", "" }, "\n"))
    runcli.write(dir .. "/typo.yaml", "vault: {file: secrets.vault.yaml, password_command: cat /root/vault.pw}\n"
      .. "vaulted:\n  password: !vault app.pasword\n")
    sh "rm -rf /root/fx /root/stop /root/stopped /root/hits /root/.local"
    assert(th.cp(1, runcli.binary(), "/usr/local/bin/phanes"))
    assert(th.cp(1, "spec/fixtures/vault", "/root/fx"))
    for _, f in ipairs { "secrets.vault.yaml", "vault.pw", "pattern", "poll.sh", "config.yaml", "typo.yaml" } do
      assert(th.cp(1, dir .. "/" .. f, "/root/" .. f))
    end
    sh "chmod 600 /root/vault.pw /root/pattern"
  end)
  teardown(function() runcli.rmdir(dir) end)

  it("applies the host's vault value; it is in the file and nowhere else", function()
    sh "setsid sh /root/poll.sh </dev/null >/dev/null 2>&1 &"
    -- the poller sees a command line with the secret (a canary), then is reset
    sh("sh -c 'sleep 1.5' canary " .. SECRET)
    assert.matches("canary", sh "cat /root/hits", nil, true)
    sh ": > /root/hits"
    local seen = {}
    local out, code, err = phanes "apply vaulted --path /root/fx --config config.yaml --dry-run -v"
    seen[#seen + 1] = out .. err
    assert.equal(0, code, out .. err)
    out, code, err = phanes "apply vaulted --path /root/fx --config config.yaml -v"
    seen[#seen + 1] = out .. err
    assert.equal(0, code, out .. err)
    out, code, err = phanes "apply vaulted --path /root/fx --config config.yaml --json"
    seen[#seen + 1] = out .. err
    assert.equal(0, code, out .. err)
    sh "touch /root/stop; i=0; while [ ! -e /root/stopped ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done"

    -- on the host: the value arrived, the host's block over defaults
    assert.equal("DB_USER=appuser\nDB_PASSWORD=" .. SECRET .. "\n", sh "cat /srv/vaulted/app.env")
    assert.equal("600 root\n", sh "stat -c '%a %U' /srv/vaulted/app.env")
    -- and nowhere else
    for _, text in ipairs(seen) do
      assert.is_nil(text:find(SECRET, 1, true), "the secret is in phanes' output:\n" .. text)
      assert.is_nil(text:find(DEFAULT, 1, true))
    end
    assert.matches("vaulted", seen[2])
    assert.matches("DB_PASSWORD=******", seen[1], nil, true) -- the dry run's diff, masked
    local _, c = sh("grep -qF -f /root/pattern /var/lib/phanes/state.json", true)
    assert.equal(1, c, "the secret is in the state file")
    assert.equal("", sh "cat /root/hits", "the secret was on a command line")
    assert.is_true(tonumber((sh "cat /root/polls"):match "%d+") > 3, "the poller hardly ran")
    -- the audit log: one line per secret resolved, no value
    local log = sh "cat /root/.local/state/phanes/security.log"
    assert.is_nil(log:find(SECRET, 1, true))
    assert.matches('"action":"secret_resolved"', log)
    assert.matches('"key":"app.password"', log)
    assert.equal("600\n", sh "stat -c %a /root/.local/state/phanes/security.log")
  end)

  it("a remote run: the host's vault values arrive, and are in no output, record, state, file or argv", function()
    local USERV = "Vlt-User-" .. string.format("%x", os.time()) -- a non-secret field, from the vault
    local home = runcli.tmpdir()
    local function lw(path, text)
      assert(os.execute("mkdir -p " .. th.quote(path:match "^(.*)/")))
      runcli.write(path, text)
    end
    lw(home .. "/.config/phanes/inventory.yaml", string.format("hosts:\n  th1: { address: %s, user: root, key: %s }\n",
      th.ip(1), th.key()))
    lw(home .. "/conf/config.yaml", "vaulted:\n  user: !vault app.user\n  password: !vault app.password\n")
    lw(home .. "/conf/secrets.vault.yaml", vault.seal("defaults:\n  app:\n    user: " .. USERV .. "\n    password: "
      .. DEFAULT .. "\nhosts:\n  th1:\n    vaulted:\n      password: " .. SECRET .. "\n", PASSWORD))
    lw(home .. "/vault.pw", PASSWORD .. "\n")
    sh "rm -f /root/stop /root/stopped /srv/vaulted/app.env /var/lib/phanes/state.json"
    runcli.write(dir .. "/pattern2", SECRET .. "\n" .. USERV .. "\n")
    assert(th.cp(1, dir .. "/pattern2", "/root/pattern"))
    sh "setsid sh /root/poll.sh </dev/null >/dev/null 2>&1 &"
    local seen = {}
    for _, extra in ipairs { { "--dry-run", "-v", "--diff" }, { "-v", "--diff" }, { "--json" } } do
      local args = { "--remote", "th1", "--path", "spec/fixtures/vault", "apply", "--modules", "vaulted",
        "--config", home .. "/conf/config.yaml", "--vault-password-file", home .. "/vault.pw", "--color=never" }
      for _, a in ipairs(extra) do args[#args + 1] = a end
      local r = runcli.run(args, { HOME = home, SSH_AUTH_SOCK = "", XDG_STATE_HOME = home .. "/.local/state",
        XDG_CONFIG_HOME = home .. "/.config" })
      assert.equal(0, r.code, r.stdout .. r.stderr)
      seen[#seen + 1] = r.stdout .. r.stderr
    end
    sh "touch /root/stop; i=0; while [ ! -e /root/stopped ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done"
    -- on the host: the values arrived, the host's block over defaults
    assert.equal("DB_USER=" .. USERV .. "\nDB_PASSWORD=" .. SECRET .. "\n", sh "cat /srv/vaulted/app.env")
    -- nowhere else: phanes' output, the controller's files (records, logs), the host
    for _, text in ipairs(seen) do
      for _, v in ipairs { SECRET, USERV, DEFAULT } do
        assert.is_nil(text:find(v, 1, true), "a vault value is in phanes' output:\n" .. text)
      end
    end
    assert.matches("DB_PASSWORD=******", seen[1], nil, true) -- the dry run's diff, masked
    local p = io.popen("grep -rlF -e " .. th.quote(SECRET) .. " -e " .. th.quote(USERV) .. " " .. th.quote(home)
      .. " --exclude=secrets.vault.yaml")
    local found = p:read "a"
    p:close()
    assert.equal("", found, "a vault value is in the controller's files")
    assert.truthy(require("phanes.file").exists(home .. "/.local/state/phanes/security.log"))
    local _, c = sh("grep -rlF -f /root/pattern /root /tmp /var/tmp /run /var/lib/phanes /etc 2>/dev/null "
      .. "| grep -v -e '^/root/pattern$' -e '^/root/hits$'", true)
    assert.equal(1, c, "a vault value is in a file on the host: " .. sh("grep -rlF -f /root/pattern /root /tmp /var/tmp "
      .. "/run /var/lib/phanes /etc 2>/dev/null; true"))
    assert.equal("", sh "cat /root/hits", "a vault value was on a command line")
    assert.is_true(tonumber((sh "cat /root/polls"):match "%d+") > 3, "the poller hardly ran")
    runcli.rmdir(home)
  end)

  it("a remote run's config error names the local file, and its hint no path on the host", function()
    local home = runcli.tmpdir()
    runcli.write(home .. "/config.yaml", "vaulted:\n  password: Long-Enough-1\n  colour: blue\n")
    local r = runcli.run({ "--remote", "root@" .. th.ip(1), "--key", th.key(), "--path", "spec/fixtures/vault", "apply",
      "--modules", "vaulted", "--config", home .. "/config.yaml", "--color=never" },
      { HOME = home, SSH_AUTH_SOCK = "", XDG_STATE_HOME = home .. "/state" })
    assert.equal(2, r.code, r.stdout .. r.stderr)
    assert.matches(home .. "/config.yaml:3:3: unknown key 'vaulted.colour'", r.stderr, 1, true)
    assert.matches("then try: phanes check --config " .. home .. "/config.yaml\n", r.stderr, 1, true)
    assert.is_nil(r.stderr:find("/var/lib/phanes/run.", 1, true), r.stderr)
    runcli.rmdir(home)
  end)

  it("a missing key is exit 2 with a did-you-mean, and leaves no plaintext", function()
    local before = sh "ls /dev/shm /run 2>/dev/null | sort"
    local out, code, err = phanes "apply vaulted --path /root/fx --config typo.yaml"
    assert.equal(2, code, out .. err)
    assert.matches("no key 'app.pasword' in the vault .-secrets.vault.yaml %(did you mean 'app.password'%?%)", err)
    assert.equal(before, sh "ls /dev/shm /run 2>/dev/null | sort")
  end)

  it("opens the vault quickly (printed)", function()
    local out = sh [[a=$(date +%s%N); phanes version >/dev/null; b=$(date +%s%N);
      phanes vault get app.password --file /root/secrets.vault.yaml --vault-password-file /root/vault.pw >/dev/null;
      c=$(date +%s%N); echo $(( (b - a) / 1000000 )) $(( (c - b) / 1000000 ))]]
    local base, total = out:match "(%d+) (%d+)"
    print(string.format("\n  on the test host: phanes version %s ms, phanes vault get (scrypt + GCM) %s ms", base, total))
    assert.is_true(tonumber(total) < 3000)
  end)
end)
