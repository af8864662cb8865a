-- The controller's per-host records: last.json and the run logs, private,
-- the newest kept.
local util = require "phanes.remote.util"
local record = require "phanes.remote.record"

describe("remote records", function()
  local dir, home
  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    home = util.state_home
    util.state_home = function() return dir end
  end)
  after_each(function()
    util.state_home = home
    require("phanes.file").remove(dir, true)
  end)

  it("writes last.json and a log per run, 0600, and reads them back", function()
    local file = require "phanes.file"
    assert(record.write("web1", { status = "changed", exit_code = 0, changed = 2, remote = { os = "Debian 12" } },
      { "line one", "line two" }))
    local rec = assert(util.read_record "web1")
    assert.same({ "changed", 0, 2, "Debian 12" }, { rec.status, rec.exit_code, rec.changed, rec.remote.os })
    assert.equal(require("phanes.loader").version, rec.phanes_version)
    local f = assert(io.open(rec.log))
    assert.equal("line one\nline two\n", f:read "a")
    f:close()
    assert.equal(tonumber("0600", 8), file.stat(dir .. "/hosts/web1/last.json").mode)
    assert.equal(tonumber("0700", 8), file.stat(dir .. "/hosts/web1").mode)
    assert.is_nil(util.read_record "other")
  end)

  it("keeps the newest logs only, and odd names stay inside the hosts directory", function()
    for i = 1, record.KEEP + 5 do assert(record.write("../../evil host", { n = i }, { "run " .. i })) end
    local runs = require("phanes.file").list(dir .. "/hosts/.._.._evil_host/runs")
    assert.equal(record.KEEP, #runs)
    assert.equal(record.KEEP + 5, util.read_record("../../evil host").n)
  end)
end)

describe("fleet table", function()
  it("aligns columns", function()
    local lines = require("phanes.engine.output").format_table({ "host", "result" }, { { "web1", "ok" }, { "db-server", "failed" } })
    assert.same({ "host       result", "web1       ok", "db-server  failed" }, lines)
  end)
end)
