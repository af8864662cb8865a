-- ollama: the Ollama LLM server from its release archive (or the official
-- install script), as a systemd service of its own user, with models pulled
-- on demand.
--
-- The archive (archive_url, {version} and {arch} filled in) is downloaded
-- once, checked against sha256 and extracted into prefix (bin/ollama,
-- lib/ollama); a sentinel (/var/lib/phanes/sentinels/ollama.archive, with
-- version and checksum) marks it done, so a re-run downloads nothing and a
-- new version or checksum installs again. The `ollama` system user runs
-- ollama.service; OLLAMA_HOST, OLLAMA_MODELS, OLLAMA_KEEP_ALIVE and env go
-- into the drop-in ollama.service.d/phanes.conf, and a change restarts the
-- service. Health: GET http://<host>/api/version answers. models missing
-- from `ollama list` are pulled (a no-op run pulls nothing). Any mirror or
-- a file:/// URL works the same as the default upstream. With method:
-- script, the official install script (script_url, checked against
-- script_sha256 like the archive) runs instead, once, with OLLAMA_VERSION
-- set (sentinel ollama.script); the unit and drop-in above then replace the
-- script's own. The sentinel ollama.installed, written last, marks a
-- finished install.
--
-- Section `ollama:`
--   version: "0.5.7"
--   method: archive                # archive | script (the official install.sh)
--   script_url: https://ollama.com/install.sh
--   script_sha256: ""              # required with method: script
--   archive_url: https://github.com/ollama/ollama/releases/download/v{version}/ollama-linux-{arch}.tgz
--   sha256: <64 hex digits of the archive>    # required with method: archive
--   arch: ""                       # amd64 | arm64; "" = from the host
--   prefix: /usr/local
--   host: 127.0.0.1:11434          # OLLAMA_HOST: where the API listens
--   models_dir: /usr/share/ollama/.ollama/models
--   keep_alive: 5m
--   env: {}                        # more Environment= lines: { OLLAMA_NUM_PARALLEL: "2" }
--   models: []                     # pulled when missing: [llama3.2:1b]
--
-- Example:
--   ollama:
--     version: "0.5.7"
--     sha256: 3a6fdb8b2bd21ddaf7ec06d5c5b34d5d44a0ec8e0c4ab3d3b3e4b6e9d4c9f1a2
--     models: [llama3.2:1b]

local ARCH = { x86_64 = "amd64", amd64 = "amd64", aarch64 = "arm64", arm64 = "arm64" }
local URL = "[%a]+://[%w%-._~:/%[%]@%%+=?&{}]+"

-- the names `ollama list` shows (first column, header skipped)
local function listed(text)
  local have = {}
  for line in (text or ""):gmatch "[^\n]+" do
    local name = line:match "^(%S+)"
    if name and name ~= "NAME" then have[name] = true end
  end
  return have
end

local function pull_models(ctx, cfg, bin)
  if #cfg.models == 0 then return end
  local env = { OLLAMA_HOST = cfg.host }
  local have = {}
  local res, err = ctx.exec { argv = { bin, "list" }, env = env, timeout = 60 }
  if res and res.code == 0 then
    have = listed(res.stdout)
  elseif not ctx.dry_run then
    ctx.fail("ollama list failed: " .. (res and ("exit " .. res.code) or tostring(err)),
      res and (res.stderr ~= "" and res.stderr or res.stdout) or nil)
  end
  for _, m in ipairs(cfg.models) do
    local tagged = m:find(":", 1, true) and m or (m .. ":latest")
    if not have[m] and not have[tagged] then
      ctx.cmd.run { argv = { bin, "pull", m }, env = env, desc = "pull model " .. m, timeout = 7200 }
    end
  end
end

-- the official install script, fetched checked and run once per stamp
local function install_script(ctx, cfg, stamp)
  if ctx.sentinel.done { "script", stamp = stamp } then return { changed = false } end
  local script = "/var/cache/phanes/ollama/install-" .. cfg.script_sha256:lower():sub(1, 16) .. ".sh"
  ctx.fetch.file { url = cfg.script_url, dest = script, sha256 = cfg.script_sha256, mode = "0644" }
  local r = ctx.cmd.run { argv = { "sh", script }, env = { OLLAMA_VERSION = cfg.version }, timeout = 3600,
    desc = "ollama install script " .. cfg.version }
  ctx.sentinel.mark { "script", stamp = stamp }
  return r
end

local function check_env(ctx, env)
  for k, v in pairs(env) do
    if type(k) ~= "string" or not k:match "^[%a_][%w_]*$" then
      ctx.fail("ollama.env: " .. tostring(k) .. " is not an environment variable name (letters, digits, _)")
    end
    if type(v) ~= "string" and type(v) ~= "number" and type(v) ~= "boolean" then
      ctx.fail("ollama.env." .. k .. ": a string is expected")
    end
    if tostring(v):find "[\"\\%c%%$]" then
      ctx.fail("ollama.env." .. k .. ": quotes, backslashes, %, $ and control characters are not allowed")
    end
  end
end

return {
  name = "ollama",
  description = "Ollama LLM server from its release archive or install script (sha256-checked), as a systemd service",
  version = "1",
  requires = { "baseline" },
  detect = function(cfg)
    return { files = { cfg.prefix .. "/bin/ollama", "/etc/systemd/system/ollama.service" },
      url = "http://" .. cfg.host:gsub("^0%.0%.0%.0:", "127.0.0.1:") .. "/api/version" }
  end,
  config = {
    version = { type = "string", default = "0.5.7", pattern = "[%w.+~%-]+", hint = "a release like 0.5.7",
      description = "Release to install (fills {version} in archive_url)" },
    method = { type = "enum", values = { "archive", "script" }, default = "archive",
      description = "archive: the release archive; script: the official install script" },
    script_url = { type = "string", default = "https://ollama.com/install.sh", pattern = URL,
      hint = "an http(s):// or file:/// URL", description = "The install script (method: script)" },
    script_sha256 = { type = "string", default = "", pattern = string.rep("%x", 64),
      hint = "the 64 hex digits of `sha256sum install.sh`",
      description = "Checksum of the install script (required with method: script)" },
    archive_url = { type = "string",
      default = "https://github.com/ollama/ollama/releases/download/v{version}/ollama-linux-{arch}.tgz",
      pattern = URL, hint = "an http(s):// or file:/// URL, {version} and {arch} filled in",
      description = "Where the release archive comes from (a mirror or file:/// works too)" },
    sha256 = { type = "string", default = "", pattern = string.rep("%x", 64),
      hint = "the 64 hex digits of `sha256sum ollama-linux-amd64.tgz`",
      description = "Checksum of the archive (required with method: archive); a mismatch installs nothing" },
    arch = { type = "enum", values = { "", "amd64", "arm64" }, default = "",
      description = "Archive architecture; empty: from the host" },
    prefix = { type = "string", default = "/usr/local", format = "path", description = "Install prefix" },
    host = { type = "string", default = "127.0.0.1:11434", pattern = "[%w_.%-]+:%d+",
      hint = "host:port like 127.0.0.1:11434 or 0.0.0.0:11434", description = "OLLAMA_HOST: the API's address" },
    models_dir = { type = "string", default = "/usr/share/ollama/.ollama/models", format = "path",
      description = "OLLAMA_MODELS: where models are kept" },
    keep_alive = { type = "string", default = "5m", format = "duration",
      description = "OLLAMA_KEEP_ALIVE: how long a model stays loaded" },
    env = { type = "map", default = {}, description = "More environment for the service" },
    models = { type = "list", items = { type = "string", pattern = "[%w._:/%-]+", hint = "a model like llama3.2:1b" },
      default = {}, description = "Models pulled when `ollama list` lacks them" },
  },
  apply = function(ctx, cfg)
    check_env(ctx, cfg.env)
    if cfg.method == "script" and cfg.script_sha256 == "" then
      ctx.fail("ollama.script_sha256 is not set: give the sha256 of the install script (sha256sum install.sh), "
        .. "e.g. --set ollama.script_sha256=...")
    end
    if cfg.method == "archive" and cfg.sha256 == "" then
      ctx.fail("ollama.sha256 is not set: give the sha256 of the release archive (sha256sum ollama-linux-amd64.tgz, "
        .. "or sha256sum.txt of the release), e.g. --set ollama.sha256=...")
    end
    local port = tonumber(cfg.host:match ":(%d+)$")
    if not port or port < 1 or port > 65535 then
      ctx.fail("ollama.host: the port of " .. cfg.host .. " is not between 1 and 65535")
    end
    local arch = cfg.arch ~= "" and cfg.arch or ARCH[tostring(ctx.facts.arch)]
      or ctx.fail("no Ollama archive for the architecture " .. tostring(ctx.facts.arch) .. ": set ollama.arch")
    local url = cfg.archive_url:gsub("{version}", cfg.version):gsub("{arch}", arch)
    local bin = cfg.prefix .. "/bin/ollama"
    local stamp = cfg.version .. " " .. arch .. " " .. cfg.sha256:lower()
    if cfg.method == "script" then stamp = cfg.version .. " " .. arch .. " script " .. cfg.script_sha256:lower() end

    ctx.pkg.installed { "curl", "ca-certificates" }
    ctx.group.present { name = "ollama", system = true }
    ctx.user.present { name = "ollama", system = true, group = "ollama", home = "/usr/share/ollama",
      shell = "/bin/false" }
    local archive = { changed = false }
    if cfg.method == "script" then
      archive = install_script(ctx, cfg, stamp)
    elseif not ctx.sentinel.done { "archive", stamp = stamp } then
      local cached = "/var/cache/phanes/ollama/ollama-linux-" .. arch .. "-" .. cfg.version .. ".tgz"
      ctx.fetch.file { url = url, dest = cached, sha256 = cfg.sha256, mode = "0644" }
      archive = ctx.archive.extracted { src = cached, dest = cfg.prefix,
        sentinel = ctx.sentinel.path "archive", stamp = stamp }
    end
    ctx.file.directory { path = cfg.models_dir, owner = "ollama", group = "ollama", mode = "0755" }
    local unit = ctx.systemd.unit { name = "ollama.service",
      content = ctx.template("ollama/ollama.service", { prefix = cfg.prefix }) }
    local env = ctx.systemd.dropin { unit = "ollama.service", name = "phanes",
      content = ctx.template("ollama/phanes.conf", { host = cfg.host, models_dir = cfg.models_dir,
        keep_alive = cfg.keep_alive, env = cfg.env }) }
    ctx.service.running { "ollama", enabled = true, restart = unit.changed or env.changed or archive.changed }
    local health = cfg.host:gsub("^0%.0%.0%.0:", "127.0.0.1:")
    ctx.fetch.check { url = "http://" .. health .. "/api/version", tries = 30 }
    pull_models(ctx, cfg, bin)
    ctx.sentinel.mark { "installed", stamp = stamp } -- last: every step above went through
  end,
}
