-- remote/connector.lua: the one seam between phanes and a machine it works
-- on. Every remote piece (remote apply, status, host test, deploy) opens a
-- session here and uses only these methods:
--
--   local s, err, kind = connector.open(target, opts)
--   s:exec(cmd, { stdin =, stream = fn(kind, chunk), tick = fn(), timeout =, capture = })
--     cmd: a shell string, or an argv list (quoted for the shell where the
--     transport needs one) -> the exec result of src/result.c:
--     { code | signal (+ signal_name), stdout, stderr, timed_out, duration } | nil, err, kind
--   s:put(path, data | { path = local file }, mode) -> true | nil, err
--   s:get(path) -> bytes | nil, err
--   s:info() -> { connector =, user =, host =, port =, arch = (when known), ... }
--   s:stats() -> { channels =, execs = } (what the transport counted)
--   s:close()
--
-- target: inventory.resolve's table; target.connector picks the
-- implementation (connector/local.lua, connector/ssh.lua the default,
-- connector/docker.lua for `--remote docker:NAME`). A new connector is one
-- file beside those with open(target, opts) -> session, and its name here.
-- kind (of a failed open or exec) is one of the ssh kinds: resolve,
-- refused, unreachable, timeout, auth, protocol, hostkey_*, lost,
-- interrupted, or "missing" (the container/program is not there).
local M = {}

M.NAMES = { ["local"] = true, ssh = true, docker = true }

function M.name(t)
  return t and t.connector or "ssh"
end

function M.open(t, o)
  local name = M.name(t)
  if not M.NAMES[name] then error("unknown connector '" .. tostring(name) .. "'", 2) end
  return require("phanes.remote.connector." .. name).open(t, o or {})
end

-- connector.stream_tick(opts) -> a stream callback that also calls
-- opts.tick after each chunk: connectors over phanes.exec (which has no
-- idle callback) check for Ctrl-C whenever output arrives.
function M.stream_tick(opts)
  local stream, tick = opts.stream, opts.tick
  if not tick then return stream end
  return function(kind, chunk)
    if stream then stream(kind, chunk) end
    tick()
  end
end

-- connector.shell_words({ "ls", "-l", "a b" }) -> "ls -l 'a b'"
function M.shell_words(argv)
  local q = require("phanes.remote.util").shquote
  local out = {}
  for i, a in ipairs(argv) do out[i] = q(a) end
  return table.concat(out, " ")
end

return M
