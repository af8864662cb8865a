-- statefile.lua: shape, atomic writes, the lock, corrupt and newer files.
local statefile = require "phanes.engine.statefile"
local json = require "phanes.json"
local runcli = require "spec.support.runcli"

describe("statefile", function()
  local dir, path, lock
  before_each(function()
    dir = runcli.tmpdir()
    path = dir .. "/sub/state.json"
    lock = dir .. "/machine.lock" -- the spec's own, not this machine's
  end)
  local function open(p, o)
    o = o or {}
    o.lock = o.lock or lock
    return statefile.open(p, o)
  end
  after_each(function() runcli.rmdir(dir) end)

  it("picks --state, then PHANES_STATE, then config, then the default", function()
    assert.equal("/a", statefile.path { flag = "/a", env = "/b", config = "/c" })
    assert.equal("/b", statefile.path { env = "/b", config = "/c" })
    assert.equal("/c", statefile.path { env = "", config = "/c" })
    assert.equal("/var/lib/phanes/state.json", statefile.path { env = "" })
  end)

  it("reads a missing file as an empty state", function()
    local s = assert(statefile.read(path))
    assert.is_true(s.missing)
    assert.same({}, s.modules)
  end)

  it("creates the directory and writes the design's shape", function()
    local sf = assert(open(path, { version = "9.9", hostname = "web1" }))
    assert(sf:record("redis", { status = "installed", version = "1", config_hash = "abc" }))
    assert(sf:record("nginx", { status = "failed", error = "boom" }))
    sf:close()
    local data = json.decode(runcli.read(path))
    assert.equal(1, data.format)
    assert.equal("9.9", data.phanes_version)
    assert.equal("web1", data.hostname)
    assert.match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$", data.updated_at)
    local r = data.modules.redis
    assert.equal("installed", r.status)
    assert.equal("1", r.version)
    assert.equal("abc", r.config_hash)
    assert.equal(r.installed_at, r.updated_at)
    assert.same({ status = "failed", last_error = "boom", updated_at = data.modules.nginx.updated_at },
      data.modules.nginx)
  end)

  it("keeps installed_at across updates and clears last_error on success", function()
    local sf = assert(open(path))
    sf.data.modules.redis = { status = "failed", installed_at = "2020-01-01T00:00:00Z", last_error = "x" }
    assert(sf:record("redis", { status = "installed", version = "2" }))
    sf:close()
    local r = json.decode(runcli.read(path)).modules.redis
    assert.equal("2020-01-01T00:00:00Z", r.installed_at)
    assert.is_nil(r.last_error)
  end)

  it("replaces the file atomically: no temp file is left behind", function()
    local sf = assert(open(path))
    for i = 1, 5 do assert(sf:record("m" .. i, { status = "installed" })) end
    sf:close()
    local names = {}
    for n in require("lfs").dir(dir .. "/sub") do
      if n ~= "." and n ~= ".." then names[#names + 1] = n end
    end
    table.sort(names)
    assert.same({ "state.json" }, names) -- and the lock lives elsewhere
  end)

  it("moves a corrupt file aside and says where", function()
    os.execute("mkdir -p " .. dir .. "/sub")
    runcli.write(path, "{ not json")
    local s, err, code = statefile.read(path)
    assert.is_nil(s)
    assert.equal("corrupt", code)
    assert.match(path, err, 1, true)
    local sf = assert(open(path))
    assert.match("kept as " .. path .. ".corrupt%-", sf.warning)
    local aside = sf.warning:match "kept as (%S+),"
    assert.equal("{ not json", runcli.read(aside))
    assert(sf:record("a", { status = "installed" }))
    sf:close()
    assert.equal("installed", json.decode(runcli.read(path)).modules.a.status)
  end)

  it("treats a JSON file that is not a state as corrupt", function()
    os.execute("mkdir -p " .. dir .. "/sub")
    runcli.write(path, '["a"]')
    local _, _, code = statefile.read(path)
    assert.equal("corrupt", code)
    runcli.write(path, '{"format": 1, "modules": {"a": 3}}')
    _, _, code = statefile.read(path)
    assert.equal("corrupt", code)
  end)

  it("refuses a newer format and leaves the file alone", function()
    os.execute("mkdir -p " .. dir .. "/sub")
    local text = '{"format": 2, "modules": {}}'
    runcli.write(path, text)
    local sf, err, code = open(path)
    assert.is_nil(sf)
    assert.equal("format", code)
    assert.match("newer", err)
    assert.equal(text, runcli.read(path))
    -- and the lock was released
    assert(require("phanes.state").lock(lock, { wait = false })):unlock()
  end)

  it("makes a second process wait for the lock, then fail naming the holder", function()
    os.execute("mkdir -p " .. dir .. "/sub")
    local script = dir .. "/hold.lua"
    runcli.write(script, string.format([[
      local sf = assert(require("phanes.engine.statefile").open(%q, { lock = %q }))
      io.stdout:write("locked\n") io.stdout:flush()
      os.execute "sleep 1.5"
      sf:close()
    ]], path, lock))
    local holder = io.popen(runcli.binary() .. " lua " .. script)
    assert.equal("locked", holder:read "l")
    local sf, err, code = open(path, { wait = 0.3 })
    assert.is_nil(sf)
    assert.equal("locked", code)
    assert.truthy(err:find("another phanes run holds " .. lock .. " (pid ", 1, true))
    assert.match("%(pid %d+%)", err)
    sf = assert(open(path, { wait = 5 }))  -- waits for the holder
    sf:close()
    holder:close()
  end)

  it("writes only when a module's record changes, or the module changed something", function()
    local sf = assert(open(path, { version = "9.9" }))
    assert(sf:record("redis", { status = "installed", version = "1", config_hash = "abc", units = { "redis-server.service" } }))
    assert.equal(1, sf.writes)
    local first = runcli.read(path)
    -- the same again: no write
    assert(sf:record("redis", { status = "installed", version = "1", config_hash = "abc", units = { "redis-server.service" } }))
    assert.equal(1, sf.writes)
    assert.equal(first, runcli.read(path))
    -- each change of the record writes
    for i, info in ipairs {
      { status = "installed", version = "2", config_hash = "abc", units = { "redis-server.service" } },
      { status = "installed", version = "2", config_hash = "def", units = { "redis-server.service" } },
      { status = "installed", version = "2", config_hash = "def", units = { "redis.service", "x.service" } },
      { status = "installed", version = "2", config_hash = "def", units = {} },
      { status = "failed", error = "boom" },
      { status = "failed", error = "boom again" },
      { status = "installed", version = "2", config_hash = "def" },
      { status = "installed", version = "2", config_hash = "def", changed = true },
    } do
      assert(sf:record("redis", info))
      assert.equal(i + 1, sf.writes, "change " .. i)
    end
    sf:close()
    local r = json.decode(runcli.read(path)).modules.redis
    assert.is_nil(r.units)
    assert.is_nil(r.last_error)
    assert.equal("def", r.config_hash)
  end)

  it("keeps the units a module asked about", function()
    local sf = assert(open(path))
    assert(sf:record("docker", { status = "installed", units = { "containerd.service", "docker.service" } }))
    sf:close()
    assert.same({ "containerd.service", "docker.service" }, json.decode(runcli.read(path)).modules.docker.units)
  end)

  it("keeps the detect probes of an installed module, and writes again only when they change", function()
    local sf = assert(open(path))
    local probes = { files = { "/opt/x/bin/x" }, dirs = { "/opt/x" }, url = "http://127.0.0.1:9/health" }
    assert(sf:record("x", { status = "installed", probes = probes }))
    local t1 = json.decode(runcli.read(path)).modules.x
    assert.same(probes, t1.probes)
    os.execute("sleep 1.1")
    assert(sf:record("x", { status = "installed", probes = { files = { "/opt/x/bin/x" }, dirs = { "/opt/x" },
      url = "http://127.0.0.1:9/health" } }))
    assert.equal(t1.updated_at, json.decode(runcli.read(path)).modules.x.updated_at) -- the same: no write
    assert(sf:record("x", { status = "failed", error = "boom" }))
    assert.same(probes, json.decode(runcli.read(path)).modules.x.probes) -- a failure keeps them
    assert(sf:record("x", { status = "installed", probes = { url = "http://127.0.0.1:10/health" } }))
    sf:close()
    assert.same({ url = "http://127.0.0.1:10/health" }, json.decode(runcli.read(path)).modules.x.probes)
  end)

  it("finish writes once for a run that wrote nothing (its time), never twice", function()
    os.execute("mkdir -p " .. dir .. "/sub")
    runcli.write(path, '{"format": 1, "updated_at": "2020-01-01T00:00:00Z", "modules": {"a": '
      .. '{"status": "installed", "version": "1", "installed_at": "2020-01-01T00:00:00Z", '
      .. '"updated_at": "2020-01-01T00:00:00Z"}}}')
    local sf = assert(open(path, { version = "9.9" }))
    assert(sf:record("a", { status = "installed", version = "1" }))
    assert.is_nil(sf.writes)
    assert(sf:finish())
    assert.equal(1, sf.writes)
    assert(sf:finish())
    assert.equal(1, sf.writes)
    sf:close()
    local data = json.decode(runcli.read(path))
    assert.not_equal("2020-01-01T00:00:00Z", data.updated_at)
    assert.equal("9.9", data.phanes_version)
    assert.equal("2020-01-01T00:00:00Z", data.modules.a.updated_at) -- the module did not change
  end)
  it("names the file and the field of a mistyped state", function()
    os.execute("mkdir -p " .. dir .. "/sub")
    for text, msg in pairs {
      ['{"format":1,"modules":{"redis":{"status":"installed","version":3}}}'] = "modules.redis.version must be a string, not number",
      ['{"format":1,"modules":{"a":{"last_error":{"x":1}}}}'] = "modules.a.last_error must be a string, not table",
      ['{"format":1,"hostname":[],"modules":{}}'] = "hostname must be a string, not table",
      ['{"format":1,"modules":{"a":{"units":["x",2]}}}'] = "modules.a.units[2] must be a string, not number",
      ['{"format":1,"modules":{"a":{"probes":["x"]}}}'] = "modules.a.probes must name files, dirs, a command or a url",
      ['{"format":1,"modules":{"a":{"probes":{"files":["x",1]}}}}'] = "modules.a.probes.files[2] must be a string, not number",
      ['{"format":1,"modules":{"a":{"probes":{"command":"rm"}}}}'] = "modules.a.probes.command must be a list, not string",
      ['{"format":1,"modules":{"a":{"probes":{"url":5}}}}'] = "modules.a.probes.url must be a string, not number",
    } do
      runcli.write(path, text)
      local s, err, code = statefile.read(path)
      assert.is_nil(s)
      assert.equal("corrupt", code)
      assert.equal(path .. ": corrupt state file: " .. msg, err)
    end
  end)

  it("keeps every corrupt file moved aside, also two in the same second", function()
    os.execute("mkdir -p " .. dir .. "/sub")
    local kept = {}
    for i = 1, 2 do
      runcli.write(path, "{ bad " .. i)
      local sf = assert(open(path))
      kept[i] = sf.warning:match "kept as (%S+),"
      sf:close()
    end
    assert.not_equal(kept[1], kept[2])
    assert.equal("{ bad 1", runcli.read(kept[1]))
    assert.equal("{ bad 2", runcli.read(kept[2]))
  end)

  it("has one lock per machine, whatever the state path", function()
    local env = function(v) return function(k) return ({ PHANES_LOCK = v })[k] end end
    assert.equal("/run/phanes.lock", statefile.lock_path { env = env(nil), euid = 0 })
    assert.equal("/x/l", statefile.lock_path { env = env "/x/l", euid = 0 })
    assert.equal("/tmp/phanes-1000.lock", statefile.lock_path { env = env(nil), euid = 1000 })
    local a = assert(open(dir .. "/a/state.json"))
    local b, err, code = open(dir .. "/b/state.json", { wait = 0 })
    assert.is_nil(b)
    assert.equal("locked", code)
    assert.matches("another phanes run holds " .. lock, err, 1, true)
    a:close()
    assert(open(dir .. "/b/state.json")):close()
  end)
  it("notes a module's change at once, until it is recorded installed", function()
    local sf = assert(open(path))
    assert.is_false(sf:pending("redis"))
    assert(sf:begin("redis"))
    assert(sf:begin("redis")) -- once
    assert.equal(1, sf.writes)
    sf:close()
    -- killed here: the next run sees it
    sf = assert(open(path))
    assert.is_true(sf:pending("redis"))
    assert.same({ changing = true }, json.decode(runcli.read(path)).modules.redis)
    assert(sf:record("redis", { status = "failed", error = "boom" }))
    assert.is_true(sf:pending("redis")) -- a failure after a change still owes it
    assert(sf:record("redis", { status = "installed", version = "1" }))
    assert.is_false(sf:pending("redis"))
    sf:close()
    assert.is_nil(json.decode(runcli.read(path)).modules.redis.changing)
    runcli.write(path, '{"format":1,"modules":{"a":{"changing":"yes"}}}')
    local _, err = statefile.read(path)
    assert.matches("modules.a.changing must be true, not string", err, 1, true)
  end)

end)
