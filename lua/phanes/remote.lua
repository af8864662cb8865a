-- remote.lua: `phanes --remote TARGET COMMAND ...`: run phanes on other
-- machines over SSH. The binary uploads itself (once per version, checked by
-- sha256), the run's files (config, the user's own modules/profiles/
-- templates, the --set values and PHANES_* settings) go over in one tar
-- stream on the run's stdin, the remote run's output comes back live, and
-- its exit code is ours. State stays on the target; the controller records
-- each run under ~/.local/state/phanes/hosts/<host>/ (secret values masked).
--
--   phanes --remote deploy@web1 apply dev --config config.yaml
--   phanes --remote @web --parallel 5 apply web --config web.yaml
--   phanes --remote web1 status           (reads the target's state file)
--   phanes --remote @web status --json    (one document: { hosts, exit_code })
--
-- The connection options (--remote [TARGET], --port, --user, --key,
-- --password-env, --parallel, --strict-host-keys, --known-hosts, --timeout,
-- --binary) are declared with the others in phanes.cli.options; the
-- command line arrives parsed, and what the remote phanes gets is
-- options.forward's re-serialisation of it.
--
-- Exit codes: the remote run's; 3 for connection, authentication and sudo
-- failures; 130 when interrupted; a fleet's: the worst host's (fleet.exit_code).
--
-- Environment: PHANES_KEY_PASSPHRASE (a key's passphrase, else asked on the
-- terminal), PHANES_NO_PROMPT=1 (never ask; set for fleet children),
-- PHANES_INVENTORY (another inventory file), XDG_STATE_HOME (where the
-- per-host records go). Every other PHANES_* variable is a setting of the
-- run and travels with it (see remote.env_overrides).
local options = require "phanes.cli.options"
local EXIT = require "phanes.cli.exit"
local M = {}

local function err(msg) io.stderr:write("phanes: ", msg, "\n") end

-- remote.options(p) -> o | nil, message: the connection options of a
-- parsed command line (phanes.cli.options), checked: { remote = true,
-- target, port, user, key, password_env, password, parallel (default 10),
-- timeout (default 10), known_hosts, strict, binary, cmd (the command) }.
function M.options(p)
  local g = p.opts
  local o = { remote = true, target = g.remote ~= true and g.remote or nil, parallel = g.parallel or 10,
    timeout = g.timeout or 10, port = g.port, user = g.user, key = g.key, password_env = g["password-env"],
    known_hosts = g["known-hosts"], strict = g["strict-host-keys"], binary = g.binary, cmd = p.cmd }
  for _, key in ipairs { "port", "parallel", "timeout" } do
    if o[key] ~= nil then
      local n = tonumber(o[key])
      if not n or n <= 0 then return nil, "--" .. key .. ": expected a positive number, got '" .. tostring(o[key]) .. "'" end
      o[key] = n
    end
  end
  if o.port and (o.port ~= math.floor(o.port) or o.port > 65535) then
    return nil, "--port: expected a port number from 1 to 65535, got '" .. tostring(o.port) .. "'"
  end
  if o.password_env then
    o.password = os.getenv(o.password_env)
    if not o.password then return nil, "--password-env " .. o.password_env .. ": that variable is not set" end
  end
  return o
end

-- remote.parse_args(argv[, p]) -> opts, rest | nil, message: argv as the
-- user typed it (p: as cli.main got it parsed, else parsed here by the one
-- parser): the connection options (remote.options) and what the remote
-- phanes gets (options.forward). deploy, which reads its own arguments,
-- gets them back with the connection options taken out.
function M.parse_args(argv, p)
  local perr
  if not p then p, perr = options.parse(argv) end
  if not p then return nil, perr end
  local o, oerr = M.options(p)
  if not o then return nil, oerr end
  if not p.rest or p.cmd ~= "deploy" then return o, options.forward(p) end
  local rest = {}
  for i, a in ipairs(argv) do
    local name = p.taken[i]
    if not (name and options.OPTIONS[name].remote) then rest[#rest + 1] = a end
  end
  return o, rest
end

-- What the remote phanes gets: --config and a profile given as a local
-- file are sent and rewritten to their uploaded place; --path is ours;
-- --set values are taken out (they travel in the payload, see
-- remote.overrides_file). -> args, files, sets | nil, err
local function rewrite_args(rest)
  local out, files, sets, i = {}, {}, {}, 1
  local function send(path, as)
    local f = io.open(path, "rb")
    if not f then return nil, path .. ": cannot read" end
    local data = f:read "a"
    f:close()
    files[#files + 1] = { name = as, data = data, local_path = path }
    return true
  end
  while rest[i] ~= nil do
    local a = rest[i]
    local k, v = a:match "^(%-%-[%w%-]+)=(.*)$"
    k = k or a
    if k == "--config" or k == "--path" or k == "--set" then
      if not v then i = i + 1; v = rest[i] end
      if v == nil then return nil, k .. " needs a value" end
      if k == "--config" then
        local base = v:match "[^/]*$"
        local ok, e = send(v, "config/" .. base)
        if not ok then return nil, "--config " .. e end
        out[#out + 1] = "--config"
        out[#out + 1] = { run_file = "config/" .. base }
      elseif k == "--set" then
        sets[#sets + 1] = v
      end
    elseif a:match "%.lua$" and not a:match "^%-" and io.open(a, "rb") then
      local base = "files/" .. a:match "[^/]*$"
      assert(send(a, base))
      out[#out + 1] = { run_file = base }
    else
      out[#out + 1] = a
    end
    i = i + 1
  end
  return out, files, sets
end
M.rewrite_args = rewrite_args

-- PHANES_* variables that are the controller's own, never a setting of the
-- remote run (the passphrase and the sudo password above all).
local CONTROLLER_ENV = { PHANES_KEY_PASSPHRASE = true, PHANES_NO_PROMPT = true, PHANES_INVENTORY = true,
  PHANES_REMOTE_COLOR = true, PHANES_RESULT_FD = true, PHANES_PATH = true, PHANES_STATE = true }

-- remote.env_overrides(env, opts) -> { PHANES_X = value }: the controller's
-- PHANES_* settings that reach the remote run's config as they would reach
-- a local run's (the variable named by --password-env stays here).
function M.env_overrides(env, o)
  local out = {}
  for k, v in pairs(env or {}) do
    if type(k) == "string" and k:match "^PHANES_" and not CONTROLLER_ENV[k] and not k:match "^PHANES_TEST_"
      and k ~= (o and o.password_env) then
      out[k] = v
    end
  end
  return out
end

-- Every config key the controller knows (modules from the binary and the
-- search path), as config.describe's rows; {} when they cannot be loaded.
local function config_rows()
  local ok, rows = pcall(function()
    return select(2, require("phanes.config").describe((require("phanes.engine.resolve").all())))
  end)
  return ok and type(rows) == "table" and rows or {}
end

-- remote.secret_paths(paths, rows) -> { [path] = true } for each config
-- path (a.b) that is a secret field, lies inside one, or is no known field
-- at all (a misspelt secret stays a secret).
function M.secret_paths(paths, rows)
  local secret, out = {}, {}
  for _, r in ipairs(rows) do secret[r.path] = r.secret and true or false end
  for _, p in ipairs(paths) do
    local hidden = secret[p] ~= false
    local up = p:match "^(.*)%.[^.]*$"
    while up do
      if secret[up] then hidden = true end
      up = up:match "^(.*)%.[^.]*$"
    end
    out[p] = hidden
  end
  return out
end

-- remote.overrides(sets, env[, rows]) -> { file = payload file | nil,
-- shown = { "--set k=******", ... }, env_names = { ... }, secrets = { ... } }:
-- what travels (every value, in the payload), what the records show
-- (secret values masked by field) and the secret values the controller
-- masks in its own log.
-- lazy: shown and secrets are filled by res.pending() (config_rows loads
-- every module: a remote run calls it while the target starts).
function M.overrides(sets, env, rows, lazy)
  local names = {}
  for k in pairs(env) do names[#names + 1] = k end
  table.sort(names)
  local res = { shown = {}, env_names = names, secrets = {} }
  if #sets == 0 and #names == 0 then return res end
  res.file = { name = "overrides.json", data = require("phanes.json").encode { set = sets, env = env } }
  if lazy and not rows then
    res.pending = function()
      res.pending = nil
      M.fill_overrides(res, sets, env, names)
    end
    return res
  end
  M.fill_overrides(res, sets, env, names, rows)
  return res
end

function M.fill_overrides(res, sets, env, names, rows)
  local paths, by_env = {}, {}
  rows = rows or config_rows()
  for _, r in ipairs(rows) do by_env["PHANES_" .. r.path:upper():gsub("[^%w]", "_")] = r.path end
  for _, s in ipairs(sets) do paths[#paths + 1] = s:match "^%s*([^=]-)%s*=" or s end
  for _, n in ipairs(names) do if by_env[n] then paths[#paths + 1] = by_env[n] end end
  local hidden = M.secret_paths(paths, rows)
  for _, s in ipairs(sets) do
    local k, v = s:match "^%s*([^=]-)%s*=(.*)$"
    if k and hidden[k] then
      res.shown[#res.shown + 1] = "--set " .. k .. "=******"
      res.secrets[#res.secrets + 1] = v
    else
      res.shown[#res.shown + 1] = "--set " .. s
    end
  end
  for _, n in ipairs(names) do
    if by_env[n] and hidden[by_env[n]] then res.secrets[#res.secrets + 1] = env[n] end
  end
end

-- The user's own modules/profiles/templates/lua that differ from the ones
-- embedded in the binary: those travel with the run (--path on the target).
function M.user_files()
  local loader = require "phanes.loader"
  local embedded = require "phanes.embedded"
  local file = require "phanes.file"
  local seen, files = {}, {}
  local function walk(dir, rel)
    local path = dir .. "/" .. rel
    local st = file.stat(path, true)
    local mode = st and st.type
    if mode == "directory" then
      for _, entry in ipairs(file.list(path) or {}) do
        if entry:sub(1, 1) ~= "." then walk(dir, rel .. "/" .. entry) end
      end
    elseif mode == "file" and not seen[rel] then
      seen[rel] = true
      local text, origin = loader.find(rel)
      if text and origin ~= "embedded" and text ~= embedded.get(rel) then
        files[#files + 1] = { name = "path/" .. rel, data = text, local_path = origin }
      end
    end
  end
  for _, dir in ipairs(loader.dirs) do
    for _, top in ipairs { "modules", "profiles", "templates", "lua" } do walk(dir, top) end
  end
  table.sort(files, function(a, b) return a.name < b.name end)
  return files
end

-- The command the remote phanes would run ("apply", "status", ...), of
-- its argv (options.forward's): nil when it names none.
function M.command_word(rest)
  local p = options.parse(rest)
  return p and (p.explicit or p.cmd ~= "help") and p.cmd or nil
end

-- remote.main(p) -> exit code: p, the parsed command line with --remote.
function M.main(p)
  local o, oerr = M.options(p)
  if not o then err(oerr) return EXIT.usage end
  local rest = options.forward(p)
  local inventory = require "phanes.remote.inventory"
  local inv, ierr = inventory.load()
  if not inv then err(ierr) return EXIT.usage end
  local sshcfg, serr = require("phanes.remote.sshconfig").load()
  if not sshcfg then err(serr) return EXIT.usage end
  local targets, terr = inventory.resolve(inv, o.target, sshcfg, { port = o.port })
  if not targets then err(terr) return EXIT.usage end
  if p.cmd == "status" then return require("phanes.remote.status").main(targets, o, p) end
  if require("phanes.remote.fleet").is_fleet(o.target, targets) then return require("phanes.remote.fleet").main(targets, o, rest) end
  local args, files, sets = rewrite_args(rest)
  if not args then err(files) return EXIT.usage end
  local lok, lerr = require("phanes.config.layers").remote_files(targets[1].name, files, inv, rest) -- the host's own config
  if not lok then err(lerr) return EXIT.usage end
  for _, f in ipairs(M.user_files()) do files[#files + 1] = f end
  local sys = require "phanes.sys"
  local ov = M.overrides(sets, M.env_overrides(sys.environ(), o), nil, true)
  -- values resolved from the vault for this host (layers.remote_files): masked here too
  for _, v in ipairs(require("phanes.vault").resolved_values()) do ov.secrets[#ov.secrets + 1] = v end
  -- PHANES_* settings go to the commands that read a config; --set values
  -- always (a command that takes none says so, as it would here)
  local reads_config = p.cmd == "apply" or p.cmd == "check"
  if ov.file and (reads_config or #sets > 0) then files[#files + 1] = ov.file end
  sys.trap_signals()
  return require("phanes.remote.run").run(targets[1], o, args, files, ov)
end

return M
