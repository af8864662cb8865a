-- Config discovery (--config, PHANES_CONFIG, ./phanes.yaml, ./config.yaml,
-- ~/.config/phanes/config.yaml, /etc/phanes/config.yaml), `phanes check`
-- without a profile and with --json, as a user runs them in a directory.
local json = require "phanes.json"
local runcli = require "spec.support.runcli"
local sys = require "phanes.sys"

local GOOD = "username: admin\n"
local BAD = "username: admin\nredis:\n  port: abc\n"

describe("config discovery", function()
  local dir, home
  before_each(function()
    dir = runcli.tmpdir()
    home = runcli.tmpdir()
  end)
  after_each(function()
    runcli.rmdir(dir)
    runcli.rmdir(home)
  end)

  -- phanes ARGS... run in dir, HOME=home, PHANES_CONFIG unset unless given
  local function phanes(args, env)
    local e = { HOME = home, NO_COLOR = "1", PHANES_STATE = "", PHANES_CONFIG = "" }
    for k, v in pairs(env or {}) do e[k] = v end
    local errf = dir .. "/.stderr"
    local p = io.popen("cd " .. runcli.quote(dir) .. " && " .. runcli.command(args, e) .. " 2>" .. runcli.quote(errf))
    local out = p:read "a"
    local _, _, code = p:close()
    local err = runcli.read(errf) or ""
    os.remove(errf)
    return { code = code, stdout = out, stderr = err }
  end
  local function check_json(env, extra)
    local args = { "check", "--json" }
    for _, a in ipairs(extra or {}) do args[#args + 1] = a end
    local r = phanes(args, env)
    return json.decode(r.stdout), r
  end

  it("reads ./config.yaml when no --config is given, and says so", function()
    runcli.write(dir .. "/config.yaml", BAD)
    local doc, r = check_json()
    assert.equal(2, r.code)
    assert.same({ "./config.yaml", "the working directory", false }, { doc.config, doc.config_from, doc.valid })
    assert.match("redis%.port: expected an integer", doc.errors[1])
    r = phanes { "check", "dev" }
    assert.equal(2, r.code)
    assert.match("%./config%.yaml:3:3: redis%.port", r.stderr)
    -- the header of a run names the file in use
    runcli.write(dir .. "/config.yaml", GOOD)
    r = phanes { "apply", "minimal", "--dry-run" }
    assert.match("^dry run: applying minimal %(%d+ modules, embedded, config %./config%.yaml%)", r.stdout)
  end)

  it("takes --config, then PHANES_CONFIG, then ./phanes.yaml, ./config.yaml, ~/.config/phanes/config.yaml", function()
    assert.equal(json.null, check_json().config) -- nothing found (and no /etc/phanes here)
    assert(require("phanes.file").mkdir(home .. "/.config/phanes", { parents = true, mode = tonumber("0755", 8) }))
    runcli.write(home .. "/.config/phanes/config.yaml", GOOD)
    assert.equal(home .. "/.config/phanes/config.yaml", check_json().config)
    assert.equal("~/.config/phanes", check_json().config_from)
    runcli.write(dir .. "/config.yaml", GOOD)
    assert.equal("./config.yaml", check_json().config)
    runcli.write(dir .. "/phanes.yaml", GOOD)
    assert.equal("./phanes.yaml", check_json().config)
    runcli.write(dir .. "/env.yaml", GOOD)
    local doc = check_json { PHANES_CONFIG = dir .. "/env.yaml" }
    assert.same({ dir .. "/env.yaml", "PHANES_CONFIG" }, { doc.config, doc.config_from })
    runcli.write(dir .. "/named.yaml", GOOD)
    doc = check_json({ PHANES_CONFIG = dir .. "/env.yaml" }, { "--config", "named.yaml" })
    assert.same({ "named.yaml", "--config" }, { doc.config, doc.config_from })
  end)

  it("as root, refuses a config it found (not named) that others can change", function()
    if sys.getuid() ~= 0 then return pending "needs root" end
    runcli.write(dir .. "/config.yaml", GOOD)
    assert(os.execute("chmod 0666 " .. runcli.quote(dir .. "/config.yaml")))
    local r = phanes { "check" }
    assert.equal(2, r.code)
    assert.match("refusing %./config%.yaml", r.stderr)
    assert.match("give it with %-%-config to use it anyway", r.stderr)
    r = phanes { "check", "--config", "config.yaml" } -- named: the user's choice
    assert.equal(0, r.code, r.stderr)
  end)
end)

describe("phanes check", function()
  local dir
  before_each(function() dir = runcli.tmpdir() end)
  after_each(function() runcli.rmdir(dir) end)

  it("without a profile checks the modules the config configures, as a run of them would", function()
    runcli.write(dir .. "/c.yaml", "username: admin\nredis:\n  maxmemory: 64mb\n")
    local r = runcli.run({ "check", "--config", dir .. "/c.yaml" }, { NO_COLOR = "1" })
    assert.equal(2, r.code)
    assert.match("redis%.password: required", r.stderr)
    runcli.write(dir .. "/c.yaml", "username: admin\nredis:\n  password: s3cret-long-enough\n")
    r = runcli.run({ "check", "--config", dir .. "/c.yaml" }, { NO_COLOR = "1" })
    assert.equal(0, r.code, r.stderr)
    assert.match("is valid for the modules it configures %(.*redis.*%)", r.stdout)
  end)

  it("--json: one document, valid or not", function()
    runcli.write(dir .. "/c.yaml", "username: admin\n")
    local r = runcli.run({ "check", "dev", "--json", "--config", dir .. "/c.yaml" })
    assert.equal(0, r.code, r.stderr)
    local doc = json.decode(r.stdout)
    assert.same({ true, "dev", 0 }, { doc.valid, doc.profile, doc.exit_code })
    assert.truthy(#doc.modules > 3)
    r = runcli.run({ "check", "nosuchprofile", "--json", "--config", dir .. "/c.yaml" })
    assert.equal(2, r.code)
    doc = json.decode(r.stdout)
    assert.is_false(doc.valid)
    assert.match("nosuchprofile", doc.errors[1])
  end)
end)
