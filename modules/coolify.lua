-- coolify: Coolify (self-hosted PaaS) through its install script.
--
-- Docker must be in place first (the docker module runs before this one).
-- The install script is downloaded from `install_url` to
-- /var/lib/phanes/coolify-install.sh and run with bash, once: when
-- `installed_marker` exists Coolify counts as installed and nothing runs.
--
-- Section `coolify:`
--   install_url: https://cdn.coollabs.io/coolify/install.sh
--   installed_marker: /data/coolify/source/.env
--   env: {}                        # environment for the script, e.g.
--                                  # ROOT_USERNAME, ROOT_USER_EMAIL (secret)
--
-- Example:
--   coolify:
--     env:
--       ROOT_USERNAME: admin
--       ROOT_USER_EMAIL: admin@example.com

local SCRIPT = "/var/lib/phanes/coolify-install.sh"

return {
  name = "coolify",
  description = "Coolify self-hosted PaaS via its install script (needs docker)",
  version = "1",
  requires = { "docker" },
  config = {
    install_url = { type = "string", default = "https://cdn.coollabs.io/coolify/install.sh",
      pattern = "[hf][tpi][tl]p?s?://[%w%-._~:/%[%]@%%+=?&]+", hint = "an http(s):// or file:// URL",
      description = "URL of the install script" },
    installed_marker = { type = "string", default = "/data/coolify/source/.env", format = "path",
      description = "File that exists once Coolify is installed" },
    env = { type = "map", default = {}, secret = true,
      description = "Environment variables for the install script" },
  },
  validate = function(cfg, v)
    for _, k in ipairs(require("phanes.config.schema").sorted_keys(cfg.env or {})) do
      if type(k) ~= "string" or not k:match "^[%a_][%w_]*$" then
        v.error("coolify.env", "'" .. tostring(k) .. "' is not an environment variable name")
      elseif type(cfg.env[k]) == "table" or tostring(cfg.env[k]):find "%z" then
        v.error("coolify.env." .. k, "expected a string, a number or a boolean")
      end
    end
  end,
  apply = function(ctx, cfg)
    if not cfg.install_url:match "^https?://" and not cfg.install_url:match "^file://" then
      ctx.fail("coolify.install_url '" .. cfg.install_url .. "' is not an http(s) URL")
    end
    -- The install script writes the marker early on: a run killed after
    -- that would count as installed. INSTALLING exists from before the
    -- script runs until it succeeded, so such a run resumes.
    local INSTALLING = "/var/lib/phanes/coolify.installing"
    if ctx.file.exists(cfg.installed_marker) and not ctx.file.exists(INSTALLING) then
      return ctx.skip("already installed (" .. cfg.installed_marker .. " exists)")
    end
    if not ctx.dry_run and not ctx.file.exists "/usr/bin/docker" then
      ctx.fail("coolify needs docker first: add the docker module before coolify (docker not found)")
    end
    ctx.file.directory { path = "/var/lib/phanes", mode = "0700" }
    ctx.file.content { path = INSTALLING, mode = "0600", content = "the Coolify install script has not finished\n" }
    ctx.cmd.run { argv = { "curl", "-fsSL", "--retry", "3", "-o", SCRIPT, cfg.install_url },
      desc = "download the Coolify install script" }
    local env = {}
    for k, v in pairs(cfg.env) do
      if not tostring(k):match "^[%a_][%w_]*$" then
        ctx.fail("coolify.env: '" .. tostring(k) .. "' is not an environment variable name")
      end
      env[k] = tostring(v)
    end
    ctx.cmd.run { argv = { "bash", SCRIPT }, env = env,
      desc = "run the Coolify install script", timeout = 1800 }
    ctx.file.absent { path = INSTALLING }
  end,
}
