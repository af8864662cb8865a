-- Static checks of modules/, profiles/ and templates/: every module loads
-- and is well formed, every template it renders exists and renders with the
-- example config, profiles name known modules in an order that honours
-- `requires`, and the plans modules make carry the safety rules (sshd checked
-- before install, UFW allows SSH before enabling, secrets marked secret).
local loader = require "phanes.loader"
local plan = require "support.plan"

local TYPES = { string = true, integer = true, number = true, boolean = true, list = true, map = true, enum = true }
local FIELD_KEYS = { type = true, default = true, required = true, secret = true, values = true,
  items = true, fields = true, description = true, min = true, max = true, min_length = true,
  max_length = true, pattern = true, format = true, hint = true, multiline = true }

local function is_list(t)
  if type(t) ~= "table" then return false end
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n == #t
end

local function value_fits(field, v)
  local t = field.type
  if t == "string" then return type(v) == "string" end
  if t == "integer" then return math.type(v) == "integer" end
  if t == "number" then return type(v) == "number" end
  if t == "boolean" then return type(v) == "boolean" end
  if t == "list" then
    if not is_list(v) then return false end
    for _, item in ipairs(v) do
      if field.items and not value_fits(field.items, item) then return false end
    end
    return true
  end
  if t == "map" then return type(v) == "table" end
  if t == "enum" then
    for _, ok in ipairs(field.values) do if ok == v then return true end end
    return false
  end
  return false
end

-- check_field(where, field) -> raises naming where the schema is wrong
local function check_field(where, field, nested)
  assert(type(field) == "table", where .. ": field is not a table")
  for k in pairs(field) do assert(FIELD_KEYS[k], where .. ": unknown schema key '" .. tostring(k) .. "'") end
  assert(TYPES[field.type], where .. ": unknown type '" .. tostring(field.type) .. "'")
  if field.type == "enum" then
    assert(is_list(field.values) and #field.values > 0, where .. ": enum without values")
  end
  if field.items then check_field(where .. ".items", field.items, true) end
  for name, f in pairs(field.fields or {}) do check_field(where .. "." .. name, f) end
  if field.default ~= nil then
    assert(not field.required, where .. ": required with a default")
    assert(value_fits(field, field.default), where .. ": default does not fit type " .. field.type)
  end
  assert(nested or type(field.description) == "string" and #field.description > 0, where .. ": no description")
end

local function example_config()
  local yaml = require "phanes.yaml"
  local text = assert(io.open "config.yaml.example"):read "a"
  local cfg = assert(yaml.decode(text, "config.yaml.example"))
  return cfg
end

local names = {}
for _, rel in ipairs(loader.list("modules/", ".lua")) do
  names[#names + 1] = rel:match "^modules/(.+)%.lua$"
end

describe("modules", function()
  local modules = {}
  setup(function()
    for _, n in ipairs(names) do modules[n] = plan.module(n) end
  end)

  it("are the thirteen of the design", function()
    local want = { "baseline", "caddy", "coolify", "devtools", "docker", "monitoring", "nginx",
      "postgres", "redis", "security", "swap", "updates", "user" }
    for _, n in ipairs(want) do assert.is_table(modules[n], "module " .. n .. " missing") end
  end)

  for _, n in ipairs(names) do
    describe(n, function()
      it("has a name, description, version, requires and apply", function()
        local m = modules[n]
        assert.equal(n, m.name)
        assert.is_string(m.description)
        assert.truthy(#m.description > 10)
        assert.is_string(m.version)
        assert.is_function(m.apply)
        assert.truthy(is_list(m.requires or {}))
        for _, r in ipairs(m.requires or {}) do
          assert.is_table(modules[r], n .. " requires unknown module " .. r)
        end
      end)

      it("has a valid schema for its section and globals", function()
        local m = modules[n]
        for k, field in pairs(m.config or {}) do check_field(n .. "." .. k, field) end
        for k, field in pairs(m.globals or {}) do check_field(k, field) end
      end)

      it("documents its keys in a comment block and in config.yaml.example", function()
        local text = loader.find("modules/" .. n .. ".lua")
        assert.truthy(text:match "^%-%- " .. n .. ":", "modules/" .. n .. ".lua: no header comment")
        local example = assert(io.open "config.yaml.example"):read "a"
        local section = example:match("\n" .. n .. ":\n(.-)\n%-%-%-") or example:match("\n" .. n .. ":\n(.*)$")
        for k in pairs(modules[n].config or {}) do
          assert.truthy(text:match("\n%-%-%s+" .. k:gsub("%p", "%%%0") .. ":"), n .. ": key " .. k .. " not documented in the module")
          assert.truthy(section and section:match("\n%s+" .. k:gsub("%p", "%%%0") .. ":") or
            (section or ""):match("^%s+" .. k:gsub("%p", "%%%0") .. ":"),
            n .. "." .. k .. " missing from config.yaml.example")
        end
      end)
    end)
  end

  it("read the host only through ctx: no phanes.file, phanes.sys, io or os.execute", function()
    for _, n in ipairs(names) do
      local text = assert(loader.find("modules/" .. n .. ".lua"))
      for _, bad in ipairs { "phanes%.file", "phanes%.sys", "lfs", "io%.open", "io%.popen", "io%.lines",
        "os%.execute", "os%.remove", "os%.rename" } do
        for line in text:gmatch "[^\n]+" do
          if not line:match "^%s*%-%-" then
            assert(not line:match(bad), "modules/" .. n .. ".lua reads the host without ctx: " .. line)
          end
        end
      end
    end
  end)

  it("declare shared globals identically", function()
    local seen = {}
    local function same(a, b)
      if type(a) ~= type(b) then return false end
      if type(a) ~= "table" then return a == b end
      for k, v in pairs(a) do if not same(v, b[k]) then return false end end
      for k in pairs(b) do if a[k] == nil then return false end end
      return true
    end
    for _, n in ipairs(names) do
      for k, field in pairs(modules[n].globals or {}) do
        if seen[k] then
          assert.truthy(same(seen[k].field, field), k .. " declared differently by " .. seen[k].by .. " and " .. n)
        else
          seen[k] = { field = field, by = n }
        end
      end
    end
    for _, k in ipairs { "username", "ssh_public_key", "ssh_public_keys", "timezone", "locale" } do
      assert.is_table(seen[k], "no module declares " .. k)
    end
  end)

  it("render every template with the example config, and every template is used", function()
    local cfg = plan.config(example_config(), modules)
    local used = {}
    for _, n in ipairs(names) do
      -- each enum value of each source exercised too
      local variants = { {} }
      for k, field in pairs(modules[n].config or {}) do
        if field.type == "enum" then
          for _, v in ipairs(field.values) do variants[#variants + 1] = { [k] = v } end
        end
      end
      for _, over in ipairs(variants) do
        local c = {}
        for k, v in pairs(cfg) do c[k] = v end
        local section = {}
        for k, v in pairs(cfg[n] or {}) do section[k] = v end
        for k, v in pairs(over) do section[k] = v end
        c[n] = section
        for _, dry in ipairs { false, true } do
          -- a server that has nothing at first, and what was asked for afterwards
          local asked = 0
          local calls = plan.run(modules[n], c, { dry_run = dry, exec = function()
            asked = asked + 1
            if asked == 1 or n ~= "postgres" then return { code = 0, stdout = "", stderr = "" } end
            local v = modules.postgres.scram_verifier(c.postgres.password, "0123456789abcdef", 4096)
            return { code = 0, stdout = "role|" .. v .. "\ndb|" .. c.postgres.database .. "\n", stderr = "" }
          end })
          for _, call in ipairs(calls) do
            if call.kind == "file.template" or call.kind == "template" then
              used["templates/" .. call.args.src] = true
              assert.truthy(#call.rendered > 0)
              assert.falsy(call.rendered:find("{{", 1, true), call.args.src .. ": unrendered tag")
              assert.falsy(call.rendered:find("{%", 1, true), call.args.src .. ": unrendered tag")
            end
          end
        end
      end
    end
    local count = 0
    for _, n in ipairs(names) do
      for _, rel in ipairs(loader.list("templates/" .. n .. "/")) do
        count = count + 1
        assert.truthy(used[rel], rel .. " is not rendered by any module")
      end
    end
    assert.truthy(count >= 12)
  end)
end)

describe("profiles", function()
  local PROFILES = {
    minimal = { "baseline", "user", "security", "swap", "updates" },
    dev = { "baseline", "user", "security", "swap", "updates", "docker", "monitoring", "devtools" },
    web = { "baseline", "user", "security", "swap", "updates", "docker", "monitoring", "caddy" },
    database = { "baseline", "user", "security", "swap", "updates", "docker", "monitoring", "postgres", "redis" },
    coolify = { "baseline", "user", "security", "swap", "updates", "docker", "coolify" },
  }
  for name, want in pairs(PROFILES) do
    it(name .. " lists its modules in an order that honours requires", function()
      local p = plan.profile(name)
      assert.equal(name, p.name)
      assert.is_string(p.description)
      assert.same(want, p.modules)
      local pos = {}
      for i, m in ipairs(p.modules) do pos[m] = i end
      for i, m in ipairs(p.modules) do
        for _, r in ipairs(plan.module(m).requires or {}) do
          assert.truthy(pos[r] and pos[r] < i, name .. ": " .. m .. " requires " .. r .. " before it")
        end
      end
      -- profile defaults are keys the modules know
      for section, values in pairs(p.config or {}) do
        local mod = plan.module(section)
        for k in pairs(values) do assert.is_table(mod.config[k], name .. ": " .. section .. "." .. k) end
      end
    end)
  end
end)

describe("module plans", function()
  local base = { username = "deploy", ssh_public_key = plan.KEY, ssh_public_keys = {},
    timezone = "UTC", locale = "en_US.UTF-8" }
  local function config(over)
    local c = {}
    for k, v in pairs(base) do c[k] = v end
    for k, v in pairs(over or {}) do c[k] = v end
    return c
  end
  local function index_of(calls, pred)
    for i, c in ipairs(calls) do if pred(c) then return i end end
  end

  it("security allows the SSH port in UFW before enabling it, then installs a checked sshd_config", function()
    local calls = plan.run(plan.module "security", config { security = { ssh_port = 2222 } })
    local allow = index_of(calls, function(c) return c.kind == "ufw.allow" and c.args[1] == "2222/tcp" end)
    local enable = index_of(calls, function(c) return c.kind == "ufw.enabled" end)
    local sshd = index_of(calls, function(c) return c.kind == "file.template" and c.args.path == "/etc/ssh/sshd_config" end)
    assert.truthy(allow and enable and sshd)
    assert.truthy(allow < enable and enable < sshd)
    local conf = calls[sshd]
    assert.same({ "/usr/sbin/sshd", "-t", "-f", "%s" }, conf.args.validate)
    assert.truthy(conf.rendered:match "\nPort 2222\n")
    assert.truthy(conf.rendered:match "\nPasswordAuthentication no\n")
    assert.truthy(conf.rendered:match "\nPermitRootLogin no\n")
    local reload = plan.find(calls, "service.running", function(a) return a[1] == "ssh" end)[1]
    assert.truthy(reload.args.reload)
    assert.falsy(reload.args.restart)
    local jail = plan.find(calls, "file.template", function(a) return a.path == "/etc/fail2ban/jail.local" end)[1]
    assert.truthy(jail.rendered:match "%[sshd%]\nenabled = true\nport    = 2222")
  end)

  it("security hands UFW the SSH port first, then allowed_ports, as phanes' own rules", function()
    local calls = plan.run(plan.module "security", config { security = { allowed_ports = { "80/tcp", "53" } } })
    local allow = plan.find(calls, "ufw.allow")
    assert.equal(1, #allow)
    assert.same({ "22/tcp", "80/tcp", "53", comment = "phanes", exclusive = true }, allow[1].args)
    assert.same({ incoming = "deny", outgoing = "allow" }, plan.find(calls, "ufw.enabled")[1].args)
    assert.same({}, plan.find(calls, "cmd.run", function(a) return a.argv and a.argv[1] == "ufw" end))
    calls = plan.run(plan.module "security", config { security = { ufw = false } })
    assert.same({}, plan.find(calls, "ufw.allow"))
  end)

  it("security sshd crypto: modern drops the NIST curves, ECDSA and SHA-1; compatible adds the curves back", function()
    local calls = plan.run(plan.module "security", config())
    local conf = plan.find(calls, "file.template", function(a) return a.path == "/etc/ssh/sshd_config" end)[1]
    local kex = conf.rendered:match "\nKexAlgorithms (%S+)\n"
    assert.truthy(kex:match "^sntrup761x25519%-sha512@openssh%.com,curve25519%-sha256,")
    assert.falsy(kex:match "nistp")
    assert.falsy(conf.rendered:match "ssh_host_ecdsa_key")
    assert.falsy(conf.rendered:match "\nHostKeyAlgorithms [^\n]*ecdsa")
    local macs = conf.rendered:match "\nMACs (%S+)\n"
    assert.falsy(macs:match "sha1" or macs:match "umac%-64")
    -- libssh2 1.10 (phanes' transport) needs a non-etm hmac-sha2 and an aes-ctr
    assert.truthy(("," .. macs .. ","):match ",hmac%-sha2%-256,")
    assert.truthy(conf.rendered:match "\nCiphers [^\n]*aes256%-ctr")
    assert.truthy(conf.rendered:match "\nBanner /etc/issue%.net\n")
    calls = plan.run(plan.module "security", config { security = { ssh_crypto = "compatible", banner = false } })
    conf = plan.find(calls, "file.template", function(a) return a.path == "/etc/ssh/sshd_config" end)[1]
    assert.truthy(conf.rendered:match "\nKexAlgorithms [^\n]*ecdh%-sha2%-nistp256")
    assert.truthy(conf.rendered:match "\nHostKey /etc/ssh/ssh_host_ecdsa_key\n")
    assert.falsy(conf.rendered:match "Banner")
  end)

  it("security filters /etc/ssh/moduli to 3072 bits and reloads sshd for it", function()
    local files = plan.host_files()
    files["/etc/ssh/moduli"] = "# header\n" ..
      "20230316 2 6 100 2047 5 AAAA\n20230316 2 6 100 3071 2 BBBB\n20230316 2 6 100 8191 2 CCCC\n"
    local calls = plan.run(plan.module "security", config(), { files = files, changed = false })
    local m = plan.find(calls, "file.content", function(a) return a.path == "/etc/ssh/moduli" end)[1]
    assert.equal("# header\n20230316 2 6 100 3071 2 BBBB\n20230316 2 6 100 8191 2 CCCC\n", m.args.content)
  end)

  it("security login.defs: each setting once with its reason, stable on a re-run, checked before install", function()
    local files = plan.host_files()
    files["/etc/login.defs"] = "# shadow\nMAIL_DIR /var/mail\nUMASK\t\t022\nPASS_MAX_DAYS\t99999\n"
    local calls = plan.run(plan.module "security", config(), { files = files })
    local d = plan.find(calls, "file.content", function(a) return a.path == "/etc/login.defs" end)[1]
    local text = d.args.content
    assert.truthy(text:match "^# shadow\nMAIL_DIR /var/mail\n# phanes: [^\n]+\nUMASK\t027\n# phanes: [^\n]+\nPASS_MAX_DAYS\t365\n")
    assert.truthy(text:match "\nSHA_CRYPT_MIN_ROUNDS\t100000\n")
    assert.equal(1, select(2, text:gsub("\nUMASK", "")))
    assert.truthy(d.args.validate)
    files["/etc/login.defs"] = text
    calls = plan.run(plan.module "security", config(), { files = files })
    assert.equal(text, plan.find(calls, "file.content", function(a) return a.path == "/etc/login.defs" end)[1].args.content)
  end)

  it("security levels: baseline has no acct/auditd/aide, strict has them, a switch overrides the level", function()
    local function pkgs(calls)
      local all = {}
      for _, c in ipairs(plan.find(calls, "pkg.installed")) do
        for _, p in ipairs(c.args) do all[p] = true end
      end
      return all
    end
    local base = pkgs(plan.run(plan.module "security", config()))
    assert.truthy(base.debsums and base["apt-show-versions"])
    assert.falsy(base.acct or base.auditd or base.aide)
    local calls = plan.run(plan.module "security", config { security = { level = "strict", aide = false } },
      { facts = { container = "docker" } })
    local strict = pkgs(calls)
    assert.truthy(strict.acct and strict.auditd)
    assert.falsy(strict.aide)
    -- in a container auditd is installed, not started
    assert.same({}, plan.find(calls, "service.running", function(a) return a[1] == "auditd" end))
    calls = plan.run(plan.module "security", config { security = { level = "strict" } })
    local init = plan.find(calls, "cmd.run", function(a) return a.argv and a.argv[1] == "/usr/sbin/aideinit" end)[1]
    assert.equal("/var/lib/aide/aide.db", init.args.creates)
    assert.truthy(plan.find(calls, "service.running", function(a) return a[1] == "auditd" end)[1])
  end)

  it("security strict: USBGuard goes in masked, gets a policy of what is plugged in, then starts", function()
    local base = plan.run(plan.module "security", config())
    assert.same({}, plan.find(base, "pkg.installed", function(a) return a[1] == "usbguard" end))
    local calls = plan.run(plan.module "security", config { security = { level = "strict", aide = false } })
    local order = {}
    for _, c in ipairs(calls) do
      local a = c.args or {}
      if (c.kind == "file.symlink" or c.kind == "file.absent") and a.path == "/run/systemd/system/usbguard.service" then
        order[#order + 1] = c.kind
      elseif c.kind == "pkg.installed" and a[1] == "usbguard" then order[#order + 1] = "install"
      elseif c.kind == "cmd.run" and (a.shell or ""):find("usbguard generate-policy", 1, true) then order[#order + 1] = "policy"
      elseif c.kind == "service.running" and a[1] == "usbguard" then order[#order + 1] = "running" end
    end
    assert.same({ "file.symlink", "install", "policy", "file.absent", "running" }, order)
    -- in a container: installed with its policy, stopped and disabled
    calls = plan.run(plan.module "security", config { security = { level = "strict", aide = false } },
      { facts = { container = "docker" } })
    assert.same({}, plan.find(calls, "service.running", function(a) return a[1] == "usbguard" end))
    assert.truthy(plan.find(calls, "service.stopped", function(a) return a[1] == "usbguard" end)[1])
  end)

  it("security applies sysctl only where /proc/sys is writable", function()
    local calls = plan.run(plan.module "security", config(), { facts = { proc_sys_writable = false } })
    assert.truthy(plan.find(calls, "file.template", function(a) return a.path == "/etc/sysctl.d/90-phanes-hardening.conf" end)[1])
    assert.same({}, plan.find(calls, "cmd.run", function(a) return a.argv and a.argv[1] == "sysctl" end))
    calls = plan.run(plan.module "security", config())
    assert.truthy(plan.find(calls, "cmd.run", function(a) return a.argv and a.argv[1] == "sysctl" end)[1])
  end)

  it("security refuses to turn password login off when the admin user has no key", function()
    local files = plan.host_files()
    files["/home/deploy/.ssh/authorized_keys"] = nil
    local c = config { ssh_public_key = "" }
    local ok, err = pcall(plan.run, plan.module "security", c, { files = files })
    assert.falsy(ok)
    assert.truthy(tostring(err):match "refusing to turn off SSH password login")
    -- and it stopped before touching anything: no call was recorded (pcall lost them), so run again
    local calls = {}
    local ok2 = pcall(function() calls = plan.run(plan.module "security", c, { files = files }) end)
    assert.falsy(ok2)
    assert.same({}, calls)
    -- with password login kept on, it goes ahead
    c.security = { password_authentication = true }
    local calls3 = plan.run(plan.module "security", c, { files = files })
    assert.truthy(#calls3 > 0)
  end)

  it("swap skips in a container, saying why", function()
    local calls, skipped = plan.run(plan.module "swap", config(), { facts = { container = "phanes-testhost" } })
    assert.same({}, calls)
    assert.truthy(skipped:match "container")
  end)

  it("swap makes, formats, enables and records a swap file on a VM", function()
    local calls = plan.run(plan.module "swap", config { swap = { size = "1G" } })
    local argv = {}
    for _, c in ipairs(plan.find(calls, "cmd.run")) do argv[#argv + 1] = c.args.argv[1] end
    assert.same({ "fallocate", "chmod", "mkswap", "swapon", "sysctl" }, argv)
    assert.equal("1024M", calls[1].args.argv[3])
    assert.equal(1, #plan.find(calls, "file.line", function(a) return a.path == "/etc/fstab" end))
  end)

  it("docker official: Docker's repository, key and packages; debian: docker.io", function()
    local calls = plan.run(plan.module "docker", config { docker = { source = "official" } }, { dry_run = true })
    local repo = plan.find(calls, "apt.repo")[1].args
    assert.equal("https://download.docker.com/linux/debian/gpg", repo.key_url)
    assert.equal("/etc/apt/keyrings/docker.asc", repo.key_path)
    assert.equal("deb [arch=amd64 signed-by=/etc/apt/keyrings/docker.asc] https://download.docker.com/linux/debian bookworm stable", repo.line)
    assert.same({ "docker-ce", "docker-ce-cli", "containerd.io", "docker-buildx-plugin", "docker-compose-plugin" },
      plan.find(calls, "pkg.installed")[1].args)
    calls = plan.run(plan.module "docker", config { docker = { source = "debian" } }, { dry_run = true })
    assert.same({}, plan.find(calls, "apt.repo"))
    assert.same({ "docker.io", "docker-compose" }, plan.find(calls, "pkg.installed")[1].args)
    assert.same({ "usermod", "-aG", "docker", "deploy" }, plan.find(calls, "cmd.run")[1].args.argv)
    local files = plan.host_files()
    files["/etc/group"] = "root:x:0:\ndocker:x:998:deploy\n"
    calls = plan.run(plan.module "docker", config { docker = { source = "debian" } }, { files = files })
    assert.same({}, plan.find(calls, "cmd.run"))
  end)

  it("caddy official adds Caddy's repository; the Caddyfile is validated", function()
    local calls = plan.run(plan.module "caddy", config { caddy = { source = "official",
      reverse_proxy = "localhost:3000", email = "a@example.com" } }, { dry_run = true })
    local repo = plan.find(calls, "apt.repo")[1].args
    assert.equal("https://dl.cloudsmith.io/public/caddy/stable/gpg.key", repo.key_url)
    assert.truthy(repo.line:match "^deb %[signed%-by=/etc/apt/keyrings/caddy%-stable%.asc%] https://dl%.cloudsmith%.io/public/caddy/stable/deb/debian any%-version main$")
    local conf = plan.find(calls, "file.template")[1]
    assert.equal("caddy", conf.args.validate[1])
    assert.truthy(conf.rendered:match "reverse_proxy localhost:3000")
    assert.truthy(conf.rendered:match "email a@example%.com")
  end)

  it("nginx and caddy serve a deploy site's current release, without making it", function()
    for _, m in ipairs { "nginx", "caddy" } do
      local calls = plan.run(plan.module(m), config { [m] = { deploy_site = "blog" } }, { dry_run = true })
      local conf = plan.find(calls, "file.template")[1]
      assert.truthy(conf.rendered:find("root%s[%s*]*/srv/phanes/sites/blog/current"), conf.rendered)
      for _, d in ipairs(plan.find(calls, "file.directory")) do
        assert.is_nil(tostring(d.args.path):find("/srv/phanes", 1, true))
      end
    end
  end)

  it("redis and postgres mark their secrets", function()
    local r = plan.module "redis"
    assert.truthy(r.config.password.secret and r.config.password.required)
    local calls = plan.run(r, config { redis = { password = "s3cret-pass" } })
    local conf = plan.find(calls, "file.template")[1]
    assert.truthy(conf.args.secret)
    assert.truthy(conf.rendered:match "\nrequirepass s3cret%-pass\n")
    assert.equal(true, plan.find(calls, "service.running")[1].args.restart)
    assert.truthy(plan.module("postgres").config.password.secret)
  end)

  it("the digest primitives postgres uses give the published test vectors", function()
    local f = require "phanes.crypto"
    local function hex(b) return (b:gsub(".", function(c) return ("%02x"):format(c:byte()) end)) end
    -- RFC 4231 test case 2, RFC 7914 section 11 (PBKDF2-HMAC-SHA256, c = 1)
    assert.equal("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
      hex(f.hmac_sha256("Jefe", "what do ya want for nothing?", true)))
    assert.equal("120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b",
      hex(f.pbkdf2_sha256("password", "salt", 1)))
    assert.equal("c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a",
      hex(f.pbkdf2_sha256("password", "salt", 4096)))
    assert.has_error(function() f.pbkdf2_sha256("p", "s", 0) end)
  end)

  it("postgres computes SCRAM verifiers as the server does", function()
    local pg = plan.module "postgres"
    -- computed independently (Python hashlib/hmac) for this salt
    local want = "SCRAM-SHA-256$4096:MDEyMzQ1Njc4OWFiY2RlZg==$nQpbZ77WudtqufPwikHXGRt6g2QJ4zns8bZLw273DRM=:" ..
      "jn2amWP1q1h+jgjy0YTO14S6/F02SV7taipOeB7ef20="
    assert.equal(want, pg.scram_verifier("pencil", "0123456789abcdef", 4096))
    assert.truthy(pg.scram_matches(want, "pencil"))
    assert.falsy(pg.scram_matches(want, "pencil2"))
    assert.falsy(pg.scram_matches("md5abc", "pencil"))
  end)

  it("postgres leaves an existing role with the same password alone, and never puts it on a command line", function()
    local pg = plan.module "postgres"
    local stored = pg.scram_verifier("right-password", "0123456789abcdef", 4096)
    local function exec(o)
      return { code = 0, stdout = "role|" .. stored .. "\ndb|app\n", stderr = "" }
    end
    local calls = plan.run(pg, config { postgres = { password = "right-password" } }, { exec = exec, changed = false })
    assert.same({}, plan.find(calls, "cmd.run"))
    -- the server reads back the new password after the change
    local newer = pg.scram_verifier("new-password", "fedcba9876543210", 4096)
    local n = 0
    local function exec2()
      n = n + 1
      return { code = 0, stdout = "role|" .. (n == 1 and stored or newer) .. "\ndb|app\n", stderr = "" }
    end
    calls = plan.run(pg, config { postgres = { password = "new-password" } }, { exec = exec2 })
    assert.equal(2, n)
    local runs = plan.find(calls, "cmd.run")
    assert.equal(1, #runs)
    assert.truthy(runs[1].args.stdin:match "^ALTER ROLE \"app\" WITH LOGIN PASSWORD 'SCRAM%-SHA%-256%$4096:")
    for _, c in ipairs(calls) do
      for _, a in ipairs(c.args.argv or {}) do assert.falsy(a:find("new-password", 1, true)) end
      assert.falsy((c.args.stdin or ""):find("new-password", 1, true))
    end
  end)

  it("postgres refuses a version the distribution does not have", function()
    local ok, err = pcall(plan.run, plan.module "postgres", config { postgres = { password = "x", version = "16" } })
    assert.falsy(ok)
    assert.truthy(tostring(err):match "postgres.version 16 is not in Debian")
  end)

  it("coolify is skipped when installed, and fails clearly without docker", function()
    local co = plan.module "coolify"
    local files = plan.host_files()
    files["/data/coolify/source/.env"] = "x"
    local _, skipped = plan.run(co, config(), { files = files })
    assert.truthy(skipped:match "already installed")
    files = plan.host_files()
    files["/usr/bin/docker"] = nil
    local ok, err = pcall(plan.run, co, config(), { files = files })
    assert.falsy(ok)
    assert.truthy(tostring(err):match "needs docker")
    local calls = plan.run(co, config { coolify = { install_url = "http://127.0.0.1:8000/install.sh",
      env = { ROOT_USERNAME = "admin" } } })
    local runs = plan.find(calls, "cmd.run")
    assert.equal("http://127.0.0.1:8000/install.sh", runs[1].args.argv[#runs[1].args.argv])
    assert.same({ "bash", "/var/lib/phanes/coolify-install.sh" }, runs[2].args.argv)
    assert.equal("admin", runs[2].args.env.ROOT_USERNAME)
  end)
end)

-- Values that would inject a directive into a config file, or that would
-- make a run fail halfway: every one is refused by config.load (what
-- `phanes check` and `phanes apply` run before anything), all at once, each
-- at its file:line:col.
describe("module values", function()
  local config = require "phanes.config"
  local json = require "phanes.json"
  local sshkey = require "phanes.remote.sshkey"
  local ED = "AAAAC3NzaC1lZDI1NTE5AAAAIAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g"
  local RUN = { "baseline", "user", "security", "swap", "updates", "docker", "monitoring", "nginx", "caddy",
    "redis", "postgres", "coolify", "devtools", "ollama", "comfyui", "lmstudio", "sillytavern" }
  local mods = {}
  setup(function()
    for i, n in ipairs(RUN) do mods[i] = plan.module(n) end
  end)
  local zoneinfo = { ["/usr/share/zoneinfo/UTC"] = true, ["/usr/share/zoneinfo/Europe/Paris"] = true }
  local target = { exists = function(p) return zoneinfo[p] or false end }
  local GOOD = "username: deploy\nssh_public_key: \"ssh-ed25519 " .. ED .. " me@laptop\"\n" ..
    "redis:\n  password: s3cret-pw\npostgres:\n  password: s3cret-pw\n"

  local function load(text)
    return config.load { text = text, path = "config.yaml", modules = mods, known = mods, target = target }
  end

  it("takes the example config and a minimal one", function()
    local text = assert(io.open "config.yaml.example"):read "a"
    local cfg, errs = load(text)
    assert(cfg, errs and table.concat(errs, "\n"))
    assert(load(GOOD))
  end)

  it("reports every injected or broken value at once, each at file:line:col", function()
    local text = table.concat({
      "username: deploy",
      'ssh_public_key: "hello world"',
      "ssh_public_keys:",
      '  - "ssh-rsa ' .. ED .. ' other-type"',
      "timezone: Mars/Olympus",
      "swap:",
      "  size: lots",
      "redis:",
      '  password: "has space"',
      "nginx:",
      '  server_name: "x; location / { root /etc; }"',
      "caddy:",
      '  site: ":80\\nimport /etc/caddy/evil"',
      "security:",
      '  fail2ban_bantime: "1h\\nenabled = false"',
      "docker:",
      [[  log_max_size: '10m", "data-root": "/tmp/x']],
      "updates:",
      [[  mail: "root@example.com\";\nUnattended-Upgrade::Automatic-Reboot \"true\";\n//"]],
      "monitoring:",
      '  bind: "127.0.0.1\\n[web]\\n  bind to = 0.0.0.0"',
      "postgres:",
      "  password: s3cret-pw",
    }, "\n") .. "\n"
    local cfg, errs = load(text)
    assert.is_nil(cfg)
    local want = {
      { "config.yaml:2:1: ssh_public_key: ", "unknown key type 'hello'" },
      { "config.yaml:4:5: ssh_public_keys[1]: ", "the key data says 'ssh-ed25519', not 'ssh-rsa'" },
      { "config.yaml:5:1: timezone: ", "Mars/Olympus does not exist" },
      { "config.yaml:7:3: swap.size: ", 'got "lots"' },
      { "config.yaml:9:3: redis.password: ", "hidden: secret" },
      { "config.yaml:11:3: nginx.server_name: ", "host names" },
      { "config.yaml:13:3: caddy.site: ", "one line" },
      { "config.yaml:15:3: security.fail2ban_bantime: ", "one line" },
      { "config.yaml:17:3: docker.log_max_size: ", "a size" },
      { "config.yaml:19:3: updates.mail: ", "one line" },
      { "config.yaml:21:3: monitoring.bind: ", "one line" },
    }
    assert.equal(#want, #errs, table.concat(errs, "\n"))
    for i, w in ipairs(want) do
      assert.equal(w[1], errs[i]:sub(1, #w[1]), errs[i])
      assert.truthy(errs[i]:find(w[2], 1, true), errs[i])
    end
    assert.is_nil(table.concat(errs, "\n"):find("has space", 1, true))
  end)

  it("refuses injections that stay on one line", function()
    local cases = {
      { "nginx:\n  server_name: \"a.example.com; include /etc/passwd\"\n", "nginx.server_name" },
      { "nginx:\n  root: \"/var/www; autoindex on\"\n", "nginx.root" },
      { "nginx:\n  proxy_pass: \"http://x; root /etc\"\n", "nginx.proxy_pass" },
      { "nginx:\n  client_max_body_size: \"1m; root /\"\n", "nginx.client_max_body_size" },
      { "nginx:\n  index: [\"a.html; root /\"]\n", "nginx.index[1]" },
      { "caddy:\n  site: \":80 {\"\n", "caddy.site" },
      { "caddy:\n  reverse_proxy: \"localhost:3000 {\"\n", "caddy.reverse_proxy" },
      { "caddy:\n  email: \"a@b.c }\"\n", "caddy.email" },
      { "nginx:\n  deploy_site: \"../etc\"\n", "nginx.deploy_site" },
      { "caddy:\n  deploy_site: \"blog; x\"\n", "caddy.deploy_site" },
      { "security:\n  fail2ban_findtime: \"10m enabled=false\"\n", "security.fail2ban_findtime" },
      { "security:\n  fail2ban_ignoreip: [\"0.0.0.0/0 # x\"]\n", "security.fail2ban_ignoreip[1]" },
      { "security:\n  allowed_ports: [\"70000\"]\n", "security.allowed_ports[1]" },
      { "security:\n  ssh_port: 0\n", "security.ssh_port" },
      { "monitoring:\n  bind: \"127.0.0.1 0.0.0.0\"\n", "monitoring.bind" },
      { "monitoring:\n  port: 70000\n", "monitoring.port" },
      { "updates:\n  mail: 'a@b.c\"; x'\n", "updates.mail" },
      { "updates:\n  reboot_time: \"25:00\"\n", "updates.reboot_time" },
      { "docker:\n  storage_driver: 'x\", \"data-root\": \"/'\n", "docker.storage_driver" },
      { "docker:\n  users: [\"root;id\"]\n", "docker.users[1]" },
      { "redis:\n  bind: \"127.0.0.1\\x0bprotected-mode no\"\n", "redis.bind" },
      { "redis:\n  port: 0\n", "redis.port" },
      { "postgres:\n  listen_addresses: \"*' ssl = 'off\"\n", "postgres.listen_addresses" },
      { "postgres:\n  allowed_networks: [\"0.0.0.0/0 trust\"]\n", "postgres.allowed_networks[1]" },
      { "postgres:\n  role: \"a\\\"; DROP\"\n", "postgres.role" },
      { "swap:\n  swappiness: 101\n", "swap.swappiness" },
      { "baseline:\n  packages: [\"-oAPT::x=1\"]\n", "baseline.packages[1]" },
      { "user:\n  groups: [\"adm,sudo\"]\n", "user.groups[1]" },
      { "locale: \"en_US.UTF-8\\nLC_ALL=x\"\n", "locale" },
      { "timezone: \"../../etc/passwd\"\n", "timezone" },
      { "coolify:\n  env: { \"A B\": x }\n", "coolify.env" },
    }
    for _, c in ipairs(cases) do
      local base = GOOD:gsub("\nredis:.*", "\n")
      local extra = c[1]
      local text = base .. extra
      if not extra:match "^redis:" then text = text .. "redis:\n  password: s3cret-pw\n" end
      if not extra:match "^postgres:" then text = text .. "postgres:\n  password: s3cret-pw\n" end
      if extra:match "^redis:" then text = text:gsub("redis:\n", "redis:\n  password: s3cret-pw\n", 1) end
      if extra:match "^postgres:" then text = text:gsub("postgres:\n", "postgres:\n  password: s3cret-pw\n", 1) end
      local cfg, errs = load(text)
      assert(cfg == nil, c[2] .. " was accepted:\n" .. text)
      assert.equal(1, #errs, table.concat(errs, "\n"))
      assert.truthy(errs[1]:match("^config%.yaml:%d+:%d+: " .. c[2]:gsub("%p", "%%%0") .. ": "), errs[1])
    end
  end)

  it("checks the modules a config sets even without a profile (phanes check --config)", function()
    local cfg, errs = config.load { text = "timezone: Mars/Olympus\nswap:\n  size: lots\n", path = "config.yaml",
      modules = {}, known = mods, target = target }
    assert.is_nil(cfg)
    assert.equal(2, #errs, table.concat(errs, "\n"))
    assert.matches("^config%.yaml:1:1: timezone: ", errs[1])
    assert.matches("^config%.yaml:3:3: swap%.size: ", errs[2])
    assert(config.load { text = "timezone: Europe/Paris\n", path = "config.yaml", modules = {}, known = mods,
      target = target })
  end)

  it("checks --set and environment values the same way", function()
    local cfg, errs = config.load { text = GOOD, path = "config.yaml", modules = mods, known = mods,
      sets = { "nginx.server_name=a;b" }, env = { PHANES_SWAP_SIZE = "lots" } }
    assert.is_nil(cfg)
    assert.same({ 'PHANES_SWAP_SIZE: expected a size of at least 16M like 512M or 2G, or auto, got "lots"',
      '--set nginx.server_name: expected host names separated by spaces, like "example.com www.example.com" ' ..
      'or _, got "a;b"' }, errs)
  end)

  it("checks the time zone's existence only on the target", function()
    local text = GOOD .. "timezone: Mars/Olympus\n"
    assert(config.load { text = text, path = "config.yaml", modules = mods, known = mods })
    assert.is_nil(load(text))
    -- a target without tzdata yet: left to the module's apply
    assert(config.load { text = text, path = "config.yaml", modules = mods, known = mods,
      target = { exists = function() return false end } })
  end)

  it("parses SSH public keys: type, base64, the type inside", function()
    local key = assert(sshkey.parse("ssh-ed25519 " .. ED .. " me@laptop"))
    assert.equal("ssh-ed25519", key.type)
    assert.equal("me@laptop", key.comment)
    assert.equal(51, #key.blob)
    local rsa = "AAAAB3NzaC1yc2EAAAADAQABAAAAgQABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4fICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj9AQUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVpbXF1eX2BhYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ent8fX5/gA=="
    assert(sshkey.parse("ssh-rsa " .. rsa))
    local bad = {
      { "hello world", "unknown key type 'hello'" },
      { "ssh-ed25519", "expected" },
      { "ssh-rsa " .. ED, "says 'ssh-ed25519', not 'ssh-rsa'" },
      { "ssh-ed25519 AAAA!!!!", "not base64" },
      { "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5", "too short" },
      { "ecdsa-sha2-nistp256 " .. ED, "not 'ecdsa-sha2-nistp256'" },
      { "ssh-dss " .. ED, "unknown key type" },
      { "ssh-ed25519 " .. ED .. " a\nssh-ed25519 " .. ED, "one line" },
    }
    for _, b in ipairs(bad) do
      local k, why = sshkey.parse(b[1])
      assert.is_nil(k, b[1])
      assert.truthy(why:find(b[2], 1, true), why)
    end
    assert(sshkey.find_in_line('from="10.0.0.1",no-pty ssh-ed25519 ' .. ED .. " x"))
    assert.is_nil(sshkey.find_in_line "hello world")
    assert.is_nil(sshkey.find_in_line("# ssh-ed25519 " .. ED))
  end)

  it("base64_decode is strict", function()
    assert.equal("hello", json.base64_decode "aGVsbG8=")
    assert.equal("hello", json.base64_decode "aGVsbG8")
    assert.equal("", json.base64_decode "")
    for _, s in ipairs { "aGVsbG9=", "a", "aGVs bG8=", "aGVsbG8===", "aG=sbG8=", "aGVsbG8-" } do
      local v, why = json.base64_decode(s)
      assert.is_nil(v, s)
      assert.matches("^base64: ", why)
    end
  end)

  it("security does not turn password login off on a malformed key", function()
    local files = plan.host_files()
    files["/home/deploy/.ssh/authorized_keys"] = "hello world\nssh-rsa " .. ED .. " other-type\n"
    local c = { username = "deploy", ssh_public_key = "hello world", ssh_public_keys = {}, timezone = "UTC",
      locale = "en_US.UTF-8" }
    for _, dry in ipairs { false, true } do
      local ok, err = pcall(plan.run, plan.module "security", c, { files = files, dry_run = dry })
      assert.falsy(ok)
      assert.truthy(tostring(err):match "refusing to turn off SSH password login", err)
    end
  end)

  it("docker's daemon.json is JSON encoded: a value stays inside its string", function()
    local evil = '10m", "data-root": "/tmp/x'
    local calls = plan.run(plan.module "docker", { username = "deploy", docker = plan.with_defaults(
      plan.module("docker").config, { log_max_size = evil, storage_driver = "overlay2" }) })
    local f = plan.find(calls, "file.content", function(a) return a.path == "/etc/docker/daemon.json" end)[1]
    local doc = json.decode(f.args.content)
    assert.equal(evil, doc["log-opts"]["max-size"])
    assert.equal("3", doc["log-opts"]["max-file"])
    assert.equal("overlay2", doc["storage-driver"])
    assert.is_nil(doc["data-root"])
  end)
end)
