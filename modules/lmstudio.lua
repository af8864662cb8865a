-- lmstudio: LM Studio's Linux archive under /opt/lmstudio with the `lms`
-- CLI on PATH, an optional settings file seeded once, and an optional
-- headless server (`lms server start`) as a systemd service.
--
-- The archive (archive_url, {version} filled in) is downloaded once,
-- checked against sha256 and extracted into dir (strip leading
-- components); a sentinel (/var/lib/phanes/sentinels/lmstudio.archive,
-- with version and checksum) marks it done, so a re-run downloads nothing
-- and another version or checksum installs again. /usr/local/bin/lms links
-- to <dir>/<lms>. The `lmstudio` system user (home /var/lib/lmstudio) owns
-- settings and runs the server. settings, when set, is written to
-- settings_path once (file.seed, create-only): an operator's edits are
-- never overwritten. With server: true, lmstudio.service runs `lms server
-- start --port <port>`, restarted when the unit or the archive changed;
-- health: GET http://127.0.0.1:<port>/v1/models. The sentinel
-- lmstudio.installed, written last, marks a finished install.
--
-- Section `lmstudio:`
--   version: ""                    # fills {version} in archive_url
--   archive_url: ""                # required: the Linux archive (.tar.gz, .tar.xz, .zip) of the release
--   sha256: <64 hex digits>        # required
--   strip: 0                       # leading path components dropped from the archive
--   dir: /opt/lmstudio
--   lms: bin/lms                   # the CLI, relative to dir
--   user: lmstudio
--   settings: ""                   # seeded once to settings_path (JSON text)
--   settings_path: /var/lib/lmstudio/.lmstudio/settings.json
--   server: false
--   port: 1234
--
-- Example:
--   lmstudio:
--     version: "0.3.30"
--     archive_url: https://mirror.example.com/lmstudio/LM-Studio-{version}-x64.tar.gz
--     sha256: 3a6fdb8b2bd21ddaf7ec06d5c5b34d5d44a0ec8e0c4ab3d3b3e4b6e9d4c9f1a2
--     server: true

local URL = "[%a]+://[%w%-._~:/%[%]@%%+=?&{}]+"
local HOME = "/var/lib/lmstudio"

local function dirname(p) return p:match "^(.*)/[^/]+$" end

return {
  name = "lmstudio",
  description = "LM Studio from its Linux archive (sha256-checked), lms on PATH, optional headless server",
  version = "1",
  requires = { "baseline" },
  detect = function(cfg)
    return { files = { cfg.dir .. "/" .. cfg.lms, "/usr/local/bin/lms" },
      url = cfg.server and ("http://127.0.0.1:" .. cfg.port .. "/v1/models") or nil }
  end,
  config = {
    version = { type = "string", default = "", pattern = "[%w.+~%-]+", hint = "a release like 0.3.30",
      description = "Release (fills {version} in archive_url; part of the install's stamp)" },
    archive_url = { type = "string", default = "", pattern = URL,
      hint = "an http(s):// or file:/// URL of the Linux archive, {version} filled in",
      description = "Where the Linux archive comes from (required; a mirror or file:/// works too)" },
    sha256 = { type = "string", default = "", pattern = string.rep("%x", 64),
      hint = "the 64 hex digits of `sha256sum` of the archive",
      description = "Checksum of the archive (required); a mismatch installs nothing" },
    strip = { type = "integer", default = 0, min = 0, max = 8, description = "Leading path components dropped" },
    dir = { type = "string", default = "/opt/lmstudio", format = "path", description = "Where the archive goes" },
    lms = { type = "string", default = "bin/lms", pattern = "[%w_.%-][%w_./%-]*", hint = "a path like bin/lms",
      description = "The lms CLI inside dir, linked from /usr/local/bin/lms" },
    user = { type = "string", default = "lmstudio", pattern = "[%l_][%l%d_%-]*", hint = "a user name",
      description = "The system user owning the settings and running the server" },
    settings = { type = "string", default = "", multiline = true,
      description = "Settings seeded once (create-only) to settings_path; empty: none" },
    settings_path = { type = "string", default = HOME .. "/.lmstudio/settings.json", format = "path",
      description = "Where settings are seeded" },
    server = { type = "boolean", default = false, description = "Run `lms server start` as lmstudio.service" },
    port = { type = "integer", default = 1234, min = 1, max = 65535, description = "The server's port" },
  },
  apply = function(ctx, cfg)
    if cfg.archive_url == "" then
      ctx.fail("lmstudio.archive_url is not set: give the URL of LM Studio's Linux archive (or a mirror), "
        .. "e.g. --set lmstudio.archive_url=https://.../LM-Studio-{version}-x64.tar.gz")
    end
    if cfg.sha256 == "" then
      ctx.fail("lmstudio.sha256 is not set: give the sha256 of the archive (sha256sum FILE), e.g. --set lmstudio.sha256=...")
    end
    if cfg.lms:find("..", 1, true) then ctx.fail("lmstudio.lms: a path inside dir, without ..") end
    local url = cfg.archive_url:gsub("{version}", cfg.version)
    local name = url:match "([^/?#]+)[?#]?[^/]*$" or "lmstudio.tar.gz"
    local lms = cfg.dir .. "/" .. cfg.lms
    local stamp = (cfg.version ~= "" and cfg.version or "-") .. " " .. cfg.sha256:lower()

    ctx.pkg.installed { "curl", "ca-certificates" }
    ctx.group.present { name = cfg.user, system = true }
    ctx.user.present { name = cfg.user, system = true, group = cfg.user, home = HOME, shell = "/bin/false" }
    ctx.file.directory { path = HOME, owner = cfg.user, group = cfg.user, mode = "0750" }
    local archive = { changed = false }
    if not ctx.sentinel.done { "archive", stamp = stamp } then
      local cached = "/var/cache/phanes/lmstudio/" .. name
      ctx.fetch.file { url = url, dest = cached, sha256 = cfg.sha256, mode = "0644" }
      archive = ctx.archive.extracted { src = cached, dest = cfg.dir, strip = cfg.strip,
        sentinel = ctx.sentinel.path "archive", stamp = stamp }
    end
    ctx.file.symlink { path = "/usr/local/bin/lms", target = lms }
    if cfg.settings ~= "" then
      local d = dirname(cfg.settings_path)
      if d:sub(1, #HOME + 1) == HOME .. "/" then -- its own directory; elsewhere the parent must exist
        ctx.file.directory { path = d, owner = cfg.user, group = cfg.user, mode = "0750" }
      end
      ctx.file.seed { path = cfg.settings_path, content = cfg.settings, owner = cfg.user, group = cfg.user,
        mode = "0640" }
    end
    if cfg.server then
      local unit = ctx.systemd.unit { name = "lmstudio.service", content = ctx.template("lmstudio/lmstudio.service",
        { user = cfg.user, home = HOME, lms = lms, port = cfg.port }) }
      ctx.service.running { "lmstudio", enabled = true, restart = unit.changed or archive.changed }
      ctx.fetch.check { url = "http://127.0.0.1:" .. cfg.port .. "/v1/models", tries = 30 }
    end
    ctx.sentinel.mark { "installed", stamp = stamp } -- last: every step above went through
  end,
}
