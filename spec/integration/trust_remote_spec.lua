-- Trust on a remote run, proven on a test host by looking at the host:
-- secrets given with --set and PHANES_* reach the run but no command line,
-- environment, log or file outside the run's own root-only directory; root
-- works in a private directory it removes however the run ends; root never
-- runs a binary the login user changed. The login user is deploy (sudo).
local th = require "spec.support.testhost"
local runcli = require "spec.support.runcli"

local BIN = th.bin()

local q = th.quote

local read, write = th.read, runcli.write

local function mkdtemp()
  local p = assert(io.popen "mktemp -d /tmp/phanes-trust.XXXXXX")
  local dir = p:read "l"
  p:close()
  return dir
end

-- 24 characters nobody else would write
local function random_secret()
  local f = assert(io.open("/dev/urandom", "rb"))
  local bytes = f:read(24)
  f:close()
  local abc = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
  local out = {}
  for i = 1, 24 do
    local n = bytes:byte(i) % #abc + 1
    out[i] = abc:sub(n, n)
  end
  return table.concat(out)
end

-- A file onto host 1 (through stdin: its content is on no command line).
local function put(home, path, text)
  local tmp = home .. "/put.tmp"
  write(tmp, text)
  local ok, out = th.exec(1, "umask 077; cat > " .. q(path), { stdin = tmp })
  os.remove(tmp)
  assert(ok, out)
end

-- A module from --path with two secret fields: it writes them into a
-- root-only file, notes where the run works, and takes two seconds.
local MODULE = [[
return {
  name = "vault",
  description = "Two secrets in a root-only file",
  config = {
    password = { type = "string", secret = true, required = true },
    api_password = { type = "string", secret = true, required = true },
    fail = { type = "boolean", default = false },
    pause = { type = "integer", default = 2 },
  },
  apply = function(ctx, cfg)
    ctx.cmd.run { shell = "echo $(stat -c '%U %a' .) $(pwd) > /root/vault-cwd; ls -l . >> /root/vault-cwd; sleep " .. cfg.pause,
      desc = "note the run directory, then wait" }
    ctx.file.content { path = "/root/vault.conf", mode = "0600",
      content = "password=" .. cfg.password .. "\napi=" .. cfg.api_password .. "\n" }
    if cfg.fail then ctx.fail("vault.fail is set") end
  end,
}
]]

describe("remote trust", function()
  local ok_hosts, why = th.available()
  if not ok_hosts then
    pending(why)
    return
  end
  local key, home, target, sha
  local secret, env_secret, canary = random_secret(), random_secret(), random_secret()

  setup(function()
    th.up(1)
    key = th.key()
    home = require("spec.support.fakeexec").tmpdir() -- not under /tmp: root refuses a --path there
    assert(os.execute("mkdir -p " .. q(home .. "/mine/modules")))
    write(home .. "/mine/modules/vault.lua", MODULE)
    write(home .. "/config.yaml", "vault:\n  pause: 2\n")
    target = "deploy@" .. th.ip(1)
    sha = require("phanes.file").sha256_file(BIN)
  end)
  teardown(function()
    th.down()
    if home then os.execute("rm -rf " .. q(home)) end
  end)

  -- phanes with HOME = home, in home; returns exit code, output (both streams)
  local function phanes(args, env) return runcli.at_home(home, args, { env = env }) end

  local function vault_args(extra)
    local args = { "--path", home .. "/mine", "--remote", target, "--key", key, "apply", "vault",
      "--config", home .. "/config.yaml", "--set", "vault.password=" .. secret }
    for _, a in ipairs(extra or {}) do args[#args + 1] = a end
    return args
  end
  local ENV = "PHANES_VAULT_API_PASSWORD=" .. q(env_secret)

  -- run directories root left behind on the host, and in deploy's cache
  local function leftovers()
    local _, out = th.exec(1, "ls -d /var/lib/phanes/run.* /home/deploy/.cache/phanes/run.* 2>/dev/null; true")
    return out
  end

  it("keeps secrets off every command line, environment, log and record, and still applies them", function()
    -- a poller on the host, started before the run: every /proc/*/cmdline
    -- and environ, again and again, searched for the secrets and a canary
    put(home, "/root/poll.pat", secret .. "\n" .. env_secret .. "\n" .. canary .. "\n")
    put(home, "/root/poll.sh", [[
: >/root/poll.hits; : >/root/poll.rounds; rm -f /root/poll.stop
while [ ! -e /root/poll.stop ]; do
  grep -a -o -F -f /root/poll.pat /proc/[0-9]*/cmdline /proc/[0-9]*/environ >>/root/poll.hits 2>/dev/null
  echo . >>/root/poll.rounds
done
touch /root/poll.done
]])
    local ok, out = th.exec(1, "setsid sh /root/poll.sh </dev/null >/dev/null 2>&1 &")
    assert.is_true(ok, out)
    local code
    code, out = phanes(vault_args(), ENV)
    assert.equal(0, code, out)
    -- the canary, put on a command line after the run: the poller sees it
    th.exec(1, "sh -c 'sleep 1' " .. canary)
    th.exec(1, "touch /root/poll.stop; for i in $(seq 50); do [ -e /root/poll.done ] && break; sleep 0.1; done")
    local _, hits = th.exec(1, "cat /root/poll.hits")
    local _, rounds = th.exec(1, "wc -l < /root/poll.rounds")
    assert.is_true(tonumber(rounds:match "%d+") > 20, "the poller ran " .. rounds .. " rounds")
    assert.matches(canary, hits, 1, true)
    assert.is_nil(hits:find(secret, 1, true), hits)
    assert.is_nil(hits:find(env_secret, 1, true), hits)

    -- both secrets reached the run: the module wrote them
    local _, conf = th.exec(1, "stat -c '%U %a' /root/vault.conf; cat /root/vault.conf")
    assert.equal("root 600\npassword=" .. secret .. "\napi=" .. env_secret .. "\n", conf)
    -- it ran in a private root directory under /var/lib/phanes, which is gone
    local _, cwd = th.exec(1, "cat /root/vault-cwd")
    local dir = cwd:match "^root 700 (/var/lib/phanes/run%.%w+)\n"
    assert.is_truthy(dir, cwd)
    assert.matches("%-rw%-%-%-%-%-%-%- 1 root root%s+%d+ [^\n]+ overrides%.json", cwd)
    -- the binary it ran is root's own checked copy, where only root can write
    local _, kept = th.exec(1, "stat -c '%U %a' /var/lib/phanes/bin /var/lib/phanes/bin/phanes-" .. sha)
    assert.equal("root 700\nroot 700\n", kept)
    assert.equal("", leftovers())

    -- nothing on the host holds them outside that file: the state, the
    -- login user's home, the logs, the journal
    put(home, "/root/secrets.pat", secret .. "\n" .. env_secret .. "\n")
    local found
    ok, found = th.exec(1, "grep -r -l -a -F -f /root/secrets.pat /var/lib/phanes /home/deploy /var/log /tmp /run 2>/dev/null;"
      .. " journalctl --no-pager -o cat | grep -c -a -F -f /root/secrets.pat; journalctl --no-pager -o cat | grep -c 'COMMAND=/usr/bin/sh'")
    local files, journal_hits, sudo_lines = found:match "^(.-)(%d+)\n(%d+)\n$"
    assert.equal("", files, found)
    assert.equal("0", journal_hits, found)
    assert.is_true(tonumber(sudo_lines) > 0, "sudo's log is in the journal: " .. found)
    -- nor on the controller: its records and logs, nor what the run printed
    local p = assert(io.popen("grep -r -l -a -F -e " .. q(secret) .. " -e " .. q(env_secret) .. " "
      .. q(home .. "/.local/state/phanes") .. "; true"))
    local local_hits = p:read "a"
    p:close()
    assert.equal("", local_hits)
    assert.is_nil(out:find(secret, 1, true), out)
    assert.is_nil(out:find(env_secret, 1, true), out)
    local rec = runcli.record(home, target)
    assert.is_truthy(rec.status == "ok" or rec.status == "changed", rec.status)
    local shown = table.concat(rec.command, " ")
    assert.matches("--set vault.password=******", shown, 1, true)
    assert.is_truthy(table.concat(rec.env, " "):find("PHANES_VAULT_API_PASSWORD", 1, true), table.concat(rec.env, " "))
  end)

  it("removes root's run directory when a module fails, on Ctrl-C, and when the controller vanishes", function()
    local code, out = phanes(vault_args { "--set", "vault.fail=true", "--set", "vault.pause=0" }, ENV)
    assert.equal(1, code, out)
    assert.matches("vault.fail is set", out, 1, true)
    assert.equal("", leftovers())
    -- Ctrl-C while the module waits: the run stops after that step
    write(home .. "/config.yaml", "vault:\n  pause: 4\n")
    -- (the config's vault: key belongs to the secrets vault now: the pause goes by --set)
    local cmd = runcli.at_home_command(home, vault_args { "--set", "vault.pause=4" }, ENV)
    local p = assert(io.popen("(" .. cmd .. " </dev/null >" .. q(home .. "/int.out") .. " 2>&1 & pid=$!; sleep 3; kill -INT $pid; wait $pid; echo $?)"))
    local rc = p:read "a"
    p:close()
    out = read(home .. "/int.out")
    assert.equal("130", rc:match "%d+", out)
    assert.matches("interrupted", out)
    assert.equal("", leftovers())
    -- the controller killed outright: the remote run ends when it next
    -- writes, and its directory goes with it
    p = assert(io.popen("(" .. cmd .. " </dev/null >/dev/null 2>&1 & pid=$!; sleep 3; kill -KILL $pid; wait $pid; echo $?)"))
    p:read "a"
    p:close()
    local deadline = os.time() + 20
    while leftovers() ~= "" and os.time() < deadline do os.execute "sleep 1" end
    assert.equal("", leftovers())
    write(home .. "/config.yaml", "vault:\n  pause: 2\n")
  end)

  it("never runs a cached binary the login user changed: root checks its own copy, and it is uploaded again", function()
    assert.equal(0, (phanes(vault_args { "--set", "vault.pause=0" }, ENV)))
    local cached = "/home/deploy/.cache/phanes/phanes-" .. sha
    local ok, out = th.exec(1, "rm -f /tmp/phanes-marker && test -x " .. cached)
    assert.is_true(ok, "the binary is cached: " .. out)
    -- deploy plants a script where the binary was: it would leave a marker
    local plant = "printf '#!/bin/sh\\necho planted > /tmp/phanes-marker\\n' > " .. cached .. " && chmod 700 " .. cached
    ok, out = th.ssh(1, plant, "deploy")
    assert.is_true(ok, out)
    -- root runs its own checked copy, kept where only root can write
    local code
    code, out = phanes(vault_args { "--set", "vault.pause=0" }, ENV)
    assert.equal(0, code, out)
    local _, kept = th.exec(1, "ls /tmp/phanes-marker 2>&1; sha256sum < /var/lib/phanes/bin/phanes-" .. sha)
    assert.matches("No such file", kept)
    assert.matches(sha, kept, 1, true)
    -- without root's copy, root checks the login user's and refuses it
    ok, out = th.exec(1, "rm -rf /var/lib/phanes/bin")
    assert.is_true(ok, out)
    code, out = phanes(vault_args { "--set", "vault.pause=0" }, ENV)
    assert.equal(0, code, out)
    assert.matches("does not match its sha256 (changed since it was uploaded?): root refused it; uploading it again", out, 1, true)
    local _, marker = th.exec(1, "ls /tmp/phanes-marker 2>&1; sha256sum < " .. cached)
    assert.matches("No such file", marker)
    assert.matches(sha, marker, 1, true)
    local rec = runcli.record(home, target)
    assert.is_true(rec.upload.binary)
    -- a symlink instead (to a program deploy may run): root does not follow it
    ok, out = th.ssh(1, "rm -f " .. cached .. " && ln -s /usr/bin/id " .. cached, "deploy")
    assert.is_true(ok, out)
    ok, out = th.exec(1, "rm -rf /var/lib/phanes/bin")
    assert.is_true(ok, out)
    code, out = phanes(vault_args { "--set", "vault.pause=0" }, ENV)
    assert.equal(0, code, out)
    assert.matches("the cached phanes binary is missing", out, 1, true)
    local _, kind = th.exec(1, "stat -c %F " .. cached .. "; sha256sum < " .. cached)
    assert.matches("^regular file\n" .. sha, kind)
    assert.equal("", leftovers())
  end)
end)
