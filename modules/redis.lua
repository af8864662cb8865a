-- redis: Redis bound to localhost, password protected.
--
-- /etc/redis/redis.conf comes from a template (mode 0640, owner redis; the
-- password is never shown in diffs or logs); redis-server is restarted only
-- when that file changed.
--
-- Section `redis:`
--   password: ...              # required, secret (requirepass)
--   bind: "127.0.0.1 -::1"
--   port: 6379
--   maxmemory: 256mb
--   maxmemory_policy: allkeys-lru
--   appendonly: false
--
-- Example:
--   redis:
--     password: "change me"
--     maxmemory: 512mb

return {
  name = "redis",
  description = "Redis bound to localhost, password protected",
  version = "1",
  requires = { "baseline" },
  config = {
    password = { type = "string", required = true, secret = true, min_length = 8, pattern = "[^%s\"']+",
      hint = "at least 8 characters without spaces or quotes", description = "requirepass" },
    bind = { type = "string", default = "127.0.0.1 -::1", pattern = "%-?[%w.:%-]+[%w.: %-]*",
      hint = "addresses separated by spaces, like \"127.0.0.1 -::1\"", description = "Addresses redis listens on" },
    port = { type = "integer", default = 6379, min = 1, max = 65535, description = "Port redis listens on" },
    maxmemory = { type = "string", default = "256mb", pattern = "%d+[kKmMgG]?[bB]?", hint = "a size like 256mb or 1gb",
      description = "Memory limit (e.g. 256mb, 1gb)" },
    maxmemory_policy = { type = "enum", default = "allkeys-lru",
      values = { "noeviction", "allkeys-lru", "allkeys-lfu", "allkeys-random", "volatile-lru",
        "volatile-lfu", "volatile-random", "volatile-ttl" },
      description = "What to evict at the memory limit" },
    appendonly = { type = "boolean", default = false, description = "Append-only file persistence" },
  },
  apply = function(ctx, cfg)
    if cfg.password:find "[%s\"']" or #cfg.password < 8 then
      ctx.fail("redis.password must be at least 8 characters, without spaces or quotes")
    end
    if not cfg.maxmemory:lower():match "^%d+[kmg]?b?$" then
      ctx.fail("redis.maxmemory '" .. cfg.maxmemory .. "' is not a size (e.g. 256mb, 1gb)")
    end
    ctx.pkg.installed { "redis-server" }
    local conf = ctx.file.template { path = "/etc/redis/redis.conf", src = "redis/redis.conf",
      mode = "0640", owner = "redis", group = "redis", secret = true,
      vars = { password = cfg.password, bind = cfg.bind, port = cfg.port, maxmemory = cfg.maxmemory,
        maxmemory_policy = cfg.maxmemory_policy, appendonly = cfg.appendonly and "yes" or "no" } }
    ctx.service.running { "redis-server", enabled = true, restart = conf.changed }
  end,
}
