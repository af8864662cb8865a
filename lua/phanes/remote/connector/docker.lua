-- remote/connector/docker.lua: `--remote docker:NAME`: a running container
-- on this machine, through the docker CLI as argv (no shell strings here):
--   exec: docker exec [-i] [-u USER] NAME sh -c CMD   (argv: NAME ARGV...)
--   put:  docker cp - NAME:DIR    (a one-file tar stream on its stdin)
--   get:  docker cp NAME:PATH -   (a tar stream on its stdout)
-- opts.tick is called as output arrives (phanes.exec has no idle
-- callback): that is when a Ctrl-C is seen.
local util = require "phanes.remote.util"
local M = {}

local S = {}
S.__index = S

local function cli() return "docker" end

local function fail(self, what, res, e)
  if not res then return nil, "docker:" .. self.name .. ": " .. what .. ": " .. tostring(e), "missing" end
  local why = (res.stderr or ""):gsub("%s+$", "")
  if why == "" then why = "exit " .. tostring(res.code or res.signal_name) end
  return nil, "docker:" .. self.name .. ": " .. what .. ": " .. why, "lost"
end

function S:exec(cmd, opts)
  opts = opts or {}
  local argv = { cli(), "exec" }
  if opts.stdin then argv[#argv + 1] = "-i" end
  if self.user then argv[#argv + 1] = "-u"; argv[#argv + 1] = self.user end
  argv[#argv + 1] = self.name
  if type(cmd) == "table" then
    for _, a in ipairs(cmd) do argv[#argv + 1] = a end
  else
    for _, a in ipairs { "sh", "-c", cmd } do argv[#argv + 1] = a end
  end
  self.execs = self.execs + 1
  local res, e = self.run { argv = argv, stdin = opts.stdin, timeout = opts.timeout,
    stream = require("phanes.remote.connector").stream_tick(opts) }
  if not res then return nil, "docker:" .. self.name .. ": " .. tostring(e), "missing" end
  -- 125-127 with nothing from the command: docker itself failed (no such container, daemon down)
  if (res.code == 125 or res.code == 126 or res.code == 127) and res.stderr:match "^Error" then
    return fail(self, "exec", res)
  end
  return res
end

local function dirname(p) return p:match "^(.*)/[^/]*$" or "." end
local function basename(p) return p:match "[^/]*$" end

-- data: bytes, or { path = a local file }
function S:put(path, data, mode)
  if type(data) == "table" then
    local bytes, e = require("phanes.file").read(data.path)
    if not bytes then return nil, e end
    data = bytes
  end
  local tar, terr = util.tar { { name = basename(path), data = data, mode = mode or tonumber("0644", 8) } }
  if not tar then return nil, terr end
  local dir = dirname(path)
  if dir == "" then dir = "/" end
  local res, e = self.run { argv = { cli(), "cp", "-", self.name .. ":" .. dir }, stdin = tar }
  if not res or res.code ~= 0 then return fail(self, "put " .. path, res, e) end
  return true
end

-- the first regular file of a tar stream
local function untar_one(t)
  local pos = 1
  while pos + 512 <= #t + 1 do
    local h = t:sub(pos, pos + 511)
    if h == string.rep("\0", 512) then break end
    local size = tonumber((h:sub(125, 136):gsub("[%z ]", "")), 8) or 0
    local typ = h:sub(157, 157)
    if typ == "0" or typ == "\0" then return t:sub(pos + 512, pos + 511 + size) end
    pos = pos + 512 + math.ceil(size / 512) * 512
  end
  return nil
end

function S:get(path)
  local res, e = self.run { argv = { cli(), "cp", self.name .. ":" .. path, "-" } }
  if not res or res.code ~= 0 then return fail(self, "get " .. path, res, e) end
  local data = untar_one(res.stdout)
  if not data then return nil, "docker:" .. self.name .. ": get " .. path .. ": not a regular file" end
  return data
end
M.untar_one = untar_one

function S:info()
  return { connector = "docker", host = self.name, user = self.user or self.login or "root", arch = self.arch }
end

function S:stats() return { channels = 0, execs = self.execs } end
function S:close() end

-- open(target, opts) -> session | nil, err, kind: the container must be
-- running (docker inspect says so). opts.exec: another phanes.exec.run (specs).
function M.open(t, o)
  local self = setmetatable({ name = t.host, user = t.user or (o and o.user), run = o and o.exec or require("phanes.exec").run,
    execs = 0 }, S)
  local res, e = self.run { argv = { cli(), "inspect", "-f", "{{.State.Running}} {{.Config.User}}", self.name } }
  if not res then
    return nil, "docker:" .. self.name .. ": cannot run " .. cli() .. ": " .. tostring(e)
      .. "\n  install docker (Debian: docker.io) on this machine", "missing"
  end
  if res.code ~= 0 then
    return nil, "docker:" .. self.name .. ": no such container (" .. (res.stderr:match "[^\n]+" or ("exit " .. tostring(res.code)))
      .. ")\n  start it first, or check the name with `docker ps`", "missing"
  end
  local running, user = res.stdout:match "^(%S+) ?(%S*)"
  if running ~= "true" then
    return nil, "docker:" .. self.name .. ": the container is not running: start it with `docker start " .. self.name .. "`", "unreachable"
  end
  self.login = user ~= "" and user or "root"
  return self
end

return M
