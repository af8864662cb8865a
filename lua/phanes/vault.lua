-- vault.lua: the secrets vault: its file format (vault/format.lua) and
-- plaintext (vault/doc.lua), reading and writing it, where it is and its
-- password, the audit log, and `!vault KEY` values in the config.
--
-- The file (one committable text file, e.g. secrets.vault.yaml):
--   $PHANES_VAULT;1;scrypt;N=16384,r=8,p=1;len=BYTES
--   <base64 of salt(16) | nonce(12) | check(16) | ciphertext | tag(16), 76 columns a line>
-- scrypt (OpenSSL EVP_KDF) derives 48 bytes from the password and salt:
-- the AES-256-GCM key, then 16 check bytes that tell a wrong password from
-- an altered file. The GCM additional data is the first line, a newline,
-- salt, nonce and check: every header byte is authenticated. The plaintext
-- is YAML: `defaults:` plus `hosts: {NAME: {...}}`.
--
--   local doc, err, kind = vault.read("secrets.vault.yaml", password)
--   vault.write("secrets.vault.yaml", "defaults: {}\n", password, "write")
--   vault.lookup(doc, "postgres.password", "web1") --> value | nil, did-you-mean
local cipher = require "phanes.cipher"
local format = require "phanes.vault.format"
local plain = require "phanes.vault.doc"
local file = require "phanes.file"
local sys = require "phanes.sys"
local M = {}

-- The file format (vault/format.lua) and the plaintext (vault/doc.lua),
-- also under this module's name.
M.MAGIC, M.VERSION, M.PARAMS = format.MAGIC, format.VERSION, format.PARAMS
M.seal, M.unseal = format.seal, format.unseal
M.parse, M.lookup, M.set, M.remove, M.dump = plain.parse, plain.lookup, plain.set, plain.remove, plain.dump
M.DEFAULT_NAME = "secrets.vault.yaml"

------------------------------------------------------------------------
-- The audit log and the user's hooks.

local run_id
-- vault.run_id() -> this process's run id (time and 6 random hex digits)
function M.run_id()
  if not run_id then
    run_id = os.date("!%Y%m%dT%H%M%SZ") .. "-" .. (cipher.random(3):gsub(".", function(c)
      return string.format("%02x", c:byte()) end))
  end
  return run_id
end

local function home()
  local env = sys.environ()
  return env.HOME or "/root", env
end

-- vault.log_path() -> ~/.local/state/phanes/security.log (XDG_STATE_HOME
-- too; vault.LOG, when set, instead: the specs)
function M.log_path()
  if M.LOG then return M.LOG end
  local h, env = home()
  local base = env.XDG_STATE_HOME ~= "" and env.XDG_STATE_HOME or nil -- empty: unset, as XDG says
  return (base or (h .. "/.local/state")) .. "/phanes/security.log"
end

local hooks
local function load_hooks()
  if hooks ~= nil then return hooks end
  hooks = false
  local h, env = home()
  local base = env.XDG_CONFIG_HOME ~= "" and env.XDG_CONFIG_HOME or nil
  local path = (base or (h .. "/.config")) .. "/phanes/hooks.lua"
  local st = file.stat(path)
  if not st then return hooks end
  local uid = sys.getuid()
  if (st.uid ~= uid and st.uid ~= 0) or st.mode & 18 ~= 0 then -- 18 = 0022
    io.stderr:write("phanes: warning: ignoring ", path, ": it must be owned by you or root and not ",
      "group- or world-writable (chmod go-w ", path, ")\n")
    return hooks
  end
  local text = file.read(path)
  local envt = setmetatable({}, { __index = _G })
  local chunk, err = load(text or "", "@" .. path, "t", envt)
  local ok, ret = false, err
  if chunk then ok, ret = pcall(chunk) end
  if not ok then
    io.stderr:write("phanes: warning: ", path, ": ", tostring(ret), "\n")
    return hooks
  end
  hooks = type(ret) == "table" and ret or envt
  return hooks
end

local HOOK = { secret_resolved = "on_secret_read", read = "on_secret_read", get = "on_secret_read",
  view = "on_secret_read", rekey = "on_key_rotated" }

-- The name of uid in /etc/passwd (nil when it has none: a container's uid)
local user_name
local function name_of(uid)
  if user_name == nil then
    user_name = false
    for line in (file.read("/etc/passwd") or ""):gmatch "[^\n]+" do
      local name, id = line:match "^([^:]+):[^:]*:(%d+):"
      if tonumber(id) == uid then user_name = name break end
    end
  end
  return user_name or nil
end

-- vault.audit{ action, key, host, outcome, file } appends one JSON line
-- (never a value) and calls the user's hook for it. A log that cannot be
-- written is a warning, not a failure of the run.
function M.audit(ev)
  local h, env = home()
  local e = { time = os.date("!%Y-%m-%dT%H:%M:%SZ"), uid = sys.getuid(),
    user = name_of(sys.getuid()) or env.USER or env.LOGNAME or tostring(sys.getuid()), action = ev.action, key = ev.key,
    host = ev.host or sys.hostname(), run_id = M.run_id(), outcome = ev.outcome or "ok", file = ev.file }
  local path = M.log_path()
  local dir = path:match "^(.*)/"
  local ok, err = file.mkdir(dir, { parents = true, mode = tonumber("700", 8) })
  if ok then ok, err = cipher.append(path, require("phanes.json").encode(e) .. "\n") end
  if not ok and not M.quiet_audit then
    io.stderr:write("phanes: warning: cannot write the audit log: ", tostring(err), "\n")
  end
  local _ = h
  local hk = load_hooks()
  local fn = hk and HOOK[ev.action] and hk[HOOK[ev.action]]
  if type(fn) == "function" then
    local copy_e = {}
    for k, v in pairs(e) do copy_e[k] = v end
    local hok, herr = pcall(fn, copy_e)
    if not hok then io.stderr:write("phanes: warning: hook ", HOOK[ev.action], ": ", tostring(herr), "\n") end
  end
end

------------------------------------------------------------------------
-- Files.

-- vault.read_file(path, password[, action, key]) -> doc, plaintext, params
-- | nil, err, kind (audited: action "read"). key: the file's key (no KDF).
function M.read_file(path, password, action, key)
  local text, rerr = file.read(path)
  if not text then
    M.audit { action = action or "read", file = path, outcome = "unreadable" }
    return nil, "cannot read the vault: " .. tostring(rerr), "io"
  end
  local pt, err, kind = M.unseal(text, password, path, key)
  if not pt then
    M.audit { action = action or "read", file = path, outcome = kind }
    return nil, err, kind
  end
  local doc, perr = M.parse(pt, path .. " (decrypted)")
  if not doc then
    M.audit { action = action or "read", file = path, outcome = "bad_yaml" }
    return nil, perr, "yaml"
  end
  M.audit { action = action or "read", file = path, outcome = "ok" }
  return doc, pt, err
end

-- vault.write_file(path, plaintext, password, action[, params]) -> true | nil, err
-- Atomic: a temp file in the same directory, fsync, rename (file.write).
function M.write_file(path, plaintext, password, action, params)
  local text = M.seal(plaintext, password, params)
  local ok, err = file.write(path, text, not file.exists(path) and { mode = tonumber("600", 8) } or nil)
  M.audit { action = action or "write", file = path, outcome = ok and "ok" or "io_error" }
  if not ok then return nil, "cannot write the vault: " .. tostring(err) end
  return true
end

------------------------------------------------------------------------
-- Where the vault is, and its password.

local function dirname(p)
  return p:match "^(.*)/[^/]*$" or "."
end

-- vault.settings(config_data) -> { file, password_command } from the
-- config's top-level `vault:` (a path, or a map with file: and password_command:)
function M.settings(v)
  if type(v) == "string" then return { file = v } end
  if type(v) == "table" and v["!vault"] == nil then
    return { file = type(v.file) == "string" and v.file or nil,
      password_command = type(v.password_command) == "string" and v.password_command or nil }
  end
  return {}
end

-- vault.locate{ file = --file, config = config path, settings = {...} } -> path
function M.locate(o)
  if o.file then return o.file end
  local base = o.config and dirname(o.config) or "."
  local s = o.settings or {}
  if s.file then return s.file:sub(1, 1) == "/" and s.file or (base .. "/" .. s.file) end
  if o.config then return base .. "/" .. M.DEFAULT_NAME end
  return M.DEFAULT_NAME
end

-- Splits a command without a shell: words by blanks, '...' and "..." quote.
function M.split_command(s)
  local words, cur, i, quote, any = {}, {}, 1, nil, false
  while i <= #s do
    local c = s:sub(i, i)
    if quote then
      if c == quote then quote = nil else cur[#cur + 1] = c end
    elseif c == "'" or c == '"' then quote, any = c, true
    elseif c:match "%s" then
      if #cur > 0 or any then words[#words + 1] = table.concat(cur) end
      cur, any = {}, false
    else cur[#cur + 1] = c end
    i = i + 1
  end
  if quote then return nil, "unbalanced " .. quote .. " in the command" end
  if #cur > 0 or any then words[#words + 1] = table.concat(cur) end
  return words
end

local function strip_nl(s) return (s:gsub("\r?\n$", "")) end

-- vault.password{ file = --vault-password-file, env = environ, command =
-- vault.password_command, prompt = "text" } -> password | nil, err
-- Order: --vault-password-file, PHANES_VAULT_PASSWORD_FILE,
-- vault.password_command (run without a shell), a prompt on /dev/tty.
function M.password(o)
  local env = o.env or sys.environ()
  local pf = o.file or env.PHANES_VAULT_PASSWORD_FILE
  if pf then
    local text, err = file.read(pf)
    if not text then return nil, "cannot read the vault password file: " .. tostring(err) end
    text = strip_nl(text)
    if text == "" then return nil, pf .. ": the vault password file is empty" end
    return text
  end
  if o.command then
    local argv, serr = M.split_command(o.command)
    if not argv or #argv == 0 then return nil, "vault.password_command: " .. (serr or "empty") end
    local r, err = require("phanes.exec").run { argv = argv, timeout = 60 }
    if not r then return nil, "vault.password_command: " .. tostring(err) end
    if r.code ~= 0 then
      return nil, string.format("vault.password_command '%s' exited with %s", argv[1], tostring(r.code))
    end
    local pw = strip_nl(r.stdout or "")
    if pw == "" then return nil, "vault.password_command printed no password" end
    return pw
  end
  local pw, err = sys.getpass(o.prompt or "Vault password: ")
  if not pw then
    return nil, "no vault password: " .. tostring(err) .. " (give --vault-password-file F, "
      .. "PHANES_VAULT_PASSWORD_FILE or vault.password_command in the config)"
  end
  if pw == "" then return nil, "empty vault password" end
  return pw
end

------------------------------------------------------------------------
-- `!vault KEY` in the config.

local resolved = {}
local opened = {}
-- vault.resolved_values() -> the values resolved for this run (to mask)
function M.resolved_values()
  local out = {}
  for _, v in ipairs(resolved) do out[#out + 1] = v end
  return out
end

local function add_secret(v)
  if type(v) == "table" then
    for _, x in pairs(v) do add_secret(x) end
  elseif (type(v) == "string" and v ~= "") or type(v) == "number" then
    resolved[#resolved + 1] = tostring(v)
    require("phanes.config.schema").hidden[tostring(v)] = true -- never in a config error
  end
end

M.add_secret = add_secret -- phanes.config.layers: the values of a vault's host block

-- Every { ["!vault"] = KEY } in data: { parent, key, path, ref }
local function refs(t, prefix, out)
  for k, v in pairs(t) do
    local p = prefix and (prefix .. "." .. tostring(k)) or tostring(k)
    if type(v) == "table" then
      if type(v["!vault"]) == "string" and next(v, next(v)) == nil and next(v) == "!vault" then
        out[#out + 1] = { parent = t, key = k, path = p, ref = v["!vault"] }
      else
        refs(v, p, out)
      end
    end
  end
  return out
end

local function env_name(key)
  return "PHANES_SECRET_" .. key:upper():gsub("[^%w]", "_")
end

------------------------------------------------------------------------
-- A fleet's key: its controller derives the vault's key once and hands it
-- to each host's child on a pipe that is the child's stdin (never argv or
-- the environment; PHANES_VAULT_KEY_FD=0 tells the child, not the key):
--   PHANES-VAULT-KEY 1\n base64(header salt)\n base64(key, 48 bytes)\n
-- The salt names the vault the key belongs to (random per file and rekey).

local KEY_MAGIC = "PHANES-VAULT-KEY 1"

-- vault.handover{ config = path, password_file =, env = } -> the text to
-- give a fleet's children on stdin | nil (no vault file: nothing to hand)
-- | nil, err (its password or key failed: exit 2 before any host starts)
function M.handover(o)
  local env = o.env or sys.environ()
  local settings = {}
  if o.config then
    local text = file.read(o.config)
    local data = text and require("phanes.yaml").decode(text, o.config)
    settings = M.settings(type(data) == "table" and data.vault or nil)
  end
  local path = M.locate { config = o.config, settings = settings }
  local text = file.exists(path) and file.read(path)
  if not text then return nil end
  local pw, perr = M.password { file = o.password_file or M.password_file, env = env,
    command = settings.password_command }
  if not pw then return nil, path .. ": " .. perr end
  local key <close>, err, kind = format.derive(text, pw, path)
  M.audit { action = "read", file = path, outcome = key and "ok" or kind }
  if not key then return nil, err end
  local b64 = require("phanes.crypto").base64_encode
  return table.concat({ KEY_MAGIC, b64(format.salt(text)), b64(key:export()), "" }, "\n")
end

local handed -- { salt, key } from the controller, false: none
local function read_handed()
  if handed ~= nil then return handed end
  handed = false
  -- a terminal is never the controller's pipe (a program of ours that inherited the flag)
  if sys.environ().PHANES_VAULT_KEY_FD ~= "0" or sys.isatty(0) then return handed end
  local text = io.stdin:read "a" or ""
  local magic, salt, key = text:match "^([^\n]*)\n([^\n]*)\n([^\n]*)\n$"
  local b64d = require("phanes.crypto").base64_decode
  salt, key = salt and b64d(salt), key and b64d(key)
  if magic ~= KEY_MAGIC or not salt or not key or #key ~= 48 then
    io.stderr:write("phanes: warning: PHANES_VAULT_KEY_FD=0 but stdin holds no vault key; ",
      "the vault's password is asked for as usual\n")
    return handed
  end
  handed = { salt = salt, key = cipher.key(key) }
  return handed
end

-- vault.handed_key(path) -> the key the fleet's controller handed over
-- for the vault at path (its header's salt is the one handed) | nil
function M.handed_key(path)
  local h = read_handed()
  if not h then return nil end
  local text = file.read(path)
  local salt = text and format.salt(text)
  return salt == h.salt and h.key or nil
end

-- Opens the vault once per process (one KDF a run, not one a host; none
-- in a fleet's child, which has the controller's key).
local function open_once(path, o)
  if opened[path] then return table.unpack(opened[path]) end
  local key = M.handed_key(path)
  local pw, perr
  if not key then
    pw, perr = M.password { file = o.password_file or M.password_file, env = o.env,
      command = o.settings.password_command }
    if not pw then return nil, perr end
  end
  local t0 = sys.now()
  local doc, err = M.read_file(path, pw, nil, key)
  M.open_seconds = sys.now() - t0
  opened[path] = { doc, err }
  return doc, err
end
M.open_once = open_once -- phanes.config.layers: the host block, from the same single opening

-- vault.wire(layer, o, report): replaces every `!vault KEY` in the config
-- file layer's data with its value, from PHANES_SECRET_<KEY> in o.env or
-- else the vault (defaults, merged with hosts.<this host>). The `vault:`
-- key is taken out of the layer. report(msg) collects a config error.
-- o: env, config (path), password_file (else vault.password_file, which
-- `--vault-password-file` sets), host (whose block: else this machine's).
function M.wire(layer, o, report)
  if not layer or type(layer.data) ~= "table" then return end
  local data = layer.data
  local settings = M.settings(data.vault)
  data.vault = nil
  local list = refs(data, nil, {})
  if #list == 0 then return end
  table.sort(list, function(a, b) return a.path < b.path end)
  o = o or {}
  o.env = o.env or sys.environ()
  o.settings = settings
  local host, failed = o.host or sys.hostname(), false
  local path = M.locate { config = o.config or layer.name, settings = settings, file = o.file }
  for _, r in ipairs(list) do
    local where = layer.name .. ": " .. r.path .. ": !vault " .. r.ref
    local v = o.env[env_name(r.ref)]
    if v ~= nil then
      M.audit { action = "secret_resolved", key = r.ref, host = host, file = env_name(r.ref), outcome = "env" }
    else
      local doc, err = open_once(path, o)
      if not doc then
        -- said once for every value that needed the vault
        if not failed then report(where .. (#list > 1 and " (and the other !vault values)" or "") .. ": " .. err) end
        failed = true
        r.parent[r.key] = nil
        goto next
      end
      local hint
      v, hint = M.lookup(doc, r.ref, host)
      M.audit { action = "secret_resolved", key = r.ref, host = host, file = path, outcome = v ~= nil and "ok" or "missing" }
      if v == nil then
        report(string.format("%s: no key '%s' in the vault %s%s (add it: phanes vault set %s)", where, r.ref,
          path, hint and (" (" .. hint .. ")") or "", r.ref))
        r.parent[r.key] = nil
        goto next
      end
    end
    add_secret(v)
    r.parent[r.key] = plain.copy(v)
    layer.vault_refs = layer.vault_refs or {} -- `config show --origin`: "config.yaml:3 !vault KEY"
    layer.vault_refs[r.path] = r.ref
    ::next::
  end
end

return M
