-- res/npm.lua: a Node.js project's dependencies, installed when they changed.
--
--   ctx.npm.installed { dir = "/opt/sillytavern", owner = "sillytavern" }
--   ctx.npm.installed { dir = "/srv/app", ci = false, omit_dev = false }
--
-- The sha256 of package.json and package-lock.json (and how npm was run)
-- is recorded in <dir>/node_modules/.phanes-npm after a successful install;
-- while both files hash the same and that record is there, nothing runs (no
-- process, no network). Otherwise: `npm ci` when a lockfile exists (ci =
-- false forces `npm install`), else `npm install`, both with --omit=dev
-- unless omit_dev = false; with owner, npm runs as that user (runuser, HOME
-- its home). npm ci removes node_modules first, so a removed node_modules
-- installs again. A dry run runs nothing and says why it would install.
local context = require "phanes.engine.context"
local F = require "phanes.file"

local M = {}
local N = {}
M.namespaces = { npm = N }
M.required = { ["npm.installed"] = { "dir" } } -- checked by the context

local KIND = "npm.installed"
local fail = context.fail
local STAMP = "node_modules/.phanes-npm"

local function hash_of(path)
  if not F.exists(path) then return "-" end
  local h, err = F.sha256_file(path)
  if not h then fail(KIND, path, "cannot read it: " .. tostring(err)) end
  return h
end

-- the record: one "name value" line each
local function record(o, pkg, lock, ci)
  return table.concat({ "package.json " .. pkg, "package-lock.json " .. lock,
    "command " .. (ci and "ci" or "install") .. (o.omit_dev ~= false and " --omit=dev" or "") }, "\n") .. "\n"
end

local function field(text, name)
  return (text or ""):match("\n?" .. name:gsub("%p", "%%%0") .. " ([^\n]*)")
end

-- why(old, new) -> what changed since the last install
local function why(old, new)
  if not old then return "no record of an install (" .. STAMP .. ")" end
  local t = {}
  for _, name in ipairs { "package-lock.json", "package.json", "command" } do
    if field(old, name) ~= field(new, name) then
      t[#t + 1] = name == "command" and ("the command is now npm " .. field(new, name)) or (name .. " changed")
    end
  end
  return table.concat(t, ", ") .. " since the last install"
end

local function argv_of(o, ci)
  local argv = {}
  if o.owner then
    for _, a in ipairs { "runuser", "-u", tostring(o.owner), "--" } do argv[#argv + 1] = a end
  end
  for _, a in ipairs { o.npm or "npm", ci and "ci" or "install", "--no-audit", "--no-fund" } do argv[#argv + 1] = a end
  if o.omit_dev ~= false then argv[#argv + 1] = "--omit=dev" end
  return argv
end

local function env_of(o)
  local env = { npm_config_update_notifier = "false", LC_ALL = "C" }
  if o.owner then
    local pw = require("phanes.sys").getpwnam(tostring(o.owner))
    env.HOME = pw and pw.home or o.dir
  end
  return env
end

local function install(ctx, o, ci, new, reason)
  local res = ctx.run:check({ argv = argv_of(o, ci), cwd = o.dir, env = env_of(o), timeout = o.timeout or 3600 },
    KIND, o.dir, "npm " .. (ci and "ci" or "install"))
  local path = o.dir .. "/" .. STAMP
  if not F.exists(o.dir .. "/node_modules") then
    local ok, err = F.mkdir(o.dir .. "/node_modules", { mode = tonumber("0755", 8), owner = o.owner, group = o.group })
    if not ok then fail(KIND, o.dir, "cannot create node_modules: " .. tostring(err)) end
  end
  local ok, err = F.write(path, new, { mode = tonumber("0644", 8), owner = o.owner, group = o.group })
  if not ok then fail(KIND, path, "npm ran, but its record cannot be written: " .. tostring(err)) end
  return { status = "changed", message = "npm " .. (ci and "ci" or "install") .. ": " .. reason, stdout = res.stdout }
end

function N.installed(ctx, o)
  local target = type(o) == "table" and tostring(o.dir) or "?"
  return ctx.run:resource(ctx, KIND, target, function()
    if type(o) ~= "table" or type(o.dir) ~= "string" or not o.dir:match "^/" then
      fail(KIND, target, "dir (absolute, holding package.json) is required")
    end
    if not F.exists(o.dir .. "/package.json") then
      if ctx.dry_run then return { status = "would change", message = "install (no package.json yet)" } end
      fail(KIND, o.dir, "has no package.json: is it the project's directory?")
    end
    local lock = hash_of(o.dir .. "/package-lock.json")
    local ci = o.ci ~= false and lock ~= "-"
    local new = record(o, hash_of(o.dir .. "/package.json"), lock, ci)
    local old = F.read(o.dir .. "/" .. STAMP)
    if old == new then return { status = "ok", message = "package.json and package-lock.json unchanged" } end
    local reason = why(old, new)
    if ctx.dry_run then
      return { status = "would change", message = "npm " .. (ci and "ci" or "install") .. ": " .. reason }
    end
    return install(ctx, o, ci, new, reason)
  end)
end

-- Declarations (doc/module-api.md, `make docs`): each resource's
-- description and arguments { name, type, required, description }.
M.api = {
  ["npm.installed"] = { "A Node.js project's dependencies: npm ci (or npm install) only when package.json "
    .. "or package-lock.json changed since the last install", {
    { "dir", "string", true, "the project directory (absolute, holding package.json)" },
    { "ci", "boolean", false, "false: npm install even with a lockfile (default: npm ci when there is one)" },
    { "omit_dev", "boolean", false, "false: install the dev dependencies too (default: --omit=dev)" },
    { "owner", "string", false, "npm runs as this user (runuser, HOME its home)" },
    { "group", "string", false, "the group of the install record" },
    { "timeout", "integer", false, "seconds (default 3600)" },
  } },
}

return M
