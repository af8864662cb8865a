-- vault/format.lua: the vault file's format: sealing a plaintext into
-- the file's text and opening it again (see vault.lua for the layout).
--
--   local text = format.seal("defaults: {}\n", password)
--   local plaintext, params = format.unseal(text, password, "secrets.vault.yaml")
local cipher = require "phanes.cipher"
local crypto = require "phanes.crypto"
local M = {}

M.MAGIC = "$PHANES_VAULT"
M.VERSION = 1
-- About 60 ms on an idle core here, well under 150 ms on a busy one (16 MiB).
M.PARAMS = { n = 16384, r = 8, p = 1 }
-- What an opened file may ask for (a tampered header must not cost minutes).
local LIMITS = { n = 1 << 20, r = 32, p = 16, cost = 1 << 22 } -- cost: N*r, 512 MiB
local SALT, NONCE, CHECK, TAG = 16, 12, 16, 16

local function header_line(params, len)
  return string.format("%s;%d;scrypt;N=%d,r=%d,p=%d;len=%d", M.MAGIC, M.VERSION, params.n, params.r, params.p, len)
end

local function wrap(s, width)
  local lines = {}
  for i = 1, #s, width do lines[#lines + 1] = s:sub(i, i + width - 1) end
  return table.concat(lines, "\n")
end

-- format.seal(plaintext, password[, params]) -> the file's text
function M.seal(plaintext, password, params)
  params = params or M.PARAMS
  local salt, nonce = cipher.random(SALT), cipher.random(NONCE)
  M.kdf_count = M.kdf_count + 1
  local key <close> = assert(cipher.kdf(password, salt, params))
  local check = key:check()
  local head = header_line(params, SALT + NONCE + CHECK + #plaintext + TAG)
  local ct, tag = cipher.seal(key, nonce, head .. "\n" .. salt .. nonce .. check, plaintext)
  return head .. "\n" .. wrap(crypto.base64_encode(salt .. nonce .. check .. ct .. tag), 76) .. "\n"
end

local function parse_params(s)
  local n, r, p, len = s:match "^N=(%d+),r=(%d+),p=(%d+);len=(%d+)$"
  n, r, p, len = tonumber(n), tonumber(r), tonumber(p), math.tointeger(tonumber(len))
  if not (n and r and p and len) then return nil end
  if n < 2 or n > LIMITS.n or n & (n - 1) ~= 0 or r < 1 or r > LIMITS.r or p < 1 or p > LIMITS.p
    or n * r > LIMITS.cost then return nil end
  return { n = n, r = r, p = p }, len
end

-- Header and body of a vault text -> parts | nil, err, kind
local function split(text, name)
  local head, rest = text:match "^([^\n]*)\n(.*)$"
  head = head or text
  local magic, version, tail = head:match "^(%$PHANES_VAULT);([^;]*);?(.*)$"
  if not magic then
    if #text < #M.MAGIC + 2 and (M.MAGIC .. ";"):sub(1, #text) == text then
      return nil, name .. ": truncated (the file ends inside its header)", "truncated"
    end
    return nil, name .. ": not a phanes vault (it does not start with " .. M.MAGIC .. ")", "format"
  end
  if version ~= tostring(M.VERSION) then
    if not rest and tail == "" and tostring(M.VERSION):sub(1, #version) == version then
      return nil, name .. ": truncated (the file ends inside its header)", "truncated"
    end
    return nil, string.format("%s: unknown vault format version '%s' (this phanes reads version %d; "
      .. "use a newer phanes)", name, version, M.VERSION), "version"
  end
  local kdf, ptext = tail:match "^([^;]*);(.*)$"
  if not rest or not kdf then
    return nil, name .. ": truncated (the file ends inside its header)", "truncated"
  end
  if kdf ~= "scrypt" then
    return nil, name .. ": unknown key derivation '" .. kdf .. "' (this phanes knows scrypt)", "format"
  end
  local params, len = parse_params(ptext)
  if not params then
    return nil, name .. ": bad scrypt parameters '" .. ptext .. "' in the header (altered?)", "tampered"
  end
  local lines, body = {}, nil
  for line in rest:gmatch "([^\n]*)\n" do lines[#lines + 1] = line end
  local last = rest:match "([^\n]*)$"
  if last ~= "" then lines[#lines + 1] = last end
  for i, line in ipairs(lines) do
    if #line > 76 or (i < #lines and #line ~= 76) or line == "" then
      return nil, string.format("%s:%d: damaged: a line of the base64 body has %d characters",
        name, i + 1, #line), "tampered"
    end
  end
  body = table.concat(lines)
  if #body % 4 ~= 0 then return nil, name .. ": truncated (the base64 body is cut short)", "truncated" end
  local raw = crypto.base64_decode(body)
  if not raw then return nil, name .. ": damaged: the body is not base64", "tampered" end
  if #raw < len or #raw < SALT + NONCE + CHECK + TAG then
    return nil, string.format("%s: truncated (the body has %d of its %d bytes)", name, #raw, len), "truncated"
  end
  if #raw > len then return nil, name .. ": damaged: the body is longer than its header says", "tampered" end
  return { head = head, params = params, salt = raw:sub(1, SALT), nonce = raw:sub(SALT + 1, SALT + NONCE),
    check = raw:sub(SALT + NONCE + 1, SALT + NONCE + CHECK), ct = raw:sub(SALT + NONCE + CHECK + 1, -TAG - 1),
    tag = raw:sub(-TAG) }
end

-- format.kdf_count: how many keys this process derived (the specs and
-- bench: a fleet derives one, not one a host)
M.kdf_count = 0
local function derive(password, v, name)
  M.kdf_count = M.kdf_count + 1
  local key, kerr = cipher.kdf(password, v.salt, v.params)
  if not key then return nil, name .. ": " .. kerr, "kdf" end
  if not key:matches(v.check) then
    key:close()
    return nil, name .. ": wrong vault password (or its header was altered)", "password"
  end
  return key
end

-- format.derive(text, password, name) -> key, salt | nil, err, kind: the
-- file's key (checked against the header), to open it again without a KDF
-- (format.unseal's key) and to hand to a fleet's children (key:export()).
function M.derive(text, password, name)
  name = name or "vault"
  local v, err, kind = split(text, name)
  if not v then return nil, err, kind end
  local key, kerr, kkind = derive(password, v, name)
  if not key then return nil, kerr, kkind end
  return key, v.salt
end

-- format.salt(text) -> the header's salt | nil (not a readable vault)
function M.salt(text)
  local v = split(text, "vault")
  return v and v.salt or nil
end

-- format.unseal(text, password, name[, key]) -> plaintext, params | nil, err, kind
-- kind: "truncated", "version", "format", "tampered", "password", "kdf".
-- key: a key of this file (format.derive, or handed over by a fleet's
-- controller): no KDF; one that does not fit is kind "password".
local function open_with(v, key, name)
  local pt = cipher.open(key, v.nonce, v.head .. "\n" .. v.salt .. v.nonce .. v.check, v.ct, v.tag)
  if not pt then
    return nil, name .. ": the file was altered (its authentication tag does not match); "
      .. "restore it from version control", "tampered"
  end
  return pt, v.params
end

function M.unseal(text, password, name, key)
  name = name or "vault"
  local v, err, kind = split(text, name)
  if not v then return nil, err, kind end
  if key then
    if not key:matches(v.check) then
      return nil, name .. ": the vault key handed over does not open this vault (was it changed "
        .. "during the run? run again)", "password"
    end
    return open_with(v, key, name)
  end
  local own <close>, derr, dkind = derive(password, v, name)
  if not own then return nil, derr, dkind end
  return open_with(v, own, name)
end

return M
