-- res/seed.lua: file.seed, a config file written once and then left to the
-- operator.
--
--   ctx.file.seed { path = "/opt/app/config.yaml", content = default_text, mode = "0640", owner = "app" }
--   ctx.file.seed { path = "/opt/app/config.yaml", src = "app/config.yaml", vars = cfg }
--
-- Create-only: when path exists (a file, a link, anything) it is kept as
-- it is, never compared, rewritten, chmod-ed or chown-ed: the result is ok
-- with "kept (exists)", in a dry run too. Otherwise it is created like
-- file.content (a dry run shows the new content as a diff); the parent
-- directory must exist. src renders templates/<src> with vars instead of
-- content.
local context = require "phanes.engine.context"
local file = require "phanes.res.file"

local M = {}
local N = {}
M.namespaces = { file = N }
M.required = { ["file.seed"] = { "path" } } -- checked by the context

local KIND = "file.seed"

function N.seed(ctx, o)
  local target = type(o) == "table" and tostring(o.path) or "?"
  return ctx.run:resource(ctx, KIND, target, function()
    if type(o) ~= "table" or type(o.path) ~= "string" or not o.path:match "^/" then
      context.fail(KIND, target, "path (absolute) is required")
    end
    if file.stat(o.path, KIND, false) then return { status = "ok", message = "kept (exists)" } end
    local c = {}
    for k, v in pairs(o) do c[k] = v end
    if o.src ~= nil then
      if type(o.src) ~= "string" then context.fail(KIND, target, "src must be a template name under templates/") end
      c.content = ctx.template(o.src, o.vars)
    end
    return file.ensure_content(ctx, c, KIND)
  end)
end

-- Declarations (doc/module-api.md, `make docs`): each resource's
-- description and arguments { name, type, required, description }; a
-- reader (no event, changes nothing) has reader = true.
M.api = {
  ["file.seed"] = { "A file created once and then left to the operator (an existing path is never touched)", {
    { "path", "string", true, "absolute path" },
    { "content", "string", false, "the content (or src)" },
    { "src", "string", false, "a template under templates/, instead of content" },
    { "vars", "map", false, "the template's variables" },
    { "mode", "string", false, "octal mode like \"0640\"" },
    { "owner", "string", false, "user name or id" },
    { "group", "string", false, "group name or id" },
  } },
}

return M
