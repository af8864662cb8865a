-- spec/support/runcli.lua: run phanes as a subprocess, as a user would.
--   local runcli = require "spec.support.runcli"
--   local r = runcli.run({ "apply", "x", "--path", dir }, { RUNNER_FIXTURE_DIR = tmp })
--   r.code, r.stdout, r.stderr
-- The binary is the one running the specs (sys.exe()), else $PHANES_BIN,
-- else build/phanes.
local M = {}

local fakeexec = require "support.fakeexec"

-- quote(s) -> s as one word for sh
function M.quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local q = M.quote

function M.binary()
  local sys = require "phanes.sys"
  return sys.exe() or os.getenv "PHANES_BIN" or "build/phanes"
end

-- The shell command line for argv (list) with env (map).
function M.command(argv, env, exec)
  local parts = {}
  for k, v in pairs(env or {}) do parts[#parts + 1] = k .. "=" .. q(v) end
  if exec then parts[#parts + 1] = "exec" end
  parts[#parts + 1] = q(M.binary())
  for _, a in ipairs(argv) do parts[#parts + 1] = q(a) end
  return table.concat(parts, " ")
end

function M.run(argv, env)
  local errf = os.tmpname()
  local p = io.popen(M.command(argv, env) .. " 2>" .. errf)
  local out = p:read "a"
  local _, _, code = p:close()
  local f = io.open(errf)
  local err = f:read "a"
  f:close()
  os.remove(errf)
  return { code = code, stdout = out, stderr = err }
end

-- tmpdir() -> a new empty directory; rmdir(d) removes it (nil is fine);
-- read(path) -> text or nil; write(path, text): those of fakeexec
M.tmpdir, M.read, M.write = fakeexec.tmpdir, fakeexec.read, fakeexec.write

function M.rmdir(d)
  if d then fakeexec.rmtree(d) end
end

return M
