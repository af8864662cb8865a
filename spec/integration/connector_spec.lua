-- Connectors on test hosts (lua/phanes/remote/connector.lua).
--
-- The same apply through two connectors: the profile of
-- spec/fixtures/connector (files, a user and a group, a package, a
-- service) through the `local` connector on host 1 (phanes run there, on
-- the host itself: `--remote local:`) and through the `ssh` connector from
-- this machine to host 2, an identical fresh host. Both give the same
-- report (the output, the run's record) and the same host afterwards
-- (files with modes, owners and contents, the user, the package, the
-- service, the state file), compared field by field without timings and
-- host names.
--
-- The docker connector: host 1 gets Debian's docker.io and a container of
-- the test hosts' own Debian base; `--remote docker:box` applies a module
-- into it, and the container is looked at with docker exec.
local th = require "spec.support.testhost"
local json = require "phanes.json"

local BIN = th.bin()
local q = th.quote
local FIX = "spec/fixtures/connector"

local phanes = require("spec.support.runcli").at_home

-- phanes ARGS on host i, as root in /root/w; -> exit code, output
local function phanes_on(i, args)
  local words = {}
  for k, a in ipairs(args) do words[k] = q(a) end
  local _, out, code = th.exec(i, "cd /root/w && HOME=/root phanes " .. table.concat(words, " ") .. " 2>&1")
  return code, out
end

-- What a report shows, without what differs by time or host: durations,
-- the local directory of the run's own modules, column widths, the line
-- saying the ssh connector recorded a new host key.
local function shown(out, fixdir)
  local lines = {}
  for line in out:gmatch "[^\n]+" do
    local i = line:find(fixdir, 1, true)
    while i do
      line = line:sub(1, i - 1) .. "FIX" .. line:sub(i + #fixdir)
      i = line:find(fixdir, i + 3, true)
    end
    line = line:gsub("%d+m%d%ds", "T"):gsub("%d+%.%d+s", "T"):gsub("%d+s%f[%A]", "T")
    line = line:gsub("%s+", " "):gsub(" $", "")
    -- the host key and the connection's progress (connecting, uploading,
    -- running) are the transport's, not the run's
    if not line:match "^phanes: recorded the host key of " and not line:find(": connecting to ", 1, true)
      and not line:find(": uploading phanes (", 1, true) and not line:match ": running: T$" then
      lines[#lines + 1] = line
    end
  end
  return lines
end

-- a record's fields, those that describe the run rather than when or where
local function run_fields(rec)
  return { exit_code = rec.exit_code, status = rec.status, report_status = rec.report_status, counts = rec.counts,
    modules = rec.modules, changed = rec.changed, failed = rec.failed, command = rec.command, remote = rec.remote,
    user = rec.user, phanes_version = rec.phanes_version, upload = rec.upload and { binary = rec.upload.binary, files = rec.upload.files } }
end

-- the state file without its timestamps, the host's name and the config
-- hashes (keyed by each host's own secret key, so never alike)
local function untimed(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do
    if not (type(k) == "string" and (k:match "_at$" or k == "hostname" or k == "config_hash")) then out[k] = untimed(x) end
  end
  return out
end

-- What the apply left on a host, one line per fact.
local LOOK = [[
for p in /srv/conn /srv/conn/greeting /srv/conn/app.env /etc/systemd/system/conn-sleep.service; do
  stat -c '%n %F %a %U %G %s' "$p"; [ -f "$p" ] && sha256sum "$p"
done
grep -c '^CONN_FIXTURE=1$' /etc/environment
getent passwd connie | cut -d: -f1,3,4,6,7
getent group conngrp | cut -d: -f1,3,4
dpkg-query -W -f '${Package} ${Status}\n' tree
systemctl is-active conn-sleep; systemctl is-enabled conn-sleep
]]

local function look(i)
  local ok, out = th.exec(i, LOOK)
  assert.is_true(ok, out)
  return out
end

describe("the same apply through the local and the ssh connector", function()
  local ok_hosts, why = th.available()
  if not ok_hosts then
    pending(why)
    return
  end
  local key, home
  setup(function()
    th.up(2)
    key = th.key()
    home = require("spec.support.fakeexec").tmpdir()
    assert(os.execute("cp -r " .. q(FIX) .. " " .. q(home .. "/fix")))
    local f = assert(io.open(home .. "/c.yaml", "wb"))
    f:write "timezone: UTC\n"
    f:close()
    assert(th.cp(1, BIN, "/usr/local/bin/phanes"))
    assert(th.exec(1, "mkdir -p /root/w"))
    assert(th.cp(1, home .. "/fix", "/root/fix"))
    assert(th.cp(1, home .. "/c.yaml", "/root/w/c.yaml"))
  end)
  teardown(function()
    th.down()
    if home then os.execute("rm -rf " .. q(home)) end
  end)

  local function both()
    local lcode, lout = phanes_on(1, { "--path", "/root/fix", "--remote", "local:", "apply", "conn", "--config", "c.yaml" })
    local target = "root@" .. th.ip(2)
    local scode, sout = phanes(home, { "--path", home .. "/fix", "--remote", target, "--key", key,
      "apply", "conn", "--config", "c.yaml" })
    local _, ltext = th.exec(1, "cat '/root/.local/state/phanes/hosts/local:/last.json'")
    local lrec = assert(json.decode(ltext), ltext)
    local srec = assert(json.decode(th.read(home .. "/.local/state/phanes/hosts/" .. target .. "/last.json")))
    return { code = lcode, out = lout, rec = lrec, shown = shown(lout, "/root/fix") },
      { code = scode, out = sout, rec = srec, shown = shown(sout, home .. "/fix") }
  end

  it("gives the same report and the same host, first run and no-op", function()
    local first = {}
    for run = 1, 2 do
      local l, s = both()
      assert.equal(0, l.code, l.out)
      assert.equal(0, s.code, s.out)
      assert.same(s.shown, l.shown)
      assert.truthy(#l.shown >= (run == 1 and 15 or 5), l.out)
      assert.equal("local", l.rec.connector)
      assert.is_table(s.rec.ssh)
      assert.same(run_fields(s.rec), run_fields(l.rec))
      first[run] = l.rec
    end
    -- the first run changed both modules, the second nothing: the
    -- comparison above compared real work
    assert.equal("changed", first[1].status)
    assert.same({ "conn_files", "conn_svc" }, { first[1].modules[1].name, first[1].modules[2].name })
    assert.equal("ok", first[2].status)
    assert.equal(0, first[2].changed)
  end)

  it("leaves the same files, user, package, service and state file on both hosts", function()
    local one, two = look(1), look(2)
    assert.equal(two, one)
    -- and they are what the module asked for
    assert.matches("/srv/conn directory 750 connie conngrp", one, 1, true)
    assert.matches("/srv/conn/app.env regular file 640 connie conngrp 20", one, 1, true)
    assert.matches("\nconnie:%d+:%d+:/home/connie:/bin/sh\n", one)
    assert.matches("tree install ok installed\nactive\nenabled\n", one, 1, true)
    local _, greeting = th.exec(2, "cat /srv/conn/greeting")
    assert.equal("hello, connectors\n", greeting)
    local s1, s2 = select(2, th.exec(1, "cat /var/lib/phanes/state.json")), select(2, th.exec(2, "cat /var/lib/phanes/state.json"))
    local st1, st2 = assert(json.decode(s1), s1), assert(json.decode(s2), s2)
    assert.is_table(st1.modules.conn_files)
    assert.same(untimed(st2), untimed(st1))
  end)
end)

describe("the docker connector", function()
  local ok_hosts, why = th.available()
  if not ok_hosts then
    pending(why)
    return
  end
  local home
  setup(function()
    th.up(1)
    home = require("spec.support.fakeexec").tmpdir()
    assert(os.execute("cp -r " .. q(FIX) .. " " .. q(home .. "/fix")))
    assert(th.cp(1, BIN, "/usr/local/bin/phanes"))
    assert(th.exec(1, "mkdir -p /root/w && printf 'timezone: UTC\\n' > /root/w/c.yaml"))
    assert(th.cp(1, home .. "/fix", "/root/fix"))
    local ok, out = th.exec(1, "apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io >/dev/null"
      .. " && systemctl is-active docker")
    assert(ok, out)
    -- an image of the test hosts' own Debian base (the hosts have no way out to a registry)
    local base = assert(th.run(q(th.script) .. " base 2>/dev/null | tail -n 1") and
      select(2, th.run(q(th.script) .. " base 2>/dev/null | tail -n 1")):match "%S+")
    ok, out = th.run("tar -C " .. q(base) .. " -c . | " .. q(th.script) .. " exec 1 docker import - phanes-base")
    assert(ok, out)
    ok, out = th.exec(1, "docker rm -f box >/dev/null 2>&1; docker run -d --name box phanes-base sleep infinity")
    assert(ok, out)
  end)
  teardown(function()
    th.down()
    if home then os.execute("rm -rf " .. q(home)) end
  end)

  it("applies a module into the container, and only there", function()
    assert(th.exec(1, "rm -rf /srv/conn; userdel connie 2>/dev/null; true"))
    local code, out = phanes_on(1, { "--path", "/root/fix", "--remote", "docker:box", "apply", "--modules", "conn_files",
      "--config", "c.yaml", "--set", "conn_files.greeting=inside the box" })
    assert.equal(0, code, out)
    assert.matches("conn_files%s+changed%s+6", out)
    local ok, inside = th.exec(1, "docker exec box sh -c \"stat -c '%n %a %U %G' /srv/conn /srv/conn/app.env;"
      .. " cat /srv/conn/greeting; id -nG connie; grep -c CONN_FIXTURE=1 /etc/environment\"")
    assert.is_true(ok, inside)
    assert.equal("/srv/conn 750 connie conngrp\n/srv/conn/app.env 640 connie conngrp\ninside the box\nconnie conngrp\n1\n", inside)
    -- the host running docker was not touched
    local _, host = th.exec(1, "ls /srv/conn 2>&1; id connie 2>&1")
    assert.matches("No such file or directory", host)
    assert.matches("no such user", host)
    -- the run's record says which connector carried it
    local _, text = th.exec(1, "cat '/root/.local/state/phanes/hosts/docker:box/last.json'")
    local rec = assert(json.decode(text), text)
    assert.same({ "docker", "changed", "root" }, { rec.connector, rec.status, rec.user })
  end)

  it("runs a no-op, reads status and tests the host through docker", function()
    local code, out = phanes_on(1, { "--path", "/root/fix", "--remote", "docker:box", "apply", "--modules", "conn_files",
      "--config", "c.yaml", "--set", "conn_files.greeting=inside the box" })
    assert.equal(0, code, out)
    assert.matches("conn_files%s+ok%s+0", out)
    code, out = phanes_on(1, { "--remote", "docker:box", "status" })
    assert.equal(0, code, out)
    assert.matches("conn_files%s+installed", out)
    code, out = phanes_on(1, { "host", "test", "docker:box" })
    assert.equal(0, code, out)
    assert.matches("docker:box: ok in [%d.]+s: root@docker:box, Debian GNU/Linux 12", out)
  end)

  it("says so when the container is not there (exit 3)", function()
    local code, out = phanes_on(1, { "--remote", "docker:nope", "apply", "--modules", "conn_files", "--config", "c.yaml" })
    assert.equal(3, code, out)
    assert.matches("docker:nope: no such container", out, 1, true)
  end)
end)
