-- nginx: nginx with its default site from a template.
--
-- The site is checked with `nginx -t` (on its own, inside a minimal main
-- config) before it replaces /etc/nginx/sites-available/default; nginx is
-- then reloaded, never restarted. With `proxy_pass` set the site is a reverse
-- proxy, otherwise it serves `root`.
--
-- Section `nginx:`
--   server_name: _                 # _ = any name
--   listen: 80
--   root: /var/www/html
--   index: [index.html, index.htm, index.nginx-debian.html]
--   proxy_pass: ""                 # e.g. http://127.0.0.1:3000
--   client_max_body_size: 16m
--   deploy_site: ""               # a `phanes deploy` site: serves /srv/phanes/sites/<it>/current
--
-- Example:
--   nginx:
--     server_name: example.com
--     proxy_pass: http://127.0.0.1:3000

-- `nginx -t` of the site alone: an http block that includes just that file.
local CHECK = [[
printf 'events {}\nhttp {\n include /etc/nginx/mime.types;\n include %s;\n}\n' "$1" > "$1.check" &&
nginx -t -q -c "$1.check"; rc=$?; rm -f "$1.check"; exit $rc]]

return {
  name = "nginx",
  description = "nginx with a default site (static files or reverse proxy), checked before reload",
  version = "1",
  requires = { "baseline" },
  config = {
    -- names separated by spaces: "example.com www.example.com", "*.example.com", "_"
    server_name = { type = "string", default = "_", pattern = "[%w_*.%-]+[%w_*. %-]*",
      hint = "host names separated by spaces, like \"example.com www.example.com\" or _",
      description = "server_name of the site (_: any)" },
    listen = { type = "integer", default = 80, min = 1, max = 65535, description = "Port the site listens on" },
    root = { type = "string", default = "/var/www/html", format = "path", description = "Directory served" },
    index = { type = "list", items = { type = "string", pattern = "[%w_.%-]+", hint = "a file name like index.html" },
      default = { "index.html", "index.htm", "index.nginx-debian.html" }, description = "Index files" },
    proxy_pass = { type = "string", default = "", format = "url", description = "Upstream URL; empty serves root" },
    deploy_site = { type = "string", default = "", pattern = "[%w][%w_%-]*",
      hint = "a site name of `phanes deploy --site NAME`, like blog",
      description = "Serve the releases of this deploy site (/srv/phanes/sites/NAME/current) instead of root" },
    client_max_body_size = { type = "string", default = "16m", pattern = "%d+[kKmMgG]?",
      hint = "a size like 16m, 512k or 1g (0: no limit)", description = "Largest request body" },
  },
  apply = function(ctx, cfg)
    if cfg.listen < 1 or cfg.listen > 65535 then
      ctx.fail("nginx.listen " .. cfg.listen .. " is not a port (1-65535)")
    end
    ctx.pkg.installed { "nginx" }
    -- a deploy site's `current` is made by `phanes deploy`, switched without a reload
    local root = cfg.deploy_site ~= "" and ("/srv/phanes/sites/" .. cfg.deploy_site .. "/current") or cfg.root
    if cfg.deploy_site == "" then ctx.file.directory { path = cfg.root, mode = "0755" } end
    local site = ctx.file.template {
      path = "/etc/nginx/sites-available/default", src = "nginx/default", mode = "0644",
      vars = { server_name = cfg.server_name, listen = cfg.listen, root = root,
        index = cfg.index, proxy_pass = cfg.proxy_pass, proxy = cfg.proxy_pass ~= "",
        client_max_body_size = cfg.client_max_body_size },
      validate = { "/bin/sh", "-c", CHECK, "nginx-check", "%s" },
    }
    ctx.file.symlink { path = "/etc/nginx/sites-enabled/default", target = "/etc/nginx/sites-available/default" }
    ctx.service.running { "nginx", enabled = true, reload = site.changed }
  end,
}
