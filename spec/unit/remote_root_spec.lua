-- The root side of a remote run (run.root_script), run here by sh in a
-- temporary directory standing in for /var/lib/phanes, with a small script
-- standing in for the cached binary; and the overrides that travel with it.
local run = require "phanes.remote.run"
local util = require "phanes.remote.util"
local remote = require "phanes.remote"
local file = require "phanes.file"

local function sh(script, stdin, dir)
  local input = dir .. "/stdin"
  assert(file.write(input, stdin or ""))
  local p = assert(io.popen("sh -c " .. util.shquote(script) .. " <" .. input .. " 2>" .. dir .. "/stderr"))
  local out = p:read "a"
  local _, _, code = p:close()
  return code, out, file.read(dir .. "/stderr")
end

describe("remote root_script", function()
  local dir, saved
  local BIN = [[#!/bin/sh
echo "cwd $(pwd)"
echo "args $*"
cat overrides.json 2>/dev/null && echo
echo '{"status":"ok"}' > report.json
exit 3
]]
  before_each(function()
    local p = assert(io.popen "mktemp -d /tmp/phanes-root.XXXXXX")
    dir = p:read "l"
    p:close()
    saved = require("phanes.remote.script").ROOT_DIR
    require("phanes.remote.script").ROOT_DIR = dir .. "/var"
    assert(file.write(dir .. "/bin", BIN, { mode = tonumber("0700", 8) }))
  end)
  after_each(function()
    require("phanes.remote.script").ROOT_DIR = saved
    file.remove(dir, true)
  end)

  local function script(over)
    local r = { sha = file.sha256(BIN), size = #BIN, bin = dir .. "/bin", payload = false, nonce = "n0nce",
      words = run.run_words({ "apply", "x", "--config", { run_file = "config/c.yaml" } },
        { { name = "config/c.yaml" }, { name = "overrides.json" } }, false, true) }
    for k, v in pairs(over or {}) do r[k] = v end
    return run.root_script(r)
  end

  local function leftovers()
    local names = {}
    for _, n in ipairs(file.list(dir .. "/var") or {}) do
      if n:match "^run%." then names[#names + 1] = n end
    end
    return names
  end

  it("parses as sh", function()
    local p = assert(io.popen("sh -n 2>&1 <<'EOF'\n" .. script() .. "\nEOF\n"))
    assert.equal("", p:read "a")
    p:close()
  end)

  it("runs its own copy of the binary in a private directory, with the payload, and hands the report back", function()
    local payload = assert(util.tar { { name = "config/c.yaml", data = "a: 1\n" },
      { name = "overrides.json", data = '{"set":["x.password=s3cret"]}' } })
    local code, out, err = sh(script { payload = true }, payload, dir)
    assert.equal(3, code, err)
    local pid, rundir = out:match "^PHANES%-PID (%d+) (%S+)\n"
    assert.truthy(pid, out)
    assert.equal(dir .. "/var/run.", rundir:sub(1, #dir + 9))
    assert.matches("\ncwd " .. rundir .. "\n", out, 1, true)
    assert.matches("\nargs apply x --config " .. rundir .. "/config/c.yaml --overrides " .. rundir
      .. "/overrides.json --report " .. rundir .. "/report.json\n", out, 1, true)
    assert.matches('{"set":["x.password=s3cret"]}', out, 1, true)
    assert.matches('\n\nPHANES%-REPORT n0nce\n{"status":"ok"}\n\nPHANES%-REPORT%-END n0nce\n$', out)
    assert.same({}, leftovers())
    assert.equal(tonumber("0755", 8), file.stat(dir .. "/var").mode)
  end)

  it("refuses a cached binary that does not match, is missing or is a link: exit 94 / 93, nothing run, nothing left", function()
    assert(file.write(dir .. "/bin", BIN:gsub("exit 3", "touch " .. dir .. "/ran; exit 3"), { mode = tonumber("0700", 8) }))
    assert.equal(94, (sh(script(), "", dir)))
    assert.is_nil(file.stat(dir .. "/ran"))
    assert(file.remove(dir .. "/bin"))
    assert.equal(93, (sh(script(), "", dir)))
    assert(os.execute("ln -s /bin/true " .. dir .. "/bin"))
    assert.equal(93, (sh(script { sha = file.sha256_file("/bin/true"), size = file.stat("/bin/true").size }, "", dir)))
    assert.same({}, leftovers())
  end)

  it("keeps its own checked copy: a no-op reads no cached binary, and what the login user does to it is moot", function()
    assert.equal(3, (sh(script(), "", dir)))
    local kept = dir .. "/var/bin/phanes-" .. file.sha256(BIN)
    assert.equal(BIN, file.read(kept))
    assert.equal(tonumber("0700", 8), file.stat(kept).mode & tonumber("0777", 8))
    assert.equal(tonumber("0700", 8), file.stat(dir .. "/var/bin").mode & tonumber("0777", 8))
    -- the login user's copy replaced, then gone: root runs its own
    assert(file.write(dir .. "/bin", "#!/bin/sh\ntouch " .. dir .. "/ran\n", { mode = tonumber("0700", 8) }))
    local code, out = sh(script(), "", dir)
    assert.equal(3, code)
    assert.matches("\nargs apply x", out)
    assert.is_nil(file.stat(dir .. "/ran"))
    assert(file.remove(dir .. "/bin"))
    assert.equal(3, (sh(script(), "", dir)))
    assert.same({}, leftovers())
  end)

  it("does not run a binary planted where root keeps its own: a bin directory others could write is made again", function()
    local sha = file.sha256(BIN)
    assert(file.mkdir(dir .. "/var/bin", { parents = true, mode = tonumber("0777", 8) }))
    assert(os.execute("chmod 0777 " .. dir .. "/var/bin"))
    assert(file.write(dir .. "/var/bin/phanes-" .. sha, "#!/bin/sh\ntouch " .. dir .. "/ran\n", { mode = tonumber("0755", 8) }))
    assert.equal(3, (sh(script(), "", dir)))
    assert.is_nil(file.stat(dir .. "/ran"))
    assert.equal(tonumber("0700", 8), file.stat(dir .. "/var/bin").mode & tonumber("0777", 8))
    assert.equal(BIN, file.read(dir .. "/var/bin/phanes-" .. sha))
  end)

  it("removes run directories older than a day that killed runs left, and no others", function()
    assert(file.mkdir(dir .. "/var/run.old1", { parents = true }))
    assert(file.mkdir(dir .. "/var/run.busy", { parents = true }))
    assert(os.execute("touch -d '2 days ago' " .. dir .. "/var/run.old1"))
    assert.equal(3, (sh(script(), "", dir)))
    assert.same({ "run.busy" }, leftovers())
  end)

  it("refuses a work directory that others can write, or that is a link", function()
    assert(file.mkdir(dir .. "/var", { mode = tonumber("0777", 8) }))
    local code, _, err = sh(script(), "", dir)
    assert.equal(91, code)
    assert.matches("PHANES%-ERR " .. dir:gsub("%p", "%%%0") .. "/var must be a directory owned by root that only root can write, not: root drwxrwxrwx", err)
    assert(file.remove(dir .. "/var", true))
    assert(os.execute("mkdir " .. dir .. "/elsewhere && ln -s " .. dir .. "/elsewhere " .. dir .. "/var"))
    code = sh(script(), "", dir)
    assert.equal(91, code)
    assert.same({}, file.list(dir .. "/elsewhere"))
  end)
end)

describe("remote overrides", function()
  it("takes --set out of the remote arguments", function()
    local args, files, sets = remote.rewrite_args { "apply", "x", "--set", "a.b=1", "--set=c.d=two words", "--dry-run" }
    assert.same({ "apply", "x", "--dry-run" }, args)
    assert.same({}, files)
    assert.same({ "a.b=1", "c.d=two words" }, sets)
  end)

  it("sends the PHANES_* settings but the controller's own", function()
    local env = remote.env_overrides({ PHANES_REDIS_PASSWORD = "pw", PHANES_KEY_PASSPHRASE = "k", PHANES_SUDO = "s",
      PHANES_NO_PROMPT = "1", PHANES_TEST_ID = "x", HOME = "/root", PHANES_STATE = "/s" }, { password_env = "PHANES_SUDO" })
    assert.same({ PHANES_REDIS_PASSWORD = "pw" }, env)
  end)

  it("masks secret fields and unknown keys by field in what the record shows", function()
    local rows = { { path = "redis.password", secret = true }, { path = "redis.bind", secret = false },
      { path = "app", secret = true }, { path = "app.token", secret = false } }
    local ov = remote.overrides({ "redis.password=hunter22", "redis.bind=0.0.0.0", "redis.pasword=typo1234", "app.token=t0k3n" },
      { PHANES_REDIS_PASSWORD = "envpw123", PHANES_REDIS_BIND = "::1", PHANES_OTHER = "o" }, rows)
    assert.same({ "--set redis.password=******", "--set redis.bind=0.0.0.0", "--set redis.pasword=******",
      "--set app.token=******" }, ov.shown)
    assert.same({ "PHANES_OTHER", "PHANES_REDIS_BIND", "PHANES_REDIS_PASSWORD" }, ov.env_names)
    table.sort(ov.secrets)
    assert.same({ "envpw123", "hunter22", "t0k3n", "typo1234" }, ov.secrets)
    local sent = require("phanes.json").decode(ov.file.data)
    assert.same({ "redis.password=hunter22", "redis.bind=0.0.0.0", "redis.pasword=typo1234", "app.token=t0k3n" }, sent.set)
    assert.equal("envpw123", sent.env.PHANES_REDIS_PASSWORD)
    assert.is_nil(remote.overrides({}, {}, rows).file)
  end)

  it("lazily: the payload at once, what is secret when pending() runs (the modules' own fields)", function()
    local sets = { "redis.password=hunter22", "redis.bind=0.0.0.0" }
    local ov = remote.overrides(sets, { PHANES_REDIS_PASSWORD = "envpw123" }, nil, true)
    assert.same(sets, require("phanes.json").decode(ov.file.data).set)
    assert.same({}, ov.shown)
    assert.same({}, ov.secrets)
    ov.pending()
    assert.is_nil(ov.pending)
    assert.same({ "--set redis.password=******", "--set redis.bind=0.0.0.0" }, ov.shown)
    table.sort(ov.secrets)
    assert.same({ "envpw123", "hunter22" }, ov.secrets)
    local none = remote.overrides({}, {}, nil, true)
    assert.is_nil(none.pending)
    assert.is_nil(none.file)
  end)

  it("reads them back on the target: the file's --set first, its settings over the environment", function()
    local p = os.tmpname()
    assert(file.write(p, '{"set":["a=1"],"env":{"PHANES_A":"2","HOME":"/x"}}'))
    local sets, env = util.read_overrides(p, { "b=3" }, { PHANES_A = "0", PATH = "/bin" })
    assert.same({ "a=1", "b=3" }, sets)
    assert.same({ PHANES_A = "2", PATH = "/bin" }, env)
    assert(file.write(p, "[1]"))
    local none, err = util.read_overrides(p, {}, {})
    assert.is_nil(none)
    assert.matches("^%-%-overrides " .. p:gsub("%p", "%%%0") .. ": expected", err)
    file.remove(p)
  end)
end)
