-- monitoring: host metrics from a Debian package, bound to localhost by default.
--
-- `backend: auto` (default) installs Netdata where the release packages it
-- (Debian 12, Ubuntu) and the Prometheus node exporter where it does not
-- (Debian 13 has no netdata): lua/phanes/engine/platform.lua says which.
--
-- netdata: /etc/netdata/netdata.conf comes from a template; netdata is
-- restarted when it changed. Reach the dashboard through an SSH tunnel:
--   ssh -L 19999:localhost:19999 deploy@server   then open http://localhost:19999
-- node_exporter: prometheus-node-exporter's arguments
-- (/etc/default/prometheus-node-exporter, written before the package is
-- installed so it never listens anywhere else) set its listen address;
-- metrics at http://127.0.0.1:9100/metrics, for a Prometheus to scrape
-- through a tunnel or a private network.
-- After an install or a restart, the backend must answer over HTTP
-- (netdata /api/v1/info, node exporter /metrics) or the module fails.
--
-- Section `monitoring:`
--   backend: auto            # auto | netdata | node_exporter
--   bind: 127.0.0.1          # address it listens on (0.0.0.0: everywhere)
--   port: 19999              # netdata's port
--   node_exporter_port: 9100 # the node exporter's port
--   history_hours: 24        # netdata: metrics kept in memory/disk (dbengine)
--   update_every: 1          # netdata: seconds between collections
--
-- Example:
--   monitoring:
--     bind: 127.0.0.1
--     port: 19999

-- "127.0.0.1", 9100 -> "127.0.0.1:9100"; an IPv6 address gets brackets
local function hostport(addr, port)
  if addr:find ":" then addr = "[" .. addr .. "]" end
  return addr .. ":" .. port
end

-- After an install or a restart: the backend answers over HTTP (from here:
-- a wildcard address is asked on loopback), waiting up to ~20 s for it.
local function answers(ctx, what, cfg, port, path)
  if ctx.dry_run then return end
  local addr = cfg.bind
  if addr == "0.0.0.0" or addr == "" then addr = "127.0.0.1" elseif addr == "::" then addr = "::1" end
  local url = "http://" .. hostport(addr, port) .. path
  local res, err = ctx.exec { argv = { "curl", "-fsS", "-o", "/dev/null", "-m", "5", "--retry", "20",
    "--retry-delay", "1", "--retry-connrefused", url } }
  if not res or res.code ~= 0 then
    ctx.fail("monitoring: " .. what .. " does not answer on " .. url .. " (systemctl status " .. what .. ")",
      res and res.stderr or err)
  end
end

local function netdata(ctx, cfg)
  local pkg = ctx.pkg.installed { "netdata" }
  local conf = ctx.file.template { path = "/etc/netdata/netdata.conf", src = "monitoring/netdata.conf",
    mode = "0644", vars = { bind = cfg.bind, port = cfg.port, update_every = cfg.update_every,
      history_seconds = cfg.history_hours * 3600 } }
  local svc = ctx.service.running { "netdata", enabled = true, restart = conf.changed }
  if pkg.changed or conf.changed or svc.changed then answers(ctx, "netdata", cfg, cfg.port, "/api/v1/info") end
end

local function node_exporter(ctx, cfg)
  if cfg.node_exporter_port < 1 or cfg.node_exporter_port > 65535 then
    ctx.fail("monitoring.node_exporter_port " .. cfg.node_exporter_port .. " is not a port (1-65535)")
  end
  local ne = ctx.platform.node_exporter
  -- the arguments first: the package keeps them (--force-confold) and
  -- starts listening where they say
  local conf = ctx.file.template { path = ne.defaults, src = "monitoring/node_exporter",
    mode = "0644", vars = { listen = hostport(cfg.bind, cfg.node_exporter_port) } }
  local pkg = ctx.pkg.installed { ne.package }
  local svc = ctx.service.running { ne.service, enabled = true, restart = conf.changed }
  if pkg.changed or conf.changed or svc.changed then answers(ctx, ne.service, cfg, cfg.node_exporter_port, "/metrics") end
end

return {
  name = "monitoring",
  description = "Netdata or Prometheus node exporter metrics, on localhost only by default",
  version = "1",
  requires = { "baseline" },
  config = {
    backend = { type = "enum", values = { "auto", "netdata", "node_exporter" }, default = "auto",
      description = "auto: netdata where the release packages it, else the Prometheus node exporter" },
    node_exporter_port = { type = "integer", default = 9100, min = 1, max = 65535,
      description = "Port the node exporter listens on" },
    bind = { type = "string", default = "127.0.0.1", format = "address", description = "Address netdata (or the node exporter) listens on" },
    port = { type = "integer", default = 19999, min = 1, max = 65535, description = "Port netdata listens on" },
    history_hours = { type = "integer", default = 24, min = 1, max = 24 * 365, description = "Hours of metrics kept" },
    update_every = { type = "integer", default = 1, min = 1, max = 3600, description = "Seconds between collections" },
  },
  apply = function(ctx, cfg)
    if cfg.port < 1 or cfg.port > 65535 then
      ctx.fail("monitoring.port " .. cfg.port .. " is not a port (1-65535)")
    end
    local backend = cfg.backend
    if backend == "auto" then backend = ctx.platform.netdata and "netdata" or "node_exporter" end
    if backend == "netdata" and not ctx.platform.netdata then
      ctx.fail(ctx.platform.name .. " has no netdata package: set monitoring.backend: node_exporter (or auto)")
    end
    if backend == "netdata" then netdata(ctx, cfg) else node_exporter(ctx, cfg) end
  end,
}
