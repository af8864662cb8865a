-- Hardening that auditors confirm, on one Debian 12 test host: `apply
-- minimal` with security.level baseline, then strict. Proof is read on the host: ssh-audit
-- (0 failures, parsed), `sshd -T`, the files and their content, a re-run that
-- changes and restarts nothing, the admin's key login with sudo, and phanes
-- itself still running over SSH. The Lynis hardening index and the ssh-audit
-- counts are printed (fresh, baseline, strict), not asserted: Lynis varies.
local th = require "spec.support.testhost"
local on = require "spec.support.onhost"
local runcli = require "spec.support.runcli"
local json = require "phanes.json"

local q = th.quote
local ADMIN = "deploy"

local BIN = th.bin()
local sh = on.sh

-- the text of a file of this machine; raises when it cannot be read
local function read_local(path) return assert(runcli.read(path)) end

-- ssh-audit of the host's own sshd: failures, warnings, the lines
local function ssh_audit()
  local _, out = th.exec(1, "ssh-audit -n 127.0.0.1")
  local fails, warns, lines = 0, 0, {}
  for line in out:gmatch "[^\n]+" do
    if line:match "%[fail%]" then fails = fails + 1; lines[#lines + 1] = line end
    if line:match "%[warn%]" then warns = warns + 1 end
  end
  assert(out:match "%(kex%)", "ssh-audit printed no algorithms:\n" .. out)
  return fails, warns, table.concat(lines, "\n")
end

local function lynis_index()
  local _, out = th.exec(1, "lynis audit system --quick --no-colors 2>&1")
  return tonumber(out:match "Hardening index : (%d+)") or -1
end

local function figures(label)
  local fails, warns = ssh_audit()
  io.stderr:write(("[hardening] %-9s Lynis hardening index %d, ssh-audit %d failures %d warnings\n")
    :format(label, lynis_index(), fails, warns))
end

-- sshd -T as a map: keyword -> value (the first one)
local function sshd_t()
  local map = {}
  for k, v in sh("sshd -T"):gmatch "(%S+) ([^\n]*)" do
    if map[k] == nil then map[k] = v end
  end
  return map
end

local function apply(cfg, report)
  local out, code, err = on.phanes("apply minimal --config /root/" .. cfg .. " --color=never --report /root/" .. report)
  return code, out .. err
end

-- phanes --remote ADMIN@host 1 --modules security --config cfg, at home
-- -> exit code, output
local function remote(home, cfg)
  return runcli.at_home(home, { "--remote", ADMIN .. "@" .. th.ip(1), "--key", th.key(),
    "--modules", "security", "--config", cfg, "--color=never" })
end

-- every resource of the report "ok"
local function all_ok(report)
  local r = assert(json.decode(sh("cat /root/" .. report)))
  local moved = {}
  for _, m in ipairs(r.modules) do
    for _, res in ipairs(m.resources or {}) do
      if res.status ~= "ok" then moved[#moved + 1] = res.resource .. " " .. res.target .. ": " .. res.status end
    end
  end
  return moved, r
end

local function main_pids()
  return sh("systemctl show -p MainPID --value ssh fail2ban")
end

local function ssh_admin(cmd)
  return th.run(table.concat({ "ssh -i", q(th.key()), th.ssh_opts(), "-o Ciphers=aes256-ctr -o MACs=hmac-sha2-256",
    q(ADMIN .. "@" .. th.ip(1)), q(cmd), "</dev/null" }, " "))
end

describe("security hardening on a test host", function()
  local avail, why = th.available()
  if not avail then
    pending("skipped: " .. why)
    return
  end
  local home

  setup(function()
    th.up(1)
    sh("apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ssh-audit lynis >/dev/null")
    figures("fresh")
    home = runcli.tmpdir()
    local pubkey = read_local(th.key() .. ".pub"):gsub("%s+$", "")
    for _, level in ipairs { "baseline", "strict" } do
      on.put("/root/" .. level .. ".yaml",
        ("username: %s\nssh_public_key: \"%s\"\nsecurity:\n  level: %s\n"):format(ADMIN, pubkey, level))
    end
    assert(th.cp(1, BIN, "/usr/local/bin/phanes"))
  end)

  teardown(function()
    if home then os.execute("rm -rf " .. q(home)) end
    th.down()
  end)

  describe("baseline", function()
    it("applies, and ssh-audit finds no failure", function()
      local code, out = apply("baseline.yaml", "b1.json")
      assert.equal(0, code, out)
      local fails, _, lines = ssh_audit()
      assert.equal(0, fails, lines)
      figures("baseline")
    end)

    it("sshd runs the modern algorithms only, with the banner", function()
      local t = sshd_t()
      assert.equal("sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org," ..
        "diffie-hellman-group16-sha512,diffie-hellman-group18-sha512,diffie-hellman-group-exchange-sha256", t.kexalgorithms)
      assert.is_nil(t.hostkeyalgorithms:match "ecdsa")
      assert.is_nil(t.hostkeyalgorithms:match "ssh%-rsa,")
      assert.equal("chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com,aes256-ctr,aes192-ctr,aes128-ctr", t.ciphers)
      assert.is_nil(t.macs:match "sha1")
      assert.is_nil(t.macs:match "umac%-64")
      assert.equal("/etc/issue.net", t.banner)
      assert.equal("3", t.maxauthtries)
      assert.equal("2", t.maxsessions)
      assert.equal("yes", t.allowtcpforwarding)
      assert.is_nil(sh("sshd -T"):match "hostkey /etc/ssh/ssh_host_ecdsa_key")
      -- group exchange offers no prime under 3072 bits
      local small = sh("awk '$1 ~ /^[0-9]/ && $5 < 3071' /etc/ssh/moduli | wc -l")
      assert.equal("0", small:match "%d+")
      assert.truthy(tonumber(sh("grep -c '^[0-9]' /etc/ssh/moduli"):match "%d+") > 10)
    end)

    it("writes each hardening file with its reason", function()
      assert.matches("hard%s+core%s+0", sh("cat /etc/security/limits.d/90-phanes-coredump.conf"))
      assert.matches("Storage=none", sh("cat /etc/systemd/coredump.conf.d/90-phanes.conf"))
      assert.matches("\nulimit %-c 0\n", sh("cat /etc/profile.d/phanes-core.sh"))
      assert.truthy(sh("ls /usr/sbin/chkrootkit"):match "chkrootkit")
      local defs = sh("cat /etc/login.defs")
      assert.matches("\nUMASK\t027\n", defs)
      assert.matches("\nSHA_CRYPT_MIN_ROUNDS\t100000\n", defs)
      assert.matches("\nPASS_MAX_DAYS\t365\n", defs)
      assert.matches("# phanes: files and homes of new users", defs)
      assert.equal(1, select(2, defs:gsub("\nUMASK\t", "")))
      assert.matches("Authorized access only", sh("cat /etc/issue /etc/issue.net"))
      local mp = sh("cat /etc/modprobe.d/phanes-blacklist.conf")
      for _, m in ipairs { "dccp", "sctp", "rds", "tipc", "usb%-storage", "firewire%-core", "cramfs", "udf" } do
        assert.matches("\ninstall " .. m .. " /bin/false\n", mp)
      end
      assert.matches("\nfs%.suid_dumpable = 0\n", sh("cat /etc/sysctl.d/90-phanes-hardening.conf"))
      assert.equal("750 750", sh("stat -c %a /home/deploy /home/alice"):gsub("\n", " "):gsub("%s+$", ""))
      assert.matches("ii%s+debsums", sh("dpkg -l debsums apt-show-versions"))
      assert.matches("ii%s+apt%-show%-versions", sh("dpkg -l debsums apt-show-versions"))
      -- the PAM profiles are in the stack pam-auth-update wrote
      assert.matches("pam_tmpdir%.so", sh("cat /etc/pam.d/common-session"))
      assert.matches("pam_pwquality%.so", sh("cat /etc/pam.d/common-password"))
      -- login.defs ages new accounts only: the admin keeps no expiry
      local max = sh("getent shadow deploy | cut -d: -f5"):gsub("%s+", "")
      assert.truthy(max == "" or max == "99999", max)
    end)

    it("a re-run changes nothing and restarts nothing", function()
      local before = main_pids()
      local code, out = apply("baseline.yaml", "b2.json")
      assert.equal(0, code, out)
      local moved = all_ok("b2.json")
      assert.same({}, moved)
      assert.equal(before, main_pids())
    end)

    it("the admin logs in with the key (OpenSSH, libssh2's algorithms) and sudoes", function()
      local ok, out = ssh_admin("sudo -n true && echo in")
      assert.is_true(ok, out)
      assert.matches("in\n$", out)
    end)

    it("phanes runs remotely on the hardened host", function()
      local cfg = home .. "/config.yaml"
      runcli.write(cfg, ("username: %s\nssh_public_key: \"%s\"\n"):format(ADMIN, (read_local(th.key() .. ".pub"):gsub("%s+$", ""))))
      local code, out = remote(home, cfg)
      assert.equal(0, code, out)
      assert.matches("security%s+ok%s+0", out)
    end)
  end)

  describe("strict", function()
    it("applies: process accounting, auditd rules, AIDE database, USBGuard, no port forwarding; ssh-audit finds no failure", function()
      -- an ageing password would make pam_unix demand a new one at the key login
      sh("chage -M 30 deploy")
      local code, out = apply("strict.yaml", "s1.json")
      assert.equal(0, code, out)
      assert.equal("", (sh("getent shadow deploy | cut -d: -f5"):gsub("%s+", "")))
      assert.equal("active", sh("systemctl is-active acct"):match "%a+")
      assert.matches("%-w /etc/shadow %-p wa %-k identity", sh("cat /etc/audit/rules.d/90-phanes.rules"))
      assert.truthy(sh("stat -c %s /var/lib/aide/aide.db"):match "%d+")
      assert.matches("\nTMOUT=900\n", sh("cat /etc/profile.d/phanes-idle-logout.sh"))
      assert.truthy(sh("ls /usr/sbin/chkrootkit"):match "chkrootkit")
      assert.equal("no", sshd_t().allowtcpforwarding)
      -- USBGuard: a policy in place, the install-time mask gone, not
      -- running in a container (no USB devices of its own)
      assert.equal("600 root", sh("stat -c '%a %U' /etc/usbguard/rules.conf"):match "%d+ %a+")
      assert.equal("gone", sh("test -e /run/systemd/system/usbguard.service || echo gone"):match "%a+")
      assert.equal("disabled", sh("systemctl is-enabled usbguard; true"):match "%a+")
      local fails, _, lines = ssh_audit()
      assert.equal(0, fails, lines)
      figures("strict")
    end)

    it("a re-run changes nothing and restarts nothing (AIDE is not built again)", function()
      local before = main_pids() .. sh("stat -c %Y /var/lib/aide/aide.db")
      local code, out = apply("strict.yaml", "s2.json")
      assert.equal(0, code, out)
      assert.same({}, (all_ok("s2.json")))
      assert.equal(before, main_pids() .. sh("stat -c %Y /var/lib/aide/aide.db"))
    end)

    it("the admin still logs in with the key and sudoes", function()
      local ok, out = ssh_admin("sudo -n true && echo in")
      assert.is_true(ok, out)
      assert.matches("in\n$", out)
    end)
  end)
  describe("compatible", function()
    it("adds the NIST curves and the ECDSA host key back; OpenSSH and phanes still connect", function()
      sh("sed 's/^  level: strict$/  level: strict\\n  ssh_crypto: compatible/' /root/strict.yaml > /root/compatible.yaml")
      local code, out = apply("compatible.yaml", "c1.json")
      assert.equal(0, code, out)
      local t = sshd_t()
      assert.matches("ecdh%-sha2%-nistp256", t.kexalgorithms)
      assert.matches("ecdsa%-sha2%-nistp256", t.hostkeyalgorithms)
      assert.matches("hostkey /etc/ssh/ssh_host_ecdsa_key", sh("sshd -T"))
      local ok, lout = ssh_admin("sudo -n true && echo in")
      assert.is_true(ok, lout)
      local fails, warns = ssh_audit()
      io.stderr:write(("[hardening] compatible ssh-audit %d failures %d warnings\n"):format(fails, warns))
      assert.is_true(fails > 0)
    end)
  end)
  describe("host keys", function()
    it("a controller that knows only the ECDSA key survives the run that drops it: no refusal next time", function()
      local kh = home .. "/.ssh/known_hosts"
      os.execute("rm -rf " .. q(home .. "/.ssh") .. " && mkdir -m 700 " .. q(home .. "/.ssh"))
      local ecdsa = sh("cut -d' ' -f1,2 /etc/ssh/ssh_host_ecdsa_key.pub"):gsub("%s+$", "")
      runcli.write(kh, th.ip(1) .. " " .. ecdsa .. "\n")
      local cfg = home .. "/modern.yaml"
      runcli.write(cfg, ("username: %s\nssh_public_key: \"%s\"\nsecurity:\n  level: strict\n"):format(ADMIN,
        (read_local(th.key() .. ".pub"):gsub("%s+$", ""))))
      -- the host is at compatible: ECDSA is offered, the run drops it
      local code, out = remote(home, cfg)
      assert.equal(0, code, out)
      assert.matches("recorded the host keys of " .. th.ip(1):gsub("%.", "%%.") .. " read over the verified connection", out)
      assert.is_nil(sh("sshd -T"):match "hostkey /etc/ssh/ssh_host_ecdsa_key")
      local known = read_local(kh)
      assert.equal(th.ip(1) .. " " .. ecdsa .. "\n", known:sub(1, #ecdsa + #th.ip(1) + 2))
      assert.matches("\n" .. th.ip(1):gsub("%.", "%%.") .. " ssh%-ed25519 ", known)
      -- the next run meets the ed25519 key: known, no refusal, nothing added
      code, out = remote(home, cfg)
      assert.equal(0, code, out)
      assert.equal(known, read_local(kh))
    end)
  end)
end)
