-- resolve.lua: from what the user typed (a profile name, a profile file, a
-- module file, a list of module names) to the ordered list of module tables
-- to run.
--
--   local resolve = require "phanes.engine.resolve"
--   local prof, err = resolve.profile("dev")          -- or "ops/web.lua"
--   local mods, err = resolve.plan(prof.modules)       -- requires first
--
-- Every error is a string naming the file (and line, for a Lua error in a
-- module) and what to try; nothing here raises for a user's mistake.
local loader = require "phanes.loader"
local M = {}

local SCHEMA_TYPES = { string = true, integer = true, number = true, boolean = true,
  list = true, map = true, enum = true }

-- resolve.suggest(name, candidates) -> closest candidate or nil (the one
-- "did you mean" of phanes: config.schema.suggest)
M.suggest = require("phanes.config.schema").suggest

local function basename(rel)
  return rel:match "([^/]+)%.lua$"
end

-- resolve.known_modules() -> sorted module names on the search path
function M.known_modules()
  local names = {}
  for _, rel in ipairs(loader.list("modules/", ".lua")) do names[#names + 1] = basename(rel) end
  return names
end

-- resolve.known_profiles() -> sorted profile names on the search path
function M.known_profiles()
  local names = {}
  for _, rel in ipairs(loader.list("profiles/", ".lua")) do names[#names + 1] = basename(rel) end
  return names
end

local function unknown(kind, name, known)
  local msg = string.format("unknown %s '%s'", kind, name)
  local guess = M.suggest(name, known)
  if guess then msg = msg .. string.format(" (did you mean '%s'?)", guess) end
  return msg .. "; known " .. kind .. "s: " .. (#known > 0 and table.concat(known, ", ") or "none")
end
M.unknown = unknown

-- Run a chunk under xpcall: a Lua error becomes "file:line: msg" plus the
-- traceback of the user's own frames (none of phanes'), never a crash.
local function run_chunk(chunk, origin)
  local ok, res = xpcall(chunk, function(e)
    local frames = require("phanes.engine.errors").user_frames(debug.traceback("", 2))
    return tostring(e) .. (frames and ("\n" .. frames) or "")
  end)
  if not ok then return nil, "error while loading " .. origin .. ":\n" .. res end
  return res
end

-- The profile file each list of module names came from (plan names it
-- when one of them is unknown).
local listed_in = setmetatable({}, { __mode = "k" })

-- resolve.validate_module(mod, origin, expect_name) -> true | nil, err
-- A module is a table with name (string), apply (function), optional
-- description, version, requires (list of names), installed (function),
-- config (schema: field -> { type = ... }).
function M.validate_module(mod, origin, expect_name)
  local function bad(msg) return nil, origin .. ": " .. msg end
  if type(mod) ~= "table" then
    return bad("a module must return a table with name and apply, got " .. type(mod))
  end
  if type(mod.name) ~= "string" or mod.name == "" then return bad "module has no 'name' (a string)" end
  if expect_name and mod.name ~= expect_name then
    return bad(string.format("module is named '%s' but its file says '%s'; make them match",
      mod.name, expect_name))
  end
  if type(mod.apply) ~= "function" then return bad("module '" .. mod.name .. "' has no apply function") end
  for _, k in ipairs { "description", "version" } do
    if mod[k] ~= nil and type(mod[k]) ~= "string" then
      return bad(string.format("module '%s': %s must be a string", mod.name, k))
    end
  end
  if mod.installed ~= nil and type(mod.installed) ~= "function" then
    return bad("module '" .. mod.name .. "': installed must be a function")
  end
  if mod.detect ~= nil and type(mod.detect) ~= "function" and type(mod.detect) ~= "table" then
    return bad("module '" .. mod.name .. "': detect must be a table of probes or a function(cfg) returning one")
  end
  if mod.validate ~= nil and type(mod.validate) ~= "function" then
    return bad("module '" .. mod.name .. "': validate must be a function(section, v)")
  end
  if mod.requires ~= nil then
    if type(mod.requires) ~= "table" then return bad("module '" .. mod.name .. "': requires must be a list of names") end
    for i, r in ipairs(mod.requires) do
      if type(r) ~= "string" then
        return bad(string.format("module '%s': requires[%d] must be a module name", mod.name, i))
      end
    end
  end
  if mod.config ~= nil then
    if type(mod.config) ~= "table" then return bad("module '" .. mod.name .. "': config must be a table of fields") end
    for field, schema in pairs(mod.config) do
      if type(schema) ~= "table" then
        return bad(string.format("module '%s': config.%s must be a table like { type = \"string\" }",
          mod.name, tostring(field)))
      end
      if not SCHEMA_TYPES[schema.type] then
        return bad(string.format("module '%s': config.%s has type %s; use one of string, integer, "
          .. "number, boolean, list, map, enum", mod.name, tostring(field), tostring(schema.type)))
      end
    end
  end
  return true
end

local cache = {}

-- resolve.module(name) -> mod | nil, err. Loads modules/NAME.lua from the
-- search path (cached); mod.origin is its path or "embedded".
function M.module(name)
  if cache[name] then return cache[name] end
  local rel = "modules/" .. name .. ".lua"
  local chunk, origin = loader.load(rel)
  if not chunk then
    if origin and not origin:match ": not found$" then return nil, origin end
    return nil, unknown("module", name, M.known_modules())
  end
  local where = origin == "embedded" and rel .. " (embedded)" or origin
  local mod, err = run_chunk(chunk, where)
  if err then return nil, err end
  local ok, verr = M.validate_module(mod, where, name)
  if not ok then return nil, verr end
  mod.origin = origin
  cache[name] = mod
  return mod
end

-- resolve.add(mod) registers a module table (from a file given on the
-- command line) so that plan() and module() find it by name.
function M.add(mod)
  cache[mod.name] = mod
end

-- resolve.reset() forgets loaded modules (specs).
function M.reset()
  cache = {}
end

local function check_profile(p, where)
  local function bad(msg) return nil, where .. ": " .. msg end
  if type(p.modules) ~= "table" then return bad "a profile needs modules = { \"name\", ... }" end
  for i, m in ipairs(p.modules) do
    if type(m) ~= "string" then return bad(string.format("modules[%d] must be a module name", i)) end
  end
  if p.config ~= nil and type(p.config) ~= "table" then return bad "config (defaults) must be a table" end
  if p.name ~= nil and type(p.name) ~= "string" then return bad "name must be a string" end
  return true
end

-- resolve.profile(spec) -> profile | nil, err
-- spec: a profile name ("dev": profiles/dev.lua on the search path) or a
-- path to a .lua file returning a profile { name, description, modules,
-- config } or a single module (then the profile runs just that module).
-- profile.origin says where it came from.
function M.profile(spec)
  local chunk, origin, where
  if spec:find("/", 1, true) or spec:match "%.lua$" then
    local text, err, missing = loader.read(spec) -- as root, refused when others can change it
    if missing then
      return nil, spec .. ": no such file; give a profile name (" ..
        table.concat(M.known_profiles(), ", ") .. ") or the path of a .lua file"
    end
    if not text then return nil, err end
    chunk, err = load(text, "@" .. spec, "t")
    if not chunk then return nil, err end
    origin, where = spec, spec
  else
    local rel = "profiles/" .. spec .. ".lua"
    chunk, origin = loader.load(rel)
    if not chunk then
      if origin and not origin:match ": not found$" then return nil, origin end
      -- `phanes apply redis`: a module name runs that module alone.
      if loader.find("modules/" .. spec .. ".lua") then
        local mod, merr = M.module(spec)
        if not mod then return nil, merr end
        return { name = mod.name, description = mod.description, modules = { mod.name },
          config = {}, origin = mod.origin, single = true }
      end
      local profiles, modules = M.known_profiles(), M.known_modules()
      local both = table.move(modules, 1, #modules, #profiles + 1, table.move(profiles, 1, #profiles, 1, {}))
      local guess = M.suggest(spec, both)
      return nil, string.format("unknown profile or module '%s'%s; profiles: %s; modules: %s", spec,
        guess and string.format(" (did you mean '%s'?)", guess) or "",
        table.concat(profiles, ", "), table.concat(modules, ", "))
    end
    where = origin == "embedded" and rel .. " (embedded)" or origin
  end
  local p, err = run_chunk(chunk, where)
  if err then return nil, err end
  if type(p) ~= "table" then
    return nil, where .. ": a profile must return a table { name, modules = {...} }, got " .. type(p)
  end
  if type(p.apply) == "function" then
    local ok, verr = M.validate_module(p, where)
    if not ok then return nil, verr end
    p.origin = origin
    M.add(p)
    return { name = p.name, description = p.description, modules = { p.name },
      config = {}, origin = origin, single = true }
  end
  local ok, perr = check_profile(p, where)
  if not ok then return nil, perr end
  p.name = p.name or basename(where) or spec
  p.config = p.config or {}
  p.origin = origin
  listed_in[p.modules] = where
  return p
end

-- resolve.order(names, get) -> ordered names | nil, err
-- get(name) -> mod | nil, err. Requirements come before the modules that
-- need them (depth-first, in the given order otherwise), duplicates are
-- dropped, a cycle is reported with its path ("a -> b -> a").
function M.order(names, get)
  local out, state, stack = {}, {}, {}
  local function visit(name, from)
    if state[name] == "done" then return true end
    if state[name] == "active" then
      local path, start = {}, nil
      for i, n in ipairs(stack) do if n == name then start = i end end
      for i = start, #stack do path[#path + 1] = stack[i] end
      path[#path + 1] = name
      return nil, "module requirements form a cycle: " .. table.concat(path, " -> ")
    end
    local mod, err = get(name)
    if not mod then
      if from then err = err .. " (required by '" .. from .. "')" end
      return nil, err
    end
    state[name] = "active"
    stack[#stack + 1] = name
    for _, r in ipairs(mod.requires or {}) do
      local ok, rerr = visit(r, name)
      if not ok then return nil, rerr end
    end
    stack[#stack] = nil
    state[name] = "done"
    out[#out + 1] = name
    return true
  end
  for _, n in ipairs(names) do
    local ok, err = visit(n)
    if not ok then return nil, err end
  end
  return out
end

-- resolve.plan(names[, only]) -> mods, warnings | nil, err
-- Loads and orders the modules; with `only` (list of names) keeps exactly
-- those, in plan order, and warns about requirements left out.
function M.plan(names, only)
  local order, err = M.order(names, M.module)
  if not order then
    if listed_in[names] and err:match "^unknown module" then err = listed_in[names] .. ": " .. err end
    return nil, err
  end
  local warnings = {}
  if only then
    local want, inplan = {}, {}
    for _, n in ipairs(order) do inplan[n] = true end
    for _, n in ipairs(only) do
      if not inplan[n] then
        return nil, string.format("--only %s: '%s' is not part of this run (modules: %s)",
          n, n, table.concat(order, ", "))
      end
      want[n] = true
    end
    local kept = {}
    for _, n in ipairs(order) do if want[n] then kept[#kept + 1] = n end end
    for _, n in ipairs(kept) do
      for _, r in ipairs(cache[n].requires or {}) do
        if not want[r] then
          warnings[#warnings + 1] = string.format(
            "--only: '%s' requires '%s', which this run skips (assumed already applied)", n, r)
        end
      end
    end
    order = kept
  end
  local mods = {}
  for i, n in ipairs(order) do mods[i] = cache[n] end
  return mods, warnings
end

-- resolve.all() -> list of every known module (for config validation),
-- plus a list of load errors for modules that did not load.
function M.all()
  local mods, errs = {}, {}
  for _, name in ipairs(M.known_modules()) do
    local mod, err = M.module(name)
    if mod then mods[#mods + 1] = mod else errs[#errs + 1] = err end
  end
  for name, mod in pairs(cache) do
    local found = false
    for _, m in ipairs(mods) do if m.name == name then found = true end end
    if not found then mods[#mods + 1] = mod end
  end
  return mods, errs
end

return M
