-- res/cmd.lua: a command, for what no other resource does.
--
--   ctx.cmd.run { argv = { "locale-gen" }, desc = "generate locales",
--     creates = "/usr/lib/locale/locale-archive" }
--   ctx.cmd.run { shell = "curl -fsSL https://x/install.sh | sh", desc = "install x",
--     unless = { "test", "-x", "/usr/local/bin/x" }, env = { X_VERSION = "1" }, timeout = 600 }
--   ctx.cmd.run { argv = { "ufw", "--force", "enable" },
--     only_if = "ufw status | grep -q inactive" }
--
-- stdin = "..." feeds the command (not the guards); it is never shown,
-- so a secret (SQL with a password hash) stays out of argv and output.
-- The guards decide whether it runs: creates (a path that exists means it
-- ran already), unless (a command that succeeds means nothing to do),
-- only_if (a command that fails means nothing to do). Guards are argv
-- lists or shell strings; they must only read, which is why they still run
-- in a dry run. creates only suits a command that makes its path last
-- (or atomically): a run killed half-way must not leave the path behind,
-- or the command never runs again. Steps of one thing (allocate, then
-- format) each need a guard that checks what that step leaves (see
-- modules/swap.lua). Without guards the command runs every time and reports
-- changed. A non-zero exit fails with the stderr tail.
local context = require "phanes.engine.context"

local M = {}
local N = {}
M.namespaces = { cmd = N }

local KIND = "cmd.run"

local function fail(target, message, detail) context.fail(KIND, target, message, detail) end

local function as_exec(spec, o)
  local e = { env = o.env, cwd = o.cwd, timeout = o.timeout }
  if type(spec) == "string" then e.shell = spec
  elseif type(spec) == "table" then e.argv = spec
  else return nil end
  return e
end

local function shown(spec)
  if type(spec) == "string" then return spec end
  return table.concat(spec, " ")
end

local function exists(path) return require("phanes.file").exists(path) end

-- guard(run, spec, o, target, what) -> true when the guard command exits 0
local function guard(run, spec, o, target, what)
  local e = as_exec(spec, o)
  if not e then fail(target, what .. " must be an argv list or a shell string") end
  e.timeout = e.timeout or 60
  local res, err = run.exec(e)
  if not res then fail(target, what .. " (" .. shown(spec) .. ") could not run: " .. tostring(err)) end
  return res.code == 0
end

function N.run(ctx, o)
  local run = ctx.run
  local main = type(o) == "table" and (o.argv or o.shell)
  local target = type(o) == "table" and (o.desc or (main and shown(main))) or "?"
  return run:resource(ctx, KIND, target, function()
    local e = main and as_exec(main, o)
    if not e then fail(target, "argv (a list) or shell (a string) is required") end
    e.stdin = o.stdin -- the command's input only, never the guards'; never shown
    if o.creates and exists(o.creates) then return { status = "ok", message = "creates " .. o.creates .. " exists" } end
    if o.unless and guard(run, o.unless, o, target, "unless") then
      return { status = "ok", message = "unless succeeded" }
    end
    if o.only_if and not guard(run, o.only_if, o, target, "only_if") then
      return { status = "ok", message = "only_if failed" }
    end
    local message = o.desc and shown(main) or nil
    if ctx.dry_run then return { status = "would change", message = "run " .. shown(main) } end
    local res = run:check(e, KIND, target, "command " .. (o.desc and ("(" .. o.desc .. ")") or shown(main)))
    return { status = "changed", message = message, stdout = res.stdout }
  end)
end

-- Declarations (doc/module-api.md, `make docs`): each resource's
-- description and arguments { name, type, required, description }; a
-- reader (no event, changes nothing) has reader = true.
M.api = {
  ["cmd.run"] = { "A command, for what no other resource does; guards decide whether it runs", {
    { "argv", "list", false, "the program and its arguments (argv or shell is required)" },
    { "shell", "string", false, "a shell command line, instead of argv" },
    { "desc", "string", false, "what the report shows instead of the command" },
    { "creates", "string", false, "a path that, when it exists, means it ran already" },
    { "unless", "list or string", false, "a command that, when it succeeds, means nothing to do" },
    { "only_if", "list or string", false, "a command that, when it fails, means nothing to do" },
    { "stdin", "string", false, "fed to the command (never shown)" },
    { "env", "map", false, "environment variables" },
    { "cwd", "string", false, "working directory" },
    { "timeout", "integer", false, "seconds before the command is killed" },
  } },
}

return M
