-- config/describe.lua: every key as a commented config.yaml and as rows
-- (phanes.config is the entry: config.describe).
local schema = require "phanes.config.schema"
local world = require "phanes.config.world"

local M = {}
local MASK = require("phanes.engine.output").MASK

local function yaml_scalar(v)
  if type(v) == "string" then
    return '"' .. v:gsub('[\\"]', "\\%0"):gsub("\n", "\\n") .. '"'
  end
  if type(v) == "table" then
    local parts = {}
    if schema.is_list(v) then
      for i, x in ipairs(v) do parts[i] = yaml_scalar(x) end
      return "[" .. table.concat(parts, ", ") .. "]"
    end
    for _, k in ipairs(schema.sorted_keys(v)) do parts[#parts + 1] = tostring(k) .. ": " .. yaml_scalar(v[k]) end
    return "{" .. table.concat(parts, ", ") .. "}"
  end
  if math.type(v) == "float" and v == math.floor(v) then return string.format("%.1f", v) end
  return tostring(v)
end

local function describe_fields(fields, indent, path, module, lines, rows)
  for _, k in ipairs(schema.sorted_keys(fields)) do
    local d = fields[k]
    local sub = path and path .. "." .. k or k
    local kind = d.type
    if d.type == "enum" then kind = "one of " .. schema.expected(d):gsub("^one of ", "") end
    if d.type == "list" and d.items then kind = "list of " .. d.items.type end
    local attrs = { kind }
    if d.required then attrs[#attrs + 1] = "required" end
    if d.secret then attrs[#attrs + 1] = "secret" end
    local default = d.default
    if d.secret and default ~= nil then default = MASK end
    rows[#rows + 1] = { path = sub, module = module, type = d.type, default = default,
      required = d.required or false, secret = d.secret or false, description = d.description }
    if d.description then lines[#lines + 1] = indent .. "# " .. d.description end
    lines[#lines + 1] = indent .. "# " .. k .. ": " .. table.concat(attrs, ", ")
    if d.type == "map" and d.fields then
      lines[#lines + 1] = indent .. k .. ":"
      describe_fields(d.fields, indent .. "  ", sub, module, lines, rows)
    elseif d.default ~= nil then
      lines[#lines + 1] = indent .. k .. ": " .. (d.secret and '"' .. MASK .. '"' or yaml_scalar(d.default))
    else
      lines[#lines + 1] = indent .. "# " .. k .. ":" .. (d.required and " (required, no default)" or "")
    end
  end
end

-- config.describe(modules) -> text, rows: a commented config.yaml with every
-- key (type, default, required, secret, description), and the same as rows
-- { path, module, type, default, required, secret, description }.
-- Example: io.write((config.describe(all_modules)))
function M.describe(modules)
  local w = world.build(modules, nil, false) or { globals = {}, sections = {} }
  local lines, rows = { "# phanes configuration: every key, its type and its default." }, {}
  local globals = {}
  for g, e in pairs(w.globals) do
    if not w.sections[g] then globals[g] = e.decl end
  end
  lines[#lines + 1] = ""
  describe_fields(globals, "", nil, nil, lines, rows)
  for _, name in ipairs(schema.sorted_keys(w.sections)) do
    local m = w.sections[name]
    lines[#lines + 1] = ""
    lines[#lines + 1] = "# " .. name .. (m.description and ": " .. m.description or "")
    if m.config and next(m.config) then
      lines[#lines + 1] = name .. ":"
      describe_fields(m.config, "  ", name, name, lines, rows)
    else
      lines[#lines + 1] = "# " .. name .. ": (no settings)"
    end
  end
  for _, r in ipairs(rows) do
    if not r.module then r.module = w.globals[r.path:match "^[^.]+"].owner end
  end
  return table.concat(lines, "\n") .. "\n", rows
end

return M
