-- platform.lua: what differs between the releases phanes runs on, in one
-- table. Modules never test the release themselves: they read its entry as
-- ctx.platform, chosen from the facts (os.id, os.version_id, os.codename).
--
--   local p = require("phanes.engine.platform").of(facts.os)
--   p.name                 "Debian 13"
--   p.known                false for a release not in the table (its
--                          family's newest entry is used, without
--                          postgres_version)
--   p.postgres_version     the release's PostgreSQL major ("15" on 12, "17" on 13)
--   p.netdata              the release packages netdata (Debian 13 does not)
--   p.docker_packages      Debian's engine and CLI (docker.source: debian)
--   p.compose_package      Debian's Compose package; p.compose_v2: it is
--                          Compose v2 (a `docker compose` plugin as well as
--                          /usr/bin/docker-compose), not 1.29
--   p.fail2ban_packages    fail2ban, its journal reader, and what its
--                          default ban action needs (nftables on 13)
--   p.node_exporter        the Prometheus node exporter package and unit
--   p.ssh_socket_wants     the link that says ssh.socket is enabled
local M = {}

local RELEASES = {
  debian = {
    { version_id = "11", codename = "bullseye", name = "Debian 11",
      postgres_version = "13", netdata = true,
      docker_packages = { "docker.io" }, compose_package = "docker-compose", compose_v2 = false,
      fail2ban_packages = { "fail2ban", "python3-systemd" } },
    { version_id = "12", codename = "bookworm", name = "Debian 12",
      postgres_version = "15", netdata = true,
      docker_packages = { "docker.io" }, compose_package = "docker-compose", compose_v2 = false,
      fail2ban_packages = { "fail2ban", "python3-systemd" } },
    -- 13: no netdata; the docker CLI is its own package; docker-compose is
    -- v2; fail2ban bans through nftables by default (jail.d/defaults-debian.conf)
    { version_id = "13", codename = "trixie", name = "Debian 13",
      postgres_version = "17", netdata = false,
      docker_packages = { "docker.io", "docker-cli" }, compose_package = "docker-compose", compose_v2 = true,
      fail2ban_packages = { "fail2ban", "python3-systemd", "nftables" } },
  },
  ubuntu = {
    { version_id = "22.04", codename = "jammy", name = "Ubuntu 22.04",
      postgres_version = "14", netdata = true,
      docker_packages = { "docker.io" }, compose_package = "docker-compose", compose_v2 = false,
      fail2ban_packages = { "fail2ban", "python3-systemd" } },
    { version_id = "24.04", codename = "noble", name = "Ubuntu 24.04",
      postgres_version = "16", netdata = true,
      docker_packages = { "docker.io" }, compose_package = "docker-compose", compose_v2 = false,
      fail2ban_packages = { "fail2ban", "python3-systemd" } },
  },
}

-- The same on every release so far.
local COMMON = {
  -- present when ssh.socket (socket activation) is enabled
  ssh_socket_wants = "/etc/systemd/system/sockets.target.wants/ssh.socket",
  node_exporter = { package = "prometheus-node-exporter", service = "prometheus-node-exporter",
    defaults = "/etc/default/prometheus-node-exporter" },
}

local function copy(t)
  local out = {}
  for k, v in pairs(t) do out[k] = v end
  return out
end

-- of(os) -> the entry of the release described by facts.os
function M.of(os)
  os = os or {}
  local family = RELEASES[os.id or ""]
  local entry
  for _, r in ipairs(family or {}) do
    if (os.version_id and r.version_id == os.version_id) or
       (not os.version_id and os.codename and r.codename == os.codename) then entry = r end
  end
  local p
  if entry then
    p = copy(entry)
    p.known = true
  else
    -- an unknown release: the newest of its family (or Debian's), with no
    -- guess at the PostgreSQL version
    local list = family or RELEASES.debian
    p = copy(list[#list])
    p.known, p.postgres_version = false, nil
    p.name = os.pretty_name or ((os.id or "linux") .. " " .. (os.version_id or "?"))
    p.version_id, p.codename = os.version_id, os.codename
  end
  for k, v in pairs(COMMON) do p[k] = v end
  return p
end

-- lazy(facts) -> a table that becomes M.of(facts.os) on first use (facts
-- are read lazily too: a run that never asks reads no os-release)
function M.lazy(facts)
  local p
  return setmetatable({}, { __index = function(_, k)
    p = p or M.of(facts.os)
    return p[k]
  end })
end

M.releases = RELEASES
return M
