-- `phanes host add|remove|list|default` against an inventory file in a
-- temporary directory.
local host = require "phanes.remote.host"
local inventory = require "phanes.remote.inventory"

describe("phanes host", function()
  local dir, path, real_path, out, err
  local real_out, real_err = io.stdout, io.stderr

  local function capture()
    local o, e = {}, {}
    out, err = o, e
    io.stdout = { write = function(_, ...) for _, s in ipairs { ... } do o[#o + 1] = tostring(s) end end, flush = function() end }
    io.stderr = { write = function(_, ...) for _, s in ipairs { ... } do e[#e + 1] = tostring(s) end end, flush = function() end }
  end

  local function run(...)
    capture()
    local ok, code = pcall(host.main, { ... })
    io.stdout, io.stderr = real_out, real_err
    assert(ok, code)
    return code, table.concat(out), table.concat(err)
  end

  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    path = dir .. "/phanes/inventory.yaml"
    real_path = inventory.path
    inventory.path = function() return path end
  end)

  after_each(function()
    inventory.path = real_path
    io.stdout, io.stderr = real_out, real_err
    require("phanes.file").remove(dir, true)
  end)

  it("adds, lists, changes the default, removes", function()
    local code, o = run("add", "web1", "deploy@10.0.0.5:2222", "--key", "~/.ssh/web", "--group", "web", "--group", "eu")
    assert.equal(0, code)
    assert.equal("added web1 (deploy@10.0.0.5:2222), the default host\n", o)
    assert.equal(0, (run("add", "db1", "10.0.0.7", "--group", "db")))
    local inv = assert(inventory.load(path))
    assert.same({ address = "10.0.0.5", user = "deploy", port = 2222, key = "~/.ssh/web", groups = { "web", "eu" } }, inv.hosts.web1)
    assert.equal("web1", inv.default)

    local _, list = run("list")
    assert.matches("%* web1%s+deploy@10%.0%.0%.5:2222%s+web,eu%s+never", list)
    assert.matches("\n  db1%s+10%.0%.0%.7%s+db%s+never", list)

    assert.equal(0, (run("default", "db1")))
    assert.equal("db1", assert(inventory.load(path)).default)
    local c2, _, e2 = run("default", "nope")
    assert.equal(2, c2)
    assert.equal("phanes: unknown host 'nope'; known hosts: db1, web1 (or give [user@]address)\n", e2)

    assert.equal(0, (run("remove", "db1")))
    inv = assert(inventory.load(path))
    assert.is_nil(inv.hosts.db1)
    assert.equal("web1", inv.default)
    assert.equal(tonumber("0600", 8), require("phanes.file").stat(path).mode)
  end)

  it("keeps a host's description, shows it in the list and keeps it when the host is added again", function()
    assert.equal(0, (run("add", "pi", "pi@10.0.0.9", "--description", "Raspberry Pi in the hall")))
    assert.equal("Raspberry Pi in the hall", assert(inventory.load(path)).hosts.pi.description)
    local _, list = run("list")
    assert.matches("%* pi%s+pi@10%.0%.0%.9%s.*Raspberry Pi in the hall\n", list)
    local _, j = run("list", "--json")
    assert.equal("Raspberry Pi in the hall", require("phanes.json").decode(j)[1].description)
    assert.equal(0, (run("add", "pi", "pi@10.0.0.10", "--update")))
    assert.equal("Raspberry Pi in the hall", assert(inventory.load(path)).hosts.pi.description)
    local bad = dir .. "/bad.yaml"
    require("phanes.file").write(bad, "hosts:\n  a: {address: x, description: [1]}\n")
    local inv, e = inventory.load(bad)
    assert.is_nil(inv)
    assert.matches("hosts.a.description: expected a string", e, 1, true)
  end)

  it("refuses bad input with usage errors", function()
    assert.equal(2, (run("add", "only-name")))
    assert.equal(2, (run("add", "bad name", "10.0.0.1")))
    assert.equal(2, (run("add", "x", "h:99999")))
    assert.equal(2, (run("remove", "ghost")))
    assert.equal(2, (run("frobnicate")))
    assert.equal(0, (run("help")))
  end)

  it("host test names a broken ~/.ssh/config line instead of 'unknown host'", function()
    local runcli = require "spec.support.runcli"
    local home = runcli.tmpdir()
    assert(require("phanes.file").mkdir(home .. "/.ssh"))
    runcli.write(home .. "/.ssh/config", "Host pi\n  HostName 10.0.0.1\n  Port twenty-two\n")
    for _, name in ipairs { "pi", "elsewhere" } do
      local r = runcli.run({ "host", "test", name, "--timeout", "1" }, { HOME = home, PHANES_INVENTORY = home .. "/inv.yaml" })
      assert.equal(2, r.code, r.stderr)
      assert.equal("phanes: " .. home .. "/.ssh/config:3: Port: expected a number from 1 to 65535, got 'twenty-two'\n",
        r.stderr)
    end
    runcli.rmdir(home)
  end)

  it("lists nothing helpfully and as JSON", function()
    local _, o = run("list")
    assert.matches("no hosts yet", o)
    run("add", "a", "10.0.0.1")
    local _, j = run("list", "--json")
    local rows = require("phanes.json").decode(j)
    assert.equal("a", rows[1].name)
    assert.is_true(rows[1].default)
  end)
end)
