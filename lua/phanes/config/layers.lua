-- layers.lua: a host's own config, from the layers that apply to it.
--
-- Precedence, lowest first (a later layer wins):
--   1. module defaults (and a profile's config defaults)
--   2. config.yaml
--   3. group vars, group by group: `all` first, then the host's groups in
--      the order the inventory lists them (`groups: [web, eu]`: eu wins
--      over web). For each group, group_vars/GROUP.yaml beside the config,
--      then `vars:` of the group in the inventory (`groups: {web: {vars: {...}}}`).
--   4. host vars: host_vars/NAME.yaml beside the config, then `vars:` of the
--      host in the inventory
--   5. the vault's host block (`hosts: {NAME: {...}}` in the vault plaintext)
--   6. PHANES_* environment variables
--   7. --set KEY=VALUE
-- Maps merge key by key, at any depth; a list or a scalar replaces.
--
--   local cfg, info = layers.load("web1", { config = "config.yaml", known = all, env = env })
--   info.origin["redis.port"] --> "group_vars/web.yaml:3:7"
--   layers.label(info.origin["redis.port"]) --> "group_vars/web.yaml:3"
local F = require "phanes.file"

local M = {}

local ENOENT, ENOTDIR = 2, 20

local function dirname(p)
  return p and p:match "^(.*)/[^/]*$" or nil
end

-- The files beside the config: "group_vars/web.yaml" when the config is in
-- the current directory, else DIR/group_vars/web.yaml.
local function beside(config, rel)
  local dir = dirname(config)
  if not config then return nil end
  return dir and (dir .. "/" .. rel) or rel
end

-- layers.groups(inv, name) -> the host's groups in merge order: "all",
-- then those the inventory lists on the host, in that order.
function M.groups(inv, name)
  local out, seen = { "all" }, { all = true }
  local h = inv and inv.hosts and inv.hosts[name]
  for _, g in ipairs(h and h.groups or {}) do
    if not seen[g] then seen[g] = true; out[#out + 1] = g end
  end
  return out
end

local function is_ref(v) return type(v) == "table" and v["!vault"] ~= nil end
local function is_map(v)
  return type(v) == "table" and not is_ref(v) and (next(v) == nil or v[1] == nil)
end

local function copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = copy(x) end
  return out
end

-- layers.merge(a, b) -> a new table: b over a; maps merge deeply, a list,
-- a scalar or a `!vault KEY` replaces.
function M.merge(a, b)
  if b == nil then return copy(a) end
  if not (is_map(a) and is_map(b)) then return copy(b) end
  local out = copy(a)
  for k, v in pairs(b) do out[k] = M.merge(a[k], v) end
  return out
end

-- A YAML file as a layer; absent: nil. -> layer | nil | false, err
local function file_layer(path)
  local text, err, code = F.read(path)
  if not text then
    if code == ENOENT or code == ENOTDIR then return nil end
    return false, "cannot read " .. path .. ": " .. tostring(err)
  end
  local data, marks = require("phanes.yaml").decode(text, path)
  if data == nil and type(marks) == "string" then return false, marks end
  if data == nil then data = {} end
  if not is_map(data) then
    return false, path .. ": expected a map of settings (key: value), like config.yaml"
  end
  return { kind = "file", name = path, data = data, marks = type(marks) == "table" and marks or nil }
end

local function vars_layer(vars, name)
  if vars == nil then return nil end
  if not is_map(vars) then return false, name .. ": expected a map of settings" end
  return { kind = "file", name = name, data = copy(vars) }
end

-- The vault, opened once per process; nil when there is no vault file.
local vaults = {}
local function vault_doc(o)
  local vault = require "phanes.vault"
  local path = vault.locate { config = o.config, settings = vault.settings(o.settings) }
  if vaults[path] ~= nil then return table.unpack(vaults[path]) end
  if not F.exists(path) then vaults[path] = { false } return false end
  local st = vault.settings(o.settings)
  local env = o.env or {}
  if o.no_prompt and not (o.vault_password_file or vault.password_file or env.PHANES_VAULT_PASSWORD_FILE
    or st.password_command or vault.handed_key(path)) then -- handed: a fleet's key, no password
    -- a fleet's hosts run side by side: one terminal cannot serve their prompts
    local err = path .. ": the vault needs its password and there is no terminal to ask on; give "
      .. "--vault-password-file F, PHANES_VAULT_PASSWORD_FILE or vault.password_command"
    vaults[path] = { nil, err }
    return nil, err
  end
  local doc, err = vault.open_once(path, { password_file = o.vault_password_file, env = o.env or {},
    settings = st })
  err = err and (err:sub(1, #path + 1) == path .. ":" and err or (path .. ": " .. err))
  vaults[path] = { doc or nil, err }
  return doc, err
end

-- layers.sources(name, o) -> { layer, ... } (between config.yaml and the
-- environment) | nil, errors
-- o: config = path of config.yaml (group_vars/ and host_vars/ sit beside
-- it), inventory = inv (phanes.remote.inventory), settings = the config's `vault:`
-- value, env, vault_password_file, no_vault = true to leave the vault out,
-- no_prompt = true to refuse (not ask) when no password source is given.
function M.sources(name, o)
  local out, errs = {}, {}
  local function add(l, err)
    if l then out[#out + 1] = l elseif l == false then errs[#errs + 1] = err end
  end
  local inv = o.inventory
  for _, g in ipairs(M.groups(inv, name)) do
    local gf = beside(o.config, "group_vars/" .. g .. ".yaml")
    if gf then add(file_layer(gf)) end
    local gv = inv and inv.groups and inv.groups[g]
    add(vars_layer(gv and gv.vars, "inventory @" .. g .. ".vars"))
  end
  local hf = beside(o.config, "host_vars/" .. name .. ".yaml")
  if hf then add(file_layer(hf)) end
  local h = inv and inv.hosts and inv.hosts[name]
  add(vars_layer(h and h.vars, "inventory " .. name .. ".vars"))
  if not o.no_vault then
    local doc, err = vault_doc(o)
    if doc then
      local block = doc.hosts and doc.hosts[name]
      require("phanes.vault").add_secret(block) -- masked like !vault values
      add(vars_layer(block, "vault hosts." .. name))
    elseif err then
      errs[#errs + 1] = err .. " (the vault's hosts." .. name .. " block is part of the host's config)"
    end
  end
  if #errs > 0 then return nil, errs end
  -- a `!vault KEY` in these files reads the vault config.yaml names
  local vfile = require("phanes.vault").locate { config = o.config, settings = require("phanes.vault").settings(o.settings) }
  for _, l in ipairs(out) do l.vault_file = vfile end
  return out
end

-- The config file, decoded once: { data, marks, name } | nil, err
local function read_config(o)
  if o.text == nil and not o.config then return { data = {}, name = nil } end
  local text = o.text
  if not text then
    local err
    text, err = F.read(o.config)
    if not text then return nil, "cannot read the config: " .. tostring(err) end
  end
  local data, marks = require("phanes.yaml").decode(text, o.config or "config.yaml")
  if data == nil and type(marks) == "string" then return nil, marks end
  return { data = data, marks = marks, name = o.config }
end

-- layers.load(name, o) -> cfg, info | nil, errors: config.load with the
-- host's layers. o: as config.load (modules, known, defaults, sets, env,
-- target) plus config (path), text, inventory, vault_password_file.
-- name nil: no host, the config as config.load gives it.
function M.load(name, o)
  local doc, err = read_config(o)
  if not doc then return nil, { err } end
  local extra = {}
  if name then
    local settings = type(doc.data) == "table" and doc.data.vault or nil
    local list, errs = M.sources(name, { config = o.config, inventory = o.inventory, settings = settings,
      env = o.env, vault_password_file = o.vault_password_file, no_vault = o.no_vault })
    if not list then return nil, errs end
    extra = list
  end
  local opts = {}
  for k, v in pairs(o) do opts[k] = v end
  opts.path, opts.text = o.config, nil
  if o.config or o.text then opts.data, opts.marks = doc.data, doc.marks end
  opts.name = o.config
  opts.layers = extra
  opts.vault_host = name -- `!vault KEY`: this host's block, and the audit log names it
  return require("phanes.config").load(opts)
end

-- layers.typed(data, refs): a `!vault KEY` value is text; where the field
-- it fills is a number or a boolean (in the modules phanes knows), it becomes
-- one, so the remote run's config reads as the local one does.
function M.typed(data, refs)
  if not refs or next(refs) == nil then return end
  local schema = require "phanes.config.schema"
  local w = require("phanes.config.world").build((require("phanes.engine.resolve").all()), nil, false)
  for path in pairs(refs) do
    local decl, parent, key = { type = "map", fields = w and w.fields or {} }, data, nil
    for part in path:gmatch "[^.]+" do
      decl = decl and decl.type == "map" and type(decl.fields) == "table" and decl.fields[part] or nil
      if key then parent = type(parent) == "table" and parent[key] or nil end
      key = part
    end
    local v = type(parent) == "table" and parent[key]
    if decl and type(v) == "string" and (decl.type == "integer" or decl.type == "number" or decl.type == "boolean") then
      local c = schema.coerce(v, decl)
      if c ~= nil then parent[key] = c end
    end
  end
end

-- layers.for_host(name, o) -> YAML text: config.yaml with the host's group
-- vars, host vars and vault block merged in (what a remote run of that
-- host gets as its config), its layers | nil, err. o: config (path), inventory,
-- vault_password_file, env. `!vault KEY` values stay references.
function M.for_host(name, o)
  local doc, err = read_config(o)
  if not doc then return nil, err end
  local list, errs = M.sources(name, { config = o.config, inventory = o.inventory,
    settings = type(doc.data) == "table" and doc.data.vault or nil, env = o.env,
    vault_password_file = o.vault_password_file, no_prompt = o.no_prompt })
  if not list then return nil, table.concat(errs, "\n") end
  if #list == 0 and o.text and not o.text:find("!vault", 1, true) then
    return o.text, list -- as it stands: its lines stay those of the file
  end
  local merged = type(doc.data) == "table" and copy(doc.data) or {}
  for _, l in ipairs(list) do merged = M.merge(merged, l.data) end
  -- `!vault KEY` values are resolved here, on the controller, for this
  -- host (the target has no vault): they travel in the run's root-only
  -- payload, and the controller masks them (vault.resolved_values)
  local errs = {}
  local layer = { data = merged, name = o.config or "config.yaml" }
  require("phanes.vault").wire(layer, { config = o.config,
    env = o.env, password_file = o.vault_password_file, host = name }, function(m) errs[#errs + 1] = m end)
  if #errs > 0 then return nil, table.concat(errs, "\n") end
  M.typed(merged, layer.vault_refs)
  return require("phanes.yaml").encode(merged), list
end

-- The names of a host's layers, files named beside the config (what a
-- fleet's summary shows): "group_vars/web.yaml", "vault hosts.web1", ...
local function layer_names(list, config)
  local dir, out = dirname(config), {}
  for i, l in ipairs(list or {}) do
    local n = l.name
    if dir and n:sub(1, #dir + 1) == dir .. "/" then n = n:sub(#dir + 2) end
    out[i] = n
  end
  return out
end

-- layers.remote_files(name, files, inv, args) -> true | nil, err: the run's
-- config file (files[i].name "config/...", as phanes.remote sends it) gets
-- the merged config of host `name` instead of config.yaml as it stands.
-- args: the remote command line (for --vault-password-file).
function M.remote_files(name, files, inv, args)
  local pwfile
  for i, a in ipairs(args or {}) do
    if a == "--vault-password-file" then pwfile = args[i + 1] end
    pwfile = a:match "^%-%-vault%-password%-file=(.*)$" or pwfile
  end
  for _, f in ipairs(files) do
    if f.name:match "^config/" and f.local_path then
      local text, list = M.for_host(name, { config = f.local_path, text = f.data, inventory = inv,
        env = require("phanes.sys").environ(), vault_password_file = pwfile, no_prompt = os.getenv "PHANES_NO_PROMPT" ~= nil })
      if not text then return nil, name .. ": " .. list end
      f.data, f.layers = text, layer_names(list, f.local_path)
    end
  end
  return true
end

------------------------------------------------------------------------
-- Origins, as `phanes config show --origin` prints them.

-- layers.label(origin, path, owners) -> "config.yaml:12", "env PHANES_X",
-- "--set", "default (module redis)", "vault hosts.web1", ...
-- owners: top-level key -> module name (or "phanes") for defaults.
function M.label(origin, path, owners)
  if origin == nil then return "" end
  local file, line, ref = origin:match "^(.-):(%d+):%d+( !vault .+)$"
  if not file then file, line = origin:match "^(.-):(%d+):%d+$" end
  if file then return file .. ":" .. line .. (ref or "") end
  if origin:match "^PHANES_" then return "env " .. origin end
  if origin:match "^%-%-set" then return "--set" end
  if origin == "default" then
    local top = path and path:match "^[^.%[]+"
    local owner = owners and top and owners[top]
    if owner == "phanes" then return "default (phanes)" end
    return "default (module " .. (owner or top or "?") .. ")"
  end
  return origin
end

-- The origin of a path: its own, else its nearest ancestor's.
function M.origin_of(origins, path)
  local p = path
  while p do
    if origins[p] then return origins[p], p end
    p = p:match "^(.*)[.%[]"
  end
end

return M
