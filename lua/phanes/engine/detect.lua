-- detect.lua: a module's detect probes, checked on this host.
--
--   local found = detect.check(probes)   -- probes from describe.probes(mod, cfg)
--   found.installed  -- true when every probe passed
--   found.checks     -- { { probe = "file", target = "/opt/x/server.js", ok = true }, ... }
--   detect.module(mod, cfg, exec, resources)  -- the same after an apply (runner)
--
-- A module declares detect = { files = {...}, dirs = {...}, command =
-- {argv...}, url = "http://..." } or detect = function(cfg) returning that
-- table (paths and ports from its config). files and dirs are looked at
-- without a process, through symlinks (a venv's bin/python is one); command must exit 0; url must answer 2xx (curl, 5 s).
-- The probes are checked in that order and stop at the first failure (a
-- missing checkout costs no process). answered (optional): a set of URLs
-- this run already found answering (the module's own fetch.check): such a
-- url probe passes without asking again (no process on a no-op apply).
local F = require "phanes.file"

local M = {}

-- what path ends at: its own stat, or through symlinks (up to 8) the stat
-- of what they point to, each hop looked at without following (a probe only
-- asks whether something is there; a venv's bin/python is a link owned by
-- the venv's user, which F.stat(path, true) rightly refuses to follow as root)
local function reach(path)
  for _ = 1, 8 do
    local st = F.stat(path)
    if not st or st.type ~= "link" then return st end
    local t = st.target or ""
    if t:sub(1, 1) ~= "/" then t = (path:match "^(.*)/[^/]*$" or "") .. "/" .. t end
    path = t
  end
  return nil
end

local function add(found, probe, target, ok, why)
  found.checks[#found.checks + 1] = { probe = probe, target = target, ok = ok, why = why }
  if not ok then found.installed = false end
  return ok
end

-- detect.check(probes[, exec[, answered]]) -> { installed, checks }
function M.check(probes, exec, answered)
  local found = { installed = true, checks = {} }
  if type(probes) ~= "table" then return nil end
  exec = exec or require("phanes.exec").run
  for _, path in ipairs(probes.files or {}) do
    local st = reach(path)
    if not add(found, "file", path, st ~= nil and st.type == "file", st and ("a " .. st.type) or "missing") then
      return found
    end
  end
  for _, path in ipairs(probes.dirs or {}) do
    local st = reach(path)
    if not add(found, "dir", path, st ~= nil and st.type == "directory", st and ("a " .. st.type) or "missing") then
      return found
    end
  end
  if type(probes.command) == "table" and probes.command[1] then
    local res, err = exec { argv = probes.command, timeout = 10 }
    local line = table.concat(probes.command, " ")
    if not add(found, "command", line, res ~= nil and res.code == 0,
      res and ("exit " .. tostring(res.code)) or tostring(err)) then
      return found
    end
  end
  if type(probes.url) == "string" and answered and answered[probes.url] then
    add(found, "url", probes.url, true, "answered (fetch.check)")
  elseif type(probes.url) == "string" then
    local res, err = exec { argv = { "curl", "-fsS", "-o", "/dev/null", "-m", "5", probes.url }, timeout = 10 }
    add(found, "url", probes.url, res ~= nil and res.code == 0,
      res and (res.code == 0 and "answers" or ("curl exit " .. tostring(res.code))) or tostring(err))
  end
  return found
end

-- detect.module(mod, cfg, exec[, resources]) -> found | nil (no probes):
-- mod's probes for cfg (describe.probes) checked. resources: the result
-- events of its apply in this run; a URL its fetch.check found answering
-- passes without asking again (the runner's noop, engine/runner.lua).
function M.module(mod, cfg, exec, resources)
  local probes = require("phanes.engine.describe").probes(mod, cfg)
  if not probes then return nil end
  local answered = {}
  for _, ev in ipairs(resources or {}) do
    if ev.resource == "fetch.check" and ev.status == "ok" then answered[ev.target] = true end
  end
  return M.check(probes, exec, answered)
end

return M
