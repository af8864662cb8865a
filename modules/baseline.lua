-- baseline: the base every other module builds on.
--
-- Sets the timezone and the locale (generated, then made the default),
-- refreshes the apt cache when it is older than the top-level
-- `apt_cache_max_age` (seconds, default 3600), and installs the essential
-- packages.
--
-- Top-level keys (shared with other modules):
--   timezone: Europe/Paris        # a name under /usr/share/zoneinfo (default UTC)
--   locale: en_US.UTF-8           # generated with locale-gen (default en_US.UTF-8)
--
-- Section `baseline:`
--   packages: [htop, rsync]       # added to the essential packages
--
-- Example:
--   timezone: UTC
--   locale: en_US.UTF-8
--   baseline:
--     packages: [htop, unzip]

local ZONEINFO = "/usr/share/zoneinfo/"

-- Installed on every server: what the other modules and an admin need.
local ESSENTIAL = { "ca-certificates", "curl", "gnupg", "locales", "tzdata", "sudo", "less" }

-- "en_US.UTF-8" -> line of /etc/locale.gen ("en_US.UTF-8 UTF-8"); nil for
-- locales that need no generation (C, C.UTF-8, POSIX).
local function locale_gen_line(locale)
  if locale == "C" or locale == "POSIX" or locale:match "^C%." then return nil end
  local charset = locale:match "%.(.+)$" or "ISO-8859-1"
  return locale .. " " .. charset
end

local function list_concat(a, b)
  local out, seen = {}, {}
  for _, l in ipairs { a, b } do
    for _, v in ipairs(l) do
      if not seen[v] then seen[v] = true; out[#out + 1] = v end
    end
  end
  return out
end

return {
  name = "baseline",
  description = "Timezone, locale, fresh apt cache and essential packages",
  version = "1",
  requires = {},
  globals = {
    timezone = { type = "string", default = "UTC", format = "timezone",
      description = "Timezone name under /usr/share/zoneinfo, e.g. Europe/Paris" },
    locale = { type = "string", default = "en_US.UTF-8", format = "locale",
      description = "System locale, generated and set as LANG" },
  },
  config = {
    packages = { type = "list", items = { type = "string", format = "package" }, default = {},
      description = "Extra packages installed with the essential ones" },
  },
  -- The time zone's name is checked by its form everywhere; that it exists
  -- is checked where the config is loaded on the target itself (a local run,
  -- or the remote side of --remote) when tzdata is there, and again by apply
  -- before anything changes.
  validate = function(_, v)
    local tz = v.config.timezone
    if tz and v.target and v.target.exists(ZONEINFO .. "UTC") and not v.target.exists(ZONEINFO .. tz) then
      v.error("timezone", "'" .. tz .. "' is not a time zone: " .. ZONEINFO .. tz ..
        " does not exist (see timedatectl list-timezones)")
    end
  end,
  apply = function(ctx, cfg)
    local tz, locale = ctx.config.timezone, ctx.config.locale
    if not tz:match "^[%w_+%-]+[%w_+%-/]*$" or tz:find "%.%." then
      ctx.fail("timezone '" .. tz .. "' is not a zoneinfo name (e.g. Europe/Paris, UTC)")
    end
    if not locale:match "^[%w_@%.%-]+$" then
      ctx.fail("locale '" .. locale .. "' is not a locale name (e.g. en_US.UTF-8)")
    end

    -- With tzdata in place, a zone that does not exist stops the run before
    -- any change; without it (installed below) it is checked after.
    local zone = ZONEINFO .. tz
    local function zone_missing()
      ctx.fail("timezone '" .. tz .. "': " .. zone .. " does not exist (see timedatectl list-timezones)")
    end
    if ctx.file.exists(ZONEINFO .. "UTC") and not ctx.file.exists(zone) then zone_missing() end

    ctx.pkg.refresh { max_age = ctx.config.apt_cache_max_age }
    ctx.pkg.installed(list_concat(ESSENTIAL, cfg.packages))

    -- Timezone: the two files timedatectl would write, without needing dbus.
    if not ctx.dry_run and not ctx.file.exists(zone) then zone_missing() end
    ctx.file.symlink { path = "/etc/localtime", target = zone }
    ctx.file.content { path = "/etc/timezone", content = tz .. "\n", mode = "0644" }

    -- Locale: enable it in locale.gen, generate when that changed, set LANG.
    local gen = locale_gen_line(locale)
    if gen then
      local line = ctx.file.line { path = "/etc/locale.gen", line = gen,
        match = "^#?%s*" .. gen:gsub("%p", "%%%0") .. "%s*$" }
      -- resuming: a killed run may have written the line but not generated
      if line.changed or ctx.resuming then
        ctx.cmd.run { argv = { "locale-gen" }, desc = "generate locale " .. locale }
      end
    end
    ctx.file.template { path = "/etc/default/locale", src = "baseline/locale",
      vars = { locale = locale }, mode = "0644" }
  end,
}
