-- Config loading: schema checks, all errors with their source, did-you-mean,
-- coercion, precedence, required keys, secrets, describe.
local config = require "phanes.config"
local schema = require "phanes.config.schema"

-- Modules as the module files declare them.
local function modules()
  local redis = { name = "redis", description = "Redis on localhost", config = {
    password = { type = "string", required = true, secret = true },
    bind = { type = "string", default = "127.0.0.1" },
    port = { type = "integer", default = 6379 },
    maxmemory = { type = "string", default = "256mb" },
  } }
  local postgres = { name = "postgres", config = {
    version = { type = "string", default = "15" },
    listen = { type = "list", items = { type = "string" }, default = { "localhost" } },
    ratio = { type = "number", default = 0.5 },
    tuned = { type = "boolean", default = false },
    mode = { type = "enum", values = { "small", "large" }, default = "small" },
    databases = { type = "list", items = { type = "map", fields = {
      name = { type = "string", required = true },
      owner = { type = "string", default = "postgres" },
      password = { type = "string", secret = true },
    } } },
    tuning = { type = "map", fields = {
      shared_buffers = { type = "string", default = "128MB" },
      max_connections = { type = "integer", default = 100 },
    } },
    extra = { type = "map" },
  } }
  local user = { name = "user", globals = {
    username = { type = "string", required = true, description = "The admin user" },
    ssh_public_key = { type = "string", required = true },
  }, config = { shell = { type = "string", default = "/bin/bash" } } }
  local security = { name = "security", globals = {
    username = { type = "string", required = true, description = "same, other words" },
  }, config = { ssh_port = { type = "integer", default = 22 } } }
  return { redis = redis, postgres = postgres, user = user, security = security }
end

-- Hand-made marks, as phanes.yaml gives them: marks[t].keys[k] = {line, col}.
local function mark(t, line, col, keys)
  local m = { line = line, col = col, keys = {} }
  for k, at in pairs(keys) do m.keys[k] = { line = at[1], col = at[2] } end
  return t, m
end

local function load_ok(opts)
  local cfg, info = config.load(opts)
  if not cfg then error("unexpected errors:\n" .. table.concat(info, "\n"), 2) end
  return cfg, info
end

local function load_err(opts)
  local cfg, errs = config.load(opts)
  assert.is_nil(cfg)
  assert.is_table(errs)
  return errs
end

describe("config", function()
  local M
  before_each(function() M = modules() end)

  describe("defaults and sections", function()
    it("applies schema defaults and gives every module in the run a section", function()
      local cfg = load_ok { modules = { M.postgres, M.security }, sets = { "username=deploy" } }
      assert.equal("15", cfg.postgres.version)
      assert.same({ "localhost" }, cfg.postgres.listen)
      assert.same({ shared_buffers = "128MB", max_connections = 100 }, cfg.postgres.tuning)
      assert.is_nil(cfg.postgres.extra)
      assert.equal(22, cfg.security.ssh_port)
      assert.equal("/var/lib/phanes/state.json", cfg.state_path)
      assert.equal(3600, cfg.apt_cache_max_age)
      assert.equal("deploy", cfg.username)
      assert.is_nil(cfg.redis)
    end)

    it("accepts a section that is present but empty or null", function()
      local data = { postgres = {} }
      local cfg = load_ok { data = data, modules = { M.postgres } }
      assert.equal("15", cfg.postgres.version)
      cfg = load_ok { data = {}, modules = { M.postgres } } -- `postgres:` (null) is absent
      assert.is_table(cfg.postgres)
    end)

    it("does not share default tables between runs", function()
      local cfg = load_ok { modules = { M.postgres } }
      table.insert(cfg.postgres.listen, "mutated")
      cfg = load_ok { modules = { M.postgres } }
      assert.same({ "localhost" }, cfg.postgres.listen)
    end)

    it("checks sections of known modules not in the run, without requiring their keys", function()
      local data = { redis = { bind = 1 }, postgres = { version = "16" } }
      local errs = load_err { data = data, path = "c.yaml", modules = { M.postgres }, known = M }
      assert.same({ "c.yaml: redis.bind: expected a string, got an integer" }, errs)
      local cfg = load_ok { data = { redis = { bind = "::1" } }, modules = { M.postgres }, known = M }
      assert.equal("::1", cfg.redis.bind) -- kept, checked, but not required
      assert.is_nil(cfg.redis.password)
      cfg = load_ok { modules = { M.postgres }, known = M }
      assert.is_nil(cfg.redis)
    end)
  end)

  describe("errors", function()
    it("reports type errors at the key's line and column", function()
      local data = { postgres = { version = 16, tuned = "yes", ratio = "x", mode = "huge", listen = "a" } }
      local _, m = mark(data, 1, 1, { postgres = { 13, 1 } })
      local _, pm = mark(data.postgres, 14, 3, { version = { 14, 3 }, tuned = { 15, 3 }, ratio = { 16, 3 },
        mode = { 17, 3 }, listen = { 18, 3 } })
      local errs = load_err { data = data, marks = { [data] = m, [data.postgres] = pm }, path = "config.yaml",
        modules = { M.postgres } }
      assert.same({
        "config.yaml:14:3: postgres.version: expected a string, got an integer",
        "config.yaml:15:3: postgres.tuned: expected true or false, got a string",
        "config.yaml:16:3: postgres.ratio: expected a number, got a string",
        'config.yaml:17:3: postgres.mode: expected one of "small", "large", got "huge"',
        "config.yaml:18:3: postgres.listen: expected a list, got a string",
      }, errs)
    end)

    it("reports list items and nested map fields with their paths", function()
      local data = { postgres = { databases = { { name = "app" }, { owner = 3 } }, tuning = { max_connections = "many" } } }
      local errs = load_err { data = data, path = "config.yaml", modules = { M.postgres } }
      assert.same({
        "config.yaml: postgres.databases[2].owner: expected a string, got an integer",
        "config.yaml: postgres.tuning.max_connections: expected an integer, got a string",
        "config.yaml: postgres.databases[2].name: required (set it in config.yaml)",
      }, errs)
    end)

    it("says 'did you mean' for unknown keys, at every level", function()
      local data = { postgress = { version = "16" }, postgres = { verison = "16", tuning = { shared_bufers = "1GB" } },
        zzz = 1 }
      local _, m = mark(data, 1, 1, { postgress = { 3, 1 }, postgres = { 5, 1 }, zzz = { 9, 1 } })
      local _, pm = mark(data.postgres, 6, 3, { verison = { 6, 3 }, tuning = { 7, 3 } })
      local _, tm = mark(data.postgres.tuning, 8, 5, { shared_bufers = { 8, 5 } })
      local errs = load_err { data = data, marks = { [data] = m, [data.postgres] = pm, [data.postgres.tuning] = tm },
        path = "config.yaml", modules = { M.postgres } }
      assert.same({
        "config.yaml:3:1: unknown key 'postgress' (did you mean 'postgres'?)",
        "config.yaml:6:3: unknown key 'postgres.verison' (did you mean 'postgres.version'?)",
        "config.yaml:8:5: unknown key 'postgres.tuning.shared_bufers' (did you mean 'postgres.tuning.shared_buffers'?)",
        "config.yaml:9:1: unknown key 'zzz'",
      }, errs)
    end)

    it("points a misplaced top-level key to its section", function()
      local errs = load_err { data = { version = "16" }, path = "config.yaml", modules = { M.postgres } }
      assert.same({ "config.yaml: unknown key 'version' (it is a key of 'postgres'; put it under 'postgres:')" }, errs)
    end)

    it("collects every error from every source, in order", function()
      local data = { redis = { port = "x" }, nope = true }
      local errs = load_err { data = data, path = "config.yaml", modules = { M.redis },
        defaults = { redis = { bind = false } }, defaults_name = "profiles/db.lua",
        env = { PHANES_REDIS_PORT = "abc" }, sets = { "redis.port=12.5", "redis.nope=1", "junk" } }
      assert.same({
        "profiles/db.lua: redis.bind: expected a string, got a boolean",
        "config.yaml: unknown key 'nope'",
        "config.yaml: redis.port: expected an integer, got a string",
        'PHANES_REDIS_PORT: expected an integer, got "abc"',
        '--set redis.port: expected an integer, got "12.5"',
        "--set redis.nope: unknown key 'redis.nope'",
        "--set junk: expected KEY=VALUE, like --set postgres.version=16",
        "config.yaml: redis.password: required (set it in config.yaml or with --set redis.password=...)",
      }, errs)
    end)

    it("names a missing required key where its section stands, or the file", function()
      local data = { redis = { bind = "::1" } }
      local _, m = mark(data, 1, 1, { redis = { 7, 1 } })
      local errs = load_err { data = data, marks = { [data] = m }, path = "config.yaml", modules = { M.redis } }
      assert.same({ "config.yaml:7:1: redis.password: required (set it in config.yaml or with --set redis.password=...)" }, errs)
      errs = load_err { data = {}, path = "config.yaml", modules = { M.redis } }
      assert.same({ "config.yaml: redis.password: required (set it in config.yaml or with --set redis.password=...)" }, errs)
      errs = load_err { modules = { M.user } }
      assert.same({
        "config: ssh_public_key: required (set it in config.yaml or with --set ssh_public_key=...)",
        "config: username: required (set it in config.yaml or with --set username=...)",
      }, errs)
    end)

    it("requires keys inside list items", function()
      local data = { postgres = { databases = { { owner = "x" } } } }
      local errs = load_err { data = data, path = "config.yaml", modules = { M.postgres } }
      assert.same({ "config.yaml: postgres.databases[1].name: required (set it in config.yaml)" }, errs)
      local cfg = load_ok { data = { postgres = { databases = { { name = "app" } } } }, modules = { M.postgres } }
      assert.same({ { name = "app", owner = "postgres" } }, cfg.postgres.databases)
    end)

    it("rejects a top level that is not a map", function()
      local data = { "a", "b" }
      local _, m = mark(data, 1, 1, {})
      assert.same({ "config.yaml:1:1: expected a map of settings (key: value), got a list" },
        load_err { data = data, marks = { [data] = m }, path = "config.yaml", modules = {} })
    end)

    it("says when the file cannot be read", function()
      local errs = load_err { path = "/nonexistent/phanes-config.yaml", modules = {} }
      assert.equal(1, #errs)
      assert.matches("^/nonexistent/phanes%-config%.yaml: No such file or directory", errs[1])
    end)

    it("never prints a secret value", function()
      local errs = load_err { modules = { M.redis }, data = { redis = { password = 12345 } },
        sets = { "redis.port=hunter2" } }
      local all = table.concat(errs, "\n")
      assert.matches("redis.password: expected a string, got an integer", all, 1, true)
      assert.is_nil(all:find("12345", 1, true))
      local s = { name = "s", config = { token = { type = "integer", secret = true } } }
      errs = load_err { modules = { s }, sets = { "s.token=hunter2" } }
      assert.same({ "--set s.token: expected an integer, got a value that does not fit (hidden: secret)" }, errs)
    end)
  end)

  describe("overrides", function()
    it("coerces --set and environment strings by the schema type", function()
      local cfg = load_ok { modules = { M.postgres, M.redis }, sets = { "redis.password=p4ssword",
        "redis.port=7000", "postgres.ratio=1.5", "postgres.tuned=true", "postgres.listen=a, b,c",
        "postgres.mode=large", "postgres.version=16", "postgres.tuning.max_connections=20",
        "postgres.extra.some.key=v" } }
      assert.equal(7000, cfg.redis.port)
      assert.equal("integer", math.type(cfg.redis.port))
      assert.equal(1.5, cfg.postgres.ratio)
      assert.is_true(cfg.postgres.tuned)
      assert.same({ "a", "b", "c" }, cfg.postgres.listen)
      assert.equal("large", cfg.postgres.mode)
      assert.equal("16", cfg.postgres.version)
      assert.equal(20, cfg.postgres.tuning.max_connections)
      assert.equal("128MB", cfg.postgres.tuning.shared_buffers)
      assert.same({ some = { key = "v" } }, cfg.postgres.extra)
      cfg = load_ok { modules = { M.postgres }, sets = { "postgres.tuned=false", "postgres.listen=" } }
      assert.is_false(cfg.postgres.tuned)
      assert.same({}, cfg.postgres.listen)
    end)

    it("reports strings that do not fit the type", function()
      local errs = load_err { modules = { M.postgres }, sets = { "postgres.tuned=maybe", "postgres.mode=huge",
        "postgres.tuning=x" }, env = { PHANES_POSTGRES_RATIO = "fast" } }
      assert.same({
        'PHANES_POSTGRES_RATIO: expected a number, got "fast"',
        '--set postgres.tuned: expected true or false, got "maybe"',
        '--set postgres.mode: expected one of "small", "large", got "huge"',
        '--set postgres.tuning: expected a map, got a string',
      }, errs)
    end)

    it("applies schema default < profile defaults < file < env < --set", function()
      local mods = { M.redis }
      local function port(opts)
        opts.modules = mods
        opts.sets = opts.sets or {}
        table.insert(opts.sets, "redis.password=x-password")
        local cfg, info = load_ok(opts)
        return cfg.redis.port, info.origin["redis.port"]
      end
      local defaults = { redis = { port = 1 } }
      local data = { redis = { port = 2 } }
      local _, m = mark(data, 1, 1, { redis = { 1, 1 } })
      local _, rm = mark(data.redis, 2, 3, { port = { 2, 3 } })
      local marks = { [data] = m, [data.redis] = rm }
      local env = { PHANES_REDIS_PORT = "3" }
      assert.same({ 6379, "default" }, { port {} })
      assert.same({ 1, "profile defaults" }, { port { defaults = defaults } })
      assert.same({ 2, "config.yaml:2:3" }, { port { defaults = defaults, data = data, marks = marks, path = "config.yaml" } })
      assert.same({ 3, "PHANES_REDIS_PORT" }, { port { defaults = defaults, data = data, env = env } })
      assert.same({ 4, "--set redis.port" }, { port { defaults = defaults, data = data, env = env, sets = { "redis.port=4" } } })
      -- a later --set wins over an earlier one
      assert.same({ 5, "--set redis.port" }, { port { sets = { "redis.port=4", "redis.port=5" } } })
    end)

    it("merges maps key by key and replaces lists", function()
      local cfg = load_ok { modules = { M.postgres },
        defaults = { postgres = { tuning = { max_connections = 50 }, listen = { "a", "b" } } },
        data = { postgres = { tuning = { shared_buffers = "1GB" }, listen = { "c" } } } }
      assert.same({ max_connections = 50, shared_buffers = "1GB" }, cfg.postgres.tuning)
      assert.same({ "c" }, cfg.postgres.listen)
    end)

    it("finds environment names by the known paths, underscores included", function()
      local cfg, info = load_ok { modules = { M.user, M.redis }, env = {
        PHANES_SSH_PUBLIC_KEY = "ssh-ed25519 AAAA", PHANES_USERNAME = "deploy",
        PHANES_REDIS_PASSWORD = "pw-secret", PHANES_PATH = "/x", PHANES_STATE = "/y", PHANES_COLOR = "never",
        PHANES_REDIS_PASWORD = "typo", HOME = "/root" } }
      assert.equal("ssh-ed25519 AAAA", cfg.ssh_public_key)
      assert.equal("deploy", cfg.username)
      assert.equal("pw-secret", cfg.redis.password)
      assert.same({ "PHANES_REDIS_PASWORD is not a config key and is ignored (did you mean PHANES_REDIS_PASSWORD?)" },
        info.warnings)
    end)

    it("refuses an environment name that matches two keys", function()
      local a = { name = "a", config = { b_c = { type = "string" } } }
      local ab = { name = "a_b", config = { c = { type = "string" } } }
      local errs = load_err { modules = { a, ab }, env = { PHANES_A_B_C = "x" } }
      assert.same({ "PHANES_A_B_C: matches several keys (a.b_c, a_b.c); use --set a.b_c=... instead" }, errs)
    end)
  end)

  describe("module declarations", function()
    it("reports bad schemas as module errors, naming the module", function()
      local bad = { name = "bad", config = {
        a = { type = "strng" }, b = { type = "integer", default = "1" }, c = { type = "enum" },
        d = { type = "string", requird = true }, e = { type = "list", items = { type = "lst" } },
        f = { type = "string", fields = {} },
      } }
      local errs = load_err { modules = { bad } }
      assert.equal("module", errs.kind)
      errs.kind = nil
      assert.same({
        "module 'bad': config.a: unknown type 'strng' (did you mean 'string'?); types: boolean, enum, integer, list, map, number, string",
        "module 'bad': config.b: default: expected an integer, got a string",
        "module 'bad': config.c: an enum needs values = { ... }",
        "module 'bad': config.d: unknown declaration key 'requird' (did you mean 'required'?)",
        "module 'bad': config.e.items: unknown type 'lst' (did you mean 'list'?); types: boolean, enum, integer, list, map, number, string",
        "module 'bad': config.f: fields is only for type map",
      }, errs)
    end)

    it("names the module file when the loader gave one", function()
      local errs = load_err { modules = { { name = "x", origin = "./modules/x.lua", config = { a = { type = 1 } } } } }
      assert.matches("^%./modules/x%.lua %(module 'x'%): config%.a: unknown type '1'", errs[1])
    end)

    it("accepts identical global declarations and rejects conflicting ones", function()
      load_ok { modules = { M.user, M.security }, sets = { "username=u", "ssh_public_key=k" } }
      local other = { name = "other", globals = { username = { type = "integer", required = true } } }
      local errs = load_err { modules = { M.user, other } }
      errs.kind = nil
      assert.same({ "global 'username' is declared differently by module 'user' and module 'other' (type differs)" }, errs)
      local clash = { name = "clash", globals = { state_path = { type = "integer" } } }
      errs = load_err { modules = { clash } }
      errs.kind = nil
      assert.same({ "global 'state_path' is declared differently by phanes itself and module 'clash' (default, format, type differ)" }, errs)
      local named = { name = "named", globals = { redis = { type = "string" } } }
      errs = load_err { modules = { named, M.redis } }
      errs.kind = nil
      assert.same({ "global 'redis' (declared by module 'named') has the name of module 'redis'" }, errs)
    end)
  end)

  describe("secrets", function()
    local cfg, mods
    before_each(function()
      mods = { M.redis, M.postgres }
      cfg = load_ok { modules = mods, sets = { "redis.password=s3cret-pw" },
        data = { postgres = { databases = { { name = "app", password = "db-pw-long" }, { name = "b", password = "" } } } } }
    end)

    it("lists secret values, longest first, no empty ones", function()
      assert.same({ "db-pw-long", "s3cret-pw" }, config.secrets(cfg, mods))
    end)

    it("masks a deep copy", function()
      local masked = config.mask(cfg, mods)
      assert.equal("******", masked.redis.password)
      assert.equal("******", masked.postgres.databases[1].password)
      assert.equal("app", masked.postgres.databases[1].name)
      assert.equal(6379, masked.redis.port)
      assert.equal("s3cret-pw", cfg.redis.password)
      assert.are_not.equal(cfg.postgres.tuning, masked.postgres.tuning)
      assert.same(cfg.postgres.tuning, masked.postgres.tuning)
    end)
  end)

  describe("describe", function()
    it("documents every key with type, default, required and secret", function()
      local text, rows = config.describe { M.redis, M.user, M.postgres }
      assert.matches("\nredis:\n", text, 1, true)
      assert.matches("  # password: string, required, secret\n  # password: (required, no default)\n", text, 1, true)
      assert.matches('  port: 6379\n', text, 1, true)
      assert.matches('# The admin user\n# username: string, required\n', text, 1, true)
      assert.matches('state_path: "/var/lib/phanes/state.json"', text, 1, true)
      assert.matches('  # mode: one of "small", "large"\n  mode: "small"\n', text, 1, true)
      assert.matches("  tuning:\n    # max_connections: integer\n    max_connections: 100\n", text, 1, true)
      local by_path = {}
      for _, r in ipairs(rows) do by_path[r.path] = r end
      assert.same({ path = "redis.password", module = "redis", type = "string", required = true, secret = true },
        by_path["redis.password"])
      assert.equal("user", by_path.username.module)
      assert.equal("phanes", by_path.state_path.module)
      local tok = { name = "tok", config = { token = { type = "string", secret = true, default = "changeme" } } }
      text, rows = config.describe { tok }
      assert.matches('  token: "******"', text, 1, true)
      assert.is_nil(text:find("changeme", 1, true))
      assert.equal("******", rows[#rows].default)
    end)
  end)

  describe("YAML files end to end", function()
    local FIX = "spec/fixtures/config/"

    it("loads a complete config file", function()
      local mods = { M.redis, M.postgres, M.user, M.security }
      local cfg, info = load_ok { path = FIX .. "good.yaml", modules = mods }
      assert.equal("deploy", cfg.username)
      assert.equal("/tmp/phanes-state.json", cfg.state_path)
      assert.equal("16", cfg.postgres.version)
      assert.same({ "localhost", "10.0.0.5" }, cfg.postgres.listen)
      assert.same({ { name = "app", owner = "postgres", password = "app-db-secret" },
        { name = "metrics", owner = "grafana" } }, cfg.postgres.databases)
      assert.same({ max_connections = 200, shared_buffers = "128MB" }, cfg.postgres.tuning)
      assert.equal(6380, cfg.redis.port)
      assert.same({ ssh_port = 22 }, cfg.security) -- `security:` with nothing under it
      assert.equal(FIX .. "good.yaml:17:5", info.origin["postgres.tuning.max_connections"])
      assert.equal("default", info.origin["postgres.tuning.shared_buffers"])
      assert.same({ "app-db-secret", "redis secret" }, config.secrets(cfg, mods))
    end)

    it("reports every error of a file at its line and column", function()
      local errs = load_err { path = FIX .. "bad.yaml", modules = { M.redis, M.postgres, M.user } }
      local f = FIX .. "bad.yaml"
      assert.same({
        f .. ":2:1: unknown key 'postgress' (did you mean 'postgres'?)",
        f .. ":5:3: postgres.version: expected a string, got an integer",
        f .. ":6:3: postgres.listen: expected a list, got a string",
        f .. ":9:7: postgres.databases[2].name: expected a string, got an integer",
        f .. ":11:5: unknown key 'postgres.tuning.max_conections' (did you mean 'postgres.tuning.max_connections'?)",
        f .. ":13:3: redis.port: expected an integer, got a string",
        f .. ":14:3: redis.password: expected a string, got an integer",
        f .. ":15:1: apt_cache_max_age: expected an integer, got a float",
        f .. ": ssh_public_key: required (set it in " .. f .. " or with --set ssh_public_key=...)",
        f .. ":8:7: postgres.databases[1].name: required (set it in " .. f .. ")",
      }, errs)
      assert.is_nil(table.concat(errs, "\n"):find("12345", 1, true))
    end)

    it("takes the text instead of a path, and reports YAML syntax errors", function()
      local cfg = load_ok { text = "redis:\n  password: x-secret\n  bind: '::1'\n", path = "config.yaml", modules = { M.redis } }
      assert.equal("::1", cfg.redis.bind)
      local errs = load_err { text = "redis: [1\n", path = "config.yaml", modules = { M.redis } }
      assert.equal(1, #errs)
      assert.matches("^config%.yaml:2:1: ", errs[1])
      errs = load_err { text = "- a\n- b\n", path = "config.yaml", modules = {} }
      assert.same({ "config.yaml:1:1: expected a map of settings (key: value), got a list" }, errs)
      cfg = load_ok { text = "# nothing yet\n", path = "config.yaml", modules = { M.postgres } }
      assert.equal("15", cfg.postgres.version)
    end)

    it("keeps YAML 1.2 types: a quoted number is a string, yes is a string", function()
      local errs = load_err { text = "postgres:\n  tuned: yes\n  version: 16\n", path = "c.yaml", modules = { M.postgres } }
      assert.same({
        "c.yaml:2:3: postgres.tuned: expected true or false, got a string",
        "c.yaml:3:3: postgres.version: expected a string, got an integer",
      }, errs)
    end)
  end)

  describe("hash", function()
    it("serializes a section canonically: sorted, typed, limited to the schema", function()
      local a = { port = 6379, bind = "x", list = { 1, "1" }, nested = { b = true, a = 1.5 } }
      local b = { nested = { a = 1.5, b = true }, list = { 1, "1" }, bind = "x", port = 6379 }
      assert.equal(config.canonical(a), config.canonical(b))
      assert.are_not.equal(config.canonical { v = 16 }, config.canonical { v = "16" })
      assert.are_not.equal(config.canonical { v = 16 }, config.canonical { v = 16.0 })
      assert.are_not.equal(config.canonical { a = "b", c = "" }, config.canonical { a = "", c = "b" })
      assert.equal("m{s4:bind" .. "s1:xs4:port" .. "i6379;}", config.canonical(a, M.redis.config))
    end)

    local file = require "phanes.file"
    local hash_it = it
    hash_it("is the HMAC-SHA256 of the canonical text under the host key, never its plain sha256", function()
      local key = ("k"):rep(32)
      local h = config.hash({ password = "s", port = 1 }, M.redis.config, key)
      assert.matches("^%x+$", h)
      assert.equal(64, #h)
      local text = config.canonical({ password = "s", port = 1 }, M.redis.config)
      assert.equal(require("phanes.crypto").hmac_sha256(key, text), h)
      assert.are_not.equal(file.sha256(text), h)
      assert.are_not.equal(h, config.hash({ password = "s", port = 1 }, M.redis.config, ("j"):rep(32)))
      assert.has_error(function() config.hash({}, nil) end)
      assert.equal(h, config.hash({ port = 1, password = "s", junk = 1 }, M.redis.config, key))
      assert.are_not.equal(h, config.hash({ password = "t", port = 1 }, M.redis.config, key))
      assert.is_nil(h:find("s", 1, true) and h:find("password", 1, true))
    end)
  end)

  describe("did you mean", function()
    it("uses a transposition-aware distance of at most 2", function()
      assert.equal(1, schema.distance("postgress", "postgres"))
      assert.equal(1, schema.distance("verison", "version"))
      assert.equal(2, schema.distance("pstgrs", "postgres"))
      assert.equal("postgres", schema.suggest("Postgress", { "redis", "postgres" }))
      assert.is_nil(schema.suggest("mysql", { "redis", "postgres" }))
      assert.is_nil(schema.suggest("ab", { "xy" }))
    end)
  end)
end)

describe("schema limits", function()
  local function fields(decl) return { name = "m", config = { v = decl } } end
  local function errs_of(decl, value)
    local cfg, errs = config.load { modules = { fields(decl) }, data = { m = { v = value } } }
    if cfg then return {} end
    return errs
  end

  it("checks ranges, lengths, one line, patterns and formats", function()
    local int = { type = "integer", min = 1, max = 10 }
    assert.same({}, errs_of(int, 10))
    assert.same({ "config.yaml: m.v: expected 1 to 10, got 11" }, errs_of(int, 11))
    assert.same({ "config.yaml: m.v: expected at least 0, got -1" }, errs_of({ type = "number", min = 0 }, -1))
    assert.same({ 'config.yaml: m.v: expected one line of text, got "a\\nb" (it has a line break)' },
      errs_of({ type = "string" }, "a\nb"))
    assert.same({}, errs_of({ type = "string", multiline = true }, "a\nb"))
    assert.same({ 'config.yaml: m.v: expected one line of text, got "a\\27[2Jb" (it has a control character)' },
      errs_of({ type = "string" }, "a\27[2Jb"))
    assert.same({ "config.yaml: m.v: expected at most 3 characters, got 4" }, errs_of({ type = "string", max_length = 3 }, "abcd"))
    assert.same({ 'config.yaml: m.v: expected digits, got "1a"' },
      errs_of({ type = "string", pattern = "%d+", hint = "digits" }, "1a"))
    assert.same({ 'config.yaml: m.v: expected a size like 512k, 10m or 1g, got "lots"' },
      errs_of({ type = "string", format = "size" }, "lots"))
    -- empty means "none" where the default is empty
    assert.same({}, errs_of({ type = "string", format = "email", default = "" }, ""))
    assert.equal(1, #errs_of({ type = "string", format = "email", default = "a@b.c" }, ""))
    -- list items are checked one by one
    assert.same({ 'config.yaml: m.v[2]: expected a port like "80", "443/tcp" or "60000:61000/udp", got "x"' },
      errs_of({ type = "list", items = { type = "string", format = "port_spec" } }, { "80/tcp", "x" }))
  end)

  it("never shows a secret, and a secret is at least 8 characters", function()
    local s = { type = "string", secret = true }
    assert.same({ "config.yaml: m.v: expected at least 8 characters, got 5" }, errs_of(s, "short"))
    assert.same({}, errs_of(s, "long-enough"))
    local e = errs_of({ type = "string", secret = true, pattern = "%w+" }, "has space")
    assert.equal(1, #e)
    assert.is_nil(e[1]:find("has space", 1, true))
    e = errs_of(s, "zebra-one\nquokka-two")
    assert.equal(1, #e)
    assert.is_nil(e[1]:find("zebra", 1, true))
    assert.is_nil(e[1]:find("quokka", 1, true))
  end)

  it("checks the declarations of the limits", function()
    local function decl_errs(decl)
      local errs = {}
      schema.check_decl(decl, "m.v", errs)
      return errs
    end
    assert.same({ "m.v: min is a number, only for type integer or number" }, decl_errs { type = "string", min = 1 })
    assert.same({ "m.v: pattern '[' is not a Lua pattern" }, decl_errs { type = "string", pattern = "[" })
    assert.equal(1, #decl_errs { type = "string", format = "nope" })
    assert.same({ "m.v: a secret string needs min_length of at least 8 (a short secret cannot be masked)" },
      decl_errs { type = "string", secret = true, min_length = 4 })
    assert.same({ 'm.v: default: expected 1 to 5, got 9' }, decl_errs { type = "integer", min = 1, max = 5, default = 9 })
  end)

  it("runs each module's validate hook and places its errors", function()
    local m = { name = "m", config = { size = { type = "string", default = "1G" } },
      validate = function(section, v)
        if section.size ~= "1G" and section.size ~= "2G" then v.error("m.size", "expected 1G or 2G") end
      end }
    local data, mk = mark({ m = { size = "3G" } }, 1, 1, { m = { 1, 1 } })
    local _, inner = mark(data.m, 2, 3, { size = { 2, 3 } })
    local cfg, errs = config.load { modules = { m }, data = data, marks = { [data] = mk, [data.m] = inner },
      path = "c.yaml" }
    assert.is_nil(cfg)
    assert.same({ "c.yaml:2:3: m.size: expected 1G or 2G" }, errs)
    -- a section whose schema failed is not handed to its hook
    cfg, errs = config.load { modules = { m }, data = { m = { size = 3 } } }
    assert.same({ "config.yaml: m.size: expected a string, got an integer" }, errs)
    -- a broken hook is a module error, not a crash
    m.validate = function() error "boom" end
    cfg, errs = config.load { modules = { m } }
    assert.is_nil(cfg)
    assert.truthy(errs[1]:match "^module 'm': validate failed: .*boom")
  end)
end)
