-- context.lua: a run (what all modules of one `phanes apply` share) and the
-- ctx each module's apply gets.
--
--   local context = require "phanes.engine.context"
--   local run = context.new_run{
--     exec = exec.run,          -- transport, same contract as phanes.exec.run
--     dry_run = false,
--     config = cfg,             -- whole validated config
--     secrets = { "s3cret-pw" }, -- scrubbed (******) from messages and diffs (output.masker)
--     on_event = function(ev) end, -- one call per resource result
--     on_log = function(level, module, msg) end, -- ctx.log / ctx.warn
--     interrupted = sys.interrupted,
--   }
--   local ctx = run:module(mod, cfg[mod.name])
--   mod.apply(ctx, cfg[mod.name])
--   print(run.stats.execs)      -- processes spawned so far
--
-- ev = { module, resource = "file.template", target = "/etc/redis/redis.conf",
--        status = "ok"|"changed"|"would change"|"skipped"|"failed",
--        message = "mode 0644 -> 0640", diff = "...", duration = seconds }
--
-- Resources raise context.failure{...} (tell it apart with is_failure),
-- context.INTERRUPTED when a signal came in before a resource started, and
-- ctx.skip(reason) raises context.skipped(reason) (tell with is_skip).
local facts = require "phanes.engine.facts"

local M = {}

-- Raised (as is) before a resource when the run was interrupted.
M.INTERRUPTED = setmetatable({}, { __tostring = function() return "interrupted" end,
  __name = "phanes.interrupted" })

local Failure = { __name = "phanes.failure" }
Failure.__index = Failure
function Failure.__tostring(f)
  local s = f.resource or ""
  if f.target and f.target ~= "" then s = s .. " " .. f.target end
  s = (s ~= "" and (s .. ": ") or "") .. (f.message or "failed")
  if f.detail and f.detail ~= "" then s = s .. "\n" .. f.detail end
  return s
end

-- context.failure{ resource =, target =, message =, detail = } -> failure
-- (raise it with error(f, 0)); detail is the command's stderr tail.
function M.failure(t)
  return setmetatable({ resource = t.resource, target = t.target,
    message = t.message or "failed", detail = t.detail }, Failure)
end

function M.is_failure(e) return getmetatable(e) == Failure end

-- context.fail(resource, target, message[, detail]): raise that failure.
function M.fail(resource, target, message, detail)
  error(M.failure{ resource = resource, target = target, message = message, detail = detail }, 0)
end

local Skip = { __name = "phanes.skip", __tostring = function(s) return "skipped: " .. s.reason end }

-- context.skipped(reason) -> the value ctx.skip raises; is_skip(e) -> reason|nil
function M.skipped(reason) return setmetatable({ reason = reason }, Skip) end
function M.is_skip(e)
  if getmetatable(e) == Skip then return e.reason end
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

-- The resource families bound into ctx (lua/phanes/res/<name>.lua).
M.families = { "pkg", "apt", "file", "service", "user", "cmd", "fetch", "archive", "systemd", "sentinel", "seed", "git", "npm" }

local function now()
  local ok, sys = pcall(require, "phanes.sys")
  if ok and type(sys) == "table" and sys.now then return sys.now() end
  return os.clock()
end

-- tail(text, n) -> the last n (default 10) non-empty lines of text
function M.tail(text, n)
  n = n or 10
  local lines = {}
  for line in (text or ""):gmatch "[^\n]+" do
    lines[#lines + 1] = line
    if #lines > n then table.remove(lines, 1) end
  end
  return table.concat(lines, "\n")
end

local Run = {}
Run.__index = Run

local function default_exec(opts)
  local exec = require "phanes.exec"
  if not exec.run then return nil, "exec: phanes.exec.run is not available in this build" end
  return exec.run(opts)
end

local function default_interrupted()
  local ok, sys = pcall(require, "phanes.sys")
  if ok and type(sys) == "table" and sys.interrupted then return sys.interrupted() end
  return 0
end

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
    cache = {}, -- pkg, services, accounts: see the res/ files
    -- what the last run asked, to read in one go: { units = {...} } (the
    -- runner takes it from the state file)
    hints = opts.hints or {},
    units_asked = {}, -- module name -> { unit = true }
  }, Run)
  local transport = opts.exec or default_exec
  -- every process goes through here, so stats.execs is the true count
  run.exec = function(o)
    run.stats.execs = run.stats.execs + 1
    return transport(o)
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

-- run:mask(text) -> text with each secret (of output.MIN_SCRUB bytes or
-- more) replaced by ******: output.masker, the one masking of phanes.
function Run:mask(text)
  return self.scrub(text)
end

function Run:emit(ev)
  ev.message = self:mask(ev.message)
  ev.diff = self:mask(ev.diff)
  ev.target = self:mask(ev.target)
  self.on_event(ev)
end

local function lua_error_handler(e)
  if M.is_failure(e) or M.is_skip(e) or e == M.INTERRUPTED then return e end
  return debug.traceback(tostring(e), 2)
end

-- run:resource(ctx, kind, target, body) -> result
-- The frame of every resource: interrupt check, timing, one event, and the
-- result { changed, status, message, diff }. body() returns
-- { status = "ok"|"changed"|"would change"|"skipped", message =, diff =, target = }.
-- "changed" is true for "would change" too, so `restart = conf.changed`
-- plans the restart in a dry run.
function Run:resource(ctx, kind, target, body)
  if (self.interrupted() or 0) > 0 then error(M.INTERRUPTED, 0) end
  local t0 = now()
  self.stats.resources = self.stats.resources + 1
  local ok, r = xpcall(body, lua_error_handler)
  local ev = { module = ctx.module, resource = kind, target = target, duration = now() - t0 }
  if not ok then
    if r == M.INTERRUPTED or M.is_skip(r) then error(r, 0) end
    self.stats.failed = self.stats.failed + 1
    ev.status = "failed"
    if M.is_failure(r) then
      r.resource = r.resource or kind
      r.target = self:mask(r.target or target)
      r.message = self:mask(r.message)
      r.detail = self:mask(r.detail)
      ev.message = r.message
      ev.detail = r.detail
    else
      r = self:mask(r)
      ev.message = tostring(r):match "^[^\n]*"
    end
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
    error(M.failure{ resource = "template", target = rel, message = origin
      or ("not found on the search path (" .. table.concat(loader.dirs, ", ") .. ", embedded)") }, 0)
  end
  local name = origin == "embedded" and rel or origin
  local out, err = require("phanes.template").render(text, vars or {}, name)
  if not out then error(M.failure{ resource = "template", target = name, message = err }, 0) end
  return out
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
    error(M.failure{ message = run:mask(tostring(message)), detail = detail and run:mask(tostring(detail)) }, 0)
  end
  ctx.template = render_template
  for _, family in ipairs(M.families) do
    local res = require("phanes.res." .. family)
    for ns, fns in pairs(res.namespaces) do
      local bound = ctx[ns] or {}
      for name, fn in pairs(fns) do
        bound[name] = function(o) return fn(ctx, o) end
      end
      ctx[ns] = bound
    end
  end
  return ctx
end

return M
