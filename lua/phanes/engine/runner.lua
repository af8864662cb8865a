-- runner.lua: run an ordered list of modules, each under xpcall, report as
-- it goes, record each module in the state file, and decide the exit code.
--
--   local runner = require "phanes.engine.runner"
--   local code, report = runner.run {
--     mods = mods, config = cfg, secrets = secrets, dry_run = false,
--     keep_going = false, out = output.new{}, state = sf,   -- sf may be nil
--     hash = function(mod) return config.hash(cfg[mod.name], mod.config) end,
--   }
--
-- Exit codes: 0 all ok, 1 a module failed, 130 interrupted (Ctrl-C: the run
-- stops after the current resource; a second Ctrl-C kills running commands).
-- Statuses per module: ok, changed, would change, failed, skipped,
-- interrupted, not run.
local output = require "phanes.engine.output"
local EXIT = require "phanes.cli.exit"
local M = {}

local SPIN = { "|", "/", "-", "\\" }

-- Split an error raised inside a module's apply into what the runner needs.
local function classify(context, e)
  if e == context.INTERRUPTED then return { kind = "interrupted" } end
  if context.is_skip and context.is_skip(e) then
    return { kind = "skipped", reason = tostring(e.reason or "skipped") }
  end
  if context.is_failure and context.is_failure(e) then
    return { kind = "failure", resource = e.resource, target = e.target,
      message = tostring(e.message or "failed"), detail = e.detail }
  end
  return { kind = "lua", message = tostring(e) }
end

-- The traceback handler: keeps phanes' own error objects intact, turns a
-- Lua error into message + traceback (file:line of the user's module).
local function handler(context)
  return function(e)
    local c = classify(context, e)
    if c.kind == "lua" then c.traceback = debug.traceback(c.message, 2) end
    return c
  end
end

-- Last lines of a command's output, for error messages.
local function tail(text, n)
  if type(text) ~= "string" or text == "" then return nil end
  local lines = {}
  for line in text:gmatch "[^\n]+" do lines[#lines + 1] = line end
  local from = math.max(1, #lines - (n or 10) + 1)
  return table.concat(lines, "\n", from)
end

local function describe_error(name, c)
  if c.kind == "failure" then
    local what = table.concat({ c.resource or "", c.target or "" }, " "):gsub("^%s+", ""):gsub("%s+$", "")
    local msg = string.format("module '%s' failed: %s%s", name, what ~= "" and what .. ": " or "", c.message)
    local t = tail(c.detail)
    if t then msg = msg .. "\n" .. t:gsub("[^\n]+", "    %0") end
    return msg
  end
  -- A Lua error: the message starts with file:line; the traceback follows
  -- (the context's own when it made one), cut where the runner's frames begin.
  return string.format("module '%s' failed with a Lua error: %s", name, M.lua_trace(c))
end

-- runner.lua_trace(c) -> "file:line: message\nstack traceback:\n..." without
-- the runner's own frames.
function M.lua_trace(c)
  local text = c.message
  if not text:find("\nstack traceback:", 1, true) and c.traceback then text = c.traceback end
  local kept = {}
  for line in (text .. "\n"):gmatch "([^\n]*)\n" do
    if line:find("phanes/engine/runner.lua:", 1, true) then break end
    kept[#kept + 1] = line
  end
  while #kept > 2 and (kept[#kept]:find("tail calls", 1, true)
      or kept[#kept]:find("in function 'xpcall'", 1, true)) do
    kept[#kept] = nil
  end
  return table.concat(kept, "\n")
end

local function indent(text, pad)
  return (text:gsub("[^\n]+", pad .. "%0"))
end

local Run = {}
Run.__index = Run

function Run:interrupted()
  local n = self.sys.interrupted and self.sys.interrupted() or 0
  if n >= 2 and not self.killed then
    self.killed = true
    if self.exec_mod.kill_all then self.exec_mod.kill_all() end
  end
  return n
end

-- Redraw the live line (terminal only): spinner, module, elapsed.
function Run:tick(what)
  if self.json or not self.out.tty or not self.current then return end
  local now = self.sys.now()
  if self.last_tick and now - self.last_tick < 0.1 then return end
  self.last_tick = now
  local cur = self.current
  local elapsed = now - cur.start
  if elapsed < 0.5 then return end
  self.spin = (self.spin or 0) % #SPIN + 1
  self.out:progress(string.format("      %s %s %s%s", SPIN[self.spin], cur.name,
    output.duration(elapsed), what and ("  " .. what) or ""))
end

-- The exec function handed to the context: polls for Ctrl-C while a
-- command runs (a second one kills it) and keeps the spinner turning.
function Run:wrap_exec(exec)
  return function(opts)
    local inner = opts.stream
    local wrapped = {}
    for k, v in pairs(opts) do wrapped[k] = v end
    wrapped.stream = function(kind, chunk)
      self:interrupted()
      self:tick()
      if inner then return inner(kind, chunk) end
    end
    return exec(wrapped)
  end
end

local CHANGED = { changed = true, ["would change"] = true }

function Run:on_event(ev)
  local cur = self.current
  if not cur then return end
  cur.resources[#cur.resources + 1] = ev
  if CHANGED[ev.status] then cur.changed = cur.changed + 1 end
  -- A module's first change is noted in the state at once: a run killed
  -- before the module ends (and before a restart that change owes) leaves
  -- the note, and the next run resumes the module (ctx.resuming).
  if ev.status == "changed" and self.state and self.state.begin and not cur.noted then
    cur.noted = true
    local ok, err = self.state:begin(cur.name)
    if not ok then self:state_failed(err, "the run stopped after '" .. cur.name .. "'") end
  end
  if self.json then return end
  local out = self.out
  -- A skipped resource says why (no systemd, a container): shown always.
  if out.quiet and not (CHANGED[ev.status] or ev.status == "failed") then return end
  if self.verbose or CHANGED[ev.status] or ev.status == "failed" or ev.status == "skipped" then
    out:clear_progress()
    local line = string.format("      %s %s %s", out:status(ev.status), ev.resource or "",
      ev.target or "")
    if out.quiet then line = cur.name .. ": " .. line:gsub("^%s+", "") end -- no module header
    if ev.message and ev.message ~= "" and (self.verbose or ev.status ~= "failed") then
      line = line .. out:paint("dim", "  (" .. tostring(ev.message) .. ")")
    end
    out:say((line:gsub("%s+$", "")))
    if (self.dry_run or self.diff) and ev.diff and ev.diff ~= "" then
      out:say(indent(tostring(ev.diff):gsub("\n$", ""), "        "))
    end
  else
    self:tick(ev.resource)
  end
end

-- ctx.log lines show with -v, ctx.warn lines always; both go to the report.
function Run:on_log(level, module, msg)
  local cur = self.current
  if cur then cur.log[#cur.log + 1] = { level = level, message = tostring(msg) } end
  if self.json then return end
  if level == "warn" or level == "warning" then
    self.out:clear_progress()
    self.out:say("      ", self.out:paint("yellow", "warning"), " ", module and (module .. ": ") or "", tostring(msg))
  elseif self.verbose then
    self.out:clear_progress()
    self.out:say("      ", self.out:paint("dim", tostring(msg)))
  end
end

-- Run one module: returns its result record.
function Run:module(i, mod)
  local out, context = self.out, self.context
  local rec = { name = mod.name, status = "ok", changed = 0, resources = {}, log = {},
    start = self.sys.now(), origin = mod.origin }
  self.current = rec
  if not (self.json or out.quiet) then
    out:say(out:paint("bold", string.format("[%d/%d] %s", i, #self.mods, mod.name)),
      mod.description and out:paint("dim", "  " .. mod.description) or "")
  end
  local section = self.config and self.config[mod.name]
  local ok, c = xpcall(function()
    local ctx = self.run:module(mod, section)
    ctx.resuming = self.state and self.state.pending and self.state:pending(mod.name) or nil
    return mod.apply(ctx, section or {})
  end, handler(context))
  rec.duration = self.sys.now() - rec.start
  self.current = nil
  out:clear_progress()
  if ok then
    if rec.changed > 0 then rec.status = self.dry_run and "would change" or "changed" end
  elseif c.kind == "skipped" then
    rec.status, rec.reason = "skipped", c.reason
    if not (self.json or out.quiet) then out:say("      ", out:status "skipped", ": ", c.reason) end
  elseif c.kind == "interrupted" or self:interrupted() > 0 then
    -- a failure after Ctrl-C is the interrupt's doing (a killed command)
    rec.status = "interrupted"
  else
    rec.status = "failed"
    rec.error = { message = describe_error(mod.name, c), resource = c.resource,
      target = c.target, detail = c.detail, traceback = c.kind == "lua" and M.lua_trace(c) or nil }
    if not self.json then out:error(rec.error.message) end
  end
  return rec
end

-- Record a finished module in the state file (never in a dry run).
function Run:record(mod, rec)
  if self.dry_run or not self.state then return end
  local info
  if rec.status == "ok" or rec.status == "changed" then
    local hash = self.hash and self.hash(mod) or nil
    info = { status = "installed", version = mod.version, config_hash = hash }
  elseif rec.status == "failed" then
    info = { status = "failed", error = self.out.mask(rec.error.message:match "^[^\n]*") }
  else
    return
  end
  -- the state is written only when this changes something in it
  info.changed = rec.changed > 0
  info.units = self.run.units_of and self.run:units_of(mod.name) or nil
  local ok, err = self.state:record(mod.name, info)
  if not ok then self:state_failed(err, "the run stopped after '" .. mod.name .. "'") end
end

-- What ran is no longer recorded: say so; the run stops whatever the policy.
function Run:state_failed(err, what)
  self.state_error = err
  self.out:error(err, what .. ": free space or fix permissions there (or give --state PATH), "
    .. "then run the same command again")
end

-- The units the modules of this run asked about in the last run (from the
-- state): the service resource reads them all with one systemctl.
local function unit_hints(data, mods)
  if not (type(data) == "table" and type(data.modules) == "table") then return nil end
  local units, seen = {}, {}
  for _, mod in ipairs(mods) do
    local m = data.modules[mod.name]
    for _, u in ipairs(type(m) == "table" and type(m.units) == "table" and m.units or {}) do
      if type(u) == "string" and not seen[u] then
        seen[u] = true
        units[#units + 1] = u
      end
    end
  end
  return units
end

function Run:summary(results, code)
  local out = self.out
  local rows = {}
  for _, r in ipairs(results) do
    rows[#rows + 1] = { r.name, out:status(r.status), r.status == "not run" and "" or tostring(r.changed),
      r.duration and output.duration(r.duration) or "" }
  end
  out:say ""
  out:table({ "module", "status", "changed", "time" }, rows, { [3] = true, [4] = true })
  local total = self.sys.now() - self.start
  local verdict = ({ [0] = out:paint("green", self.dry_run and "dry run done, nothing changed" or "done"),
    [1] = out:paint("red", "failed"), [130] = out:paint("red", "interrupted") })[code]
  out:say(string.format("%s in %s", verdict, output.duration(total)))
end

-- The --json report (also written by --report FILE).
function Run:report(results, code)
  local json = require "phanes.json"
  local arr = json.array or function(t) return t end
  local mods, counts = {}, {}
  for _, r in ipairs(results) do
    counts[r.status] = (counts[r.status] or 0) + 1
    local res = {}
    for j, ev in ipairs(r.resources or {}) do
      res[j] = { resource = ev.resource, target = ev.target, status = ev.status,
        message = ev.message, diff = ev.diff, duration = ev.duration }
    end
    mods[#mods + 1] = { name = r.name, status = r.status, changed = r.changed or 0,
      duration = r.duration, reason = r.reason, error = r.error, resources = arr(res),
      log = r.log and #r.log > 0 and r.log or nil }
  end
  local report = {
    format = 1, command = "apply", profile = self.profile, dry_run = self.dry_run or false,
    phanes_version = self.version, started_at = require("phanes.engine.statefile").iso(self.started_at),
    duration = self.sys.now() - self.start, exit_code = code,
    status = ({ [0] = "ok", [1] = "failed", [130] = "interrupted" })[code],
    modules = arr(mods), counts = counts, execs = self.run.stats and self.run.stats.execs,
    state_path = self.state and self.state.path or nil, state_error = self.state_error,
  }
  return output.mask_deep(report, self.out.mask)
end

-- runner.run(opts) -> exit code, report (table, masked)
-- opts: mods (ordered module tables), config, secrets, dry_run, keep_going, diff (diffs in a real run),
-- verbose, json (no human output), out (phanes.engine.output), state (statefile
-- handle or nil), previous (the state as statefile.read gives it, for a
-- dry run: no lock, only its hints), hash(mod) -> config hash, profile (name for the report),
-- exec (exec.run, or a fake), context, sys (for specs).
function M.run(opts)
  local self = setmetatable({
    mods = opts.mods, config = opts.config, dry_run = opts.dry_run, keep_going = opts.keep_going, diff = opts.diff,
    verbose = opts.verbose or (opts.out and opts.out.verbose), json = opts.json, out = opts.out, state = opts.state,
    hash = opts.hash, profile = opts.profile, version = opts.version,
    context = opts.context or require "phanes.engine.context",
    sys = opts.sys or require "phanes.sys",
    exec_mod = opts.exec_mod or require "phanes.exec",
  }, Run)
  self.start, self.started_at = self.sys.now(), os.time()
  -- 2: the signal handler itself kills the running commands' process groups
  -- on the second Ctrl-C (a command with no output never gives us a turn).
  if self.sys.trap_signals then self.sys.trap_signals(2) end
  local exec = opts.exec or self.exec_mod.run
  self.run = self.context.new_run {
    exec = self:wrap_exec(exec), dry_run = opts.dry_run or false, config = opts.config,
    secrets = opts.secrets or {}, on_event = function(ev) self:on_event(ev) end,
    interrupted = function() return self:interrupted() end,
    on_log = function(level, module, msg) self:on_log(level, module, msg) end,
    hints = { units = unit_hints(self.state and self.state.data or opts.previous, self.mods) },
  }
  local results, code = {}, 0
  for i, mod in ipairs(self.mods) do
    local rec = self:module(i, mod)
    results[#results + 1] = rec
    if rec.status == "interrupted" or self:interrupted() > 0 then
      self:record(mod, rec)
      code = EXIT.interrupted
      break
    end
    self:record(mod, rec)
    if self.state_error then
      code = EXIT.failed
      break
    end
    if rec.status == "failed" then
      code = EXIT.failed
      if not self.keep_going then break end
    end
  end
  -- a run that wrote nothing yet writes once, for the time of this run
  if self.state and not self.dry_run and not self.state_error and self.state.finish then
    local ok, err = self.state:finish()
    if not ok then
      self:state_failed(err, "the run's time was not recorded")
      if code == EXIT.ok then code = EXIT.failed end
    end
  end
  for i = #results + 1, #self.mods do
    results[i] = { name = self.mods[i].name, status = "not run", changed = 0 }
  end
  if code == EXIT.interrupted and not self.json then
    local done = {}
    for _, r in ipairs(results) do
      if r.status ~= "interrupted" and r.status ~= "not run" and r.status ~= "failed" then
        done[#done + 1] = r.name
      end
    end
    local cur
    for _, r in ipairs(results) do if r.status == "interrupted" then cur = r end end
    self.out:error(string.format("interrupted%s; completed: %s%s",
      cur and (" during '" .. cur.name .. (self:interrupted() >= 2 and "' (its running command was killed)"
        or "' (stopped after its current resource)")) or "",
      #done > 0 and table.concat(done, ", ") or "none",
      (self.state and not self.dry_run) and (" (recorded in " .. self.state.path .. ")") or ""),
      "run the same command again to finish: completed modules are checked, not redone")
  end
  if not (self.json or self.out.quiet) then self:summary(results, code) end
  return code, self:report(results, code)
end

return M
