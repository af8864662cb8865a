-- Per-host and per-group configuration on a real fleet of two test hosts:
-- each host gets its own merged config (a group var and a host var each),
-- checked by reading the file the module wrote on each host.
local th = require "spec.support.testhost"

local BIN = th.bin()
local q = th.quote

local function write(path, text)
  assert(os.execute("mkdir -p " .. q(path:match "^(.*)/")))
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local function phanes(home, args)
  local words = {}
  for i, a in ipairs(args) do words[i] = q(a) end
  local p = assert(io.popen("cd " .. q(home) .. " && HOME=" .. q(home) .. " SSH_AUTH_SOCK= " .. q(BIN) .. " "
    .. table.concat(words, " ") .. " </dev/null 2>&1"))
  local out = p:read "a"
  local _, _, code = p:close()
  return code, out
end

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
end)
