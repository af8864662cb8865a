-- config/sources.lua: the layers of one config.load (profile defaults,
-- the file, PHANES_* variables, --set), each checked against the world,
-- then merged; and the error list they report into (phanes.config is the
-- entry).
local schema = require "phanes.config.schema"
local F = require "phanes.file"

local M = {}

-- Errors, sorted by source (defaults, file, env, --set), then position.

M.RANK = { module = 0, defaults = 1, file = 2, env = 3, set = 4, final = 5 }

function M.errors()
  local list = {}
  local E = {}
  function E.add(rank, line, col, msg)
    list[#list + 1] = { rank = rank, line = line or 0, col = col or 0, seq = #list, msg = msg }
  end
  function E.count() return #list end
  function E.result()
    table.sort(list, function(a, b)
      if a.rank ~= b.rank then return a.rank < b.rank end
      if a.line ~= b.line then return a.line < b.line end
      if a.col ~= b.col then return a.col < b.col end
      return a.seq < b.seq
    end)
    local out, seen = {}, {}
    for _, e in ipairs(list) do
      if not seen[e.msg] then
        seen[e.msg] = true
        out[#out + 1] = e.msg
      end
    end
    return out
  end
  return E
end

local RANK = M.RANK

function M.mark_of(layer, parent, key)
  local m = layer.marks and parent ~= nil and layer.marks[parent]
  local k = m and m.keys and m.keys[key]
  if k then return k.line, k.col end
end

-- Key order of a YAML mapping: document order when marks say it.
local mark_of = M.mark_of

local function doc_order(layer)
  return function(tbl)
    local keys = schema.sorted_keys(tbl)
    local m = layer.marks and layer.marks[tbl]
    if m and m.keys then
      local pos = {}
      for i, k in ipairs(keys) do
        local at = m.keys[k]
        pos[k] = at and at.line * 100000 + at.col or 1e12 + i
      end
      table.sort(keys, function(a, b) return pos[a] < pos[b] end)
    end
    return keys
  end
end

-- Where a key sits in the world (for a misplaced top-level key).
local function elsewhere(world)
  return function(path, key)
    if path ~= "" then return nil end
    local homes = {}
    for name, m in pairs(world.sections) do
      if m.config and m.config[key] then homes[#homes + 1] = name end
    end
    table.sort(homes)
    if #homes == 0 then return nil end
    return "it is a key of '" .. homes[1] .. "'; put it under '" .. homes[1] .. ":'"
  end
end

-- validate(layer, world, E) -> normalized table, origins
function M.validate(layer, world, E, bad)
  local origins = {}
  local ctx = { coerce = layer.coerce, coerce_paths = layer.vault_refs, elsewhere = elsewhere(world) }
  function ctx.report(path, msg, parent, key)
    local line, col = mark_of(layer, parent, key)
    local loc = layer.name
    if line then loc = string.format("%s:%d:%d", layer.name, line, col) end
    local prefix = ""
    if path and path ~= layer.path then prefix = path .. ": " end
    if path then bad[path] = true end
    E.add(RANK[layer.kind], line or layer.line, col, loc .. ": " .. prefix .. msg)
  end
  function ctx.origin(path, parent, key)
    if path:find("[", 1, true) then return end -- list items: the list has it
    local line, col = mark_of(layer, parent, key)
    origins[path] = line and string.format("%s:%d:%d", layer.name, line, col) or layer.name
    local ref = layer.vault_refs and layer.vault_refs[path]
    if ref then origins[path] = origins[path] .. " !vault " .. ref end
  end
  if layer.marks then ctx.order = doc_order(layer) end
  return schema.check_fields(layer.data, world.fields, "", ctx), origins
end

function M.merge(acc, v, decl)
  if v == nil then return acc end
  local function is_map(x) return type(x) == "table" and not (schema.is_list(x) and next(x) ~= nil) end
  if is_map(v) and is_map(acc) and (decl == nil or decl.type == "map") then
    local out = {}
    for k, x in pairs(acc) do out[k] = x end
    for k, x in pairs(v) do
      out[k] = M.merge(acc[k], x, decl and decl.fields and decl.fields[k] or nil)
    end
    return out
  end
  return v
end

-- Builds { a = { b = value } } from "a.b".
local function nest(path, value)
  local parts = {}
  for p in (path .. "."):gmatch "([^.]*)%." do parts[#parts + 1] = p end
  local root = value
  for i = #parts, 1, -1 do root = { [parts[i]] = root } end
  return root
end

-- PHANES_POSTGRES_VERSION -> { "postgres.version" } for every known path.
local function env_names(fields, prefix, out)
  for name, decl in pairs(fields) do
    local path = prefix and prefix .. "." .. name or name
    if decl.type == "map" then
      if decl.fields then env_names(decl.fields, path, out) end
    else
      local env = "PHANES_" .. path:upper():gsub("[^%w]", "_")
      out[env] = out[env] or {}
      table.insert(out[env], path)
    end
  end
  return out
end

function M.env(world, env, E, warnings)
  local layers = {}
  if not env then return layers end
  local names = env_names(world.fields, nil, {})
  local all = {}
  for n in pairs(names) do all[#all + 1] = n end
  for _, var in ipairs(schema.sorted_keys(env)) do
    local value = env[var]
    if type(var) == "string" and var:match "^PHANES_" and type(value) == "string" then
      local paths = names[var]
      if paths and #paths > 1 then
        table.sort(paths)
        E.add(RANK.env, 0, 0, var .. ": matches several keys (" .. table.concat(paths, ", ") ..
          "); use --set " .. paths[1] .. "=... instead")
      elseif paths then
        layers[#layers + 1] = { kind = "env", name = var, path = paths[1], coerce = true,
          data = nest(paths[1], value) }
      else
        local hint = schema.suggest(var, all)
        if hint then
          warnings[#warnings + 1] = var .. " is not a config key and is ignored (did you mean " .. hint .. "?)"
        end
      end
    end
  end
  return layers
end

function M.sets(sets, E)
  local layers = {}
  for i, s in ipairs(sets or {}) do
    local path, value = tostring(s):match "^([^=]*)=(.*)$"
    path = path and path:match "^%s*(.-)%s*$"
    if not path or path == "" then
      E.add(RANK.set, i, 0, "--set " .. tostring(s) .. ": expected KEY=VALUE, like --set postgres.version=16")
    else
      layers[#layers + 1] = { kind = "set", name = "--set " .. path, path = path, coerce = true, line = i,
        data = nest(path, value) }
    end
  end
  return layers
end

-- The file layer: reads and decodes the YAML (or takes opts.data/marks).
function M.file(opts, E)
  if not (opts.path or opts.text or opts.data) then return nil end
  local name = opts.path or opts.name or "config.yaml"
  local data, marks = opts.data, opts.marks
  if data == nil then
    local text = opts.text
    if not text then
      local err
      text, err = F.read(opts.path)
      if not text then
        E.add(RANK.file, 0, 0, err .. " (give the config file with --config FILE)")
        return nil
      end
    end
    local yaml = require "phanes.yaml"
    data, marks = yaml.decode(text, name)
    if data == nil and type(marks) == "string" then
      E.add(RANK.file, 0, 0, marks)
      return nil
    end
  end
  if data == nil then data = {} end
  if type(data) ~= "table" or (schema.is_list(data) and next(data) ~= nil) then
    local m = type(marks) == "table" and marks[data]
    local at = m and string.format("%s:%d:%d", name, m.line, m.col) or name
    E.add(RANK.file, 0, 0, at .. ": expected a map of settings (key: value), got " .. schema.kind(data))
    return nil
  end
  return { kind = "file", name = name, data = data, marks = type(marks) == "table" and marks or nil }
end

return M
