-- web: minimal + Docker, Netdata and Caddy, with HTTP and HTTPS open.
return {
  name = "web",
  description = "Web server: minimal + Docker, monitoring, Caddy; ports 80 and 443 open",
  modules = { "baseline", "user", "security", "swap", "updates", "docker", "monitoring", "caddy" },
  config = {
    security = { allowed_ports = { "80/tcp", "443/tcp" } },
  },
}
