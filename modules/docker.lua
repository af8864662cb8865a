-- docker: Docker engine and Compose, the admin user in the docker group.
--
-- `source: official` (default) adds Docker's apt repository and signing key
-- and installs docker-ce, docker-ce-cli, containerd.io and the buildx and
-- compose v2 plugins. `source: debian` installs the distribution's docker.io
-- (and docker-cli on Debian 13) and docker-compose: on Debian 12 that is
-- Compose 1.29, the `docker-compose` command only; on Debian 13 it is
-- Compose v2, both `docker compose` and `docker-compose` (the names come from
-- lua/phanes/engine/platform.lua). Compose v2 comes with `official` everywhere.
-- /etc/docker/daemon.json is encoded as JSON (log rotation, optional
-- storage driver); docker is restarted only when it changed.
--
-- Uses the top-level `username` (added to the docker group).
--
-- Section `docker:`
--   source: official            # official | debian
--   repo_url: https://download.docker.com/linux   # mirror of Docker's repo
--   compose: true
--   users: []                   # more users in the docker group
--   log_max_size: 10m
--   log_max_file: 3
--   storage_driver: ""          # empty: docker picks (overlay2, vfs...)
--
-- Example:
--   docker:
--     source: official
--     users: [ci]

-- facts.arch (uname -m) -> Debian architecture
local DEB_ARCH = { x86_64 = "amd64", aarch64 = "arm64", armv7l = "armhf", ppc64le = "ppc64el",
  s390x = "s390x", i686 = "i386" }

-- /etc/docker/daemon.json, encoded as JSON (no value can leave its string).
local function daemon_json(cfg)
  local settings = { ["log-driver"] = "json-file",
    ["log-opts"] = { ["max-size"] = cfg.log_max_size, ["max-file"] = tostring(cfg.log_max_file) } }
  if cfg.storage_driver ~= "" then settings["storage-driver"] = cfg.storage_driver end
  return require("phanes.json").encode(settings, { pretty = true }) .. "\n"
end

return {
  name = "docker",
  description = "Docker engine and Compose (Docker's repository or Debian's packages)",
  version = "1",
  requires = { "baseline" },
  globals = {
    username = { type = "string", required = true, format = "name",
      description = "The admin user created on the server (you log in as this user)" },
  },
  config = {
    source = { type = "enum", values = { "official", "debian" }, default = "official",
      description = "official: Docker's apt repository; debian: the distribution's docker.io" },
    repo_url = { type = "string", default = "https://download.docker.com/linux", format = "url",
      description = "Base URL of Docker's apt repository (source: official)" },
    compose = { type = "boolean", default = true, description = "Install Docker Compose" },
    users = { type = "list", items = { type = "string", format = "name" }, default = {},
      description = "Users added to the docker group besides the admin user" },
    log_max_size = { type = "string", default = "10m", pattern = "%d+[kmg]?", hint = "a size like 10m, 512k or 1g",
      description = "Container log rotation size" },
    log_max_file = { type = "integer", default = 3, min = 1, max = 1000, description = "Container log files kept" },
    storage_driver = { type = "string", default = "", pattern = "[%w_%-]+", hint = "a driver name like overlay2",
      description = "Storage driver; empty lets docker pick" },
  },
  apply = function(ctx, cfg)
    local os = ctx.facts.os
    local packages
    if cfg.source == "official" then
      if os.id ~= "debian" and os.id ~= "ubuntu" then
        ctx.fail("docker.source official supports Debian and Ubuntu, not " .. tostring(os.id) ..
          ": set docker.source: debian")
      end
      local arch = DEB_ARCH[ctx.facts.arch] or ctx.facts.arch
      local key = "/etc/apt/keyrings/docker.asc"
      ctx.apt.repo { name = "docker", key_url = cfg.repo_url .. "/" .. os.id .. "/gpg", key_path = key,
        line = ("deb [arch=%s signed-by=%s] %s/%s %s stable"):format(arch, key, cfg.repo_url, os.id,
          os.codename) }
      packages = { "docker-ce", "docker-ce-cli", "containerd.io", "docker-buildx-plugin" }
      if cfg.compose then packages[#packages + 1] = "docker-compose-plugin" end
    else
      packages = { table.unpack(ctx.platform.docker_packages) }
      if cfg.compose then packages[#packages + 1] = ctx.platform.compose_package end
    end
    ctx.pkg.installed(packages)

    local daemon = ctx.file.content { path = "/etc/docker/daemon.json", mode = "0644",
      content = daemon_json(cfg) }
    ctx.service.running { "docker", enabled = true, restart = daemon.changed }

    -- The packages create the docker group; /etc/group is read here, after
    -- the install, so the membership check sees it.
    local members = (ctx.group.get "docker" or {}).members or {}
    local users = { ctx.config.username }
    for _, u in ipairs(cfg.users) do users[#users + 1] = u end
    for _, u in ipairs(users) do
      if not members[u] then
        ctx.cmd.run { argv = { "usermod", "-aG", "docker", u }, desc = "add " .. u .. " to the docker group" }
      end
    end
  end,
}
