-- sshkey.lua: SSH public keys as written in authorized_keys, parsed for
-- real: a known type, base64 that decodes, and the type inside the blob
-- (and an ECDSA key's curve) matching the declared one.
--
-- Example:
--   local key, err = sshkey.parse "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA... me@laptop"
--   --> { type = "ssh-ed25519", blob = "<bytes>", comment = "me@laptop" }
--   sshkey.parse "hello world"  --> nil, "unknown key type 'hello' (ssh-ed25519, ...)"
--   sshkey.find_in_line 'from="10.0.0.1" ssh-ed25519 AAAA...' --> the key after the options
local b64decode = require("phanes.json").base64_decode

local M = {}

-- Key type -> the ECDSA curve its blob names after the type (nil: none).
M.TYPES = {
  ["ssh-ed25519"] = false,
  ["ssh-rsa"] = false,
  ["ecdsa-sha2-nistp256"] = "nistp256",
  ["ecdsa-sha2-nistp384"] = "nistp384",
  ["ecdsa-sha2-nistp521"] = "nistp521",
  ["sk-ssh-ed25519@openssh.com"] = false,
  ["sk-ecdsa-sha2-nistp256@openssh.com"] = "nistp256",
}

local function type_list()
  local names = {}
  for t in pairs(M.TYPES) do names[#names + 1] = t end
  table.sort(names)
  return table.concat(names, ", ")
end

-- The SSH wire string (uint32 length, bytes) at pos -> value, next pos | nil.
local function wire_string(blob, pos)
  if #blob < pos + 3 then return nil end
  local len = string.unpack(">I4", blob, pos)
  if len > #blob - pos - 3 then return nil end
  return blob:sub(pos + 4, pos + 3 + len), pos + 4 + len
end

-- sshkey.parse(text) -> { type, blob, comment } | nil, "why". One key, no
-- authorized_keys options, one line.
function M.parse(text)
  if type(text) ~= "string" then return nil, "not a string" end
  if text:find "[\r\n%z]" then return nil, "a key is one line" end
  local kind, b64, comment = text:match "^%s*(%S+)%s+(%S+)%s*(.-)%s*$"
  if not kind then
    return nil, "expected \"TYPE BASE64 [comment]\", like \"ssh-ed25519 AAAAC3Nza... me@laptop\""
  end
  if M.TYPES[kind] == nil then
    return nil, "unknown key type '" .. kind .. "' (known: " .. type_list() .. ")"
  end
  local blob, err = b64decode(b64)
  if not blob then return nil, "the key data is not base64 (" .. err .. ")" end
  local inner, pos = wire_string(blob, 1)
  if not inner then return nil, "the key data is too short to be a " .. kind .. " key" end
  if inner ~= kind then
    return nil, "the key data says '" .. inner:gsub("[^%w@.%-]", "?") .. "', not '" .. kind .. "'"
  end
  local curve = M.TYPES[kind]
  if curve then
    local named = wire_string(blob, pos)
    if named ~= curve then return nil, "the key data is not a " .. curve .. " key" end
  elseif not wire_string(blob, pos) then
    return nil, "the key data is too short to be a " .. kind .. " key"
  end
  if comment:find "%c" then return nil, "the comment has control characters" end
  return { type = kind, blob = blob, comment = comment }
end

-- sshkey.find_in_line(line) -> key | nil: the key of an authorized_keys
-- line, skipping options before it ("from=...", "no-pty ssh-ed25519 ...").
-- Comments, blank lines and malformed keys give nil.
function M.find_in_line(line)
  if not line:match "^%s*[^#%s]" then return nil end
  local pos = 1
  while true do
    local s, e, word = line:find("(%S+)", pos)
    if not s then return nil end
    if M.TYPES[word] ~= nil then return (M.parse(line:sub(s))) end
    pos = e + 1
  end
end

return M
