-- The five profiles on real Debian test hosts, one fresh host each,
-- applied in parallel: Debian 12 (bookworm) or, with PHANES_TEST_SUITE=trixie,
-- Debian 13 (make integration runs it on both). Every check looks at the host itself (ssh logins,
-- curl, psql, redis-cli, ufw, fail2ban-client, apt-config...), not at what
-- phanes reports. Then: a re-run changes nothing; drift is shown by
-- --dry-run without being touched and repaired by apply; bad configs stop
-- with exit 2 before the host is touched; lockout guards hold.
--
-- Run as root:  build/phanes lua /usr/bin/busted spec/integration/profiles_spec.lua
-- (make integration runs it with the other integration specs)
-- PHANES_TEST_PROFILES=minimal,dev boots only those (fewer hosts); the
-- checks that need another profile are then pending.
local th = require "spec.support.testhost"

local SUITE = os.getenv("PHANES_TEST_SUITE") or "bookworm"
local RELEASE = ({ bookworm = "Debian 12", trixie = "Debian 13" })[SUITE] or SUITE
-- what differs on the host between the releases (phanes' side: lua/phanes/engine/platform.lua)
local EXPECT = ({
  bookworm = { compose = "docker%-compose version 1%.", monitor = "netdata", monitor_port = 19999,
    monitor_path = "/api/v1/info", monitor_answer = '"version"', monitor_conf = "/etc/netdata/netdata.conf",
    postgres = "15", version_id = "12" },
  trixie = { compose = "Docker Compose version v?2%.", monitor = "prometheus-node-exporter", monitor_port = 9100,
    monitor_path = "/metrics", monitor_answer = "node_exporter_build_info",
    monitor_conf = "/etc/default/prometheus-node-exporter", postgres = "17", version_id = "13" },
})[SUITE]
assert(EXPECT, "PHANES_TEST_SUITE must be bookworm or trixie")

local ALL = { "minimal", "dev", "web", "database", "coolify" }
local PROFILES, HOST = {}, {}
do
  local only = os.getenv("PHANES_TEST_PROFILES")
  for _, p in ipairs(ALL) do
    if not only or ("," .. only .. ","):find("," .. p .. ",", 1, true) then
      PROFILES[#PROFILES + 1] = p
      HOST[p] = #PROFILES
    end
  end
end

-- it_on({profiles}, name, fn): a check that needs these profiles' hosts
local function it_on(needs, name, fn)
  for _, p in ipairs(needs) do
    if not HOST[p] then return pending(name .. " (needs " .. p .. ": not in PHANES_TEST_PROFILES)") end
  end
  return it(name, fn)
end
local ADMIN = "admin"
local PG_PASSWORD, REDIS_PASSWORD = "pg-Secret-4821", "redis-Secret-9377"
local FIXTURE_URL = "http://127.0.0.1:8099/install.sh"

local function q(s) return th.quote(s) end  -- luacheck: ignore

-- try(i, cmd) -> output, ok, exit code of cmd run by sh in host i
local function try(i, cmd)
  local ok, out, code = th.exec(i, cmd)
  return out, ok, code
end

-- sh(i, cmd) -> output; raises with the output when cmd fails
local function sh(i, cmd)
  local out, ok, code = try(i, cmd)
  if not ok then error(("host %d: %s\nexit %s:\n%s"):format(i, cmd, tostring(code), out), 2) end
  return out
end

local function read_local(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read "a"
  f:close()
  return s
end

local function write_tmp(text)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

local function yaml_config(pubkey, extra)
  return ([[
username: %s
ssh_public_key: "%s"
timezone: Europe/Paris
locale: de_DE.UTF-8
security:
  permit_root_login: "no"
docker:
  source: debian
monitoring:
  bind: 127.0.0.1
devtools:
  runtimes: [python]
postgres:
  role: app
  database: app
  password: "%s"
redis:
  password: "%s"
  maxmemory: 128mb
coolify:
  install_url: "%s"
%s]]):format(ADMIN, pubkey, PG_PASSWORD, REDIS_PASSWORD, FIXTURE_URL, extra or "")
end

-- The install-script fixture: records how it was called, checks docker
-- answers, and leaves what a real install leaves (the marker).
local FIXTURE = [[#!/bin/bash
{ echo "argv0=$0 args=$*"; echo "uid=$(id -u)"; docker info --format 'docker={{.ServerVersion}}' 2>&1; } >> /root/coolify-calls
mkdir -p /data/coolify/source && echo "APP_ID=fixture" > /data/coolify/source/.env
]]

-- run `phanes ARGS` in host i as root; returns exit code, output
local function phanes(i, args)
  local out, _, code = try(i, "cd /root && /usr/local/bin/phanes " .. args)
  return code, out
end

local function json_report(i, path)
  local json = require "phanes.json"
  local text = sh(i, "cat " .. path)
  return assert(json.decode(text))
end

local function ufw_rules(i)
  local rules = {}
  for line in sh(i, "ufw status"):gmatch "[^\n]+" do
    local to, action = line:match "^(%S.-)%s%s+(%u+)%s%s+"
    if to then rules[#rules + 1] = to .. " " .. action end
  end
  table.sort(rules)
  return rules
end

local function expect_rules(ports)
  local want = {}
  for _, p in ipairs(ports) do
    want[#want + 1] = p .. " ALLOW"
    want[#want + 1] = p .. " (v6) ALLOW"
  end
  table.sort(want)
  return want
end

local function ssh_as(i, user, cmd, extra)
  return th.run(table.concat({ "ssh -i", q(th.key()), th.ssh_opts(), extra or "",
    q(user .. "@" .. th.ip(i)), q(cmd), "</dev/null" }, " "))
end

describe("profiles on " .. RELEASE .. " test hosts", function()
  local avail, why = th.available()
  if not avail then
    pending("skipped: " .. why)
    return
  end
  local binary = os.getenv("PHANES_BIN") or "build/phanes"
  local first = {}       -- profile -> { rc, out, seconds }

  setup(function()
    th.up(#PROFILES)
    local pubkey = read_local(th.key() .. ".pub"):gsub("%s+$", "")
    local cfg = write_tmp(yaml_config(pubkey))
    local fixture = write_tmp(FIXTURE)
    for _, p in ipairs(PROFILES) do
      local i = HOST[p]
      assert(th.cp(i, binary, "/usr/local/bin/phanes"))
      assert(th.cp(i, cfg, "/root/phanes.yaml"))
    end
    -- the coolify host serves the install script on loopback
    local c = HOST.coolify
    if c then
      assert(th.cp(c, fixture, "/srv/install.sh"))
      sh(c, "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox >/dev/null")
      sh(c, "mkdir -p /srv/www && mv /srv/install.sh /srv/www/install.sh && " ..
        "(setsid busybox httpd -f -vv -p 127.0.0.1:8099 -h /srv/www > /root/httpd.log 2>&1 < /dev/null &)")
    end
    os.remove(cfg)
    os.remove(fixture)
    -- all profiles at once, one host each
    local script = {}
    for _, p in ipairs(PROFILES) do
      script[#script + 1] = ("( %s exec %d sh -c %s > /dev/null 2>&1 ) &"):format(q(th.script), HOST[p],
        q("cd /root; s=$(date +%s); phanes apply " .. p .. " --config /root/phanes.yaml --report /root/first.json" ..
          " --color=never > /root/first.log 2>&1; echo \"$? $(( $(date +%s) - s ))\" > /root/first.rc"))
    end
    script[#script + 1] = "wait"
    th.run(table.concat(script, "\n"))
    for _, p in ipairs(PROFILES) do
      local rcline = try(HOST[p], "cat /root/first.rc")
      local rc, secs = rcline:match "(%d+) (%d+)"
      first[p] = { rc = tonumber(rc), seconds = tonumber(secs), out = try(HOST[p], "cat /root/first.log") }
      io.stderr:write(("[profiles] %s: first apply exit %s in %s s\n"):format(p, tostring(rc), tostring(secs)))
    end
  end)

  teardown(function() th.down() end)

  for _, p in ipairs(PROFILES) do
    it(p .. ": first apply exits 0", function()
      assert.equal(0, first[p].rc, first[p].out)
    end)
  end

  describe("the base every profile makes", function()
    it("every host runs " .. RELEASE, function()
      for _, p in ipairs(PROFILES) do
        assert.equal(EXPECT.version_id .. "\n", sh(HOST[p], ". /etc/os-release; echo $VERSION_ID"), p)
      end
    end)

    for _, p in ipairs(PROFILES) do
      it(p .. ": admin logs in with the key and sudoes; root and passwords are refused", function()
        local i = HOST[p]
        local ok, out = ssh_as(i, ADMIN, "id -un; sudo -n id -u")
        assert.is_true(ok, out)
        assert.equal(ADMIN .. "\n0\n", out)
        ok, out = ssh_as(i, "root", "true")
        assert.is_false(ok)
        assert.matches("Permission denied", out)
        -- the server offers no password method at all
        ok, out = ssh_as(i, "alice", "true", "-o PubkeyAuthentication=no -o PreferredAuthentications=password,keyboard-interactive")
        assert.is_false(ok)
        assert.matches("Permission denied %(publickey%)", out)
      end)
    end

    it("ufw lists exactly the expected rules", function()
      local want = { minimal = { "22/tcp" }, dev = { "22/tcp" }, web = { "22/tcp", "443/tcp", "80/tcp" },
        database = { "22/tcp" }, coolify = { "22/tcp", "443/tcp", "6001/tcp", "6002/tcp", "8000/tcp", "80/tcp" } }
      for _, p in ipairs(PROFILES) do
        assert.same(expect_rules(want[p]), ufw_rules(HOST[p]), p)
        assert.matches("Status: active", sh(HOST[p], "ufw status verbose"))
        assert.matches("deny %(incoming%)", sh(HOST[p], "ufw status verbose"))
      end
    end)

    it_on({ "minimal" }, "fail2ban runs the sshd jail on the SSH port", function()
      local out = sh(HOST.minimal, "fail2ban-client status sshd")
      assert.matches("Currently banned", out)
      assert.matches("port%s*=%s*22", sh(HOST.minimal, "cat /etc/fail2ban/jail.local"))
    end)

    it_on({ "minimal" }, "unattended security upgrades are configured", function()
      local out = sh(HOST.minimal, "apt-config dump")
      assert.matches('APT::Periodic::Unattended%-Upgrade "1";', out)
      assert.matches('APT::Periodic::Update%-Package%-Lists "1";', out)
      assert.matches("label=Debian%-Security", out)
      assert.matches("ii%s+unattended%-upgrades", sh(HOST.minimal, "dpkg -l unattended-upgrades"))
    end)

    it_on({ "minimal" }, "timezone and locale are set", function()
      local i = HOST.minimal
      assert.equal("/usr/share/zoneinfo/Europe/Paris\n", sh(i, "readlink /etc/localtime"))
      assert.matches("^CES?T\n$", sh(i, "date +%Z"))
      assert.matches("LANG=de_DE%.UTF%-8", sh(i, "cat /etc/default/locale"))
      assert.matches("de_DE%.utf8", sh(i, "locale -a"))
    end)

    it_on({ "minimal" }, "swap is skipped in the container, saying why", function()
      assert.matches("swap[^\n]*skipped", first.minimal.out)
      assert.matches("container", first.minimal.out)
      assert.equal("", (sh(HOST.minimal, "tail -n +2 /proc/swaps")))
    end)
  end)

  describe("services", function()
    it_on({ "dev" }, "dev: docker runs a container, the admin is in the docker group, compose and tools are there", function()
      local i = HOST.dev
      assert.matches("docker", sh(i, "id -nG " .. ADMIN))
      sh(i, "test -x /bin/busybox || (apt-get install -y -qq busybox-static >/dev/null)")
      sh(i, "rm -rf /tmp/img && mkdir -p /tmp/img/bin && cp /bin/busybox /tmp/img/bin/ && " ..
        "tar -C /tmp/img -c . | docker import - phanes-test:1 >/dev/null")
      assert.equal("hello\n", sh(i, "docker run --rm phanes-test:1 /bin/busybox echo hello"))
      assert.matches(EXPECT.compose, sh(i, "docker-compose version"))
      if SUITE ~= "bookworm" then assert.matches(EXPECT.compose, sh(i, "docker compose version")) end
      for _, tool in ipairs { "git", "gcc", "make", "python3", "jq" } do sh(i, "command -v " .. tool) end
    end)

    it_on({ "dev" }, "dev: " .. EXPECT.monitor .. " answers on localhost only", function()
      local i = HOST.dev
      local port, path = EXPECT.monitor_port, EXPECT.monitor_path
      assert.matches(EXPECT.monitor_answer, sh(i, "curl -fsS http://127.0.0.1:" .. port .. path))
      local _, ok = try(i, "curl -fsS -m 3 http://" .. th.ip(i) .. ":" .. port .. path)
      assert.is_false(ok)
      -- and not from outside either (the firewall aside: it listens on loopback only)
      assert.matches("127%.0%.0%.1:" .. port .. " ", sh(i, "ss -ltnH"))
      assert.falsy(sh(i, "ss -ltnH"):find("[*%]0]:" .. port .. " "))
    end)

    it_on({ "dev" }, "nginx (in no profile) serves its default site; a broken site is stopped by nginx -t", function()
      local i = HOST.dev
      local rc, out = phanes(i, "--modules nginx --config /root/phanes.yaml --color=never")
      assert.equal(0, rc, out)
      assert.equal("200", sh(i, "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1/"))
      sh(i, "mkdir -p /root/ngx/templates/nginx && printf 'server {\\n  no_such_directive on;\\n}\\n' " ..
        "> /root/ngx/templates/nginx/default")
      local before = sh(i, "sha256sum /etc/nginx/sites-available/default")
      rc, out = phanes(i, "--modules nginx --config /root/phanes.yaml --path /root/ngx --color=never")
      assert.equal(1, rc, out)
      assert.matches("no_such_directive", out)
      assert.equal(before, sh(i, "sha256sum /etc/nginx/sites-available/default"))
      assert.equal("200", sh(i, "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1/"))
    end)

    it_on({ "web" }, "web: caddy answers on :80, also from outside", function()
      local i = HOST.web
      assert.equal("200", sh(i, "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1/"))
      local ok, out = th.run("curl -s -m 5 -o /dev/null -w '%{http_code}' http://" .. th.ip(i) .. "/")
      assert.is_true(ok, out)
      assert.equal("200", out)
    end)

    it_on({ "database" }, "database: postgres " .. EXPECT.postgres .. " takes the role's password and refuses a wrong one", function()
      local i = HOST.database
      assert.equal("1\n", sh(i, "PGPASSWORD=" .. q(PG_PASSWORD) ..
        " psql -h 127.0.0.1 -U app -d app -Atc 'select 1'"))
      local out, ok = try(i, "LC_ALL=C PGPASSWORD=wrong psql -h 127.0.0.1 -U app -d app -Atc 'select 1'")
      assert.is_false(ok)
      assert.matches("FATAL:[^\n]*app", out)   -- the server's words follow its locale (de_DE here)
      assert.matches("127%.0%.0%.1:5432", sh(i, "ss -ltnH"))
      assert.matches("^" .. EXPECT.postgres .. "%.", sh(i, "PGPASSWORD=" .. q(PG_PASSWORD) ..
        " psql -h 127.0.0.1 -U app -d app -Atc 'show server_version'"))
    end)

    it_on({ "database" }, "database: redis requires its password", function()
      local i = HOST.database
      assert.matches("NOAUTH", (try(i, "redis-cli ping")))
      assert.equal("PONG\n", sh(i, "REDISCLI_AUTH=" .. q(REDIS_PASSWORD) .. " redis-cli ping"))
      assert.equal("maxmemory\n134217728\n", sh(i, "REDISCLI_AUTH=" .. q(REDIS_PASSWORD) ..
        " redis-cli config get maxmemory"))
    end)

    it_on({ "coolify" }, "coolify: the install script ran once, as root, after docker", function()
      local i = HOST.coolify
      local calls = sh(i, "cat /root/coolify-calls")
      assert.matches("^argv0=/var/lib/phanes/coolify%-install%.sh args=\nuid=0\ndocker=%d", calls)
      assert.matches("url:/install%.sh", sh(i, "cat /root/httpd.log"))
    end)

    it("no secret shows in output or state", function()
      for _, p in ipairs(PROFILES) do
        local i = HOST[p]
        local text = try(i, "cat /root/first.log /root/first.json /var/lib/phanes/state.json 2>/dev/null")
        assert.falsy(text:find(PG_PASSWORD, 1, true), p)
        assert.falsy(text:find(REDIS_PASSWORD, 1, true), p)
      end
    end)
  end)

  describe("a second apply", function()
    it("changes nothing on any host", function()
      for _, p in ipairs(PROFILES) do
        local i = HOST[p]
        local rc, out = phanes(i, "apply " .. p .. " --config /root/phanes.yaml --report /root/second.json --color=never")
        assert.equal(0, rc, out)
        local report = json_report(i, "/root/second.json")
        for _, m in ipairs(report.modules) do
          assert.equal(0, m.changed, p .. ": " .. m.name .. " changed on a re-run:\n" .. out)
        end
        io.stderr:write(("[profiles] %s: re-apply %.2f s, %s processes\n"):format(p, report.duration or -1,
          tostring(report.execs)))
      end
      if HOST.coolify then
        assert.equal(1, select(2, sh(HOST.coolify, "cat /root/coolify-calls"):gsub("argv0=", "")))
      end
    end)
  end)

  describe("drift", function()
    it_on({ "database" }, "--dry-run shows the edited files and the stopped service without touching them; apply restores them", function()
      local i, CONF = HOST.database, EXPECT.monitor_conf
      sh(i, "echo '# drifted' >> " .. CONF .. " && echo 'maxmemory 1gb' >> /etc/redis/redis.conf" ..
        " && systemctl stop redis-server")
      local before = sh(i, "sha256sum " .. CONF .. " /etc/redis/redis.conf")
      local rc, out = phanes(i, "apply database --config /root/phanes.yaml --dry-run --color=never -v")
      assert.equal(0, rc, out)
      assert.matches("would change file.template " .. CONF:gsub("%p", "%%%0"), out)
      assert.matches("\n%s*%-# drifted", out)                 -- the diff: the line apply would remove
      assert.matches("would change file.template /etc/redis/redis.conf[^\n]*secret content changed", out)
      assert.falsy(out:find("maxmemory 1gb", 1, true))      -- a secret file's diff is not shown
      assert.falsy(out:find(REDIS_PASSWORD, 1, true))
      assert.matches("would change service.running redis%-server[^\n]*start", out)
      assert.equal(before, sh(i, "sha256sum " .. CONF .. " /etc/redis/redis.conf"))
      assert.equal("inactive\n", (try(i, "systemctl is-active redis-server")))
      rc, out = phanes(i, "apply database --config /root/phanes.yaml --color=never")
      assert.equal(0, rc, out)
      assert.falsy(sh(i, "cat " .. CONF):find("# drifted", 1, true))
      assert.falsy(sh(i, "cat /etc/redis/redis.conf"):find("maxmemory 1gb", 1, true))
      assert.equal("active\nactive\n", sh(i, "systemctl is-active redis-server " .. EXPECT.monitor))
      assert.equal("PONG\n", sh(i, "REDISCLI_AUTH=" .. q(REDIS_PASSWORD) .. " redis-cli ping"))
      -- and it is quiet again
      rc, out = phanes(i, "apply database --config /root/phanes.yaml --report /root/third.json --color=never")
      assert.equal(0, rc, out)
      for _, m in ipairs(json_report(i, "/root/third.json").modules) do assert.equal(0, m.changed, m.name) end
    end)
  end)

  describe("third-party repositories", function()
    it_on({ "minimal" }, "docker and caddy official, postgres pgdg: planned by --dry-run (repo line, key, packages), nothing written", function()
      local i = HOST.minimal
      sh(i, "sed -e 's/^  source: debian/  source: official/' /root/phanes.yaml > /root/official.yaml && " ..
        "printf 'caddy:\\n  source: official\\n' >> /root/official.yaml && " ..
        "sed -i 's/^  database: app/  database: app\\n  source: pgdg\\n  version: \"16\"/' /root/official.yaml")
      local rc, out = phanes(i, "--modules docker,caddy,postgres --config /root/official.yaml --dry-run --color=never")
      assert.equal(0, rc, out)
      for _, want in ipairs {
        "would change apt.repo /etc/apt/sources.list.d/docker.list[^\n]*fetch key https://download%.docker%.com/linux/debian/gpg to /etc/apt/keyrings/docker%.asc",
        "%+deb %[arch=amd64 signed%-by=/etc/apt/keyrings/docker%.asc%] https://download%.docker%.com/linux/debian " .. SUITE .. " stable",
        "would change pkg%.installed docker%-ce docker%-ce%-cli containerd%.io docker%-buildx%-plugin docker%-compose%-plugin",
        "would change apt.repo /etc/apt/sources.list.d/caddy%-stable.list[^\n]*https://dl%.cloudsmith%.io/public/caddy/stable/gpg%.key",
        "%+deb %[signed%-by=/etc/apt/keyrings/caddy%-stable%.asc%] https://dl%.cloudsmith%.io/public/caddy/stable/deb/debian any%-version main",
        "%+deb %[signed%-by=/etc/apt/keyrings/pgdg%.asc%] https://apt%.postgresql%.org/pub/repos/apt " .. SUITE .. "%-pgdg main",
        "would change pkg%.installed postgresql%-16 postgresql%-client%-16",
      } do
        assert.matches(want, out)
      end
      -- (Debian 13's own sources are /etc/apt/sources.list.d/debian.sources)
      assert.equal("", sh(i, "ls -A /etc/apt/sources.list.d | grep -vx debian.sources; ls -A /etc/apt/keyrings 2>/dev/null; true"))
    end)
  end)

  describe("bad config", function()
    local function untouched_after(i, args)
      sh(i, "touch /root/marker && sleep 1")
      local rc, out = phanes(i, args)
      local changed = try(i, "find /etc /home /var/lib/phanes -newer /root/marker 2>/dev/null")
      return rc, out, changed
    end

    it_on({ "minimal" }, "a wrong type, a missing required key, an unknown module: exit 2, host untouched", function()
      local i = HOST.minimal
      sh(i, "sed 's/^  permit_root_login.*/  ssh_port: twenty-two/' /root/phanes.yaml > /root/bad-type.yaml")
      sh(i, "grep -v '^username:' /root/phanes.yaml > /root/bad-missing.yaml")
      for _, case in ipairs {
        { "apply minimal --config /root/bad-type.yaml", "security%.ssh_port" },
        { "apply minimal --config /root/bad-missing.yaml", "username" },
        { "--modules baseline,nosuchmodule --config /root/phanes.yaml", "nosuchmodule" },
      } do
        local rc, out, changed = untouched_after(i, case[1])
        assert.equal(2, rc, case[1] .. "\n" .. out)
        assert.matches(case[2], out)
        assert.equal("", changed, case[1] .. " touched the host")
      end
    end)
  end)

  describe("lockout safety", function()
    it_on({ "minimal" }, "password login off without any key is refused before sshd is touched", function()
      local i = HOST.minimal
      sh(i, "sed -e 's/^username: .*/username: nokey/' -e '/^ssh_public_key:/d' /root/phanes.yaml > /root/nokey.yaml")
      local before = sh(i, "sha256sum /etc/ssh/sshd_config")
      local rc, out = phanes(i, "apply minimal --config /root/nokey.yaml --color=never")
      assert.equal(1, rc, out)
      assert.matches("refusing to turn off SSH password login", out)
      assert.equal(before, sh(i, "sha256sum /etc/ssh/sshd_config"))
      assert.is_true((ssh_as(i, ADMIN, "true")))
    end)

    it_on({ "minimal" }, "a broken sshd_config template is stopped by sshd -t and sshd keeps accepting logins", function()
      local i = HOST.minimal
      sh(i, "mkdir -p /root/override/templates/security && " ..
        "printf 'Port 22\\nNoSuchOption yes\\nPasswordAuthentication yes\\n' > /root/override/templates/security/sshd_config")
      local before = sh(i, "sha256sum /etc/ssh/sshd_config")
      local rc, out = phanes(i, "apply minimal --config /root/phanes.yaml --path /root/override --color=never")
      assert.equal(1, rc, out)
      assert.matches("sshd", out)
      assert.matches("NoSuchOption", out)
      assert.equal(before, sh(i, "sha256sum /etc/ssh/sshd_config"))
      local ok, who = ssh_as(i, ADMIN, "id -un")
      assert.is_true(ok, who)
      assert.equal(ADMIN .. "\n", who)
    end)

    it_on({ "minimal" }, "with ssh.socket (socket activation) enabled, sshd and ufw are left alone and logins keep working", function()
      local i = HOST.minimal
      sh(i, "systemctl disable --now ssh.service && systemctl enable --now ssh.socket")
      local before = sh(i, "sha256sum /etc/ssh/sshd_config") .. table.concat(ufw_rules(i), ",")
      sh(i, "sed 's/^  permit_root_login.*/&\\n  ssh_port: 2222/' /root/phanes.yaml > /root/port.yaml")
      assert.matches("ssh_port: 2222", sh(i, "cat /root/port.yaml"))
      local rc, out = phanes(i, "apply minimal --config /root/port.yaml --color=never")
      assert.equal(1, rc, out)
      assert.matches("ssh%.socket %(socket activation%) is enabled", out)
      assert.equal(before, sh(i, "sha256sum /etc/ssh/sshd_config") .. table.concat(ufw_rules(i), ","))
      local ok, who = ssh_as(i, ADMIN, "id -un")
      assert.is_true(ok, who)
      -- the way out the message gives. The sshd that socket activation
      -- started can outlive the socket and keep port 22 (ssh.service has
      -- KillMode=process): it is stopped before ssh.service starts on its own.
      sh(i, "systemctl disable --now ssh.socket && systemctl stop ssh.service; pkill -x sshd; " ..
        "for n in 1 2 3 4 5 6 7 8 9 10; do ss -Hltn 'sport = :22' | grep -q . || break; sleep 0.3; done; " ..
        "systemctl enable --now ssh.service || { sleep 1; systemctl start ssh.service; } || " ..
        "{ journalctl -u ssh.service --no-pager | tail -8; exit 1; }")
      rc, out = phanes(i, "apply minimal --config /root/phanes.yaml --color=never")
      assert.equal(0, rc, out)
      ok, who = ssh_as(i, ADMIN, "id -un")
      assert.is_true(ok, who)
    end)
  end)
end)
