-- remote/fleet.lua: several hosts at once. Each host is its own phanes
-- process (`phanes --remote NAME ...`, this binary re-invoked), at most
-- --parallel of them at a time; their output is read as it grows and
-- printed line by line, prefixed by the host's name. One failing host does
-- not stop the others. A summary table ends the run; exit 1 if any failed.
--
--   phanes --remote @web --parallel 5 apply web --config web.yaml
local util = require "phanes.remote.util"
local M = {}

local FORWARD = { "port", "user", "key", "password_env", "known_hosts", "timeout" }

local function child_command(exe, t, o, rest, log, rc)
  local q = util.shquote
  local words = { q(exe), "--remote", q(t.name) }
  for _, k in ipairs(FORWARD) do
    if o[k] ~= nil then words[#words + 1] = "--" .. k:gsub("_", "-") .. "=" .. q(tostring(o[k])) end
  end
  if o.strict then words[#words + 1] = "--strict-host-keys" end
  for _, a in ipairs(rest) do words[#words + 1] = q(a) end
  local env = "PHANES_NO_PROMPT=1" .. (util.isatty(1) and " PHANES_REMOTE_COLOR=1" or "")
  -- `trap :` (a handler, not an ignore) lets the shell outlive a Ctrl-C
  -- and still write the exit code; phanes itself stops its remote run.
  return string.format("trap : INT TERM; %s %s </dev/null >%s 2>&1; echo $? >%s",
    env, table.concat(words, " "), q(log), q(rc))
end

local function tmpdir()
  local path = os.tmpname()
  os.remove(path)
  assert(require("phanes.file").mkdir(path, { mode = tonumber("0700", 8) }))
  return path
end

local function read_all(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read "a"
  f:close()
  return s
end

local function start(job, exe, o, rest, dir)
  job.log = dir .. "/" .. job.index .. ".log"
  job.rc = dir .. "/" .. job.index .. ".rc"
  job.t0 = util.now()
  job.proc = io.popen(child_command(exe, job.target, o, rest, job.log, job.rc), "r")
end

-- Print what the child wrote since last time; true when it has finished.
local function poll(job, width)
  if not job.fh then job.fh = io.open(job.log, "rb") end
  if job.fh then
    local chunk = job.fh:read "a"
    if chunk and chunk ~= "" then job.lines.feed(chunk) end
  end
  local rc = read_all(job.rc)
  if not rc or rc == "" then return false end
  job.code = tonumber(rc:match "%d+") or 1
  job.time = util.now() - job.t0
  if job.fh then
    local rest = job.fh:read "a"
    if rest and rest ~= "" then job.lines.feed(rest) end
    job.fh:close()
  end
  job.lines.flush()
  job.proc:close()
  return true
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

local function summary(jobs, started)
  local rows, failed = {}, false
  for _, job in ipairs(jobs) do
    local rec = util.read_record(job.target.name)
    if rec and (rec.started_at or "") < started then rec = nil end
    local result = rec and rec.status or ("error (exit " .. tostring(job.code) .. ")")
    if job.code ~= 0 then failed = true end
    rows[#rows + 1] = { job.target.name, result, rec and rec.changed or "-", rec and rec.failed or "-", duration(job.time or 0) }
  end
  io.stdout:write("\n")
  for _, line in ipairs(M.format_table({ "host", "result", "changed", "failed", "time" }, rows)) do
    io.stdout:write(line, "\n")
  end
  return failed and 1 or 0
end

function M.main(targets, o, argv)
  local sys = require "phanes.sys"
  local _, rest = require("phanes.remote").parse_args(argv)
  if sys.trap_signals then sys.trap_signals() end
  local exe, dir, started = sys.exe(), tmpdir(), util.iso()
  local width = 0
  for _, t in ipairs(targets) do width = math.max(width, #t.name) end
  local jobs, queue, running = {}, {}, 0
  for i, t in ipairs(targets) do
    local job = { index = i, target = t }
    local prefix = t.name .. string.rep(" ", width - #t.name) .. " | "
    job.lines = util.liner(function(line) io.stdout:write(prefix, line, "\n") io.stdout:flush() end)
    jobs[i], queue[#queue + 1] = job, job
  end
  local active = {}
  while #queue > 0 or running > 0 do
    while #queue > 0 and running < o.parallel do
      local job = table.remove(queue, 1)
      start(job, exe, o, rest, dir)
      active[job], running = true, running + 1
    end
    for job in pairs(active) do
      if poll(job, width) then active[job], running = nil, running - 1 end
    end
    if running > 0 then sys.sleep(0.03) end
  end
  require("phanes.file").remove(dir, true)
  return summary(jobs, started)
end

return M
