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
--
-- Example:
--   security:
--     ssh_port: 2222
--     allowed_ports: ["80/tcp", "443/tcp"]

local pfile = require "phanes.file"
local sshkey = require "phanes.sshkey"

local function changed(r) return r and (r.changed or r.status == "would change") end

-- "80", "80/tcp", "60000:61000/udp" -> port, proto (proto nil = both)
local function parse_port(spec)
  spec = tostring(spec)
  local port, proto = spec:match "^(%d+[:%d]*)/(%a+)$"
  if not port then port = spec:match "^(%d+[:%d]*)$" end
  if not port then return nil end
  if proto and proto ~= "tcp" and proto ~= "udp" then return nil end
  for n in port:gmatch "%d+" do
    if tonumber(n) < 1 or tonumber(n) > 65535 then return nil end
  end
  return port, proto
end

-- The rules in ufw's user.rules: { ["22/tcp"] = {comment = "phanes"}, ["53"] = {...} }
-- A tuple line reads: ### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in comment=7068616e6573
local function ufw_rules(text)
  local rules = {}
  for line in (text or ""):gmatch "[^\n]+" do
    local action, proto, dport, dst, sport, src, dir, rest =
      line:match "^### tuple ### (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+)(.*)$"
    if action then
      local key = proto == "any" and dport or (dport .. "/" .. proto)
      local hex = rest:match "comment=(%x+)"
      local comment = hex and hex:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end)
      local simple = action == "allow" and dir == "in" and sport == "any"
        and (dst == "0.0.0.0/0" or dst == "::/0") and (src == "0.0.0.0/0" or src == "::/0")
      rules[key] = { comment = comment, simple = simple }
    end
  end
  return rules
end

local function config_value(text, key)
  return (text or ""):match("\n%s*" .. key .. "%s*=%s*\"?([^\"\n]*)") or
    (text or ""):match("^%s*" .. key .. "%s*=%s*\"?([^\"\n]*)")
end

-- The keys the admin user will have: on the host, or (dry run, or the user
-- module runs first in this run) from the config. Only a key that parses
-- (known type, base64 that decodes, the type inside matching) counts.
local function admin_has_key(ctx)
  local name = ctx.config.username
  local pw = require("phanes.sys").getpwnam(name)
  local home = pw and pw.home or ("/home/" .. name)
  local text = pfile.read(home .. "/.ssh/authorized_keys") or ""
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

local function firewall(ctx, cfg)
  ctx.pkg.installed { "ufw" }
  local wanted, order = {}, {}
  local function want(spec)
    local port, proto = parse_port(spec)
    local key = proto and (port .. "/" .. proto) or port
    if not wanted[key] then wanted[key] = true; order[#order + 1] = key end
  end
  want(cfg.ssh_port .. "/tcp")
  for _, p in ipairs(cfg.allowed_ports) do want(p) end

  local have = ufw_rules(pfile.read "/etc/ufw/user.rules")
  -- 1. allow what is wanted (the SSH port first), before anything else
  for _, key in ipairs(order) do
    if not have[key] then
      ctx.cmd.run { argv = { "ufw", "allow", key, "comment", "phanes" }, desc = "ufw allow " .. key }
    end
  end
  -- 2. default deny incoming, allow outgoing
  local defaults = pfile.read "/etc/default/ufw"
  if config_value(defaults, "DEFAULT_INPUT_POLICY") ~= "DROP" then
    ctx.cmd.run { argv = { "ufw", "default", "deny", "incoming" }, desc = "ufw default deny incoming" }
  end
  if config_value(defaults, "DEFAULT_OUTPUT_POLICY") ~= "ACCEPT" then
    ctx.cmd.run { argv = { "ufw", "default", "allow", "outgoing" }, desc = "ufw default allow outgoing" }
  end
  -- 3. enable (the SSH port is already allowed)
  if config_value(pfile.read "/etc/ufw/ufw.conf", "ENABLED") ~= "yes" then
    ctx.cmd.run { argv = { "ufw", "--force", "enable" }, desc = "enable ufw" }
  end
  ctx.service.running { "ufw", enabled = true }
  -- 4. drop the rules phanes added earlier that the config no longer has
  for key, rule in pairs(have) do
    if rule.comment == "phanes" and rule.simple and not wanted[key] then
      ctx.cmd.run { argv = { "ufw", "delete", "allow", key }, desc = "ufw delete allow " .. key }
    end
  end
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
    },
    validate = { "/usr/sbin/sshd", "-t", "-f", "%s" },
  }
  ctx.service.running { "ssh", enabled = true, reload = conf.changed }
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
    if socket and pfile.exists(socket) then
      ctx.fail("refusing to manage sshd: ssh.socket (socket activation) is enabled, so sshd_config's Port " ..
        "would not apply and ssh.service cannot be reloaded. Switch to the service first: " ..
        "systemctl disable --now ssh.socket && systemctl enable --now ssh.service")
    end

    if cfg.ufw then firewall(ctx, cfg) end
    sshd(ctx, cfg)
    if cfg.fail2ban then fail2ban(ctx, cfg) end
  end,
}
