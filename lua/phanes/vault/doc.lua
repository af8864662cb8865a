-- vault/doc.lua: the vault's plaintext, YAML with `defaults:` and
-- `hosts: {NAME: {...}}`: parsing it, looking a key up for a host (its
-- block merged over the defaults), setting and removing keys, and writing
-- it out again.
--
--   local d = doc.parse("defaults: {postgres: {password: x}}\n", "secrets.vault.yaml")
--   doc.lookup(d, "postgres.password", "web1") --> value | nil, did-you-mean
local M = {}


-- doc.parse(plaintext, name) -> doc | nil, err
function M.parse(plaintext, name)
  local data, marks = require("phanes.yaml").decode(plaintext, name or "vault")
  if data == nil and type(marks) == "string" then return nil, marks end
  data = data or {}
  if type(data) ~= "table" then return nil, (name or "vault") .. ": expected a map with defaults: and hosts:" end
  for k, v in pairs(data) do
    if k ~= "defaults" and k ~= "hosts" then
      return nil, string.format("%s: unknown top-level key '%s' (a vault holds defaults: and hosts:)", name or "vault", tostring(k))
    end
    if type(v) ~= "table" then return nil, string.format("%s: %s: expected a map", name or "vault", k) end
  end
  for h, v in pairs(data.hosts or {}) do
    if type(v) ~= "table" then return nil, string.format("%s: hosts.%s: expected a map", name or "vault", tostring(h)) end
  end
  data.defaults, data.hosts = data.defaults or {}, data.hosts or {}
  return data
end

-- doc.copy(v) -> a deep copy of v (a value handed out stays the vault's)
local function copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = copy(x) end
  return out
end
M.copy = copy

local function merged(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then
    if b ~= nil then return copy(b) end
    return copy(a)
  end
  local out = copy(a)
  for k, x in pairs(b) do out[k] = merged(a[k], x) end
  return out
end

local function split_path(key)
  local parts = {}
  for p in (key .. "."):gmatch "([^.]*)%." do parts[#parts + 1] = p end
  return parts
end

-- Every leaf path of a tree: for did-you-mean.
local function paths(t, prefix, out)
  for k, v in pairs(t) do
    local p = prefix and prefix .. "." .. tostring(k) or tostring(k)
    out[#out + 1] = p
    if type(v) == "table" then paths(v, p, out) end
  end
  return out
end

-- doc.lookup(doc, key, host) -> value | nil, "did you mean 'x'?" | nil
-- The host's block (hosts.HOST) is merged over defaults.
function M.lookup(doc, key, host)
  local tree = merged(doc.defaults, host and doc.hosts[host] or nil)
  local v = tree
  for _, p in ipairs(split_path(key)) do
    if type(v) ~= "table" then v = nil break end
    v = v[p]
  end
  if v ~= nil then return v end
  local guess = require("phanes.config.schema").suggest(key, paths(tree, nil, {}))
  return nil, guess and ("did you mean '" .. guess .. "'?") or nil
end

-- doc.set(doc, key, value[, host]) / doc.remove(doc, key[, host]) -> true | nil, err
function M.set(doc, key, value, host)
  local t = host and doc.hosts or doc
  local parts = split_path(key)
  table.insert(parts, 1, host or "defaults")
  for i = 1, #parts - 1 do
    local p = parts[i]
    if p == "" then return nil, "bad key '" .. key .. "'" end
    if t[p] == nil then t[p] = {} end
    if type(t[p]) ~= "table" then return nil, table.concat(parts, ".", 1, i) .. " holds a value, not a map" end
    t = t[p]
  end
  if parts[#parts] == "" then return nil, "bad key '" .. key .. "'" end
  t[parts[#parts]] = value
  return true
end

function M.remove(doc, key, host)
  local t = host and doc.hosts[host] or doc.defaults
  local parts = split_path(key)
  for i = 1, #parts - 1 do
    t = type(t) == "table" and t[parts[i]] or nil
  end
  if type(t) ~= "table" or t[parts[#parts]] == nil then return nil, "no key '" .. key .. "'" end
  t[parts[#parts]] = nil
  return true
end

-- doc.dump(doc) -> YAML text of doc (defaults, hosts)
function M.dump(doc)
  local yaml = require "phanes.yaml"
  local out = { "defaults:" }
  local d = yaml.encode(doc.defaults or {})
  if next(doc.defaults or {}) == nil then out[1] = "defaults: {}" else out[#out + 1] = (d:gsub("[^\n]+", "  %0"):gsub("\n$", "")) end
  if next(doc.hosts or {}) == nil then out[#out + 1] = "hosts: {}"
  else
    out[#out + 1] = "hosts:"
    out[#out + 1] = (yaml.encode(doc.hosts):gsub("[^\n]+", "  %0"):gsub("\n$", ""))
  end
  return table.concat(out, "\n") .. "\n"
end

return M
