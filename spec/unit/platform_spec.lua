-- lua/phanes/engine/platform.lua: one table of what differs between releases, and
-- the modules' plans that read it (Debian 12 and 13 side by side).
local platform = require "phanes.engine.platform"
local plan = require "support.plan"
local facts = require "phanes.engine.facts"

local BOOKWORM = { id = "debian", version_id = "12", codename = "bookworm", pretty_name = "Debian GNU/Linux 12 (bookworm)" }
local TRIXIE = { id = "debian", version_id = "13", codename = "trixie", pretty_name = "Debian GNU/Linux 13 (trixie)" }

local function config(over)
  local c = { username = "deploy", ssh_public_key = plan.KEY, ssh_public_keys = {}, timezone = "UTC",
    locale = "en_US.UTF-8" }
  for k, v in pairs(over or {}) do c[k] = v end
  return c
end

local function run(name, os, over, opts)
  opts = opts or {}
  opts.facts = { os = os }
  return plan.run(plan.module(name), config(over), opts)
end

describe("platform", function()
  it("knows Debian 12 and 13 by version and, without VERSION_ID, by codename", function()
    local b, t = platform.of(BOOKWORM), platform.of(TRIXIE)
    assert.equal("Debian 12", b.name)
    assert.equal("15", b.postgres_version)
    assert.is_true(b.netdata)
    assert.equal("Debian 13", t.name)
    assert.equal("17", t.postgres_version)
    assert.is_false(t.netdata)
    assert.is_true(t.compose_v2)
    assert.is_true(t.known)
    local testing = platform.of { id = "debian", codename = "trixie" }
    assert.equal("17", testing.postgres_version)
  end)

  it("takes the release from os-release as facts parse it", function()
    local os = facts.parse_os_release([[
PRETTY_NAME="Debian GNU/Linux 13 (trixie)"
NAME="Debian GNU/Linux"
VERSION_ID="13"
VERSION="13 (trixie)"
VERSION_CODENAME=trixie
ID=debian
]])
    assert.equal("Debian 13", platform.of(os).name)
  end)

  it("an unknown release gets its family's newest entry and no PostgreSQL guess", function()
    local p = platform.of { id = "debian", version_id = "14", codename = "forky", pretty_name = "Debian 14" }
    assert.is_false(p.known)
    assert.is_nil(p.postgres_version)
    assert.equal("Debian 14", p.name)
    assert.same({ "docker.io", "docker-cli" }, p.docker_packages)
    assert.is_false(platform.of { id = "alpine", version_id = "3.20" }.known)
  end)

  it("lazy reads the facts only when asked", function()
    local asked = 0
    local f = setmetatable({}, { __index = function(_, k)
      asked = asked + 1
      return k == "os" and TRIXIE or nil
    end })
    local p = platform.lazy(f)
    assert.equal(0, asked)
    assert.equal("17", p.postgres_version)
    assert.is_false(p.netdata)
    assert.equal(1, asked)
  end)
end)

describe("modules on Debian 12 and 13", function()
  it("monitoring auto: netdata on 12, the node exporter on loopback on 13", function()
    local calls = run("monitoring", BOOKWORM, nil, { dry_run = true })
    assert.same({ "netdata" }, plan.find(calls, "pkg.installed")[1].args)
    calls = run("monitoring", TRIXIE, nil, { dry_run = true })
    local conf = plan.find(calls, "file.template")[1]
    assert.equal("/etc/default/prometheus-node-exporter", conf.args.path)
    assert.truthy(conf.rendered:find('ARGS="--web.listen-address=127.0.0.1:9100"', 1, true))
    assert.same({ "prometheus-node-exporter" }, plan.find(calls, "pkg.installed")[1].args)
    -- the arguments are in place before the package starts the service
    local kinds = {}
    for _, c in ipairs(calls) do kinds[#kinds + 1] = c.kind end
    assert.same({ "file.template", "pkg.installed", "service.running" }, kinds)
    assert.equal("prometheus-node-exporter", plan.find(calls, "service.running")[1].args[1])
  end)

  it("monitoring: an IPv6 bind gets brackets; the service must answer over HTTP after a change", function()
    local calls = run("monitoring", TRIXIE, { monitoring = { bind = "::1", node_exporter_port = 9200 } })
    assert.truthy(plan.find(calls, "file.template")[1].rendered:find("=[::1]:9200", 1, true))
    local exec = plan.find(calls, "exec")[1]
    assert.equal("http://[::1]:9200/metrics", exec.args.argv[#exec.args.argv])
    calls = run("monitoring", BOOKWORM, { monitoring = { bind = "0.0.0.0" } })
    exec = plan.find(calls, "exec")[1]
    assert.equal("http://127.0.0.1:19999/api/v1/info", exec.args.argv[#exec.args.argv])
    -- nothing changed: no check, no process
    calls = run("monitoring", TRIXIE, nil, { changed = false })
    assert.same({}, plan.find(calls, "exec"))
  end)

  it("monitoring: a backend that does not answer fails the module, naming the URL", function()
    local ok, err = pcall(run, "monitoring", TRIXIE, nil, { exec = function()
      return { code = 7, stdout = "", stderr = "curl: (7) Failed to connect" }
    end })
    assert.is_false(ok)
    assert.matches("prometheus%-node%-exporter does not answer on http://127%.0%.0%.1:9100/metrics", tostring(err))
  end)

  it("monitoring backend netdata on Debian 13 stops, saying what to set", function()
    local ok, err = pcall(run, "monitoring", TRIXIE, { monitoring = { backend = "netdata" } }, { dry_run = true })
    assert.is_false(ok)
    assert.matches("Debian 13 has no netdata package: set monitoring%.backend: node_exporter", tostring(err))
    local calls = run("monitoring", BOOKWORM, { monitoring = { backend = "node_exporter" } }, { dry_run = true })
    assert.same({ "prometheus-node-exporter" }, plan.find(calls, "pkg.installed")[1].args)
  end)

  it("postgres: the release's major version (15, 17)", function()
    for os, v in pairs { [BOOKWORM] = "15", [TRIXIE] = "17" } do
      local calls = run("postgres", os, { postgres = { password = "x" } }, { dry_run = true })
      assert.same({ "postgresql-" .. v, "postgresql-client-" .. v }, plan.find(calls, "pkg.installed")[1].args)
      assert.equal("/etc/postgresql/" .. v .. "/main/conf.d/phanes.conf", plan.find(calls, "file.template")[1].args.path)
    end
    local ok, err = pcall(run, "postgres", TRIXIE, { postgres = { password = "x", version = "15" } }, { dry_run = true })
    assert.is_false(ok)
    assert.matches("postgres%.version 15 is not in Debian GNU/Linux 13 %(trixie%) %(it has 17%)", tostring(err))
  end)

  it("docker source debian: docker-cli and Compose v2 on 13", function()
    local calls = run("docker", BOOKWORM, { docker = { source = "debian" } }, { dry_run = true })
    assert.same({ "docker.io", "docker-compose" }, plan.find(calls, "pkg.installed")[1].args)
    calls = run("docker", TRIXIE, { docker = { source = "debian" } }, { dry_run = true })
    assert.same({ "docker.io", "docker-cli", "docker-compose" }, plan.find(calls, "pkg.installed")[1].args)
    calls = run("docker", TRIXIE, { docker = { source = "official" } }, { dry_run = true })
    assert.truthy(plan.find(calls, "apt.repo")[1].args.line:find(" trixie stable", 1, true))
  end)

  it("security: fail2ban's nftables ban action on 13", function()
    local function f2b(os)
      local calls = run("security", os, nil, { dry_run = true })
      return plan.find(calls, "pkg.installed", function(a) return a[1] == "fail2ban" end)[1].args
    end
    assert.same({ "fail2ban", "python3-systemd" }, f2b(BOOKWORM))
    assert.same({ "fail2ban", "python3-systemd", "nftables" }, f2b(TRIXIE))
  end)
end)

describe("security and ssh.socket", function()
  it("refuses to touch sshd or ufw while ssh.socket (socket activation) is enabled", function()
    local files = plan.host_files()
    files["/etc/systemd/system/sockets.target.wants/ssh.socket"] = ""
    for _, os in ipairs { BOOKWORM, TRIXIE } do
      local ok, err = pcall(run, "security", os, nil, { files = files })
      assert.is_false(ok)
      assert.matches("ssh%.socket %(socket activation%) is enabled", tostring(err))
      assert.matches("systemctl disable %-%-now ssh%.socket && systemctl enable %-%-now ssh%.service", tostring(err))
    end
    -- (nothing touched: proven on the test hosts, profiles_spec "lockout safety")
    assert.is_true(#run("security", TRIXIE, nil, { dry_run = true }) > 0)
  end)
end)
