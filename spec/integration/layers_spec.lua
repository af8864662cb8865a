-- Per-host and per-group configuration on a real fleet of two test hosts:
-- each host gets its own merged config (a group var and a host var each),
-- checked by reading the file the module wrote on each host.
local th = require "spec.support.testhost"

local BIN = th.bin()
local q = th.quote

local runcli = require "spec.support.runcli"
local write = runcli.write

-- phanes(home, args[, errfile]) -> exit code, output (stderr too, unless
-- errfile is given: then stderr goes there)
local function phanes(home, args, errfile) return runcli.at_home(home, args, { stderr = errfile }) end

-- A module that writes its config to a file on the host.
local NOTE = [[
return {
  name = "note",
  description = "writes /root/layers-note.txt",
  config = {
    greeting = { type = "string", default = "none" },
    port = { type = "integer", default = 1 },
  },
  apply = function(ctx, cfg)
    ctx.file.content { path = "/root/layers-note.txt",
      content = "greeting=" .. cfg.greeting .. " port=" .. cfg.port .. "\n" }
  end,
}
]]

describe("per-host configuration on a fleet", function()
  local ok_hosts, why = th.available()
  if not ok_hosts then
    pending(why)
    return
  end
  local key, home
  setup(function()
    th.up(2)
    key = th.key()
    home = require("spec.support.fakeexec").tmpdir()
  end)
  teardown(function()
    th.down()
    if home then os.execute("rm -rf " .. q(home)) end
  end)

  it("sends each host its own group and host vars, and each host applies its own", function()
    write(home .. "/mine/modules/note.lua", NOTE)
    write(home .. "/conf/config.yaml", "note:\n  greeting: from-config\n  port: 5\n")
    write(home .. "/conf/group_vars/web.yaml", "note:\n  greeting: from-web\n")
    write(home .. "/conf/group_vars/eu.yaml", "note:\n  greeting: from-eu\n")
    write(home .. "/conf/host_vars/th2.yaml", "note:\n  port: 1002\n")
    write(home .. "/.config/phanes/inventory.yaml", table.concat({
      "hosts:",
      string.format("  th1: { address: %s, user: root, key: %s, groups: [web, eu], vars: { note: { port: 1001 } } }",
        th.ip(1), key),
      string.format("  th2: { address: %s, user: root, key: %s, groups: [web] }", th.ip(2), key),
      string.format("  th9: { address: %s, user: root, key: %s }", th.ip(9), key), -- never up
      "" }, "\n"))
    local cfg = home .. "/conf/config.yaml"
    -- what each host will get, with where each value comes from
    local code, out = phanes(home, { "--path", home .. "/mine", "config", "show", "@web", "--origin", "--config", cfg,
      "--color=never" })
    assert.equal(0, code, out)
    assert.matches("note%.greeting%s+from%-eu%s+[^\n]*/group_vars/eu%.yaml:2", out)
    assert.matches("note%.port%s+1001%s+inventory th1%.vars", out)
    assert.matches("note%.port%s+1002%s+[^\n]*/host_vars/th2%.yaml:2", out)
    code, out = phanes(home, { "--path", home .. "/mine", "--remote", "@web", "--modules", "note", "--config", cfg })
    assert.equal(0, code, out)
    -- on the hosts themselves
    local ok1, got1 = th.exec(1, "cat /root/layers-note.txt")
    local ok2, got2 = th.exec(2, "cat /root/layers-note.txt")
    assert.is_true(ok1, got1)
    assert.is_true(ok2, got2)
    assert.equal("greeting=from-eu port=1001\n", got1)
    assert.equal("greeting=from-web port=1002\n", got2)
  end)

  -- (the files of the test above)
  it("shows each host's config layers, has one --json shape for any group, and exits with the worst host's code", function()
    local cfg = home .. "/conf/config.yaml"
    local base = { "--path", home .. "/mine", "--modules", "note", "--config", cfg }
    local function run(target, extra, errfile)
      local args = { "--remote", target }
      for _, a in ipairs(base) do args[#args + 1] = a end
      for _, a in ipairs(extra or {}) do args[#args + 1] = a end
      return phanes(home, args, errfile)
    end
    -- the summary: each host's layers beyond config.yaml, as its child sent them
    local code, out = run("@web")
    assert.equal(0, code, out)
    assert.matches("\nhost%s+result%s+changed%s+failed%s+time%s+config\n", out)
    assert.matches("\nth1%s+ok%s+0%s+0%s+%S+%s+group_vars/web%.yaml, group_vars/eu%.yaml, inventory th1%.vars\n", out)
    assert.matches("\nth2%s+ok%s+0%s+0%s+%S+%s+group_vars/web%.yaml, host_vars/th2%.yaml\n", out)
    -- --json for a group of one host: the same document as for several
    local err = home .. "/stderr"
    code, out = run("@eu", { "--json" }, err)
    assert.equal(0, code, out .. tostring(th.read(err)))
    local doc = assert(require("phanes.json").decode(out), out)
    assert.equal(0, doc.exit_code)
    assert.equal("ok", doc.hosts.th1.status)
    assert.same({ "group_vars/web.yaml", "group_vars/eu.yaml", "inventory th1.vars" }, doc.hosts.th1.config_layers)
    assert.is_nil(doc.hosts.th2)
    -- the README's `status --remote @GROUP --json | jq .hosts`, one host too
    code, out = phanes(home, { "status", "--remote", "@eu", "--json" }, err)
    assert.equal(0, code, out .. tostring(th.read(err)))
    doc = assert(require("phanes.json").decode(out), out)
    assert.equal("installed", doc.hosts.th1.modules.note.status)
    -- drift, with --detailed-exitcode: 4 from every host, so 4 for the fleet
    code, out = run("@web", { "--dry-run", "--detailed-exitcode", "--set", "note.greeting=drift" })
    assert.equal(4, code, out)
    assert.matches("\nth1%s+changed%s", out)
    -- a host that does not answer: 3 for the fleet, the others still run
    code, out = run("th2,th9", { "--timeout", "2" })
    assert.equal(3, code, out)
    assert.matches("\nth2%s+ok%s", out)
    assert.matches("\nth9%s+unreachable%s", out)
  end)
end)
