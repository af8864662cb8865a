-- statefile.lua: what phanes installed on this machine, in
-- /var/lib/phanes/state.json (design page, "State").
--
--   local statefile = require "phanes.statefile"
--   local sf, err, code = statefile.open("/var/lib/phanes/state.json", { wait = 5 })
--   if not sf then ... end             -- code: "locked", "corrupt", "format", "io"
--   sf:record("redis", { status = "installed", version = "1", config_hash = "ab12..." })
--   sf:close()
--
-- Shape (format 1):
--   { format = 1, phanes_version, updated_at, hostname,
--     modules = { name = { status = "installed"|"failed", installed_at,
--                          updated_at, version, config_hash, last_error } } }
-- Times are ISO 8601 UTC strings. The file is rewritten whole and atomically
-- (phanes.file.write) after each module, under an exclusive lock on
-- `<path>.lock` held from open to close; the lock file holds the owner's pid
-- so a second run can say who holds it. A corrupt file is moved aside to
-- `<path>.corrupt-<time>` and reported; a file of a newer format is refused.
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

-- statefile.iso(epoch) -> "2026-01-31T12:00:00Z"
function M.iso(t)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t or os.time()))
end

local function empty()
  return { format = M.FORMAT, modules = {} }
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
  for name, m in pairs(data.modules) do
    if type(m) ~= "table" then
      return nil, path .. ": corrupt state file: modules." .. tostring(name) .. " is not an object", "corrupt"
    end
  end
  return data
end

-- statefile.read(path) -> state | nil, err, code. A missing file is an
-- empty state (state.missing = true). Never writes (phanes status uses it).
function M.read(path)
  local file = require "phanes.file"
  local text, err, errno = file.read(path)
  if not text then
    if errno == 2 or (err and err:find("No such file", 1, true)) then
      local s = empty()
      s.missing = true
      return s
    end
    return nil, tostring(err), "io"
  end
  return M.decode(text, path)
end

-- Move a corrupt file aside (never overwrite it): returns the new name.
local function set_aside(path)
  local aside = path .. ".corrupt-" .. os.date("!%Y%m%dT%H%M%SZ")
  local ok, err = os.rename(path, aside)
  if not ok then return nil, err end
  return aside
end

local function lock_holder(lockpath)
  local f = io.open(lockpath, "r")
  if not f then return nil end
  local pid = f:read "l"
  f:close()
  return pid and pid:match "^%d+$"
end

-- Take the lock, waiting up to `wait` seconds.
local function take_lock(lockpath, wait)
  local statelib = require "phanes.state"
  local lock, err = statelib.lock(lockpath, { wait = wait > 0, timeout = wait })
  if not lock then
    if err and err:find("locked", 1, true) then
      local pid = lock_holder(lockpath)
      return nil, string.format("another phanes run holds %s%s; wait for it to finish, "
        .. "or check that no phanes process is left", lockpath,
        pid and (" (pid " .. pid .. ")") or ""), "locked"
    end
    return nil, tostring(err), "io"
  end
  -- Write our pid in place (same inode: the flock stays valid).
  local f = io.open(lockpath, "w")
  if f then
    local ok, sys = pcall(require, "phanes.sys")
    f:write(tostring(ok and sys.getpid and sys.getpid() or ""), "\n")
    f:close()
  end
  return lock
end

local SF = {}
SF.__index = SF

-- statefile.open(path, { wait = seconds (default 5), hostname, version })
--   -> sf | nil, err, code
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
  local lock, lerr, lcode = take_lock(path .. ".lock", opts.wait or 5)
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

-- sf:record(name, { status = "installed"|"failed", version, config_hash,
--   error }) updates one module and writes the file. -> true | nil, err
function SF:record(name, info)
  local now = M.iso()
  local m = self.data.modules[name] or {}
  m.status = info.status
  m.updated_at = now
  if info.status == "installed" then
    m.installed_at = m.installed_at or now
    m.version = info.version
    m.config_hash = info.config_hash
    m.last_error = nil
  else
    m.last_error = info.error
  end
  self.data.modules[name] = m
  return self:write()
end

-- sf:write() -> true | nil, err (atomic replace of the whole file, 0644)
function SF:write()
  local json, file = require "phanes.json", require "phanes.file"
  self.data.format = M.FORMAT
  self.data.updated_at = M.iso()
  self.data.phanes_version = self.version or self.data.phanes_version
  self.data.hostname = self.hostname or self.data.hostname
  local text = json.encode(self.data, { pretty = true })
  local ok, err = file.write(self.path, text .. "\n", { mode = tonumber("0644", 8) })
  if not ok then return nil, "cannot write the state file: " .. tostring(err) end
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
