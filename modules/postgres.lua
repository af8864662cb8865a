-- postgres: PostgreSQL server with one application role and database.
--
-- `source: debian` (default) installs the distribution's PostgreSQL (15 on
-- Debian 12, 17 on Debian 13, 14 on Ubuntu 22.04, 16 on Ubuntu 24.04: see
-- lua/phanes/engine/platform.lua); `source: pgdg` adds
-- the PostgreSQL project's apt repository, for any `version`.
-- Settings go to conf.d/phanes.conf (restart when they change), client
-- access to pg_hba.conf (reload). The role and the database are created
-- when missing, never reset: a re-run changes nothing. The password is set
-- only when it differs from the stored one, which is checked by computing
-- its SCRAM verifier here. The password itself never leaves phanes: the
-- server gets a SCRAM verifier, through psql's standard input.
--
-- Section `postgres:`
--   source: debian             # debian | pgdg
--   version: ""                # empty: the distribution's; e.g. "16" with pgdg
--   repo_url: https://apt.postgresql.org/pub/repos/apt   # with pgdg
--   listen_addresses: localhost
--   port: 5432
--   role: app
--   password: ...              # required, secret
--   database: app
--   allowed_networks: []       # CIDRs allowed to log in with a password
--   max_connections: 100
--
-- Example:
--   postgres:
--     role: app
--     database: app
--     password: "change me"
--     allowed_networks: ["10.0.0.0/8"]

local crypto = require "phanes.crypto"

-- scram_verifier(password, salt, iterations) -> "SCRAM-SHA-256$4096:salt$StoredKey:ServerKey"
local scram_verifier = crypto.scram_sha256

-- Does `password` match the stored rolpassword? (md5 or plain: treated as no)
local function scram_matches(stored, password)
  local iter, salt = (stored or ""):match "^SCRAM%-SHA%-256%$(%d+):([^$]+)%$"
  salt = salt and crypto.base64_decode(salt)
  if not salt or #salt > 64 or tonumber(iter) < 1 or tonumber(iter) > 10000000 then return false end
  return scram_verifier(password, salt, tonumber(iter)) == stored
end

local function psql(ctx, sql, desc)
  local res, err = ctx.exec { argv = { "runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-A", "-t",
    "-v", "ON_ERROR_STOP=1", "-d", "postgres" }, stdin = sql, cwd = "/", env = { LC_ALL = "C" } }
  if not res then ctx.fail(desc .. ": " .. err) end
  if res.code ~= 0 then
    ctx.fail(desc .. ": psql exited " .. tostring(res.code) .. ": " .. (res.stderr or ""):sub(-400))
  end
  return res.stdout
end

local function role_and_database(ctx, cfg)
  local have_role, have_db, stored = false, false, nil
  local query = ([[
SELECT 'role|' || coalesce(rolpassword, '') FROM pg_authid WHERE rolname = '%s';
SELECT 'db|' || datname FROM pg_database WHERE datname = '%s';
]]):format(cfg.role, cfg.database)
  local out = ""
  if not ctx.dry_run then
    out = psql(ctx, query, "postgres: reading roles")
  elseif ctx.file.exists "/usr/bin/psql" then
    -- a dry run on a stopped server cannot tell: say so rather than guess
    local ok, res = pcall(psql, ctx, query, "postgres: reading roles")
    if not ok then
      ctx.warn("postgres is not answering (" .. tostring(res) .. "): role and database not checked")
      return
    end
    out = res
  end
  for kind, value in out:gmatch "(%a+)|([^\n]*)" do
    if kind == "role" then have_role, stored = true, value end
    if kind == "db" then have_db = true end
  end
  local function change(desc, sql)
    return ctx.cmd.run { argv = { "runuser", "-u", "postgres", "--", "psql", "-X", "-q",
      "-v", "ON_ERROR_STOP=1", "-d", "postgres" }, stdin = sql, desc = desc, cwd = "/", env = { LC_ALL = "C" } }
  end
  if not have_role or not scram_matches(stored, cfg.password) then
    local verifier = scram_verifier(cfg.password, crypto.random(16), 4096)
    if have_role then
      change("set the password of role " .. cfg.role,
        ("ALTER ROLE \"%s\" WITH LOGIN PASSWORD '%s';\n"):format(cfg.role, verifier))
    else
      change("create role " .. cfg.role,
        ("CREATE ROLE \"%s\" WITH LOGIN PASSWORD '%s';\n"):format(cfg.role, verifier))
    end
  end
  if not have_db then
    change("create database " .. cfg.database,
      ("CREATE DATABASE \"%s\" OWNER \"%s\";\n"):format(cfg.database, cfg.role))
  end
  -- what was changed must now read back as wanted
  if not ctx.dry_run and (not have_role or not have_db or not scram_matches(stored, cfg.password)) then
    local after, role_ok, db_ok = psql(ctx, query, "postgres: reading roles back"), false, false
    for kind, value in after:gmatch "(%a+)|([^\n]*)" do
      if kind == "role" then role_ok = scram_matches(value, cfg.password) end
      if kind == "db" then db_ok = true end
    end
    if not (role_ok and db_ok) then
      ctx.fail("postgres: role " .. cfg.role .. " or database " .. cfg.database .. " is not as configured after the change")
    end
  end
end

return {
  name = "postgres",
  description = "PostgreSQL server with an application role and database",
  version = "1",
  requires = { "baseline" },
  scram_verifier = scram_verifier,
  scram_matches = scram_matches,
  config = {
    source = { type = "enum", values = { "debian", "pgdg" }, default = "debian",
      description = "debian: the distribution's PostgreSQL; pgdg: the PostgreSQL apt repository" },
    version = { type = "string", default = "", pattern = "%d+", hint = "a major version like 16",
      description = "Major version; empty: the distribution's" },
    repo_url = { type = "string", default = "https://apt.postgresql.org/pub/repos/apt", format = "url",
      description = "Base URL of the PGDG apt repository (source: pgdg)" },
    listen_addresses = { type = "string", default = "localhost", pattern = "[%w.:*%-]+[%w.:*%-, ]*",
      hint = "addresses separated by commas, like \"localhost\", \"*\" or \"10.0.0.5, ::1\"",
      description = "listen_addresses (\"localhost\", \"*\", \"10.0.0.5\")" },
    port = { type = "integer", default = 5432, min = 1, max = 65535, description = "Port PostgreSQL listens on" },
    role = { type = "string", default = "app", pattern = "[a-z_][a-z0-9_]*", max_length = 63,
      hint = "lower case letters, digits and _", description = "Application role (login)" },
    password = { type = "string", required = true, secret = true, min_length = 8, description = "Password of the role" },
    database = { type = "string", default = "app", pattern = "[a-z_][a-z0-9_]*", max_length = 63,
      hint = "lower case letters, digits and _", description = "Database owned by the role" },
    allowed_networks = { type = "list", items = { type = "string", format = "cidr" }, default = {},
      description = "CIDRs allowed to connect with a password (besides localhost)" },
    max_connections = { type = "integer", default = 100, min = 1, max = 262143, description = "max_connections" },
  },
  apply = function(ctx, cfg)
    for _, k in ipairs { "role", "database" } do
      if not cfg[k]:match "^[a-z_][a-z0-9_]*$" or #cfg[k] > 63 then
        ctx.fail("postgres." .. k .. " '" .. cfg[k] .. "' must be lower case letters, digits and _")
      end
    end
    for _, net in ipairs(cfg.allowed_networks) do
      if not net:match "^[%x:.]+/%d+$" then
        ctx.fail("postgres.allowed_networks: '" .. net .. "' is not a CIDR (e.g. 10.0.0.0/8)")
      end
    end
    if cfg.listen_addresses:find "'" then ctx.fail("postgres.listen_addresses must not contain quotes") end
    local os = ctx.facts.os
    local version = cfg.version
    local distro = ctx.platform.postgres_version
    if cfg.source == "debian" then
      if version == "" then version = distro end
      if not version then
        ctx.fail("postgres: no known PostgreSQL version for " .. tostring(os.pretty_name) ..
          ": set postgres.version")
      end
      if distro and version ~= distro then
        ctx.fail(("postgres.version %s is not in %s (it has %s): set postgres.source: pgdg, or version %s")
          :format(version, tostring(os.pretty_name), distro, distro))
      end
    else
      if version == "" then version = "16" end
      local key = "/etc/apt/keyrings/pgdg.asc"
      ctx.apt.repo { name = "pgdg", key_url = "https://www.postgresql.org/media/keys/ACCC4CF8.asc",
        key_path = key, line = ("deb [signed-by=%s] %s %s-pgdg main"):format(key, cfg.repo_url, os.codename) }
    end

    ctx.pkg.installed { "postgresql-" .. version, "postgresql-client-" .. version }
    local dir = "/etc/postgresql/" .. version .. "/main"
    local conf = ctx.file.template { path = dir .. "/conf.d/phanes.conf", src = "postgres/phanes.conf",
      mode = "0644", owner = "postgres", group = "postgres",
      vars = { listen_addresses = cfg.listen_addresses, port = cfg.port, max_connections = cfg.max_connections } }
    local hba = ctx.file.template { path = dir .. "/pg_hba.conf", src = "postgres/pg_hba.conf",
      mode = "0640", owner = "postgres", group = "postgres", vars = { networks = cfg.allowed_networks } }
    -- The cluster unit restarts on a settings change, reloads on a pg_hba change.
    local unit = "postgresql@" .. version .. "-main"
    ctx.service.running { "postgresql", enabled = true }
    ctx.service.running { unit, restart = conf.changed, reload = hba.changed and not conf.changed }
    role_and_database(ctx, cfg)
  end,
}
