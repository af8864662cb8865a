-- config/secrets.lua: the secret values of a config, and a copy with them
-- masked (phanes.config is the entry: config.secrets, config.mask).
local schema = require "phanes.config.schema"
local world = require "phanes.config.world"

local M = {}

local function root_fields(modules)
  local w = world.build(modules, nil, false)
  return w and w.fields or {}
end

local function leaves(v, out)
  if type(v) == "table" then
    for _, k in ipairs(schema.sorted_keys(v)) do leaves(v[k], out) end
  elseif type(v) == "string" or type(v) == "number" then
    out[#out + 1] = type(v) == "number" and tostring(v) or v
  end
end

local function walk_secrets(v, decl, out)
  if v == nil or type(decl) ~= "table" then return end
  if decl.secret then return leaves(v, out) end
  if type(v) ~= "table" then return end
  if decl.type == "map" and type(decl.fields) == "table" then
    for k, d in pairs(decl.fields) do walk_secrets(v[k], d, out) end
  elseif decl.type == "list" and decl.items then
    for _, item in ipairs(v) do walk_secrets(item, decl.items, out) end
  end
end

-- config.secrets(cfg, modules) -> list of the secret values in cfg (fields
-- declared secret), longest first, no duplicates, no empty strings: what
-- output must mask.
-- Example: local mask = output.masker(config.secrets(cfg, mods)); print(mask(line))
function M.secrets(cfg, modules)
  local found = {}
  walk_secrets(cfg, { type = "map", fields = root_fields(modules) }, found)
  local seen, out = {}, {}
  for _, s in ipairs(found) do
    if s ~= "" and not seen[s] then
      seen[s] = true
      out[#out + 1] = s
    end
  end
  table.sort(out, function(a, b)
    if #a ~= #b then return #a > #b end
    return a < b
  end)
  return out
end

-- config.mask(cfg, modules) -> a deep copy of cfg with every secret field's
-- value replaced by "******" (output.mask_fields: masking lives there).
-- Example: print(json.encode(config.mask(cfg, mods)))
function M.mask(cfg, modules)
  return require("phanes.engine.output").mask_fields(cfg, { type = "map", fields = root_fields(modules) })
end


return M
