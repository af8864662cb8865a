-- describe.lua: what a module would do, for machines (`phanes list --json`,
-- `phanes show MODULE --json`, the HTTP API).
--
--   local d = describe.module(mod)
--   d.steps    = { { resource = "git.checkout", target = "/opt/sillytavern" }, ... }
--   d.sync     = { { source = "templates/sillytavern/config.yaml",
--                    destination = "/opt/sillytavern/config.yaml", policy = "create-only" } }
--   d.detect   = { files = {...}, dirs = {...}, command = {...}, url = "..." } or nil
--   d.steps_error = "why the plan stopped early" or nil
--
-- The steps come from the module's apply run in a dry plan against an
-- empty host: every resource call is recorded (kind and target), nothing
-- runs, no file of this machine is read by the module (phanes.file reads
-- and the ctx readers see an empty host), commands answer "not found",
-- facts are those of a fresh Debian 12 x86_64 host, the config is the
-- schema's defaults (and the example's sample values). A module that needs a value without a default (a
-- checksum, a password) stops there: the steps so far and steps_error.
local context = require "phanes.engine.context"

local M = {}

M.facts = {
  os = { id = "debian", version_id = "12", codename = "bookworm", pretty_name = "Debian GNU/Linux 12 (bookworm)" },
  arch = "x86_64", container = false, init = "systemd", memory_mb = 2048, cpus = 2,
  swap = { total_mb = 0, devices = {} }, proc_sys_writable = true, hostname = "host", kernel = "6.1.0",
}

local function copy(v)
  if type(v) ~= "table" then return v end
  local t = {}
  for k, x in pairs(v) do t[k] = copy(x) end
  return t
end

-- the schema's defaults (nested maps' too)
local function defaults(schema)
  local out = {}
  for k, d in pairs(schema or {}) do
    if d.default ~= nil then out[k] = copy(d.default)
    elseif d.type == "map" and d.fields then out[k] = defaults(d.fields) end
  end
  return out
end

local function listed(v)
  if type(v) ~= "table" then return tostring(v) end
  local t = {}
  for i, x in ipairs(v) do t[i] = tostring(x) end
  return table.concat(t, " ")
end

-- the target a resource call names, as its event would
local function target_of(kind, o, module)
  if type(o) ~= "table" then return o ~= nil and tostring(o) or nil end
  if kind == "sentinel.mark" then
    return "/var/lib/phanes/sentinels/" .. module .. "." .. tostring(o[1] or o.step)
  elseif kind == "systemd.unit" then
    local n = tostring(o.name)
    return "/etc/systemd/system/" .. (n:find "%." and n or (n .. ".service"))
  elseif kind == "systemd.dropin" then
    return "/etc/systemd/system/" .. tostring(o.unit) .. ".d/" .. tostring(o.name) .. ".conf"
  elseif kind == "cmd.run" then
    return o.desc or (o.argv and listed(o.argv)) or o.shell
  end
  for _, k in ipairs { "path", "dest", "dir", "name", "url" } do
    if o[k] ~= nil then return tostring(o[k]) end
  end
  if o[1] ~= nil then
    local t = {}
    for i, x in ipairs(o) do t[i] = tostring(x) end
    return table.concat(t, " ")
  end
  return nil
end

local RESULT = { changed = true, status = "would change", stdout = "" }

-- a ctx whose resources record, bound like context.lua binds the real ones
local function recorder(mod, cfg, steps, templates)
  local ctx = {
    module = mod.name, config = cfg, facts = copy(M.facts), dry_run = true, resuming = nil,
    paths = context.default_paths,
    platform = require("phanes.engine.platform").of(M.facts.os),
    log = function() end, warn = function() end,
    skip = function(reason) error({ skipped = tostring(reason) }, 0) end,
    fail = function(message) error({ failed = tostring(message) }, 0) end,
    exec = function() return { code = 127, stdout = "", stderr = "not found", duration = 0 } end,
  }
  function ctx.template(src, vars)
    local text = require("phanes.loader").find("templates/" .. tostring(src))
    if not text then error({ failed = "templates/" .. tostring(src) .. ": not found" }, 0) end
    local out, err = require("phanes.template").render(text, vars or {}, "templates/" .. tostring(src))
    if not out then error({ failed = tostring(err) }, 0) end
    templates[out] = "templates/" .. tostring(src) -- a seed's content names its source
    return out
  end
  local function record(kind)
    return function(o)
      steps[#steps + 1] = { resource = kind, target = target_of(kind, o, mod.name), args = o }
      if kind == "systemd.unit" and type(o) == "table" and o.running ~= nil then
        local n = tostring(o.name)
        steps[#steps + 1] = { resource = o.running and "service.running" or "service.stopped",
          target = n:find "%." and n or (n .. ".service") }
      end
      return RESULT
    end
  end
  local function nothing() return nil end
  for _, family in ipairs(context.families) do
    local ok, res = pcall(require, "phanes.res." .. family)
    local api = ok and type(res.api) == "table" and res.api or {}
    for ns, fns in pairs(ok and res.namespaces or {}) do
      ctx[ns] = ctx[ns] or {}
      for name in pairs(fns) do
        local kind = ns .. "." .. name
        -- a reader (declared reader = true) is no step: on an empty host it finds nothing
        local reader = type(api[kind]) == "table" and api[kind].reader
        ctx[ns][name] = reader and nothing or record(kind)
      end
    end
  end
  ctx.sentinel = ctx.sentinel or {}
  ctx.sentinel.done = function() return false end
  ctx.sentinel.path = function(step) return target_of("sentinel.mark", { step }, mod.name) end
  return ctx
end

-- an empty host as far as the module reads files itself
local function empty_host(fn)
  local F, sys = require "phanes.file", require "phanes.sys"
  local saved = { read = F.read, exists = F.exists, stat = F.stat, getpwnam = sys.getpwnam }
  F.read = function(path) return nil, tostring(path) .. ": No such file or directory", 2 end
  F.exists = function() return false end
  F.stat = function(path) return nil, tostring(path) .. ": No such file or directory", 2 end
  sys.getpwnam = function() return nil end
  local ok, err = pcall(fn)
  F.read, F.exists, F.stat, sys.getpwnam = saved.read, saved.exists, saved.stat, saved.getpwnam
  return ok, err
end

-- describe.probes(mod, cfg) -> the detect probes for that config, or nil
function M.probes(mod, cfg)
  local d = mod.detect
  if type(d) == "function" then
    local ok, p = pcall(d, cfg or defaults(mod.config))
    return ok and type(p) == "table" and p or nil
  end
  return type(d) == "table" and d or nil
end

-- describe.module(mod[, example]) -> { steps, sync, detect, steps_error, skipped }
-- example: a whole config (the docs' example: required keys get a sample
-- value) laid over the defaults.
function M.module(mod, example)
  local steps, templates = {}, {}
  local whole = copy(example or {})
  for k, d in pairs(mod.globals or {}) do if whole[k] == nil and d.default ~= nil then whole[k] = copy(d.default) end end
  local cfg = whole[mod.name] or {}
  for k, v in pairs(defaults(mod.config)) do if cfg[k] == nil then cfg[k] = v end end
  whole[mod.name] = cfg
  local ctx = recorder(mod, whole, steps, templates)
  local ok, err = empty_host(function() return mod.apply(ctx, cfg) end)
  local out = { steps = {}, sync = {} }
  if not ok then
    if type(err) == "table" and err.skipped then out.skipped = err.skipped
    else out.steps_error = type(err) == "table" and err.failed or tostring(err) end
  end
  for i, s in ipairs(steps) do
    out.steps[i] = { resource = s.resource, target = s.target }
    if s.resource == "file.seed" and type(s.args) == "table" then
      out.sync[#out.sync + 1] = { destination = s.target, policy = "create-only",
        source = s.args.src and ("templates/" .. tostring(s.args.src)) or templates[s.args.content] or "content" }
    end
  end
  out.detect = M.probes(mod, cfg)
  return out
end

return M
