-- errors.lua: the one error object of a run. It is made where the error
-- happens (and classified then), travels unchanged through every xpcall,
-- and is formatted once, by output.format_error.
--
--   local errors = require "phanes.engine.errors"
--   error(errors.new{ kind = "resource", resource = "file.content", target = "/etc/x",
--     message = "No space left on device", detail = "stderr tail" }, 0)
--   local ok, e = xpcall(fn, errors.catch)   -- e: always an error object
--
-- Kinds and what they mean:
--   resource     a resource failed (the world said no): resource, target, detail
--   refusal      ctx.fail: the module refuses to go on (its own check failed)
--   config       the module's text is wrong: a missing argument, an unknown
--                resource, a missing template (where: the user's file:line)
--   lua          a Lua error in the user's code (traceback: the user's frames)
--   internal     a Lua error in phanes' own code: a bug (traceback kept whole)
--   skip         ctx.skip(reason): the module does not apply here
--   interrupted  a signal came in before a resource started
-- Fields: kind, message (one line), resource, target, detail, where
-- ("modules/x.lua:12", the user's line that called), traceback, reason (skip).
local M = {}

local Error = { __name = "phanes.error" }
Error.__index = Error

local FAILURES = { resource = true, refusal = true, config = true }

-- tostring(e): output.format_error(e), the plain form.
function Error.__tostring(e)
  return require("phanes.engine.output").format_error(e)
end

-- errors.new{ kind, message, ... } -> error object (raise with error(e, 0))
function M.new(t)
  t.kind = t.kind or "resource"
  if t.message == nil and FAILURES[t.kind] then t.message = "failed" end
  return setmetatable(t, Error)
end

-- errors.is(e[, kind]) -> bool; errors.is_failure(e): a resource, refusal
-- or config error (what a resource or ctx.fail raises on purpose).
function M.is(e, kind)
  return getmetatable(e) == Error and (kind == nil or e.kind == kind)
end

function M.is_failure(e)
  return getmetatable(e) == Error and FAILURES[e.kind] or false
end

-- Frames of phanes' own Lua code: chunk names "lua/phanes/..." (embedded)
-- or ".../lua/phanes/..." (from --path).
local function own(src)
  return src:find("lua/phanes/", 1, true) ~= nil or src:sub(1, 1) == "["
end

-- errors.where(level) -> "file:line" of the first frame from `level` up
-- that is not phanes' own (the user's line that led here), or nil.
function M.where(level)
  level = (level or 1) + 1
  while true do
    local info = debug.getinfo(level, "Sl")
    if not info then return nil end
    if info.currentline and info.currentline > 0 and not own(info.short_src) then
      return info.short_src .. ":" .. info.currentline
    end
    level = level + 1
  end
end

-- errors.user_frames(traceback) -> the traceback with only the user's
-- frames (none of phanes' own, no [C] or tail-call lines); nil when none.
function M.user_frames(tb)
  local kept = {}
  for line in (tb or ""):gmatch "[^\n]+" do
    if line:find("phanes/engine/runner.lua:", 1, true) then break end -- what ran the module
    local src = line:match "^%s+([^:]+):%d*:? ?in "
    if src and not own(src) then kept[#kept + 1] = line end
  end
  if #kept == 0 then return nil end
  return "stack traceback:\n" .. table.concat(kept, "\n")
end

-- Phanes' frames up to (not into) the engine that called the module.
local function own_frames(tb)
  local kept = {}
  for line in (tb or ""):gmatch "[^\n]+" do
    if line:find("phanes/engine/runner.lua:", 1, true) then break end
    if not line:find("(...tail calls...)", 1, true) and not line:find("in function 'xpcall'", 1, true) then
      kept[#kept + 1] = line
    end
  end
  return table.concat(kept, "\n")
end

-- errors.catch(e) -> error object: the xpcall handler of the engine. An
-- error object passes as is; anything else is a Lua error, classified by
-- where it was raised: "internal" in phanes' own code, else "lua".
function M.catch(e)
  if getmetatable(e) == Error then return e end
  local msg = tostring(e)
  local tb = debug.traceback("", 2):gsub("^\n", "")
  local src = msg:match "^([^\n:]+):%d+:"
  if src and own(src) then
    return M.new { kind = "internal", message = msg, traceback = own_frames(tb), where = M.where(2) }
  end
  return M.new { kind = "lua", message = msg, traceback = M.user_frames(tb) }
end

-- errors.CODE[kind] -> the exit code a run ending on that error has.
M.CODE = { resource = 1, refusal = 1, config = 1, lua = 1, internal = 1, skip = 0, interrupted = 130 }

return M
