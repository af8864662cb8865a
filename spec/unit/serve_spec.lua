-- phanes serve: the C server (phanes.http) against curl on loopback, and the
-- app (routing, token, JSON validation, runs) with request objects and
-- children standing in for the network and for remote runs.
local http = require "phanes.http"
local json = require "phanes.json"

local TOKEN = string.rep("ab12", 16)

local function tmpdir()
  return assert(require("phanes.file").mkdtemp("/tmp/phanes-serve-spec-"))
end

-- A request object as phanes.http gives one, recording what was answered.
local function fake_req()
  local r = { chunks = {} }
  function r:respond(status, headers, body)
    assert(not self.status, "answered twice")
    self.status, self.headers, self.body = status, headers, body
    return true
  end
  function r:start(status, headers) self.status, self.headers, self.started = status, headers, true return true end
  function r:send(data) self.chunks[#self.chunks + 1] = data return true end
  function r:finish() self.finished = true end
  function r:gone() return false end
  function r:doc() return json.decode(self.body) end
  return r
end

-- A child process standing in for `phanes --remote ... apply`.
local function fake_child()
  local c = { open = { true, true }, signals = {} }
  function c:fd(s) return self.open[s] and (100 + s) or nil end
  function c:read() return nil end
  function c:close(s) self.open[s] = false end
  function c:poll() return self.code, self.signal end
  function c:kill(sig) self.signals[#self.signals + 1] = sig return true end
  function c:exit(code)
    self.open = { false, false }
    self.code = code
  end
  return c
end

local function new_app(o)
  o = o or {}
  local children, logs, records = {}, {}, o.records or {}
  local runs = require("phanes.serve.runs").new { parallel = o.parallel or 4,
    argv = function(run) return { "phanes", "--remote", run.target } end,
    spawn = function(argv, run)
      local c = fake_child()
      c.argv, c.cred = argv, run and run.cred
      children[#children + 1] = c
      return c
    end,
    cleanup = function(run) if run.cred then logs[#logs + 1] = "cleanup " .. run.id end end,
    record = function(run)
      records[run.host] = { status = "recorded", modules = run.modules }
      return true
    end,
    read_record = function(host) return records[host] end,
    status_path = function(host) return "/state/" .. host .. "/last.json" end }
  local ctx = { token = TOKEN, loopback = o.loopback ~= false, now = os.clock, version = "test",
    log = function(line) logs[#logs + 1] = line end,
    modules_doc = { modules = json.array { { name = "baseline" }, { name = "docker" } } },
    known = { baseline = true, docker = true }, runs = runs,
    secret = function(key, host)
      if key == "ssh.web1" then return { private_key = "KEYTEXT-" .. host } end
      return nil, 400, "secrets.key: no key '" .. key .. "' in the vault"
    end,
    resolve_host = function(name)
      if name == "web1" or name == "web2" or name:find "@" then return { name = name } end
      return nil, 404, "unknown host '" .. name .. "'; known hosts: web1, web2"
    end,
    hosts = function() return { { name = "web1", entry = { address = "10.0.0.1" } }, { name = "web2" } } end,
    read_record = function(host) return records[host] end,
    status_path = function(host) return "/state/" .. host .. "/last.json" end,
    asset = function(name) return name == "index.html" and "<!doctype html>" or nil end }
  local app = require("phanes.serve.app").new(ctx)
  local function call(method, path, body, headers)
    local req = fake_req()
    local q = path:match "%?(.*)$" or ""
    app:handle(req, { method = method, path = path:gsub("%?.*$", ""), query = q, body = body or "",
      headers = headers or { host = "127.0.0.1:8001" }, peer = "127.0.0.1" })
    return req
  end
  local auth = { authorization = "Bearer " .. TOKEN, host = "127.0.0.1:8001" }
  return { app = app, call = call, auth = auth, children = children, logs = logs, runs = runs, records = records }
end

describe("phanes.http", function()
  -- Runs curl through http.spawn while the server steps; returns its output.
  local function curl(srv, args)
    local argv = { "curl", "-s", "-S", "--max-time", "20" }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    local c <close> = assert(http.spawn { argv = argv })
    local out, fd = {}, c:fd(1)
    srv:watch(fd)
    local deadline = os.time() + 30
    while os.time() < deadline do
      srv:step(0.05)
      local d = c:read(1)
      if d == nil then break end
      out[#out + 1] = d
    end
    srv:unwatch(fd)
    c:close(1)
    local code
    repeat code = c:poll() until code or os.time() > deadline
    return table.concat(out), code
  end

  it("serves a request to the Lua callback and answers what it returns", function()
    local srv <close> = assert(http.server { max_body = 64 })
    local port = assert(srv:listen("127.0.0.1", 0))
    assert.is_true(port > 0)
    local seen
    srv:handle(function(req, info)
      seen = info
      req:respond(201, { ["Content-Type"] = "text/plain", ["X-Test"] = "yes" }, "made\n")
    end)
    local out, code = curl(srv, { "-i", "-X", "POST", "-H", "X-Thing: 7", "--data-binary", "hello",
      "http://127.0.0.1:" .. port .. "/a/b?x=1&y=2" })
    assert.equal(0, code)
    assert.matches("^HTTP/1.1 201", out)
    assert.matches("X%-Test: yes", out)
    assert.matches("made\n$", out)
    assert.equal("POST", seen.method)
    assert.equal("/a/b", seen.path)
    assert.equal("x=1&y=2", seen.query)
    assert.equal("hello", seen.body)
    assert.equal("7", seen.headers["x-thing"])
    assert.equal("127.0.0.1", seen.peer)
  end)

  it("answers 413 to a body over the limit, without calling Lua", function()
    local srv <close> = assert(http.server { max_body = 64 })
    local port = assert(srv:listen("127.0.0.1", 0))
    local called = false
    srv:handle(function(req) called = true req:respond(200, {}, "") end)
    local out = curl(srv, { "-o", "/dev/null", "-w", "%{http_code}", "--data-binary", string.rep("x", 65),
      "http://127.0.0.1:" .. port .. "/" })
    assert.equal("413", out)
    assert.is_false(called)
  end)

  it("streams a chunked reply across steps, and a raising callback answers 500", function()
    local srv <close> = assert(http.server {})
    local port = assert(srv:listen("127.0.0.1", 0))
    local stream
    srv:handle(function(req, info)
      if info.path == "/boom" then error("boom") end
      req:start(200, { ["Content-Type"] = "text/event-stream" })
      stream = { req = req, n = 0 }
    end)
    local c <close> = assert(http.spawn { argv = { "curl", "-sN", "http://127.0.0.1:" .. port .. "/s" } })
    srv:watch(c:fd(1))
    local out = {}
    for _ = 1, 400 do
      srv:step(0.02)
      if stream and stream.n < 3 then
        stream.n = stream.n + 1
        assert(stream.req:send("data: " .. stream.n .. "\n\n"))
        if stream.n == 3 then stream.req:finish() end
      end
      local d = c:read(1)
      if d == nil then break end
      out[#out + 1] = d
    end
    srv:unwatch(c:fd(1))
    assert.equal("data: 1\n\ndata: 2\n\ndata: 3\n\n", table.concat(out))
    local code = curl(srv, { "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:" .. port .. "/boom" })
    assert.equal("500", code)
  end)

  it("keeps a quiet stream past the server's timeout when start says so", function()
    local srv <close> = assert(http.server { timeout = 1 })
    local port = assert(srv:listen("127.0.0.1", 0))
    local streams = {}
    srv:handle(function(req, info)
      req:start(200, {}, info.path == "/long" and 30 or nil)
      streams[info.path] = req
    end)
    local argv = { "sh", "-c", "curl -sN -m 20 http://127.0.0.1:" .. port .. "/long; echo; curl -sN -m 20 http://127.0.0.1:" .. port .. "/short" }
    local c <close> = assert(http.spawn { argv = argv })
    local sys = require "phanes.sys"
    local out, t0 = {}, nil
    while true do
      srv:step(0.05)
      for path, req in pairs(streams) do
        t0 = t0 or sys.now()
        if sys.now() - t0 > 2 then
          req:send(path == "/long" and "still here" or "too late")
          req:finish()
          streams[path], t0 = nil, nil
        end
      end
      local d = c:read(1)
      if d == nil then break end
      out[#out + 1] = d
    end
    assert.equal("still here\n", table.concat(out))
  end)

  it("refuses a port in use with the address in the message; close twice is fine", function()
    local a = assert(http.server {})
    local port = assert(a:listen("127.0.0.1", 0))
    local b <close> = assert(http.server {})
    local ok, err = b:listen("127.0.0.1", port)
    assert.is_nil(ok)
    assert.matches("cannot listen on 127%.0%.0%.1:" .. port, err)
    a:close()
    a:close()
    assert.has_error(function() a:step(0) end, "http: the server is closed")
  end)

  it("spawn reports a missing program, reads both streams, and kills the group", function()
    local c, err = http.spawn { argv = { "/nonexistent/prog" } }
    assert.is_nil(c)
    assert.matches("/nonexistent/prog: No such file", err)
    local k <close> = assert(http.spawn { argv = { "sleep", "30" } })
    assert.is_nil(k:poll())
    assert(k:kill(http.signals.TERM))
    local code, sig
    for _ = 1, 200 do
      code, sig = k:poll()
      if code or sig then break end
      require("phanes.sys").sleep(0.01)
    end
    assert.equal(http.signals.TERM, sig)
  end)

  it("speaks TLS with a certificate and key, and names a bad key file", function()
    local d = tmpdir()
    local cert, key = d .. "/cert.pem", d .. "/key.pem"
    assert(os.execute("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost -keyout "
      .. key .. " -out " .. cert .. " >/dev/null 2>&1"))
    local srv <close> = assert(http.server {})
    local ok, err = srv:tls(cert, d .. "/missing.pem")
    assert.is_nil(ok)
    assert.matches("http: loading the key " .. d:gsub("%p", "%%%0") .. "/missing%.pem: ", err)
    local tls <close> = assert(http.server {})
    assert(tls:tls(cert, key))
    local port = assert(tls:listen("127.0.0.1", 0))
    tls:handle(function(req) req:respond(200, {}, "secure\n") end)
    assert.equal("secure\n", (curl(tls, { "--cacert", cert, "https://localhost:" .. port .. "/" })))
    assert.equal("000", (curl(tls, { "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:" .. port .. "/" })))
    require("phanes.file").remove(d, true)
  end)

  it("compares tokens in full and makes random ones", function()
    assert.is_true(http.equal("abc", "abc"))
    assert.is_false(http.equal("abc", "abd"))
    assert.is_false(http.equal("abc", "abcd"))
    assert.is_false(http.equal("", "a"))
    assert.equal(32, #http.random(32))
    assert.are_not.equal(http.random(16), http.random(16))
  end)
end)

describe("phanes serve token", function()
  local token = require "phanes.serve.token"
  local F = require "phanes.file"

  it("is created once, 0600, and read back; a readable file is refused", function()
    local d = tmpdir()
    local path = d .. "/conf/serve.token"
    local tok, created = assert(token.load(path, true))
    assert.is_true(created)
    assert.matches("^%x+$", tok)
    assert.equal(64, #tok)
    assert.equal(tonumber("0600", 8), F.stat(path).mode & 4095)
    local again, created2 = assert(token.load(path, true))
    assert.equal(tok, again)
    assert.is_false(created2)
    assert(F.chmod(path, tonumber("0644", 8)))
    local no, err = token.load(path, true)
    assert.is_nil(no)
    assert.matches("chmod 600", err)
    F.remove(d, true)
  end)

  it("checks the Authorization header", function()
    assert.is_true(token.check({ authorization = "Bearer " .. TOKEN }, TOKEN))
    local ok, status, msg = token.check({}, TOKEN)
    assert.is_nil(ok)
    assert.equal(401, status)
    assert.matches("missing bearer token", msg)
    _, status, msg = token.check({ authorization = "Bearer nope" }, TOKEN)
    assert.equal(401, status)
    assert.equal("wrong bearer token", msg)
    _, _, msg = token.check({ authorization = "Basic xyz" }, TOKEN)
    assert.matches("malformed", msg)
  end)
end)

describe("file.write without fsync (run records)", function()
  it("writes the same bytes and mode, atomically, with sync = false", function()
    local F = require "phanes.file"
    local dir = tmpdir()
    assert(F.write(dir .. "/r.json", "one\n", { mode = tonumber("0600", 8), sync = false }))
    assert(F.write(dir .. "/r.json", "two\n", { sync = false }))
    assert.equal("two\n", F.read(dir .. "/r.json"))
    assert.equal(tonumber("0600", 8), F.stat(dir .. "/r.json").mode & 4095)
    assert.same({ "r.json" }, F.list(dir))
    F.remove(dir, true)
  end)
end)

describe("phanes serve validation", function()
  local validate = require "phanes.serve.validate"
  local known = { baseline = true, docker = true }
  local function bad(body, pattern)
    local v, err = validate.install(body, known)
    assert.is_nil(v, body)
    assert.matches(pattern, err)
  end

  it("takes a well-formed install and its defaults", function()
    local v = assert(validate.install('{"host":"web1","modules":["baseline","docker","baseline"],'
      .. '"ssh":{"user":"deploy","port":2222,"identity":"/root/.ssh/id","connect_timeout":5}}', known))
    assert.same({ "baseline", "docker" }, v.modules)
    assert.is_false(v.dry_run)
    assert.is_true(v.wait)
    assert.same({ user = "deploy", port = 2222, identity = "/root/.ssh/id", connect_timeout = 5, probe = false,
      record_only = false }, v.ssh)
    assert.is_nil(v.secrets)
  end)

  it("takes secrets from the vault, PHANES_* settings, a probe without modules, record_only", function()
    local v = assert(validate.install('{"host":"web1","modules":["baseline"],"secrets":{"provider":"vault",'
      .. '"key":"ssh.web1"},"ssh":{"env":{"PHANES_TIMEZONE":"Europe/Berlin"}}}', known))
    assert.same({ provider = "vault", key = "ssh.web1" }, v.secrets)
    assert.same({ PHANES_TIMEZONE = "Europe/Berlin" }, v.ssh.env)
    v = assert(validate.install('{"host":"web1","ssh":{"probe":true}}', known))
    assert.same({}, v.modules)
    assert.is_true(v.ssh.probe)
    v = assert(validate.install('{"host":"web1","modules":["baseline"],"ssh":{"record_only":true}}', known))
    assert.is_true(v.ssh.record_only)
  end)

  it("names the field of every error", function()
    bad("", "^body: expected a JSON object")
    bad("{", "^body: invalid JSON")
    bad("[]", "^body: expected a JSON object")
    bad('{"host":"web1","modules":{"a":1}}', "^modules: ")
    bad('{"host":"web1","modules":["baseline"],"ssh":[]}', "^ssh: expected an object")
    bad('{"modules":["baseline"]}', "^host: ")
    bad('{"host":"a b","modules":["baseline"]}', "^host: ")
    bad('{"host":"--dry-run","modules":["baseline"]}', "^host: ")
    bad('{"host":"web1"}', "^modules: ")
    bad('{"host":"web1","modules":[]}', "^modules: ")
    bad('{"host":"web1","modules":[1]}', "^modules%[1%]: expected a module name")
    bad('{"host":"web1","modules":["baseline","nope"]}', "^modules%[2%]: unknown module 'nope' %(known: baseline, docker%)")
    bad('{"host":"web1","modules":["baseline"],"dry_run":"yes"}', "^dry_run: expected true or false")
    bad('{"host":"web1","modules":["baseline"],"extra":1}', "^extra: unknown field")
    bad('{"host":"web1","modules":["baseline"],"ssh":{"port":0}}', "^ssh%.port: ")
    bad('{"host":"web1","modules":["baseline"],"ssh":{"port":22.5}}', "^ssh%.port: ")
    bad('{"host":"web1","modules":["baseline"],"ssh":{"user":"a;b"}}', "^ssh%.user: ")
    bad('{"host":"web1","modules":["baseline"],"ssh":{"identity":"rel/key"}}', "^ssh%.identity: ")
    bad('{"host":"web1","modules":["baseline"],"ssh":{"connect_timeout":-1}}', "^ssh%.connect_timeout: ")
    bad('{"host":"web1","modules":["baseline"],"ssh":{"pw":"x"}}', "^ssh%.pw: unknown field")
    bad('{"host":"web1","modules":["baseline"],"secrets":{"provider":"x","key":"a"}}', '^secrets%.provider: expected "vault"')
    bad('{"host":"web1","modules":["baseline"],"secrets":{"provider":"vault"}}', "^secrets%.key: ")
    bad('{"host":"web1","modules":["baseline"],"secrets":{"provider":"vault","key":"a..b"}}', "^secrets%.key: ")
    bad('{"host":"web1","modules":["baseline"],"secrets":{"provider":"vault","key":"a","pw":1}}', "^secrets%.pw: unknown field")
    bad('{"host":"web1","modules":["baseline"],"secrets":"k"}', "^secrets: expected an object")
    bad('{"host":"web1","modules":["baseline"],"ssh":{"env":{"PATH":"/x"}}}', "^ssh%.env%.PATH: expected a PHANES_%* variable")
    bad('{"host":"web1","modules":["baseline"],"ssh":{"env":{"PHANES_KEY_PASSPHRASE":"x"}}}', "^ssh%.env%.PHANES_KEY_PASSPHRASE: not a setting")
    bad('{"host":"web1","modules":["baseline"],"ssh":{"env":{"PHANES_X":1}}}', "^ssh%.env%.PHANES_X: expected a string")
    bad('{"host":"web1","modules":["baseline"],"ssh":{"env":[]}}', "^ssh%.env: expected an object")
    bad('{"host":"web1","modules":["baseline"],"ssh":{"probe":"yes"}}', "^ssh%.probe: expected true or false")
    bad('{"host":"web1","modules":["baseline"],"ssh":{"probe":true,"record_only":true}}', "^ssh%.probe: not with ssh%.record_only")
    bad('{"host":"web1","modules":["baseline"],"dry_run":true,"ssh":{"record_only":true}}', "^dry_run: not with ssh%.record_only")
    bad('{"host":"web1","ssh":{"record_only":true}}', "^modules: ")
  end)
end)

describe("phanes serve app", function()
  it("routes: 404, 405, the dashboard, health and modules without a token on loopback", function()
    local s = new_app()
    assert.equal(404, s.call("GET", "/nope").status)
    local r = s.call("PUT", "/api/remote/install")
    assert.equal(405, r.status)
    assert.matches("use POST", r:doc().error)
    r = s.call("GET", "/")
    assert.equal(200, r.status)
    assert.matches("^text/html", r.headers["Content-Type"])
    assert.is_truthy(r.headers["Content-Security-Policy"])
    assert.equal("ok", s.call("GET", "/api/health"):doc().status)
    assert.equal("docker", s.call("GET", "/api/remote/modules"):doc().modules[2].name)
    assert.equal("3.0.3", s.call("GET", "/api/openapi.json"):doc().openapi)
  end)

  it("wants the token for every non-GET, for a foreign Host, and for everything off loopback", function()
    local s = new_app()
    local body = '{"host":"web1","modules":["baseline"]}'
    local r = s.call("POST", "/api/remote/install", body)
    assert.equal(401, r.status)
    assert.matches("Bearer", r.headers["WWW-Authenticate"])
    r = s.call("POST", "/api/remote/install", body, { authorization = "Bearer wrong", host = "127.0.0.1" })
    assert.equal(401, r.status)
    assert.equal("wrong bearer token", r:doc().error)
    assert.equal(401, s.call("DELETE", "/api/runs/x").status)
    assert.equal(401, s.call("GET", "/api/health", nil, { host = "evil.example:8001" }).status)
    local off = new_app { loopback = false }
    assert.equal(401, off.call("GET", "/api/remote/status").status)
    assert.equal(200, off.call("GET", "/api/remote/status", nil, off.auth).status)
    -- one line per request: method, path, status, time; never the token or the body
    for _, line in ipairs(s.logs) do
      assert.matches("^%S+ %u+ /%S* %d%d%d [%d%.]+ms ", line)
      assert.is_nil(line:find(TOKEN, 1, true))
      assert.is_nil(line:find("baseline", 1, true))
    end
    assert.equal(4, #s.logs)
  end)

  it("answers 400 naming the field, 404 for an unknown host", function()
    local s = new_app()
    local r = s.call("POST", "/api/remote/install", "{nope", s.auth)
    assert.equal(400, r.status)
    assert.matches("^body: invalid JSON", r:doc().error)
    r = s.call("POST", "/api/remote/install", '{"host":"web1","modules":["nginx"]}', s.auth)
    assert.equal(400, r.status)
    assert.matches("^modules%[1%]: unknown module 'nginx'", r:doc().error)
    r = s.call("POST", "/api/remote/install", '{"host":"web9","modules":["baseline"]}', s.auth)
    assert.equal(404, r.status)
    assert.matches("unknown host 'web9'", r:doc().error)
    assert.equal(0, #s.children)
  end)

  it("record_only records the host and starts nothing; secrets reach the child and are cleaned up", function()
    local s = new_app()
    local r = s.call("POST", "/api/remote/install", '{"host":"web1","modules":["baseline"],"ssh":{"record_only":true}}', s.auth)
    assert.equal(200, r.status)
    assert.equal("recorded", r:doc().status)
    assert.same({ "baseline" }, r:doc().skipped)
    assert.equal(0, #s.children)
    assert.equal("recorded", s.records.web1.status)
    r = s.call("POST", "/api/remote/install", '{"host":"web1","modules":["baseline"],"secrets":{"provider":"vault","key":"nope"}}', s.auth)
    assert.equal(400, r.status)
    assert.matches("^secrets%.key: no key 'nope'", r:doc().error)
    assert.equal(0, #s.children)
    r = s.call("POST", "/api/remote/install", '{"host":"web1","modules":["baseline"],"wait":false,'
      .. '"secrets":{"provider":"vault","key":"ssh.web1"}}', s.auth)
    assert.equal(202, r.status)
    assert.equal("KEYTEXT-web1", s.children[1].cred.private_key)
    assert.is_nil(r.body:find("KEYTEXT", 1, true))
    s.children[1]:exit(0)
    s.runs:tick()
    local run = s.runs:get(r:doc().run_id)
    assert.is_nil(run.cred)
    assert.equal("cleanup " .. run.id, s.logs[#s.logs])
  end)

  it("a probe answers ok or failed, with no module outcome", function()
    local s = new_app()
    local r = s.call("POST", "/api/remote/install", '{"host":"web1","ssh":{"probe":true},"wait":false}', s.auth)
    assert.equal(202, r.status)
    s.children[1]:exit(0)
    s.runs:tick()
    local run = s.runs:get(r:doc().run_id)
    assert.equal("ok", run.status)
    assert.is_true(s.runs:public(run).probe)
    r = s.call("POST", "/api/remote/install", '{"host":"web1","ssh":{"probe":true,"user":"x"}}', s.auth)
    assert.equal(400, r.status)
    assert.matches("^ssh%.user: a probe takes the user in host", r:doc().error)
  end)

  it("runs one install per host: 202 at once, 409 with the running id, then noop", function()
    local s = new_app()
    local r = s.call("POST", "/api/remote/install", '{"host":"web1","modules":["baseline"],"wait":false}', s.auth)
    assert.equal(202, r.status)
    local id = r:doc().run_id
    assert.equal("running", r:doc().status)
    assert.same({ "phanes", "--remote", "web1" }, s.children[1].argv)
    local busy = s.call("POST", "/api/remote/install", '{"host":"web1","modules":["docker"]}', s.auth)
    assert.equal(409, busy.status)
    assert.equal(id, busy:doc().run_id)
    -- another host is not held up
    local other = s.call("POST", "/api/remote/install", '{"host":"web2","modules":["baseline"]}', s.auth)
    assert.is_nil(other.status) -- waits for its run
    s.records.web1 = { status = "changed", modules = { { name = "baseline", status = "ok", changed = 3 } } }
    s.children[1]:exit(0)
    s.runs:tick()
    local run = s.call("GET", "/api/runs/" .. id):doc()
    assert.equal("changed", run.status)
    assert.same({ "baseline" }, run.installed)
    s.records.web2 = { status = "ok", modules = { { name = "baseline", status = "ok", changed = 0 } } }
    s.children[2]:exit(0)
    s.runs:tick()
    assert.equal(200, other.status)
    assert.equal("noop", other:doc().status)
    assert.same({ "baseline" }, other:doc().skipped)
    assert.equal("/state/web2/last.json", other:doc().status_path)
    -- the host is free again: a second install of the same modules is a noop too
    s.records.web1 = { status = "ok", modules = { { name = "baseline", status = "ok", changed = 0 } } }
    local again = s.call("POST", "/api/remote/install", '{"host":"web1","modules":["baseline"]}', s.auth)
    s.children[3]:exit(0)
    s.runs:tick()
    assert.equal("noop", again:doc().status)
  end)

  it("queues beyond --parallel, interrupts with SIGINT, reports a failed run's error", function()
    local s = new_app { parallel = 1 }
    local a = s.call("POST", "/api/remote/install", '{"host":"web1","modules":["baseline"],"wait":false}', s.auth):doc()
    local b = s.call("POST", "/api/remote/install", '{"host":"web2","modules":["baseline"],"wait":false}', s.auth):doc()
    assert.equal("running", a.status)
    assert.equal("queued", b.status)
    assert.equal(1, #s.children)
    local r = s.call("DELETE", "/api/runs/" .. a.run_id, nil, s.auth)
    assert.equal(202, r.status)
    assert.same({ http.signals.INT }, s.children[1].signals)
    s.runs:on_output(s.runs:get(a.run_id), 2, "phanes: interrupted\n")
    s.children[1]:exit(130)
    s.runs:tick()
    assert.equal("interrupted", s.call("GET", "/api/runs/" .. a.run_id):doc().status)
    assert.equal(2, #s.children) -- the queued run started
    s.runs:on_output(s.runs:get(b.run_id), 2, "phanes: web2: 10.0.0.2:22: connect: No route to host\n")
    s.children[2]:exit(3)
    s.runs:tick()
    local doc = s.call("GET", "/api/runs/" .. b.run_id):doc()
    assert.equal("failed", doc.status)
    assert.equal(3, doc.exit_code)
    assert.equal("web2: 10.0.0.2:22: connect: No route to host", doc.error)
    assert.equal(404, s.call("GET", "/api/runs/nope").status)
    assert.equal(409, s.call("DELETE", "/api/runs/" .. b.run_id, nil, s.auth).status)
  end)

  it("answers a dry run with its plan from the JSON report", function()
    local s = new_app()
    local r = s.call("POST", "/api/remote/install", '{"host":"web1","modules":["baseline"],"dry_run":true,"wait":false}', s.auth)
    assert.is_nil(r.status) -- a dry run always waits for its plan
    local run = s.runs:get(s.runs.by_host.web1)
    s.runs:on_output(run, 1, json.encode { exit_code = 0, modules = { { name = "baseline", status = "ok", changed = 1,
      resources = { { resource = "file.content", target = "/etc/timezone", status = "would change", message = "content" },
        { resource = "pkg.installed", target = "curl", status = "ok" } } } } })
    s.children[1]:exit(0)
    s.runs:tick()
    local doc = r:doc()
    assert.equal("planned", doc.status)
    assert.equal(1, #doc.plan)
    assert.equal("/etc/timezone", doc.plan[1].target)
    assert.equal("baseline", doc.plan[1].module)
  end)

  it("tails a run's log: the backlog, then live lines, then the end (SSE)", function()
    local s = new_app()
    local id = s.call("POST", "/api/remote/install", '{"host":"web1","modules":["baseline"],"wait":false}', s.auth):doc().run_id
    local run = s.runs:get(id)
    s.runs:on_output(run, 1, "first line\nsec")
    local t = s.call("GET", "/api/runs/" .. id .. "/log", nil, { accept = "text/event-stream", host = "127.0.0.1" })
    assert.equal(200, t.status)
    assert.equal("text/event-stream", t.headers["Content-Type"])
    assert.equal("data: first line\n\n", t.chunks[#t.chunks])
    s.runs:on_output(run, 2, "ond line\n")
    assert.equal("data: second line\n\n", t.chunks[#t.chunks])
    local plain = s.call("GET", "/api/runs/" .. id .. "/log")
    assert.equal("first line\nsecond line\n", table.concat(plain.chunks))
    s.children[1]:exit(0)
    s.runs:tick()
    assert.matches("^event: end\ndata: {.*\"status\":\"noop\"", t.chunks[#t.chunks])
    assert.is_true(t.finished)
    assert.is_true(plain.finished)
  end)

  it("after a restart, lists earlier runs and marks the ones left running as interrupted", function()
    local d = tmpdir()
    local F = require "phanes.file"
    F.write(d .. "/20260101T000000Z-aa.json", json.encode { id = "20260101T000000Z-aa", host = "web1",
      modules = json.array { "baseline" }, status = "noop", finished_at = "2026-01-01T00:00:09Z" })
    F.write(d .. "/20260101T000001Z-bb.json", json.encode { id = "20260101T000001Z-bb", host = "web2",
      modules = json.array { "baseline" }, status = "running" })
    local runs = require("phanes.serve.runs").new { dir = d, argv = function() return {} end }
    runs:load()
    assert.equal("noop", runs:get("20260101T000000Z-aa").status)
    local left = runs:get("20260101T000001Z-bb")
    assert.equal("interrupted", left.status)
    assert.is_nil(runs:busy("web2"))
    assert.equal("interrupted", json.decode(F.read(d .. "/20260101T000001Z-bb.json")).status)
    F.remove(d, true)
  end)

  it("keeps the newest runs, in memory and on disk", function()
    local d = tmpdir()
    local F = require "phanes.file"
    local R = require "phanes.serve.runs"
    local keep = R.KEEP_RUNS
    R.KEEP_RUNS = 3
    local children = {}
    local runs = R.new { dir = d, argv = function() return {} end,
      spawn = function() local c = fake_child() children[#children + 1] = c return c end }
    local ids = {}
    for i = 1, 5 do
      local run = assert(runs:submit { host = "web" .. i, modules = { "baseline" } })
      ids[i] = run.id
      children[i]:exit(0)
      runs:tick()
    end
    R.KEEP_RUNS = keep
    assert.equal(3, #runs.order)
    assert.is_nil(runs:get(ids[2]))
    assert.is_truthy(runs:get(ids[3]))
    assert.is_false(F.exists(d .. "/" .. ids[1] .. ".json"))
    assert.is_false(F.exists(d .. "/" .. ids[2] .. ".log"))
    assert.is_true(F.exists(d .. "/" .. ids[5] .. ".json"))
    assert.is_true(F.exists(d .. "/" .. ids[5] .. ".log"))
    F.remove(d, true)
  end)

  it("lists hosts with their last run; ?host= returns the manifest or 404", function()
    local s = new_app()
    s.records.web1 = { status = "ok", exit_code = 0, started_at = "2026-01-02T03:04:05Z", phanes_version = "0.1.0" }
    local doc = s.call("GET", "/api/remote/status"):doc()
    assert.equal("web1", doc.hosts[1].name)
    assert.equal("ok", doc.hosts[1].last_status)
    assert.equal("2026-01-02T03:04:05Z", doc.hosts[1].last_seen)
    assert.equal("0.1.0", doc.hosts[1].version)
    assert.is_nil(doc.hosts[2].last_status)
    assert.equal(404, s.call("GET", "/api/remote/status?host=web2").status)
    assert.equal(400, s.call("GET", "/api/remote/status?host=a%20b").status)
  end)

  it("makes the hosts' list again after STATUS_TTL, or at once when a run starts or ends", function()
    local s = new_app()
    s.records.web1 = { status = "ok" }
    assert.equal("ok", s.call("GET", "/api/remote/status"):doc().hosts[1].last_status)
    s.records.web1 = { status = "failed" }
    -- within the TTL, nothing of this server changed: the same document
    assert.equal("ok", s.call("GET", "/api/remote/status"):doc().hosts[1].last_status)
    local r = s.call("POST", "/api/remote/install", '{"host":"web1","modules":["baseline"],"wait":false}', s.auth)
    local doc = s.call("GET", "/api/remote/status"):doc()
    assert.equal("failed", doc.hosts[1].last_status)
    assert.equal(r:doc().run_id, doc.hosts[1].running)
    s.children[1]:exit(0)
    s.runs:tick()
    assert.is_nil(s.call("GET", "/api/remote/status"):doc().hosts[1].running)
    local api = s.app.api
    api.status_cache.at = api.status_cache.at - require("phanes.serve.api").STATUS_TTL
    s.records.web1 = { status = "ok" }
    assert.equal("ok", s.call("GET", "/api/remote/status"):doc().hosts[1].last_status)
  end)
end)
