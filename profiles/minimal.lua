-- minimal: a hardened base server: admin user, firewall, fail2ban, SSH
-- hardening, swap, unattended security upgrades.
return {
  name = "minimal",
  description = "Hardened base: admin user, UFW, fail2ban, SSH hardening, swap, security updates",
  modules = { "baseline", "user", "security", "swap", "updates" },
  config = {},
}
