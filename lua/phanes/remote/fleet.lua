-- remote/fleet.lua: several hosts at once. Each host is its own phanes
-- process (`phanes --remote NAME ...`, this binary re-invoked), at most
-- --parallel of them at a time; their output is read as it grows and
-- printed line by line, prefixed by the host's name. One failing host does
-- not stop the others. A summary table ends the run; exit 1 if any failed.
-- With --json, stdout carries one document for the whole fleet (see
-- fleet.document) and the children's messages go to stderr, prefixed.
--
--   phanes --remote @web --parallel 5 apply web --config web.yaml
--   phanes --remote @web apply web --config web.yaml --json | jq .exit_code
local util = require "phanes.remote.util"
local EXIT = require "phanes.cli.exit"
local M = {}

local FORWARD = { "port", "user", "key", "password_env", "known_hosts", "timeout" }

local function child_command(exe, t, o, rest, job, color)
  local q = util.shquote
  local words = { q(exe), "--remote", q(t.name) }
  for _, k in ipairs(FORWARD) do
    if o[k] ~= nil then words[#words + 1] = "--" .. k:gsub("_", "-") .. "=" .. q(tostring(o[k])) end
  end
  if o.strict then words[#words + 1] = "--strict-host-keys" end
  for _, a in ipairs(rest) do words[#words + 1] = q(a) end
  local env = "PHANES_NO_PROMPT=1" .. (color and " PHANES_REMOTE_COLOR=1" or "")
  local redirect = ">" .. q(job.out) .. " 2>" .. (job.err and q(job.err) or "&1")
  -- `trap :` (a handler, not an ignore) lets the shell outlive a Ctrl-C
  -- and still write the exit code; phanes itself stops its remote run.
  return string.format("trap : INT TERM; %s %s </dev/null %s; echo $? >%s",
    env, table.concat(words, " "), redirect, q(job.rc))
end

local function tmpdir()
  return assert(require("phanes.file").mkdtemp())
end

local function read_all(path) return (require("phanes.file").read(path)) end

local function start(job, exe, o, rest, dir, split, color)
  job.out = dir .. "/" .. job.index .. ".out"
  job.err = split and (dir .. "/" .. job.index .. ".err") or nil
  job.rc = dir .. "/" .. job.index .. ".rc"
  job.t0 = util.now()
  job.proc = io.popen(child_command(exe, job.target, o, rest, job, color), "r")
end

-- Hand over what the child wrote since last time (whole stdout kept when
-- split, else lines); true when it has finished.
local function drain(job)
  if not job.fo then job.fo = io.open(job.out, "rb") end
  if job.fo then
    local chunk = job.fo:read "a"
    if chunk and chunk ~= "" then
      if job.err then job.stdout[#job.stdout + 1] = chunk else job.lines.feed(chunk) end
    end
  end
  if job.err then
    if not job.fe then job.fe = io.open(job.err, "rb") end
    if job.fe then
      local chunk = job.fe:read "a"
      if chunk and chunk ~= "" then job.errlines.feed(chunk) end
    end
  end
end

local function poll(job)
  drain(job)
  local rc = read_all(job.rc)
  if not rc or rc == "" then return false end
  job.code = tonumber(rc:match "%d+") or EXIT.failed
  job.time = util.now() - job.t0
  drain(job)
  for _, h in ipairs { "fo", "fe" } do
    if job[h] then job[h]:close() end
  end
  job.lines.flush()
  job.errlines.flush()
  job.stdout = table.concat(job.stdout)
  job.proc:close()
  return true
end

-- fleet.run_all(targets, o, rest, opts) -> jobs
-- Runs `EXE --remote NAME <forwarded options> REST...` per target, at most
-- o.parallel at a time. opts: exe (default this binary), split (the
-- child's stdout is kept whole in job.stdout; its stderr goes to
-- on_err), on_line(job, line) (each line of the merged output, or of
-- stderr when split), color. Each job: target, code, time, stdout, stderr
-- (its last lines when split).
--   local jobs = fleet.run_all(targets, o, { "status", "--json" }, { split = true })
function M.run_all(targets, o, rest, opts)
  local sys = require "phanes.sys"
  local exe, dir = opts.exe or sys.exe(), tmpdir()
  local jobs, queue, running, active = {}, {}, 0, {}
  for i, t in ipairs(targets) do
    local job = { index = i, target = t, stdout = {}, tail = {} }
    local emit = function(line) if opts.on_line then opts.on_line(job, line) end end
    job.lines = util.liner(emit)
    job.errlines = util.liner(function(line)
      if #job.tail == 5 then table.remove(job.tail, 1) end
      job.tail[#job.tail + 1] = line
      emit(line)
    end)
    jobs[i], queue[#queue + 1] = job, job
  end
  while #queue > 0 or running > 0 do
    while #queue > 0 and running < o.parallel do
      local job = table.remove(queue, 1)
      start(job, exe, o, rest, dir, opts.split, opts.color)
      active[job], running = true, running + 1
    end
    for job in pairs(active) do
      if poll(job) then active[job], running = nil, running - 1 end
    end
    if running > 0 then sys.sleep(0.03) end
  end
  require("phanes.file").remove(dir, true)
  for _, job in ipairs(jobs) do job.stderr = table.concat(job.tail, "\n") end
  return jobs
end

local function duration(s)
  if s < 10 then return string.format("%.1fs", s) end
  if s < 60 then return string.format("%ds", math.floor(s + 0.5)) end
  return string.format("%dm%02ds", math.floor(s / 60), math.floor(s % 60))
end

function M.format_table(headers, rows)
  local widths = {}
  for _, r in ipairs({ headers, table.unpack(rows) }) do
    for i, c in ipairs(r) do widths[i] = math.max(widths[i] or 0, #tostring(c)) end
  end
  local lines = {}
  for _, r in ipairs({ headers, table.unpack(rows) }) do
    local cells = {}
    for i, c in ipairs(r) do cells[i] = tostring(c) .. string.rep(" ", widths[i] - #tostring(c)) end
    lines[#lines + 1] = (table.concat(cells, "  "):gsub("%s+$", ""))
  end
  return lines
end

-- The controller's record of this run of a host (nil when it is older).
local function this_run(name, started)
  local rec = util.read_record(name)
  if rec and (rec.started_at or "") < started then rec = nil end
  return rec
end

local function summary(jobs, started)
  local rows, failed = {}, false
  for _, job in ipairs(jobs) do
    local rec = this_run(job.target.name, started)
    local result = rec and rec.status or ("error (exit " .. tostring(job.code) .. ")")
    if job.code ~= 0 then failed = true end
    rows[#rows + 1] = { job.target.name, result, rec and rec.changed or "-", rec and rec.failed or "-", duration(job.time or 0) }
  end
  io.stdout:write("\n")
  for _, line in ipairs(M.format_table({ "host", "result", "changed", "failed", "time" }, rows)) do
    io.stdout:write(line, "\n")
  end
  return failed and EXIT.failed or EXIT.ok
end

-- fleet.document(entries) -> { hosts = { [name] = value }, exit_code = 0|1 }
-- entries: { { name =, code =, value = table | nil, error = text | nil } }.
-- A host with a value shows it as is; one without shows { error, exit_code }.
-- exit_code is 1 when any host's code is not 0, as for the fleet's run.
--   fleet.document { { name = "web1", code = 0, value = report },
--                    { name = "web2", code = 3, error = "web2:22: connect: timed out" } }
function M.document(entries)
  local hosts, code = {}, 0
  for _, e in ipairs(entries) do
    if type(e.value) == "table" then
      hosts[e.name] = e.value
    else
      hosts[e.name] = { error = e.error or ("exit " .. tostring(e.code)), exit_code = e.code }
    end
    if e.code ~= EXIT.ok then code = EXIT.failed end
  end
  return { hosts = hosts, exit_code = code }
end

-- The last "phanes: ..." line a child printed, as an error message.
function M.last_error(text)
  local last
  for line in (text or ""):gmatch "[^\n]+" do
    local m = line:match "^phanes: (.*)$"
    if m then last = m end
  end
  if not last then last = (text or ""):match "([^\n]+)%s*$" end
  return last
end

-- fleet.apply_entry(name, code, stdout, reason) -> entry for fleet.document:
-- the host's JSON report when its stdout holds one, else the reason.
function M.apply_entry(name, code, stdout, reason)
  local v = stdout and stdout:match "%S" and require("phanes.json").decode(stdout)
  if type(v) == "table" then return { name = name, code = code, value = v } end
  return { name = name, code = code, error = reason or "no report (exit " .. tostring(code) .. ")" }
end

function M.wants_json(rest)
  for _, a in ipairs(rest) do
    if a == "--json" then return true end
  end
  return false
end

local function prefixer(targets, stream)
  local width = 0
  for _, t in ipairs(targets) do width = math.max(width, #t.name) end
  return function(job, line)
    local name = job.target.name
    stream:write(name, string.rep(" ", width - #name), " | ", require("phanes.engine.output").sanitize(line), "\n")
    stream:flush()
  end
end

function M.main(targets, o, rest)
  local sys = require "phanes.sys"
  if sys.trap_signals then sys.trap_signals() end
  local started = util.iso()
  local json = M.wants_json(rest)
  local jobs = M.run_all(targets, o, rest, { split = json, color = not json and util.isatty(1),
    on_line = prefixer(targets, json and io.stderr or io.stdout) })
  if not json then return summary(jobs, started) end
  local entries = {}
  for i, job in ipairs(jobs) do
    local rec = this_run(job.target.name, started)
    entries[i] = M.apply_entry(job.target.name, job.code, job.stdout, rec and rec.reason or M.last_error(job.stderr))
  end
  local doc = M.document(entries)
  io.stdout:write(require("phanes.json").encode(doc, { pretty = true }), "\n")
  return doc.exit_code
end

return M
