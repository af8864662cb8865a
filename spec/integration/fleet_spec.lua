-- A fleet of three test hosts, each with its own config: a group var for
-- all three (postgres.max_connections), a host var each (its own redis
-- port, host_vars/thN.yaml) and a vault secret each (its own postgres
-- password, the vault's hosts.thN block). Each host is checked: psql with
-- its own password works and another host's does not; redis answers on its
-- own port with the vault's password. No vault value is in the fleet's
-- output, the controller's records, a host's state file or a command line
-- on th1 during the run; the summary and --json name each host's layers.
-- The vault's password command runs once a fleet run (the controller hands
-- each host's child the derived key), not once a host.
--
--   PHANES_TEST_ID=xx spec/run build/phanes integration spec/integration/fleet_spec.lua
local th = require "spec.support.testhost"
local runcli = require "spec.support.runcli"

local q = th.quote
local stamp = string.format("%x", os.time())
local PW = { "Vlt-One-" .. stamp, "Vlt-Two-" .. stamp, "Vlt-" .. stamp .. "-Qz7w" }
local REDIS_PW = "Vlt-Redis-" .. stamp
local POLL = [[
: > /root/hits
while [ ! -e /root/stop ]; do
  for f in /proc/[0-9]*/cmdline; do
    grep -qaF -f /root/pattern "$f" 2>/dev/null && { tr '\0' ' ' < "$f"; echo; } >> /root/hits
  done
done
touch /root/stopped
]]
local VAULT_PASSWORD = "fleet vault password"

local write = runcli.write

-- phanes ARGS with HOME=home -> exit code, stdout, stderr
local function phanes(home, args) return runcli.at_home(home, args, { stderr = home .. "/stderr" }) end

local function psql(i, password, sql)
  return th.exec(i, "LC_ALL=C PGPASSWORD=" .. q(password) .. " psql -h 127.0.0.1 -U app -d app -Atc " .. q(sql))
end

describe("a fleet of three hosts with their own config", function()
  local ok_hosts, why = th.available()
  if not ok_hosts then
    pending(why)
    return
  end
  local home
  setup(function()
    th.up(3)
    home = runcli.tmpdir()
    local key = th.key()
    local lines = { "hosts:" }
    for i = 1, 3 do
      lines[#lines + 1] = string.format("  th%d: { address: %s, user: root, key: %s, groups: [db] }", i, th.ip(i), key)
    end
    write(home .. "/.config/phanes/inventory.yaml", table.concat(lines, "\n") .. "\n")
    -- the password comes from a command that counts its runs: once a fleet run, not once a host
    write(home .. "/pwcmd.sh", "echo run >> " .. q(home .. "/pwcount") .. "\ncat " .. q(home .. "/vault.pw") .. "\n")
    write(home .. "/conf/config.yaml", "vault:\n  password_command: sh " .. home .. "/pwcmd.sh\n"
      .. "postgres:\n  password: !vault pg.default\nredis:\n  password: !vault redis.password\n")
    write(home .. "/conf/group_vars/db.yaml", "postgres:\n  max_connections: 42\n")
    local plain = { "defaults:\n  pg: { default: Vlt-Default-" .. stamp .. " }\n  redis: { password: " .. REDIS_PW .. " }\nhosts:\n" }
    for i = 1, 3 do
      write(home .. "/conf/host_vars/th" .. i .. ".yaml", "redis:\n  port: " .. (6380 + i) .. "\n")
      plain[#plain + 1] = string.format("  th%d:\n    postgres: { password: %s }\n", i, PW[i])
    end
    write(home .. "/conf/secrets.vault.yaml", require("phanes.vault").seal(table.concat(plain), VAULT_PASSWORD))
    write(home .. "/vault.pw", VAULT_PASSWORD .. "\n")
    assert(os.execute("chmod 600 " .. q(home .. "/vault.pw")))
  end)
  teardown(function()
    th.down()
    if home then runcli.rmdir(home) end
  end)

  local function layers_of(i)
    return string.format("group_vars/db%%.yaml, host_vars/th%d%%.yaml, vault hosts%%.th%d", i, i)
  end

  it("applies each host's own postgres password and redis port, and shows where each host's config came from", function()
    local pattern = table.concat(PW, "\n") .. "\n" .. REDIS_PW .. "\n"
    for i = 1, 3 do assert(th.exec(i, "printf %s " .. q(pattern) .. " > /root/pattern")) end
    assert(th.exec(1, "rm -f /root/stop /root/stopped; printf %s " .. q(POLL) .. " > /root/poll.sh"))
    assert(th.exec(1, "setsid sh /root/poll.sh </dev/null >/dev/null 2>&1 &"))
    local args = { "--remote", "@db", "--parallel", "3", "--modules", "postgres,redis", "--config", home .. "/conf/config.yaml",
      "--color=never" }
    local code, out, err = phanes(home, args)
    assert(th.exec(1, "touch /root/stop; i=0; while [ ! -e /root/stopped ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done"))
    assert.equal(0, code, out .. err)
    assert.equal("run\n", th.read(home .. "/pwcount"), "the password command ran more than once for the fleet")
    assert.matches("\nhost%s+result%s+changed%s+failed%s+time%s+config\n", out)
    for i = 1, 3 do
      assert.matches("\nth" .. i .. "%s+changed%s+%d+%s+0%s+%S+%s+" .. layers_of(i) .. "\n", out)
    end
    -- on the hosts: each one's own password, and not another's; redis on its own port
    for i = 1, 3 do
      local ok, got = psql(i, PW[i], "show max_connections")
      assert.is_true(ok, got)
      assert.equal("42\n", got)
      local other = PW[i % 3 + 1]
      local bad, msg = psql(i, other, "select 1")
      assert.is_false(bad, msg)
      assert.matches("password authentication failed", msg)
      local rok, pong = th.exec(i, "REDISCLI_AUTH=" .. q(REDIS_PW) .. " redis-cli -p " .. (6380 + i) .. " ping")
      assert.is_true(rok, pong)
      assert.equal("PONG\n", pong)
      local _, _, sc = th.exec(i, "grep -qF -f /root/pattern /var/lib/phanes/state.json")
      assert.equal(1, sc, "a vault value is in th" .. i .. "'s state file")
    end
    local _, hits = th.exec(1, "cat /root/hits")
    assert.equal("", hits, "a vault value was on a command line on th1")
    -- a no-op again, as one --json document: every host, its layers, no secret
    local seen = out .. err
    args[#args + 1] = "--json"
    code, out, err = phanes(home, args)
    assert.equal(0, code, out .. err)
    seen = seen .. out .. err
    local doc = assert(require("phanes.json").decode(out), out .. err)
    assert.equal(0, doc.exit_code)
    assert.equal("run\nrun\n", th.read(home .. "/pwcount"))
    for i = 1, 3 do
      local h = doc.hosts["th" .. i]
      assert.equal("ok", h.status, out)
      assert.same({ "group_vars/db.yaml", "host_vars/th" .. i .. ".yaml", "vault hosts.th" .. i }, h.config_layers)
    end
    for _, v in ipairs { PW[1], PW[2], PW[3], REDIS_PW } do
      assert.is_nil(seen:find(v, 1, true), "a vault value is in the fleet's output")
    end
    -- nor in the controller's records and logs
    write(home .. "/pattern", pattern)
    local p = io.popen("grep -rlF -f " .. q(home .. "/pattern") .. " " .. q(home .. "/.local"))
    local found = p:read "a"
    p:close()
    assert.equal("", found, "a vault value is in the controller's records")
    assert.truthy(th.read(home .. "/.local/state/phanes/security.log"))
  end)
end)
