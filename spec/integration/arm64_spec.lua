-- The aarch64 binary on a real arm64 Debian 12 test host: debootstrap
-- --arch arm64, systemd as PID 1 and sshd, every program run by qemu user
-- emulation through binfmt_misc (PHANES_TEST_ARCH=arm64: spec/hosts/testhost
-- registers the handler only when none is there and removes it at teardown).
-- `make test-arm64` runs it; skipped where emulation is not available.
--
-- What qemu-user cannot do here (Debian 12's 7.2 and Debian 13's 10.0
-- alike): open a NETLINK_NETFILTER socket, so iptables (nft) and with it ufw
-- fail with "Protocol not supported". The security module's firewall is
-- therefore proven on x86_64 hosts only; here the spec checks that minimal
-- stops there without touching sshd, and applies the rest for real.
local th = require "spec.support.testhost"
local fakeexec = require "spec.support.fakeexec"
local file = require "phanes.file"

local q = th.quote
local ARM = require("lfs").currentdir() .. "/build/aarch64/phanes"
local QEMU = os.getenv("PHANES_TEST_QEMU") or "/usr/bin/qemu-aarch64-static"

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read "a"
  local _, _, code = p:close()
  return code, out
end

-- true, or false and why arm64 hosts cannot run here
local function emulation()
  local ok, why = th.available()
  if not ok then return false, why end
  if os.getenv("PHANES_TEST_ARCH") ~= "arm64" then
    return false, "arm64 hosts run with PHANES_TEST_ARCH=arm64 (make test-arm64)"
  end
  if not file.stat(QEMU) then return false, QEMU .. " missing (apt-get install qemu-user-static)" end
  local code = sh("test -e /proc/sys/fs/binfmt_misc/register || grep -qw binfmt_misc /proc/filesystems")
  if code ~= 0 then return false, "the kernel has no binfmt_misc" end
  return true
end

describe("an arm64 test host under qemu user emulation", function()
  local ok, why = emulation()
  if not ok then
    pending("skipped: " .. why)
    return
  end
  local h, key, t0
  local function host(cmd)
    local okc, out, code = th.exec(1, cmd)
    return code, out, okc
  end
  local function phanes_on_host(args)
    return host("cd /root && /usr/local/bin/phanes " .. args .. " --color=never")
  end

  -- binfmt_misc as this machine had it: mounted or not, and its handlers
  local function binfmt_state()
    local _, out = sh("findmnt -rn -t binfmt_misc -o TARGET; ls /proc/sys/fs/binfmt_misc 2>/dev/null")
    return out
  end
  local binfmt_before

  setup(function()
    t0 = os.time()
    binfmt_before = binfmt_state()
    if not file.stat(ARM, true) then
      local code, out = sh("make --no-print-directory ARCH=aarch64")
      assert.equal(0, code, out)
    end
    th.up(1)
    io.stderr:write(("[arm64] host up in %d s\n"):format(os.time() - t0))
    key = th.key()
    h = fakeexec.tmpdir()
    local pub = assert(th.read(key .. ".pub")):gsub("%s+$", "")
    local cfg = h .. "/phanes.yaml"
    assert(file.write(cfg, ('username: admin\nssh_public_key: "%s"\nsecurity:\n  permit_root_login: "no"\n'):format(pub)))
    assert(th.cp(1, ARM, "/usr/local/bin/phanes"))
    assert(th.cp(1, cfg, "/root/phanes.yaml"))
  end)
  teardown(function()
    th.down()
    if h then fakeexec.rmtree(h) end
    if t0 then io.stderr:write(("[arm64] spec group in %d s\n"):format(os.time() - t0)) end
  end)

  it("is an arm64 Debian 12 machine running systemd", function()
    local code, out = host("uname -m; dpkg --print-architecture; . /etc/os-release; echo $VERSION_ID; systemctl is-system-running")
    assert.equal(0, code, out)
    assert.equal("aarch64\narm64\n12\nrunning\n", out)
  end)

  it("phanes version and facts run there and say aarch64", function()
    local code, out = phanes_on_host("version --json")
    assert.equal(0, code, out)
    assert.matches('"arch": "aarch64"', out, 1, true)
    code, out = phanes_on_host("facts")
    assert.equal(0, code, out)
    assert.matches("\narch%s+aarch64\n", out)
    assert.matches("\nos%.version_id%s+12\n", out)
  end)

  it("a remote run from this x86_64 controller uploads the aarch64 binary and runs it", function()
    local bin = h .. "/bin/phanes"
    assert(file.mkdir(h .. "/bin", { mode = tonumber("0755", 8) }))
    local code, out = sh("cp " .. q(require("phanes.sys").exe()) .. " " .. q(bin))
    assert.equal(0, code, out)
    local t = os.time()
    code, out = sh("cd " .. q(h) .. " && HOME=" .. q(h) .. " SSH_AUTH_SOCK= " .. q(bin) .. " --remote root@"
      .. th.ip(1) .. " --key " .. q(key) .. " --binary " .. q(ARM) .. " facts </dev/null")
    io.stderr:write(("[arm64] remote facts in %d s\n"):format(os.time() - t))
    assert.equal(0, code, out)
    assert.matches("arch%s+aarch64", out)
    -- what ran there is the uploaded arm64 binary (ELF machine 0xb7)
    local sha = assert(file.sha256_file(ARM))
    local _, head = host("od -An -tx1 -j18 -N2 /root/.cache/phanes/phanes-" .. sha)
    assert.equal("b7 00", head:match "%x%x %x%x", head)
  end)

  it("dev's dry run plans every module and changes nothing", function()
    local _, before = host("dpkg -l | wc -l; ls /home")
    local code, out = phanes_on_host("apply dev --config /root/phanes.yaml --dry-run")
    assert.equal(0, code, out)
    assert.matches("dry run done, nothing changed", out, 1, true)
    for _, m in ipairs { "baseline", "user", "security", "docker", "monitoring", "devtools" } do
      assert.matches("\n" .. m .. "%s+would change", out)
    end
    local _, after = host("dpkg -l | wc -l; ls /home")
    assert.equal(before, after)
  end)

  it("minimal: applied for real; the firewall stops where qemu-user cannot go, sshd untouched", function()
    local _, sshd_before = host("sha256sum /etc/ssh/sshd_config")
    local t = os.time()
    local code, out = phanes_on_host("apply minimal --config /root/phanes.yaml")
    io.stderr:write(("[arm64] apply minimal in %d s\n"):format(os.time() - t))
    -- ufw needs iptables' netfilter netlink socket: qemu-user refuses it
    assert.equal(1, code, out)
    assert.matches("module 'security' failed: ufw.allow 22/tcp", out, 1, true)
    local _, ipt = host("iptables -S")
    assert.matches("Protocol not supported", ipt, 1, true)
    -- what ran before it is on the host
    local c2, who = host("id -un admin; stat -c '%a %U' /home/admin/.ssh/authorized_keys; cat /etc/timezone")
    assert.equal(0, c2, who)
    assert.matches("^admin\n600 admin\n", who)
    -- sshd was not touched and the admin logs in with the key and sudoes
    local _, sshd_after = host("sha256sum /etc/ssh/sshd_config")
    assert.equal(sshd_before, sshd_after)
    local okl, login = th.ssh(1, "id -un; sudo -n id -u", "admin")
    assert.is_true(okl, login)
    assert.equal("admin\n0\n", login)
  end)

  it("minimal's other modules apply for real, and a re-run changes nothing", function()
    local t = os.time()
    local mods = "--modules baseline,user,swap,updates --config /root/phanes.yaml"
    local code, out = phanes_on_host(mods)
    io.stderr:write(("[arm64] baseline,user,swap,updates in %d s\n"):format(os.time() - t))
    assert.equal(0, code, out)
    local c2, pkgs = host("dpkg-query -W -f '${Status} ${Architecture}\\n' unattended-upgrades; apt-config dump | grep -c Unattended-Upgrade")
    assert.equal(0, c2, pkgs)
    assert.matches("^install ok installed all\n[1-9]", pkgs)
    code, out = phanes_on_host(mods)
    assert.equal(0, code, out)
    assert.is_nil(out:find("\n%s*changed ", 1), out)
  end)

  it("teardown leaves binfmt_misc as it was", function()
    local _, during = sh("ls /proc/sys/fs/binfmt_misc")
    assert.matches("aarch64", during)
    th.down()
    assert.equal(binfmt_before, binfmt_state())
  end)
end)
