-- config_cmd.lua: `phanes config show [HOST|@GROUP] [--origin] [--json]`
-- and `phanes check HOST|@GROUP [PROFILE]`: a host's merged config (see
-- phanes.config.layers for the layers and their order), secrets masked.
local layers = require "phanes.config.layers"
local output = require "phanes.engine.output"
local EXIT = require("phanes.cli").EXIT

local M = {}

local function environ() return require("phanes.sys").environ() end

-- M.hosts(spec) -> names | nil, err. "@web": every inventory host of the
-- group (sorted); "web1": that host (the inventory need not know it).
function M.hosts(spec)
  local inventory = require "phanes.remote.inventory"
  local inv, err = inventory.load()
  if not inv then return nil, err end
  if spec == nil then return {}, inv end
  local out = {}
  for item in spec:gmatch "[^,%s]+" do
    if item:sub(1, 1) == "@" then
      local g, any = item:sub(2), false
      for _, name in ipairs(inventory.names(inv)) do
        for _, hg in ipairs(inv.hosts[name].groups or {}) do
          if hg == g then out[#out + 1] = name; any = true break end
        end
      end
      if not any then
        local groups = inventory.groups(inv)
        return nil, string.format("no host in group @%s; groups: %s", g,
          #groups > 0 and table.concat(groups, ", ") or "(none)")
      end
    else
      out[#out + 1] = item
    end
  end
  return out, inv
end

-- M.is_target(word) -> true when `phanes check WORD` names hosts, not a profile.
function M.is_target(word)
  if type(word) ~= "string" then return false end
  if word:sub(1, 1) == "@" then return true end
  local inv = require("phanes.remote.inventory").load()
  return inv ~= nil and inv.hosts[word] ~= nil
end

local function load_for(p, name, inv, mods, prof, all)
  return layers.load(name, { config = p.opts.config, inventory = inv, modules = mods, known = all,
    defaults = prof and prof.config or {}, defaults_name = prof and prof.origin, sets = p.opts.set or {},
    env = environ(), vault_password_file = p.opts["vault-password-file"],
    target = nil })
end

local function owners(all)
  local o = { state_path = "phanes", apt_cache_max_age = "phanes" }
  for _, m in ipairs(all) do
    o[m.name] = m.name
    for g in pairs(type(m.globals) == "table" and m.globals or {}) do o[g] = o[g] or m.name end
  end
  return o
end

local function is_list(v) return type(v) == "table" and v[1] ~= nil end

-- Leaves of cfg: { path, value } sorted by path; lists stay whole.
local function leaves(v, path, out)
  if type(v) == "table" and not is_list(v) and next(v) ~= nil then
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(keys) do leaves(v[k], path and (path .. "." .. tostring(k)) or tostring(k), out) end
  elseif path then
    out[#out + 1] = { path = path, value = v }
  end
  return out
end

local function set_path(t, path, value)
  local parts = {}
  for part in path:gmatch "[^.]+" do parts[#parts + 1] = part end
  for i = 1, #parts - 1 do
    if type(t[parts[i]]) ~= "table" then return end
    t = t[parts[i]]
  end
  t[parts[#parts]] = value
end

-- M.masked(cfg, info, all) -> a copy of cfg with secrets masked: fields
-- declared secret, values from the vault (its host block or `!vault KEY`).
function M.masked(cfg, info, all)
  local config = require "phanes.config"
  local out = config.mask(cfg, all)
  local resolved = {}
  for _, s in ipairs(require("phanes.vault").resolved_values()) do resolved[s] = true end
  for _, leaf in ipairs(leaves(out, nil, {})) do
    local at = layers.origin_of(info.origin or {}, leaf.path)
    local v = leaf.value
    local from_vault = at and at:match "^vault "
    local s = (type(v) == "string" or type(v) == "number") and tostring(v) or nil
    if from_vault or (s and resolved[s]) then set_path(out, leaf.path, config.MASK) end
  end
  return out
end

local function show_value(v)
  if type(v) == "table" then return require("phanes.json").encode(v) end
  if type(v) == "string" then return v end
  return tostring(v)
end

-- M.describe(name, cfg, info, all) -> { host, config (masked), origin = { path = label } }
function M.describe(name, cfg, info, all)
  local own = owners(all)
  local masked = M.masked(cfg, info, all)
  local origin = {}
  for _, leaf in ipairs(leaves(masked, nil, {})) do
    local at = layers.origin_of(info.origin or {}, leaf.path)
    origin[leaf.path] = layers.label(at or "default", leaf.path, own)
  end
  return { host = name, config = masked, origin = origin }
end

local function print_host(out, d, with_origin, many)
  if many or d.host then out:say(out:paint("bold", d.host or "(no host)")) end
  local rows = {}
  for _, leaf in ipairs(leaves(d.config, nil, {})) do
    rows[#rows + 1] = { "  " .. leaf.path, show_value(leaf.value),
      with_origin and out:paint("dim", d.origin[leaf.path] or "") or nil }
  end
  local headers = with_origin and { "", "", "" } or { "", "" }
  for _, line in ipairs(output.format_table(headers, rows)) do
    if line:match "%S" then out:say(line) end
  end
end

-- phanes config show [HOST|@GROUP] [--origin] [--json]
function M.main(p)
  local out = output.new { color = p.opts.color or "auto", verbose = p.opts.verbose }
  local sub = p.args[1]
  if sub ~= "show" then
    out:error(sub and ("unknown config command '" .. sub .. "'") or "which config command?",
      "phanes config show [HOST|@GROUP] [--origin] [--json]")
    return EXIT.usage
  end
  if #p.args > 2 then out:error("one HOST or @GROUP (or a comma list), got " .. table.concat(p.args, " ", 2)) return EXIT.usage end
  local names, inv = M.hosts(p.args[2])
  if not names then out:error(inv) return EXIT.usage end
  if #names == 0 then names = { false } end
  local all, lerrs = require("phanes.engine.resolve").all()
  if not p.opts.json then for _, e in ipairs(lerrs) do out:warn(e) end end
  local docs, bad = {}, false
  for _, name in ipairs(names) do
    local cfg, info = load_for(p, name or nil, inv, {}, nil, all)
    if not cfg then
      bad = true
      for _, e in ipairs(info) do out:error((name and (name .. ": ") or "") .. tostring(e)) end
    else
      docs[#docs + 1] = M.describe(name or nil, cfg, info, all)
    end
  end
  if p.opts.json then
    local json = require "phanes.json"
    for _, d in ipairs(docs) do if not p.opts.origin then d.origin = nil end end
    io.stdout:write(json.encode({ hosts = json.array(docs) }, { pretty = true }), "\n")
  else
    for i, d in ipairs(docs) do
      if i > 1 then out:say "" end
      print_host(out, d, p.opts.origin, #docs > 1)
    end
  end
  return bad and EXIT.usage or EXIT.ok
end

-- phanes check HOST|@GROUP [PROFILE]: every host's merged config, all
-- errors at once, each prefixed with its host. -> exit code
function M.check(p, out, plan)
  local spec = table.remove(p.args, 1)
  local names, inv = M.hosts(spec)
  if not names then out:error(inv) return EXIT.usage end
  local prof, mods = nil, {}
  if p.args[1] or p.opts.profile or p.opts.modules then
    prof, mods = plan(p, out)
    if not prof then return EXIT.usage end
  end
  local all, lerrs = require("phanes.engine.resolve").all()
  for _, e in ipairs(lerrs) do out:warn(e) end
  local failed = {}
  for _, name in ipairs(names) do
    local cfg, errs = load_for(p, name, inv, mods, prof, all)
    if not cfg then
      failed[#failed + 1] = name
      for _, e in ipairs(errs) do out:error(name .. ": " .. tostring(e)) end
    end
  end
  if #failed > 0 then
    out.err:write(string.format("%d of %d host%s with config errors: %s\n", #failed, #names,
      #names == 1 and "" or "s", table.concat(failed, ", ")))
    return EXIT.usage
  end
  out:say(out:paint("green", "ok: "), "the config of ", table.concat(names, ", "), " is valid",
    prof and (" for " .. prof.name) or "")
  return EXIT.ok
end

return M
