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
local schema = require "phanes.config.schema"

local M = {}

-- Top-level keys the core itself owns.
M.CORE = {
  state_path = { type = "string", default = "/var/lib/phanes/state.json", format = "path",
    description = "Where phanes keeps its state file (what it installed, and when)." },
  apt_cache_max_age = { type = "integer", default = 3600, min = 0,
    description = "Seconds before the apt package lists count as old and apt-get update runs." },
}

M.MASK = require("phanes.engine.output").MASK

local function as_list(mods)
  local out = {}
  if not mods then return out end
  if schema.is_list(mods) then
    for _, m in ipairs(mods) do out[#out + 1] = m end
  else
    for _, k in ipairs(schema.sorted_keys(mods)) do out[#out + 1] = mods[k] end
  end
  return out
end

local function module_where(m)
  local name = type(m) == "table" and type(m.name) == "string" and m.name or "?"
  local origin = type(m) == "table" and (m.origin or m.path)
  if type(origin) == "string" and origin ~= "embedded" then return origin .. " (module '" .. name .. "')" end
  return "module '" .. name .. "'"
end

------------------------------------------------------------------------
-- The world: every known key, built from the modules' declarations.

-- world(modules, known) -> world | nil, errors. world.fields is the schema
-- of the whole config (globals and one map per module section).
local function build_world(modules, known, check)
  local errs = {}
  local w = { fields = {}, sections = {}, globals = {}, in_run = {}, run_globals = {} }
  local mods, seen = {}, {}
  for _, m in ipairs(as_list(modules)) do
    if type(m) == "table" and type(m.name) == "string" then w.in_run[m.name] = true end
    mods[#mods + 1] = m
  end
  for _, m in ipairs(as_list(known)) do mods[#mods + 1] = m end

  for name, decl in pairs(M.CORE) do
    w.globals[name] = { decl = decl, owner = "phanes" }
    w.run_globals[name] = true
  end
  for _, m in ipairs(mods) do
    local where = module_where(m)
    if type(m) ~= "table" or type(m.name) ~= "string" or m.name == "" then
      errs[#errs + 1] = where .. ": a module needs a name"
    elseif not seen[m] then
      seen[m] = true
      local before = #errs
      for _, part in ipairs { "config", "globals" } do
        local decls = m[part]
        if decls ~= nil and type(decls) ~= "table" then
          errs[#errs + 1] = where .. ": " .. part .. " must be a table of declarations"
        elseif decls and check then
          for _, k in ipairs(schema.sorted_keys(decls)) do
            if type(k) ~= "string" then
              errs[#errs + 1] = where .. ": " .. part .. ": keys must be names"
            else
              schema.check_decl(decls[k], where .. ": " .. part .. "." .. k, errs)
            end
          end
        end
      end
      if #errs == before then
        if w.sections[m.name] and w.sections[m.name] ~= m then
          -- the same module in the run and in known: the run's copy wins
          if not w.in_run[m.name] then errs[#errs + 1] = where .. ": two modules named '" .. m.name .. "'" end
        else
          w.sections[m.name] = m
          w.fields[m.name] = { type = "map", fields = m.config or {} }
        end
        for _, g in ipairs(schema.sorted_keys(m.globals or {})) do
          local decl = m.globals[g]
          local have = w.globals[g]
          if have then
            local same, what = schema.same(have.decl, decl)
            if not same and check then
              errs[#errs + 1] = string.format("global '%s' is declared differently by %s and %s (%s)",
                g, have.owner == "phanes" and "phanes itself" or "module '" .. have.owner .. "'",
                "module '" .. m.name .. "'", what)
            end
          else
            w.globals[g] = { decl = decl, owner = m.name }
          end
          if w.in_run[m.name] then w.run_globals[g] = true end
        end
      end
    end
  end
  for g, entry in pairs(w.globals) do
    if w.sections[g] then
      if check then
        errs[#errs + 1] = string.format("global '%s' (declared by %s) has the name of module '%s'",
          g, entry.owner == "phanes" and "phanes itself" or "module '" .. entry.owner .. "'", g)
      end
    else
      w.fields[g] = entry.decl
    end
  end
  if #errs > 0 and check then
    table.sort(errs)
    errs.kind = "module"
    return nil, errs
  end
  return w
end

------------------------------------------------------------------------
-- Errors, sorted by source (defaults, file, env, --set), then position.

local RANK = { module = 0, defaults = 1, file = 2, env = 3, set = 4, final = 5 }

local function new_errors()
  local list = {}
  local E = {}
  function E.add(rank, line, col, msg)
    list[#list + 1] = { rank = rank, line = line or 0, col = col or 0, seq = #list, msg = msg }
  end
  function E.count() return #list end
  function E.result()
    table.sort(list, function(a, b)
      if a.rank ~= b.rank then return a.rank < b.rank end
      if a.line ~= b.line then return a.line < b.line end
      if a.col ~= b.col then return a.col < b.col end
      return a.seq < b.seq
    end)
    local out, seen = {}, {}
    for _, e in ipairs(list) do
      if not seen[e.msg] then
        seen[e.msg] = true
        out[#out + 1] = e.msg
      end
    end
    return out
  end
  return E
end

------------------------------------------------------------------------
-- Layers.

local function mark_of(layer, parent, key)
  local m = layer.marks and parent ~= nil and layer.marks[parent]
  local k = m and m.keys and m.keys[key]
  if k then return k.line, k.col end
end

-- Key order of a YAML mapping: document order when marks say it.
local function doc_order(layer)
  return function(tbl)
    local keys = schema.sorted_keys(tbl)
    local m = layer.marks and layer.marks[tbl]
    if m and m.keys then
      local pos = {}
      for i, k in ipairs(keys) do
        local at = m.keys[k]
        pos[k] = at and at.line * 100000 + at.col or 1e12 + i
      end
      table.sort(keys, function(a, b) return pos[a] < pos[b] end)
    end
    return keys
  end
end

-- Where a key sits in the world (for a misplaced top-level key).
local function elsewhere(world)
  return function(path, key)
    if path ~= "" then return nil end
    local homes = {}
    for name, m in pairs(world.sections) do
      if m.config and m.config[key] then homes[#homes + 1] = name end
    end
    table.sort(homes)
    if #homes == 0 then return nil end
    return "it is a key of '" .. homes[1] .. "'; put it under '" .. homes[1] .. ":'"
  end
end

-- validate(layer, world, E) -> normalized table, origins
local function validate(layer, world, E, bad)
  local origins = {}
  local ctx = { coerce = layer.coerce, elsewhere = elsewhere(world) }
  function ctx.report(path, msg, parent, key)
    local line, col = mark_of(layer, parent, key)
    local loc = layer.name
    if line then loc = string.format("%s:%d:%d", layer.name, line, col) end
    local prefix = ""
    if path and path ~= layer.path then prefix = path .. ": " end
    if path then bad[path] = true end
    E.add(RANK[layer.kind], line or layer.line, col, loc .. ": " .. prefix .. msg)
  end
  function ctx.origin(path, parent, key)
    if path:find("[", 1, true) then return end -- list items: the list has it
    local line, col = mark_of(layer, parent, key)
    origins[path] = line and string.format("%s:%d:%d", layer.name, line, col) or layer.name
  end
  if layer.marks then ctx.order = doc_order(layer) end
  return schema.check_fields(layer.data, world.fields, "", ctx), origins
end

local function merge(acc, v, decl)
  if v == nil then return acc end
  local function is_map(x) return type(x) == "table" and not (schema.is_list(x) and next(x) ~= nil) end
  if is_map(v) and is_map(acc) and (decl == nil or decl.type == "map") then
    local out = {}
    for k, x in pairs(acc) do out[k] = x end
    for k, x in pairs(v) do
      out[k] = merge(acc[k], x, decl and decl.fields and decl.fields[k] or nil)
    end
    return out
  end
  return v
end

-- Builds { a = { b = value } } from "a.b".
local function nest(path, value)
  local parts = {}
  for p in (path .. "."):gmatch "([^.]*)%." do parts[#parts + 1] = p end
  local root = value
  for i = #parts, 1, -1 do root = { [parts[i]] = root } end
  return root
end

-- PHANES_POSTGRES_VERSION -> { "postgres.version" } for every known path.
local function env_names(fields, prefix, out)
  for name, decl in pairs(fields) do
    local path = prefix and prefix .. "." .. name or name
    if decl.type == "map" then
      if decl.fields then env_names(decl.fields, path, out) end
    else
      local env = "PHANES_" .. path:upper():gsub("[^%w]", "_")
      out[env] = out[env] or {}
      table.insert(out[env], path)
    end
  end
  return out
end

local function env_layers(world, env, E, warnings)
  local layers = {}
  if not env then return layers end
  local names = env_names(world.fields, nil, {})
  local all = {}
  for n in pairs(names) do all[#all + 1] = n end
  for _, var in ipairs(schema.sorted_keys(env)) do
    local value = env[var]
    if type(var) == "string" and var:match "^PHANES_" and type(value) == "string" then
      local paths = names[var]
      if paths and #paths > 1 then
        table.sort(paths)
        E.add(RANK.env, 0, 0, var .. ": matches several keys (" .. table.concat(paths, ", ") ..
          "); use --set " .. paths[1] .. "=... instead")
      elseif paths then
        layers[#layers + 1] = { kind = "env", name = var, path = paths[1], coerce = true,
          data = nest(paths[1], value) }
      else
        local hint = schema.suggest(var, all)
        if hint then
          warnings[#warnings + 1] = var .. " is not a config key and is ignored (did you mean " .. hint .. "?)"
        end
      end
    end
  end
  return layers
end

local function set_layers(sets, E)
  local layers = {}
  for i, s in ipairs(sets or {}) do
    local path, value = tostring(s):match "^([^=]*)=(.*)$"
    path = path and path:match "^%s*(.-)%s*$"
    if not path or path == "" then
      E.add(RANK.set, i, 0, "--set " .. tostring(s) .. ": expected KEY=VALUE, like --set postgres.version=16")
    else
      layers[#layers + 1] = { kind = "set", name = "--set " .. path, path = path, coerce = true, line = i,
        data = nest(path, value) }
    end
  end
  return layers
end

-- The file layer: reads and decodes the YAML (or takes opts.data/marks).
local function file_layer(opts, E)
  if not (opts.path or opts.text or opts.data) then return nil end
  local name = opts.path or opts.name or "config.yaml"
  local data, marks = opts.data, opts.marks
  if data == nil then
    local text = opts.text
    if not text then
      local f, err = io.open(opts.path, "rb")
      if not f then
        E.add(RANK.file, 0, 0, err .. " (give the config file with --config FILE)")
        return nil
      end
      text = f:read "a"
      f:close()
    end
    local yaml = require "phanes.yaml"
    data, marks = yaml.decode(text, name)
    if data == nil and type(marks) == "string" then
      E.add(RANK.file, 0, 0, marks)
      return nil
    end
  end
  if data == nil then data = {} end
  if type(data) ~= "table" or (schema.is_list(data) and next(data) ~= nil) then
    local m = type(marks) == "table" and marks[data]
    local at = m and string.format("%s:%d:%d", name, m.line, m.col) or name
    E.add(RANK.file, 0, 0, at .. ": expected a map of settings (key: value), got " .. schema.kind(data))
    return nil
  end
  return { kind = "file", name = name, data = data, marks = type(marks) == "table" and marks or nil }
end

------------------------------------------------------------------------
-- Defaults and required keys, once all layers are merged.

-- Where the nearest existing ancestor of a path stands in the file.
local function file_position(file, parts)
  if not file then return nil end
  local t, line, col = file.data, nil, nil
  for _, p in ipairs(parts) do
    if type(t) ~= "table" then break end
    local l, c = mark_of(file, t, p)
    if t[p] == nil then break end
    if l then line, col = l, c end
    t = t[p]
  end
  return line, col
end

local function finalize(tbl, fields, path, parts, required, env)
  for _, k in ipairs(schema.sorted_keys(fields)) do
    local decl = fields[k]
    local sub = path == "" and k or path .. "." .. k
    local subparts = { table.unpack(parts) }
    subparts[#subparts + 1] = k
    local top = path == ""
    local section = top and env.world.sections[k]
    -- a module not in this run and not configured gets no section
    local skip = section and not env.world.in_run[k] and tbl[k] == nil
    if not skip and tbl[k] == nil then
      if decl.default ~= nil then
        tbl[k] = schema.copy(decl.default)
        env.origins[sub] = env.origins[sub] or "default"
      elseif decl.type == "map" and decl.fields then
        tbl[k] = {}
      elseif decl.required and required and (not top or env.world.run_globals[k]) then
        env.missing(sub, parts)
      end
    end
    local v = tbl[k]
    local req = required and (not section or env.world.in_run[k])
    if type(v) == "table" and decl.type == "map" and decl.fields then
      finalize(v, decl.fields, sub, subparts, req, env)
    elseif type(v) == "table" and decl.type == "list" and decl.items and decl.items.type == "map"
      and decl.items.fields then
      for i, item in ipairs(v) do
        local ip = { table.unpack(subparts) }
        ip[#ip + 1] = i
        finalize(item, decl.items.fields, string.format("%s[%d]", sub, i), ip, req, env)
      end
    end
  end
end

------------------------------------------------------------------------
-- Module checks: each module of the run may have validate(section, v), for
-- what a schema cannot say (one field against another, a size that must
-- parse, a time zone that must exist). v = { config = the whole config,
-- target = { exists = function(path) } or nil, error = function(path, msg) }
-- where path is the full key ("swap.size", "timezone"). `target` is there
-- when the machine that loads the config is the one the run changes (a
-- local run, or the remote side of --remote): checks that need the target
-- are skipped without it.

local function origin_rank(at)
  if at:match ":%d+:%d+$" or at == "config.yaml" then return RANK.file end
  if at:match "^PHANES_" then return RANK.env end
  if at:match "^%-%-set " then return RANK.set end
  return RANK.defaults
end

local function hook_reporter(m, origins, E)
  return function(path, msg)
    if type(path) ~= "string" or type(msg) ~= "string" then
      error(module_where(m) .. ": validate: error(path, message) takes two strings", 2)
    end
    local at = origins[path]
    if not at then
      local top = path:match "^[^.%[]+"
      at = top and origins[top] or "config"
    end
    local line, col = at:match ":(%d+):(%d+)$"
    local text
    if at == "default" then text = path .. ": " .. msg .. " (the default)"
    elseif at:match "^PHANES_" or at:match "^%-%-set " then text = at .. ": " .. msg
    else text = at .. ": " .. path .. ": " .. msg end
    E.add(origin_rank(at), tonumber(line), tonumber(col), text)
  end
end

local function hook_blocked(m, bad)
  for p in pairs(bad) do
    local top = p:match "^[^.%[]+"
    if top == m.name or (type(m.globals) == "table" and m.globals[top]) then return true end
  end
  return false
end

-- A known module outside the run is checked too when the config sets its
-- section or one of its globals (a fleet-wide config.yaml checked on its own).
local function configured(m, cfg, origins)
  if cfg[m.name] ~= nil then return true end
  for g in pairs(type(m.globals) == "table" and m.globals or {}) do
    if origins[g] and origins[g] ~= "default" then return true end
  end
  return false
end

local function section_of(m, cfg)
  if cfg[m.name] ~= nil then return cfg[m.name] end
  local out = {}
  for k, d in pairs(type(m.config) == "table" and m.config or {}) do out[k] = schema.copy(d.default) end
  return out
end

local function run_hooks(opts, cfg, origins, bad, E)
  local mods, seen = {}, {}
  for _, m in ipairs(as_list(opts.modules)) do mods[#mods + 1] = m; seen[m] = true end
  for _, m in ipairs(as_list(opts.known)) do
    if type(m) == "table" and not seen[m] and configured(m, cfg, origins) then mods[#mods + 1] = m end
  end
  for _, m in ipairs(mods) do
    if type(m) == "table" and type(m.validate) == "function" and not hook_blocked(m, bad) then
      local v = { config = cfg, target = opts.target, error = hook_reporter(m, origins, E) }
      local ok, err = pcall(m.validate, section_of(m, cfg), v)
      if not ok then
        E.add(RANK.module, 0, 0, module_where(m) .. ": validate failed: " .. tostring(err))
      end
    end
  end
end

------------------------------------------------------------------------

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
  local world, werrs = build_world(opts.modules, opts.known, true)
  if not world then return nil, werrs end
  local E = new_errors()
  local warnings = {}
  local layers = {}
  if opts.defaults ~= nil then
    if type(opts.defaults) ~= "table" then
      E.add(RANK.defaults, 0, 0, (opts.defaults_name or "profile defaults") .. ": config defaults must be a table")
    else
      layers[#layers + 1] = { kind = "defaults", name = opts.defaults_name or "profile defaults", data = opts.defaults }
    end
  end
  local file = file_layer(opts, E)
  require("phanes.vault").wire(file, { env = opts.env, config = opts.path, password_file = opts.vault_password_file },
    function(msg) E.add(RANK.file, 0, 0, msg) end) -- `!vault KEY` values, the `vault:` key
  layers[#layers + 1] = file
  for _, l in ipairs(opts.layers or {}) do -- a host's group vars, host vars, vault block (phanes.config.layers)
    require("phanes.vault").wire(l, { env = opts.env, config = opts.path, password_file = opts.vault_password_file,
      file = l.vault_file },
      function(msg) E.add(RANK.file, 0, 0, msg) end)
    layers[#layers + 1] = l
  end
  for _, l in ipairs(env_layers(world, opts.env, E, warnings)) do layers[#layers + 1] = l end
  for _, l in ipairs(set_layers(opts.sets, E)) do layers[#layers + 1] = l end

  -- a file that could not be read or parsed: its keys count as unknown,
  -- not missing
  local file_failed = E.count() > 0 and (opts.path or opts.text or opts.data) and not file
  local root_decl = { type = "map", fields = world.fields }
  local cfg, origins, bad = {}, {}, {}
  for _, layer in ipairs(layers) do
    local v, o = validate(layer, world, E, bad)
    cfg = merge(cfg, v, root_decl)
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
    local line, col = file_position(file, parts)
    local loc = line and string.format("%s:%d:%d", file.name, line, col) or (file and file.name or "config")
    local how
    if path:find "%[" then how = "set it in " .. file_name
    else how = "set it in " .. file_name .. " or with --set " .. path .. "=..." end
    E.add(RANK.final, line, col, loc .. ": " .. path .. ": required (" .. how .. ")")
    bad[path] = true
  end
  finalize(cfg, world.fields, "", {}, true, { world = world, origins = origins, missing = missing })
  if not file_failed then run_hooks(opts, cfg, origins, bad, E) end

  if E.count() > 0 then return nil, E.result() end
  return cfg, { origin = origins, warnings = warnings, file = file and file.name }
end

------------------------------------------------------------------------
-- Secrets.

local function root_fields(modules)
  local world = build_world(modules, nil, false)
  return world and world.fields or {}
end

local function leaves(v, out)
  if type(v) == "table" then
    for _, k in ipairs(schema.sorted_keys(v)) do leaves(v[k], out) end
  elseif type(v) == "string" or type(v) == "number" then
    out[#out + 1] = type(v) == "number" and tostring(v) or v
  end
end

local function walk_secrets(v, decl, out)
  if v == nil or type(decl) ~= "table" then return end
  if decl.secret then return leaves(v, out) end
  if type(v) ~= "table" then return end
  if decl.type == "map" and type(decl.fields) == "table" then
    for k, d in pairs(decl.fields) do walk_secrets(v[k], d, out) end
  elseif decl.type == "list" and decl.items then
    for _, item in ipairs(v) do walk_secrets(item, decl.items, out) end
  end
end

-- config.secrets(cfg, modules) -> list of the secret values in cfg (fields
-- declared secret), longest first, no duplicates, no empty strings: what
-- output must mask.
-- Example: local mask = output.masker(config.secrets(cfg, mods)); print(mask(line))
function M.secrets(cfg, modules)
  local found = {}
  walk_secrets(cfg, { type = "map", fields = root_fields(modules) }, found)
  local seen, out = {}, {}
  for _, s in ipairs(found) do
    if s ~= "" and not seen[s] then
      seen[s] = true
      out[#out + 1] = s
    end
  end
  table.sort(out, function(a, b)
    if #a ~= #b then return #a > #b end
    return a < b
  end)
  return out
end

-- config.mask(cfg, modules) -> a deep copy of cfg with every secret field's
-- value replaced by "******" (output.mask_fields: masking lives there).
-- Example: print(json.encode(config.mask(cfg, mods)))
function M.mask(cfg, modules)
  return require("phanes.engine.output").mask_fields(cfg, { type = "map", fields = root_fields(modules) })
end

------------------------------------------------------------------------
-- Hash.

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

------------------------------------------------------------------------
-- Description (config.yaml.example, `phanes list -v`).

local function yaml_scalar(v)
  if type(v) == "string" then
    return '"' .. v:gsub('[\\"]', "\\%0"):gsub("\n", "\\n") .. '"'
  end
  if type(v) == "table" then
    local parts = {}
    if schema.is_list(v) then
      for i, x in ipairs(v) do parts[i] = yaml_scalar(x) end
      return "[" .. table.concat(parts, ", ") .. "]"
    end
    for _, k in ipairs(schema.sorted_keys(v)) do parts[#parts + 1] = tostring(k) .. ": " .. yaml_scalar(v[k]) end
    return "{" .. table.concat(parts, ", ") .. "}"
  end
  if math.type(v) == "float" and v == math.floor(v) then return string.format("%.1f", v) end
  return tostring(v)
end

local function describe_fields(fields, indent, path, module, lines, rows)
  for _, k in ipairs(schema.sorted_keys(fields)) do
    local d = fields[k]
    local sub = path and path .. "." .. k or k
    local kind = d.type
    if d.type == "enum" then kind = "one of " .. schema.expected(d):gsub("^one of ", "") end
    if d.type == "list" and d.items then kind = "list of " .. d.items.type end
    local attrs = { kind }
    if d.required then attrs[#attrs + 1] = "required" end
    if d.secret then attrs[#attrs + 1] = "secret" end
    local default = d.default
    if d.secret and default ~= nil then default = M.MASK end
    rows[#rows + 1] = { path = sub, module = module, type = d.type, default = default,
      required = d.required or false, secret = d.secret or false, description = d.description }
    if d.description then lines[#lines + 1] = indent .. "# " .. d.description end
    lines[#lines + 1] = indent .. "# " .. k .. ": " .. table.concat(attrs, ", ")
    if d.type == "map" and d.fields then
      lines[#lines + 1] = indent .. k .. ":"
      describe_fields(d.fields, indent .. "  ", sub, module, lines, rows)
    elseif d.default ~= nil then
      lines[#lines + 1] = indent .. k .. ": " .. (d.secret and '"' .. M.MASK .. '"' or yaml_scalar(d.default))
    else
      lines[#lines + 1] = indent .. "# " .. k .. ":" .. (d.required and " (required, no default)" or "")
    end
  end
end

-- config.describe(modules) -> text, rows: a commented config.yaml with every
-- key (type, default, required, secret, description), and the same as rows
-- { path, module, type, default, required, secret, description }.
-- Example: io.write((config.describe(all_modules)))
function M.describe(modules)
  local world = build_world(modules, nil, false) or { globals = {}, sections = {} }
  local lines, rows = { "# phanes configuration: every key, its type and its default." }, {}
  local globals = {}
  for g, e in pairs(world.globals) do
    if not world.sections[g] then globals[g] = e.decl end
  end
  lines[#lines + 1] = ""
  describe_fields(globals, "", nil, nil, lines, rows)
  for _, name in ipairs(schema.sorted_keys(world.sections)) do
    local m = world.sections[name]
    lines[#lines + 1] = ""
    lines[#lines + 1] = "# " .. name .. (m.description and ": " .. m.description or "")
    if m.config and next(m.config) then
      lines[#lines + 1] = name .. ":"
      describe_fields(m.config, "  ", name, name, lines, rows)
    else
      lines[#lines + 1] = "# " .. name .. ": (no settings)"
    end
  end
  for _, r in ipairs(rows) do
    if not r.module then r.module = world.globals[r.path:match "^[^.]+"].owner end
  end
  return table.concat(lines, "\n") .. "\n", rows
end

return M
