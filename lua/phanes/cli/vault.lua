-- vault_cmd.lua: `phanes vault init|edit|view|get|set|rm|rekey|encrypt-string`.
-- The format, the password sources and the audit log are in vault.lua.
--
--   phanes vault init --config config.yaml
--   printf %s "$PW" | phanes vault set postgres.password
--   phanes vault get postgres.password --reveal
--   phanes vault edit ; phanes vault rekey --new-vault-password-file new.pw
local vault = require "phanes.vault"
local file = require "phanes.file"
local sys = require "phanes.sys"
local M = {}

local EXIT = require "phanes.cli.exit"

M.USAGE = [[
usage: phanes vault init|edit|view [OPTIONS]
       phanes vault get KEY [--reveal] [--host NAME] [OPTIONS]
       phanes vault set KEY [--host NAME] [OPTIONS]     (the value from stdin, or a prompt)
       phanes vault rm KEY [--host NAME] [OPTIONS]
       phanes vault rekey [--new-vault-password-file F] [OPTIONS]
       phanes vault encrypt-string --name KEY [OPTIONS] (the value from stdin)

The vault is one encrypted file (AES-256-GCM, key from scrypt) holding YAML:
defaults: for every host, hosts: {NAME: {...}} for one. A config value
`!vault KEY` is read from it (PHANES_SECRET_<KEY> wins).

options:
      --file F                 the vault (default: vault.file in the config,
                               else secrets.vault.yaml beside the config, else here)
  -c, --config F               the config that names the vault and vault.password_command
      --vault-password-file F  the password (also PHANES_VAULT_PASSWORD_FILE);
                               else vault.password_command, else a prompt on the terminal
      --new-vault-password-file F  rekey: the new password (else asked twice)
      --host NAME              get/set/rm: hosts.NAME instead of defaults
      --reveal                 get: print the value instead of ******
      --name KEY               encrypt-string: where to store the value

examples:
  phanes vault init
  phanes vault set redis.password < redis.pw
  phanes vault set postgres.password --host db1
  phanes vault get redis.password --reveal
  EDITOR=nano phanes vault edit
  phanes vault rekey

Every read, write and rekey is logged (never a value) to
~/.local/state/phanes/security.log. Exit codes: 0 ok, 2 usage, a wrong
password, an altered, cut or unknown vault file, 130 interrupted.
]]

local VALUE_OPTS = { ["--file"] = "file", ["--config"] = "config", ["-c"] = "config",
  ["--vault-password-file"] = "password_file", ["--new-vault-password-file"] = "new_password_file",
  ["--host"] = "host", ["--name"] = "name", ["--path"] = "path", ["--color"] = "color" }
local FLAGS = { ["--reveal"] = "reveal", ["--help"] = "help", ["-h"] = "help", ["-v"] = "verbose",
  ["--verbose"] = "verbose" }

local function err(msg, hint)
  io.stderr:write("phanes vault: ", msg, "\n")
  if hint then io.stderr:write("  ", hint, "\n") end
end

local function parse(args)
  local o, pos, i = {}, {}, 1
  while args[i] do
    local a = args[i]
    local k, v = a:match "^(%-%-[%w%-]+)=(.*)$"
    k = k or a
    if VALUE_OPTS[k] then
      if not v then i = i + 1; v = args[i] end
      if not v then return nil, k .. " needs a value" end
      o[VALUE_OPTS[k]] = v
    elseif FLAGS[a] then o[FLAGS[a]] = true
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      local guess = require("phanes.config.schema").suggest(k, (function()
        local t = {} for n in pairs(VALUE_OPTS) do t[#t + 1] = n end
        for n in pairs(FLAGS) do t[#t + 1] = n end return t end)())
      return nil, "unknown option " .. a .. (guess and (" (did you mean " .. guess .. "?)") or "")
    else pos[#pos + 1] = a end
    i = i + 1
  end
  return o, pos
end

-- The config's `vault:` settings (file, password_command), when --config.
local function settings(o)
  if not o.config then return {} end
  local text, e = file.read(o.config)
  if not text then return nil, "cannot read the config: " .. tostring(e) end
  local data, derr = require("phanes.yaml").decode(text, o.config)
  if data == nil and type(derr) == "string" then return nil, derr end
  return vault.settings(type(data) == "table" and data.vault or nil)
end

local function target(o)
  local s, e = settings(o)
  if not s then return nil, e end
  o.settings = s
  return vault.locate { file = o.file, config = o.config, settings = s }
end

local function password(o, prompt)
  return vault.password { file = o.password_file, command = o.settings.password_command, prompt = prompt }
end

-- A new password: rekey takes it only from --new-vault-password-file (the
-- usual sources hold the old one); init from the usual sources; else it is
-- asked twice on the terminal.
local function new_password(o, rekey)
  if o.new_password_file then return vault.password { file = o.new_password_file } end
  if not rekey and (o.password_file or sys.environ().PHANES_VAULT_PASSWORD_FILE or o.settings.password_command) then
    return password(o)
  end
  local a, e = sys.getpass("New vault password: ")
  if not a then return nil, "no password: " .. tostring(e) .. " (or give --new-vault-password-file F)" end
  if #a < 8 then return nil, "the vault password needs 8 characters or more" end
  local b = sys.getpass("Repeat it: ")
  if a ~= b then return nil, "the two passwords differ" end
  return a
end

local function open(o, action)
  if not file.exists(o.path) then
    return nil, "no vault at " .. o.path .. " (create it: phanes vault init" .. (o.file and (" --file " .. o.file) or "")
      .. ", or name it with --file F or vault.file in the config)"
  end
  local pw, e = password(o)
  if not pw then return nil, e end
  local doc, pt, kind = vault.read_file(o.path, pw, action)
  if not doc then return nil, pt, kind end
  return doc, pw, pt
end

local function need_key(pos, cmd)
  if #pos ~= 1 then return nil, cmd .. ": expected one KEY (like postgres.password)" end
  if not pos[1]:match "^[%w_%-]+[%w_%-%.]*$" or pos[1]:match "%.%." or pos[1]:match "%.$" then
    return nil, cmd .. ": bad KEY '" .. pos[1] .. "' (dotted names: postgres.password)"
  end
  return pos[1]
end

------------------------------------------------------------------------

local cmds = {}

function cmds.init(o)
  if file.exists(o.path) then
    return nil, o.path .. " exists already (phanes vault edit changes it, rekey changes its password)"
  end
  local pw, e = new_password(o, false)
  if not pw then return nil, e end
  local text = "# phanes vault: defaults: for every host, hosts: {NAME: {...}} for one.\n"
    .. "defaults: {}\nhosts: {}\n"
  local ok, werr = vault.write_file(o.path, text, pw, "init")
  if not ok then return nil, werr end
  io.stdout:write("created ", o.path, " (scrypt N=", vault.PARAMS.n, ", AES-256-GCM)\n")
  return true
end

function cmds.view(o)
  local doc, pw, pt = open(o, "view")
  if not doc then return nil, pw end
  io.stdout:write(pt)
  return true
end

function cmds.get(o, pos)
  local key, kerr = need_key(pos, "get")
  if not key then return nil, kerr end
  local doc, e = open(o, "get")
  if not doc then return nil, e end
  local v, hint = vault.lookup(doc, key, o.host)
  vault.audit { action = "get", key = key, host = o.host, file = o.path, outcome = v ~= nil and "ok" or "missing" }
  if v == nil then
    return nil, "no key '" .. key .. "' in " .. o.path .. (hint and (" (" .. hint .. ")") or "")
  end
  if not o.reveal then
    io.stdout:write(key, ": ******", type(v) == "table" and " (a map)" or "", "  (--reveal shows it)\n")
  elseif type(v) == "table" then
    io.stdout:write(require("phanes.yaml").encode(v))
  else
    io.stdout:write(tostring(v), "\n")
  end
  return true
end

-- The value for set: stdin when it is not a terminal, else a quiet prompt.
local function read_value(key)
  if not sys.isatty(0) then
    local v = io.stdin:read "a" or ""
    v = v:gsub("\r?\n$", "")
    return v
  end
  local v, e = sys.getpass("Value for " .. key .. ": ")
  if not v then return nil, "no value: " .. tostring(e) end
  return v
end

local function store(o, key, value, action)
  local doc, pw = open(o, "read")
  if not doc then return nil, pw end
  local ok, e = vault.set(doc, key, value, o.host)
  if not ok then return nil, e end
  local wok, werr = vault.write_file(o.path, vault.dump(doc), pw, action)
  if not wok then return nil, werr end
  vault.audit { action = action .. "_key", key = key, host = o.host, file = o.path, outcome = "ok" }
  return true
end

function cmds.set(o, pos)
  local key, kerr = need_key(pos, "set")
  if not key then return nil, kerr end
  local value, verr = read_value(key)
  if not value then return nil, verr end
  local ok, e = store(o, key, value, "set")
  if not ok then return nil, e end
  io.stderr:write("set ", o.host and ("hosts." .. o.host .. ".") or "", key, " in ", o.path, "\n")
  return true
end

cmds["encrypt-string"] = function(o, pos)
  local key, kerr = need_key(o.name and { o.name } or pos, "encrypt-string")
  if not key then return nil, kerr .. "; give --name KEY" end
  local value = io.stdin:read "a" or ""
  value = value:gsub("\r?\n$", "")
  local ok, e = store(o, key, value, "set")
  if not ok then return nil, e end
  io.stdout:write(key:match "([^.]+)$", ": !vault ", key, "\n")
  return true
end

function cmds.rm(o, pos)
  local key, kerr = need_key(pos, "rm")
  if not key then return nil, kerr end
  local doc, pw = open(o, "read")
  if not doc then return nil, pw end
  local ok, e = vault.remove(doc, key, o.host)
  if not ok then return nil, e .. " in " .. o.path end
  local wok, werr = vault.write_file(o.path, vault.dump(doc), pw, "write")
  if not wok then return nil, werr end
  vault.audit { action = "rm_key", key = key, host = o.host, file = o.path, outcome = "ok" }
  io.stderr:write("removed ", key, " from ", o.path, "\n")
  return true
end

function cmds.rekey(o)
  local doc, pw, pt = open(o, "read")
  if not doc then return nil, pw end
  local npw, e = new_password(o, true)
  if not npw then return nil, e end
  local ok, werr = vault.write_file(o.path, pt, npw, "rekey")
  if not ok then return nil, werr end
  io.stderr:write("rekeyed ", o.path, "\n")
  return true
end

------------------------------------------------------------------------
-- edit

local function hex(s) return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end

-- A private 0700 directory on tmpfs: $XDG_RUNTIME_DIR, else /dev/shm.
local function private_dir()
  local env = sys.environ()
  local bases = { env.XDG_RUNTIME_DIR, "/dev/shm" }
  for _, base in pairs(bases) do
    local st = base and file.stat(base)
    if st and st.type == "directory" then
      local dir = base .. "/phanes-vault-" .. hex(require("phanes.cipher").random(8))
      local ok, created = file.mkdir(dir, { mode = tonumber("700", 8) })
      if ok and created then return dir end
    end
  end
  return nil, "no private tmpfs directory for the plaintext ($XDG_RUNTIME_DIR or /dev/shm)"
end

local function wipe(dir, path)
  local cipher = require "phanes.cipher"
  local ok, e = cipher.wipe(path)
  for _, name in ipairs(file.list(dir) or {}) do cipher.wipe(dir .. "/" .. name) end -- editor leftovers
  local rok, re = file.remove(dir)
  if not ok or not rok then err("could not wipe the plaintext: " .. tostring(e or re)) end
end

local function edit_in(o, dir, pt, pw)
  local path = dir .. "/secrets.yaml"
  local ok, e = file.write(path, pt, { mode = tonumber("600", 8) })
  if not ok then return nil, e end
  local env = sys.environ()
  local argv, serr = vault.split_command(env.VISUAL or env.EDITOR or "vi")
  if not argv or #argv == 0 then return nil, "$EDITOR: " .. tostring(serr or "empty") end
  argv[#argv + 1] = path
  local code, rerr, interrupted = require("phanes.cipher").run_tty(argv)
  if interrupted or sys.interrupted() > 0 then return nil, "interrupted: the vault was not changed", EXIT.interrupted end
  if code ~= 0 then
    return nil, (rerr or ("the editor " .. argv[1] .. " exited with " .. tostring(code))) .. ": the vault was not changed"
  end
  local text = file.read(path)
  if text == pt then io.stderr:write("no changes\n") return true end
  local doc, perr = vault.parse(text or "", "the edited vault")
  if not doc then return nil, perr .. " (the vault was not changed)" end
  return vault.write_file(o.path, text, pw, "write")
end

function cmds.edit(o)
  local doc, pw, pt = open(o, "edit")
  if not doc then return nil, pw end
  local dir, derr = private_dir()
  if not dir then return nil, derr end
  sys.trap_signals()
  local ok, res, e, code = xpcall(edit_in, debug.traceback, o, dir, pt, pw)
  wipe(dir, dir .. "/secrets.yaml")
  if not ok then error(res, 0) end
  return res, e, code
end

function M.main(args)
  local o, pos = parse(args)
  if not o then err(pos) io.stderr:write("try: phanes vault --help\n") return EXIT.usage end
  local sub = table.remove(pos, 1)
  if o.help or sub == "help" then io.stdout:write(M.USAGE) return EXIT.ok end
  if not sub then io.stderr:write(M.USAGE) return EXIT.usage end
  local fn = cmds[sub]
  if not fn then
    local names = {}
    for n in pairs(cmds) do names[#names + 1] = n end
    local guess = require("phanes.config.schema").suggest(sub, names)
    err("unknown command '" .. sub .. "'" .. (guess and (" (did you mean '" .. guess .. "'?)") or ""))
    return EXIT.usage
  end
  local path, perr = target(o)
  if not path then err(perr) return EXIT.usage end
  o.path = path
  local ok, e, code = fn(o, pos)
  if not ok then
    err(e)
    return code or EXIT.usage
  end
  return EXIT.ok
end

return M
