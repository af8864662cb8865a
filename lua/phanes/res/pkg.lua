-- res/pkg.lua: Debian packages with apt.
--
--   ctx.pkg.installed { "nginx", "curl" }            -- recommends = true to allow them
--   ctx.pkg.absent { "telnet" }                      -- purge = true to purge
--   ctx.pkg.refresh { max_age = 3600 }               -- apt-get update when older
--
-- Installed packages are read once per run from dpkg's status file
-- (/var/lib/dpkg/status: no process; one dpkg-query when that file cannot
-- be read or dpkg's journal has pending updates) and kept in run.cache.pkg; an install updates that table in place (and marks
-- it so a package seen missing afterwards, maybe pulled in as a dependency,
-- is looked up once more before acting). pkg.installed runs one apt-get
-- install for all the missing packages, non-interactively, keeping
-- existing config files (--force-confdef --force-confold), without
-- recommends unless asked. It runs apt-get update first when the apt cache
-- is older than config `apt_cache_max_age` (seconds, default 86400), when a
-- repository was added (ctx.apt.repo), or when apt does not know a package.
-- apt waits up to 5 minutes for the dpkg lock (another apt, or
-- unattended-upgrades) and the failure says so when it is still held.
local context = require "phanes.engine.context"
local facts = require "phanes.engine.facts"

local M = {}
local N = {}
M.namespaces = { pkg = N }

M.DEFAULT_MAX_AGE = 86400
M.LOCK_TIMEOUT = 300

local APT_ENV = { DEBIAN_FRONTEND = "noninteractive", NEEDRESTART_MODE = "a", LC_ALL = "C.UTF-8" }

local fail = context.fail

local function names_of(o, kind)
  if type(o) == "string" then o = { o } end
  if type(o) ~= "table" then fail(kind, "?", "expected a list of package names") end
  local names = {}
  for _, n in ipairs(o) do
    if type(n) ~= "string" or not n:match "^[%w][%w.+:-]*$" then
      fail(kind, tostring(n), "not a package name: " .. tostring(n))
    end
    names[#names + 1] = n
  end
  return names, o
end

-- dpkg's status file, read directly: nil when it cannot be (no file, or
-- dpkg's journal holds updates not folded in yet: dpkg-query knows those).
local function read_status(run)
  local path, updates = run.paths.dpkg_status, run.paths.dpkg_updates
  if not path then return nil end
  if updates then
    local lfs = require "lfs"
    local ok, iter, state = pcall(lfs.dir, updates)
    if ok then
      for name in iter, state do
        if name ~= "." and name ~= ".." then return nil end
      end
    end
  end
  local f = io.open(path, "rb")
  if not f then return nil end
  local text = f:read "a"
  f:close()
  if not text or not text:find("Package: ", 1, true) then return nil end
  return facts.parse_dpkg_status(text)
end

-- The package table of the run: { [name] = {installed, status, version} },
-- from dpkg's status file (no process), else from one dpkg-query.
function M.db(run)
  local c = run.cache
  if not c.pkg then
    c.pkg = read_status(run)
    if not c.pkg then
      local res = run:check({ argv = facts.DPKG_QUERY }, "pkg", "dpkg-query", "reading the installed packages")
      c.pkg = facts.parse_dpkg(res.stdout)
    end
    c.pkg_partial = false
  end
  return c.pkg
end

-- installed(run, name) -> bool; a package not known installed after an
-- install in this run re-reads the table once (it may be a new dependency).
function M.is_installed(run, name)
  local db = M.db(run)
  if db[name] and db[name].installed then return true end
  if run.cache.pkg_partial then
    run:invalidate("pkg")
    db = M.db(run)
  end
  return db[name] and db[name].installed or false
end

local function mtime(path)
  local st = require("phanes.file").stat(path, true)
  return st and st.mtime or nil
end

local function has_lists(dir)
  local lfs = require "lfs"
  local ok, iter, state = pcall(lfs.dir, dir)
  if not ok then return false end
  for name in iter, state do
    if name:match "_Packages" or name:match "_InRelease$" then return true end
  end
  return false
end

-- cache_age(run) -> seconds since the last apt-get update (math.huge when
-- the lists are empty, e.g. in a fresh container image).
function M.cache_age(run)
  local p = run.paths
  if not has_lists(p.apt_lists) then return math.huge end
  local t = math.max(mtime(p.apt_pkgcache) or 0, mtime(p.apt_lists) or 0)
  if t == 0 then return math.huge end
  return math.max(os.time() - t, 0)
end

local function max_age(run, o)
  local v = o and o.max_age or run.config.apt_cache_max_age
  return tonumber(v) or M.DEFAULT_MAX_AGE
end

-- need_update(run, age_limit) -> bool: sources changed, or the cache is
-- older than age_limit and was not updated in this run.
function M.need_update(run, age_limit)
  if run.cache.apt_lists then return false end -- updated since the last invalidation
  if run:was_invalidated("apt_lists") then return true end -- a repository changed
  return M.cache_age(run) > age_limit
end

local function lock_message(stderr)
  if (stderr or ""):find "Could not get lock" or (stderr or ""):find "dpkg frontend lock" then
    return "the dpkg/apt lock is held by another process (another apt run or unattended-upgrades?)"
      .. "; waited " .. M.LOCK_TIMEOUT .. " s. Wait for it to finish and re-run"
  end
end

local function apt(run, kind, target, args, what)
  local argv = { "apt-get", "-q", "-y", "-o", "DPkg::Lock::Timeout=" .. M.LOCK_TIMEOUT }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local res, err = run.exec{ argv = argv, env = APT_ENV }
  if not res then fail(kind, target, what .. ": " .. tostring(err)) end
  if res.code ~= 0 then
    local msg = lock_message(res.stderr) or (what .. " failed (exit " .. tostring(res.code) .. ")")
    return nil, msg, context.tail(res.stderr ~= "" and res.stderr or res.stdout)
  end
  return res
end

-- update(run, kind, target): apt-get update, then the cache is fresh.
function M.update(run, kind, target)
  local res, msg, detail = apt(run, kind, target, { "update" }, "apt-get update")
  if not res then fail(kind, target, msg, detail) end
  run.cache.apt_lists = "updated"
end

local function install_args(o, missing)
  local args = { "install", "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold" }
  if not o.recommends then args[#args + 1] = "--no-install-recommends" end
  for _, n in ipairs(missing) do args[#args + 1] = n end
  return args
end

local function unknown_package(detail)
  return detail and (detail:find "Unable to locate package" or detail:find "has no installation candidate")
end

local function install(run, o, missing, target)
  local kind = "pkg.installed"
  if M.need_update(run, max_age(run)) then M.update(run, kind, target) end
  local res, msg, detail = apt(run, kind, target, install_args(o, missing), "apt-get install")
  if not res and unknown_package(detail) and not run.cache.apt_lists then
    M.update(run, kind, target)
    res, msg, detail = apt(run, kind, target, install_args(o, missing), "apt-get install")
  end
  if not res then fail(kind, target, msg, detail) end
  local db = M.db(run)
  for _, n in ipairs(missing) do
    db[n] = { installed = true, status = "ii ", version = db[n] and db[n].version or "" }
  end
  run.cache.pkg_partial = true -- dependencies came too
  run:invalidate("services", "accounts") -- packages bring units, users and groups (docker, redis, postgres)
end

function N.installed(ctx, o)
  local run = ctx.run
  local names = names_of(o, "pkg.installed")
  local target = table.concat(names, " ")
  return run:resource(ctx, "pkg.installed", target, function()
    local missing = {}
    for _, n in ipairs(names) do
      if not M.is_installed(run, n) then missing[#missing + 1] = n end
    end
    if #missing == 0 then return { status = "ok" } end
    local message = "install " .. table.concat(missing, " ")
    if ctx.dry_run then return { status = "would change", message = message } end
    install(run, o, missing, target)
    return { status = "changed", message = message }
  end)
end

function N.absent(ctx, o)
  local run = ctx.run
  local names = names_of(o, "pkg.absent")
  local target = table.concat(names, " ")
  return run:resource(ctx, "pkg.absent", target, function()
    local present = {}
    for _, n in ipairs(names) do
      local db = M.db(run)
      if db[n] and db[n].installed then present[#present + 1] = n end
    end
    if #present == 0 then return { status = "ok" } end
    local message = (o.purge and "purge " or "remove ") .. table.concat(present, " ")
    if ctx.dry_run then return { status = "would change", message = message } end
    local args = { o.purge and "purge" or "remove" }
    for _, n in ipairs(present) do args[#args + 1] = n end
    local res, msg, detail = apt(run, "pkg.absent", target, args, "apt-get " .. args[1])
    if not res then fail("pkg.absent", target, msg, detail) end
    run:invalidate("pkg", "services", "accounts") -- autoremoval and purge states too
    return { status = "changed", message = message }
  end)
end

local function age_text(s)
  if s == math.huge then return "never updated" end
  s = math.floor(s)
  if s < 120 then return string.format("%d s old", s) end
  if s < 7200 then return string.format("%d min old", s // 60) end
  if s < 172800 then return string.format("%d h old", s // 3600) end
  return string.format("%d days old", s // 86400)
end

function N.refresh(ctx, o)
  local run = ctx.run
  o = o or {}
  return run:resource(ctx, "pkg.refresh", "apt cache", function()
    if run.cache.apt_lists then
      return { status = "ok", message = "updated in this run" }
    end
    local age = M.cache_age(run)
    if not M.need_update(run, max_age(run, o)) then
      return { status = "ok", message = age_text(age) }
    end
    local message = "apt-get update (" .. (run:was_invalidated("apt_lists") and "sources changed" or age_text(age)) .. ")"
    if ctx.dry_run then return { status = "would change", message = message } end
    M.update(run, "pkg.refresh", "apt cache")
    return { status = "changed", message = message }
  end)
end

-- Declarations (doc/module-api.md, `make docs`): each resource's
-- description and arguments { name, type, required, description }; a
-- reader (no event, changes nothing) has reader = true.
M.api = {
  ["pkg.installed"] = { "Debian packages installed (one apt-get install for the missing ones; apt-get update first when the cache is old)", {
    { "...", "string", true, "(positional) package names" },
    { "recommends", "boolean", false, "install recommended packages too" },
  } },
  ["pkg.absent"] = { "Debian packages not installed", {
    { "...", "string", true, "(positional) package names" },
    { "purge", "boolean", false, "purge their config files too" },
  } },
  ["pkg.refresh"] = { "The apt cache no older than max_age (apt-get update)", {
    { "max_age", "integer", false, "seconds (default: config apt_cache_max_age)" },
  } },
}

return M
