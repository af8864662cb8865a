-- facts.lua: what phanes knows about the machine, read once per run.
--
-- Host facts come from files (/etc/os-release, /proc, /run/systemd): no
-- process is started for them. Each fact is read the first time it is
-- asked for, then cached in the table:
--
--   local facts = require "phanes.engine.facts"
--   local f = facts.new()            -- lazy: nothing is read yet
--   if f.os.id == "debian" and f.init == "systemd" then ... end
--   local all = facts.gather()       -- every fact, e.g. for `phanes facts`
--
-- Facts: os {id, version_id, codename, pretty_name, id_like}, arch, kernel,
-- hostname, container ("docker", "lxc", "podman", "other", ... or false),
-- init ("systemd" or the name of PID 1), memory_mb, cpus,
-- swap {total_mb, devices = {{path, type, size_mb, used_mb}}},
-- proc_sys_writable (false in most containers).
--
-- The parse_* functions turn raw text into values; the specs feed them
-- fixtures (spec/fixtures/facts/). Package and service facts live in the
-- run (phanes.engine.context), since resources update them as they act.
local M = {}

-- Where the facts are read from; specs point these into a temp dir.
M.default_paths = {
  os_release = "/etc/os-release",
  os_release_fallback = "/usr/lib/os-release",
  meminfo = "/proc/meminfo",
  cpuinfo = "/proc/cpuinfo",
  swaps = "/proc/swaps",
  hostname = "/proc/sys/kernel/hostname",
  osrelease = "/proc/sys/kernel/osrelease",
  proc_sys_probe = "/proc/sys/vm/swappiness",
  systemd_container = "/run/systemd/container",
  systemd_system = "/run/systemd/system",
  dockerenv = "/.dockerenv",
  containerenv = "/run/.containerenv",
  pid1_environ = "/proc/1/environ",
  pid1_comm = "/proc/1/comm",
  nvidia_smi = { "/usr/bin/nvidia-smi", "/usr/local/bin/nvidia-smi", "/bin/nvidia-smi" },
}

local function read(path) return (require("phanes.file").read(path)) end

local function exists(path) return require("phanes.file").exists(path) end

local function trim(s)
  return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

-- parse_os_release(text) -> {id, version_id, codename, pretty_name, id_like, name}
-- Values may be quoted ("..." or '...'), with \" \\ \$ \` escapes inside.
function M.parse_os_release(text)
  local v = {}
  for line in (text or ""):gmatch "[^\n]+" do
    local k, val = line:match "^%s*([%w_]+)=(.*)$"
    if k then
      val = trim(val)
      local q = val:sub(1, 1)
      if (q == '"' or q == "'") and val:sub(-1) == q and #val >= 2 then
        val = val:sub(2, -2)
        if q == '"' then val = val:gsub('\\([\\"$`])', "%1") end
      end
      v[k] = val
    end
  end
  local os = {
    id = v.ID and v.ID:lower() or "linux",
    id_like = v.ID_LIKE,
    name = v.NAME,
    version_id = v.VERSION_ID,
    codename = v.VERSION_CODENAME or v.UBUNTU_CODENAME,
    pretty_name = v.PRETTY_NAME or v.NAME or "Linux",
  }
  -- Debian testing/sid has no VERSION_CODENAME in older files: take it from
  -- VERSION="12 (bookworm)".
  if not os.codename and v.VERSION then os.codename = v.VERSION:match "%((%a+)%)" end
  return os
end

-- parse_meminfo(text) -> MemTotal in MiB (integer) or nil
function M.parse_meminfo(text)
  local kb = (text or ""):match "MemTotal:%s*(%d+)%s*kB"
  return kb and math.floor(tonumber(kb) / 1024) or nil
end

-- parse_cpuinfo(text) -> number of processors (at least 1)
function M.parse_cpuinfo(text)
  local n = 0
  for _ in (text or ""):gmatch "\nprocessor%s*:" do n = n + 1 end
  if (text or ""):match "^processor%s*:" then n = n + 1 end
  return math.max(n, 1)
end

-- parse_swaps(text) -> {total_mb, devices = {{path, type, size_mb, used_mb}}}
-- /proc/swaps gives sizes in KiB; a path with spaces is written as \040.
function M.parse_swaps(text)
  local swap = { total_mb = 0, devices = {} }
  local first = true
  for line in (text or ""):gmatch "[^\n]+" do
    if first then
      first = false
    else
      local path, kind, size, used = line:match "^(%S+)%s+(%S+)%s+(%d+)%s+(%d+)"
      if path then
        path = path:gsub("\\(%d%d%d)", function(o) return string.char(tonumber(o, 8)) end)
        local dev = { path = path, type = kind, size_mb = math.floor(tonumber(size) / 1024),
          used_mb = math.floor(tonumber(used) / 1024) }
        swap.devices[#swap.devices + 1] = dev
        swap.total_mb = swap.total_mb + dev.size_mb
      end
    end
  end
  return swap
end

-- parse_environ(text) -> { NAME = value } from a NUL-separated environ file
function M.parse_environ(text)
  local env = {}
  for entry in (text or ""):gmatch "[^%z]+" do
    local k, v = entry:match "^([^=]+)=(.*)$"
    if k then env[k] = v end
  end
  return env
end

-- detect_container(paths) -> "docker"|"lxc"|"podman"|"systemd-nspawn"|"other"|... or false
function M.detect_container(paths)
  local name = read(paths.systemd_container)
  if name and trim(name) ~= "" then return trim(name) end
  if exists(paths.dockerenv) then return "docker" end
  if exists(paths.containerenv) then return "podman" end
  local env = M.parse_environ(read(paths.pid1_environ))
  if env.container and env.container ~= "" then return env.container end
  return false
end

-- detect_init(paths) -> "systemd" when systemd runs as init, else PID 1's name
function M.detect_init(paths)
  if exists(paths.systemd_system) then return "systemd" end
  local comm = read(paths.pid1_comm)
  comm = comm and trim(comm) or ""
  return comm ~= "" and comm or "unknown"
end

-- Opening for writing changes nothing, and fails on a read-only /proc/sys
-- (containers) or without the rights to tune the kernel.
local function proc_sys_writable(paths)
  local f = io.open(paths.proc_sys_probe, "r+")
  if f then f:close() return true end
  return false
end

local function uname_machine()
  local u = require("phanes.sys").uname()
  return u and u.machine or nil
end

-- The dpkg-query call that lists every package in one process; see
-- parse_dpkg.
M.DPKG_QUERY = { "dpkg-query", "-W",
  "--showformat=${Package}\\t${db:Status-Abbrev}\\t${Version}\\n" }

-- parse_dpkg(text) -> { [name] = { installed = bool, status = "ii ", version = "..." } }
-- A package is installed when the second letter of db:Status-Abbrev is
-- "i" ("ii", "hi"); "rc" (removed, config left), "iU" (unpacked) are not.
function M.parse_dpkg(text)
  local db = {}
  for line in (text or ""):gmatch "[^\n]+" do
    local name, status, version = line:match "^([^\t]+)\t([^\t]*)\t([^\t]*)$"
    if name then
      local installed = status:sub(2, 2) == "i"
      -- a multi-arch package is listed once per architecture: installed wins
      if installed or not db[name] then
        db[name] = { installed = installed, status = status, version = version }
      end
    end
  end
  return db
end

-- dpkg's status words -> the letters of ${db:Status-Abbrev}
local WANT = { unknown = "u", install = "i", hold = "h", deinstall = "r", purge = "p" }
local STATE = { ["not-installed"] = "n", ["config-files"] = "c", ["half-installed"] = "H",
  unpacked = "U", ["half-configured"] = "F", ["triggers-awaiting"] = "W",
  ["triggers-pending"] = "t", installed = "i" }

local function stanza_field(stanza, name)
  local i = stanza:find(name, 1, true)
  if not i then return nil end
  local j = stanza:find("\n", i + #name, true)
  return stanza:sub(i + #name, j and j - 1 or -1)
end

-- parse_dpkg_status(text) -> the same table as parse_dpkg, from dpkg's own
-- database file (/var/lib/dpkg/status): what `dpkg-query -W` prints, without
-- a process. Plain searches, no pattern per line: ~1.5 ms for 300 packages.
function M.parse_dpkg_status(text)
  local db = {}
  text = "\n" .. (text or "") .. "\n\n"
  local pos = 1
  while true do
    local e = text:find("\n\n", pos + 1, true)
    if not e then break end
    local stanza = text:sub(pos, e)
    pos = e
    local name = stanza_field(stanza, "\nPackage: ")
    local status = stanza_field(stanza, "\nStatus: ")
    if name and name ~= "" and status then
      local want, flag, state = status:match "^(%S+)%s+(%S+)%s+(%S+)"
      local abbrev = (WANT[want] or "?") .. (STATE[state] or "?") .. (flag == "ok" and " " or "R")
      local installed = STATE[state] == "i"
      if installed or not db[name] then
        db[name] = { installed = installed, status = abbrev,
          version = stanza_field(stanza, "\nVersion: ") or "" }
      end
    end
  end
  return db
end

-- parse_systemctl_show(text) -> { [name] = unit } for the blocks of
-- `systemctl show -p Id,Names,LoadState,ActiveState,SubState,UnitFileState`;
-- a unit is listed under its Id and each of its Names (aliases), with and
-- without the ".service" suffix.
-- unit = { id, load, active, sub, file_state }
function M.parse_systemctl_show(text)
  local units = {}
  local function add(b)
    if not b.Id or b.Id == "" then return end
    local u = { id = b.Id, load = b.LoadState or "", active = b.ActiveState or "",
      sub = b.SubState or "", file_state = b.UnitFileState or "" }
    local names = { b.Id }
    for n in (b.Names or ""):gmatch "%S+" do names[#names + 1] = n end
    for _, n in ipairs(names) do
      units[n] = u
      local short = n:match "^(.+)%.service$"
      if short then units[short] = u end
    end
  end
  local block = {}
  for line in ((text or "") .. "\n\n"):gmatch "([^\n]*)\n" do
    if line == "" then
      add(block)
      block = {}
    else
      local k, v = line:match "^([%w]+)=(.*)$"
      if k then block[k] = v end
    end
  end
  return units
end

-- parse_passwd(text) -> { [name] = { name, uid, gid, gecos, home, shell } }
function M.parse_passwd(text)
  local users = {}
  for line in (text or ""):gmatch "[^\n]+" do
    local name, uid, gid, gecos, home, shell =
      line:match "^([^:#][^:]*):[^:]*:(%d+):(%d+):([^:]*):([^:]*):([^:]*)$"
    if name then
      users[name] = { name = name, uid = tonumber(uid), gid = tonumber(gid), gecos = gecos,
        home = home, shell = shell }
    end
  end
  return users
end

-- parse_group(text) -> { [name] = { name, gid, members = { [user] = true } } }
function M.parse_group(text)
  local groups = {}
  for line in (text or ""):gmatch "[^\n]+" do
    local name, gid, members = line:match "^([^:#][^:]*):[^:]*:(%d+):([^:]*)$"
    if name then
      local g = { name = name, gid = tonumber(gid), members = {} }
      for m in members:gmatch "[^,%s]+" do g.members[m] = true end
      groups[name] = g
    end
  end
  return groups
end

-- One function per fact; each receives the paths table.
local readers = {
  os = function(p)
    return M.parse_os_release(read(p.os_release) or read(p.os_release_fallback))
  end,
  arch = function() return uname_machine() or "unknown" end,
  kernel = function(p) return trim(read(p.osrelease) or "unknown") end,
  hostname = function(p) return trim(read(p.hostname) or "localhost") end,
  container = function(p) return M.detect_container(p) end,
  init = function(p) return M.detect_init(p) end,
  memory_mb = function(p) return M.parse_meminfo(read(p.meminfo)) end,
  cpus = function(p) return M.parse_cpuinfo(read(p.cpuinfo)) end,
  swap = function(p) return M.parse_swaps(read(p.swaps)) end,
  proc_sys_writable = function(p) return proc_sys_writable(p) end,
  -- an NVIDIA driver's nvidia-smi on the host (the torch index of comfyui)
  nvidia = function(p)
    for _, path in ipairs(p.nvidia_smi) do if exists(path) then return true end end
    return false
  end,
}
M.names = { "os", "arch", "kernel", "hostname", "container", "init",
  "memory_mb", "cpus", "swap", "proc_sys_writable", "nvidia" }

local function merged_paths(paths)
  local p = {}
  for k, v in pairs(M.default_paths) do p[k] = v end
  for k, v in pairs(paths or {}) do p[k] = v end
  return p
end

-- facts.new([paths]) -> lazy facts table; each fact is read on first use.
-- Asking for an unknown fact is an error (a typo, not a missing fact).
function M.new(paths)
  local p = merged_paths(paths)
  return setmetatable({}, {
    __index = function(t, k)
      local reader = readers[k]
      if not reader then error("unknown fact '" .. tostring(k) .. "'", 2) end
      local v = reader(p)
      rawset(t, k, v)
      return v
    end,
  })
end

-- facts.gather([exec], [paths]) -> plain table with every fact (for
-- `phanes facts`). exec is accepted for symmetry with the run; host facts
-- need no process.
function M.gather(_exec, paths)
  local lazy, all = M.new(paths), {}
  for _, k in ipairs(M.names) do all[k] = lazy[k] end
  return all
end

return M
