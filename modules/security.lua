-- security: firewall, brute-force protection and SSH hardening.
--
-- - UFW: deny incoming by default, allow the SSH port and `allowed_ports`,
--   then enable. The SSH port is always allowed BEFORE the firewall is
--   enabled. Rules phanes added (comment "phanes") that are no longer in the
--   config are deleted; rules added by hand are left alone.
-- - fail2ban: jail.local from a template, with the sshd jail on the SSH port.
-- - sshd: /etc/ssh/sshd_config from a template, checked with `sshd -t`
--   before it is installed, then sshd is reloaded (never restarted blind).
--   Password login is turned off only when an authorized key for the admin
--   user is in place: otherwise the run stops before sshd is touched.
--
-- Uses the top-level `username`, `ssh_public_key`, `ssh_public_keys`.
--
-- Section `security:`
--   ssh_port: 22
--   permit_root_login: "no"          # no | prohibit-password | yes
--   password_authentication: false   # false needs a key for the admin user
--   allowed_ports: ["80/tcp", "443/tcp"]
--   ufw: true
--   fail2ban: true
--   fail2ban_bantime: 1h
--   fail2ban_findtime: 10m
--   fail2ban_maxretry: 5
--   fail2ban_ignoreip: ["10.0.0.0/8"]
--   ssh_crypto: modern               # modern | compatible (README "SSH crypto")
--   level: baseline                  # baseline | strict (README "OS hardening")
--   core_dumps: true                 # off: limits.d, systemd-coredump, fs.suid_dumpable
--   login_defs: true                 # umask 027, SHA-512 rounds, ages for new accounts
--   password_max_days: 365
--   banner: true                     # /etc/issue, /etc/issue.net, sshd Banner
--   banner_text: "Authorized access only..."
--   modprobe_blacklist: true         # dccp, sctp, rds, tipc, usb-storage, firewire...
--   sysctl: true                     # /etc/sysctl.d file, applied where /proc/sys is writable
--   home_permissions: true           # /home/NAME of uid >= 1000: 0750
--   audit_tools: true                # debsums, apt-show-versions, apt-listchanges
--   pam_modules: true                # libpam-tmpdir, libpam-pwquality (via pam-auth-update)
--   idle_logout:                     # TMOUT=900 for shells; unset: on at strict
--   ssh_max_sessions: 2              # sshd MaxSessions; a remote phanes run holds 2 at most
--   malware_scanner: true            # chkrootkit, run by hand or from cron
--   ssh_tcp_forwarding:              # sshd AllowTcpForwarding; unset: on, off at strict
--   process_accounting:              # acct; unset: on at strict
--   auditd:                          # auditd + rules; unset: on at strict (not started in containers)
--   aide:                            # AIDE database once; unset: on at strict
--   usbguard:                        # USB devices allowed: those plugged in at install; unset: on at strict
--
-- Hardening (security.level): every file it writes says why in a comment.
-- login.defs is checked (every line KEY VALUE) before it is installed, and
-- a key-only admin never gets a password that expires (pam_unix would then
-- ask a key login for a new password: a lockout). PAM is not changed.
--
-- Example:
--   security:
--     ssh_port: 2222
--     allowed_ports: ["80/tcp", "443/tcp"]

local sshkey = require "phanes.remote.sshkey"

local parse_port = require("phanes.res.ufw").parse_port

-- The keys the admin user will have: on the host, or (dry run, or the user
-- module runs first in this run) from the config. Only a key that parses
-- (known type, base64 that decodes, the type inside matching) counts.
local function admin_has_key(ctx)
  local name = ctx.config.username
  local pw = ctx.user.get(name)
  local home = pw and pw.home or ("/home/" .. name)
  local text = ctx.file.read(home .. "/.ssh/authorized_keys") or ""
  for line in text:gmatch "[^\n]+" do
    if sshkey.find_in_line(line) then
      return true, home .. "/.ssh/authorized_keys"
    end
  end
  if ctx.dry_run then
    if ctx.config.ssh_public_key and sshkey.parse(ctx.config.ssh_public_key) then return true end
    for _, k in ipairs(ctx.config.ssh_public_keys or {}) do
      if sshkey.parse(k) then return true end
    end
  end
  return false, home .. "/.ssh/authorized_keys"
end

-- The SSH port is allowed first, before the firewall is switched on; rules
-- phanes added earlier that the config no longer has are deleted.
local function firewall(ctx, cfg)
  ctx.pkg.installed { "ufw" }
  local ports = { cfg.ssh_port .. "/tcp", comment = "phanes", exclusive = true }
  for _, p in ipairs(cfg.allowed_ports) do ports[#ports + 1] = p end
  ctx.ufw.allow(ports)
  ctx.ufw.enabled { incoming = "deny", outgoing = "allow" }
  ctx.service.running { "ufw", enabled = true }
end

-- sshd algorithms per security.ssh_crypto (see README "SSH crypto"). Both
-- levels keep what libssh2 1.10 (phanes' transport on Debian 12) speaks:
-- curve25519 kex, ssh-ed25519 host key, aes*-ctr, non-etm hmac-sha2.
local CRYPTO = {
  modern = {
    kex = { "sntrup761x25519-sha512@openssh.com", "curve25519-sha256", "curve25519-sha256@libssh.org",
      "diffie-hellman-group16-sha512", "diffie-hellman-group18-sha512", "diffie-hellman-group-exchange-sha256" },
    hostkey_algorithms = { "ssh-ed25519", "ssh-ed25519-cert-v01@openssh.com",
      "rsa-sha2-512", "rsa-sha2-512-cert-v01@openssh.com", "rsa-sha2-256", "rsa-sha2-256-cert-v01@openssh.com" },
    ciphers = { "chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com", "aes128-gcm@openssh.com",
      "aes256-ctr", "aes192-ctr", "aes128-ctr" },
    macs = { "hmac-sha2-512-etm@openssh.com", "hmac-sha2-256-etm@openssh.com", "umac-128-etm@openssh.com",
      "hmac-sha2-512", "hmac-sha2-256" },
  },
}
-- compatible: modern plus the NIST curves (kex and the ECDSA host key),
-- group14-sha256 and umac-128: what older clients and appliances need.
CRYPTO.compatible = {
  kex = { table.unpack(CRYPTO.modern.kex) },
  hostkey_algorithms = { table.unpack(CRYPTO.modern.hostkey_algorithms) },
  ciphers = CRYPTO.modern.ciphers,
  macs = { table.unpack(CRYPTO.modern.macs) },
}
for _, k in ipairs { "ecdh-sha2-nistp256", "ecdh-sha2-nistp384", "ecdh-sha2-nistp521", "diffie-hellman-group14-sha256" } do
  table.insert(CRYPTO.compatible.kex, k)
end
for _, k in ipairs { "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521" } do
  table.insert(CRYPTO.compatible.hostkey_algorithms, k)
end
table.insert(CRYPTO.compatible.macs, "umac-128@openssh.com")

-- Modules nobody needs on a server, each a past kernel exploit path.
local BLACKLIST = { "dccp", "sctp", "rds", "tipc", "usb-storage", "firewire-core",
  "cramfs", "freevxfs", "jffs2", "hfs", "hfsplus", "udf" }

-- /etc/ssh/moduli without the groups under 3072 bits (field 5 is the size
-- minus one): group exchange then never offers a weak prime.
local function strong_moduli(text)
  local out, kept = {}, 0
  for line in text:gmatch "[^\n]*\n?" do
    local size = line:match "^%s*%d+%s+%d+%s+%d+%s+%d+%s+(%d+)%s"
    if not size then
      if line ~= "" then out[#out + 1] = line end
    elseif tonumber(size) >= 3071 then
      out[#out + 1] = line
      kept = kept + 1
    end
  end
  return table.concat(out), kept
end

-- login.defs with each managed KEY set to its value, the reason on the line
-- above ("# phanes: ..."); other lines stay as they are.
local function login_defs_text(text, settings)
  local lines, seen = {}, {}
  local want = {}
  for _, s in ipairs(settings) do want[s[1]] = s end
  for line in text:gmatch "([^\n]*)\n?" do
    local key = line:match "^%s*([%u_]+)%s"  or line:match "^%s*([%u_]+)$"
    if line:match "^# phanes: " then -- rewritten below, with its setting
    elseif key and want[key] then
      if not seen[key] then
        seen[key] = true
        lines[#lines + 1] = "# phanes: " .. want[key][3]
        lines[#lines + 1] = key .. "\t" .. want[key][2]
      end
    else
      lines[#lines + 1] = line
    end
  end
  while lines[#lines] == "" do lines[#lines] = nil end
  for _, s in ipairs(settings) do
    if not seen[s[1]] then
      lines[#lines + 1] = "# phanes: " .. s[3]
      lines[#lines + 1] = s[1] .. "\t" .. s[2]
    end
  end
  return table.concat(lines, "\n") .. "\n"
end

-- Human accounts: uid 1000-59999 with a home under /home.
local function human_homes(ctx)
  local homes = {}
  for _, u in ipairs(ctx.user.list()) do
    if u.uid >= 1000 and u.uid < 60000 and u.home:match "^/home/[^/]+$" then
      homes[#homes + 1] = { name = u.name, home = u.home }
    end
  end
  return homes
end

-- true when the account's shadow entry makes its password expire: a key-only
-- admin with an aged password would be asked for a new one at the next login
-- (pam_unix), which a key login cannot give.
local function password_ages(ctx, name)
  for line in (ctx.file.read "/etc/shadow" or ""):gmatch "[^\n]+" do
    local user, maxd = line:match "^([^:]*):[^:]*:[^:]*:[^:]*:([^:]*):"
    if user == name then return maxd ~= "" and maxd ~= "-1" and maxd ~= "99999" end
  end
  return false
end

local function core_dumps_off(ctx)
  ctx.file.template { path = "/etc/security/limits.d/90-phanes-coredump.conf",
    src = "security/limits.conf", mode = "0644" }
  ctx.file.directory { path = "/etc/systemd/coredump.conf.d", mode = "0755" }
  ctx.file.template { path = "/etc/systemd/coredump.conf.d/90-phanes.conf",
    src = "security/coredump.conf", mode = "0644" }
  ctx.file.template { path = "/etc/profile.d/phanes-core.sh", src = "security/core.sh", mode = "0644" }
end

local function login_defs(ctx, cfg)
  local text = ctx.file.read "/etc/login.defs"
  if not text then return ctx.log("no /etc/login.defs: login.defs settings skipped") end
  local settings = {
    { "UMASK", "027", "files and homes of new users are not readable by others (Lynis AUTH-9328)" },
    { "HOME_MODE", "0750", "new home directories are closed to other users" },
    { "ENCRYPT_METHOD", "SHA512", "chpasswd/newusers hash with SHA-512, never DES or MD5" },
    { "SHA_CRYPT_MIN_ROUNDS", "100000", "slow hashing: a stolen /etc/shadow resists cracking (AUTH-9230)" },
    { "SHA_CRYPT_MAX_ROUNDS", "200000", "upper bound of the rounds above" },
    { "PASS_MAX_DAYS", tostring(cfg.password_max_days),
      "password age for accounts created from now on (useradd gives system accounts none); existing accounts keep theirs" },
    { "PASS_MIN_DAYS", "1", "no instant change back to the old password" },
    { "PASS_WARN_AGE", "14", "warn two weeks before a password expires" },
  }
  -- Checked before it is written: every line is a comment, blank, or KEY VALUE.
  ctx.file.content { path = "/etc/login.defs", mode = "0644", content = login_defs_text(text, settings),
    validate = { "awk", "NF && $1 !~ /^#/ && (NF != 2 || $1 !~ /^[A-Z_0-9]+$/) { print FILENAME \":\" FNR \": \" $0; bad = 1 } END { exit bad }", "%s" } }
  -- The admin logs in with a key: an expiring password would lock that login.
  local admin = ctx.config.username
  if password_ages(ctx, admin) then
    ctx.cmd.run { argv = { "chage", "-M", "-1", admin }, desc = "no password expiry for the key-only admin " .. admin }
  end
end

local function banners(ctx, cfg)
  local text = cfg.banner_text:gsub("%s+$", "")
  for _, path in ipairs { "/etc/issue", "/etc/issue.net" } do
    ctx.file.template { path = path, src = "security/issue", mode = "0644", vars = { text = text } }
  end
end

local function sysctl(ctx)
  local path = "/etc/sysctl.d/90-phanes-hardening.conf"
  local r = ctx.file.template { path = path, src = "security/sysctl.conf", mode = "0644" }
  if not ctx.facts.proc_sys_writable then
    ctx.log("sysctl: " .. path .. " installed, applying it skipped: /proc/sys is read-only (a container; the host's kernel decides)")
  elseif r.changed then
    ctx.cmd.run { argv = { "sysctl", "-e", "-q", "-p", path }, desc = "apply " .. path }
  end
end

local function home_permissions(ctx)
  for _, h in ipairs(human_homes(ctx)) do
    if ctx.file.exists(h.home) then ctx.file.directory { path = h.home, mode = "0750" } end
  end
end

local function auditd(ctx)
  ctx.pkg.installed { "auditd" }
  local rules = ctx.file.template { path = "/etc/audit/rules.d/90-phanes.rules", src = "security/audit.rules", mode = "0640" }
  if ctx.facts.container then
    return ctx.log("auditd: installed with its rules, not started: the kernel's audit system is the host's, not this " ..
      tostring(ctx.facts.container) .. " container's")
  end
  ctx.service.running { "auditd", enabled = true, restart = rules.changed }
end

-- USBGuard: Debian's package starts its daemon at once, with an empty
-- policy that blocks every USB device plugged in (a console keyboard too).
-- So it goes in masked for this boot (/run), gets a policy allowing what is
-- plugged in now, and only then starts. A run stopped half-way finds the
-- mask still there and does the rest.
local USBGUARD_MASK = "/run/systemd/system/usbguard.service"
local USBGUARD_RULES = "/etc/usbguard/rules.conf"

local function usbguard(ctx)
  local fresh = not ctx.file.exists "/usr/sbin/usbguard-daemon"
  if fresh then ctx.file.symlink { path = USBGUARD_MASK, target = "/dev/null" } end
  ctx.pkg.installed { "usbguard" }
  if fresh or ctx.file.exists(USBGUARD_MASK) then
    if (ctx.file.read(USBGUARD_RULES) or "") == "" then
      -- no USB bus at all (a VM, a container): nothing to allow
      ctx.cmd.run { shell = "T=" .. USBGUARD_RULES .. ".phanes; umask 077; { usbguard generate-policy > \"$T\" ||"
        .. " [ ! -e /sys/bus/usb/devices ]; } && mv -f \"$T\" " .. USBGUARD_RULES,
        desc = "allow the USB devices plugged in now (usbguard generate-policy)" }
    end
    ctx.file.absent { path = USBGUARD_MASK }
    ctx.service.daemon_reload()
  end
  if ctx.facts.container then
    ctx.service.stopped { "usbguard", enabled = false }
    return ctx.log("usbguard: installed with a policy, not running: a " .. tostring(ctx.facts.container)
      .. " container has no USB devices of its own")
  end
  ctx.service.running { "usbguard", enabled = true }
end

local function aide(ctx)
  ctx.pkg.installed { "aide", "aide-common" }
  -- The first database takes minutes (every file hashed): once; a run stopped
  -- half-way leaves no aide.db and starts it again.
  ctx.cmd.run { argv = { "/usr/sbin/aideinit", "--yes", "--force" }, creates = "/var/lib/aide/aide.db",
    desc = "initialise the AIDE database (once)", timeout = 3600 }
end

local function os_hardening(ctx, cfg)
  local strict = cfg.level == "strict"
  local function on(switch) if switch == nil then return strict end return switch end
  if cfg.core_dumps then core_dumps_off(ctx) end
  if cfg.login_defs then login_defs(ctx, cfg) end
  if cfg.banner then banners(ctx, cfg) end
  if cfg.modprobe_blacklist then
    ctx.file.directory { path = "/etc/modprobe.d", mode = "0755" }
    ctx.file.template { path = "/etc/modprobe.d/phanes-blacklist.conf", src = "security/modprobe.conf",
      mode = "0644", vars = { modules = BLACKLIST } }
  end
  if cfg.sysctl then sysctl(ctx) end
  if cfg.home_permissions then home_permissions(ctx) end
  if cfg.audit_tools then ctx.pkg.installed { "debsums", "apt-show-versions", "apt-listchanges" } end
  -- Debian's own PAM profiles, enabled by pam-auth-update (which refuses a
  -- stack it cannot merge): private /tmp per session, password strength
  -- for `passwd` (key logins are not touched).
  if cfg.pam_modules then ctx.pkg.installed { "libpam-tmpdir", "libpam-pwquality" } end
  if on(cfg.idle_logout) then
    ctx.file.template { path = "/etc/profile.d/phanes-idle-logout.sh", src = "security/idle-logout.sh", mode = "0644" }
  end
  if cfg.malware_scanner then ctx.pkg.installed { "chkrootkit" } end
  if on(cfg.process_accounting) then
    ctx.pkg.installed { "acct" }
    ctx.service.running { "acct", enabled = true }
  end
  if on(cfg.auditd) then auditd(ctx) end
  if on(cfg.aide) then aide(ctx) end
  if on(cfg.usbguard) then usbguard(ctx) end
end

local function tcp_forwarding(cfg)
  if cfg.ssh_tcp_forwarding == nil then return cfg.level ~= "strict" end
  return cfg.ssh_tcp_forwarding
end

local function sshd(ctx, cfg)
  ctx.pkg.installed { "openssh-server" }
  -- sshd -t needs its privilege separation directory
  ctx.file.directory { path = "/run/sshd", mode = "0755" }
  local conf = ctx.file.template {
    path = "/etc/ssh/sshd_config", src = "security/sshd_config", mode = "0644",
    vars = {
      port = cfg.ssh_port,
      permit_root_login = cfg.permit_root_login,
      password_authentication = cfg.password_authentication and "yes" or "no",
      username = ctx.config.username,
      crypto = cfg.ssh_crypto,
      kex = CRYPTO[cfg.ssh_crypto].kex,
      hostkey_algorithms = CRYPTO[cfg.ssh_crypto].hostkey_algorithms,
      ciphers = CRYPTO[cfg.ssh_crypto].ciphers,
      macs = CRYPTO[cfg.ssh_crypto].macs,
      banner = cfg.banner,
      max_sessions = cfg.ssh_max_sessions,
      tcp_forwarding = tcp_forwarding(cfg) and "yes" or "no",
    },
    validate = { "/usr/sbin/sshd", "-t", "-f", "%s" },
  }
  -- group exchange stays: its primes are at least 3072 bits
  local moduli = ctx.file.read "/etc/ssh/moduli"
  local strong, kept = strong_moduli(moduli or "")
  local mod = { changed = false }
  if moduli and kept > 0 then
    mod = ctx.file.content { path = "/etc/ssh/moduli", content = strong, mode = "0644" }
  end
  ctx.service.running { "ssh", enabled = true, reload = conf.changed or mod.changed }
end

local function fail2ban(ctx, cfg)
  -- Debian 12 and 13 log to the journal only: the jail reads it through
  -- python3-systemd; Debian 13's fail2ban bans with nftables.
  ctx.pkg.installed(ctx.platform.fail2ban_packages)
  local jail = ctx.file.template {
    path = "/etc/fail2ban/jail.local", src = "security/jail.local", mode = "0644",
    vars = {
      port = cfg.ssh_port, bantime = cfg.fail2ban_bantime, findtime = cfg.fail2ban_findtime,
      maxretry = cfg.fail2ban_maxretry, ignoreip = cfg.fail2ban_ignoreip,
    },
  }
  ctx.service.running { "fail2ban", enabled = true, restart = jail.changed }
end

return {
  name = "security",
  description = "UFW firewall, fail2ban and SSH hardening that cannot lock you out",
  version = "1",
  requires = { "baseline", "user" },
  globals = {
    username = { type = "string", required = true, format = "name",
      description = "The admin user created on the server (you log in as this user)" },
    ssh_public_key = { type = "string", format = "ssh_public_key",
      description = "An SSH public key allowed to log in as the admin user" },
    ssh_public_keys = { type = "list", items = { type = "string", format = "ssh_public_key" }, default = {},
      description = "More SSH public keys allowed to log in as the admin user" },
  },
  config = {
    ssh_port = { type = "integer", default = 22, min = 1, max = 65535, description = "Port sshd listens on (allowed in UFW first)" },
    permit_root_login = { type = "enum", values = { "no", "prohibit-password", "yes" }, default = "no",
      description = "sshd PermitRootLogin" },
    password_authentication = { type = "boolean", default = false,
      description = "Allow SSH password logins (false needs an authorized key for the admin user)" },
    allowed_ports = { type = "list", items = { type = "string", format = "port_spec" }, default = {},
      description = "Ports opened in UFW besides SSH: \"80/tcp\", \"443\", \"60000:61000/udp\"" },
    ufw = { type = "boolean", default = true, description = "Manage the UFW firewall" },
    fail2ban = { type = "boolean", default = true, description = "Install fail2ban with the sshd jail" },
    fail2ban_bantime = { type = "string", default = "1h", format = "duration", description = "fail2ban bantime" },
    fail2ban_findtime = { type = "string", default = "10m", format = "duration", description = "fail2ban findtime" },
    fail2ban_maxretry = { type = "integer", default = 5, min = 1, max = 1000, description = "fail2ban maxretry" },
    fail2ban_ignoreip = { type = "list", default = {}, items = { type = "string", pattern = "[%w.:/%-]+",
      hint = "an address, a CIDR or a host name like 10.0.0.0/8" },
      description = "Addresses fail2ban never bans (localhost is always included)" },
    ssh_crypto = { type = "enum", values = { "modern", "compatible" }, default = "modern",
      description = "sshd algorithms: modern (no NIST curves, no SHA-1; ssh-audit: 0 failures) or compatible (adds NIST curves, the ECDSA host key, group14, umac-128)" },
    level = { type = "enum", values = { "baseline", "strict" }, default = "baseline",
      description = "OS hardening: baseline (safe everywhere) or strict (adds idle logout, process accounting, auditd, AIDE, USBGuard, no sshd port forwarding)" },
    core_dumps = { type = "boolean", default = true, description = "Turn core dumps off (limits.d, systemd-coredump, fs.suid_dumpable)" },
    login_defs = { type = "boolean", default = true,
      description = "login.defs: umask 027, home mode 0750, SHA-512 rounds, password ages for new accounts" },
    password_max_days = { type = "integer", default = 365, min = 1, max = 99999,
      description = "PASS_MAX_DAYS in login.defs (accounts created from now on)" },
    banner = { type = "boolean", default = true, description = "Legal notice in /etc/issue, /etc/issue.net and the sshd Banner" },
    banner_text = { type = "string", default = "Authorized access only. Activity on this system is monitored and logged; unauthorized use is prohibited and may be prosecuted.",
      description = "The login banner text" },
    modprobe_blacklist = { type = "boolean", default = true,
      description = "Forbid loading dccp, sctp, rds, tipc, usb-storage, firewire-core, cramfs, freevxfs, jffs2, hfs, hfsplus, udf" },
    sysctl = { type = "boolean", default = true, description = "Kernel hardening in /etc/sysctl.d (applied where /proc/sys is writable)" },
    home_permissions = { type = "boolean", default = true, description = "Home directories of human users (uid >= 1000, /home/NAME) mode 0750" },
    audit_tools = { type = "boolean", default = true, description = "Install debsums and apt-show-versions" },
    pam_modules = { type = "boolean", default = true,
      description = "PAM: libpam-tmpdir (private TMPDIR) and libpam-pwquality (strong passwords for passwd)" },
    idle_logout = { type = "boolean", description = "Log idle interactive shells out after 15 minutes (TMOUT); default: on at level strict" },
    ssh_max_sessions = { type = "integer", default = 2, min = 2, max = 100,
      description = "sshd MaxSessions: sessions open at once on one connection (Lynis SSH-7408 wants 2; a remote phanes run holds 2 at most: the run and a Ctrl-C; raise it for OpenSSH ControlMaster users who multiplex more)" },
    malware_scanner = { type = "boolean", default = true, description = "Install chkrootkit (a rootkit scanner, run by hand or from cron)" },
    ssh_tcp_forwarding = { type = "boolean",
      description = "sshd AllowTcpForwarding (ssh -L/-R tunnels, e.g. to the monitoring dashboards); default: on, off at level strict" },
    process_accounting = { type = "boolean", description = "Process accounting (acct); default: on at level strict" },
    auditd = { type = "boolean", description = "auditd with a small rule set; default: on at level strict" },
    aide = { type = "boolean", description = "AIDE file integrity database, initialised once; default: on at level strict" },
    usbguard = { type = "boolean",
      description = "USBGuard: only the USB devices plugged in when it is installed are allowed, later ones are blocked; default: on at level strict" },
  },
  apply = function(ctx, cfg)
    -- Everything that could lock the admin out is checked before anything is touched.
    if cfg.ssh_port < 1 or cfg.ssh_port > 65535 then
      ctx.fail("security.ssh_port " .. cfg.ssh_port .. " is not a port (1-65535)")
    end
    for _, p in ipairs(cfg.allowed_ports) do
      if not parse_port(p) then
        ctx.fail("security.allowed_ports: '" .. tostring(p) .. "' is not a port (\"80/tcp\", \"443\", \"6000:6010/udp\")")
      end
    end
    if not cfg.password_authentication then
      local ok, where = admin_has_key(ctx)
      if not ok then
        ctx.fail("refusing to turn off SSH password login: " .. ctx.config.username ..
          " has no authorized key (" .. where .. " has none and the config gives no ssh_public_key). " ..
          "Set ssh_public_key, or security.password_authentication: true")
      end
    end
    -- Socket activation (ssh.socket enabled): systemd, not sshd_config,
    -- owns the listening port, and reloading ssh.service fails to bind
    -- (seen on Debian 13): a port change would lock the admin out.
    local socket = ctx.platform.ssh_socket_wants
    if socket and ctx.file.exists(socket) then
      ctx.fail("refusing to manage sshd: ssh.socket (socket activation) is enabled, so sshd_config's Port " ..
        "would not apply and ssh.service cannot be reloaded. Switch to the service first: " ..
        "systemctl disable --now ssh.socket && systemctl enable --now ssh.service")
    end

    if cfg.ufw then firewall(ctx, cfg) end
    os_hardening(ctx, cfg)
    sshd(ctx, cfg)
    if cfg.fail2ban then fail2ban(ctx, cfg) end
  end,
}
