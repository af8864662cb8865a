-- Busted helper for the disposable test hosts of spec/hosts/testhost.
--
--   local th = require "spec.support.testhost"
--   describe("my module", function()
--     if not th.available() then pending("needs root + namespaces") return end
--     th.use(2)                     -- up(2) in setup, down() in teardown
--     it("works", function()
--       local ok, out, code = th.exec(1, "systemctl is-system-running")
--     end)
--   end)
--
-- The hosts run Debian 12, or Debian 13 when PHANES_TEST_SUITE=trixie is in
-- the environment (the harness reads it; each suite has its own base).
-- PHANES_TEST_ARCH=arm64 makes them arm64, under qemu user emulation
-- (spec/integration/arm64_spec.lua).
--
-- Teardown is guaranteed: th.use registers a busted teardown (runs on failing
-- tests too), and th.up starts a watchdog that runs `testhost down` when this
-- Lua process ends in any other way (error, Ctrl-C, kill).
local M = {}

local function dirname(p) return (p:gsub("/[^/]*$", "")) end
local here = dirname((debug.getinfo(1, "S").source:gsub("^@", "")))
if here == "" or here == debug.getinfo(1, "S").source then here = "." end

-- path of the harness script (override with PHANES_TESTHOST)
M.script = os.getenv("PHANES_TESTHOST") or (here .. "/../hosts/testhost")

function M.quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
local q = M.quote

local function argv(t)
  local out = {}
  for i, a in ipairs(t) do out[i] = q(a) end
  return table.concat(out, " ")
end

-- run a shell command; returns ok, combined output, exit code
function M.run(cmd)
  local p = assert(io.popen(cmd .. " 2>&1", "r"))
  local out = p:read("a")
  local ok, _, code = p:close()
  return ok == true, out, code
end
local run = M.run

-- th.bin() -> absolute path of the phanes binary under test (PHANES_BIN,
-- else build/phanes): specs cd into temporary homes before running it
function M.bin()
  local p = assert(io.popen("readlink -f " .. q(os.getenv "PHANES_BIN" or "build/phanes")))
  local out = p:read "l"
  p:close()
  return out
end

-- th.read(path) -> the file's bytes | nil when it cannot be read
function M.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read "a"
  f:close()
  return s
end

local function th(args) return q(M.script) .. " " .. args end

-- true, or false and the reason test hosts cannot run here
function M.available()
  local ok, out = run("id -u")
  if not ok or out:match("^%s*(%d+)") ~= "0" then return false, "test hosts need root" end
  ok, out = run("unshare --pid --fork --mount --uts --ipc --net --cgroup true")
  if not ok then return false, "namespaces unavailable: " .. out end
  return true
end

local watchdog

local function start_watchdog()
  if watchdog then return end
  local _, ppid = run("echo $PPID")          -- the shell's parent: this Lua process
  ppid = ppid:match("%d+")
  local _, pid = run("setsid sh -c " ..
    q("while kill -0 " .. ppid .. " 2>/dev/null; do sleep 1; done; exec " .. q(M.script) .. " down") ..
    " </dev/null >/dev/null 2>&1 & echo $!")
  watchdog = pid:match("%d+")
end

local function stop_watchdog()
  if watchdog then os.execute("kill " .. watchdog .. " 2>/dev/null") end
  watchdog = nil
end

-- boot hosts 1..n; returns { {name=, ip=}, ... }; raises with the harness output on failure
function M.up(n)
  start_watchdog()
  local ok, out = run(th("up " .. math.tointeger(n)))
  if not ok then error("testhost up " .. n .. " failed:\n" .. out, 2) end
  local hosts = {}
  for name, ip in out:gmatch("(th%d+) (%d+%.%d+%.%d+%.%d+)") do
    hosts[#hosts + 1] = { name = name, ip = ip }
  end
  return hosts
end

-- tear everything down (hosts, mounts, netns, veths, bridge, proxy)
function M.down(i)
  local ok, out = run(th("down" .. (i and (" " .. math.tointeger(i)) or "")))
  if not i then stop_watchdog() end
  if not ok then error("testhost down failed:\n" .. out, 2) end
  return true
end

-- register setup/teardown in the enclosing describe block
-- (busted's setup/teardown are globals of the spec file only: take them
-- from the busted module)
function M.use(n)
  local busted = require "busted"
  busted.setup(function() M.up(n) end)
  busted.teardown(function() M.down() end)
end

-- run a command inside host i as root: cmd is a shell string (run by sh -c)
-- or an argv table.  Returns ok, output (stdout+stderr), exit code.
function M.exec(i, cmd, opts)
  local c = type(cmd) == "table" and argv(cmd) or ("sh -c " .. q(cmd))
  local stdin = opts and opts.stdin and (" <" .. q(opts.stdin)) or " </dev/null"
  return run(th("exec " .. math.tointeger(i) .. " " .. c) .. stdin)
end

-- ssh into host i (user: root (default), deploy, alice) and run a shell command
function M.ssh(i, cmd, user)
  return run(table.concat({ "ssh -i", q(M.key()), M.ssh_opts(), q((user or "root") .. "@" .. M.ip(i)), q(cmd), "</dev/null" }, " "))
end

function M.ssh_opts()
  return "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes -o ConnectTimeout=5 -o IdentitiesOnly=yes"
end

function M.cp(i, src, dst)
  local ok, out = run(th("cp " .. math.tointeger(i) .. " " .. q(src) .. " " .. q(dst)))
  if not ok then return nil, out end
  return true
end

local function one_line(args)
  local ok, out = run(th(args))
  if not ok then error("testhost " .. args .. " failed:\n" .. out, 3) end
  return (out:gsub("%s+$", ""))
end

function M.ip(i) return one_line("ip " .. math.tointeger(i)) end
function M.key() return one_line("ssh-key") end
function M.password() return one_line("password") end

-- known_hosts lines of hosts i... (all when none given), for strict host key checking
function M.known_hosts(...)
  local idx = {}
  for k, i in ipairs({ ... }) do idx[k] = tostring(math.tointeger(i)) end
  return one_line("known-hosts " .. table.concat(idx, " ")) .. "\n"
end

-- hosts known to the harness: { {name=, ip=, state=, pid=}, ... }
function M.ls()
  local list = {}
  for line in one_line("ls"):gmatch("[^\n]+") do
    local name, ip, state, pid = line:match("^(%S+) (%S+) (%S+) (%S+)")
    if name then list[#list + 1] = { name = name, ip = ip, state = state, pid = tonumber(pid) } end
  end
  return list
end

-- this instance's settings (`testhost env`): ID, NET, BRIDGE, RUN, CACHE,
-- PROXY, NETNS_PREFIX, VETH_PREFIX, CGROUP, KEY, ALICE_PW, SUITE (bookworm or trixie), ARCH
function M.env()
  local env = {}
  for k, v in one_line("env"):gmatch("PHANES_TEST_([%w_]+)=([^\n]*)") do
    env[k] = v:gsub("^'(.*)'$", "%1")
  end
  return env
end

-- where the harness keeps its state (for leftover checks)
function M.run_dir() return M.env().RUN end
function M.bridge() return M.env().BRIDGE end

return M
