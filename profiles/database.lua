-- database: minimal + Docker, Netdata, PostgreSQL and Redis (both local only).
return {
  name = "database",
  description = "Database server: minimal + Docker, monitoring, PostgreSQL, Redis",
  modules = { "baseline", "user", "security", "swap", "updates", "docker", "monitoring", "postgres", "redis" },
  config = {},
}
