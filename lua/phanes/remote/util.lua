-- remote/util.lua: small helpers the remote pieces share: shell quoting, a
-- tar writer (the run's files go over in one stream), time, terminal checks,
-- the per-host record directory, the overrides file of a remote run.
local M = {}

-- util.shquote("it's") -> 'it'\''s'
function M.shquote(s)
  s = tostring(s)
  if s:match "^[%w%._/:=@%-]+$" then return s end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

function M.now() return require("phanes.sys").now() end

function M.isatty(fd) return require("phanes.sys").isatty(fd) end

M.iso = require("phanes.engine.statefile").iso

local function octal(n, width)
  return string.format("%0" .. (width - 1) .. "o", n) .. "\0"
end

local function pad(s, n) return s .. string.rep("\0", n - #s) end

-- One ustar header (names up to 255 bytes via the prefix field).
local function header(name, size, mode, mtime)
  local prefix = ""
  if #name > 100 then
    local cut = name:sub(1, 155):match "^(.*)/"
    if not cut or #name - #cut - 1 > 100 then return nil, name .. ": name too long for tar" end
    prefix, name = cut, name:sub(#cut + 2)
  end
  local h = pad(name, 100) .. octal(mode, 8) .. octal(0, 8) .. octal(0, 8) .. octal(size, 12)
    .. octal(mtime, 12) .. "        " .. "0" .. pad("", 100) .. "ustar\0" .. "00"
    .. pad("", 32) .. pad("", 32) .. octal(0, 8) .. octal(0, 8) .. pad(prefix, 155) .. pad("", 12)
  local sum = 0
  for i = 1, #h do sum = sum + h:byte(i) end
  return h:sub(1, 148) .. string.format("%06o\0 ", sum) .. h:sub(157)
end

-- util.tar({ { name = "config/c.yaml", data = "...", mode = 384 }, ... }) -> bytes | nil, err
function M.tar(files)
  local parts, mtime = {}, os.time()
  for _, f in ipairs(files) do
    local h, err = header(f.name, #f.data, f.mode or 384, mtime)
    if not h then return nil, err end
    parts[#parts + 1] = h
    parts[#parts + 1] = f.data
    parts[#parts + 1] = string.rep("\0", (512 - #f.data % 512) % 512)
  end
  parts[#parts + 1] = string.rep("\0", 1024)
  return table.concat(parts)
end

-- Where the controller keeps what it learnt about each host.
function M.state_home()
  local base = os.getenv "XDG_STATE_HOME"
  if not base or base == "" then base = (os.getenv "HOME" or "") .. "/.local/state" end
  return base .. "/phanes"
end

function M.host_dir(name)
  return M.state_home() .. "/hosts/" .. tostring(name):gsub("[^%w%._@:%-]", "_")
end

function M.mkdir_p(path)
  local file = require "phanes.file"
  if file.exists(path) then return true end
  return file.mkdir(path, { mode = tonumber("0700", 8), parents = true })
end

-- util.read_record(name) -> last.json table | nil
function M.read_record(name)
  local f = io.open(M.host_dir(name) .. "/last.json", "rb")
  if not f then return nil end
  local text = f:read "a"
  f:close()
  local v = require("phanes.json").decode(text)
  return type(v) == "table" and v or nil
end

-- Lines split as they arrive; feed(chunk) calls emit(line) for each
-- complete line (without "\n"); flush() emits the rest.
function M.liner(emit)
  local buf = ""
  local self = {}
  function self.feed(chunk)
    buf = buf .. chunk
    while true do
      local i = buf:find("\n", 1, true)
      if not i then break end
      local line = buf:sub(1, i - 1)
      buf = buf:sub(i + 1)
      emit(line)
    end
  end
  function self.flush()
    if buf ~= "" then
      local rest = buf
      buf = ""
      emit(rest)
    end
  end
  return self
end

-- The overrides of a remote run (--set values and PHANES_* settings of the
-- controller) travel in the run's payload as one JSON file, root-only on
-- the target, never on a command line or in an environment:
--   { "set": [ "redis.password=..." ], "env": { "PHANES_REDIS_BIND": "..." } }
-- util.read_overrides(path, sets, env) -> sets, env | nil, err: the file's
-- --set values come before those of the command line (which win), its
-- settings over the process's environment.
function M.read_overrides(path, sets, env)
  local text, err = require("phanes.file").read(path)
  if not text then return nil, "--overrides " .. path .. ": " .. tostring(err) end
  local v = require("phanes.json").decode(text)
  if type(v) ~= "table" or v[1] ~= nil or (v.set ~= nil and type(v.set) ~= "table") or (v.env ~= nil and type(v.env) ~= "table") then
    return nil, "--overrides " .. path .. ": expected { \"set\": [...], \"env\": {...} }"
  end
  local outs, oute = {}, {}
  for _, s in ipairs(v.set or {}) do outs[#outs + 1] = tostring(s) end
  for _, s in ipairs(sets or {}) do outs[#outs + 1] = s end
  for k, x in pairs(env or {}) do oute[k] = x end
  for k, x in pairs(v.env or {}) do
    if type(k) == "string" and k:match "^PHANES_" then oute[k] = tostring(x) end
  end
  return outs, oute
end

return M
