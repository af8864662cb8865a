-- config/checks.lua: what is checked once every layer is merged —
-- defaults and required keys, then the modules' own validate hooks
-- (phanes.config is the entry).
local schema = require "phanes.config.schema"
local sources = require "phanes.config.sources"
local world = require "phanes.config.world"

local M = {}
local RANK, mark_of = sources.RANK, sources.mark_of
local as_list, module_where = world.as_list, world.module_where

-- Defaults and required keys, once all layers are merged.

-- Where the nearest existing ancestor of a path stands in the file.
function M.file_position(file, parts)
  if not file then return nil end
  local t, line, col = file.data, nil, nil
  for _, p in ipairs(parts) do
    if type(t) ~= "table" then break end
    local l, c = mark_of(file, t, p)
    if t[p] == nil then break end
    if l then line, col = l, c end
    t = t[p]
  end
  return line, col
end

function M.finalize(tbl, fields, path, parts, required, env)
  for _, k in ipairs(schema.sorted_keys(fields)) do
    local decl = fields[k]
    local sub = path == "" and k or path .. "." .. k
    local subparts = { table.unpack(parts) }
    subparts[#subparts + 1] = k
    local top = path == ""
    local section = top and env.world.sections[k]
    -- a module not in this run and not configured gets no section
    local skip = section and not env.world.in_run[k] and tbl[k] == nil
    if not skip and tbl[k] == nil then
      if decl.default ~= nil then
        tbl[k] = schema.copy(decl.default)
        env.origins[sub] = env.origins[sub] or "default"
      elseif decl.type == "map" and decl.fields then
        tbl[k] = {}
      elseif decl.required and required and (not top or env.world.run_globals[k]) then
        env.missing(sub, parts)
      end
    end
    local v = tbl[k]
    local req = required and (not section or env.world.in_run[k])
    if type(v) == "table" and decl.type == "map" and decl.fields then
      M.finalize(v, decl.fields, sub, subparts, req, env)
    elseif type(v) == "table" and decl.type == "list" and decl.items and decl.items.type == "map"
      and decl.items.fields then
      for i, item in ipairs(v) do
        local ip = { table.unpack(subparts) }
        ip[#ip + 1] = i
        M.finalize(item, decl.items.fields, string.format("%s[%d]", sub, i), ip, req, env)
      end
    end
  end
end

-- Module checks: each module of the run may have validate(section, v), for
-- what a schema cannot say (one field against another, a size that must
-- parse, a time zone that must exist). v = { config = the whole config,
-- target = { exists = function(path) } or nil, error = function(path, msg) }
-- where path is the full key ("swap.size", "timezone"). `target` is there
-- when the machine that loads the config is the one the run changes (a
-- local run, or the remote side of --remote): checks that need the target
-- are skipped without it.

local function origin_rank(at)
  if at:match ":%d+:%d+$" or at == "config.yaml" then return RANK.file end
  if at:match "^PHANES_" then return RANK.env end
  if at:match "^%-%-set " then return RANK.set end
  return RANK.defaults
end

local function hook_reporter(m, origins, E)
  return function(path, msg)
    if type(path) ~= "string" or type(msg) ~= "string" then
      error(module_where(m) .. ": validate: error(path, message) takes two strings", 2)
    end
    local at = origins[path]
    if not at then
      local top = path:match "^[^.%[]+"
      at = top and origins[top] or "config"
    end
    local line, col = at:match ":(%d+):(%d+)$"
    local text
    if at == "default" then text = path .. ": " .. msg .. " (the default)"
    elseif at:match "^PHANES_" or at:match "^%-%-set " then text = at .. ": " .. msg
    else text = at .. ": " .. path .. ": " .. msg end
    E.add(origin_rank(at), tonumber(line), tonumber(col), text)
  end
end

local function hook_blocked(m, bad)
  for p in pairs(bad) do
    local top = p:match "^[^.%[]+"
    if top == m.name or (type(m.globals) == "table" and m.globals[top]) then return true end
  end
  return false
end

-- A known module outside the run is checked too when the config sets its
-- section or one of its globals (a fleet-wide config.yaml checked on its own).
local function configured(m, cfg, origins)
  if cfg[m.name] ~= nil then return true end
  for g in pairs(type(m.globals) == "table" and m.globals or {}) do
    if origins[g] and origins[g] ~= "default" then return true end
  end
  return false
end

local function section_of(m, cfg)
  if cfg[m.name] ~= nil then return cfg[m.name] end
  local out = {}
  for k, d in pairs(type(m.config) == "table" and m.config or {}) do out[k] = schema.copy(d.default) end
  return out
end

function M.hooks(opts, cfg, origins, bad, E)
  local mods, seen = {}, {}
  for _, m in ipairs(as_list(opts.modules)) do mods[#mods + 1] = m; seen[m] = true end
  for _, m in ipairs(as_list(opts.known)) do
    if type(m) == "table" and not seen[m] and configured(m, cfg, origins) then mods[#mods + 1] = m end
  end
  for _, m in ipairs(mods) do
    if type(m) == "table" and type(m.validate) == "function" and not hook_blocked(m, bad) then
      local v = { config = cfg, target = opts.target, error = hook_reporter(m, origins, E) }
      local ok, err = pcall(m.validate, section_of(m, cfg), v)
      if not ok then
        E.add(RANK.module, 0, 0, module_where(m) .. ": validate failed: " .. tostring(err))
      end
    end
  end
end

return M
