-- serve/api.lua: the endpoints of `phanes serve` (routing and the token are
-- checked before, in serve/app.lua). POST /api/remote/install waits for its
-- run unless the body says "wait": false (then 202 with the run id at
-- once); the server keeps serving meanwhile. A dry run always waits and
-- answers its plan.
--
-- ctx: runs (serve/runs.lua), modules_doc, known (module name set),
-- resolve_host(name) -> { name } | nil, status, message, hosts() -> names,
-- secret(key, host) -> credentials | nil, status, message (the vault),
-- read_record(name), status_path(name), asset(name) -> text, now(), version.
local json = require "phanes.json"
local validate = require "phanes.serve.validate"
local app -- serve/app.lua, required late (it requires this file)
local M = {}

local Api = {}
Api.__index = Api

M.HEARTBEAT = 15 -- seconds between SSE comments, so a gone client is noticed
M.TAIL_IDLE = 86400 -- a log tail may stay quiet this long (the server's timeout is for requests)
-- The hosts' list is made again at most this often (seconds), and whenever
-- a run of this server starts or ends: reading the inventory and every
-- host's record for each request made a busy dashboard wait on the disk.
M.STATUS_TTL = 1

function M.new(ctx)
  return setmetatable({ ctx = ctx, tails = {} }, Api)
end

local function reply(req, status, doc, headers)
  app = app or require "phanes.serve.app"
  return app.json_reply(req, status, doc, headers)
end

local function fail(req, status, msg, extra)
  app = app or require "phanes.serve.app"
  return app.error_reply(req, status, msg, extra)
end

local TYPES = { html = "text/html; charset=utf-8", js = "text/javascript; charset=utf-8", css = "text/css; charset=utf-8",
  svg = "image/svg+xml" }
local CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
  .. "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

local function static(self, req, name)
  local text = self.ctx.asset(name)
  if not text then return fail(req, 404, "no such file: /web/" .. name) end
  return req:respond(200, { ["Content-Type"] = TYPES[name:match "%.(%w+)$"] or "application/octet-stream",
    ["Content-Security-Policy"] = CSP, ["X-Frame-Options"] = "DENY", ["Referrer-Policy"] = "no-referrer",
    ["Cache-Control"] = "no-cache" }, text)
end

function Api:dashboard(req) return static(self, req, "index.html") end
function Api:asset(req, _, name) return static(self, req, name) end

function Api:health(req)
  local r = self.ctx.runs
  return reply(req, 200, { status = r.draining and "stopping" or "ok", version = self.ctx.version,
    running = r.running, queued = #r.queue, parallel = r.parallel })
end

function Api:openapi(req)
  return reply(req, 200, require("phanes.serve.openapi").document(self.ctx.version))
end

function Api:modules(req)
  return reply(req, 200, self.ctx.modules_doc)
end

-- The answer to an install: the run's outcome so far.
function M.answer(runs, run)
  local p = runs:public(run)
  return { status = p.status, run_id = p.id, host = p.host, dry_run = p.dry_run, modules = p.modules,
    installed = p.installed or json.array(), skipped = p.skipped or json.array(), failed = p.failed or json.array(),
    plan = run.dry_run and (p.plan or json.array()) or json.null, exit_code = p.exit_code, error = p.error,
    status_path = p.status_path, log_path = p.log_path }
end

function Api:install(req, info)
  local ctx = self.ctx
  local body, err = validate.install(info.body, ctx.known)
  if not body then return fail(req, 400, err) end
  if body.ssh.probe and body.ssh.user and not body.host:find("@", 1, true) then
    return fail(req, 400, "ssh.user: a probe takes the user in host (user@address)")
  end
  local host, status, msg = ctx.resolve_host(body.host)
  if not host then return fail(req, status, msg) end
  if ctx.runs.draining then return fail(req, 503, "the server is stopping; no new runs") end
  local busy = ctx.runs:busy(host.name)
  if busy then
    return fail(req, 409, string.format("host %s is busy with run %s", host.name, busy.id), { run_id = busy.id })
  end
  local cred
  if body.secrets and not body.ssh.record_only then
    if not ctx.secret then return fail(req, 500, "secrets: this server has no vault") end
    local cstatus, cmsg
    cred, cstatus, cmsg = ctx.secret(body.secrets.key, host.name)
    if not cred then return fail(req, cstatus, cmsg) end
  end
  local run, cur = ctx.runs:submit { host = host.name, target = body.host, modules = body.modules,
    dry_run = body.dry_run, ssh = body.ssh, cred = cred }
  if not run then
    return fail(req, 409, string.format("host %s is busy with run %s", host.name, cur.id), { run_id = cur.id })
  end
  if run.finished_at then return reply(req, 200, M.answer(ctx.runs, run)) end
  if body.wait or body.dry_run then
    run.waiters[#run.waiters + 1] = function(r) reply(req, 200, M.answer(ctx.runs, r)) end
    return
  end
  return reply(req, 202, M.answer(ctx.runs, run), { Location = "/api/runs/" .. run.id })
end

local function host_entry(self, name, entry)
  local rec = self.ctx.read_record(name)
  local busy = self.ctx.runs:busy(name)
  local h = { name = name, address = entry and entry.address, user = entry and entry.user,
    groups = entry and entry.groups and json.array(entry.groups), running = busy and busy.id or nil }
  if type(rec) == "table" then
    h.last_status, h.exit_code, h.reason = rec.status, rec.exit_code, rec.reason
    h.last_seen = rec.finished_at or rec.started_at
    h.version = rec.phanes_version
    h.os = type(rec.remote) == "table" and rec.remote.os or nil
    h.changed, h.failed = rec.changed, rec.failed
  end
  return h
end

function Api:status(req, info)
  local name = info.params.host
  if name then
    if not name:match "^[%w%.@:%[%]_%-]+$" then return fail(req, 400, "host: expected a host name") end
    local text = require("phanes.file").read(self.ctx.status_path(name))
    if not text then return fail(req, 404, "no record for host '" .. name .. "': no run recorded yet") end
    return req:respond(200, { ["Content-Type"] = "application/json" }, text)
  end
  local now, gen, c = self.ctx.now(), self.ctx.runs.generation or 0, self.status_cache
  if not (c and c.gen == gen and now >= c.at and now - c.at < M.STATUS_TTL) then
    local hosts = {}
    for _, h in ipairs(self.ctx.hosts()) do hosts[#hosts + 1] = host_entry(self, h.name, h.entry) end
    c = { gen = gen, at = now, body = json.encode({ hosts = json.array(hosts) }, { pretty = true }) .. "\n" }
    self.status_cache = c
  end
  return req:respond(200, { ["Content-Type"] = "application/json" }, c.body)
end

function Api:runs(req)
  local list = {}
  local order = self.ctx.runs.order
  for i = #order, 1, -1 do list[#list + 1] = self.ctx.runs:public(order[i]) end
  return reply(req, 200, { runs = json.array(list) })
end

function Api:run(req, _, id)
  local run = self.ctx.runs:get(id)
  if not run then return fail(req, 404, "no run " .. id) end
  return reply(req, 200, self.ctx.runs:public(run))
end

function Api:cancel(req, _, id)
  local runs = self.ctx.runs
  local run = runs:get(id)
  if not run then return fail(req, 404, "no run " .. id) end
  local ok, err = runs:interrupt(run)
  if not ok then return fail(req, 409, "run " .. id .. ": " .. tostring(err)) end
  return reply(req, 202, runs:public(run))
end

-- A tail of a run's log: SSE (one `data:` line per log line, `event: end`
-- with the run at the end) or chunked plain text.
local function tail(req, sse, runs, run)
  local partial = ""
  local t = { req = req, sse = sse }
  local function send(text)
    if t.dead then return end
    if not req:send(text) then t.dead = true end
  end
  function t.push(text)
    if not sse then return send(text) end
    local out = {}
    partial = partial .. text
    for line in partial:gmatch "([^\n]*)\n" do out[#out + 1] = "data: " .. line:gsub("\r", "") .. "\n" end
    partial = partial:match "([^\n]*)$"
    if #out > 0 then send(table.concat(out) .. "\n") end
  end
  function t.close()
    if sse then
      if partial ~= "" then t.push("\n") end
      send("event: end\ndata: " .. json.encode(runs:public(run)) .. "\n\n")
    end
    req:finish()
    t.dead = true
  end
  return t
end

function Api:log(req, info, id)
  local runs = self.ctx.runs
  local run = runs:get(id)
  if not run then return fail(req, 404, "no run " .. id) end
  local sse = (info.headers.accept or ""):find("text/event-stream", 1, true) ~= nil or info.params.format == "sse"
  req:start(200, { ["Content-Type"] = sse and "text/event-stream" or "text/plain; charset=utf-8",
    ["Cache-Control"] = "no-store", ["X-Content-Type-Options"] = "nosniff" }, M.TAIL_IDLE)
  local t = tail(req, sse, runs, run)
  if sse then req:send("retry: 3000\n\n") end
  local backlog = runs:log(run)
  if backlog ~= "" then t.push(backlog) end
  if run.finished_at then return t.close() end
  run.streams[#run.streams + 1] = t
  self.tails[#self.tails + 1] = { t = t, run = run }
end

-- Every few seconds: SSE comments keep proxies open and reveal gone clients,
-- whose tails are dropped.
function Api:heartbeat(now)
  if (self.last_beat or 0) + M.HEARTBEAT > now then return end
  self.last_beat = now
  local keep = {}
  for _, e in ipairs(self.tails) do
    if not e.t.dead and e.t.sse and not e.run.finished_at and not e.t.req:send(": ping\n\n") then e.t.dead = true end
    if e.t.dead or e.run.finished_at then
      for i, s in ipairs(e.run.streams) do
        if s == e.t then table.remove(e.run.streams, i) break end
      end
      if not e.t.dead then e.t.close() end
    else
      keep[#keep + 1] = e
    end
  end
  self.tails = keep
end

return M
