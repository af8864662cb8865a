-- layers.lua: a host's config from defaults, config.yaml, group vars, host
-- vars, the vault's host block, the environment and --set. Real files in a
-- temp dir, a real (fast-parameter) vault; the CLI as a subprocess.
local layers = require "phanes.config.layers"
local inventory = require "phanes.remote.inventory"
local vault = require "phanes.vault"
local json = require "phanes.json"
local runcli = require "spec.support.runcli"

local FAST = { n = 1024, r = 8, p = 1 }

local function modules()
  return { { name = "redis", config = {
    port = { type = "integer", default = 6379 },
    password = { type = "string", secret = true },
    bind = { type = "string", default = "127.0.0.1" },
    listen = { type = "list", items = { type = "string" }, default = { "lo" } },
    tags = { type = "map" },
  } } }
end

local function write(path, text)
  local dir = path:match "^(.*)/"
  assert(require("phanes.file").mkdir(dir, { parents = true, mode = tonumber("700", 8) }))
  runcli.write(path, text)
end

-- The layers that can hold redis.port, lowest first, and the origin each
-- gives (DIR: the temp dir).
local LAYERS = { "config", "group_all", "group_web", "inv_web", "group_eu", "host_file", "inv_host",
  "vault", "env", "set" }
local ORIGIN = {
  config = "DIR/config.yaml:2", group_all = "DIR/group_vars/all.yaml:2", group_web = "DIR/group_vars/web.yaml:2",
  inv_web = "inventory @web.vars", group_eu = "DIR/group_vars/eu.yaml:2", host_file = "DIR/host_vars/web1.yaml:2",
  inv_host = "inventory web1.vars", vault = "vault hosts.web1", env = "env PHANES_REDIS_PORT", set = "--set",
}
local FILEISH = { config = true, group_all = true, group_web = true, inv_web = true, group_eu = true,
  host_file = true, inv_host = true, vault = true }

-- One layer's settings: the port, a list, and a map key of its own.
local function settings(name, port)
  return { port = port, listen = { name }, tags = { [name] = true, last = name } }
end

-- The same as YAML, the port on line 2.
local function yaml_of(name, port)
  return string.format("redis:\n  port: %d\n  listen: [%s]\n  tags: { %s: true, last: %s }\n",
    port, name, name, name)
end

-- Builds the world for one combination; -> load options
local function build(dir, present, port)
  local inv_doc = { hosts = { web1 = { address = "10.0.0.5", groups = { "web", "eu" } },
    web2 = { address = "10.0.0.6", groups = { "web" } } }, groups = {} }
  write(dir .. "/config.yaml", present.config and yaml_of("config", port.config) or "redis:\n  bind: 0.0.0.0\n")
  local files = { group_all = "group_vars/all.yaml", group_web = "group_vars/web.yaml",
    group_eu = "group_vars/eu.yaml", host_file = "host_vars/web1.yaml" }
  for name, rel in pairs(files) do
    if present[name] then write(dir .. "/" .. rel, yaml_of(name, port[name])) end
  end
  if present.inv_web then inv_doc.groups.web = { vars = { redis = settings("inv_web", port.inv_web) } } end
  if present.inv_host then inv_doc.hosts.web1.vars = { redis = settings("inv_host", port.inv_host) } end
  local inv = assert(inventory.decode(require("phanes.yaml").encode(inv_doc), "inventory.yaml"))
  write(dir .. "/pw", "pw-layers\n")
  if present.vault then
    local doc = { defaults = {}, hosts = { web1 = { redis = settings("vault", port.vault) },
      web2 = { redis = { port = 1 } } } }
    assert(vault.write_file(dir .. "/secrets.vault.yaml", vault.dump(doc), "pw-layers", "init", FAST))
  end
  return { config = dir .. "/config.yaml", inventory = inv, modules = modules(), known = modules(),
    env = present.env and { PHANES_REDIS_PORT = tostring(port.env) } or {},
    sets = present.set and { "redis.port=" .. port.set } or {}, vault_password_file = dir .. "/pw" }
end

describe("layers", function()
  local dir
  before_each(function()
    dir = runcli.tmpdir()
    vault.LOG = dir .. "/security.log"
  end)
  after_each(function()
    vault.LOG = nil
    runcli.rmdir(dir)
  end)

  it("the highest layer present wins, over random combinations; maps merge, lists replace", function()
    math.randomseed(os.time())
    for round = 1, 60 do
      local d = dir .. "/" .. round
      local present, port, top, fileish_top = {}, {}, nil, nil
      local tags = {}
      for i, name in ipairs(LAYERS) do
        present[name] = math.random() < 0.5
        port[name] = 7000 + i
        if present[name] then
          top = name
          if FILEISH[name] then fileish_top = name; tags[name] = true end
        end
      end
      local cfg, info = layers.load("web1", build(d, present, port))
      assert(cfg, "round " .. round .. ": " .. table.concat(type(info) == "table" and info or {}, "\n"))
      local what = "round " .. round .. ", layers " .. json.encode(present)
      local origin = layers.label(info.origin["redis.port"], "redis.port", { redis = "redis" })
      if top then
        assert.equal(port[top], cfg.redis.port, what)
        assert.equal((ORIGIN[top]:gsub("DIR", d)), origin, what)
      else
        assert.equal(6379, cfg.redis.port, what)
        assert.equal("default (module redis)", origin, what)
      end
      -- lists replace: only the highest layer's list; maps merge: every layer's key
      assert.same(fileish_top and { fileish_top } or { "lo" }, cfg.redis.listen, what)
      if fileish_top then
        tags.last = fileish_top
        assert.same(tags, cfg.redis.tags, what)
      else
        assert.is_nil(cfg.redis.tags, what)
      end
      assert.equal(present.config and "127.0.0.1" or "0.0.0.0", cfg.redis.bind, what)
    end
  end)

  it("merge: maps deeply, lists and scalars replace, a !vault reference is a value", function()
    local a = { x = { y = 1, z = { 1, 2, 3 }, w = { a = 1 } }, s = "a" }
    local b = { x = { z = { 9 }, w = { b = 2 }, v = { ["!vault"] = "k" } }, s = { m = 1 } }
    local m = layers.merge(a, b)
    assert.same({ x = { y = 1, z = { 9 }, w = { a = 1, b = 2 }, v = { ["!vault"] = "k" } }, s = { m = 1 } }, m)
    assert.same({ x = { y = 1, z = { 1, 2, 3 }, w = { a = 1 } }, s = "a" }, a) -- inputs untouched
    assert.same({ p = { ["!vault"] = "b" } }, layers.merge({ p = { ["!vault"] = "a", q = 1 } }, { p = { ["!vault"] = "b" } }))
  end)

  it("the inventory keeps vars on hosts and groups through a rewrite, and refuses vars that are not a map", function()
    local text = "hosts:\n  web1: { address: a, groups: [web], vars: { redis: { port: 1 } } }\n"
      .. "groups:\n  web: { vars: { redis: { bind: b } } }\n"
    local inv = assert(inventory.decode(text, "i"))
    assert(inventory.add(inv, "web1", { address = "a2", groups = { "web" } })) -- `phanes host add` again
    local again = assert(inventory.decode(inventory.encode(inv), "i"))
    assert.same({ redis = { port = 1 } }, again.hosts.web1.vars)
    assert.same({ redis = { bind = "b" } }, again.groups.web.vars)
    local _, err = inventory.decode("hosts:\n  web1: { address: a, vars: [1] }\n", "inv.yaml")
    assert.equal("inv.yaml: hosts.web1.vars: expected a map of config settings", err)
    _, err = inventory.decode("groups:\n  web: { vars: 3 }\n", "inv.yaml")
    assert.matches("inv.yaml: groups.web: expected a mapping with vars:", err, 1, true)
  end)

  it("group order: all first, then the host's groups as the inventory lists them", function()
    local inv = assert(inventory.decode("hosts:\n  h: { address: a, groups: [zeta, alpha, zeta] }\n", "i"))
    assert.same({ "all", "zeta", "alpha" }, layers.groups(inv, "h"))
    assert.same({ "all" }, layers.groups(inv, "unknown"))
  end)

  it("labels each kind of origin", function()
    local own = { redis = "redis", state_path = "phanes" }
    assert.equal("config.yaml:12", layers.label("config.yaml:12:3", "redis.port", own))
    assert.equal("group_vars/web.yaml:3", layers.label("group_vars/web.yaml:3:5", "redis.port", own))
    assert.equal("inventory web1.vars", layers.label("inventory web1.vars", "redis.port", own))
    assert.equal("vault hosts.web1", layers.label("vault hosts.web1", "redis.port", own))
    assert.equal("env PHANES_REDIS_PASSWORD", layers.label("PHANES_REDIS_PASSWORD", "redis.password", own))
    assert.equal("--set", layers.label("--set redis.port", "redis.port", own))
    assert.equal("default (module redis)", layers.label("default", "redis.port", own))
    assert.equal("default (phanes)", layers.label("default", "state_path", own))
    assert.equal("profile defaults", layers.label("profile defaults", "redis.port", own))
  end)

  it("a bad group or host vars file is an error naming the file, line and key", function()
    local o = build(dir, { group_web = true }, { group_web = 1 })
    write(dir .. "/group_vars/web.yaml", "redis:\n  port: abc\n")
    local cfg, errs = layers.load("web1", o)
    assert.is_nil(cfg)
    assert.matches(dir .. "/group_vars/web.yaml:2:3: redis.port: expected an integer", errs[1], 1, true)
    write(dir .. "/host_vars/web1.yaml", "redis: [1\n")
    cfg, errs = layers.load("web1", o)
    assert.is_nil(cfg)
    assert.matches("host_vars/web1.yaml", table.concat(errs, "\n"), 1, true)
  end)

  it("config show masks secret fields and every value from the vault's host block", function()
    local o = build(dir, { config = true }, { config = 1 })
    write(dir .. "/config.yaml", "redis:\n  password: file-s3cret\n")
    local doc = { defaults = {}, hosts = { web1 = { redis = { bind = "10.9.9.9" } } } }
    assert(vault.write_file(dir .. "/secrets.vault.yaml", vault.dump(doc), "pw-layers", "init", FAST))
    local cfg, info = assert(layers.load("web1", o))
    assert.equal("10.9.9.9", cfg.redis.bind)
    local d = require("phanes.cli.config").describe("web1", cfg, info, o.known)
    assert.equal("******", d.config.redis.password)
    assert.equal("******", d.config.redis.bind)
    assert.equal("vault hosts.web1", d.origin["redis.bind"])
    assert.equal(6379, d.config.redis.port)
    assert.not_matches("s3cret", json.encode(d), 1, true)
    assert.not_matches("10.9.9.9", json.encode(d), 1, true)
  end)

  it("a `!vault KEY` in group vars reads the vault config.yaml names", function()
    local o = build(dir, {}, {})
    write(dir .. "/config.yaml", "vault: { file: other.vault }\nredis:\n  port: 1\n")
    write(dir .. "/group_vars/web.yaml", "redis:\n  password: !vault redis.password\n")
    local doc = { defaults = { redis = { password = "gr0up-s3cret" } }, hosts = {} }
    assert(vault.write_file(dir .. "/other.vault", vault.dump(doc), "pw-layers", "init", FAST))
    local cfg, info = layers.load("web1", o)
    assert(cfg, type(info) == "table" and table.concat(info, "\n"))
    assert.equal("gr0up-s3cret", cfg.redis.password)
    assert.equal(dir .. "/group_vars/web.yaml:2 !vault redis.password", layers.label(info.origin["redis.password"]))
  end)

  it("a fleet host without a way to get the vault password is refused, not prompted", function()
    local o = build(dir, { vault = true }, { vault = 1 })
    o.vault_password_file, o.no_prompt = nil, true
    local text, err = layers.for_host("web1", o)
    assert.is_nil(text)
    assert.matches("there is no terminal to ask on; give --vault-password-file", err, 1, true)
  end)

  it("for_host resolves `!vault KEY` on the controller, from the host's own block", function()
    local o = build(dir, {}, {})
    write(dir .. "/config.yaml", "redis:\n  password: !vault redis.password\n")
    local doc = { defaults = { redis = { password = "def4ult-s3cret" } },
      hosts = { web1 = { redis = { password = "web1-0nly-s3cret" } } } }
    assert(vault.write_file(dir .. "/secrets.vault.yaml", vault.dump(doc), "pw-layers", "init", FAST))
    local files = { { name = "config/config.yaml", data = "redis:\n  password: !vault redis.password\n", local_path = o.config } }
    assert(layers.remote_files("web1", files, o.inventory, { "--vault-password-file", o.vault_password_file }))
    local sent = require("phanes.yaml").decode(files[1].data)
    assert.equal("web1-0nly-s3cret", sent.redis.password)
    assert.is_nil(files[1].data:find("!vault", 1, true))
    local text = assert(layers.for_host("web2", o))
    assert.equal("def4ult-s3cret", require("phanes.yaml").decode(text).redis.password)
    local masked = table.concat(vault.resolved_values(), "\n")
    assert.matches("web1-0nly-s3cret", masked, 1, true)
    write(dir .. "/config.yaml", "redis:\n  password: !vault redis.pasword\n")
    local none, err = layers.for_host("web2", o) -- web1's block would replace the reference
    assert.is_nil(none)
    assert.matches("no key 'redis.pasword' in the vault", err, 1, true)
  end)

  it("load (config show, check HOST) resolves `!vault KEY` for that host, and the audit log names it", function()
    local o = build(dir, {}, {})
    write(dir .. "/config.yaml", "redis:\n  password: !vault redis.password\n")
    local doc = { defaults = { redis = { password = "def4ult-s3cret" } }, hosts = { web2 = { redis = { port = 2 } } } }
    assert(vault.write_file(dir .. "/secrets.vault.yaml", vault.dump(doc), "pw-layers", "init", FAST))
    local cfg, info = layers.load("web2", o)
    assert(cfg, type(info) == "table" and table.concat(info, "\n"))
    assert.equal("def4ult-s3cret", cfg.redis.password)
    local lines = {}
    for line in (runcli.read(dir .. "/security.log") or ""):gmatch "[^\n]+" do
      local ev = json.decode(line)
      if ev.action == "secret_resolved" then lines[#lines + 1] = ev end
    end
    assert.equal(1, #lines)
    assert.equal("web2", lines[1].host)
    assert.equal("redis.password", lines[1].key)
  end)

  it("for_host sends a !vault value as the type of the field it fills", function()
    local o = build(dir, {}, {})
    write(dir .. "/config.yaml", "redis:\n  port: !vault redis.port\n  password: !vault redis.pw\n")
    local doc = { defaults = { redis = { port = "6390", pw = "12345678" } }, hosts = {} }
    assert(vault.write_file(dir .. "/secrets.vault.yaml", vault.dump(doc), "pw-layers", "init", FAST))
    local text = assert(layers.for_host("web2", o))
    local sent = require("phanes.yaml").decode(text)
    assert.equal(6390, sent.redis.port)
    assert.equal(math.type(6390), math.type(sent.redis.port))
    assert.equal("12345678", sent.redis.password) -- a string field keeps its text
  end)

  it("for_host gives the remote run config.yaml with the host's layers merged in", function()
    local o = build(dir, { config = true, group_web = true, inv_host = true }, { config = 1, group_web = 2, inv_host = 3 })
    local text = assert(layers.for_host("web1", o))
    local doc = require("phanes.yaml").decode(text)
    assert.equal(3, doc.redis.port)
    assert.same({ config = true, group_web = true, inv_host = true, last = "inv_host" }, doc.redis.tags)
    local text2 = assert(layers.for_host("web2", o)) -- web2: group web only
    assert.equal(2, require("phanes.yaml").decode(text2).redis.port)
    local files = { { name = "config/config.yaml", data = "redis:\n  port: 1\n", local_path = o.config } }
    assert(layers.remote_files("web1", files, o.inventory, {}))
    assert.equal(3, require("phanes.yaml").decode(files[1].data).redis.port)
  end)
end)

describe("phanes config show / check HOST|@GROUP", function()
  local dir, env
  before_each(function()
    dir = runcli.tmpdir()
    write(dir .. "/config.yaml", "redis:\n  password: c0nfig-s3cret\n  port: 6379\n")
    write(dir .. "/group_vars/web.yaml", "# web servers\nredis:\n  port: 6380\n")
    write(dir .. "/host_vars/web2.yaml", "redis:\n  maxmemory: 1gb\n")
    write(dir .. "/inventory.yaml", table.concat({
      "hosts:",
      "  web1: { address: 10.0.0.5, groups: [web], vars: { redis: { port: 6390 } } }",
      "  web2: { address: 10.0.0.6, groups: [web] }",
      "  db1: { address: 10.0.0.7, groups: [db] }",
      "groups:",
      "  db: { vars: { redis: { bind: 10.1.1.1 } } }", "" }, "\n"))
    env = { PHANES_INVENTORY = dir .. "/inventory.yaml", HOME = dir, XDG_STATE_HOME = dir .. "/state" }
  end)
  after_each(function() runcli.rmdir(dir) end)

  it("show --origin: each value, where it came from, secrets masked", function()
    local r = runcli.run({ "config", "show", "@web", "--origin", "--config", dir .. "/config.yaml",
      "--set", "redis.bind=0.0.0.0", "--color=never" }, env)
    assert.equal(0, r.code, r.stderr)
    local web1, web2 = r.stdout:match "^web1\n(.-)\n\nweb2\n(.*)$"
    assert(web1 and web2, r.stdout)
    assert.matches("redis%.port%s+6390%s+inventory web1%.vars", web1)
    assert.matches("redis%.port%s+6380%s+" .. dir:gsub("%p", "%%%0") .. "/group_vars/web%.yaml:3", web2)
    assert.matches("redis%.maxmemory%s+1gb%s+" .. dir:gsub("%p", "%%%0") .. "/host_vars/web2%.yaml:2", web2)
    assert.matches("redis%.bind%s+0%.0%.0%.0%s+%-%-set", web1)
    assert.matches("redis%.password%s+%*%*%*%*%*%*%s+" .. dir:gsub("%p", "%%%0") .. "/config%.yaml:2", web1)
    assert.matches("state_path%s+%S+%s+default %(phanes%)", web1)
    assert.not_matches("c0nfig-s3cret", r.stdout .. r.stderr, 1, true)
  end)

  it("show --json: one entry per host, masked, origins on request", function()
    local r = runcli.run({ "config", "show", "web1,db1", "--json", "--origin", "--config", dir .. "/config.yaml" },
      { PHANES_INVENTORY = env.PHANES_INVENTORY, PHANES_REDIS_PASSWORD = "env-s3cret" })
    assert.equal(0, r.code, r.stderr)
    local doc = json.decode(r.stdout)
    assert.equal(2, #doc.hosts)
    assert.equal("web1", doc.hosts[1].host)
    assert.equal(6390, doc.hosts[1].config.redis.port)
    assert.equal("******", doc.hosts[1].config.redis.password)
    assert.equal("env PHANES_REDIS_PASSWORD", doc.hosts[1].origin["redis.password"])
    assert.equal("10.1.1.1", doc.hosts[2].config.redis.bind)
    assert.equal("inventory @db.vars", doc.hosts[2].origin["redis.bind"])
    assert.equal(6379, doc.hosts[2].config.redis.port)
    assert.not_matches("env-s3cret", r.stdout .. r.stderr, 1, true)
  end)

  it("check @group reports every host's errors at once, each prefixed with its host; exit 2", function()
    write(dir .. "/host_vars/web1.yaml", "redis:\n  port: abc\n")
    write(dir .. "/host_vars/web2.yaml", "redis:\n  prot: 1\n")
    local r = runcli.run({ "check", "@web", "--config", dir .. "/config.yaml", "--color=never" }, env)
    assert.equal(2, r.code, r.stdout .. r.stderr)
    assert.matches("web1: " .. dir .. "/host_vars/web1.yaml:2:3: redis.port: expected an integer", r.stderr, 1, true)
    assert.matches("web2: " .. dir .. "/host_vars/web2.yaml:2:3: ", r.stderr, 1, true)
    assert.matches("did you mean 'redis.port'", r.stderr, 1, true)
    assert.matches("2 of 2 hosts with config errors: web1, web2", r.stderr, 1, true)
    r = runcli.run({ "check", "db1", "--config", dir .. "/config.yaml", "--color=never" }, env)
    assert.equal(0, r.code, r.stderr)
    assert.matches("ok: the config of db1 is valid", r.stdout, 1, true)
  end)
end)
