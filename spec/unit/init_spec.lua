-- init_cmd.lua: `phanes init` as a user runs it; the scaffold passes
-- `phanes check` and its example runs in a dry run; existing files are kept.
local runcli = require "spec.support.runcli"

describe("phanes init", function()
  local dir
  before_each(function() dir = runcli.tmpdir() end)
  after_each(function() runcli.rmdir(dir) end)

  -- run phanes in `cwd`
  local function phanes_in(cwd, argv, env)
    local errf = cwd .. "/.stderr"
    local p = io.popen("cd " .. runcli.quote(cwd) .. " && " .. runcli.command(argv, env) .. " 2>" .. runcli.quote(errf))
    local out = p:read "a"
    local _, _, code = p:close()
    local err = runcli.read(errf)
    os.remove(errf)
    return { code = code, stdout = out, stderr = err }
  end

  it("scaffolds a commented config, an example module and profile that pass check", function()
    local r = runcli.run({ "init", dir .. "/proj" }, { NO_COLOR = "1" })
    assert.equal(0, r.code, r.stderr)
    for _, f in ipairs { "config.yaml", "modules/example.lua", "profiles/example.lua" } do
      assert.match("created " .. (dir .. "/proj/" .. f):gsub("%p", "%%%0") .. "\n", r.stdout)
      assert.match(f:match "%.lua$" and "^%-%- " or "^# ", runcli.read(dir .. "/proj/" .. f)) -- commented
    end
    assert.is_nil(runcli.read(dir .. "/proj/inventory.yaml"))
    local env = { NO_COLOR = "1", PHANES_STATE = "", HOME = dir }
    r = phanes_in(dir .. "/proj", { "check", "example", "--config", "config.yaml" }, env)
    assert.equal(0, r.code, r.stderr)
    assert.match("ok: config.yaml is valid for example %(baseline, example%)", r.stdout)
    r = phanes_in(dir .. "/proj", { "check", "--config", "config.yaml" }, env)
    assert.equal(0, r.code, r.stderr)
    r = phanes_in(dir .. "/proj", { "list" }, env)
    assert.match("example%s+A greeting in /etc/motd%s+%./modules/example%.lua", r.stdout)
    r = phanes_in(dir .. "/proj", { "apply", "example", "--config", "config.yaml", "--dry-run",
      "--state", dir .. "/state.json" }, env)
    assert.equal(0, r.code, r.stderr)
    assert.match("would change file%.content /etc/motd", r.stdout)
    assert.match("%+Provisioned by phanes", r.stdout) -- the config's value, not the default
  end)

  it("never overwrites a file: says kept, writes the rest; --inventory adds one that loads", function()
    runcli.write(dir .. "/config.yaml", "# mine\n")
    local r = phanes_in(dir, { "init", "--inventory" }, { NO_COLOR = "1" })
    assert.equal(0, r.code, r.stderr)
    assert.match("kept %./config%.yaml %(exists%)", r.stdout)
    assert.match("created %./modules/example%.lua", r.stdout)
    assert.match("created %./inventory%.yaml", r.stdout)
    assert.equal("# mine\n", runcli.read(dir .. "/config.yaml"))
    local before = runcli.read(dir .. "/modules/example.lua")
    runcli.write(dir .. "/modules/example.lua", before .. "-- edited\n")
    r = phanes_in(dir, { "init", "." }, { NO_COLOR = "1" })
    assert.equal(0, r.code, r.stderr)
    assert.not_match("created", r.stdout)
    assert.equal(before .. "-- edited\n", runcli.read(dir .. "/modules/example.lua"))
    r = runcli.run({ "host", "list", "--json" }, { PHANES_INVENTORY = dir .. "/inventory.yaml" })
    assert.equal(0, r.code, r.stderr)
  end)

  it("takes one directory, and says why it cannot write", function()
    local r = runcli.run({ "init", dir .. "/a", dir .. "/b" }, {})
    assert.equal(2, r.code)
    assert.match("unexpected argument", r.stderr)
    runcli.write(dir .. "/file", "x")
    r = runcli.run({ "init", dir .. "/file" }, {})
    assert.equal(2, r.code)
    assert.match("^phanes: init: cannot write " .. (dir .. "/file"):gsub("%p", "%%%0"), r.stderr)
  end)
end)
