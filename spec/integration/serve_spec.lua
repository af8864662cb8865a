-- phanes serve end to end against disposable test hosts: the server runs
-- as its own process on a free loopback port with a temporary HOME and an
-- inventory naming the hosts; curl drives the API as a client would (host
-- 1), Debian's chromium drives the dashboard (host 2, spec/web/). What an
-- install did is checked on the host itself.
local th = require "spec.support.testhost"
local runcli = require "spec.support.runcli"
local serveproc = require "spec.support.serveproc"
local json = require "phanes.json"

local BIN = th.bin()
local q = th.quote

local read = th.read
local write, sh = runcli.write, runcli.shell

describe("phanes serve", function()
  local ok_hosts, why = th.available()
  if not ok_hosts then
    pending(why)
    return
  end
  local home, key, base, token, srv

  -- curl(method, path[, opts]) -> status code, body (decoded JSON when it is JSON), raw body
  local function curl(...) return srv.curl(...) end

  local function post(body, t)
    return curl("POST", "/api/remote/install", { token = t == nil and token or t or nil, body = body })
  end

  local function serve_log() return srv.log() end

  local function host_file(path, i)
    local ok, out = th.exec(i or 1, "cat " .. path)
    return ok and out or nil
  end

  -- chromium, node and playwright-core, installed when missing (as root, as
  -- the test hosts need anyway): -> true | nil, why
  local function web_ready()
    local function has(cmd) return os.execute("command -v " .. cmd .. " >/dev/null 2>&1") end
    local apt = "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "
    if not has "chromium" then
      local out, code = sh(apt .. "chromium")
      if code ~= 0 then return nil, "installing chromium: " .. out end
    end
    if not has "node" or not has "npm" then
      local out, code = sh(apt .. "nodejs npm")
      if code ~= 0 then return nil, "installing nodejs and npm: " .. out end
    end
    if not read "spec/web/node_modules/playwright-core/package.json" then
      local out, code = sh("cd spec/web && npm install --no-audit --no-fund --loglevel=error")
      if code ~= 0 then return nil, "npm install in spec/web: " .. out end
    end
    return true
  end

  setup(function()
    th.up(2)
    key = th.key()
    home = require("spec.support.fakeexec").tmpdir()
    assert(os.execute("mkdir -p " .. q(home .. "/.config/phanes")))
    write(home .. "/.config/phanes/inventory.yaml", table.concat({
      "default: th1", "hosts:",
      string.format("  th1: { address: %s, user: root, key: %s }", th.ip(1), key),
      string.format("  th2: { address: %s, user: root, key: %s }", th.ip(2), key),
      string.format("  gone: { address: %s, user: root, key: %s }", (th.ip(1):gsub("%d+$", "250")), key),
    }, "\n") .. "\n")
    write(home .. "/config.yaml", "timezone: UTC\nlocale: C.UTF-8\n")
    srv = serveproc.start(home, "--parallel 2 --max-body 4096 --grace 5 --config " .. q(home .. "/config.yaml"))
    base, token = srv.base, srv.token
  end)

  teardown(function()
    if srv then srv.stop() end
    th.down()
    if home then require("spec.support.fakeexec").rmtree(home) end
  end)

  it("creates its token 0600 and logs one line per request, never the token", function()
    local st = require("phanes.file").stat(home .. "/.config/phanes/serve.token")
    assert.equal(tonumber("0600", 8), st.mode & 4095)
    assert.equal(64, #token)
    local code, doc = curl("GET", "/api/health")
    assert.equal(200, code)
    assert.equal("ok", doc.status)
    assert.matches("GET /api/health 200 [%d%.]+ms", serve_log())
  end)

  it("lists the modules as `phanes list --json` does", function()
    local code, doc = curl("GET", "/api/remote/modules")
    assert.equal(200, code)
    local names = {}
    for _, m in ipairs(doc.modules) do names[m.name] = true end
    assert.is_true(names.baseline)
    local listed = json.decode((sh("HOME=" .. q(home) .. " " .. q(BIN) .. " list --json 2>/dev/null")))
    assert.equal(#listed.modules, #doc.modules)
  end)

  it("refuses: no token 401, wrong token 401, bad JSON 400, unknown module 400, unknown host 404, too large 413", function()
    local body = '{"host":"th1","modules":["baseline"]}'
    local code, doc = post(body, false)
    assert.equal(401, code)
    assert.matches("missing bearer token", doc.error)
    code, doc = post(body, string.rep("0", 64))
    assert.equal(401, code)
    assert.equal("wrong bearer token", doc.error)
    code, doc = post('{"host":"th1","modules":["baseline"]')
    assert.equal(400, code)
    assert.matches("^body: invalid JSON", doc.error)
    code, doc = post('{"host":"th1","modules":["baseline","nosuch"]}')
    assert.equal(400, code)
    assert.matches("^modules%[2%]: unknown module 'nosuch'", doc.error)
    code, doc = post('{"host":"nosuch","modules":["baseline"]}')
    assert.equal(404, code)
    assert.matches("unknown host 'nosuch'; known hosts: gone, th1", doc.error)
    code = post('{"host":"th1","modules":["baseline"],"pad":"' .. string.rep("x", 5000) .. '"}')
    assert.equal(413, code)
    assert.equal(401, (curl("DELETE", "/api/runs/x")))
    assert.is_nil(serve_log():find(token, 1, true))
  end)

  it("plans a dry run without touching the host", function()
    local code, doc = post('{"host":"th1","modules":["baseline"],"dry_run":true}')
    assert.equal(200, code, serve_log())
    assert.equal("planned", doc.status, json.encode(doc))
    assert.is_true(#doc.plan > 0)
    assert.equal("baseline", doc.plan[1].module)
    assert.is_nil(host_file "/var/lib/phanes/state.json")
  end)

  it("installs (202, 409 while busy, the log live until the end), then answers noop", function()
    local code, doc = post('{"host":"th1","modules":["baseline"],"wait":false}')
    assert.equal(202, code)
    local id = doc.run_id
    assert.equal("running", doc.status)
    -- the log, tailed from now on, ends when the run does
    local tail = assert(io.popen("curl -sN --max-time 600 " .. q(base .. "/api/runs/" .. id .. "/log")
      .. " -H 'Accept: text/event-stream'"))
    local busy, bdoc = post('{"host":"th1","modules":["baseline"]}')
    assert.equal(409, busy)
    assert.equal(id, bdoc.run_id)
    local stream = tail:read "a"
    tail:close()
    assert.matches("data: %[1/1%] baseline", stream)
    assert.matches("event: end\ndata: {[^\n]*\"status\":\"changed\"", stream)
    local _, run = curl("GET", "/api/runs/" .. id)
    assert.equal("changed", run.status, json.encode(run))
    assert.same({ "baseline" }, run.installed)
    -- on the host: the state file phanes keeps there, and the timezone
    local state = json.decode(host_file "/var/lib/phanes/state.json")
    assert.is_truthy(state.modules.baseline)
    assert.equal("UTC\n", host_file "/etc/timezone")
    -- the log file of the run holds what was streamed
    assert.matches("%[1/1%] baseline", read(run.log_path))
    code, doc = post('{"host":"th1","modules":["baseline"]}')
    assert.equal(200, code)
    assert.equal("noop", doc.status, json.encode(doc))
    assert.same({ "baseline" }, doc.skipped)
    assert.same({}, doc.installed)
  end)

  it("shows the hosts' last status and a host's manifest, exactly the file", function()
    local code, doc = curl("GET", "/api/remote/status")
    assert.equal(200, code)
    local th1
    for _, h in ipairs(doc.hosts) do if h.name == "th1" then th1 = h end end
    assert.equal("ok", th1.last_status)
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT", th1.last_seen)
    assert.is_truthy(th1.version)
    local raw
    code, _, raw = curl("GET", "/api/remote/status?host=th1")
    assert.equal(200, code)
    assert.equal(read(home .. "/.local/state/phanes/hosts/th1/last.json"), raw)
    assert.equal(404, (curl("GET", "/api/remote/status?host=gone")))
  end)

  it("finishes a run whose client hung up", function()
    -- the connect to "gone" takes its 2 s timeout; the client leaves after 0.5 s
    local out = sh("curl -s -m 0.5 -H " .. q("Authorization: Bearer " .. token) .. " -d "
      .. q('{"host":"gone","modules":["baseline"],"ssh":{"connect_timeout":2}}') .. " " .. q(base .. "/api/remote/install"))
    assert.equal("", out)
    local _, list = curl("GET", "/api/runs")
    local run = list.runs[1]
    assert.equal("gone", run.host)
    assert.is_nil(run.finished_at)
    for _ = 1, 300 do
      if run.finished_at then break end
      os.execute "sleep 0.2"
      _, run = curl("GET", "/api/runs/" .. run.id)
    end
    assert.equal("failed", run.status, json.encode(run))
    assert.equal(3, run.exit_code)
    assert.matches(":22: connect", run.error)
  end)

  it("interrupts a run on DELETE", function()
    local code, doc = post('{"host":"gone","modules":["baseline"],"wait":false,"ssh":{"connect_timeout":20}}')
    assert.equal(202, code)
    local id = doc.run_id
    code, doc = curl("DELETE", "/api/runs/" .. id, { token = token })
    assert.equal(202, code)
    local run = doc
    for _ = 1, 300 do
      if run.finished_at then break end
      os.execute "sleep 0.2"
      _, run = curl("GET", "/api/runs/" .. id)
    end
    assert.equal("interrupted", run.status, json.encode(run))
    assert.equal(409, (curl("DELETE", "/api/runs/" .. id, { token = token })))
  end)

  it("answers while a run to an unreachable host fails", function()
    local code, doc = post('{"host":"gone","modules":["baseline"],"ssh":{"connect_timeout":2}}')
    assert.equal(200, code)
    assert.equal("failed", doc.status)
    assert.equal(3, doc.exit_code)
    assert.matches(":22: connect", doc.error)
    assert.equal(200, (curl("GET", "/api/health")))
  end)

  it("dashboard: plans, applies with a live log, shows the host's new status (headless chromium)", function()
    assert(web_ready())
    local profile = home .. "/chromium-profile"
    assert(os.execute("mkdir -p " .. q(profile)))
    local out = sh("node spec/web/dashboard.mjs " .. table.concat({ q(base), q(token), "th2", "baseline", q(profile) }, " "))
    local seen = json.decode(out:match "({[^\n]*})%s*$" or "")
    assert(type(seen) == "table", out)
    assert.is_nil(seen.error, out)
    assert.equal("never", seen.status_before)
    assert.equal("planned", seen.plan_status, out)
    assert.is_true(seen.plan_rows > 0)
    assert.equal("streaming…", seen.log_while_running) -- the log arrived before the run ended
    assert.equal("changed", seen.run_status, out)
    assert.matches("%[1/1%] baseline", seen.log)
    assert.equal("changed", seen.status_after)
    assert.same({}, seen.errors)
    -- the host itself: what the dashboard applied is there
    local state = json.decode(host_file("/var/lib/phanes/state.json", 2))
    assert.is_truthy(state.modules.baseline)
  end)

  it("stops on SIGTERM, interrupting a run after the grace period, and exits 0", function()
    local code, doc = post('{"host":"th1","modules":["baseline"],"wait":false}')
    assert.equal(202, code)
    local id = doc.run_id
    assert(os.execute("pkill -TERM -P " .. srv.pid))
    local exit
    for _ = 1, 600 do
      exit = srv.exited()
      if exit then break end
      os.execute "sleep 0.1"
    end
    assert.equal("0\n", exit, serve_log())
    assert.matches("stopping: 1 run%(s%) may finish for 5s", serve_log())
    local rec = json.decode(read(home .. "/.local/state/phanes/serve/runs/" .. id .. ".json"))
    assert.is_truthy(rec.status == "noop" or rec.status == "interrupted", rec.status)
  end)
end)
