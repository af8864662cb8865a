-- coolify: minimal + Docker and Coolify, with the ports Coolify uses open.
return {
  name = "coolify",
  description = "Coolify PaaS: minimal + Docker + Coolify",
  modules = { "baseline", "user", "security", "swap", "updates", "docker", "coolify" },
  config = {
    -- dashboard, realtime, and the proxy Coolify runs
    security = { allowed_ports = { "80/tcp", "443/tcp", "8000/tcp", "6001/tcp", "6002/tcp" } },
  },
}
