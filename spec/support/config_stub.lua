-- spec/support/config_stub.lua: a minimal stand-in for phanes.config used
-- by the runner specs only while the real one is not in the binary. It
-- reads JSON-style YAML (a JSON document is valid YAML), applies profile
-- defaults and schema defaults, checks required fields and unknown
-- sections, lists secrets and hashes a section.
local json = require "phanes.json"
local M = {}

function M.load(o)
  local cfg = {}
  if o.text then
    local data, err = json.decode(o.text)
    if not data then return nil, { (o.path or "config") .. ":" .. err } end
    cfg = data
  end
  for k, v in pairs(o.defaults or {}) do if cfg[k] == nil then cfg[k] = v end end
  local known, errs = {}, {}
  for _, m in ipairs(o.known or {}) do known[m.name] = m end
  for _, m in ipairs(o.modules or {}) do known[m.name] = m end
  for k in pairs(cfg) do
    if not known[k] and k ~= "state_path" then errs[#errs + 1] = (o.path or "config") .. ": " .. k .. ": unknown key" end
  end
  for k, sec in pairs(cfg) do
    if known[k] and type(sec) == "table" then
      for field in pairs(sec) do
        if not (known[k].config or {})[field] then
          errs[#errs + 1] = (o.path or "config") .. ": " .. k .. "." .. field .. ": unknown key"
        end
      end
    end
  end
  for _, m in ipairs(o.modules or {}) do
    local sec = cfg[m.name] or {}
    for field, s in pairs(m.config or {}) do
      if sec[field] == nil then sec[field] = s.default end
      if sec[field] == nil and s.required then
        errs[#errs + 1] = (o.path or "config") .. ": " .. m.name .. "." .. field .. ": required"
      end
    end
    cfg[m.name] = sec
  end
  for _, set in ipairs(o.sets or {}) do
    local sec, field, v = set:match "^([^.]+)%.([^=]+)=(.*)$"
    if sec then cfg[sec] = cfg[sec] or {} cfg[sec][field] = v end
  end
  if #errs > 0 then return nil, errs end
  return cfg, {}
end

function M.secrets(cfg, modules)
  local out = {}
  for _, m in ipairs(modules or {}) do
    for field, s in pairs(m.config or {}) do
      local v = cfg[m.name] and cfg[m.name][field]
      if s.secret and type(v) == "string" then out[#out + 1] = v end
    end
  end
  return out
end

function M.hash(section, _schema)
  local s = json.encode(section or {})
  local h = 5381
  for i = 1, #s do h = (h * 33 + s:byte(i)) % 4294967296 end
  return string.format("%08x", h)
end

return M
