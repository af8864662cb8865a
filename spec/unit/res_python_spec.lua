-- python.venv on the fake transport: `python3 -m venv` and pip are
-- answered by handlers that lay out what they would (pyvenv.cfg,
-- site-packages/<name>-<version>.dist-info), so the resource reads a real
-- tree: a venv made once, only missing packages installed, requirements
-- compared by hash (no pip run when unchanged), dry runs that run nothing.
local fakeexec = require "support.fakeexec"
local python = require "phanes.res.python"

local function mkdir(p) os.execute("mkdir -p '" .. p .. "'") end

local function world(o)
  local w = fakeexec.world(o)
  w.venv = w.path "/opt/app/venv"
  w.req = w.path "/opt/app/requirements.txt"
  mkdir(w.path "/opt/app")
  local site = w.venv .. "/lib/python3.11/site-packages"
  local function dist(spec)
    local name, version = spec:match "^([%w._%-]+)==(.+)$"
    name = name or spec:match "^([%w._%-]+)"
    mkdir(site .. "/" .. name:gsub("-", "_") .. "-" .. (version or "1.0") .. ".dist-info")
  end
  w.fake:on("python3 -m venv", function(opts)
    local path = opts.argv[#opts.argv]
    mkdir(path .. "/bin")
    mkdir(path .. "/lib/python3.11/site-packages")
    mkdir(site .. "/pip-24.0.dist-info")
    fakeexec.write(path .. "/pyvenv.cfg", "home = /usr/bin\n")
    return { code = 0 }
  end)
  w.me = io.popen("id -un"):read "l"
  w.fake:on("runuser -u " .. w.me .. " -- python3 -m venv", function(opts)
    return w.fake.exec { argv = { table.unpack(opts.argv, 5) } }
  end)
  local function pip(opts)
    local argv = opts.argv
    local i = 1
    while argv[i] ~= "install" do i = i + 1 end
    local r = false
    for j = i + 1, #argv do
      local a = argv[j]
      if r then
        for line in fakeexec.read(a):gmatch "[^\n]+" do dist(line) end
        r = false
      elseif a == "-r" then r = true
      elseif a:sub(1, 1) ~= "-" then dist(a) end
    end
    return { code = 0 }
  end
  w.fake:on(w.venv .. "/bin/python -m pip install", pip)
  w.fake:on("runuser -u " .. w.me .. " -- " .. w.venv .. "/bin/python -m pip install", pip)
  return w
end

local function pips(w) return w.fake:count(w.venv .. "/bin/python -m pip") end

describe("python.venv", function()
  local w
  after_each(function() if w then w.close() w = nil end end)

  it("reads specs and names like pip does", function()
    assert.same({ "torch", "2.1.0" }, { python.parse_spec "torch==2.1.0" })
    assert.same({ "zope-interface" }, { python.parse_spec "Zope.Interface >= 5" })
    assert.same({ "uvicorn", "0.30" }, { python.parse_spec "uvicorn[standard]==0.30" })
    assert.is_nil(python.parse_spec "==1")
  end)

  it("creates the venv, installs packages then requirements, and stores the hash", function()
    w = world()
    fakeexec.write(w.req, "aiohttp\nyarl==1.9\n")
    local r = w.ctx.python.venv { path = w.venv, requirements = w.req, packages = { "torch" },
      extra_index_url = "https://download.pytorch.org/whl/cpu", index_url = "http://mirror/simple" }
    assert.equal("changed", r.status)
    assert.equal("create venv; install torch; pip install -r " .. w.req, r.message)
    local P = w.venv .. "/bin/python -m pip install --no-input --no-cache-dir --disable-pip-version-check "
      .. "--index-url=http://mirror/simple --extra-index-url=https://download.pytorch.org/whl/cpu "
    assert.same({ "python3 -m venv " .. w.venv, P .. "torch", P .. "-r " .. w.req },
      w.fake:lines())
    assert.same({ pip = "24.0", torch = "1.0", aiohttp = "1.0", yarl = "1.9" }, python.installed(w.venv))
    assert.matches("^%x+ " .. w.req:gsub("%p", "%%%0") .. "\n$", fakeexec.read(w.venv .. "/.phanes-requirements"))
  end)

  it("costs no process when nothing changed", function()
    w = world()
    fakeexec.write(w.req, "aiohttp\n")
    local o = { path = w.venv, requirements = w.req, packages = { "torch", "yarl==1.9" } }
    w.ctx.python.venv(o)
    w.fake:reset()
    assert.equal("ok", w.ctx.python.venv(o).status)
    assert.same({}, w.fake:lines())
  end)

  it("installs only the missing packages, and a pinned version that differs", function()
    w = world()
    local o = { path = w.venv, packages = { "torch", "yarl==1.9" } }
    w.ctx.python.venv(o)
    w.fake:reset()
    o.packages = { "torch", "yarl==1.10", "numpy" }
    local r = w.ctx.python.venv(o)
    assert.equal("install yarl==1.10 numpy", r.message)
    assert.same({ w.venv .. "/bin/python -m pip install --no-input --no-cache-dir --disable-pip-version-check "
      .. "yarl==1.10 numpy" }, w.fake:lines())
  end)

  it("runs pip again when the requirements or the index change, not otherwise", function()
    w = world()
    fakeexec.write(w.req, "aiohttp\n")
    local o = { path = w.venv, requirements = w.req }
    w.ctx.python.venv(o)
    fakeexec.write(w.req, "aiohttp\nnumpy\n")
    w.fake:reset()
    local r = w.ctx.python.venv(o)
    assert.equal("pip install -r " .. w.req .. " (changed)", r.message)
    assert.equal(1, pips(w))
    assert.equal("1.0", python.installed(w.venv).numpy)
    w.fake:reset()
    assert.equal("ok", w.ctx.python.venv(o).status)
    o.find_links = "/srv/wheels"
    o.no_index = true
    o.trusted_host = { "10.0.0.5" }
    assert.equal("changed", w.ctx.python.venv(o).status)
    assert.same({ w.venv .. "/bin/python -m pip install --no-input --no-cache-dir --disable-pip-version-check "
      .. "--no-index --find-links=/srv/wheels --trusted-host=10.0.0.5 -r " .. w.req }, w.fake:lines())
  end)

  it("keeps one hash per requirements file", function()
    w = world()
    local other = w.path "/opt/app/node-requirements.txt"
    fakeexec.write(w.req, "aiohttp\n")
    fakeexec.write(other, "numpy\n")
    w.ctx.python.venv { path = w.venv, requirements = w.req }
    w.ctx.python.venv { path = w.venv, requirements = other }
    w.fake:reset()
    assert.equal("ok", w.ctx.python.venv({ path = w.venv, requirements = w.req }).status)
    assert.equal("ok", w.ctx.python.venv({ path = w.venv, requirements = other }).status)
    assert.equal(0, pips(w))
  end)

  it("runs everything as the owner, the venv directory made theirs", function()
    w = world()
    fakeexec.write(w.req, "aiohttp\n")
    local r = w.ctx.python.venv { path = w.venv, requirements = w.req, owner = w.me }
    assert.equal("changed", r.status)
    for _, line in ipairs(w.fake:lines()) do
      if not line:match "^python3 " then assert.matches("runuser -u " .. w.me .. " -- ", line, 1, true) end
    end
    assert.equal(2, w.fake:count("runuser -u " .. w.me .. " --"))
    assert.equal(w.me, require("phanes.file").stat(w.venv).owner)
  end)

  it("says what would change in a dry run and runs nothing", function()
    w = world { dry_run = true }
    fakeexec.write(w.req, "aiohttp\n")
    local before = fakeexec.tree(w.root)
    local r = w.ctx.python.venv { path = w.venv, requirements = w.req, packages = { "torch" } }
    assert.equal("would change", r.status)
    assert.equal("create venv; install torch; pip install -r " .. w.req, r.message)
    assert.same({}, w.fake:lines())
    assert.same(before, fakeexec.tree(w.root))
  end)

  it("a requirements file not there yet: would change in a dry run, a failure when applied", function()
    w = world { dry_run = true }
    local r = w.ctx.python.venv { path = w.venv, requirements = w.req }
    assert.equal("create venv; pip install -r " .. w.req .. " (not there yet)", r.message)
    w.close()
    w = world()
    local ok, err = pcall(w.ctx.python.venv, { path = w.venv, requirements = w.req })
    assert.is_false(ok)
    assert.matches("requirements file " .. w.req:gsub("%p", "%%%0") .. " cannot be read", tostring(err))
  end)

  it("a failed pip run stores no hash and names pip's error; the next run tries again", function()
    w = world()
    fakeexec.write(w.req, "nosuch\n")
    w.fake:on(w.venv .. "/bin/python -m pip install", { code = 1,
      stderr = "ERROR: No matching distribution found for nosuch\n" })
    local ok, err = pcall(w.ctx.python.venv, { path = w.venv, requirements = w.req })
    assert.is_false(ok)
    assert.matches("pip install -r " .. w.req .. " failed (exit 1)", tostring(err), 1, true)
    assert.matches("No matching distribution found for nosuch", tostring(err), 1, true)
    assert.matches("with the index pip's default (PyPI): is it reachable", tostring(err), 1, true)
    assert.is_nil(fakeexec.read(w.venv .. "/.phanes-requirements"))
    w.fake:reset()
    pcall(w.ctx.python.venv, { path = w.venv, requirements = w.req })
    assert.equal(1, pips(w))
  end)

  it("a missing python3-venv fails with the hint; a non-venv directory is refused", function()
    w = world()
    w.fake:on("python3 -m venv", { code = 1, stdout = "The virtual environment was not created successfully "
      .. "because ensurepip is not available.\n" })
    local ok, err = pcall(w.ctx.python.venv, { path = w.venv })
    assert.is_false(ok)
    assert.matches("is python3-venv installed?", tostring(err), 1, true)
    assert.matches("ensurepip is not available", tostring(err), 1, true)
    fakeexec.write(w.venv .. "/data", "x")
    ok, err = pcall(w.ctx.python.venv, { path = w.venv })
    assert.is_false(ok)
    assert.matches("is not empty and is not a venv", tostring(err), 1, true)
  end)

  it("refuses bad arguments", function()
    w = world()
    for _, o in ipairs {
      { path = "venv" },
      { path = w.venv, requirements = "requirements.txt" },
      { path = w.venv, packages = { "--index-url=http://evil" } },
      { path = w.venv, packages = "torch" },
    } do
      assert.is_false((pcall(w.ctx.python.venv, o)))
    end
    assert.same({}, w.fake:lines())
  end)
end)
