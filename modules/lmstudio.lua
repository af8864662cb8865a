-- lmstudio: LM Studio's headless core (llmster) with the `lms` CLI on
-- PATH, an optional settings file seeded once, and an optional headless
-- server (`lms server start`) as a systemd service.
--
-- Two ways in (method):
--   script   LM Studio's official install script (script_url, default
--            https://lmstudio.ai/install.sh, checked against script_sha256)
--            runs once as the lmstudio user, with HOME its home; it puts
--            llmster and lms under ~/.lmstudio (lms: .lmstudio/bin/lms of
--            that home). Sentinel lmstudio.script, stamped with the checksum.
--   archive  a Linux archive (archive_url, {version} filled in; a mirror or
--            file:///) is downloaded once, checked against sha256 and
--            extracted into dir (strip leading components); sentinel
--            lmstudio.archive, with version and checksum. lms: <dir>/<lms>.
--   auto     (default) archive when archive_url is set, else script.
-- A re-run downloads nothing; another version or checksum installs again.
-- `lms` on root's PATH (/usr/local/bin/lms) never leads to anything the
-- lmstudio user can change: with script, the CLI is that user's file, so
-- /usr/local/bin/lms is a root-owned wrapper (templates/lmstudio/lms) that
-- runs it as that user (runuser, in a session of its own) when root types
-- `lms`, runs it directly for that user, and tells anyone else to use sudo;
-- a link phanes made there before (to either CLI) is replaced. With
-- archive, the tree under dir is root's and nobody else's to write
-- (archive.extracted), and /usr/local/bin/lms links to its CLI (replacing
-- the wrapper); dir may not lie in the user's home. The `lmstudio` system
-- user (home /var/lib/lmstudio) owns settings and runs the server.
-- settings, when set, is written to settings_path once (file.seed,
-- create-only): an operator's edits are never overwritten. With server: true, lmstudio.service (shaped
-- like LM Studio's own guide: oneshot, `lms daemon up`, then `lms server
-- start --port <port>`, `lms server stop` to stop) is restarted when the
-- unit or the install changed; health: GET http://127.0.0.1:<port>/v1/models.
-- The sentinel lmstudio.installed, written last, marks a finished install.
--
-- Section `lmstudio:`
--   method: auto                   # auto | script | archive
--   script_url: https://lmstudio.ai/install.sh
--   script_sha256: ""              # required with method: script
--   version: ""                    # fills {version} in archive_url
--   archive_url: ""                # the Linux archive (.tar.gz, .tar.xz, .zip) of the release
--   sha256: <64 hex digits>        # required with method: archive
--   strip: 0                       # leading path components dropped from the archive
--   dir: /opt/lmstudio
--   lms: bin/lms                   # the CLI, relative to dir (archive)
--   user: lmstudio                 # script: `lms` runs as this user, also for root
--   settings: ""                   # seeded once to settings_path (JSON text)
--   settings_path: /var/lib/lmstudio/.lmstudio/settings.json
--   server: false
--   port: 1234
--
-- Examples:
--   lmstudio:                      # the official installer
--     script_sha256: <sha256sum of install.sh, as reviewed>
--     server: true
--   lmstudio:                      # a mirror's archive
--     version: "0.3.30"
--     archive_url: https://mirror.example.com/lmstudio/LM-Studio-{version}-x64.tar.gz
--     sha256: 3a6fdb8b2bd21ddaf7ec06d5c5b34d5d44a0ec8e0c4ab3d3b3e4b6e9d4c9f1a2

local URL = "[%a]+://[%w%-._~:/%[%]@%%+=?&{}]+"
local HOME = "/var/lib/lmstudio"

local function dirname(p) return p:match "^(.*)/[^/]+$" end
-- below the user's home (HOME itself is not)
local function in_home(p) return p:sub(1, #HOME + 1) == HOME .. "/" end

local function method(cfg)
  if cfg.method ~= "auto" then return cfg.method end
  return cfg.archive_url ~= "" and "archive" or "script"
end

-- where the CLI ends up: under the user's home (script) or under dir (archive)
local function lms_path(cfg)
  if method(cfg) == "script" then return HOME .. "/.lmstudio/bin/lms" end
  return cfg.dir .. "/" .. cfg.lms
end

-- what was asked for, the stamp of the sentinels
local function stamp_of(cfg)
  if method(cfg) == "script" then return "script " .. cfg.script_sha256:lower() end
  return (cfg.version ~= "" and cfg.version or "-") .. " " .. cfg.sha256:lower()
end

local function check(ctx, cfg)
  if method(cfg) == "script" then
    if cfg.script_sha256 == "" then
      ctx.fail("lmstudio.script_sha256 is not set: fetch " .. cfg.script_url .. ", read it, and give its sha256 "
        .. "(sha256sum install.sh), e.g. --set lmstudio.script_sha256=...; or set lmstudio.archive_url and "
        .. "lmstudio.sha256 to install from an archive")
    end
    return
  end
  if cfg.archive_url == "" then
    ctx.fail("lmstudio.archive_url is not set: give the URL of LM Studio's Linux archive (or a mirror), "
      .. "e.g. --set lmstudio.archive_url=https://.../LM-Studio-{version}-x64.tar.gz, or use method: script")
  end
  if cfg.sha256 == "" then
    ctx.fail("lmstudio.sha256 is not set: give the sha256 of the archive (sha256sum FILE), e.g. --set lmstudio.sha256=...")
  end
  if cfg.lms:find("..", 1, true) then ctx.fail("lmstudio.lms: a path inside dir, without ..") end
  if in_home(cfg.dir .. "/") then
    ctx.fail("lmstudio.dir: " .. cfg.dir .. " is in the " .. cfg.user .. " user's home, who could change the lms "
      .. "that root's PATH leads to: extract it elsewhere, e.g. /opt/lmstudio")
  end
end

-- the official install script, fetched checked and run once per stamp as the user
local function install_script(ctx, cfg, stamp)
  if ctx.sentinel.done { "script", stamp = stamp } then return { changed = false } end
  local script = "/var/cache/phanes/lmstudio/install-" .. cfg.script_sha256:lower():sub(1, 16) .. ".sh"
  ctx.fetch.file { url = cfg.script_url, dest = script, sha256 = cfg.script_sha256, mode = "0644" }
  local r = ctx.cmd.run { argv = { "runuser", "-u", cfg.user, "--", "sh", script }, cwd = HOME,
    env = { HOME = HOME }, timeout = 3600, desc = "LM Studio install script as " .. cfg.user }
  ctx.sentinel.mark { "script", stamp = stamp }
  return r
end

-- /usr/local/bin/lms: the wrapper (script) or a link (archive); links
-- phanes made before, to either CLI, give way to the wrapper
local function lms_on_path(ctx, cfg, lms)
  if method(cfg) == "archive" then
    return ctx.file.symlink { path = "/usr/local/bin/lms", target = lms, force = true }
  end
  return ctx.file.template { path = "/usr/local/bin/lms", src = "lmstudio/lms", mode = "0755", owner = "root",
    group = "root", vars = { user = cfg.user, home = HOME, lms = lms },
    replace_link = { lms, cfg.dir .. "/" .. cfg.lms } }
end

local function install_archive(ctx, cfg, stamp)
  if ctx.sentinel.done { "archive", stamp = stamp } then return { changed = false } end
  local url = cfg.archive_url:gsub("{version}", cfg.version)
  local name = url:match "([^/?#]+)[?#]?[^/]*$" or "lmstudio.tar.gz"
  local cached = "/var/cache/phanes/lmstudio/" .. name
  ctx.fetch.file { url = url, dest = cached, sha256 = cfg.sha256, mode = "0644" }
  return ctx.archive.extracted { src = cached, dest = cfg.dir, strip = cfg.strip,
    sentinel = ctx.sentinel.path "archive", stamp = stamp }
end

return {
  name = "lmstudio",
  description = "LM Studio's headless core from its install script or an archive (sha256-checked), lms on PATH, optional server",
  version = "1",
  requires = { "baseline" },
  detect = function(cfg)
    return { files = { lms_path(cfg), "/usr/local/bin/lms" },
      url = cfg.server and ("http://127.0.0.1:" .. cfg.port .. "/v1/models") or nil }
  end,
  config = {
    method = { type = "enum", values = { "auto", "script", "archive" }, default = "auto",
      description = "script: LM Studio's install script; archive: a Linux archive; auto: archive when archive_url is set" },
    script_url = { type = "string", default = "https://lmstudio.ai/install.sh", pattern = URL,
      hint = "an http(s):// or file:/// URL", description = "LM Studio's install script (method: script)" },
    script_sha256 = { type = "string", default = "", pattern = string.rep("%x", 64),
      hint = "the 64 hex digits of `sha256sum install.sh`",
      description = "Checksum of the install script (required with method: script); a mismatch runs nothing" },
    version = { type = "string", default = "", pattern = "[%w.+~%-]+", hint = "a release like 0.3.30",
      description = "Release (fills {version} in archive_url; part of the install's stamp)" },
    archive_url = { type = "string", default = "", pattern = URL,
      hint = "an http(s):// or file:/// URL of the Linux archive, {version} filled in",
      description = "Where the Linux archive comes from (method: archive; a mirror or file:/// works too)" },
    sha256 = { type = "string", default = "", pattern = string.rep("%x", 64),
      hint = "the 64 hex digits of `sha256sum` of the archive",
      description = "Checksum of the archive (required with method: archive); a mismatch installs nothing" },
    strip = { type = "integer", default = 0, min = 0, max = 8, description = "Leading path components dropped" },
    dir = { type = "string", default = "/opt/lmstudio", format = "path", description = "Where the archive goes (method: archive)" },
    lms = { type = "string", default = "bin/lms", pattern = "[%w_.%-][%w_./%-]*", hint = "a path like bin/lms",
      description = "The lms CLI inside dir, linked from /usr/local/bin/lms (method: archive; with script, "
        .. "/usr/local/bin/lms is a wrapper that runs the user's CLI as that user, also for root)" },
    user = { type = "string", default = "lmstudio", pattern = "[%l_][%l%d_%-]*", hint = "a user name",
      description = "The system user owning the settings and running the server (and, with method: script, "
        .. "the CLI: `lms` runs as this user, also when root types it)" },
    settings = { type = "string", default = "", multiline = true,
      description = "Settings seeded once (create-only) to settings_path; empty: none" },
    settings_path = { type = "string", default = HOME .. "/.lmstudio/settings.json", format = "path",
      description = "Where settings are seeded" },
    server = { type = "boolean", default = false, description = "Run `lms server start` as lmstudio.service" },
    port = { type = "integer", default = 1234, min = 1, max = 65535, description = "The server's port" },
  },
  apply = function(ctx, cfg)
    check(ctx, cfg)
    local lms, stamp = lms_path(cfg), stamp_of(cfg)

    ctx.pkg.installed { "curl", "ca-certificates" }
    ctx.group.present { name = cfg.user, system = true }
    ctx.user.present { name = cfg.user, system = true, group = cfg.user, home = HOME, shell = "/bin/false" }
    ctx.file.directory { path = HOME, owner = cfg.user, group = cfg.user, mode = "0750" }
    local install
    if method(cfg) == "script" then install = install_script(ctx, cfg, stamp)
    else install = install_archive(ctx, cfg, stamp) end
    lms_on_path(ctx, cfg, lms)
    if cfg.settings ~= "" then
      local d = dirname(cfg.settings_path)
      if in_home(d) then -- its own directory; elsewhere the parent must exist
        ctx.file.directory { path = d, owner = cfg.user, group = cfg.user, mode = "0750" }
      end
      ctx.file.seed { path = cfg.settings_path, content = cfg.settings, owner = cfg.user, group = cfg.user,
        mode = "0640" }
    end
    if cfg.server then
      local unit = ctx.systemd.unit { name = "lmstudio.service", content = ctx.template("lmstudio/lmstudio.service",
        { user = cfg.user, home = HOME, lms = lms, port = cfg.port }) }
      ctx.service.running { "lmstudio", enabled = true, restart = unit.changed or install.changed }
      ctx.fetch.check { url = "http://127.0.0.1:" .. cfg.port .. "/v1/models", tries = 30 }
    end
    ctx.sentinel.mark { "installed", stamp = stamp } -- last: every step above went through
  end,
}
