-- Fleets: one child process per host, at most --parallel at a time, their
-- output split or merged; the one JSON document a fleet prints with --json;
-- what a status child's output becomes.
local fleet = require "phanes.remote.fleet"
local status = require "phanes.remote.status"
local json = require "phanes.json"

describe("fleet.document", function()
  it("keeps each host's value, turns the others into error and exit code, exits 1 when any failed", function()
    local report = { format = 1, command = "apply", exit_code = 0, status = "ok", modules = {} }
    local doc = fleet.document {
      { name = "web1", code = 0, value = report },
      { name = "web2", code = 3, error = "web2:22: connect: timed out" },
      { name = "web3", code = 1 },
    }
    assert.same({ hosts = {
      web1 = report,
      web2 = { error = "web2:22: connect: timed out", exit_code = 3 },
      web3 = { error = "exit 1", exit_code = 1 },
    }, exit_code = 1 }, doc)
    -- it is one JSON document that reads back the same
    assert.same(doc, json.decode(json.encode(doc, { pretty = true })))
  end)

  it("exits 0 when every host did, a failed report included as it is", function()
    local failed = { status = "failed", exit_code = 1 }
    assert.same({ hosts = { a = { x = 1 } }, exit_code = 0 }, fleet.document { { name = "a", code = 0, value = { x = 1 } } })
    assert.equal(1, fleet.document({ { name = "a", code = 0, value = {} }, { name = "b", code = 1, value = failed } }).exit_code)
    assert.equal(failed, fleet.document({ { name = "b", code = 1, value = failed } }).hosts.b)
  end)
end)

describe("fleet.apply_entry and last_error", function()
  it("takes the host's JSON report from its stdout", function()
    local e = fleet.apply_entry("web1", 1, '{"status": "failed", "exit_code": 1}\n', "ignored")
    assert.same({ name = "web1", code = 1, value = { status = "failed", exit_code = 1 } }, e)
  end)

  it("falls back to the reason when stdout is empty or not JSON (a run cut short)", function()
    assert.same({ name = "w", code = 3, error = "w:22: refused" }, fleet.apply_entry("w", 3, "", "w:22: refused"))
    assert.same({ name = "w", code = 3, error = "lost" }, fleet.apply_entry("w", 3, '{"status": "o', "lost"))
    assert.same({ name = "w", code = 2, error = "no report (exit 2)" }, fleet.apply_entry("w", 2, nil, nil))
  end)

  it("picks the last phanes: line, else the last line", function()
    assert.equal("second", fleet.last_error "phanes: first\nnoise\nphanes: second\ntrailing\n")
    assert.equal("just this", fleet.last_error "one\njust this\n")
    assert.is_nil(fleet.last_error "")
    assert.is_nil(fleet.last_error(nil))
  end)

  it("sees --json among the remote arguments", function()
    assert.is_true(fleet.wants_json { "apply", "web", "--json" })
    assert.is_false(fleet.wants_json { "apply", "web", "--json-ish" })
  end)
end)

describe("status rows and entries", function()
  it("reads a status child's JSON row, named as the parent knows the host", function()
    local out = json.encode { host = "root@10.0.0.1", reachable = true, state = { format = 1, modules = { a = { status = "installed" } } } }
    local row = status.row("web1", 0, out, "")
    assert.equal("web1", row.host)
    assert.same({ name = "web1", code = 0, value = row.state }, status.entry(row))
  end)

  it("an unreachable host exits 3, a state that could not be read 1", function()
    local row = status.row("web2", 3, json.encode { host = "web2", reachable = false, error = "web2:22: connect: timed out" }, "")
    assert.same({ name = "web2", code = 3, error = "web2:22: connect: timed out" }, status.entry(row))
    row = status.row("web3", 1, json.encode { host = "web3", reachable = true, error = "corrupt state file" }, "")
    assert.same({ name = "web3", code = 1, error = "corrupt state file" }, status.entry(row))
  end)

  it("a child that printed no JSON gives its last message", function()
    local row = status.row("web4", 2, "", "phanes: --state needs a path\n")
    assert.same({ host = "web4", reachable = true, error = "--state needs a path" }, row)
    assert.equal(1, status.entry(row).code)
    assert.is_false(status.row("web5", 3, "", "").reachable)
  end)
end)

describe("fleet.run_all", function()
  local sys = require "phanes.sys"
  local dir, exe
  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(require("phanes.file").mkdir(dir, { mode = tonumber("0700", 8) }))
    exe = dir .. "/fake-phanes"
    -- $1 --remote, $2 the host; sleeps, then answers on both streams
    local f = assert(io.open(exe, "wb"))
    f:write [[
#!/bin/sh
name=$2; shift 2
echo "phanes: working on $name ($*) prompt=$PHANES_NO_PROMPT" >&2
sleep 1
printf '{"host": "%s"}\n' "$name"
case $name in down*) echo "phanes: $name:22: connect: timed out" >&2; exit 3;; esac
exit 0
]]
    f:close()
    assert(os.execute("chmod 700 " .. exe))
  end)
  teardown(function() require("phanes.file").remove(dir, true) end)

  local targets = { { name = "a" }, { name = "down1" }, { name = "c" } }

  it("runs the hosts side by side, splitting stdout from the prefixed stderr lines", function()
    local lines = {}
    local t0 = sys.now()
    local jobs = fleet.run_all(targets, { parallel = 10, timeout = 4 }, { "status", "--json" }, { exe = exe, split = true,
      on_line = function(job, line) lines[#lines + 1] = job.target.name .. " " .. line end })
    local took = sys.now() - t0
    assert.is_true(took < 2.5, "took " .. took .. "s: not in parallel")
    assert.equal(3, #jobs)
    for i, job in ipairs(jobs) do
      assert.equal(targets[i], job.target)
      assert.same({ host = job.target.name }, json.decode(job.stdout))
    end
    assert.same({ 0, 3, 0 }, { jobs[1].code, jobs[2].code, jobs[3].code })
    assert.matches("phanes: down1:22: connect: timed out$", jobs[2].stderr)
    table.sort(lines)
    assert.same({
      "a phanes: working on a (--timeout=4 status --json) prompt=1",
      "c phanes: working on c (--timeout=4 status --json) prompt=1",
      "down1 phanes: down1:22: connect: timed out",
      "down1 phanes: working on down1 (--timeout=4 status --json) prompt=1",
    }, lines)
  end)

  it("holds to --parallel, and merges the streams when not split", function()
    local seen = {}
    local t0 = sys.now()
    local jobs = fleet.run_all(targets, { parallel = 1 }, { "x" }, { exe = exe,
      on_line = function(job, line) seen[#seen + 1] = job.target.name .. ": " .. line end })
    local took = sys.now() - t0
    assert.is_true(took >= 3, "took " .. took .. "s: more than one at a time")
    assert.equal("", jobs[1].stdout)
    assert.equal('a: {"host": "a"}', seen[2])
    assert.equal("down1: phanes: down1:22: connect: timed out", seen[#seen - 2])
  end)
end)
