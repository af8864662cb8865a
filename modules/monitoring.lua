-- monitoring: Netdata (Debian's package), bound to localhost by default.
--
-- /etc/netdata/netdata.conf comes from a template; netdata is restarted when
-- it changed. Reach the dashboard through an SSH tunnel:
--   ssh -L 19999:localhost:19999 deploy@server   then open http://localhost:19999
--
-- Section `monitoring:`
--   bind: 127.0.0.1          # address netdata listens on (0.0.0.0: everywhere)
--   port: 19999
--   history_hours: 24        # metrics kept in memory/disk (dbengine)
--   update_every: 1          # seconds between collections
--
-- Example:
--   monitoring:
--     bind: 127.0.0.1
--     port: 19999

return {
  name = "monitoring",
  description = "Netdata metrics, listening on localhost only by default",
  version = "1",
  requires = { "baseline" },
  config = {
    bind = { type = "string", default = "127.0.0.1", format = "address", description = "Address netdata listens on" },
    port = { type = "integer", default = 19999, min = 1, max = 65535, description = "Port netdata listens on" },
    history_hours = { type = "integer", default = 24, min = 1, max = 24 * 365, description = "Hours of metrics kept" },
    update_every = { type = "integer", default = 1, min = 1, max = 3600, description = "Seconds between collections" },
  },
  apply = function(ctx, cfg)
    if cfg.port < 1 or cfg.port > 65535 then
      ctx.fail("monitoring.port " .. cfg.port .. " is not a port (1-65535)")
    end
    ctx.pkg.installed { "netdata" }
    local conf = ctx.file.template { path = "/etc/netdata/netdata.conf", src = "monitoring/netdata.conf",
      mode = "0644", vars = { bind = cfg.bind, port = cfg.port, update_every = cfg.update_every,
        history_seconds = cfg.history_hours * 3600 } }
    ctx.service.running { "netdata", enabled = true, restart = conf.changed }
  end,
}
