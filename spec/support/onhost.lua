-- spec/support/onhost.lua: shell commands and phanes on test host 1
-- (spec/support/testhost.lua), for the specs that install phanes there and
-- look at the host afterwards.
--
--   local on = require "spec.support.onhost"
--   local sh, trim, yes = on.sh, on.trim, on.yes
--   describe("x on a test host", function()
--     if not on.use() then return end
--   local out, code, err = on.phanes "apply ollama --config config.yaml"
--   local r, code, text = on.report "apply ollama --config config.yaml"
--   local out, code, err = on.phanes("list", { dir = "/root/w", env = "PHANES_PATH=/x" })
--   on.put("/root/config.yaml", "timezone: UTC\n")
--
-- phanes runs as root in /root (or opts.dir) from /usr/local/bin (copy the
-- binary there first); its stderr goes through /root/err.
local th = require "spec.support.testhost"
local json = require "phanes.json"

local M = {}

-- use() -> whether test hosts run here. First thing in a describe block:
-- when they do, a fresh host 1 comes up in setup (one an earlier run left
-- up is replaced) and every host goes down in teardown; when they do not,
-- the block gets a pending test saying why (then return from the block)
function M.use()
  local busted = require "busted"
  local ok, why = th.available()
  if not ok then
    busted.pending("needs test hosts: " .. why)
    return false
  end
  busted.setup(function() th.down(1) th.up(1) end)
  busted.teardown(function() th.down() end)
  return true
end

-- sh(cmd[, allow_fail]) -> output (both streams), exit code: cmd as root on
-- host 1; a failure raises, naming the command (unless allow_fail)
function M.sh(cmd, allow_fail)
  local ok, out, code = th.exec(1, cmd)
  if not ok and not allow_fail then error(("host: %s\nexit %s:\n%s"):format(cmd, tostring(code), out), 2) end
  return out, code
end
local sh = M.sh

-- host(cmd[, i]) -> ok, output without its last newline: cmd as root on
-- host i (default 1), failing or not
function M.host(cmd, i)
  local ok, out = th.exec(i or 1, cmd)
  return ok, (out:gsub("\n$", ""))
end

-- trim(s) -> s without trailing white space
function M.trim(s) return (s:gsub("%s+$", "")) end
local trim = M.trim

-- yes(test) -> whether the shell test passes on the host
function M.yes(test) return trim(sh(test .. " && echo yes || echo no")) == "yes" end

-- phanes(args[, opts]) -> stdout, exit code, stderr of `phanes ARGS` (a
-- shell fragment) on the host; opts.dir: the working directory (default
-- /root); opts.env: assignments for phanes, as shell words ("A=1 B='x y'")
function M.phanes(args, opts)
  opts = opts or {}
  local out = sh("cd " .. th.quote(opts.dir or "/root") .. " && " .. (opts.env and opts.env .. " " or "")
    .. "phanes " .. args .. " 2>/root/err; echo \"exit=$?\"")
  local body, rc = out:match "^(.-)exit=(%d+)\n?$"
  return body, tonumber(rc), sh "cat /root/err"
end

-- report(args[, opts]) -> the report of `phanes ARGS --json` (decoded), exit
-- code, stdout and stderr (for messages); raises when stdout is not JSON;
-- opts as for phanes
function M.report(args, opts)
  local out, code, err = M.phanes(args .. " --json", opts)
  local r, jerr = json.decode(out)
  assert(r, "not JSON (" .. tostring(jerr) .. "):\n" .. out .. err)
  return r, code, out .. err
end

-- put(path, text[, owner, mode]): the file path on the host holds text (its
-- directory made), owned by owner ("user:group", default root:root), with
-- mode (default 0644)
function M.put(path, text, owner, mode)
  local runcli = require "spec.support.runcli"
  local dir = runcli.tmpdir()
  runcli.write(dir .. "/file", text)
  local q = th.quote
  sh("mkdir -p " .. q(path:match "^(.*)/"))
  local ok, err = th.cp(1, dir .. "/file", path)
  runcli.rmdir(dir)
  assert(ok, err)
  sh("chown " .. (owner or "root:root") .. " " .. q(path) .. " && chmod " .. (mode or "0644") .. " " .. q(path))
end

-- local_sh(cmd) -> output: cmd on this machine (fixtures, never the
-- machine's configuration); a failure raises, naming the command
function M.local_sh(cmd)
  local ok, out, code = th.run(cmd)
  if not ok then error(("local: %s\nexit %s:\n%s"):format(cmd, tostring(code), out), 2) end
  return out
end

return M
