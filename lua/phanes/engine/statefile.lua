-- statefile.lua: what phanes installed on this machine, in
-- /var/lib/phanes/state.json (design page, "State").
--
--   local statefile = require "phanes.engine.statefile"
--   local sf, err, code = statefile.open("/var/lib/phanes/state.json", { wait = 5 })
--   if not sf then ... end             -- code: "locked", "corrupt", "format", "io"
--   sf:record("redis", { status = "installed", version = "1", config_hash = "ab12..." })
--   sf:close()
--
-- Shape (format 1):
--   { format = 1, phanes_version, updated_at, hostname,
--     modules = { name = { status = "installed"|"failed", installed_at,
--                          updated_at, version, config_hash, last_error,
--                          units = {...}, probes = { files, dirs, command, url },
--                          changing = true while a change is under way } } }
-- Times are ISO 8601 UTC strings. The file is rewritten whole and atomically
-- after each module whose record changed, and once at the end of a run that
-- changed nothing (sf:finish), under an exclusive lock held from open to
-- close. The lock is one per machine (statefile.lock_path(): /run/phanes.lock
-- for root), whatever --state says, so two runs with different state files
-- cannot interleave; it holds the owner's pid so a second run can say who
-- holds it. The state file, its temp file and the lock are opened without
-- following links (phanes.state); a link or a foreign file planted where
-- others can write is refused ("unsafe"). A corrupt file is moved aside to
-- `<path>.corrupt-<time>[-N]` (never over an earlier one) and reported; a
-- file of a newer format is refused.
local M = {}

M.FORMAT = 1
M.DEFAULT_PATH = "/var/lib/phanes/state.json"

-- statefile.path{ flag = , env = , config = } -> path: --state, then
-- PHANES_STATE, then config `state_path`, then the default.
function M.path(opts)
  opts = opts or {}
  local env = opts.env
  if env == nil then env = os.getenv "PHANES_STATE" end
  for _, p in ipairs { opts.flag or false, env or false, opts.config or false } do
    if p and p ~= "" then return p end
  end
  return M.DEFAULT_PATH
end

-- statefile.lock_path{ env = , euid = } -> the machine's lock: PHANES_LOCK
-- (specs), else /run/phanes.lock as root, else one per user in
-- $XDG_RUNTIME_DIR or /tmp (a user run changes only what the user owns).
function M.lock_path(opts)
  opts = opts or {}
  local env = opts.env or os.getenv
  local p = env "PHANES_LOCK"
  if p and p ~= "" then return p end
  local euid = opts.euid
  if euid == nil then
    euid = require("phanes.sys").geteuid()
  end
  if euid == 0 then return "/run/phanes.lock" end
  local rt = env "XDG_RUNTIME_DIR"
  if rt and rt:match "^/" then return rt .. "/phanes.lock" end
  return "/tmp/phanes-" .. euid .. ".lock"
end

-- statefile.iso(epoch) -> "2026-01-31T12:00:00Z"
function M.iso(t)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t or os.time()))
end

local function empty()
  return { format = M.FORMAT, modules = {} }
end

local STRINGS = { "updated_at", "phanes_version", "hostname" }
local MODULE_STRINGS = { "status", "installed_at", "updated_at", "version", "config_hash", "last_error" }

local function field_error(where, v, want)
  return string.format("%s must be %s, not %s", where, want, type(v))
end

-- nil, or what is wrong with a list of strings (nil is fine)
local function string_list(v, at)
  if v == nil then return nil end
  if type(v) ~= "table" then return field_error(at, v, "a list") end
  for i, u in pairs(v) do
    if type(u) ~= "string" then return field_error(at .. "[" .. tostring(i) .. "]", u, "a string") end
  end
  return nil
end

-- statefile.mistyped(data) -> nil | "modules.redis.version must be a string, not table":
-- the first field (modules by name) whose type is wrong, so that status
-- never meets one it cannot print.
function M.mistyped(data)
  for _, k in ipairs(STRINGS) do
    if data[k] ~= nil and type(data[k]) ~= "string" then return field_error(k, data[k], "a string") end
  end
  local names = {}
  for name in pairs(data.modules) do names[#names + 1] = tostring(name) end
  table.sort(names)
  for _, name in ipairs(names) do
    local m, at = data.modules[name], "modules." .. name
    if type(m) ~= "table" then return field_error(at, m, "an object") end
    for _, k in ipairs(MODULE_STRINGS) do
      if m[k] ~= nil and type(m[k]) ~= "string" then return field_error(at .. "." .. k, m[k], "a string") end
    end
    if m.changing ~= nil and m.changing ~= true then return field_error(at .. ".changing", m.changing, "true") end
    local bad = string_list(m.units, at .. ".units")
    if bad then return bad end
    if m.probes ~= nil then
      if type(m.probes) ~= "table" then return field_error(at .. ".probes", m.probes, "an object") end
      for _, k in ipairs { "files", "dirs", "command" } do
        bad = string_list(m.probes[k], at .. ".probes." .. k)
        if bad then return bad end
      end
      if m.probes.url ~= nil and type(m.probes.url) ~= "string" then
        return field_error(at .. ".probes.url", m.probes.url, "a string")
      end
      local p = m.probes
      if not (p.url or next(p.files or {}) or next(p.dirs or {}) or next(p.command or {})) then
        return at .. ".probes must name files, dirs, a command or a url"
      end
    end
  end
  return nil
end

-- statefile.decode(text, path) -> state | nil, err, code
-- code "corrupt" (not JSON, or not the state's shape) or "format" (newer).
function M.decode(text, path)
  local json = require "phanes.json"
  local data, err = json.decode(text)
  if data == nil then
    return nil, path .. ": corrupt state file: " .. tostring(err), "corrupt"
  end
  if type(data) ~= "table" or type(data.format) ~= "number"
      or (data.modules ~= nil and type(data.modules) ~= "table") then
    return nil, path .. ": corrupt state file: not a phanes state (no format/modules)", "corrupt"
  end
  if data.format > M.FORMAT then
    return nil, string.format("%s: state format %s is newer than this phanes understands (%d); "
      .. "use a newer phanes, or move the file away to start over", path,
      tostring(data.format), M.FORMAT), "format"
  end
  data.modules = data.modules or {}
  local bad = M.mistyped(data)
  if bad then return nil, path .. ": corrupt state file: " .. bad, "corrupt" end
  return data
end

-- statefile.read(path) -> state | nil, err, code. A missing file is an
-- empty state (state.missing = true). Never writes (phanes status uses it).
-- code: "corrupt", "format", "unsafe" (a planted link or foreign file), "io".
function M.read(path)
  local text, err, code = require("phanes.state").read(path)
  if not text then
    if code == "missing" then
      local s = empty()
      s.missing = true
      return s
    end
    return nil, tostring(err), code
  end
  return M.decode(text, path)
end

-- Move a corrupt file aside, never over one moved aside earlier: returns
-- the new name.
local function set_aside(path)
  return require("phanes.state").set_aside(path, ".corrupt-" .. os.date("!%Y%m%dT%H%M%SZ"))
end

-- Take the machine's lock, waiting up to `wait` seconds.
local function take_lock(lockpath, wait)
  local statelib = require "phanes.state"
  local lock, err, code = statelib.lock(lockpath, { wait = wait > 0, timeout = wait })
  if not lock then
    if code == "locked" then
      local pid = tostring(err):match "%(pid (%d+)%)"
      return nil, string.format("another phanes run holds %s%s; wait for it to finish, "
        .. "or check that no phanes process is left", lockpath,
        pid and (" (pid " .. pid .. ")") or ""), "locked"
    end
    return nil, tostring(err), code == "unsafe" and "unsafe" or "io"
  end
  return lock
end

local SF = {}
SF.__index = SF

-- statefile.open(path, { wait = seconds (default 5), hostname, version,
--   lock = path (default statefile.lock_path()) }) -> sf | nil, err, code
-- Creates the parent directory when missing. On a corrupt file: moves it
-- aside, returns sf with sf.warning saying where it went. On a newer format:
-- nil, err, "format" (and releases the lock).
function M.open(path, opts)
  opts = opts or {}
  local file = require "phanes.file"
  local dir = path:match "^(.*)/[^/]*$"
  if dir and dir ~= "" and not file.exists(dir) then
    local ok, err = file.mkdir(dir, { parents = true, mode = tonumber("0755", 8) })
    if not ok then return nil, "cannot create the state directory: " .. tostring(err), "io" end
  end
  local lock, lerr, lcode = take_lock(opts.lock or M.lock_path(), opts.wait or 5)
  if not lock then return nil, lerr, lcode end
  local data, err, code = M.read(path)
  local warning
  if not data and code == "corrupt" then
    local aside, merr = set_aside(path)
    if not aside then
      lock:unlock()
      return nil, err .. "; could not move it aside: " .. tostring(merr), "corrupt"
    end
    warning = err .. "; kept as " .. aside .. ", starting a new state"
    data = empty()
  elseif not data then
    lock:unlock()
    return nil, err, code
  end
  data.missing = nil
  return setmetatable({ path = path, data = data, lock = lock, warning = warning,
    hostname = opts.hostname, version = opts.version }, SF)
end

local function same_list(a, b)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" or #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

local function same_probes(a, b)
  if a == nil or b == nil then return a == b end
  return a.url == b.url and same_list(a.files or {}, b.files or {}) and same_list(a.dirs or {}, b.dirs or {})
    and same_list(a.command or {}, b.command or {})
end

-- sf:record(name, { status = "installed"|"failed", version, config_hash,
--   error, units = {...}, probes = {...}, changed = bool }) -> true | nil, err
-- Updates one module and writes the file, but only when its record
-- changes (status, version, config hash, error, units; a first install)
-- or when the module changed the machine (changed = true): a no-op module
-- costs no write. The module's updated_at is the time of that write.
-- units: the systemd units the module asked about (a hint: the next run
-- reads all of them with one systemctl). probes: the detect probes of the
-- config it was installed with (files, dirs, command, url), what `phanes
-- status` checks when it is given no --config.
function SF:record(name, info)
  local m = self.data.modules[name] or {}
  local before = { m.status, m.version, m.config_hash, m.last_error, m.installed_at }
  local units = info.units
  if units ~= nil and #units == 0 then units = nil end
  m.status = info.status
  local finished = info.status == "installed" and m.changing
  if finished then m.changing = nil end -- done: the next run owes nothing
  if info.status == "installed" then
    m.installed_at = m.installed_at or M.iso()
    m.version = info.version
    m.config_hash = info.config_hash
    m.last_error = nil
  else
    m.last_error = info.error
  end
  local after = { m.status, m.version, m.config_hash, m.last_error, m.installed_at }
  local dirty = info.changed or finished or self.data.modules[name] == nil
  for i = 1, 5 do dirty = dirty or before[i] ~= after[i] end
  if info.units ~= nil and not same_list(m.units, units) then
    m.units = units
    dirty = true
  end
  if info.status == "installed" and not same_probes(m.probes, info.probes) then
    m.probes = info.probes
    dirty = true
  end
  self.data.modules[name] = m
  if not dirty then return true end
  m.updated_at = M.iso()
  return self:write()
end

-- sf:begin(name) -> true | nil, err: the module has started to change the
-- machine (its first changed resource). Written at once; cleared when the
-- module is recorded installed. A run killed in between leaves it, so the
-- next run knows the module owes what it did not finish (sf:pending).
function SF:begin(name)
  local m = self.data.modules[name] or {}
  self.data.modules[name] = m
  if m.changing then return true end
  m.changing = true
  return self:write()
end

-- sf:pending(name) -> true when the last run of the module changed something
-- and did not end installed (killed, interrupted, or failed after a change).
function SF:pending(name)
  local m = self.data.modules[name]
  return m ~= nil and m.changing == true
end

-- sf:finish() -> true | nil, err: at the end of a run, one write when the
-- run wrote nothing yet (a no-op run), so that the file's updated_at says
-- when phanes last ran (`status --remote`'s "last apply").
function SF:finish()
  if (self.writes or 0) > 0 then return true end
  return self:write()
end

-- sf:write() -> true | nil, err (atomic replace of the whole file, 0644)
function SF:write()
  local json, statelib = require "phanes.json", require "phanes.state"
  self.data.format = M.FORMAT
  self.data.updated_at = M.iso()
  self.data.phanes_version = self.version or self.data.phanes_version
  self.data.hostname = self.hostname or self.data.hostname
  local text = json.encode(self.data, { pretty = true })
  local ok, err = statelib.write(self.path, text .. "\n", tonumber("0644", 8))
  if not ok then return nil, "cannot write the state file: " .. tostring(err) end
  self.writes = (self.writes or 0) + 1
  return true
end

-- sf:close() releases the lock (safe to call twice).
function SF:close()
  if self.lock then
    self.lock:unlock()
    self.lock = nil
  end
end
SF.__close = SF.close

return M
