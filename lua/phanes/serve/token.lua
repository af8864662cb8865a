-- serve/token.lua: the bearer token of `phanes serve`. Generated on first
-- start into a 0600 file (~/.config/phanes/serve.token, or --token-file),
-- never logged, compared in constant time.
--
--   local tok = assert(token.load(path, true))
--   local ok, status, why = token.check(info.headers, tok)
local F = require "phanes.file"
local M = {}

local ENOENT = 2

function M.default_path()
  local base = os.getenv "XDG_CONFIG_HOME"
  if not base or base == "" then base = (os.getenv "HOME" or "") .. "/.config" end
  return base .. "/phanes/serve.token"
end

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local function generate(path)
  local http = require "phanes.http"
  local bytes, err = http.random(32)
  if not bytes then return nil, err end
  local dir = path:match "^(.*)/[^/]+$"
  if dir and dir ~= "" and not F.exists(dir) then
    local ok, merr = F.mkdir(dir, { mode = tonumber("0700", 8), parents = true })
    if not ok then return nil, merr end
  end
  local tok = hex(bytes)
  -- phanes.file writes a new 0600 temp file (O_EXCL|O_NOFOLLOW) and renames it
  local ok, werr = F.write(path, tok .. "\n", { mode = tonumber("0600", 8) })
  if not ok then return nil, werr end
  return tok, true
end

-- token.load(path, create) -> token, created | nil, err
function M.load(path, create)
  local text, err, code = F.read(path)
  if not text then
    if code == ENOENT and create then return generate(path) end
    return nil, "token file " .. tostring(err)
  end
  local st = F.stat(path)
  if st and st.mode and st.mode & tonumber("077", 8) ~= 0 then
    return nil, string.format("token file %s: mode %o lets others read it; chmod 600 %s", path, st.mode & 4095, path)
  end
  local tok = text:match "^%s*(%S+)%s*$"
  if not tok or #tok < 16 then
    return nil, "token file " .. path .. ": expected one token of at least 16 characters"
  end
  return tok, false
end

-- token.check(headers, token) -> true | nil, 401, message
function M.check(headers, tok)
  local auth = headers.authorization
  if not auth then return nil, 401, "missing bearer token: send Authorization: Bearer <token>" end
  local given = auth:match "^[Bb]earer%s+(%S+)%s*$"
  if not given then return nil, 401, "malformed Authorization header: expected Bearer <token>" end
  if not require("phanes.http").equal(given, tok) then return nil, 401, "wrong bearer token" end
  return true
end

return M
