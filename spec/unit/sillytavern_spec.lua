-- The sillytavern module's plan on a recording ctx (spec/support/plan.lua),
-- the ai profile, and the machine description of `phanes list --json` /
-- `phanes show MODULE --json` (steps, config syncs, detect probes) and the
-- detect probes checked by phanes.engine.detect.
local plan = require "support.plan"
local runcli = require "support.runcli"
local fakeexec = require "support.fakeexec"
local json = require "phanes.json"

local function run(section, opts)
  return plan.run(plan.module "sillytavern", { sillytavern = section or {} }, opts)
end

local function kinds(calls)
  local t = {}
  for _, c in ipairs(calls) do
    if c.kind ~= "template" then t[#t + 1] = c.kind end
  end
  return table.concat(t, " ")
end

describe("sillytavern module", function()
  it("installs node from Debian, checks out the release branch as its user, then npm, config, unit, health", function()
    local calls = run()
    assert.equal("pkg.installed group.present user.present file.directory git.checkout npm.installed file.seed "
      .. "systemd.unit fetch.check sentinel.mark", kinds(calls))
    assert.same({ "git", "ca-certificates", "curl", "nodejs", "npm" }, plan.find(calls, "pkg.installed")[1].args)
    local co = plan.find(calls, "git.checkout")[1].args
    assert.same({ repo = "https://github.com/SillyTavern/SillyTavern", ref = "release", dest = "/opt/sillytavern",
      owner = "sillytavern", update = false }, co)
    assert.same({ dir = "/opt/sillytavern", owner = "sillytavern", group = "sillytavern" },
      plan.find(calls, "npm.installed")[1].args)
    local seed = plan.find(calls, "file.seed")[1].args
    assert.equal("/opt/sillytavern/config.yaml", seed.path)
    assert.equal("0640", seed.mode)
    assert.matches("\nlisten: false\nport: 8000\n", seed.content, 1, true)
    local unit = plan.find(calls, "systemd.unit")[1].args
    assert.equal("sillytavern.service", unit.name)
    assert.is_true(unit.running)
    assert.matches("WorkingDirectory=/opt/sillytavern\nExecStart=/usr/bin/node server.js --port 8000 --listen false\n"
      .. "User=sillytavern\n", unit.content, 1, true)
    assert.is_true(unit.restart) -- the checkout changed
    assert.equal("http://127.0.0.1:8000/", plan.find(calls, "fetch.check")[1].args.url)
  end)

  it("a re-run with nothing changed restarts nothing", function()
    local calls = run({}, { changed = false })
    assert.is_false(plan.find(calls, "systemd.unit")[1].args.restart)
  end)

  it("takes a pinned tag, a port, listen, a Node.js repository and extensions", function()
    local calls = run { ref = "1.12.11", port = 8100, listen = true,
      node_apt_line = "deb [signed-by=/etc/apt/keyrings/nodejs.asc] https://deb.nodesource.com/node_22.x nodistro main",
      node_apt_key_url = "https://deb.nodesource.com/gpgkey/nodesource-repo.gpg.key", node_packages = { "nodejs" },
      extensions = { { name = "ext-a", repo = "https://example.com/a.git", ref = "v2" } } }
    assert.equal("apt.repo", calls[1].kind)
    assert.equal("https://deb.nodesource.com/gpgkey/nodesource-repo.gpg.key", calls[1].args.key_url)
    assert.same({ "git", "ca-certificates", "curl", "nodejs" }, plan.find(calls, "pkg.installed")[1].args)
    assert.equal("1.12.11", plan.find(calls, "git.checkout")[1].args.ref)
    local ext = plan.find(calls, "git.checkout")[2].args
    assert.same({ repo = "https://example.com/a.git", ref = "v2", owner = "sillytavern", update = false,
      dest = "/opt/sillytavern/public/scripts/extensions/third-party/ext-a" }, ext)
    assert.matches("--port 8100 --listen true", plan.find(calls, "systemd.unit")[1].args.content, 1, true)
    assert.equal("http://127.0.0.1:8100/", plan.find(calls, "fetch.check")[1].args.url)
  end)

  it("refuses an apt line without its key, an extension name used twice or climbing out", function()
    assert.has_error(function() run { node_apt_line = "deb https://x/ y main" } end,
      "sillytavern.node_apt_line is set without sillytavern.node_apt_key_url: give the repository's key URL")
    local e = { name = "a", repo = "https://example.com/a.git", ref = "main" }
    assert.has_error(function() run { extensions = { e, e } } end,
      "sillytavern.extensions[2]: the name a is used twice")
    assert.has_error(function() run { extensions = { { name = "..", repo = "https://example.com/a.git", ref = "main" } } } end,
      "sillytavern.extensions[1]: the name .. is not a directory name")
  end)
end)

describe("profile ai", function()
  it("is minimal + ollama + comfyui + sillytavern; lmstudio is not in it", function()
    local p = plan.profile "ai"
    local minimal = plan.profile "minimal"
    local want = {}
    for _, m in ipairs(minimal.modules) do want[#want + 1] = m end
    for _, m in ipairs { "ollama", "comfyui", "sillytavern" } do want[#want + 1] = m end
    assert.same(want, p.modules)
  end)
end)

describe("module descriptions for machines", function()
  it("show --json: steps of a dry plan on an empty host, the create-only config sync, the detect probes", function()
    local r = runcli.run({ "show", "sillytavern", "--json" })
    assert.equal(0, r.code, r.stderr)
    local d = assert(json.decode(r.stdout))
    local steps = {}
    for _, s in ipairs(d.steps) do steps[#steps + 1] = s.resource .. " " .. s.target end
    assert.same({
      "pkg.installed git ca-certificates curl nodejs npm", "group.present sillytavern", "user.present sillytavern",
      "file.directory /opt/sillytavern", "git.checkout /opt/sillytavern", "npm.installed /opt/sillytavern",
      "file.seed /opt/sillytavern/config.yaml", "systemd.unit /etc/systemd/system/sillytavern.service",
      "service.running sillytavern.service", "fetch.check http://127.0.0.1:8000/",
      "sentinel.mark /var/lib/phanes/sentinels/sillytavern.installed" }, steps)
    assert.same({ { source = "templates/sillytavern/config.yaml", destination = "/opt/sillytavern/config.yaml",
      policy = "create-only" } }, d.sync)
    assert.same({ "/opt/sillytavern/server.js", "/opt/sillytavern/package.json" }, d.detect.files)
    assert.same({ "/opt/sillytavern/node_modules" }, d.detect.dirs)
    assert.equal("http://127.0.0.1:8000/", d.detect.url)
    local port
    for _, k in ipairs(d.config) do if k.key == "port" then port = k end end
    assert.same({ key = "port", type = "integer", default = 8000, required = false, secret = false,
      description = "The port the server listens on", limits = { "1 to 65535" } }, port)
  end)

  it("list --json describes every module the same way", function()
    local r = runcli.run({ "list", "--json" })
    assert.equal(0, r.code, r.stderr)
    local d = assert(json.decode(r.stdout))
    local by = {}
    for _, m in ipairs(d.modules) do by[m.name] = m end
    assert.equal(11, #by.sillytavern.steps)
    assert.equal("create-only", by.sillytavern.sync[1].policy)
    assert.truthy(by.sillytavern.detect)
    -- redis: its required secret takes the example's sample value for the plan
    assert.is_true(#by.redis.steps > 0)
    for _, k in ipairs(by.redis.config) do
      if k.key == "password" then assert.is_true(k.secret) end
    end
    assert.equal("table", type(by.baseline.steps))
  end)

  it("the steps come without running anything or reading this machine", function()
    local F = require "phanes.file"
    local describe = require "phanes.engine.describe"
    local mod = plan.module "sillytavern"
    local read = F.read
    local d = describe.module(mod)
    assert.equal(read, F.read) -- restored
    assert.is_nil(d.steps_error)
    assert.equal("git.checkout", d.steps[5].resource)
  end)
end)

describe("detect probes", function()
  local detect = require "phanes.engine.detect"
  local dir
  after_each(function() if dir then fakeexec.rmtree(dir) dir = nil end end)

  it("pass when the files, dirs, command and URL are there; stop at the first that is not", function()
    dir = fakeexec.tmpdir()
    fakeexec.write(dir .. "/server.js", "x")
    assert(require("phanes.file").mkdir(dir .. "/node_modules", { mode = tonumber("0755", 8) }))
    local fake = fakeexec.new()
    fake:on("true", { code = 0 })
    fake:on("curl", { code = 0 })
    local probes = { files = { dir .. "/server.js" }, dirs = { dir .. "/node_modules" }, command = { "true" },
      url = "http://127.0.0.1:8000/" }
    local found = detect.check(probes, fake.exec)
    assert.is_true(found.installed)
    assert.equal(4, #found.checks)
    assert.same({ "true", "curl -fsS -o /dev/null -m 5 http://127.0.0.1:8000/" }, fake:lines())
    fake:reset()
    probes.files[2] = dir .. "/missing.js"
    found = detect.check(probes, fake.exec)
    assert.is_false(found.installed)
    assert.same({ probe = "file", target = dir .. "/missing.js", ok = false, why = "missing" }, found.checks[2])
    assert.equal(0, fake:count()) -- no process after a failed file probe
    probes.files[2] = nil
    probes.dirs[1] = dir .. "/server.js"
    found = detect.check(probes, fake.exec)
    assert.same({ probe = "dir", target = dir .. "/server.js", ok = false, why = "a file" }, found.checks[2])
  end)

  it("follow symlinks: a venv's bin/python (a link to a file) is a file; a dangling link is missing", function()
    dir = fakeexec.tmpdir()
    fakeexec.write(dir .. "/python3", "x")
    local F = require "phanes.file"
    assert(F.symlink(dir .. "/python3", dir .. "/python"))
    assert(F.symlink(dir, dir .. "/d"))
    assert(F.symlink(dir .. "/nowhere", dir .. "/dangling"))
    local found = detect.check({ files = { dir .. "/python" }, dirs = { dir .. "/d" } }, fakeexec.new().exec)
    assert.is_true(found.installed, require("phanes.json").encode(found.checks))
    found = detect.check({ files = { dir .. "/dangling" } }, fakeexec.new().exec)
    assert.is_false(found.installed)
    -- a venv made by its user: links owned by another user, which root never follows to write
    assert(F.mkdir(dir .. "/venv", { mode = tonumber("0755", 8) }))
    assert(F.symlink("../python3", dir .. "/venv/python"))
    if io.popen("id -u"):read "l" == "0" then
      assert(os.execute("chown -hR 65534 " .. dir .. "/venv"))
      assert.is_nil((F.stat(dir .. "/venv/python", true)))
    end
    found = detect.check({ files = { dir .. "/venv/python" } }, fakeexec.new().exec)
    assert.is_true(found.installed, require("phanes.json").encode(found.checks))
  end)

  it("a URL that does not answer fails with curl's exit", function()
    local fake = fakeexec.new()
    fake:on("curl", { code = 7 })
    local found = detect.check({ url = "http://127.0.0.1:1/" }, fake.exec)
    assert.is_false(found.installed)
    assert.equal("curl exit 7", found.checks[1].why)
  end)
end)
