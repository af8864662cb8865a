-- The inventory: target parsing, resolution (names, @groups, lists,
-- ssh_config), and property checks on random add/remove sequences.
local inventory = require "phanes.remote.inventory"
local sshconfig = require "phanes.remote.sshconfig"


local function inv_with(hosts, default)
  local inv = { hosts = {}, path = "/nonexistent/inventory.yaml" }
  for name, h in pairs(hosts) do assert(inventory.add(inv, name, h)) end
  if default then assert(inventory.set_default(inv, default)) end
  return inv
end

describe("inventory.decode", function()
  it("reads an empty file (or only comments) as an empty inventory", function()
    for _, text in ipairs { "", "# hosts\n" } do
      assert.same({}, assert(inventory.decode(text, "hosts.yaml")).hosts)
    end
  end)
end)

describe("inventory.parse_target", function()
  it("reads [user@]host[:port]", function()
    assert.same({ host = "web1" }, inventory.parse_target "web1")
    assert.same({ user = "deploy", host = "10.0.0.5", port = 2222 }, inventory.parse_target "deploy@10.0.0.5:2222")
    assert.same({ user = "root", host = "fd00::5", port = 22 }, inventory.parse_target "root@[fd00::5]:22")
    assert.same({ host = "fd00::5" }, inventory.parse_target "fd00::5")
  end)

  it("refuses what cannot be a target", function()
    for _, bad in ipairs { "@host", "h:0", "h:70000", "a b", "h:x", "u@" } do
      local t, err = inventory.parse_target(bad)
      assert.is_nil(t, bad)
      assert.matches("bad target", err)
    end
  end)
end)

describe("inventory.resolve", function()
  local inv = inv_with({
    web1 = { address = "10.0.0.5", user = "deploy", groups = { "web" } },
    web2 = { address = "10.0.0.6:2200", groups = { "web", "eu" } },
    db1 = { address = "root@10.0.0.7", key = "~/.ssh/db" },
  }, "web2")

  it("uses the default host when no target is given", function()
    local ts = assert(inventory.resolve(inv, nil))
    assert.equal(1, #ts)
    assert.same({ "web2", "10.0.0.6", 2200 }, { ts[1].name, ts[1].host, ts[1].port })
  end)

  it("expands groups and comma lists, once each", function()
    local ts = assert(inventory.resolve(inv, "@web,db1,web1"))
    local names = {}
    for i, t in ipairs(ts) do names[i] = t.name end
    assert.same({ "web1", "web2", "db1" }, names)
    assert.equal("root", ts[3].user)
    assert.equal("~/.ssh/db", ts[3].key)
  end)

  it("lets the target's user and port win over the entry", function()
    local t = assert(inventory.resolve(inv, "admin@web1:23"))[1]
    assert.same({ "web1", "10.0.0.5", "admin", 23 }, { t.name, t.host, t.user, t.port })
  end)

  it("takes addresses that are not in the inventory", function()
    local t = assert(inventory.resolve(inv, "root@192.0.2.10"))[1]
    assert.same({ "root@192.0.2.10", "192.0.2.10", "root", 22 }, { t.name, t.host, t.user, t.port })
    assert.equal("host.example", assert(inventory.resolve(inv, "host.example"))[1].host)
  end)

  it("answers an unknown name with the known ones", function()
    local ts, err = inventory.resolve(inv, "web3")
    assert.is_nil(ts)
    assert.equal("unknown host 'web3'; known hosts: db1, web1, web2 (or give [user@]address)", err)
    ts, err = inventory.resolve(inv, "@nope")
    assert.is_nil(ts)
    assert.equal("no host in group @nope; groups: eu, web", err)
  end)

  it("says how to start when there is no default", function()
    local ts, err = inventory.resolve({ hosts = {} }, nil)
    assert.is_nil(ts)
    assert.matches("no default host", err)
  end)

  it("applies ssh_config aliases under the inventory and the target", function()
    local cfg = assert(sshconfig.parse("Host bastion\n  HostName 10.9.9.9\n  User ops\n  Port 2022\n  IdentityFile /k/b\n", { home = "/h" }))
    local t = assert(inventory.resolve(inv, "bastion", cfg))[1]
    assert.same({ "10.9.9.9", "ops", 2022 }, { t.host, t.user, t.port })
    assert.same({ "/k/b" }, t.identities)
    t = assert(inventory.resolve(inv, "me@bastion:1", cfg))[1]
    assert.same({ "10.9.9.9", "me", 1 }, { t.host, t.user, t.port })
  end)

  it("takes the port from --port, then the target, the inventory entry, ssh_config, 22", function()
    local cfg = assert(sshconfig.parse("Host *\n  Port 2022\n", { home = "/h" }))
    local entry_port = inv_with({ a = { address = "10.0.0.1", port = 2201 }, b = { address = "10.0.0.2:2202" },
      c = { address = "10.0.0.3" } })
    local function port(spec, sc, over) return assert(inventory.resolve(entry_port, spec, sc, over))[1].port end
    assert.equal(2299, port("a:2203", cfg, { port = 2299 }))
    assert.equal(2299, port("c", nil, { port = 2299 }))
    assert.equal(2203, port("a:2203", cfg))
    assert.equal(2201, port("a", cfg))
    assert.equal(2202, port("b", cfg))
    assert.equal(2022, port("c", cfg))
    assert.equal(22, port("c"))
    assert.equal(2299, port("root@192.0.2.1:2203", cfg, { port = 2299 }))
  end)

  it("carries ssh_config's host key settings to the target", function()
    local cfg = assert(sshconfig.parse("Host web1 10.0.0.5\n  StrictHostKeyChecking ask\n  UserKnownHostsFile /a /b\n"
      .. "  GlobalKnownHostsFile /g\n", { name = "cfg", home = "/h" }))
    local t = assert(inventory.resolve(inv, "web1", cfg))[1]
    assert.same({ "ask", "cfg:2", { "/a", "/b" }, { "/g" } }, { t.strict, t.strict_where, t.known_hosts, t.global_known_hosts })
  end)

  it("refuses a host ssh_config sends through ProxyJump or ProxyCommand, naming the file:line", function()
    local cfg = assert(sshconfig.parse("Host 10.0.0.6\n  ProxyJump gw\nHost 10.0.0.5\n  ProxyCommand nc %h %p\n",
      { name = "/h/.ssh/config", home = "/h" }))
    local ts, err = inventory.resolve(inv, "web2", cfg)
    assert.is_nil(ts)
    assert.equal("web2: /h/.ssh/config:2: ProxyJump gw: phanes connects directly and does not support ProxyJump; "
      .. "give this host an address phanes can reach, or set `ProxyJump none` for it before that line", err)
    ts, err = inventory.resolve(inv, "@web", cfg)
    assert.is_nil(ts)
    assert.matches("^web1: /h/%.ssh/config:4: ProxyCommand nc %%h %%p: ", err)
    assert.equal(1, #assert(inventory.resolve(inv, "db1", cfg)))
  end)
end)

describe("inventory add/remove", function()
  it("refuses bad names and missing addresses", function()
    local inv = { hosts = {} }
    assert.is_nil((inventory.add(inv, "bad name", { address = "x" })))
    assert.is_nil((inventory.add(inv, "ok", {})))
    assert.is_nil(inventory.remove(inv, "ghost"))
  end)

  -- Random sequences against a model: the list holds exactly what was
  -- added and not removed; the default is the last one set while it stays,
  -- else the first name left; there is a default whenever there are hosts.
  it("matches a model over 200 random add/remove/default sequences", function()
    local seed = tonumber(os.getenv "PHANES_SEED" or "") or os.time()
    math.randomseed(seed)
    local pool = { "a", "b", "c", "web-1", "db.2", "x_y" }
    for _ = 1, 200 do
      local inv, model, default = { hosts = {} }, {}, nil
      for _ = 1, math.random(1, 25) do
        local name = pool[math.random(#pool)]
        local op = math.random(1, 3)
        if op == 1 then
          local mk = math.random(0, 3) == 0
          assert(inventory.add(inv, name, { address = "10.0.0." .. math.random(254), groups = { "g" .. math.random(3) } }, mk))
          model[name] = true
          if mk or default == nil then default = name end
        elseif op == 2 then
          local ok = inventory.remove(inv, name)
          assert.equal(model[name] == true, ok == true)
          model[name] = nil
          if default == name then
            local left = {}
            for n in pairs(model) do left[#left + 1] = n end
            table.sort(left)
            default = left[1]
          end
        elseif model[name] then
          assert(inventory.set_default(inv, name))
          default = name
        end
        local want = {}
        for n in pairs(model) do want[#want + 1] = n end
        table.sort(want)
        assert.same(want, inventory.names(inv), "seed " .. seed)
        assert.equal(default, inv.default, "seed " .. seed)
      end
    end
  end)
end)

describe("inventory save/load", function()
  local dir
  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
  end)
  after_each(function() require("phanes.file").remove(dir, true) end)

  it("is empty when the file is absent, an error naming the path when it cannot be read", function()
    assert.same({ hosts = {} }, assert(inventory.load(dir .. "/inventory.yaml")))
    assert(require("phanes.file").mkdir(dir .. "/inventory.yaml", { parents = true }))
    local inv, err = inventory.load(dir .. "/inventory.yaml")
    assert.is_nil(inv)
    assert.matches(dir .. "/inventory.yaml: ", err, 1, true)
    local cfg, serr = sshconfig.load(dir .. "/inventory.yaml")
    assert.is_nil(cfg)
    assert.matches(dir .. "/inventory.yaml: ", serr, 1, true)
    assert.same({}, sshconfig.load(dir .. "/none"))
  end)

  it("round-trips random inventories through the file", function()
    local seed = tonumber(os.getenv "PHANES_SEED" or "") or os.time()
    math.randomseed(seed)
    for i = 1, 50 do
      local inv = { hosts = {} }
      for j = 1, math.random(0, 8) do
        local groups = {}
        for g = 1, math.random(0, 2) do groups[g] = "grp" .. math.random(4) end
        assert(inventory.add(inv, "h" .. j, {
          address = ({ "10.0.0." .. j, "h" .. j .. ".example", "fd00::" .. j })[math.random(3)],
          user = math.random(0, 1) == 1 and "user" .. j or nil,
          port = math.random(0, 1) == 1 and math.random(1, 65535) or nil,
          key = math.random(0, 1) == 1 and "~/.ssh/k" .. j or nil,
          groups = groups,
        }, math.random(0, 2) == 0))
      end
      local path = dir .. "/sub/inventory" .. i .. ".yaml"
      assert(inventory.save(inv, path))
      local back = assert(inventory.load(path))
      back.path, inv.path = nil, nil
      assert.same(inv, back, "seed " .. seed)
      assert.equal(tonumber("0600", 8), require("phanes.file").stat(path).mode)
    end
  end)

  it("reports a default that names no host, with the file", function()
    local path = dir .. ".yaml"
    local f = assert(io.open(path, "w"))
    f:write "default: ghost\nhosts:\n  a: { address: 10.0.0.1 }\n"
    f:close()
    local inv, err = inventory.load(path)
    os.remove(path)
    assert.is_nil(inv)
    assert.equal(path .. ": default: 'ghost' is not a host in this file", err)
  end)

  it("treats a missing file as an empty inventory", function()
    local inv = assert(inventory.load(dir .. "/none.yaml"))
    assert.same({}, inv.hosts)
    assert.is_nil(inv.default)
  end)

  it("migrates a format-0 file once (keeping the old one as .migrated) and refuses a newer format", function()
    local F = require "phanes.file"
    assert(F.mkdir(dir, { parents = true }))
    local path = dir .. "/inventory.yaml"
    local old = "# mine\ndefault: web1\nhosts:\n  web1: { address: 10.0.0.5, user: deploy, groups: [web], vars: { redis: { port: 6380 } } }\n"
    assert(F.write(path, old))
    local real_err, said = io.stderr, {}
    io.stderr = { write = function(_, ...) for _, x in ipairs { ... } do said[#said + 1] = tostring(x) end end }
    local ok, inv = pcall(inventory.load, path)
    io.stderr = real_err
    assert.is_true(ok, inv)
    assert.equal("10.0.0.5", inv.hosts.web1.address)
    assert.same({ redis = { port = 6380 } }, inv.hosts.web1.vars)
    assert.matches("rewritten in inventory format 1", table.concat(said))
    assert.equal(old, F.read(path .. ".migrated"))
    local new = assert(F.read(path))
    assert.matches("\nformat: 1\n", new)
    local again = assert(inventory.decode(new, path))
    assert.equal(1, again.format)
    assert.same(inv.hosts, again.hosts)
    assert.equal("web1", again.default)
    -- the second load leaves both files alone
    said = {}
    io.stderr = { write = function(_, ...) for _, x in ipairs { ... } do said[#said + 1] = tostring(x) end end }
    ok = pcall(inventory.load, path)
    io.stderr = real_err
    assert.is_true(ok)
    assert.same({}, said)
    assert.equal(new, F.read(path))
    assert.equal(old, F.read(path .. ".migrated"))
    -- newer, or not a number: refused with the path
    local _, e = inventory.decode("format: 2\nhosts: {}\n", path)
    assert.matches(path .. ": format 2 is newer than this phanes reads (1): upgrade phanes", e, 1, true)
    _, e = inventory.decode("format: x\nhosts: {}\n", path)
    assert.matches("format: expected a whole number", e, 1, true)
  end)
end)
