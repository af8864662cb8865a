-- config.lua: the run's configuration — config file, profile defaults,
-- `PHANES_*` environment and `--set`, validated against module schemas.
--
-- Precedence, lowest first: schema default < profile defaults < config file
-- < environment (PHANES_POSTGRES_VERSION) < --set postgres.version=16.
-- Maps merge key by key; lists and scalars replace.
--
-- Every error is collected (not just the first) and says where the value
-- came from:
--   config.yaml:14:3: postgres.version: expected a string, got an integer
--   config.yaml:3:1: unknown key 'postgress' (did you mean 'postgres'?)
--   --set postgres.port: expected an integer, got "abc"
--   PHANES_POSTGRES_PORT: expected an integer, got "abc"
--   config.yaml: redis.password: required (set it in config.yaml or with --set redis.password=...)
-- Secret values never appear in messages.
--
-- The parts live in config/: world.lua (every known key), sources.lua (the
-- layers and the error list), checks.lua (defaults, required keys, module
-- hooks), secrets.lua, hash.lua, describe.lua, schema.lua (one value
-- against its declaration) and layers.lua (a host's own layers).
local sources = require "phanes.config.sources"
local checks = require "phanes.config.checks"
local world = require "phanes.config.world"
local secrets = require "phanes.config.secrets"
local hash = require "phanes.config.hash"

local M = {}

M.CORE = world.CORE
M.MASK = require("phanes.engine.output").MASK
M.secrets, M.mask = secrets.secrets, secrets.mask
M.hash, M.hash_key, M.canonical = hash.hash, hash.hash_key, hash.canonical

-- config.describe(modules) -> text, rows (config/describe.lua)
function M.describe(modules) return require("phanes.config.describe").describe(modules) end

local RANK = sources.RANK

-- config.load(opts) -> cfg, info | nil, errors
-- opts: path = "config.yaml" (nil: no file), text (instead of reading path),
--   data + marks (an already decoded document), modules = { module tables in
--   the run }, known = { every known module (their sections are checked too) },
--   defaults = { nested profile defaults }, defaults_name = "profiles/dev.lua",
--   sets = { "postgres.version=16", ... }, env = { NAME = value },
--   target = { exists = function(path) } when this machine is the target
--   (module checks that look at the target run only then).
--   layers = { { kind = "file", name, data, marks }, ... } between the file
--   and the environment (a host's group and host vars: phanes.config.layers).
-- cfg: globals and one table per module in the run (cfg.redis), defaults applied.
-- info: { origin = { ["postgres.version"] = "config.yaml:14:3" | "--set postgres.version"
--   | "PHANES_..." | "profile defaults" | "default" }, warnings = { ... } }.
-- errors: a list of messages (errors.kind == "module" for bad declarations).
-- Example:
--   local cfg, info = config.load{ path = "config.yaml", modules = mods, known = all,
--     sets = { "redis.bind=0.0.0.0" }, env = sys.environ() }
--   if not cfg then for _, e in ipairs(info) do io.stderr:write(e, "\n") end end
function M.load(opts)
  opts = opts or {}
  local w, werrs = world.build(opts.modules, opts.known, true)
  if not w then return nil, werrs end
  local E = sources.errors()
  local warnings = {}
  local layers = {}
  if opts.defaults ~= nil then
    if type(opts.defaults) ~= "table" then
      E.add(RANK.defaults, 0, 0, (opts.defaults_name or "profile defaults") .. ": config defaults must be a table")
    else
      layers[#layers + 1] = { kind = "defaults", name = opts.defaults_name or "profile defaults", data = opts.defaults }
    end
  end
  local file = sources.file(opts, E)
  require("phanes.vault").wire(file, { env = opts.env, config = opts.path, password_file = opts.vault_password_file,
    host = opts.vault_host },
    function(msg) E.add(RANK.file, 0, 0, msg) end) -- `!vault KEY` values, the `vault:` key
  layers[#layers + 1] = file
  for _, l in ipairs(opts.layers or {}) do -- a host's group vars, host vars, vault block (phanes.config.layers)
    require("phanes.vault").wire(l, { env = opts.env, config = opts.path, password_file = opts.vault_password_file,
      file = l.vault_file, host = opts.vault_host },
      function(msg) E.add(RANK.file, 0, 0, msg) end)
    layers[#layers + 1] = l
  end
  for _, l in ipairs(sources.env(w, opts.env, E, warnings)) do layers[#layers + 1] = l end
  for _, l in ipairs(sources.sets(opts.sets, E)) do layers[#layers + 1] = l end

  -- a file that could not be read or parsed: its keys count as unknown,
  -- not missing
  local file_failed = E.count() > 0 and (opts.path or opts.text or opts.data) and not file
  local root_decl = { type = "map", fields = w.fields }
  local cfg, origins, bad = {}, {}, {}
  for _, layer in ipairs(layers) do
    local v, o = sources.validate(layer, w, E, bad)
    cfg = sources.merge(cfg, v, root_decl)
    for p, where in pairs(o) do origins[p] = where end
  end

  local file_name = file and file.name or opts.path or "config.yaml"
  -- a key whose value was wrong is not also reported missing
  local function was_bad(path)
    local p = path
    while p do
      if bad[p] then return true end
      p = p:match "^(.*)[.%[]"
    end
    return false
  end
  local function missing(path, parts)
    if file_failed or was_bad(path) then return end
    local line, col = checks.file_position(file, parts)
    local loc = line and string.format("%s:%d:%d", file.name, line, col) or (file and file.name or "config")
    local how
    if path:find "%[" then how = "set it in " .. file_name
    else how = "set it in " .. file_name .. " or with --set " .. path .. "=..." end
    E.add(RANK.final, line, col, loc .. ": " .. path .. ": required (" .. how .. ")")
    bad[path] = true
  end
  checks.finalize(cfg, w.fields, "", {}, true, { world = w, origins = origins, missing = missing })
  if not file_failed then checks.hooks(opts, cfg, origins, bad, E) end

  if E.count() > 0 then return nil, E.result() end
  return cfg, { origin = origins, warnings = warnings, file = file and file.name }
end


return M
