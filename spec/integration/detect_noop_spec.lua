-- A module found installed by its detect probes, on a disposable test host:
-- the fixture module spec/fixtures/detect (beacon: a directory, an install
-- command guarded by the program it writes, which logs each run to
-- installs.log, a config file; probes: 2 files, the directory, the
-- program's --check) is applied inside the host, the state file is
-- deleted, and the plan and the apply then say noop (detected), the host's
-- files are looked at (inode, mtime, ctime: untouched, no second install)
-- and the state file lists the module again; the same over SSH (--remote),
-- where the controller's record says noop too. A changed config is shown
-- and made, never hidden behind noop; failing probes leave an ordinary ok.
--
--   PHANES_TEST_ID=nop spec/run build/phanes integration spec/integration/detect_noop_spec.lua
local th = require "spec.support.testhost"
local runcli = require "spec.support.runcli"
local json = require "phanes.json"

local on = require "spec.support.onhost"
local sh, yes, phanes = on.sh, on.yes, on.phanes

local APPLY = "apply --modules beacon --path detect"
local STATE = "/var/lib/phanes/state.json"
-- inode, mtime and ctime (ns) of everything the module made
local FILES = "/opt/beacon /opt/beacon/bin /opt/beacon/bin/beacon /opt/beacon/beacon.conf /opt/beacon/installs.log"
local function stamps() return sh("stat -c '%n %i %.9Y %.9Z' " .. FILES) end

local function report(args) return on.report(APPLY .. " " .. (args or "")) end

describe("detect probes on a test host", function()
  if not on.use() then return end -- a fresh host 1
  setup(function()
    assert(th.cp(1, runcli.binary(), "/usr/local/bin/phanes"))
    assert(th.cp(1, "spec/fixtures/detect", "/root/detect"))
  end)

  local before

  it("installs the module: changed, recorded, not noop", function()
    local out, code, err = phanes(APPLY)
    assert.equal(0, code, out .. err)
    assert.matches("\nbeacon%s+changed%s+3%s", out)
    assert.not_matches("\n%s+noop ", out)
    assert.equal("installed\n", sh "cat /opt/beacon/installs.log")
    assert.equal("greeting=hello\n", sh "cat /opt/beacon/beacon.conf")
    assert.equal("installed", json.decode(sh("cat " .. STATE)).modules.beacon.status)
    before = stamps()
  end)

  it("with the state file deleted: status detects it, the plan says noop, nothing written", function()
    sh("rm " .. STATE)
    local out, code, err = phanes "status --path detect"
    assert.equal(0, code, out .. err)
    assert.matches("beacon%s+installed%s+not in the state", out)
    out, code, err = phanes(APPLY .. " --dry-run")
    assert.equal(0, code, out .. err)
    assert.matches("\n      noop (detected: 4 probes passed; not in the state, an apply records it)\n", out, 1, true)
    assert.matches("\nbeacon%s+noop%s+0%s", out)
    assert.matches("dry run done, nothing changed", out, 1, true)
    local r, rcode, text = report "--dry-run --detailed-exitcode"
    assert.equal(0, rcode, text) -- noop is no drift
    assert.equal("noop", r.modules[1].status)
    assert.same({ noop = 1 }, r.counts)
    assert.equal(4, r.modules[1].detected.probes)
    assert.is_false(r.modules[1].detected.in_state)
    for _, ev in ipairs(r.modules[1].resources) do assert.equal("ok", ev.status, ev.resource) end
    assert.is_false(yes("test -e " .. STATE))
    assert.equal(before, stamps())
  end)

  it("the apply: noop, the module recorded again, nothing reinstalled or rewritten", function()
    local out, code, err = phanes(APPLY)
    assert.equal(0, code, out .. err)
    assert.matches("\n      noop (detected: 4 probes passed; recorded in the state again)\n", out, 1, true)
    assert.matches("\nbeacon%s+noop%s+0%s", out)
    local st = json.decode(sh("cat " .. STATE))
    assert.equal("installed", st.modules.beacon.status)
    assert.equal("1", st.modules.beacon.version)
    assert.is_string(st.modules.beacon.config_hash)
    assert.equal(before, stamps())
    assert.equal("installed\n", sh "cat /opt/beacon/installs.log")
    -- known again: noop, nothing more to say; status shows it installed
    local r, rcode, text = report()
    assert.equal(0, rcode, text)
    assert.equal("noop", r.modules[1].status)
    assert.is_true(r.modules[1].detected.in_state)
    out = phanes "status --path detect"
    assert.matches("\nbeacon%s+installed%s", out)
    assert.not_matches("not in the state", out)
    assert.equal(before, stamps())
  end)

  it("a config change with the probes passing is shown and made, not noop", function()
    sh("rm " .. STATE)
    local out, code, err = phanes(APPLY .. " --dry-run --set beacon.greeting=bye")
    assert.equal(0, code, out .. err)
    assert.matches("would change file.content /opt/beacon/beacon.conf", out, 1, true)
    assert.matches("+greeting=bye", out, 1, true)
    assert.matches("\nbeacon%s+would change%s+1%s", out)
    assert.not_matches("\n%s+noop ", out)
    assert.equal("greeting=hello\n", sh "cat /opt/beacon/beacon.conf")
    out, code, err = phanes(APPLY .. " --set beacon.greeting=bye")
    assert.equal(0, code, out .. err)
    assert.matches("\nbeacon%s+changed%s+1%s", out)
    assert.not_matches("\n%s+noop ", out)
    assert.equal("greeting=bye\n", sh "cat /opt/beacon/beacon.conf")
    assert.equal("installed\n", sh "cat /opt/beacon/installs.log")
    assert.equal("installed", json.decode(sh("cat " .. STATE)).modules.beacon.status)
  end)

  it("over SSH: the plan and the apply say noop, the controller's record too; the target's state lists it", function()
    sh("rm " .. STATE)
    local home = require("spec.support.fakeexec").tmpdir() -- not under /tmp: --path there is refused
    finally(function() os.execute("rm -rf " .. th.quote(home)) end)
    assert(os.execute("cp -r spec/fixtures/detect " .. th.quote(home .. "/detect")))
    local function remote(args)
      local code, out = runcli.at_home(home, "--path detect --remote root@" .. th.ip(1) .. " --key " .. th.quote(th.key())
        .. " " .. APPLY:gsub(" %-%-path detect", "") .. " --set beacon.greeting=bye " .. args)
      return code, out, runcli.record(home, "root@" .. th.ip(1))
    end
    local code, out, rec = remote "--dry-run"
    assert.equal(0, code, out)
    assert.matches("noop (detected: 4 probes passed; not in the state, an apply records it)", out, 1, true)
    assert.equal("noop", rec.modules[1].status)
    assert.is_false(yes("test -e " .. STATE))
    local now = stamps()
    code, out, rec = remote ""
    assert.equal(0, code, out)
    assert.matches("noop (detected: 4 probes passed; recorded in the state again)", out, 1, true)
    assert.equal("noop", rec.modules[1].status)
    assert.equal(0, rec.changed)
    assert.equal("installed", json.decode(sh("cat " .. STATE)).modules.beacon.status)
    assert.equal(now, stamps())
  end)

  it("a probe that fails (the program's check) leaves an ordinary ok", function()
    sh "chmod 0644 /opt/beacon/bin/beacon"
    local r, code, text = report "--dry-run --set beacon.greeting=bye"
    assert.equal(0, code, text)
    assert.equal("ok", r.modules[1].status)
    assert.is_nil(r.modules[1].detected)
    local out = phanes "status --path detect"
    assert.matches("beacon%s+not found%s+[^\n]*command /opt/beacon/bin/beacon %-%-check", out)
  end)
end)
