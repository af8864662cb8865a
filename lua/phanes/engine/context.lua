-- context.lua: a run (what all modules of one `phanes apply` share) and the
-- ctx each module's apply gets.
--
--   local context = require "phanes.engine.context"
--   local run = context.new_run{
--     exec = exec.run,          -- transport, same contract as phanes.exec.run
--     dry_run = false,
--     config = cfg,             -- whole validated config
--     secrets = { "s3cret-pw" }, -- scrubbed (******) from messages and diffs (output.masker)
--     on_event = function(ev) end, -- the run's event stream (below)
--     on_log = function(level, module, msg) end, -- ctx.log / ctx.warn
--     interrupted = sys.interrupted,
--   }
--   local ctx = run:module(mod, cfg[mod.name])
--   mod.apply(ctx, cfg[mod.name])
--   print(run.stats.execs)      -- processes spawned so far
--
-- The event stream (on_event), in the order things happen:
--   { type = "start", module, resource = "file.template", target }
--   { type = "command", module, resource, target, argv = {...} | shell = "..." }
--   { type = "output", module, resource, kind = "stdout"|"stderr", chunk }
--   { type = "tick" }  -- while a command runs, every `tick` seconds (new_run{tick=})
--   { type = "result", module, resource, target, status = "ok"|"changed"|
--     "would change"|"skipped"|"failed", message = "mode 0644 -> 0640",
--     diff = "...", detail (failed), duration = seconds }
--
-- Errors are phanes.engine.errors objects: resources raise
-- context.failure{...} (is_failure), context.INTERRUPTED when a signal came
-- in before a resource started, ctx.skip(reason) raises
-- context.skipped(reason) (is_skip), ctx.fail a refusal; a Lua error is
-- classified (the user's or phanes' own) by errors.catch where it is caught.
local facts = require "phanes.engine.facts"
local errors = require "phanes.engine.errors"

local M = {}

-- Every error is a phanes.engine.errors object, classified where it is
-- raised; these are the names the resources use.
M.INTERRUPTED = errors.new { kind = "interrupted" } -- raised before a resource after a signal

-- context.failure{ resource =, target =, message =, detail = } -> failure
-- (raise it with error(f, 0)); detail is the command's stderr tail.
function M.failure(t)
  return errors.new { kind = t.kind or "resource", resource = t.resource, target = t.target,
    message = t.message or "failed", detail = t.detail, where = t.where }
end

M.is_failure = errors.is_failure

-- context.fail(resource, target, message[, detail]): raise that failure.
function M.fail(resource, target, message, detail)
  error(M.failure{ resource = resource, target = target, message = message, detail = detail }, 0)
end

-- context.skipped(reason) -> the value ctx.skip raises; is_skip(e) -> reason|nil
function M.skipped(reason) return errors.new { kind = "skip", reason = reason } end
function M.is_skip(e)
  if errors.is(e, "skip") then return e.reason end
  return nil
end

-- Fixed system paths the resources read or write; specs point them into a
-- temp dir. Facts' own paths (facts.default_paths) can be set here too.
M.default_paths = {
  passwd = "/etc/passwd",
  group = "/etc/group",
  sudoers_dir = "/etc/sudoers.d",
  sources_dir = "/etc/apt/sources.list.d",
  keyrings_dir = "/etc/apt/keyrings",
  apt_lists = "/var/lib/apt/lists",
  apt_pkgcache = "/var/cache/apt/pkgcache.bin",
  -- dpkg's database, read directly (false: always ask dpkg-query)
  dpkg_status = "/var/lib/dpkg/status",
  dpkg_updates = "/var/lib/dpkg/updates",
  curl = "/usr/bin/curl",
  wget = "/usr/bin/wget",
  -- where systemd looks for unit files (false: always ask systemctl)
  unit_dirs = { "/etc/systemd/system", "/run/systemd/system", "/run/systemd/transient",
    "/run/systemd/generator", "/run/systemd/generator.early", "/run/systemd/generator.late",
    "/usr/local/lib/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system" },
}

-- The resource families bound into ctx: every lua/phanes/res/<name>.lua
-- (a new resource is one file there, with its M.namespaces and M.api).
M.families = {}
for _, rel in ipairs(require("phanes.loader").list("lua/phanes/res/", ".lua")) do
  M.families[#M.families + 1] = rel:match "([%w_]+)%.lua$"
end

local function now() return require("phanes.sys").now() end

-- tail(text, n) -> the last n (default 10) non-empty lines of text
M.tail = require("phanes.engine.output").tail

local Run = {}
Run.__index = Run
local unknown_resource, check_args -- below

local function default_exec(opts)
  local exec = require "phanes.exec"
  if not exec.run then return nil, "exec: phanes.exec.run is not available in this build" end
  return exec.run(opts)
end

local function default_interrupted() return require("phanes.sys").interrupted() end

local function default_log(level, module, msg)
  io.stderr:write(module or "phanes", level == "warn" and ": warning: " or ": ", msg, "\n")
end

local function merge(a, b)
  local t = {}
  for k, v in pairs(a) do t[k] = v end
  for k, v in pairs(b or {}) do t[k] = v end
  return t
end

-- context.new_run(opts) -> run (see the top of this file).
-- Extra options: paths (see default_paths), facts (a ready facts table),
-- on_log, hints ({ units = {...} }: units to read with the first one asked).
function M.new_run(opts)
  opts = opts or {}
  local run = setmetatable({
    dry_run = opts.dry_run and true or false,
    config = opts.config or {},
    scrub = require("phanes.engine.output").masker(opts.secrets), -- see Run:mask
    on_event = opts.on_event or function() end,
    on_log = opts.on_log or default_log,
    interrupted = opts.interrupted or default_interrupted,
    paths = merge(M.default_paths, opts.paths),
    stats = { execs = 0, resources = 0, changed = 0, failed = 0 },
    cache = {}, -- pkg, services, accounts, apt_lists: see the res/ files and run:invalidate
    invalidated = {}, -- name -> true once run:invalidate(name) was called
    -- what the last run asked, to read in one go: { units = {...} } (the
    -- runner takes it from the state file)
    hints = opts.hints or {},
    units_asked = {}, -- module name -> { unit = true }
  }, Run)
  local transport = opts.exec or default_exec
  local tick = opts.tick
  -- The one exec wrapper: every process goes through here, so stats.execs
  -- is the true count and the event stream sees each command and its output.
  run.exec = function(o)
    run.stats.execs = run.stats.execs + 1
    local cur = run.current or {}
    run.on_event { type = "command", module = cur.module, resource = cur.resource, target = cur.target,
      argv = o.argv, shell = o.shell }
    local w, inner = {}, o.stream
    for k, v in pairs(o) do w[k] = v end
    w.tick = tick
    w.stream = function(kind, chunk)
      if kind == "tick" then return run.on_event { type = "tick" } end
      run.on_event { type = "output", module = cur.module, resource = cur.resource, kind = kind, chunk = chunk }
      if inner then return inner(kind, chunk) end
    end
    return transport(w)
  end
  run.facts = opts.facts or facts.new(run.paths)
  return run
end

-- run:note_unit(module, unit): the service resource says which systemd
-- units a module asked about; run:units_of(module) -> sorted list (the
-- runner keeps it in the state, as next run's hints.units).
function Run:note_unit(module, unit)
  local t = self.units_asked[module or "?"] or {}
  t[unit] = true
  self.units_asked[module or "?"] = t
end

function Run:units_of(module)
  local list = {}
  for u in pairs(self.units_asked[module] or {}) do list[#list + 1] = u end
  table.sort(list)
  return list
end

-- run:mask(text) -> text with each secret replaced by ******
-- (output.masker, the one masking of phanes; it says how short ones go).
function Run:mask(text)
  return self.scrub(text)
end

-- run:invalidate(name, ...): a change made these cached readings stale
-- ("pkg", "services", "accounts", "apt_lists"); each is read again when next
-- asked. A resource declares what its change invalidates; it never clears
-- another's cache itself. run:was_invalidated(name) -> bool (since the run began).
function Run:invalidate(...)
  for i = 1, select("#", ...) do
    local name = select(i, ...)
    self.cache[name] = nil
    self.invalidated[name] = true
  end
end

function Run:was_invalidated(name) return self.invalidated[name] == true end

-- run:emit(ev): a resource's result event (type "result"), masked.
function Run:emit(ev)
  ev.type = "result"
  ev.message = self:mask(ev.message)
  ev.diff = self:mask(ev.diff)
  ev.target = self:mask(ev.target)
  self.on_event(ev)
end

-- run:resource(ctx, kind, target, body) -> result
-- The frame of every resource: interrupt check, timing, a start and a
-- result event, and the result { changed, status, message, diff }. body()
-- returns { status = "ok"|"changed"|"would change"|"skipped", message =,
-- diff =, target = }. "changed" is true for "would change" too, so
-- `restart = conf.changed` plans the restart in a dry run. An error is
-- classified (errors.catch) here, reported as a failed result and raised
-- on as the same object.
function Run:resource(ctx, kind, target, body)
  if (self.interrupted() or 0) > 0 then error(M.INTERRUPTED, 0) end
  local t0 = now()
  self.stats.resources = self.stats.resources + 1
  local outer = self.current -- a resource may use another inside
  self.current = { module = ctx.module, resource = kind, target = target }
  self.on_event { type = "start", module = ctx.module, resource = kind, target = target }
  local ok, r = xpcall(body, errors.catch)
  self.current = outer
  local ev = { module = ctx.module, resource = kind, target = target, duration = now() - t0 }
  if not ok then
    if r.kind == "interrupted" or r.kind == "skip" then error(r, 0) end
    self.stats.failed = self.stats.failed + 1
    ev.status = "failed"
    if errors.is_failure(r) then
      r.resource = r.resource or kind
      r.target = r.target or target
    end
    r.target = self:mask(r.target)
    r.message = self:mask(r.message)
    r.detail = self:mask(r.detail)
    r.traceback = self:mask(r.traceback)
    ev.message = tostring(r.message):match "^[^\n]*"
    ev.detail = r.detail
    self:emit(ev)
    error(r, 0)
  end
  ev.status = r.status or "ok"
  ev.message = r.message
  ev.diff = r.diff
  ev.target = r.target or target
  if ev.status == "changed" then self.stats.changed = self.stats.changed + 1 end
  self:emit(ev)
  return { changed = ev.status == "changed" or ev.status == "would change",
    status = ev.status, message = ev.message, diff = ev.diff, stdout = r.stdout }
end

-- run:check(opts, resource, target, what) -> res
-- Runs a command and raises a failure (with the stderr tail) when it cannot
-- start or exits non-zero.
function Run:check(opts, resource, target, what)
  local res, err = self.exec(opts)
  if not res then
    error(M.failure{ resource = resource, target = target,
      message = what .. ": " .. tostring(err) }, 0)
  end
  if res.code ~= 0 then
    local why = res.timed_out and "timed out" or res.signal and ("killed by signal " .. res.signal)
      or ("exit " .. tostring(res.code))
    error(M.failure{ resource = resource, target = target, message = what .. " failed (" .. why .. ")",
      detail = M.tail(res.stderr ~= "" and res.stderr or res.stdout) }, 0)
  end
  return res
end

-- ctx.template(src, vars) -> text: renders templates/<src> found on the
-- search path (a file on disk wins over the embedded one).
local function render_template(src, vars)
  local loader = require "phanes.loader"
  local rel = "templates/" .. src
  local text, origin = loader.find(rel)
  if not text then
    error(M.failure{ kind = "config", resource = "template", target = rel, where = errors.where(2), message = origin
      or ("not found on the search path (" .. table.concat(loader.dirs, ", ") .. ", embedded)") }, 0)
  end
  local name = origin == "embedded" and rel or origin
  local out, err = require("phanes.template").render(text, vars or {}, name)
  if not out then error(M.failure{ kind = "config", resource = "template", target = name, message = err }, 0) end
  return out
end

-- ctx.pkg.instaled: a config error naming the user's line and the closest
-- resource of that family (the family's other names are found later, as
-- the namespace fills: the lookup happens only on a miss).
function unknown_resource(ns, fns)
  return function(bound, name)
    local names = {}
    for k in pairs(bound) do names[#names + 1] = k end
    for k in pairs(fns) do if not bound[k] then names[#names + 1] = k end end
    table.sort(names)
    local guess = require("phanes.engine.resolve").suggest(tostring(name), names)
    error(errors.new { kind = "config", where = errors.where(2), message = string.format(
      "ctx.%s.%s: no such resource%s; ctx.%s has %s", ns, tostring(name),
      guess and string.format(" (did you mean ctx.%s.%s?)", ns, guess) or "", ns, table.concat(names, ", ")) }, 0)
  end
end

-- A resource's declared arguments: a missing required one
-- (res.required["file.content"] = { "path", ... }) or one it does not take
-- (res.api["file.content"]'s names; positional ones are always taken) is a
-- config error naming the argument and the user's line, reported as the
-- resource's failure. A misspelt argument is never silently ignored.
local function bad_arg(o, need, takes)
  if type(o) ~= "table" then
    return "expects a table of arguments { " .. table.concat(need or { "..." }, " = ..., ") .. " = ... }"
  end
  for _, arg in ipairs(need or {}) do
    if o[arg] == nil then return "missing required argument '" .. arg .. "'" end
  end
  if not takes then return nil end
  local odd = {}
  for k in pairs(o) do
    if math.type(k) ~= "integer" and not takes[k] then odd[#odd + 1] = tostring(k) end
  end
  if #odd == 0 then return nil end
  table.sort(odd)
  local names = {}
  for k in pairs(takes) do names[#names + 1] = k end
  table.sort(names)
  local guess = require("phanes.engine.resolve").suggest(odd[1], names)
  return string.format("unknown argument '%s'%s; it takes %s", odd[1],
    guess and string.format(" (did you mean '%s'?)", guess) or "", table.concat(names, ", "))
end

function check_args(run, ctx, kind, o, need, takes)
  local bad = bad_arg(o, need, takes)
  if not bad then return end
  local where = errors.where(3)
  run:resource(ctx, kind, "", function()
    error(errors.new { kind = "config", resource = kind, message = bad, where = where }, 0)
  end)
end

-- res.api[kind] -> the set of argument names it takes (nil: undeclared, or
-- a table of arguments is not what it takes); made once per declaration,
-- not for every module's ctx
local TAKES = setmetatable({}, { __mode = "k" })
local function takes_of(api)
  if type(api) ~= "table" or type(api[2]) ~= "table" then return nil end
  if TAKES[api] ~= nil then return TAKES[api] or nil end
  local set, any = {}, false
  for _, a in ipairs(api[2]) do
    if type(a[1]) == "string" and a[1] ~= "..." then set[a[1]], any = true, true end
  end
  TAKES[api] = any and set or false
  return any and set or nil
end

-- run:module(mod, cfg) -> ctx for one module (doc/internals.md "ctx").
function Run:module(mod, cfg)
  local run = self
  local ctx = {
    run = run,
    config = run.config,
    cfg = cfg or {},
    facts = run.facts,
    platform = require("phanes.engine.platform").lazy(run.facts),  -- per-release names and defaults
    dry_run = run.dry_run,
    module = mod and mod.name or "?",
    paths = run.paths,
  }
  function ctx.exec(opts) return run.exec(opts) end
  function ctx.log(msg) run.on_log("info", ctx.module, run:mask(msg)) end
  function ctx.warn(msg) run.on_log("warn", ctx.module, run:mask(msg)) end
  function ctx.skip(reason) error(M.skipped(run:mask(reason or "skipped")), 0) end
  -- ctx.fail(message[, detail]): the module refuses to go on (a check of
  -- its own failed); reported like a resource failure, without a traceback.
  function ctx.fail(message, detail)
    error(M.failure{ kind = "refusal", message = run:mask(tostring(message)),
      detail = detail and run:mask(tostring(detail)), where = errors.where(2) }, 0)
  end
  ctx.template = render_template
  for _, family in ipairs(M.families) do
    local res = require("phanes.res." .. family)
    for ns, fns in pairs(res.namespaces) do
      local bound = ctx[ns] or setmetatable({}, { __index = unknown_resource(ns, fns) })
      for name, fn in pairs(fns) do
        local kind = ns .. "." .. name
        local need, api = res.required and res.required[kind], res.api and res.api[kind]
        local takes = not (api and api.reader) and takes_of(api) or nil
        bound[name] = (need or takes) and function(o)
          if need or type(o) == "table" then check_args(run, ctx, kind, o, need, takes) end
          return fn(ctx, o)
        end or function(o) return fn(ctx, o) end
      end
      ctx[ns] = bound
    end
  end
  return ctx
end

return M
