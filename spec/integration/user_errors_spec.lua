-- What a user's own mistakes look like (issue: "Errors" and "Progress"),
-- with the binary as a subprocess. Dry runs of the fixture modules
-- (spec/fixtures/usererrors), except the still-running case, which applies
-- spec/fixtures/errors' e_slow: it only writes into $ERR_DIR, a temp dir.
-- Nothing here changes this machine.
local runcli = require "spec.support.runcli"

local FIX = "spec/fixtures/usererrors"

describe("a user's mistakes", function()
  local dir
  before_each(function() dir = runcli.tmpdir() end)
  after_each(function() runcli.rmdir(dir) end)

  local function env(extra)
    local e = { NO_COLOR = "1", PHANES_LOCK = dir .. "/machine.lock", ERR_DIR = dir }
    for k, v in pairs(extra or {}) do e[k] = v end
    return e
  end
  local function dry(profile, ...)
    local argv = { "apply", profile, "--dry-run", "--path", FIX, "--state", dir .. "/state.json", ... }
    return runcli.run(argv, env())
  end

  it("a load-time error shows the user's file:line, none of phanes' frames", function()
    local r = dry "u_loaderr"
    assert.equal(2, r.code)
    assert.matches("u_loaderr%.lua:4: attempt to index a nil value %(local 'settings'%)", r.stderr)
    assert.matches("stack traceback:\n\t[^\n]*u_loaderr%.lua:4: in main chunk", r.stderr)
    assert.is_nil(r.stderr:find("lua/phanes/", 1, true))
    assert.is_nil(r.stderr:find("[C]", 1, true))
  end)

  it("a typo in a resource name suggests the right one, at the user's line", function()
    local r = dry "u_typo"
    assert.equal(1, r.code)
    assert.matches("module 'u_typo' failed: ctx.pkg.instaled: no such resource (did you mean ctx.pkg.installed?)",
      r.stderr, 1, true)
    assert.matches("u_typo%.lua:5%)", r.stderr)
  end)

  it("a missing required argument is named", function()
    local r = dry "u_noarg"
    assert.equal(1, r.code)
    assert.matches("module 'u_noarg' failed: file.content: missing required argument 'path'", r.stderr, 1, true)
    assert.matches("u_noarg%.lua:5%)", r.stderr)
    assert.is_nil((r.stdout .. r.stderr):find("file.content nil", 1, true))
  end)

  it("a profile naming an unknown module names the profile file", function()
    local r = dry "u_unknown"
    assert.equal(2, r.code)
    assert.matches("phanes: [^\n]*usererrors/profiles/u_unknown%.lua: unknown module 'u_nosuch'", r.stderr)
  end)

  it("a bad key in a profile's defaults names the profile file, not the config file", function()
    runcli.write(dir .. "/config.yaml", "u_port:\n  port: 81\n")
    local r = dry("u_baddefault", "--config", dir .. "/config.yaml")
    assert.equal(2, r.code)
    assert.matches("u_baddefault%.lua: unknown key 'u_port%.prot' %(did you mean 'u_port%.port'%?%)", r.stderr)
    assert.matches("fix the defaults in [^\n]*u_baddefault%.lua, then try", r.stderr)
    assert.is_nil(r.stderr:find("fix the config", 1, true))
  end)

  it("piped: each resource's line as it ends, and a still-running line for a slow step", function()
    runcli.write(dir .. "/good.yaml", "e_write:\n  name: web\n  token: \"S3cr3t-Tok-77\"\n")
    local argv = { "apply", "e_slow", "--path", "spec/fixtures/errors", "--state", dir .. "/state.json",
      "--config", dir .. "/good.yaml" }
    local r = runcli.run(argv, env { PHANES_STILL_RUNNING = "1" })
    assert.equal(0, r.code)
    assert.matches("\n      changed file%.content [^\n]*/step1", r.stdout)
    assert.matches("\n      still running: e_slow cmd%.run slow  %$ sh %-c [^\n]*%(1%.%ds%)\n", r.stdout)
    assert.matches("still running[^\n]*\n.*changed cmd%.run slow", r.stdout)
    -- a re-run: every ok resource still says its line
    r = runcli.run(argv, env())
    assert.equal(0, r.code)
    assert.matches("\n      ok file%.content [^\n]*/step3\n", r.stdout)
    assert.is_nil(r.stdout:find("still running", 1, true))
  end)
end)
