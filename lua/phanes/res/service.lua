-- res/service.lua: systemd services.
--
--   ctx.service.running { "nginx", enabled = true, reload = conf.changed }
--   ctx.service.running { "redis-server", restart = conf.changed }
--   ctx.service.stopped { "apache2", enabled = false }
--   ctx.service.daemon_reload()          -- after writing a unit file
--
-- running: starts the unit when it is not active, enables it when it is
-- disabled (enabled = false disables it), and restarts or reloads it only
-- when asked AND it was already running (a fresh start needs neither).
-- stopped: stops it when active and disables it (enabled = true keeps it
-- enabled); a unit that does not exist counts as stopped.
-- Both need systemd as init: without it they fail saying so, or report
-- skipped with optional = true.
--
-- A unit's state comes from `systemctl show` the first time it is asked
-- (none when no unit file exists for it), kept in run.cache.services; the
-- first ask also reads every unit the run's modules asked about last time
-- (run.hints.units, from the state file), so a no-op run spawns one
-- systemctl in all. daemon_reload and a package install empty the cache
-- (packages bring units). (One `systemctl show --all` of every unit cost
-- 150-600 ms: more than a whole no-op run.)
local context = require "phanes.engine.context"
local facts = require "phanes.engine.facts"

local M = {}
local N = {}
M.namespaces = { service = N }

M.PROPS = "Id,Names,LoadState,ActiveState,SubState,UnitFileState"

local fail = context.fail

local SUFFIXES = { service = true, socket = true, timer = true, target = true, mount = true,
  path = true, slice = true, scope = true, swap = true, automount = true, device = true }

-- unit_name("nginx") -> "nginx.service"; "docker.socket" stays
function M.unit_name(name)
  local suffix = name:match "%.(%a+)$"
  if suffix and SUFFIXES[suffix] then return name end
  return name .. ".service"
end

-- has_unit_file(run, unit) -> bool: a file (or alias link) for the unit,
-- or for its template (foo@.service), in one of systemd's unit dirs.
local function has_unit_file(run, unit)
  local dirs = run.paths.unit_dirs
  if not dirs then return true end
  local file = require "phanes.file"
  local template = unit:match "^([^@]+@)[^.]*(%.%a+)$"
  if template then template = unit:gsub("^([^@]+@)[^.]*(%.%a+)$", "%1%2") end
  for _, d in ipairs(dirs) do
    if file.exists(d .. "/" .. unit) or (template and file.exists(d .. "/" .. template)) then return true end
  end
  return false
end

local function not_found(unit)
  return { id = unit, load = "not-found", active = "inactive", sub = "dead", file_state = "" }
end

-- A cached unit can be trusted: asked for already (the resources keep it
-- current), or read along with another one and nothing changed since.
local function fresh(run, u)
  return u ~= nil and (u.prefetched == nil or u.prefetched == run.stats.changed)
end

-- The units to read with `unit`: the run's hinted ones (what its modules
-- asked last time) not known yet and with a unit file.
local function batch(run, unit)
  local c = run.cache.services
  local list, seen = { unit }, { [unit] = true }
  local hints = run.hints and run.hints.units or {}
  for _, h in ipairs(hints) do
    local u = type(h) == "string" and M.unit_name(h)
    if u and not seen[u] and not fresh(run, c[u]) and has_unit_file(run, u) then
      seen[u] = true
      list[#list + 1] = u
    end
  end
  return list
end

-- state(run, name[, module]) -> { id, load, active, sub, file_state }
-- The first unit asked is read with one `systemctl show` together with
-- every hinted unit (run.hints.units: what the run's modules asked last
-- time), so a no-op run spawns one systemctl in all; a unit read that way
-- is trusted until some resource changes something (then it is read
-- again). A unit with no unit file in systemd's directories is "not-found"
-- without a process (a dry run on a fresh host asks about many units no
-- package brought yet). `module` records the ask (run:note_unit).
function M.state(run, name, module)
  local c = run.cache
  c.services = c.services or {}
  local unit = M.unit_name(name)
  if run.note_unit then run:note_unit(module, unit) end
  local known = c.services[unit]
  if fresh(run, known) then
    known.prefetched = nil
    return known
  end
  if not has_unit_file(run, unit) then
    c.services[unit] = not_found(unit)
    return c.services[unit]
  end
  local argv = { "systemctl", "show", "--no-pager", "-p", M.PROPS }
  for _, u in ipairs(batch(run, unit)) do argv[#argv + 1] = u end
  local res = run:check({ argv = argv }, "service", unit, "systemctl show")
  local asked = {}
  for k, v in pairs(facts.parse_systemctl_show(res.stdout)) do
    local old = c.services[k]
    -- never replace what a resource already asked and keeps current
    if not (old and old.prefetched == nil and old ~= v) or k == unit then
      c.services[k] = v
      v.prefetched = run.stats.changed
    end
    if k == unit then asked = v end
  end
  if asked.id == nil then c.services[unit] = not_found(unit) end
  c.services[unit].prefetched = nil
  return c.services[unit]
end

local ACTIVE = { active = true, reloading = true, activating = true }
local ENABLED = { enabled = true, ["enabled-runtime"] = true }

-- nil when systemd runs; otherwise a skip result (optional, or a dry run,
-- which goes on planning the rest and says a real run would fail) or a failure
local function need_systemd(ctx, kind, target, o)
  local init = ctx.facts.init
  if init == "systemd" then return nil end
  local why = "services need systemd, and init here is " .. tostring(init)
    .. (ctx.facts.container and (" (in a " .. tostring(ctx.facts.container) .. " container)") or "")
  if o.optional then return { status = "skipped", message = why } end
  if ctx.dry_run then return { status = "skipped", message = why .. ": a real run would fail here" } end
  fail(kind, target, why .. ": run phanes on a systemd host, or mark this service optional = true")
end

-- systemctl(run, kind, unit, args...): runs it; a failure carries the
-- command's stderr and the unit's status.
local function systemctl(run, kind, unit, ...)
  local argv = { "systemctl", "--no-pager", ... }
  argv[#argv + 1] = unit
  local res, err = run.exec{ argv = argv }
  if res and res.code == 0 then return end
  local detail = res and context.tail(res.stderr, 5) or tostring(err)
  local st = run.exec{ argv = { "systemctl", "--no-pager", "status", "-l", "-n", "15", unit } }
  if st and st.stdout ~= "" then detail = detail .. "\n" .. context.tail(st.stdout, 25) end
  fail(kind, unit, "systemctl " .. table.concat({ ... }, " ") .. " " .. unit .. " failed", detail)
end

local function unit_of(o, kind)
  local name = type(o) == "string" and o or type(o) == "table" and (o[1] or o.name)
  if type(name) ~= "string" or name == "" then fail(kind, "?", "a unit name is required") end
  return name, type(o) == "table" and o or {}
end

function N.running(ctx, o)
  local kind = "service.running"
  local name
  name, o = unit_of(o, kind)
  local run = ctx.run
  return run:resource(ctx, kind, name, function()
    local skip = need_systemd(ctx, kind, name, o)
    if skip then return skip end
    local u = M.state(run, name, ctx.module)
    if u.load == "not-found" then
      if ctx.dry_run then return { status = "would change", message = "start (unit not found: not installed yet?)" } end
      fail(kind, name, "unit " .. u.id .. " not found: is its package installed?")
    end
    if u.load == "masked" or u.file_state == "masked" then
      fail(kind, name, "unit " .. u.id .. " is masked: unmask it (systemctl unmask " .. u.id .. ") if it should run")
    end
    local active = ACTIVE[u.active]
    local start = not active
    local enable = o.enabled ~= false and u.file_state == "disabled"
    local disable = o.enabled == false and ENABLED[u.file_state]
    -- resuming: the last run of this module changed something and did not
    -- finish, so a `restart = conf.changed` it owed may never have happened.
    local owed = ctx.resuming and active
    local restart = (o.restart or (owed and o.restart == false)) and active
    local reload = not restart and (o.reload or (owed and o.reload == false)) and active
    local todo = {}
    if start then todo[#todo + 1] = "start" end
    if enable then todo[#todo + 1] = "enable" end
    if disable then todo[#todo + 1] = "disable" end
    if restart then todo[#todo + 1] = "restart" end
    if reload then todo[#todo + 1] = "reload" end
    if #todo == 0 then return { status = "ok" } end
    if ctx.dry_run then return { status = "would change", message = table.concat(todo, ", ") } end
    if enable and start then systemctl(run, kind, name, "enable", "--now")
    elseif enable then systemctl(run, kind, name, "enable")
    elseif start then systemctl(run, kind, name, "start") end
    if disable then systemctl(run, kind, name, "disable") end
    if restart then systemctl(run, kind, name, "restart") end
    if reload then systemctl(run, kind, name, "reload") end
    u.active, u.sub = "active", "running"
    if enable then u.file_state = "enabled" elseif disable then u.file_state = "disabled" end
    local done = { start = "started", enable = "enabled", disable = "disabled", restart = "restarted", reload = "reloaded" }
    for i, t in ipairs(todo) do todo[i] = done[t] end
    return { status = "changed", message = table.concat(todo, ", ") }
  end)
end

function N.stopped(ctx, o)
  local kind = "service.stopped"
  local name
  name, o = unit_of(o, kind)
  local run = ctx.run
  return run:resource(ctx, kind, name, function()
    local skip = need_systemd(ctx, kind, name, o)
    if skip then return skip end
    local u = M.state(run, name, ctx.module)
    if u.load == "not-found" then return { status = "ok", message = "not installed" } end
    local stop = ACTIVE[u.active]
    local disable = o.enabled ~= true and ENABLED[u.file_state]
    local enable = o.enabled == true and u.file_state == "disabled"
    local todo = {}
    if stop then todo[#todo + 1] = "stop" end
    if disable then todo[#todo + 1] = "disable" end
    if enable then todo[#todo + 1] = "enable" end
    if #todo == 0 then return { status = "ok" } end
    if ctx.dry_run then return { status = "would change", message = table.concat(todo, ", ") } end
    if disable and stop then systemctl(run, kind, name, "disable", "--now")
    elseif stop then systemctl(run, kind, name, "stop") end
    if disable and not stop then systemctl(run, kind, name, "disable") end
    if enable then systemctl(run, kind, name, "enable") end
    u.active, u.sub = "inactive", "dead"
    if disable then u.file_state = "disabled" elseif enable then u.file_state = "enabled" end
    local done = { stop = "stopped", disable = "disabled", enable = "enabled" }
    for i, t in ipairs(todo) do todo[i] = done[t] end
    return { status = "changed", message = table.concat(todo, ", ") }
  end)
end

function N.daemon_reload(ctx, o)
  o = o or {}
  local kind = "service.daemon_reload"
  return ctx.run:resource(ctx, kind, "systemd", function()
    local skip = need_systemd(ctx, kind, "systemd", o)
    if skip then return skip end
    if ctx.dry_run then return { status = "would change", message = "daemon-reload" } end
    ctx.run:check({ argv = { "systemctl", "--no-pager", "daemon-reload" } }, kind, "systemd", "systemctl daemon-reload")
    ctx.run:invalidate("services")
    return { status = "changed", message = "daemon-reload" }
  end)
end

-- Declarations (doc/module-api.md, `make docs`): each resource's
-- description and arguments { name, type, required, description }; a
-- reader (no event, changes nothing) has reader = true.
local NAME = { "name", "string", true, "(positional or name =) the systemd unit (.service may be left out)" }
local OPTIONAL = { "optional", "boolean", false, "skipped, not failed, where systemd is not init" }
M.api = {
  ["service.running"] = { "A systemd service started and enabled; restarted or reloaded only when asked and it was running", {
    NAME, { "enabled", "boolean", false, "enabled at boot (default true; false disables it)" },
    { "restart", "boolean", false, "restart it (e.g. restart = conf.changed)" },
    { "reload", "boolean", false, "reload it" }, OPTIONAL,
  } },
  ["service.stopped"] = { "A systemd service stopped and disabled (a missing unit counts as stopped)", {
    NAME, { "enabled", "boolean", false, "keep it enabled" }, OPTIONAL,
  } },
  ["service.daemon_reload"] = { "systemctl daemon-reload (after writing a unit file)", {} },
}

return M
