-- spec/support/context_stub.lua: a minimal stand-in for phanes.context
-- (the contract in the runner's brief), used by the runner specs only while
-- the real one is not in the binary. Resources: file.content, cmd.run.
local M = {}

M.INTERRUPTED = setmetatable({}, { __tostring = function() return "interrupted" end })
local FAILURE, SKIP = {}, {}

function M.failure(t) return setmetatable(t, FAILURE) end
function M.is_failure(e) return getmetatable(e) == FAILURE end
function M.is_skip(e) return getmetatable(e) == SKIP end

local Run = {}
Run.__index = Run

function M.new_run(opts)
  return setmetatable({ opts = opts, stats = { execs = 0 }, facts = {} }, Run)
end

function Run:module(mod, section)
  local run, opts = self, self.opts
  local ctx = { module = mod.name, config = opts.config, dry_run = opts.dry_run, facts = self.facts }
  local function between()
    if opts.interrupted and opts.interrupted() > 0 then error(M.INTERRUPTED, 0) end
  end
  local function event(resource, target, status, diff, message)
    opts.on_event { module = mod.name, resource = resource, target = target, status = status,
      diff = diff, message = message, duration = 0 }
  end
  function ctx.exec(o)
    run.stats.execs = run.stats.execs + 1
    return opts.exec(o)
  end
  function ctx.skip(reason) error(setmetatable({ reason = reason }, SKIP), 0) end
  function ctx.log() end
  function ctx.warn() end
  ctx.file = {}
  function ctx.file.content(a)
    between()
    local f = io.open(a.path, "rb")
    local old = f and f:read "a"
    if f then f:close() end
    if old == a.content then
      event("file.content", a.path, "ok")
      return { changed = false, status = "ok" }
    end
    local diff = require("phanes.file").diff(old or "", a.content, { from = a.path, to = a.path })
    if opts.dry_run then
      event("file.content", a.path, "would change", diff)
      return { changed = true, status = "would change", diff = diff }
    end
    local w = assert(io.open(a.path, "wb"))
    w:write(a.content)
    w:close()
    event("file.content", a.path, "changed", diff)
    return { changed = true, status = "changed", diff = diff }
  end
  ctx.cmd = {}
  function ctx.cmd.run(a)
    between()
    local target = a.desc or table.concat(a.argv or { a.shell }, " ")
    if a.creates and io.open(a.creates) then
      event("cmd.run", target, "ok")
      return { changed = false, status = "ok" }
    end
    if opts.dry_run then
      event("cmd.run", target, "would change")
      return { changed = true, status = "would change" }
    end
    local res, err = ctx.exec { argv = a.argv, shell = a.shell }
    if not res or res.code ~= 0 then
      event("cmd.run", target, "failed")
      error(M.failure { resource = "cmd.run", target = target,
        message = res and ("exited with " .. tostring(res.code)) or err,
        detail = res and res.stderr }, 0)
    end
    event("cmd.run", target, "changed")
    return { changed = true, status = "changed" }
  end
  return ctx
end

return M
