-- spec/support/runcli.lua: run phanes as a subprocess, as a user would.
--   local runcli = require "spec.support.runcli"
--   local r = runcli.run({ "apply", "x", "--path", dir }, { RUNNER_FIXTURE_DIR = tmp })
--   r.code, r.stdout, r.stderr
-- The binary is the one running the specs (sys.exe()), else $PHANES_BIN,
-- else build/phanes. Also: shell, at_home (phanes in a home of its own),
-- deployer, record (a host's record there), tmpdir, read, write.
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

-- shell(cmd) -> output (stdout and stderr), exit code (0 when it succeeded)
function M.shell(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read "a"
  local ok, _, code = p:close()
  return out, ok and 0 or code
end

-- The integration specs run phanes as an operator would, in a home of
-- their own: HOME is home, the working directory too, no ssh agent. The
-- binary is testhost.bin() (PHANES_BIN, else build/phanes; absolute).
local bin
local function bin_under_test()
  bin = bin or require("spec.support.testhost").bin()
  return bin
end

-- at_home_command(home, args[, env]) -> the shell command running phanes
-- ARGS (a list of words, or a string: a shell fragment used as it is)
-- there; env: assignments for it, as shell words ("A=1 B='x y'")
function M.at_home_command(home, args, env)
  if type(args) == "table" then
    local words = {}
    for i, a in ipairs(args) do words[i] = q(a) end
    args = table.concat(words, " ")
  end
  return "cd " .. q(home) .. " && HOME=" .. q(home) .. " SSH_AUTH_SOCK= " .. (env and env .. " " or "")
    .. q(bin_under_test()) .. " " .. args
end

-- at_home(home, args[, opts]) -> exit code, output[, errors]: that command,
-- no stdin, stdout and stderr together, or stderr into the file
-- opts.stderr (then errors: what it holds); opts.env as above
function M.at_home(home, args, opts)
  opts = opts or {}
  local p = assert(io.popen(M.at_home_command(home, args, opts.env) .. " </dev/null 2>"
    .. (opts.stderr and q(opts.stderr) or "&1")))
  local out = p:read "a"
  local _, _, code = p:close()
  if opts.stderr then return code, out, M.read(opts.stderr) or "" end
  return code, out
end

-- deployer(home, remote, key, site) -> deploy(words): `phanes deploy WORDS
-- --remote REMOTE --key KEY --site SITE` at home -> exit code, output
function M.deployer(home, remote, key, site)
  return function(words)
    local args = { "deploy" }
    for _, a in ipairs(words or {}) do args[#args + 1] = a end
    for _, a in ipairs { "--remote", remote, "--key", key, "--site", site } do args[#args + 1] = a end
    return M.at_home(home, args)
  end
end

-- record(home, name) -> the record (last.json, decoded) a run at home
-- kept of host NAME (as --remote named it), or nil
function M.record(home, name)
  local text = M.read(home .. "/.local/state/phanes/hosts/" .. name .. "/last.json")
  return text and require("phanes.json").decode(text)
end

-- tmpdir() -> a new empty directory; rmdir(d) removes it (nil is fine);
-- read(path) -> text or nil: those of fakeexec
M.tmpdir, M.read = fakeexec.tmpdir, fakeexec.read

-- write(path, text): the file, and its missing parent directories
function M.write(path, text)
  local dir = path:match "^(.+)/[^/]*$"
  if dir then assert(require("phanes.file").mkdir(dir, { mode = tonumber("0755", 8), parents = true })) end
  fakeexec.write(path, text)
end

function M.rmdir(d)
  if d then fakeexec.rmtree(d) end
end

return M
