-- dev: minimal + Docker, Netdata and developer tools.
return {
  name = "dev",
  description = "Development box: minimal + Docker, monitoring, git/build tools and runtimes",
  modules = { "baseline", "user", "security", "swap", "updates", "docker", "monitoring", "devtools" },
  config = {},
}
