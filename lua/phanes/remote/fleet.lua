-- remote/fleet.lua: several hosts at once. Each host is its own phanes
-- process (`phanes --remote NAME ...`, this binary re-invoked through
-- exec.spawn: an argv, no shell), at most --parallel of them at a time, all
-- waited on with one poll (exec.wait); their output is printed line by line
-- as it comes, prefixed by the host's name. Each child hands its result back
-- as JSON on its own pipe (fd 3, fleet.send_result): status, counts, reason,
-- the layers of the host's config. One failing host does not stop the
-- others. A summary table ends the run. With --json, stdout carries one
-- document for the whole fleet (fleet.document), whatever the number of
-- hosts, and the children's messages go to stderr, prefixed. A vault is
-- opened here once (password and KDF, fleet.vault_key) and each child gets
-- its key on stdin (PHANES_VAULT_KEY_FD=0; vault.handover, vault.handed_key).
--
-- Exit (fleet.exit_code): the worst of the hosts': 130 interrupted, 3 a host
-- unreachable (connection, authentication, sudo), 2 a host's config or the
-- command refused, 1 a host failed, 4 (--detailed-exitcode) changes
-- pending and none failed, 0 all ok.
--
--   phanes --remote @web --parallel 5 apply web --config web.yaml
--   phanes --remote @web apply web --config web.yaml --json | jq .exit_code
local util = require "phanes.remote.util"
local output = require "phanes.engine.output"
local EXIT = require "phanes.cli.exit"
local M = {}

local FORWARD = { "port", "user", "key", "password_env", "known_hosts", "timeout", "binary" }

-- fleet.child_argv(exe, target, o, rest) -> the argv of one host's child
function M.child_argv(exe, t, o, rest)
  local argv = { exe, "--remote", t.name }
  for _, k in ipairs(FORWARD) do
    if o[k] ~= nil then argv[#argv + 1] = "--" .. k:gsub("_", "-") .. "=" .. tostring(o[k]) end
  end
  if o.strict then argv[#argv + 1] = "--strict-host-keys" end
  for _, a in ipairs(rest) do argv[#argv + 1] = a end
  return argv
end

-- The child's side: its result (the run's record: status, counts, reason,
-- masked as the record is) as JSON on fd 3, when a fleet started it so.
--   fleet.send_result(rec, files)
-- files: the run's files; the config's entry names the layers of the
-- host's config (layers.remote_files).
function M.send_result(rec, files)
  if os.getenv "PHANES_RESULT_FD" ~= "3" then return end
  local out = {}
  for k, v in pairs(rec) do out[k] = v end
  for _, f in ipairs(files or {}) do
    if f.name:match "^config/" then out.config = { file = f.local_path, layers = f.layers } end
  end
  local ok, err = require("phanes.exec").write_result(require("phanes.json").encode(out))
  if not ok then io.stderr:write("phanes: cannot hand the result to the fleet: ", tostring(err), "\n") end
end

local function new_job(i, t, opts)
  local job = { index = i, target = t, stdout = {}, tail = {}, result = {} }
  local emit = function(line) if opts.on_line then opts.on_line(job, line) end end
  job.lines = util.liner(emit)
  job.errlines = util.liner(function(line)
    if #job.tail == 5 then table.remove(job.tail, 1) end
    job.tail[#job.tail + 1] = line
    emit(line)
  end)
  return job
end

local function start(job, exe, o, rest, opts)
  job.t0 = util.now()
  local p, err = require("phanes.exec").spawn { argv = M.child_argv(exe, job.target, o, rest), merge = not opts.split,
    result = true, stdin = opts.vault_key, env = { PHANES_NO_PROMPT = "1", PHANES_RESULT_FD = "3",
      PHANES_REMOTE_COLOR = opts.color and "1" or false, PHANES_VAULT_KEY_FD = opts.vault_key and "0" or false } }
  if not p then
    job.code, job.time = 70, 0
    job.lines.feed("phanes: " .. tostring(err) .. "\n")
    return nil
  end
  job.proc = p
  return p
end

local function finish(job, ev)
  job.code = ev.code or (128 + (ev.signal or 0))
  job.time = util.now() - job.t0
  job.lines.flush()
  job.errlines.flush()
  local text = table.concat(job.result)
  local v = text:match "%S" and require("phanes.json").decode(text)
  job.result = type(v) == "table" and v or nil
  job.proc:close()
  job.proc = nil
end

local function on_event(job, ev, split)
  if ev.kind == "exit" then finish(job, ev)
  elseif ev.kind == "result" then job.result[#job.result + 1] = ev.data
  elseif ev.kind == "stdout" and split then job.stdout[#job.stdout + 1] = ev.data
  elseif ev.kind == "stdout" then job.lines.feed(ev.data)
  else job.errlines.feed(ev.data) end
end

-- A Ctrl-C (trapped) goes on to every running child (each in its own
-- process group), which stops its remote run after the current step; a
-- second one disconnects them. No queued host starts after it.
local function forward_interrupts(state, running, queue)
  local sys = require "phanes.sys"
  local n = sys.interrupted and sys.interrupted() or 0
  if n <= state.seen then return end
  state.seen = n
  for _, job in ipairs(running) do job.proc:kill(2) end
  while #queue > 0 do
    local job = table.remove(queue, 1)
    job.code, job.time = 130, 0
    job.lines.feed "phanes: interrupted before it started\n"
    job.lines.flush()
  end
end

-- fleet.run_all(targets, o, rest, opts) -> jobs
-- Runs `EXE --remote NAME <forwarded options> REST...` per target, at most
-- o.parallel at a time. opts: exe (default this binary), split (the
-- child's stdout is kept whole in job.stdout; its stderr goes to
-- on_line), on_line(job, line) (each line of the merged output, or of
-- stderr when split), color, vault_key (fleet.vault_key: each child's stdin). Each job: target, code, time, stdout, stderr
-- (its last lines), result (what the child sent with send_result, or nil).
--   local jobs = fleet.run_all(targets, o, { "status", "--json" }, { split = true })
function M.run_all(targets, o, rest, opts)
  local exec, sys = require "phanes.exec", require "phanes.sys"
  local exe = opts.exe or sys.exe()
  local jobs, queue, running, state = {}, {}, {}, { seen = sys.interrupted and sys.interrupted() or 0 }
  for i, t in ipairs(targets) do
    jobs[i] = new_job(i, t, opts)
    queue[i] = jobs[i]
  end
  while #queue > 0 or #running > 0 do
    while #queue > 0 and #running < o.parallel do
      local job = table.remove(queue, 1)
      if start(job, exe, o, rest, opts) then running[#running + 1] = job end
    end
    local procs = {}
    for i, job in ipairs(running) do procs[i] = job.proc end
    local events, err = exec.wait(procs, 0.5)
    if not events then error("fleet: " .. tostring(err), 0) end
    for _, ev in ipairs(events) do on_event(running[ev.index], ev, opts.split) end
    for i = #running, 1, -1 do
      if not running[i].proc then table.remove(running, i) end
    end
    forward_interrupts(state, running, queue)
  end
  for _, job in ipairs(jobs) do
    job.stdout = table.concat(job.stdout)
    job.stderr = table.concat(job.tail, "\n")
  end
  return jobs
end

-- fleet.exit_code(codes) -> the fleet's exit code: the worst of the
-- hosts' (130, 3, 2, 1, 4, 0 in that order; any other failure counts as 1).
local RANK = { [130] = 6, [3] = 5, [2] = 4, [1] = 3, [4] = 2, [0] = 1 }
function M.exit_code(codes)
  local worst = 0
  for _, c in ipairs(codes) do
    if not RANK[c] then c = 1 end
    if RANK[c] > RANK[worst] then worst = c end
  end
  return worst
end

-- fleet.layers(result) -> "group_vars/web.yaml, host_vars/web1.yaml" | nil:
-- what the host's config has beyond config.yaml (sent by the child).
function M.layers(result)
  local names = result and result.config and result.config.layers
  if type(names) ~= "table" or #names == 0 then return nil end
  return table.concat(names, ", ")
end

local function summary(jobs)
  local rows, codes, any_layers = {}, {}, false
  for i, job in ipairs(jobs) do
    local rec = job.result
    local result = rec and rec.status or ("error (exit " .. tostring(job.code) .. ")")
    codes[i] = job.code
    any_layers = any_layers or M.layers(rec) ~= nil
    rows[i] = { job.target.name, result, rec and rec.changed or "-", rec and rec.failed or "-",
      output.duration(job.time or 0), M.layers(rec) or "config.yaml" }
  end
  local headers = { "host", "result", "changed", "failed", "time", "config" }
  if not any_layers then
    headers[6] = nil
    for _, r in ipairs(rows) do r[6] = nil end
  end
  io.stdout:write("\n")
  for _, line in ipairs(output.format_table(headers, rows)) do
    io.stdout:write(output.sanitize(line), "\n")
  end
  return M.exit_code(codes)
end

-- fleet.document(entries) -> { hosts = { [name] = value }, exit_code }
-- entries: { { name =, code =, value = table | nil, error = text | nil,
-- layers = text | nil } }. A host with a value shows it as is (plus
-- config_layers); one without shows { error, exit_code }. exit_code:
-- fleet.exit_code of the hosts' codes. One host or many, the same shape.
--   fleet.document { { name = "web1", code = 0, value = report },
--                    { name = "web2", code = 3, error = "web2:22: connect: timed out" } }
function M.document(entries)
  local hosts, codes = {}, {}
  for i, e in ipairs(entries) do
    local v
    if type(e.value) == "table" then
      v = e.value
    else
      v = { error = e.error or ("exit " .. tostring(e.code)), exit_code = e.code }
    end
    if e.layers then v.config_layers = e.layers end
    hosts[e.name] = v
    codes[i] = e.code
  end
  return { hosts = hosts, exit_code = M.exit_code(codes) }
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

-- fleet.is_fleet(spec, targets) -> true when the run is a fleet's: several
-- hosts, or a group or a list named (one host of @web too), so that --json
-- and the summary have one shape whatever the number of hosts.
function M.is_fleet(spec, targets)
  return #targets > 1 or (type(spec) == "string" and (spec:find("@", 1, true) == 1 or spec:find(",", 1, true) ~= nil))
end

local function prefixer(targets, stream)
  local width = 0
  for _, t in ipairs(targets) do width = math.max(width, #t.name) end
  return function(job, line)
    local name = job.target.name
    stream:write(name, string.rep(" ", width - #name), " | ", output.sanitize(line), "\n")
    stream:flush()
  end
end

-- The value of option name (--name V or --name=V) in rest, the last one.
function M.option_value(rest, name)
  local v
  for i, a in ipairs(rest) do
    if a == name then v = rest[i + 1] end
    local eq = a:sub(1, #name + 1) == name .. "=" and a:sub(#name + 2)
    v = eq or v
  end
  return v
end

-- fleet.vault_key(rest) -> what each child gets on stdin: the vault's key,
-- derived here once for the whole fleet (vault.handover) | nil (no config
-- or no vault) | nil, err (its password failed)
function M.vault_key(rest)
  local config = M.option_value(rest, "--config")
  if not config then return nil end
  return require("phanes.vault").handover { config = config,
    password_file = M.option_value(rest, "--vault-password-file") }
end

function M.main(targets, o, rest)
  local sys = require "phanes.sys"
  if sys.trap_signals then sys.trap_signals() end
  local json = M.wants_json(rest)
  local key, kerr = M.vault_key(rest)
  if kerr then
    io.stderr:write("phanes: ", output.sanitize(kerr), "\n")
    return EXIT.usage
  end
  local jobs = M.run_all(targets, o, rest, { split = json, color = not json and util.isatty(1),
    on_line = prefixer(targets, json and io.stderr or io.stdout), vault_key = key })
  if not json then return summary(jobs) end
  local entries = {}
  for i, job in ipairs(jobs) do
    local rec = job.result
    entries[i] = M.apply_entry(job.target.name, job.code, job.stdout, rec and rec.reason or M.last_error(job.stderr))
    entries[i].layers = rec and rec.config and rec.config.layers
  end
  local doc = M.document(entries)
  io.stdout:write(require("phanes.json").encode(doc, { pretty = true }), "\n")
  return doc.exit_code
end

return M
