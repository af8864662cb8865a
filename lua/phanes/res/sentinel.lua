-- res/sentinel.lua: marks of a finished multi-step install.
--
--   if not ctx.sentinel.done { "archive", stamp = version } then ... end
--   ctx.sentinel.mark { "archive", stamp = version }   -- last, after the step
--
-- A sentinel is /var/lib/phanes/sentinels/<module>.<step> (ctx.paths.
-- sentinels_dir) holding stamp (a version, a checksum; default "done").
-- done reads it (no event, no process): true when it holds stamp. mark
-- writes it (0644, the directory 0755) and reports changed, ok when it
-- held stamp already; written last, an interrupted install is resumed by
-- the next run. M.path(ctx, step) gives the path (archive.extracted's
-- sentinel option takes it).
local context = require "phanes.engine.context"
local F = require "phanes.file"

local M = {}
local N = {}
M.namespaces = { sentinel = N }

local KIND = "sentinel.mark"

function M.dir(ctx) return ctx.paths.sentinels_dir or "/var/lib/phanes/sentinels" end

function M.path(ctx, step)
  if type(step) ~= "string" or not step:match "^[%w_.%-]+$" then
    context.fail(KIND, tostring(step), "a step name (letters, digits, _ . -) is required")
  end
  return M.dir(ctx) .. "/" .. ctx.module .. "." .. step
end

local function args(o)
  if type(o) == "string" then return o, "done" end
  return o[1] or o.step, tostring(o.stamp or "done")
end

function N.done(ctx, o)
  local step, stamp = args(o)
  return F.read(M.path(ctx, step)) == stamp .. "\n"
end

function N.path(ctx, o)
  return M.path(ctx, (args(o)))
end

function N.mark(ctx, o)
  local step, stamp = args(o)
  local path = M.path(ctx, step)
  return ctx.run:resource(ctx, KIND, path, function()
    if F.read(path) == stamp .. "\n" then return { status = "ok" } end
    if ctx.dry_run then return { status = "would change", message = "mark " .. stamp } end
    local dir = M.dir(ctx)
    if not F.exists(dir) then
      local ok, err = F.mkdir(dir, { mode = tonumber("0755", 8), parents = true })
      if not ok then context.fail(KIND, path, tostring(err)) end
    end
    local ok, err = F.write(path, stamp .. "\n", { mode = tonumber("0644", 8) })
    if not ok then context.fail(KIND, path, tostring(err)) end
    return { status = "changed", message = "mark " .. stamp }
  end)
end

-- Declarations (doc/module-api.md, `make docs`): each resource's
-- description and arguments { name, type, required, description }; a
-- reader (no event, changes nothing) has reader = true.
local STEP = { "step", "string", true, "(positional or step =) the step's name" }
local STAMP = { "stamp", "string", false, "a version or checksum (default \"done\")" }
M.api = {
  ["sentinel.done"] = { "Whether the module's step finished with this stamp (no event)", { STEP, STAMP }, reader = true },
  ["sentinel.mark"] = { "Marks the module's step finished with stamp (call it last)", { STEP, STAMP } },
  ["sentinel.path"] = { "The sentinel file of a step: /var/lib/phanes/sentinels/<module>.<step>", { STEP }, reader = true },
}

return M
