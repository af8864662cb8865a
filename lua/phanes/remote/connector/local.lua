-- remote/connector/local.lua: the local connector: this machine, as the
-- user phanes runs as. exec is phanes.exec (a shell string runs under
-- /bin/sh -c), put/get are phanes.file. opts.tick is called as output
-- arrives (phanes.exec has no idle callback): that is when a Ctrl-C is seen.
local M = {}

local S = {}
S.__index = S

-- the exec options phanes.exec takes from the connector's set
local function exec_opts(cmd, opts)
  local x = { stdin = opts.stdin, stream = require("phanes.remote.connector").stream_tick(opts), timeout = opts.timeout,
    env = opts.env }
  if type(cmd) == "table" then x.argv = cmd else x.shell = cmd end
  return x
end

function S:exec(cmd, opts)
  self.execs = self.execs + 1
  return self.run(exec_opts(cmd, opts or {}))
end

-- data: bytes, or { path = a local file } (copied)
function S:put(path, data, mode)
  local file = require "phanes.file"
  if type(data) == "table" then
    local bytes, e = file.read(data.path)
    if not bytes then return nil, e end
    data = bytes
  end
  return file.write(path, data, { mode = mode or tonumber("0644", 8) })
end

function S:get(path)
  return require("phanes.file").read(path)
end

function S:info()
  local sys = require "phanes.sys"
  local pw = sys.getpwnam(sys.geteuid())
  return { connector = "local", user = pw and pw.name or tostring(sys.geteuid()), host = sys.hostname(),
    arch = sys.uname().machine }
end

function S:stats() return { channels = 0, execs = self.execs } end
function S:close() end

-- open(target, opts) -> session; opts.exec: another phanes.exec.run (specs)
function M.open(_, o)
  return setmetatable({ run = o and o.exec or require("phanes.exec").run, execs = 0 }, S)
end

return M
