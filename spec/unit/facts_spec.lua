-- Facts: raw files and command output (spec/fixtures/facts) -> parsed facts.
local facts = require "phanes.engine.facts"
local fakeexec = require "support.fakeexec"
local fixture = function(name) return fakeexec.fixture("facts/" .. name) end

describe("facts", function()
  describe("os-release", function()
    it("parses Debian 12", function()
      local os = facts.parse_os_release(fixture "os-release-debian12")
      assert.same({ id = "debian", version_id = "12", codename = "bookworm",
        pretty_name = "Debian GNU/Linux 12 (bookworm)", name = "Debian GNU/Linux" }, os)
    end)

    it("parses Ubuntu 22.04", function()
      local os = facts.parse_os_release(fixture "os-release-ubuntu2204")
      assert.same({ id = "ubuntu", version_id = "22.04", codename = "jammy", id_like = "debian",
        pretty_name = "Ubuntu 22.04.4 LTS", name = "Ubuntu" }, os)
    end)

    it("takes the codename from VERSION and unquotes escapes", function()
      local os = facts.parse_os_release 'ID="Debian"\nVERSION="11 (bullseye)"\nPRETTY_NAME="A \\"quoted\\" name"\n'
      assert.equal("debian", os.id)
      assert.equal("bullseye", os.codename)
      assert.equal('A "quoted" name', os.pretty_name)
    end)

    it("survives an empty file", function()
      local os = facts.parse_os_release ""
      assert.equal("linux", os.id)
      assert.is_nil(os.version_id)
    end)
  end)

  it("parses /proc/meminfo, cpuinfo and swaps", function()
    assert.equal(24105, facts.parse_meminfo(fixture "meminfo"))
    assert.equal(2, facts.parse_cpuinfo(fixture "cpuinfo"))
    assert.equal(4, facts.parse_cpuinfo "processor\t: 0\nx\n\nprocessor\t: 1\n\nprocessor : 2\nprocessor: 3\n")
    local swap = facts.parse_swaps(fixture "swaps")
    assert.equal(2047 + 1023, swap.total_mb)
    assert.same({ path = "/swapfile", type = "file", size_mb = 2047, used_mb = 1 }, swap.devices[1])
    assert.equal("/dev/sda3 x", swap.devices[2].path)
    assert.same({ total_mb = 0, devices = {} }, facts.parse_swaps "Filename Type Size Used Priority\n")
  end)

  it("parses dpkg-query output: installed, removed, half-installed, multi-arch", function()
    local db = facts.parse_dpkg(fixture "dpkg-query.txt")
    assert.same({ installed = true, status = "ii ", version = "1.22.1-9" }, db.nginx)
    assert.is_true(db.apt.installed)
    assert.is_false(db.telnet.installed)     -- rc: config files only
    assert.is_false(db.halfdone.installed)   -- iU: unpacked, not configured
    assert.is_true(db.libfoo1.installed)     -- ii on one arch, un on another
    assert.is_nil(db["redis-server"])
    assert.equal("1:9.2p1-2+deb12u2", db["openssh-server"].version)
  end)

  it("reads dpkg's status file as dpkg-query would print it", function()
    local from_file = facts.parse_dpkg_status(fixture "dpkg-status.txt")
    local from_query = facts.parse_dpkg(fixture "dpkg-query.txt")
    local names = {}
    for name, p in pairs(from_query) do
      names[#names + 1] = name
      assert.same(p, from_file[name], name)
    end
    assert.is_true(#names > 30)
    assert.is_nil(from_file["not-a-package"])   -- description lines are not stanzas
    assert.equal("0.17+2.4-2", from_file.telnet.version)
    assert.same({ installed = false, status = "iHR", version = "3.0" }, from_file.broken)
    assert.same({ installed = false, status = "it ", version = "1.1" }, from_file.trig)
    assert.same({}, facts.parse_dpkg_status "")
  end)

  it("parses systemctl show blocks, under the id, the aliases and the short name", function()
    local units = facts.parse_systemctl_show(fixture "systemctl-show.txt")
    assert.same({ id = "nginx.service", load = "loaded", active = "active", sub = "running",
      file_state = "enabled" }, units.nginx)
    assert.equal(units["nginx.service"], units.nginx)
    assert.equal(units.ssh, units.sshd)      -- alias
    assert.equal("inactive", units.cron.active)
    assert.equal("disabled", units.cron.file_state)
    assert.equal("not-found", units.nope.load)
    assert.equal("listening", units["docker.socket"].sub)
    assert.is_nil(units.docker)              -- the socket is not the service
  end)

  it("parses /etc/passwd and /etc/group", function()
    local users = facts.parse_passwd(fixture "passwd")
    assert.same({ name = "deploy", uid = 1000, gid = 1000, gecos = "Deploy,,,", home = "/home/deploy",
      shell = "/bin/sh" }, users.deploy)
    assert.equal("/nonexistent", users._apt.home)
    local groups = facts.parse_group(fixture "group")
    assert.same({ deploy = true }, groups.adm.members)
    assert.equal(999, groups.docker.gid)
    assert.same({}, groups.sudo.members)
  end)

  describe("from a root of files", function()
    local dir
    before_each(function() dir = fakeexec.tmpdir() end)
    after_each(function() fakeexec.rmtree(dir) end)

    local function paths(extra)
      local p = {
        os_release = dir .. "/os-release", os_release_fallback = dir .. "/usr-os-release",
        meminfo = dir .. "/meminfo", cpuinfo = dir .. "/cpuinfo", swaps = dir .. "/swaps",
        hostname = dir .. "/hostname", osrelease = dir .. "/osrelease",
        proc_sys_probe = dir .. "/swappiness", systemd_container = dir .. "/container",
        systemd_system = dir .. "/systemd-system", dockerenv = dir .. "/.dockerenv",
        containerenv = dir .. "/.containerenv", pid1_environ = dir .. "/environ",
        pid1_comm = dir .. "/comm",
      }
      for k, v in pairs(extra or {}) do p[k] = v end
      return p
    end

    it("reads every fact lazily, once", function()
      fakeexec.write(dir .. "/os-release", fixture "os-release-ubuntu2204")
      fakeexec.write(dir .. "/meminfo", fixture "meminfo")
      fakeexec.write(dir .. "/hostname", "web1\n")
      fakeexec.write(dir .. "/comm", "init\n")
      local f = facts.new(paths())
      assert.equal("ubuntu", f.os.id)
      fakeexec.write(dir .. "/os-release", fixture "os-release-debian12")
      assert.equal("ubuntu", f.os.id)       -- cached
      assert.equal(24105, f.memory_mb)
      assert.equal("web1", f.hostname)
      assert.equal("init", f.init)
      assert.is_false(f.container)
      assert.is_false(f.proc_sys_writable)  -- no such file to open
      assert.has_error(function() return f.nope end, "unknown fact 'nope'")
    end)

    it("falls back to /usr/lib/os-release", function()
      fakeexec.write(dir .. "/usr-os-release", fixture "os-release-debian12")
      assert.equal("bookworm", facts.new(paths()).os.codename)
    end)

    it("detects systemd and containers", function()
      assert(require("lfs").mkdir(dir .. "/systemd-system"))
      fakeexec.write(dir .. "/container", "lxc\n")
      local f = facts.new(paths())
      assert.equal("systemd", f.init)
      assert.equal("lxc", f.container)
      os.remove(dir .. "/container")
      fakeexec.write(dir .. "/.dockerenv", "")
      assert.equal("docker", facts.new(paths()).container)
      os.remove(dir .. "/.dockerenv")
      fakeexec.write(dir .. "/environ", "PATH=/bin\0container=podman\0HOME=/\0")
      assert.equal("podman", facts.new(paths()).container)
    end)

    it("sees a writable /proc/sys", function()
      fakeexec.write(dir .. "/swappiness", "60\n")
      assert.is_true(facts.new(paths()).proc_sys_writable)
      assert.equal("60\n", fakeexec.read(dir .. "/swappiness"))
    end)

    it("gathers everything into a plain table, with no process", function()
      fakeexec.write(dir .. "/os-release", fixture "os-release-debian12")
      fakeexec.write(dir .. "/swaps", fixture "swaps")
      fakeexec.write(dir .. "/meminfo", fixture "meminfo")
      local fake = fakeexec.new()
      local all = facts.gather(fake.exec, paths())
      assert.equal(0, fake:count())
      for _, k in ipairs(facts.names) do assert.is_not_nil(all[k], k) end
      assert.is_nil(getmetatable(all))
      assert.equal("debian", all.os.id)
      assert.equal(3070, all.swap.total_mb)
      assert.is_string(all.arch)
    end)
  end)

  it("reads this machine without error", function()
    local all = facts.gather()
    assert.is_string(all.os.id)
    assert.is_true(all.cpus >= 1)
    assert.is_true(all.memory_mb > 0)
  end)
end)
