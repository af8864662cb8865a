-- serve/validate.lua: strict checks of request bodies. Each failure names
-- the field: a client learns what to fix from the 400 alone.
--
--   local req, err = validate.install(body, { baseline = true })
--   -- req = { host, modules = {...}, dry_run, wait, secrets = { provider, key } | nil,
--   --         ssh = { user, port, identity, connect_timeout, env = { PHANES_X = "v" }, probe, record_only } }
local json = require "phanes.json"
local M = {}

local TOP = { host = true, modules = true, dry_run = true, wait = true, ssh = true, secrets = true }
local SSH = { user = true, port = true, identity = true, connect_timeout = true, env = true, probe = true,
  record_only = true }
local SECRETS = { provider = true, key = true }
-- PHANES_* variables that are the run's controller's own (credentials and
-- where things are), never a setting a request may give
local CONTROLLER_ENV = { PHANES_KEY_PASSPHRASE = true, PHANES_NO_PROMPT = true, PHANES_INVENTORY = true,
  PHANES_REMOTE_COLOR = true, PHANES_PATH = true, PHANES_STATE = true, PHANES_VAULT_PASSWORD_FILE = true,
  PHANES_SERVE_SSH_PASSWORD = true }
M.MAX_ENV = 64

local ARRAY = getmetatable(json.array())

-- decoded JSON: arrays carry json.array's mark, objects do not
local function is_array(v)
  if type(v) ~= "table" then return false end
  if getmetatable(v) == ARRAY then return true end
  local n = 0
  for k in pairs(v) do
    if math.type(k) ~= "integer" or k < 1 then return false end
    n = n + 1
  end
  return n == #v
end

local function check_keys(t, allowed, prefix)
  local names = {}
  for k in pairs(t) do names[#names + 1] = tostring(k) end
  table.sort(names)
  for _, k in ipairs(names) do
    if not allowed[k] then
      return prefix .. k .. ": unknown field"
    end
  end
end

local function check_bool(v, name)
  if v == nil or v == json.null then return false end
  if type(v) ~= "boolean" then return nil, name .. ": expected true or false" end
  return v
end

-- ssh.env: PHANES_* settings of the run (as in the server's environment:
-- they reach the host's config like `PHANES_TIMEZONE=UTC phanes apply`)
local function check_env(env)
  if type(env) ~= "table" or getmetatable(env) == ARRAY then return nil, "ssh.env: expected an object" end
  local names, out = {}, {}
  for k in pairs(env) do names[#names + 1] = tostring(k) end
  table.sort(names)
  if #names > M.MAX_ENV then return nil, "ssh.env: at most " .. M.MAX_ENV .. " variables" end
  for _, k in ipairs(names) do
    if not k:match "^PHANES_[A-Z0-9_]+$" or #k > 128 then
      return nil, "ssh.env." .. k .. ": expected a PHANES_* variable name (PHANES_ and A-Z, 0-9, _)"
    end
    if CONTROLLER_ENV[k] or k:match "^PHANES_TEST_" then
      return nil, "ssh.env." .. k .. ": not a setting of the run (the server's own)"
    end
    local v = env[k]
    if type(v) ~= "string" or #v > 4096 or v:find "%z" then
      return nil, "ssh.env." .. k .. ": expected a string of at most 4096 bytes"
    end
    out[k] = v
  end
  return out
end

-- secrets: { provider = "vault", key = "ssh.web1" }: the run's SSH
-- credentials, a value of the server's vault
local function check_secrets(sec)
  if sec == nil or sec == json.null then return nil end
  if type(sec) ~= "table" or getmetatable(sec) == ARRAY then return false, "secrets: expected an object" end
  local bad = check_keys(sec, SECRETS, "secrets.")
  if bad then return false, bad end
  if sec.provider ~= "vault" then return false, 'secrets.provider: expected "vault" (the server\'s vault)' end
  if type(sec.key) ~= "string" or #sec.key > 200 or not sec.key:match "^[%w_][%w_%-]*[%.%w_%-]*$"
    or sec.key:find("..", 1, true) or sec.key:sub(-1) == "." then
    return false, "secrets.key: expected a vault key (words joined by dots, e.g. ssh.web1)"
  end
  return { provider = sec.provider, key = sec.key }
end

local function check_ssh(ssh)
  if ssh == nil or ssh == json.null then return {} end
  if type(ssh) ~= "table" or getmetatable(ssh) == ARRAY then return nil, "ssh: expected an object" end
  local bad = check_keys(ssh, SSH, "ssh.")
  if bad then return nil, bad end
  local out = {}
  if ssh.user ~= nil then
    if type(ssh.user) ~= "string" or not ssh.user:match "^[%w_][%w%._%-]*$" or #ssh.user > 64 then
      return nil, "ssh.user: expected a user name (letters, digits, . _ -)"
    end
    out.user = ssh.user
  end
  if ssh.port ~= nil then
    if math.type(ssh.port) ~= "integer" or ssh.port < 1 or ssh.port > 65535 then
      return nil, "ssh.port: expected an integer from 1 to 65535"
    end
    out.port = ssh.port
  end
  if ssh.identity ~= nil then
    if type(ssh.identity) ~= "string" or not ssh.identity:match "^/[^%z\n]*$" or #ssh.identity > 4096 then
      return nil, "ssh.identity: expected the absolute path of a private key on the server"
    end
    out.identity = ssh.identity
  end
  if ssh.env ~= nil and ssh.env ~= json.null then
    local env, err = check_env(ssh.env)
    if not env then return nil, err end
    out.env = env
  end
  for _, k in ipairs { "probe", "record_only" } do
    local v, err = check_bool(ssh[k], "ssh." .. k)
    if v == nil then return nil, err end
    out[k] = v
  end
  if out.probe and out.record_only then return nil, "ssh.probe: not with ssh.record_only (one or the other)" end
  if ssh.connect_timeout ~= nil then
    local t = ssh.connect_timeout
    if type(t) ~= "number" or t <= 0 or t > 300 then
      return nil, "ssh.connect_timeout: expected a number of seconds from 0 to 300"
    end
    out.connect_timeout = t
  end
  return out
end

local function check_modules(mods, known)
  if not is_array(mods) or #mods == 0 then return nil, "modules: expected a non-empty array of module names" end
  local seen, out = {}, {}
  for i, m in ipairs(mods) do
    if type(m) ~= "string" or not m:match "^[%w][%w_%-]*$" then
      return nil, string.format("modules[%d]: expected a module name", i)
    end
    if known and not known[m] then
      local list = {}
      for k in pairs(known) do list[#list + 1] = k end
      table.sort(list)
      return nil, string.format("modules[%d]: unknown module '%s' (known: %s)", i, m, table.concat(list, ", "))
    end
    if not seen[m] then seen[m] = true; out[#out + 1] = m end
  end
  return out
end

-- validate.install(body_text, known_modules) -> request | nil, message
function M.install(body, known)
  if body == nil or body == "" then return nil, "body: expected a JSON object" end
  local v, err = json.decode(body)
  if v == nil then return nil, "body: invalid JSON: " .. tostring(err) end
  if type(v) ~= "table" or getmetatable(v) == ARRAY then return nil, "body: expected a JSON object" end
  local bad = check_keys(v, TOP, "")
  if bad then return nil, bad end
  if type(v.host) ~= "string" or v.host == "" then return nil, "host: expected an inventory name or user@address" end
  -- a leading "-" would read as an option of the run's command line
  if #v.host > 255 or not v.host:match "^[%w%[][%w%.@:%[%]_%-]*$" then
    return nil, "host: expected an inventory name or [user@]address[:port]"
  end
  local out = { host = v.host }
  out.ssh, err = check_ssh(v.ssh)
  if not out.ssh then return nil, err end
  -- a probe runs no module: it may name none
  if out.ssh.probe and (v.modules == nil or v.modules == json.null) then
    out.modules = {}
  else
    out.modules, err = check_modules(v.modules, known)
    if not out.modules then return nil, err end
  end
  local sec
  sec, err = check_secrets(v.secrets)
  if sec == false then return nil, err end
  out.secrets = sec
  out.dry_run, err = check_bool(v.dry_run, "dry_run")
  if out.dry_run == nil then return nil, err end
  local wait = v.wait
  if wait == nil then wait = true end
  out.wait, err = check_bool(wait, "wait")
  if out.wait == nil then return nil, err end
  if out.dry_run and (out.ssh.probe or out.ssh.record_only) then
    return nil, "dry_run: not with ssh." .. (out.ssh.probe and "probe" or "record_only") .. " (neither changes the host)"
  end
  return out
end

return M
