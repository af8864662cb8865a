-- Fleets: one child process per host, at most --parallel at a time, their
-- output split or merged; the one JSON document a fleet prints with --json;
-- what a status child's output becomes.
local fleet = require "phanes.remote.fleet"
local status = require "phanes.remote.status"
local json = require "phanes.json"

describe("fleet.document", function()
  it("keeps each host's value, turns the others into error and exit code, exits 3 when one was unreachable", function()
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
    }, exit_code = 3 }, doc)
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

describe("the fleet's exit code and shape", function()
  it("is the worst of the hosts': interrupted, unreachable, refused, failed, changes pending, ok", function()
    assert.equal(0, fleet.exit_code {})
    assert.equal(0, fleet.exit_code { 0, 0 })
    assert.equal(4, fleet.exit_code { 0, 4, 0 })
    assert.equal(1, fleet.exit_code { 4, 1, 0 })
    assert.equal(1, fleet.exit_code { 0, 75 }) -- lock held there: that host failed
    assert.equal(1, fleet.exit_code { 0, 70 })
    assert.equal(2, fleet.exit_code { 1, 2 })
    assert.equal(3, fleet.exit_code { 1, 2, 3, 4 })
    assert.equal(130, fleet.exit_code { 3, 130, 0 })
  end)

  it("is a fleet for several hosts and for any group or list, one host or not", function()
    local one, two = { { name = "web1" } }, { { name = "web1" }, { name = "web2" } }
    assert.is_true(fleet.is_fleet("@web", one))
    assert.is_true(fleet.is_fleet("web1,", one))
    assert.is_true(fleet.is_fleet("web1,web2", two))
    assert.is_true(fleet.is_fleet(nil, two))
    assert.is_false(fleet.is_fleet("web1", one))
    assert.is_false(fleet.is_fleet("deploy@web1", one))
    assert.is_false(fleet.is_fleet(nil, one))
  end)

  it("a one-host document has the same shape as a many-host one, with each host's config layers", function()
    local doc = fleet.document { { name = "web1", code = 0, value = { status = "ok" }, layers = { "host_vars/web1.yaml" } } }
    assert.same({ hosts = { web1 = { status = "ok", config_layers = { "host_vars/web1.yaml" } } }, exit_code = 0 }, doc)
    assert.equal("group_vars/web.yaml, vault hosts.web1",
      fleet.layers { config = { layers = { "group_vars/web.yaml", "vault hosts.web1" } } })
    assert.is_nil(fleet.layers { config = { layers = {} } })
    assert.is_nil(fleet.layers(nil))
  end)

  it("builds each child's argv: forwarded options as words of their own, no shell", function()
    local argv = fleet.child_argv("/bin/phanes", { name = "web1" },
      { port = 2222, user = "a b", key = "/k'ey", strict = true, parallel = 5, timeout = 4 }, { "apply", "x;y", "--json" })
    assert.same({ "/bin/phanes", "--remote", "web1", "--port=2222", "--user=a b", "--key=/k'ey", "--timeout=4",
      "--strict-host-keys", "apply", "x;y", "--json" }, argv)
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
[ "$PHANES_RESULT_FD" = 3 ] && printf '{"status": "ok", "host": "%s", "changed": 2}' "$name" >&3
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
    -- each child's result, from its own pipe
    assert.same({ status = "ok", host = "a", changed = 2 }, jobs[1].result)
    assert.is_nil(jobs[2].result)
    assert.equal("c", jobs[3].result.host)
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

  it("passes a Ctrl-C on to the running children and starts no queued one", function()
    -- in a phanes of its own: the signal count stays there
    local slow = dir .. "/slow-phanes"
    local f = assert(io.open(slow, "wb"))
    f:write [[
#!/bin/sh
name=$2
trap 'echo "$name: got INT" >&2; exit 130' INT
[ "$name" = k ] && kill -INT $PPID
i=0; while [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
exit 0
]]
    f:close()
    assert(os.execute("chmod 700 " .. slow))
    local script = [[
local fleet = require "phanes.remote.fleet"
require("phanes.sys").trap_signals()
local jobs = fleet.run_all({ { name = "a" }, { name = "k" }, { name = "q" } }, { parallel = 2 }, { "x" },
  { exe = arg[1], on_line = function(job, line) io.stderr:write(job.target.name, " ", line, "\n") end })
print(jobs[1].code, jobs[2].code, jobs[3].code)
]]
    local t0 = sys.now()
    local r = assert(require("phanes.exec").run { argv = { sys.exe(), "lua", "-", slow }, stdin = script, timeout = 20 })
    assert.truthy(sys.now() - t0 < 5, "the children did not stop")
    assert.equal("130\t130\t130\n", r.stdout, r.stderr)
    assert.matches("a a: got INT", r.stderr)
    assert.matches("k k: got INT", r.stderr)
    assert.matches("q phanes: interrupted before it started", r.stderr)
  end)
end)
