-- A single-host remote run says what it waits on, with the time each step
-- took: connecting, uploading phanes (only when the target lacks this
-- binary), running. One disposable test host; a dry run of baseline.
local th = require "spec.support.testhost"

local q = th.quote

describe("remote progress", function()
  local ok_hosts, why = th.available()
  if not ok_hosts then
    pending(why)
    return
  end
  local key, home
  setup(function()
    th.up(1)
    key = th.key()
    home = require("spec.support.fakeexec").tmpdir()
  end)
  teardown(function()
    th.down()
    os.execute("rm -rf " .. q(home))
  end)

  -- phanes ARGS with HOME = home; exit code, stdout, stderr
  local function phanes(args)
    return require("spec.support.runcli").at_home(home, args, { stderr = home .. "/stderr" })
  end

  it("says connecting, uploading phanes (size) and running, each with its time; no upload the second time", function()
    local ip = th.ip(1)
    local f = assert(io.open(home .. "/config.yaml", "wb"))
    f:write "timezone: UTC\nlocale: C.UTF-8\n"
    f:close()
    local args = { "--remote", "root@" .. ip, "--key", key, "--modules", "baseline",
      "--config", home .. "/config.yaml", "--dry-run" }
    local code, out, err = phanes(args)
    assert.equal(0, code, out .. err)
    local pip = ip:gsub("%.", "%%.")
    local a = err:find(": connecting to " .. pip .. ":22: %d+%.%ds\n")
    local b = err:find(": uploading phanes %(%d+%.%d MB%): %d+%.%ds\n")
    local c = err:find(": running: %d+%.?%d*s\n")
    assert.is_truthy(a, err)
    assert.is_truthy(b, err)
    assert.is_truthy(c, err)
    assert.is_true(a < b and b < c, err)
    assert.matches("dry run done", out)
    code, out, err = phanes(args)
    assert.equal(0, code, out .. err)
    assert.matches(": connecting to " .. pip .. ":22: ", err)
    assert.matches(": running: ", err)
    assert.is_nil(err:find("uploading", 1, true), err)
  end)
end)
