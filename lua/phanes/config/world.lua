-- config/world.lua: every key a run knows, built from the modules'
-- declarations (phanes.config is the entry).
--   world.build(modules, known, check) -> world | nil, errors
--   world.fields: the schema of the whole config (globals and one map per
--   module section); sections, globals, in_run, run_globals.
local schema = require "phanes.config.schema"

local M = {}

-- Top-level keys the core itself owns.
M.CORE = {
  state_path = { type = "string", default = "/var/lib/phanes/state.json", format = "path",
    description = "Where phanes keeps its state file (what it installed, and when)." },
  apt_cache_max_age = { type = "integer", default = 3600, min = 0,
    description = "Seconds before the apt package lists count as old and apt-get update runs." },
}

function M.as_list(mods)
  local out = {}
  if not mods then return out end
  if schema.is_list(mods) then
    for _, m in ipairs(mods) do out[#out + 1] = m end
  else
    for _, k in ipairs(schema.sorted_keys(mods)) do out[#out + 1] = mods[k] end
  end
  return out
end

function M.module_where(m)
  local name = type(m) == "table" and type(m.name) == "string" and m.name or "?"
  local origin = type(m) == "table" and (m.origin or m.path)
  if type(origin) == "string" and origin ~= "embedded" then return origin .. " (module '" .. name .. "')" end
  return "module '" .. name .. "'"
end

local as_list, module_where = M.as_list, M.module_where

-- world.build(modules, known, check) -> world | nil, errors. world.fields is the schema
-- of the whole config (globals and one map per module section).
function M.build(modules, known, check)
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

return M
