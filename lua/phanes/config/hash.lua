-- config/hash.lua: the keyed hash of a module's section the state file
-- keeps (phanes.config is the entry: config.hash, hash_key, canonical).
local schema = require "phanes.config.schema"

local M = {}

local function serialize(v, decl, out)
  local t = type(v)
  if t == "string" then out[#out + 1] = "s" .. #v .. ":" .. v
  elseif math.type(v) == "integer" then out[#out + 1] = "i" .. string.format("%d", v) .. ";"
  elseif t == "number" then out[#out + 1] = "f" .. string.format("%.17g", v) .. ";"
  elseif t == "boolean" then out[#out + 1] = v and "T" or "F"
  elseif t == "nil" then out[#out + 1] = "N"
  elseif t == "table" then
    if schema.is_list(v) and next(v) ~= nil then
      out[#out + 1] = "l" .. #v .. "["
      for _, x in ipairs(v) do serialize(x, decl and decl.items, out) end
      out[#out + 1] = "]"
    else
      out[#out + 1] = "m{"
      local fields = decl and decl.fields
      for _, k in ipairs(schema.sorted_keys(v)) do
        if not fields or fields[k] then
          serialize(k, nil, out)
          serialize(v[k], fields and fields[k], out)
        end
      end
      out[#out + 1] = "}"
    end
  else
    error("config.hash: cannot hash a " .. t, 3)
  end
end

-- config.hash(section, schema, key) -> hex HMAC-SHA256 of the section under
-- key (the host's hash.key, see config.hash_key), stable across runs (keys
-- sorted). `schema` (a module's `config` table, optional) limits it to
-- declared keys. Secrets are part of it, so it is keyed: the state file is
-- world-readable, and an unkeyed hash of a short password is a dictionary
-- attack away from the password. The state file keeps it to tell "config
-- changed since last apply".
-- Example: config.hash(cfg.redis, redis_module.config, key) --> "3f1a..."
function M.hash(section, fields, key)
  local crypto = require "phanes.crypto"
  assert(type(key) == "string" and #key > 0, "config.hash needs the host's hash key")
  return crypto.hmac_sha256(key, M.canonical(section, fields))
end

-- config.hash_key(state_path, create) -> key | nil, err: the 32 random bytes
-- in hash.key beside the state file (0600, owned by the running user, made
-- once with create).
function M.hash_key(state_path, create)
  local dir = tostring(state_path):match "^(.*)/[^/]*$" or "."
  return require("phanes.crypto").key((dir == "" and "/" or dir) .. "/hash.key", create)
end

-- config.canonical(section, schema) -> the byte string config.hash digests:
-- typed, length-prefixed, keys sorted (so equal configs give equal text).
function M.canonical(section, fields)
  local out = {}
  serialize(section, fields and { type = "map", fields = fields } or nil, out)
  return table.concat(out)
end

return M
