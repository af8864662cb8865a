-- serve/runs.lua: the runs of `phanes serve`. Each run is a child process
-- (`phanes --remote TARGET apply --modules ...`, the same binary), at most
-- one per host and `parallel` at once (the rest wait, queued). A run's
-- output is kept in memory while it matters and streamed to whoever tails
-- it; its record (<id>.json) and log (<id>.log) go to the state directory.
--
--   local runs = require("phanes.serve.runs").new { spawn = ..., exe = ..., dir = ..., parallel = 4 }
--   local run, busy = runs:submit { host = "web1", target = "web1", modules = { "baseline" } }
--   runs:on_output(run, 1, data) ; runs:tick()   -- from the server's loop
local json = require "phanes.json"
local EXIT = require "phanes.cli.exit"
local M = {}

local Runs = {}
Runs.__index = Runs

M.KEEP_LOGS = 20            -- finished runs whose log stays in memory
M.KEEP_RUNS = 200           -- runs listed by /api/runs
M.MAX_LOG = 4 * 1024 * 1024 -- bytes of log kept per run

local iso = require("phanes.engine.statefile").iso

local function hex(s) return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end

local function new_id()
  local ok, rnd = pcall(function() return require("phanes.http").random(4) end)
  return os.date("!%Y%m%dT%H%M%SZ") .. "-" .. hex(ok and rnd or string.format("%04d", math.random(0, 9999)))
end

-- o: spawn(argv, run) -> child | nil, err; argv(spec) -> argv; dir (records)
-- or nil; parallel; read_record(host) -> last.json table; status_path(host);
-- watch(child, run) / unwatch(child, run): the server's loop; record(run) ->
-- true | nil, err (a record_only run: the host's record, no child);
-- cleanup(run): after a run (its credentials' files).
function M.new(o)
  -- generation: bumped whenever a run is submitted, starts or ends (what
  -- the hosts' status shows changed)
  local self = setmetatable({ o = o, all = {}, order = {}, by_host = {}, queue = {}, running = 0, generation = 0 }, Runs)
  self.parallel = o.parallel or 4
  return self
end

function Runs:get(id) return self.all[id] end

-- the run holding host (queued or running), if any
function Runs:busy(host)
  local id = self.by_host[host]
  return id and self.all[id]
end

function Runs:active()
  return self.running + #self.queue
end

local function file_of(self, id, ext)
  return self.o.dir and (self.o.dir .. "/" .. id .. ext) or nil
end

-- What the API shows of a run (no log, no child).
function Runs:public(run)
  return {
    id = run.id, host = run.host, modules = json.array(run.modules), dry_run = run.dry_run,
    probe = run.probe or nil, record_only = run.record_only or nil,
    status = run.status, exit_code = run.exit_code, error = run.error,
    created_at = run.created_at, started_at = run.started_at, finished_at = run.finished_at,
    installed = run.installed and json.array(run.installed), skipped = run.skipped and json.array(run.skipped),
    failed = run.failed and json.array(run.failed), plan = run.plan and json.array(run.plan),
    status_path = run.status_path, log_path = run.log_path,
  }
end

function Runs:save(run)
  local path = file_of(self, run.id, ".json")
  if not path then return true end
  -- without fsync: the server's loop must not wait for a busy disk (a
  -- record lost in a crash is a run the next start does not list)
  return require("phanes.file").write(path, json.encode(self:public(run), { pretty = true }) .. "\n",
    { mode = tonumber("0600", 8), sync = false })
end

-- runs:submit(spec) -> run | nil, running_run
-- spec: host (the record's name), target, modules, dry_run, ssh (probe,
-- record_only, env, ...), cred (credentials from the vault: never saved)
function Runs:submit(spec)
  local cur = self:busy(spec.host)
  if cur then return nil, cur end
  local id = new_id()
  while self.all[id] do id = new_id() end
  local run = { id = id, host = spec.host, target = spec.target or spec.host, modules = spec.modules,
    dry_run = spec.dry_run or false, ssh = spec.ssh or {}, status = "queued", created_at = iso(),
    probe = spec.ssh and spec.ssh.probe or false, record_only = spec.ssh and spec.ssh.record_only or false,
    cred = spec.cred,
    chunks = {}, size = 0, stdout = {}, waiters = {}, streams = {},
    status_path = self.o.status_path and self.o.status_path(spec.host), log_path = file_of(self, id, ".log") }
  self.all[id] = run
  self.generation = self.generation + 1
  self.order[#self.order + 1] = run
  self.by_host[run.host] = id
  self.queue[#self.queue + 1] = run
  self:save(run)
  self:pump()
  return run
end

function Runs:pump()
  while self.running < self.parallel and #self.queue > 0 and not self.draining do
    self:launch(table.remove(self.queue, 1))
  end
end

function Runs:launch(run)
  run.started_at = iso()
  self.generation = self.generation + 1
  if run.record_only then
    local ok, rerr = (self.o.record or function() return nil, "no record writer" end)(run)
    return self:finish(run, ok and 0 or 1, nil, not ok and tostring(rerr) or nil)
  end
  local child, err = self.o.spawn(self.o.argv(run), run)
  if not child then
    self:append(run, "phanes serve: cannot start the run: " .. tostring(err) .. "\n")
    return self:finish(run, nil, nil, tostring(err))
  end
  run.child, run.status = child, "running"
  self.running = self.running + 1
  if self.o.watch then self.o.watch(child, run) end
  self:save(run)
end

-- Log text of a run: to memory (bounded) and to every tail.
function Runs:append(run, text)
  if run.size < M.MAX_LOG then
    if run.size + #text > M.MAX_LOG then text = text:sub(1, M.MAX_LOG - run.size) .. "\n[log truncated]\n" end
    run.chunks[#run.chunks + 1] = text
    run.size = run.size + #text
  end
  for _, s in ipairs(run.streams) do s.push(text) end
end

-- Output of a run's child: stream 1 (stdout) or 2 (stderr). A dry run's
-- stdout is its JSON plan, the rest is log.
function Runs:on_output(run, stream, data)
  if run.dry_run and stream == 1 then
    run.stdout[#run.stdout + 1] = data
  else
    self:append(run, data)
  end
end

local function last_error(run)
  local text = table.concat(run.chunks)
  local msg
  for line in text:gmatch "[^\n]+" do
    local m = line:match "phanes: (.*)$" or line:match "error: (.*)$"
    if m then msg = m end
  end
  return msg
end

-- A dry run's answer: the JSON report's "would change" resources.
local function dry_result(run)
  local report = json.decode(table.concat(run.stdout))
  run.stdout = {}
  if type(report) ~= "table" then return nil end
  local plan, installed, skipped, failed = {}, {}, {}, {}
  for _, m in ipairs(report.modules or {}) do
    local would = 0
    for _, r in ipairs(m.resources or {}) do
      if r.status == "would change" then
        would = would + 1
        plan[#plan + 1] = { module = m.name, resource = r.resource, target = r.target, message = r.message,
          diff = r.diff }
      end
    end
    if m.status == "failed" then failed[#failed + 1] = m.name
    elseif would > 0 or (m.changed or 0) > 0 then installed[#installed + 1] = m.name
    else skipped[#skipped + 1] = m.name end
  end
  run.plan, run.installed, run.skipped, run.failed = plan, installed, skipped, failed
  return #failed == 0 and report.exit_code == 0, #plan > 0
end

-- A real run's answer: the host's record (last.json) the run wrote.
local function applied_result(self, run)
  local rec = self.o.read_record and self.o.read_record(run.host)
  local installed, skipped, failed = {}, {}, {}
  for _, m in ipairs(type(rec) == "table" and rec.modules or {}) do
    if m.status == "failed" then failed[#failed + 1] = m.name
    elseif (m.changed or 0) > 0 or m.status == "changed" then installed[#installed + 1] = m.name
    else skipped[#skipped + 1] = m.name end
  end
  run.installed, run.skipped, run.failed = installed, skipped, failed
  return #installed > 0
end

-- The child is gone (code, or signal) or never started (err).
function Runs:finish(run, code, sig, err)
  if run.child then
    if self.o.unwatch then self.o.unwatch(run.child, run) end
    run.child = nil
    self.running = self.running - 1
  end
  if self.o.cleanup then self.o.cleanup(run) end
  run.cred = nil
  self.generation = self.generation + 1
  run.exit_code, run.signal, run.finished_at = code, sig, iso()
  local ok, changed = code == 0, false
  if run.probe or run.record_only then
    run.installed, run.skipped, run.failed = {}, {}, {}
    if run.record_only and ok then run.skipped = run.modules end
  elseif run.dry_run and code then
    local dok, would = dry_result(run)
    ok, changed = ok and dok ~= false, would
  elseif code then
    changed = applied_result(self, run)
  end
  if code == EXIT.interrupted or sig or run.interrupted then run.status = "interrupted"
  elseif not ok then run.status = "failed"
  elseif run.probe then run.status = "ok"
  elseif run.record_only then run.status = "recorded"
  elseif run.dry_run then run.status = changed and "planned" or "noop"
  else run.status = changed and "changed" or "noop" end
  if run.status ~= "noop" and run.status ~= "planned" and run.status ~= "changed" and run.status ~= "ok"
    and run.status ~= "recorded" then
    run.error = err or last_error(run) or ("the run exited with " .. (code and ("code " .. code) or ("signal " .. tostring(sig))))
  end
  if self.by_host[run.host] == run.id then self.by_host[run.host] = nil end
  self:save(run)
  if run.log_path then
    require("phanes.file").write(run.log_path, table.concat(run.chunks), { mode = tonumber("0600", 8), sync = false })
  end
  for _, s in ipairs(run.streams) do s.close() end
  run.streams = {}
  for _, w in ipairs(run.waiters) do w(run) end
  run.waiters = {}
  self:forget()
  self:pump()
end

-- Old finished runs: their logs leave memory (the file has them), the
-- oldest leave the list and the disk.
function Runs:forget()
  local finished = 0
  for i = #self.order, 1, -1 do
    local r = self.order[i]
    if r.finished_at then
      finished = finished + 1
      if finished > M.KEEP_LOGS and r.chunks then r.chunks, r.size, r.plan = nil, 0, nil end
    end
  end
  while #self.order > M.KEEP_RUNS and self.order[1].finished_at do
    local old = table.remove(self.order, 1)
    self.all[old.id] = nil
    -- its record and log go too, so the directory stays as bounded as the list
    for _, ext in ipairs { ".json", ".log" } do
      local path = file_of(self, old.id, ext)
      if path then require("phanes.file").remove(path) end
    end
  end
end

-- runs:log(run) -> the whole log so far (from the file once it left memory)
function Runs:log(run)
  if run.chunks then return table.concat(run.chunks) end
  return run.log_path and require("phanes.file").read(run.log_path) or ""
end

-- runs:interrupt(run, signal) -> true | nil, err: Ctrl-C for a running run,
-- removal for a queued one.
function Runs:interrupt(run, sig)
  if run.finished_at then return nil, "the run has finished" end
  run.interrupted = true
  if run.child then return run.child:kill(sig or require("phanes.http").signals.INT) end
  for i, r in ipairs(self.queue) do
    if r == run then table.remove(self.queue, i) break end
  end
  self:finish(run, nil, nil, "interrupted before it started")
  return true
end

-- runs:tick(): reap children whose exit came (called every loop step)
function Runs:tick()
  for _, run in ipairs(self.order) do
    local c = run.child
    if c and not c:fd(1) and not c:fd(2) then
      local code, sig = c:poll()
      if code or sig then self:finish(run, code, sig) end
    elseif c and run.kill_at and os.time() >= run.kill_at then
      c:kill(require("phanes.http").signals.KILL)
      run.kill_at = nil
    end
  end
end

-- runs:load(): the records of earlier runs; those a previous server left
-- running or queued are marked interrupted.
function Runs:load()
  local F = require "phanes.file"
  local dir = self.o.dir
  if not dir then return end
  local names = F.list(dir) or {}
  local recs = {}
  for _, n in ipairs(names) do
    if n:match "%.json$" then recs[#recs + 1] = n end
  end
  table.sort(recs)
  for i = math.max(1, #recs - M.KEEP_RUNS + 1), #recs do
    local rec = json.decode(F.read(dir .. "/" .. recs[i]) or "")
    if type(rec) == "table" and type(rec.id) == "string" and not self.all[rec.id] then
      local run = rec
      run.modules, run.waiters, run.streams = rec.modules or {}, {}, {}
      if rec.status == "running" or rec.status == "queued" then
        run.status, run.finished_at = "interrupted", run.finished_at or iso()
        run.error = "the server stopped during the run"
        self:save(run)
      end
      run.finished_at = run.finished_at or iso()
      self.all[run.id] = run
      self.order[#self.order + 1] = run
    end
  end
end

-- runs:drain(grace): no new runs start; queued ones are dropped, running
-- ones get SIGINT after grace seconds (SIGKILL 10 s later).
function Runs:drain(now, grace)
  if not self.draining then
    self.draining = now + grace
    while #self.queue > 0 do
      local r = table.remove(self.queue, 1)
      r.interrupted = true
      self:finish(r, nil, nil, "the server stopped before the run started")
    end
  end
  if now >= self.draining then
    for _, run in ipairs(self.order) do
      if run.child and not run.interrupted then
        self:interrupt(run)
        run.kill_at = os.time() + 10
      end
    end
  end
  return self.running == 0
end

return M
