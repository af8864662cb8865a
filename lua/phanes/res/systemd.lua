-- res/systemd.lua: unit files and drop-ins under /etc/systemd/system.
--
--   local unit = ctx.systemd.unit { name = "app.service", content = ctx.template("app/app.service", cfg),
--     enabled = true, running = true, restart = conf.changed }
--   ctx.systemd.unit { name = "app", src = "app/app.service", vars = cfg }   -- a template instead
--   local env = ctx.systemd.dropin { unit = "app.service", name = "phanes",
--     content = "[Service]\nEnvironment=\"APP_PORT=8080\"\n" }
--   ctx.service.running { "app", restart = unit.changed or env.changed }
--
-- unit writes /etc/systemd/system/<name> (0644; ".service" is added to a
-- bare name); dropin writes /etc/systemd/system/<unit>.d/<name>.conf. Each
-- is checked like file.content (a dry run shows the diff) and runs
-- `systemctl daemon-reload` only when it changed. unit with running = true
-- then keeps the service running (enabled unless enabled = false),
-- restarted when the unit changed or restart = true; running = false stops
-- it; without running (nil) the service is left to the module. Both return
-- the result of the file (changed also when it would change). Either
-- takes src (templates/<src>; template = is the same) and vars instead of
-- content.
local context = require "phanes.engine.context"
local file = require "phanes.res.file"
local service = require "phanes.res.service"

local M = {}
local N = {}
M.namespaces = { systemd = N }
M.required = { ["systemd.unit"] = { "name" }, ["systemd.dropin"] = { "unit", "name" } } -- checked by the context

local fail = context.fail

local function dir(ctx) return ctx.paths.systemd_dir or "/etc/systemd/system" end

local function check_name(kind, name)
  if type(name) ~= "string" or not name:match "^[%w@_.:%-]+$" then
    fail(kind, tostring(name), "a unit name like app.service is required (letters, digits, @ _ . : -)")
  end
end

local function write(ctx, kind, path, o)
  local r = ctx.run:resource(ctx, kind, path, function()
    local content = o.content
    local src = o.src or o.template
    if content == nil and type(src) == "string" then content = ctx.template(src, o.vars) end
    if type(content) ~= "string" then fail(kind, path, "content (a string) or src (a template) is required") end
    local d = path:match "^(.*)/[^/]+$"
    if not require("phanes.file").exists(d) then
      if ctx.dry_run then return { status = "would change", message = "created",
        diff = require("phanes.file").diff("", content, { from = path, to = path }) } end
      file.ensure_directory(ctx, { path = d, mode = "0755" }, kind)
    end
    return file.ensure_content(ctx, { path = path, content = content, mode = "0644", owner = "root", group = "root" }, kind)
  end)
  if r.changed then ctx.service.daemon_reload() end
  return r
end

function N.unit(ctx, o)
  local kind = "systemd.unit"
  o = type(o) == "table" and o or {}
  check_name(kind, o.name)
  local name = service.unit_name(o.name)
  local r = write(ctx, kind, dir(ctx) .. "/" .. name, o)
  if o.running == true then
    ctx.service.running { name, enabled = o.enabled ~= false, restart = r.changed or o.restart }
  elseif o.running == false then
    ctx.service.stopped { name, enabled = o.enabled == true }
  end
  return r
end

function N.dropin(ctx, o)
  local kind = "systemd.dropin"
  o = type(o) == "table" and o or {}
  check_name(kind, o.unit)
  if type(o.name) ~= "string" or not o.name:match "^[%w_.%-]+$" then
    fail(kind, tostring(o.unit), "name (the drop-in file, without .conf) is required")
  end
  local conf = o.name:match "%.conf$" and o.name or (o.name .. ".conf")
  return write(ctx, kind, dir(ctx) .. "/" .. service.unit_name(o.unit) .. ".d/" .. conf, o)
end

-- Declarations (doc/module-api.md, `make docs`): each resource's
-- description and arguments { name, type, required, description }; a
-- reader (no event, changes nothing) has reader = true.
local CONTENT = { "content", "string", false, "the file's content (or src)" }
local SRC = { "src", "string", false, "a template under templates/, instead of content" }
local TEMPLATE = { "template", "string", false, "the same as src" }
local VARS = { "vars", "map", false, "the template's variables" }
M.api = {
  ["systemd.unit"] = { "A unit file under /etc/systemd/system (daemon-reload when it changed), optionally kept running", {
    { "name", "string", true, "the unit (\".service\" added to a bare name)" }, CONTENT, SRC, TEMPLATE, VARS,
    { "running", "boolean", false, "true: running (restarted when the unit changed), false: stopped, nil: left alone" },
    { "enabled", "boolean", false, "with running: enabled at boot (default true)" },
    { "restart", "boolean", false, "with running: restart anyway" },
  } },
  ["systemd.dropin"] = { "A drop-in /etc/systemd/system/<unit>.d/<name>.conf (daemon-reload when it changed)", {
    { "unit", "string", true, "the unit it changes" }, { "name", "string", true, "the drop-in's name" },
    CONTENT, SRC, TEMPLATE, VARS,
  } },
}

return M
