-- serve/main.lua: `phanes serve`: the HTTP API, live run logs and the
-- dashboard, on phanes.http (libevent's evhttp). One process, one loop:
-- requests, children's output and signals are handled between steps; runs
-- are child processes of this binary (`phanes --remote T apply ...`).
--
--   phanes serve [--listen ADDR:PORT] [--token-file F] [--config F]
--                [--vault-password-file F] [--parallel N] [--max-body BYTES]
--                [--grace S] [--path DIR] [--tls-cert PEM --tls-key PEM]
--
-- SIGTERM/SIGINT: stop accepting, let runs finish for --grace seconds,
-- then interrupt them (SIGINT, SIGKILL 10 s later), exit 0.
local EXIT = require "phanes.cli.exit"
local M = {}

M.HELP = [[
usage: phanes serve [--listen ADDR:PORT] [--token-file F] [--config F] [--parallel N]
                    [--vault-password-file F] [--max-body BYTES] [--grace SECONDS]
                    [--path DIR] [--tls-cert PEM --tls-key PEM]

Serve the HTTP API (/api/...) and the dashboard (/) of phanes: list modules,
plan or apply them on hosts of the inventory, tail run logs.

  --listen ADDR:PORT   where to listen (default 127.0.0.1:8001)
  --token-file F       the bearer token (default ~/.config/phanes/serve.token,
                       created 0600 on first start)
  --config F           the config every run uses (as `phanes apply --config`),
                       merged for each host (group and host vars, the vault's
                       host block) as `phanes --remote HOST apply` does
  --vault-password-file F  the vault's password: for `!vault` values and host
                       blocks, and for installs with "secrets" (SSH credentials)
  --parallel N         runs at once (default 4); one per host
  --max-body BYTES     request body limit (default 65536; larger: 413)
  --grace SECONDS      on SIGTERM, how long runs may finish (default 30)
  --tls-cert PEM       serve HTTPS with this certificate chain ...
  --tls-key PEM        ... and this key (TLS 1.2 or later)

Every non-GET request, and every request when listening beyond loopback,
needs `Authorization: Bearer <token>`. API: GET /api/openapi.json.
]]

local VALUE = { listen = true, ["token-file"] = true, config = true, parallel = true, ["max-body"] = true,
  grace = true, path = true, color = true, ["tls-cert"] = true, ["tls-key"] = true, ["vault-password-file"] = true }

local function err(msg) io.stderr:write("phanes serve: ", msg, "\n") end

function M.parse(args)
  local o, i = { listen = "127.0.0.1:8001", parallel = 4, ["max-body"] = 65536, grace = 30, paths = {} }, 1
  while args[i] do
    local a = args[i]
    if a == "-h" or a == "--help" then o.help = true
    elseif a == "-v" or a == "--verbose" then o.verbose = true
    else
      local k, v = a:match "^%-%-([%w%-]+)=(.*)$"
      k = k or a:match "^%-%-([%w%-]+)$"
      if not k or not VALUE[k] then return nil, "unknown option " .. a end
      if not v then
        i = i + 1
        v = args[i]
        if not v then return nil, "--" .. k .. " needs a value" end
      end
      if k == "path" then o.paths[#o.paths + 1] = v else o[k] = v end
    end
    i = i + 1
  end
  for _, k in ipairs { "parallel", "max-body", "grace" } do
    local n = tonumber(o[k])
    if not n or n < (k == "grace" and 0 or 1) or n ~= math.floor(n) then
      return nil, "--" .. k .. ": expected a whole number, got '" .. tostring(o[k]) .. "'"
    end
    o[k] = n
  end
  local addr, port = o.listen:match "^%[([^%]]+)%]:(%d+)$"
  if not addr then addr, port = o.listen:match "^([^:]+):(%d+)$" end
  port = tonumber(port)
  if not addr or not port or port > 65535 then
    return nil, "--listen: expected ADDR:PORT (e.g. 127.0.0.1:8001), got '" .. o.listen .. "'"
  end
  o.addr, o.port = addr, port
  if (o["tls-cert"] == nil) ~= (o["tls-key"] == nil) then
    return nil, "--tls-cert and --tls-key go together"
  end
  return o
end

function M.is_loopback(addr)
  return addr == "::1" or addr == "localhost" or addr:match "^127%.%d+%.%d+%.%d+$" ~= nil
end

-- The module document, as `phanes list --json` prints it.
local function modules_doc(o)
  local argv = { "/proc/self/exe" }
  for _, p in ipairs(o.paths) do argv[#argv + 1] = "--path"; argv[#argv + 1] = p end
  argv[#argv + 1] = "list"
  argv[#argv + 1] = "--json"
  local res, e = require("phanes.exec").run { argv = argv, timeout = 60 }
  if not res then return nil, e end
  local doc = res.code == 0 and require("phanes.json").decode(res.stdout)
  if type(doc) ~= "table" then return nil, "phanes list --json failed: " .. res.stderr end
  local known = {}
  for _, m in ipairs(doc.modules or {}) do known[m.name] = true end
  return doc, known
end

-- The variable a run's SSH password (from the vault) reaches it in.
local PASSWORD_ENV = "PHANES_SERVE_SSH_PASSWORD"

-- The command line of a run: this binary, through the CLI. A probe is
-- `phanes host test TARGET`; the rest `phanes --remote TARGET apply`.
-- keyfile(run): where a private key from the vault is written for it.
local function run_argv(o, keyfile)
  return function(run)
    local a = { "/proc/self/exe" }
    local function add(...) for _, w in ipairs { ... } do a[#a + 1] = w end end
    for _, p in ipairs(o.paths) do add("--path", p) end
    local ssh, cred = run.ssh or {}, run.cred or {}
    if run.probe then add("host", "test", run.target) else add("--remote", run.target) end
    if ssh.user and not run.probe then add("--user", ssh.user) end
    if ssh.port then add("--port", tostring(ssh.port)) end
    if cred.private_key then add("--key", keyfile(run))
    elseif ssh.identity then add("--key", ssh.identity) end
    if cred.password then add("--password-env", PASSWORD_ENV) end
    if ssh.connect_timeout then add("--timeout", tostring(ssh.connect_timeout)) end
    if run.probe then return a end
    add("apply", "--modules", table.concat(run.modules, ","))
    if run.dry_run then add("--dry-run", "--json") end
    if o.config then add("--config", o.config) end
    if o["vault-password-file"] then add("--vault-password-file", o["vault-password-file"]) end
    return a
  end
end

-- A run's environment: the server's, never prompting, with the request's
-- PHANES_* settings (ssh.env) and the credentials from the vault.
local function child_env(base, run)
  local env, seen = {}, {}
  local function put(k, v)
    if not seen[k] then seen[k] = true; env[#env + 1] = k .. "=" .. v end
  end
  local cred = run and run.cred or {}
  put("PHANES_NO_PROMPT", "1")
  if cred.password then put(PASSWORD_ENV, cred.password) end
  if cred.passphrase then put("PHANES_KEY_PASSPHRASE", cred.passphrase) end
  for k, v in pairs(run and run.ssh and run.ssh.env or {}) do put(k, v) end
  for k, v in pairs(base) do put(k, v) end
  table.sort(env)
  return env
end

-- secrets: { provider = "vault", key = K }: the vault value K (the host's
-- block over defaults) is the run's SSH password, or a map with password,
-- private_key (the key's text) and passphrase. The vault is opened once and
-- again only when its file changed.
local CRED_FIELDS = { password = true, private_key = true, passphrase = true }
local function secrets(o)
  local vault, F = require "phanes.vault", require "phanes.file"
  local settings = {}
  if o.config then
    local text = F.read(o.config)
    local data = text and require("phanes.yaml").decode(text, o.config)
    settings = vault.settings(type(data) == "table" and data.vault or nil)
  end
  local path = vault.locate { config = o.config, settings = settings }
  local cache = {}
  return function(key, host)
    local st = F.stat(path)
    if not st then return nil, 500, "secrets: no vault at " .. path .. " (the server's --config names where it is)" end
    local stamp = st.size .. ":" .. tostring(st.mtime)
    if cache.stamp ~= stamp then
      local env = require("phanes.sys").environ()
      if not (o["vault-password-file"] or env.PHANES_VAULT_PASSWORD_FILE or settings.password_command) then
        return nil, 500, "secrets: the server has no vault password: start it with --vault-password-file F"
      end
      local pw, perr = vault.password { file = o["vault-password-file"], env = env, command = settings.password_command }
      if not pw then return nil, 500, "secrets: " .. tostring(perr) end
      local doc, derr = vault.read_file(path, pw)
      if not doc then return nil, 500, "secrets: " .. tostring(derr) end
      cache.stamp, cache.doc = stamp, doc
    end
    local v, hint = vault.lookup(cache.doc, key, host)
    vault.audit { action = "secret_resolved", key = key, host = host, file = path, outcome = v ~= nil and "ok" or "missing" }
    if v == nil then
      return nil, 400, string.format("secrets.key: no key '%s' in the vault %s for host %s%s", key, path, host,
        hint and (" (" .. hint .. ")") or "")
    end
    if type(v) == "string" and v ~= "" then return { password = v } end
    if type(v) == "table" then
      local cred = {}
      for k, x in pairs(v) do
        if not CRED_FIELDS[k] or type(x) ~= "string" or x == "" then
          return nil, 400, "secrets.key: the vault's '" .. key .. "' has '" .. tostring(k)
            .. "': expected password, private_key and passphrase, each a string"
        end
        cred[k] = x
      end
      if cred.password or cred.private_key then return cred end
    end
    return nil, 400, "secrets.key: the vault's '" .. key .. "': expected a password or a map with password, "
      .. "private_key, passphrase"
  end
end

-- record_only: the host's record (last.json) says it was recorded with
-- these modules, at this time, by this server; nothing runs on it.
local function record_host(run)
  local now = os.date "!%Y-%m-%dT%H:%M:%SZ"
  local mods = {}
  for _, m in ipairs(run.modules) do mods[#mods + 1] = { name = m, status = "recorded" } end
  local rec = { host = run.host, target = run.target, status = "recorded", exit_code = 0, record_only = true,
    reason = "recorded by phanes serve (run " .. run.id .. ") without running anything", started_at = now,
    finished_at = now, modules = require("phanes.json").array(mods), changed = 0, failed = 0 }
  return require("phanes.remote.record").write(run.host, rec,
    { "recorded by phanes serve, run " .. run.id .. ": " .. table.concat(run.modules, ", ") })
end

local function resolver()
  local inventory = require "phanes.remote.inventory"
  return function(name)
    if name:sub(1, 1) == "@" or name:find(",", 1, true) then return nil, 400, "host: one host, not a group" end
    local inv, ierr = inventory.load()
    if not inv then return nil, 500, "inventory: " .. tostring(ierr) end
    local targets, rerr = inventory.resolve(inv, name, nil)
    if not targets then
      if tostring(rerr):match "^unknown host" then return nil, 404, rerr end
      return nil, 400, "host: " .. tostring(rerr)
    end
    return { name = targets[1].name }
  end
end

local function known_hosts(util)
  local inventory, F = require "phanes.remote.inventory", require "phanes.file"
  return function()
    local inv = inventory.load() or { hosts = {} }
    local out, seen = {}, {}
    for _, n in ipairs(inventory.names(inv)) do
      out[#out + 1] = { name = n, entry = inv.hosts[n] }
      seen[n] = true
    end
    for _, n in ipairs(F.list(util.state_home() .. "/hosts") or {}) do
      if not seen[n] then out[#out + 1] = { name = n } end
    end
    return out
  end
end

-- Everything the app needs, from the options.
function M.context(o, tok, doc, known, loopback)
  local util = require "phanes.remote.util"
  local sys = require "phanes.sys"
  local dir = util.state_home() .. "/serve/runs"
  local ok, derr = util.mkdir_p(dir)
  if not ok then return nil, "cannot create " .. dir .. ": " .. tostring(derr) end
  local ctx = { token = tok, loopback = loopback, modules_doc = doc, known = known, now = sys.now,
    version = require("phanes.loader").version, resolve_host = resolver(), hosts = known_hosts(util), secret = secrets(o),
    read_record = util.read_record, status_path = function(n) return util.host_dir(n) .. "/last.json" end,
    asset = function(name) return require("phanes.embedded").get("web/" .. name) end,
    log = function(line) io.stderr:write(line, "\n") end }
  local keys = util.state_home() .. "/serve/keys"
  local base = {}
  for k, v in pairs(sys.environ()) do
    if k ~= "PHANES_NO_PROMPT" and k ~= PASSWORD_ENV then base[k] = v end
  end
  local function keyfile(run) return keys .. "/" .. run.id .. ".key" end
  local F = require "phanes.file"
  local http = require "phanes.http"
  ctx.runs = require("phanes.serve.runs").new { parallel = o.parallel, dir = dir, argv = run_argv(o, keyfile),
    spawn = function(argv, run)
      if run and run.cred and run.cred.private_key then
        local kok, kerr = util.mkdir_p(keys)
        if kok then kok, kerr = F.write(keyfile(run), (run.cred.private_key:gsub("\r?\n?$", "\n")), { mode = tonumber("0600", 8) }) end
        if not kok then return nil, "cannot write the run's key into " .. keys .. ": " .. tostring(kerr) end
      end
      return http.spawn { argv = argv, env = child_env(base, run) }
    end,
    cleanup = function(run) if run.cred and run.cred.private_key then F.remove(keyfile(run)) end end,
    record = record_host, read_record = util.read_record, status_path = ctx.status_path }
  ctx.runs:load()
  return ctx
end

-- The loop's side of children: their pipes are watched; output goes to the run.
local function watcher(srv, ctx)
  local by_fd = {}
  ctx.runs.o.watch = function(child, run)
    for s = 1, 2 do
      local fd = child:fd(s)
      if fd and srv:watch(fd) then by_fd[fd] = { child = child, run = run, stream = s } end
    end
  end
  ctx.runs.o.unwatch = function(child)
    for s = 1, 2 do
      local fd = child:fd(s)
      if fd then
        srv:unwatch(fd)
        by_fd[fd] = nil
        child:close(s)
      end
    end
  end
  return function(fd)
    local w = by_fd[fd]
    if not w then return end
    local data = w.child:read(w.stream)
    if data == nil then
      srv:unwatch(fd)
      by_fd[fd] = nil
      w.child:close(w.stream)
    elseif data ~= "" then
      ctx.runs:on_output(w.run, w.stream, data)
    end
  end
end

local function serve(o, srv, ctx)
  local sys = require "phanes.sys"
  local app = require("phanes.serve.app").new(ctx)
  srv:handle(function(req, info) app:handle(req, info) end)
  local on_fd = watcher(srv, ctx)
  sys.trap_signals()
  local stopping = false
  -- the access log: one write per loop step, not one per request
  io.stderr:setvbuf "full"
  while true do
    local ready = srv:step(0.5)
    io.stderr:flush()
    for _, fd in ipairs(ready) do on_fd(fd) end
    ctx.runs:tick()
    local now = sys.now()
    app.api:heartbeat(now)
    if sys.interrupted() > 0 then
      if not stopping then
        stopping = true
        srv:stop_listening()
        err(string.format("stopping: %d run(s) may finish for %ds", ctx.runs.running, o.grace))
      end
      if ctx.runs:drain(now, o.grace) then break end
    end
  end
  app.api.last_beat = nil
  app.api:heartbeat(math.huge)
  err("stopped")
  io.stderr:flush()
  return EXIT.ok
end

function M.main(args)
  local o, perr = M.parse(args)
  if not o then
    err(perr)
    io.stderr:write("try: phanes serve --help\n")
    return EXIT.usage
  end
  if o.help then
    io.stdout:write(M.HELP)
    return EXIT.ok
  end
  local token = require "phanes.serve.token"
  local tpath = o["token-file"] or token.default_path()
  local tok, created = token.load(tpath, true)
  if not tok then
    err(created)
    return EXIT.usage
  end
  if created then err("created the token file " .. tpath .. " (mode 0600)") end
  local doc, known = modules_doc(o)
  if not doc then
    err("cannot list the modules: " .. tostring(known))
    return EXIT.usage
  end
  local http = require "phanes.http"
  local srv <close> = assert(http.server { max_body = o["max-body"], timeout = 120 })
  if o["tls-cert"] then
    local ok, terr = srv:tls(o["tls-cert"], o["tls-key"])
    if not ok then
      err(terr)
      return EXIT.usage
    end
  end
  local port, lerr = srv:listen(o.addr, o.port)
  if not port then
    err(lerr .. " (another server there? choose another with --listen)")
    return EXIT.connect
  end
  local loopback = M.is_loopback(o.addr)
  local ctx, cerr = M.context(o, tok, doc, known, loopback)
  if not ctx then
    err(cerr)
    return EXIT.usage
  end
  err(string.format("listening on %s://%s:%d/ (%s)", o["tls-cert"] and "https" or "http", o.addr:find ":" and ("[" .. o.addr .. "]") or o.addr, port,
    loopback and "loopback: GET without a token" or "not loopback: every request needs the token"))
  io.stderr:flush()
  return serve(o, srv, ctx)
end

return M
