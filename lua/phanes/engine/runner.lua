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
-- The runner subscribes to the run's event stream (context.lua): progress
-- from start/command/output/tick events, one line per result event. An
-- error reaches it as the errors.lua object the context made, is shown by
-- output.format_error and kept in the report (error = { message, kind, ... }).
--
-- Exit codes: 0 all ok, 1 a module failed, 130 interrupted (Ctrl-C: the run
-- stops after the current resource; a second Ctrl-C kills running commands).
-- Statuses per module: ok, noop, changed, would change, failed, skipped,
-- interrupted, not run. noop: a module with detect probes that changed
-- nothing (would change nothing) and whose probes all pass: the host
-- already has it, known to the state or not (Run:detect).
local output = require "phanes.engine.output"
local errors = require "phanes.engine.errors"
local EXIT = require "phanes.cli.exit"
local M = {}

local SPIN = { "|", "/", "-", "\\" }

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

-- The live line (terminal only): spinner, module, resource, the command
-- running and how long the step has taken, drawn from the step's first
-- moment and redrawn on each tick or output (at most every 0.1 s).
function Run:tick(force)
  if self.json or not self.out.tty or not self.current then return end
  local now = self.sys.now()
  if not force and self.last_tick and now - self.last_tick < 0.1 then return end
  self.last_tick = now
  local cur, step = self.current, self.current.step
  self.spin = (self.spin or 0) % #SPIN + 1
  local line = string.format("      %s %s", SPIN[self.spin], cur.name)
  if step then
    line = line .. " " .. step.resource .. (step.target and step.target ~= "" and (" " .. step.target) or "")
    if step.command then line = line .. "  $ " .. step.command end
  end
  local took = output.duration(now - (step and step.start or cur.start))
  local room = self.width - output.width(took) - 2
  if output.width(line) > room then line = line:sub(1, math.max(room - 3, 10)) .. "..." end
  self.out:progress(line .. "  " .. took)
end

-- Off a terminal: a step running over `still_running` seconds says so
-- (again every `still_running` seconds), so a log shows what it waits on.
function Run:still_running()
  local cur = self.current
  local step = cur and cur.step
  if self.json or self.out.tty or self.out.quiet or not step then return end
  local now = self.sys.now()
  if now - (step.said or step.start) < self.still_after then return end
  step.said = now
  self.out:say(string.format("      still running: %s %s%s%s (%s)", cur.name, step.resource,
    step.target and step.target ~= "" and (" " .. step.target) or "",
    step.command and ("  $ " .. step.command) or "", output.duration(now - step.start)))
end

local function command_line(ev)
  local text = ev.shell or table.concat(ev.argv or {}, " ")
  text = text:gsub("%s+", " ")
  return text
end

-- A line as a terminal leaves it: what follows its last carriage return
-- (apt's "Reading database ... 5%\r... 100%").
local function last_part(line)
  return (line:gsub("\r+$", "")):match "[^\r]*$"
end

-- -v: each command's output, live, indented under its resource (named
-- once, before its first line); verbose 2 (-vv) shows each command line too.
function Run:stream(ev)
  local cur = self.current
  local step = cur and cur.step
  if self.json or self.out.quiet or not self.verbose or not step then return end
  local level = self.verbose == true and 1 or tonumber(self.verbose) or 0
  if ev.type == "command" and level < 2 then return end
  local out = self.out
  out:clear_progress()
  if not step.headed then
    step.headed = true
    out:say("      ", out:paint("dim", step.resource .. (step.target and step.target ~= "" and (" " .. step.target) or "")))
  end
  if ev.type == "command" then return out:say("        ", out:paint("dim", "$ " .. command_line(ev))) end
  local text = (step.partial or "") .. tostring(ev.chunk or "")
  step.partial = text:match "[^\n]*$"
  for line in text:gmatch "([^\n]*)\n" do out:say("        ", last_part(line)) end
end

-- The runner's subscription to the run's event stream (context.lua).
function Run:on_event(ev)
  local t = ev.type
  if t == "result" then return self:on_result(ev) end
  local cur = self.current
  if not cur then return end
  if t == "start" then
    cur.step = { resource = ev.resource, target = ev.target, start = self.sys.now() }
    self:tick()
  elseif t == "command" then
    if cur.step then cur.step.command = command_line(ev) end
    self:stream(ev)
    self:tick(true)
  else -- output, tick: a turn while a command runs
    if t == "output" then self:stream(ev) end
    self:interrupted()
    self:tick()
    self:still_running()
  end
end

local CHANGED = { changed = true, ["would change"] = true }

function Run:on_result(ev)
  local cur = self.current
  if not cur then return end
  if cur.step and cur.step.partial and cur.step.partial ~= "" then -- -v: the output's last line, unended
    self.out:say("        ", last_part(cur.step.partial))
  end
  cur.step = nil
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
  -- off a terminal every resource says its line when it ends (no spinner there)
  if self.verbose or not out.tty or CHANGED[ev.status] or ev.status == "failed" or ev.status == "skipped" then
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
    self:tick()
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

-- A module that declares detect probes and changed nothing (would change
-- nothing): its probes are checked; all passing makes it "noop", with
-- rec.detected = { probes = n, checks = {...}, in_state = bool } (in_state:
-- the state of this run, or the one a dry run read, had it installed; nil
-- without a state). A module with a change is never noop: its changes show
-- as usual. A URL its own fetch.check found answering in this run is not
-- asked again, so a no-op apply spawns no process for it.
function Run:detect(mod, rec, section)
  if not mod.detect or rec.changed > 0 or self:interrupted() > 0 then return end
  rec.step = { resource = "detect", target = mod.name, start = self.sys.now() }
  local found = require("phanes.engine.detect").module(mod, section, self.run.exec, rec.resources)
  rec.step = nil
  if not (found and found.installed and #found.checks > 0) then return end
  local data = self.state and self.state.data or self.previous
  local known = type(data) == "table" and type(data.modules) == "table" and data.modules[mod.name]
  rec.status = "noop"
  rec.detected = { probes = #found.checks, checks = found.checks }
  if data then rec.detected.in_state = type(known) == "table" and known.status == "installed" end
end

-- "noop (detected: 3 probes passed)", and what the state will say when it
-- did not know the module.
function Run:say_detected(rec)
  local d, out = rec.detected, self.out
  local note = string.format("detected: %d probe%s passed", d.probes, d.probes == 1 and "" or "s")
  if d.in_state == false then
    note = note .. (self.dry_run and "; not in the state, an apply records it" or "; recorded in the state again")
  end
  out:say("      ", out:status "noop", " ", out:paint("dim", "(" .. note .. ")"))
end

-- Run one module: returns its result record.
function Run:module(i, mod)
  local out = self.out
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
    mod.apply(ctx, section or {})
    self:detect(mod, rec, section)
  end, errors.catch)
  rec.duration = self.sys.now() - rec.start
  self.current = nil
  out:clear_progress()
  if ok then
    if rec.changed > 0 then rec.status = self.dry_run and "would change" or "changed" end
    if rec.detected and not (self.json or out.quiet) then self:say_detected(rec) end
  elseif c.kind == "skip" then
    rec.status, rec.reason = "skipped", tostring(c.reason or "skipped")
    if not (self.json or out.quiet) then out:say("      ", out:status "skipped", ": ", c.reason) end
  elseif c.kind == "interrupted" or self:interrupted() > 0 then
    -- a failure after Ctrl-C is the interrupt's doing (a killed command)
    rec.status = "interrupted"
  else
    rec.status = "failed"
    rec.error = { message = output.format_error(c, mod.name), kind = c.kind, resource = c.resource,
      target = c.target, detail = c.detail, where = c.where,
      traceback = c.traceback and (c.message .. "\n" .. c.traceback) or nil }
    if not self.json then out:error(rec.error.message) end
  end
  return rec
end

-- The detect probes of mod for this run's config, as the state keeps them
-- (strings only), for `phanes status` without --config; nil without probes,
-- or when one of them would carry a secret (the state never holds one).
function Run:probes_of(mod)
  if not mod.detect then return nil end
  local p = require("phanes.engine.describe").probes(mod, self.config and self.config[mod.name])
  if type(p) ~= "table" then return nil end
  local out, clean = {}, true
  local function str(v)
    if type(v) ~= "string" then return nil end
    if self.out.mask(v) ~= v then clean = false end
    return v
  end
  for _, k in ipairs { "files", "dirs", "command" } do
    if type(p[k]) == "table" and #p[k] > 0 then
      out[k] = {}
      for _, v in ipairs(p[k]) do out[k][#out[k] + 1] = str(v) end
    end
  end
  out.url = str(p.url)
  if not clean or next(out) == nil then return nil end
  return out
end

-- Record a finished module in the state file (never in a dry run).
function Run:record(mod, rec)
  if self.dry_run or not self.state then return end
  local info
  if rec.status == "ok" or rec.status == "noop" or rec.status == "changed" then
    local hash = self.hash and self.hash(mod) or nil
    info = { status = "installed", version = mod.version, config_hash = hash }
  elseif rec.status == "failed" then
    info = { status = "failed", error = self.out.mask(rec.error.message:match "^[^\n]*") }
  else
    return
  end
  if info.status == "installed" then info.probes = self:probes_of(mod) end
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
      duration = r.duration, reason = r.reason, error = r.error, resources = arr(res), detected = r.detected,
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
    hash = opts.hash, profile = opts.profile, version = opts.version, previous = opts.previous,
    context = opts.context or require "phanes.engine.context",
    sys = opts.sys or require "phanes.sys",
    exec_mod = opts.exec_mod or require "phanes.exec",
  }, Run)
  self.start, self.started_at = self.sys.now(), os.time()
  -- 2: the signal handler itself kills the running commands' process groups
  -- on the second Ctrl-C (a command with no output never gives us a turn).
  if self.sys.trap_signals then self.sys.trap_signals(2) end
  local exec = opts.exec or self.exec_mod.run
  self.still_after = math.max(0.1, opts.still_running or tonumber(os.getenv "PHANES_STILL_RUNNING") or 10)
  self.width = tonumber(os.getenv "COLUMNS") or 100
  -- ticks from the real exec only (a transport may not know the option)
  local tick = opts.tick or (exec == self.exec_mod.run and not self.json
    and (self.out.tty and 0.1 or math.min(1, self.still_after / 2))) or nil
  self.run = self.context.new_run {
    exec = exec, tick = tick, dry_run = opts.dry_run or false, config = opts.config,
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
