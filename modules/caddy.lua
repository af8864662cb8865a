-- caddy: Caddy web server with a Caddyfile from a template.
--
-- `source: debian` (default) installs the distribution's caddy package;
-- `source: official` adds Caddy's apt repository (URL and key configurable).
-- The Caddyfile is checked with `caddy validate` before it is installed,
-- then caddy is reloaded. With a domain as `site` and an `email`, Caddy gets
-- TLS certificates by itself.
--
-- Section `caddy:`
--   source: debian                # debian | official
--   repo_url: https://dl.cloudsmith.io/public/caddy/stable
--   site: ":80"                   # site address: ":80", "example.com"
--   email: ""                     # ACME account email (for TLS)
--   root: /usr/share/caddy        # served when reverse_proxy is empty
--   reverse_proxy: ""             # e.g. localhost:3000
--   deploy_site: ""               # a `phanes deploy` site: serves /srv/phanes/sites/<it>/current
--
-- Example:
--   caddy:
--     site: example.com
--     email: admin@example.com
--     reverse_proxy: localhost:3000

return {
  name = "caddy",
  description = "Caddy web server (static site or reverse proxy, automatic TLS)",
  version = "1",
  requires = { "baseline" },
  config = {
    source = { type = "enum", values = { "debian", "official" }, default = "debian",
      description = "debian: the distribution's package; official: Caddy's apt repository" },
    repo_url = { type = "string", default = "https://dl.cloudsmith.io/public/caddy/stable", format = "url",
      description = "Base URL of Caddy's apt repository (source: official)" },
    -- site addresses, comma separated: ":80", "example.com", "https://a.example.com:8443, b.example.com"
    site = { type = "string", default = ":80", pattern = "[%w.:*/_%-]+[%w.:*/_%-, ]*",
      hint = "site addresses like \":80\", \"example.com\" or \"a.example.com, b.example.com\"",
      description = "Site address (\":80\" or a domain)" },
    email = { type = "string", default = "", format = "email", description = "ACME account email" },
    root = { type = "string", default = "/usr/share/caddy", format = "path", description = "Directory served" },
    deploy_site = { type = "string", default = "", pattern = "[%w][%w_%-]*",
      hint = "a site name of `phanes deploy --site NAME`, like blog",
      description = "Serve the releases of this deploy site (/srv/phanes/sites/NAME/current) instead of root" },
    reverse_proxy = { type = "string", default = "", pattern = "[%w.:/_%-%[%]]+",
      hint = "one upstream like localhost:3000, [::1]:3000 or http://10.0.0.5:8080",
      description = "Upstream; empty serves root" },
  },
  apply = function(ctx, cfg)
    if cfg.source == "official" then
      local key = "/etc/apt/keyrings/caddy-stable.asc"
      ctx.apt.repo { name = "caddy-stable", key_url = cfg.repo_url .. "/gpg.key", key_path = key,
        line = ("deb [signed-by=%s] %s/deb/debian any-version main"):format(key, cfg.repo_url) }
    end
    ctx.pkg.installed { "caddy" }
    local conf = ctx.file.template {
      path = "/etc/caddy/Caddyfile", src = "caddy/Caddyfile", mode = "0644",
      vars = { site = cfg.site, email = cfg.email, has_email = cfg.email ~= "",
        root = cfg.deploy_site ~= "" and ("/srv/phanes/sites/" .. cfg.deploy_site .. "/current") or cfg.root,
        reverse_proxy = cfg.reverse_proxy, proxy = cfg.reverse_proxy ~= "" },
      validate = { "caddy", "validate", "--adapter", "caddyfile", "--config", "%s" },
    }
    ctx.service.running { "caddy", enabled = true, reload = conf.changed }
  end,
}
