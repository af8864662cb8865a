-- spec/support/plan.lua: run a module's apply against a recording ctx.
--
-- Nothing touches the machine: every resource call is recorded, templates
-- are rendered with the real engine, facts are those of a fresh Debian 12
-- host unless given, and the host's readers (ctx.file.read/exists,
-- ctx.user.get/list, ctx.group.get) answer from opts.files and opts.users:
-- a fake host, no primitive patched. Used by the static module specs.
--
--   local plan = require "support.plan"
--   local mod = plan.module "redis"
--   local calls = plan.run(mod, config, { dry_run = true })
--   calls[i] = { kind = "file.template", args = {...}, rendered = "..." }
local loader = require "phanes.loader"
local template = require "phanes.template"

local M = {}

M.debian12 = {
  os = { id = "debian", version_id = "12", codename = "bookworm", pretty_name = "Debian GNU/Linux 12 (bookworm)" },
  arch = "x86_64", container = false, init = "systemd", memory_mb = 2048, cpus = 2,
  swap = { total_mb = 0, devices = {} }, proc_sys_writable = true, hostname = "web1", kernel = "6.1.0",
}

-- plan.module(name) -> the module table, loaded as the runner would
function M.module(name)
  local chunk, err = loader.load("modules/" .. name .. ".lua")
  assert(chunk, err)
  return chunk()
end

function M.profile(name)
  local chunk, err = loader.load("profiles/" .. name .. ".lua")
  assert(chunk, err)
  return chunk()
end

-- Fill a schema's defaults into a copy of `section` (what config.lua does).
function M.with_defaults(schema, section)
  local out = {}
  for k, v in pairs(section or {}) do out[k] = v end
  for k, field in pairs(schema or {}) do
    if out[k] == nil and field.default ~= nil then
      local d = field.default
      if type(d) == "table" then
        local copy = {}
        for kk, vv in pairs(d) do copy[kk] = vv end
        d = copy
      end
      out[k] = d
    end
  end
  return out
end

-- render(src, vars) -> text; raises with the engine's message
function M.render(src, vars)
  local text, origin = loader.find("templates/" .. src)
  assert(text, "templates/" .. src .. ": not found")
  local out, err = template.render(text, vars, origin == "embedded" and ("templates/" .. src) or origin)
  assert(out, err)
  return out
end

-- A provisioned host's files, as far as modules read them.
M.KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g me@laptop"
function M.host_files()
  return {
    ["/usr/share/zoneinfo/UTC"] = "TZif", ["/usr/share/zoneinfo/Europe/Paris"] = "TZif",
    ["/home/deploy/.ssh/authorized_keys"] = M.KEY .. "\n",
    ["/usr/bin/docker"] = "", ["/usr/bin/psql"] = "",
  }
end
M.users = { deploy = { name = "deploy", uid = 1000, gid = 1000, home = "/home/deploy", shell = "/bin/bash" } }

local SKIP = {}

-- The readers of a fake host (res/file.lua, res/user.lua): files, a table
-- path -> text; users (default M.users) unless files has /etc/passwd;
-- groups from files["/etc/group"].
function M.host(ctx, files, users)
  local facts = require "phanes.engine.facts"
  if files["/etc/passwd"] then users = facts.parse_passwd(files["/etc/passwd"]) end
  users = users or M.users
  local groups = facts.parse_group(files["/etc/group"])
  local function copy(t)
    local c = {}
    for k, v in pairs(t) do c[k] = type(v) == "table" and copy(v) or v end
    return c
  end
  ctx.file.read = function(path)
    if files[path] then return files[path] end
    return nil, path .. ": No such file or directory", 2
  end
  ctx.file.exists = function(path) return files[path] ~= nil end
  ctx.user.get = function(name) return users[name] and copy(users[name]) end
  ctx.user.list = function()
    local list = {}
    for _, u in pairs(users) do list[#list + 1] = copy(u) end
    table.sort(list, function(a, b) return a.uid < b.uid or (a.uid == b.uid and a.name < b.name) end)
    return list
  end
  ctx.group.get = function(name) return groups[name] and copy(groups[name]) end
end

-- plan.run(mod, config, opts) -> calls, skipped_reason, warnings
-- opts.dry_run, opts.facts (merged over debian12), opts.changed (resources
-- report changed = true), opts.exec (function(argv_or_opts) -> res)
function M.run(mod, config, opts)
  opts = opts or {}
  local calls, warnings = {}, {}
  local facts = {}
  for k, v in pairs(M.debian12) do facts[k] = v end
  for k, v in pairs(opts.facts or {}) do facts[k] = v end
  local function result()
    local changed = opts.changed ~= false
    -- as run:resource: changed is true for "would change" too
    return { changed = changed,
      status = changed and (opts.dry_run and "would change" or "changed") or "ok" }
  end
  local function recorder(kind)
    return function(args)
      local call = { kind = kind, args = args }
      if kind == "file.template" then call.rendered = M.render(args.src, args.vars) end
      calls[#calls + 1] = call
      return result()
    end
  end
  local ctx = {
    config = config, facts = facts, platform = require("phanes.engine.platform").of(facts.os), dry_run = opts.dry_run or false, module = mod.name,
    log = function() end,
    warn = function(msg) warnings[#warnings + 1] = msg end,
    skip = function(reason) error({ [SKIP] = reason }, 0) end,
    fail = function(message) error(tostring(message), 0) end,
    exec = opts.exec or function(o)
      calls[#calls + 1] = { kind = "exec", args = o }
      return { code = 0, stdout = "", stderr = "" }
    end,
    template = function(src, vars)
      local out = M.render(src, vars)
      calls[#calls + 1] = { kind = "template", args = { src = src, vars = vars }, rendered = out }
      return out
    end,
  }
  for group, names in pairs {
    pkg = { "installed", "absent", "refresh" }, apt = { "repo" },
    file = { "content", "template", "line", "directory", "absent", "symlink", "seed" },
    service = { "running", "stopped", "daemon_reload" }, user = { "present", "authorized_keys", "sudoers" },
    group = { "present" }, cmd = { "run" }, fetch = { "file", "check" }, archive = { "extracted" },
    systemd = { "unit", "dropin" }, sentinel = { "mark" }, ufw = { "allow", "enabled" },
    git = { "checkout" }, python = { "venv" }, npm = { "installed" },
  } do
    ctx[group] = {}
    for _, n in ipairs(names) do ctx[group][n] = recorder(group .. "." .. n) end
  end
  ctx.sentinel.done = function() return false end
  ctx.sentinel.path = function(step) return "/var/lib/phanes/sentinels/" .. mod.name .. "." .. step end
  M.host(ctx, opts.files or M.host_files(), opts.users)
  local section = M.with_defaults(mod.config, config[mod.name])
  local ok, err = pcall(mod.apply, ctx, section)
  if not ok then
    if type(err) == "table" and err[SKIP] then return calls, err[SKIP], warnings end
    error(err, 0)
  end
  return calls, nil, warnings
end

-- The whole config a run would see: globals' defaults filled in.
function M.config(raw, modules)
  local cfg = {}
  for k, v in pairs(raw) do cfg[k] = v end
  for _, mod in ipairs(modules) do
    for k, field in pairs(mod.globals or {}) do
      if cfg[k] == nil and field.default ~= nil then cfg[k] = field.default end
    end
  end
  return cfg
end

-- calls of one kind, optionally filtered by a predicate
function M.find(calls, kind, pred)
  local out = {}
  for _, c in ipairs(calls) do
    if c.kind == kind and (not pred or pred(c.args, c)) then out[#out + 1] = c end
  end
  return out
end

return M
