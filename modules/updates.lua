-- updates: unattended security upgrades.
--
-- Installs unattended-upgrades and writes its apt configuration from
-- templates: /etc/apt/apt.conf.d/20auto-upgrades (the daily timers) and
-- /etc/apt/apt.conf.d/52phanes-unattended-upgrades (what is upgraded, reboots).
-- Debian's own 50unattended-upgrades is left as the package ships it; apt
-- reads ours after it, so our values win.
--
-- Section `updates:`
--   enabled: true
--   security_only: true       # false: all updates from the release
--   automatic_reboot: false
--   reboot_time: "03:00"
--   remove_unused_dependencies: true
--   mail: ""                  # address for reports; empty = none
--
-- Example:
--   updates:
--     automatic_reboot: true
--     reboot_time: "04:30"

return {
  name = "updates",
  description = "Unattended security upgrades",
  version = "1",
  requires = { "baseline" },
  config = {
    enabled = { type = "boolean", default = true, description = "Turn unattended upgrades on" },
    security_only = { type = "boolean", default = true,
      description = "Only security updates (false: every update of the release)" },
    automatic_reboot = { type = "boolean", default = false,
      description = "Reboot when an upgrade needs it" },
    reboot_time = { type = "string", default = "03:00", format = "hhmm", description = "When to reboot (HH:MM)" },
    remove_unused_dependencies = { type = "boolean", default = true,
      description = "apt autoremove after upgrades" },
    mail = { type = "string", default = "", format = "email", description = "Mail reports to this address (empty: none)" },
  },
  apply = function(ctx, cfg)
    if not cfg.reboot_time:match "^%d%d:%d%d$" then
      ctx.fail("updates.reboot_time '" .. cfg.reboot_time .. "' is not HH:MM")
    end
    local os = ctx.facts.os
    local vars = {
      enabled = cfg.enabled and "1" or "0",
      ubuntu = os.id == "ubuntu",
      all_updates = not cfg.security_only,
      automatic_reboot = cfg.automatic_reboot and "true" or "false",
      reboot_time = cfg.reboot_time,
      remove_unused = cfg.remove_unused_dependencies and "true" or "false",
      mail = cfg.mail,
      has_mail = cfg.mail ~= "",
    }
    ctx.pkg.installed { "unattended-upgrades" }
    ctx.file.template { path = "/etc/apt/apt.conf.d/20auto-upgrades", src = "updates/20auto-upgrades",
      vars = vars, mode = "0644" }
    ctx.file.template { path = "/etc/apt/apt.conf.d/52phanes-unattended-upgrades",
      src = "updates/52phanes-unattended-upgrades", vars = vars, mode = "0644" }
    if cfg.enabled then
      ctx.service.running { "unattended-upgrades", enabled = true }
    end
  end,
}
