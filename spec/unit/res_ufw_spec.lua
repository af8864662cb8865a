-- ufw.allow and ufw.enabled on a fake transport: ufw's own files under a
-- temp root, ufw run only for a difference, in order, nothing in a dry run.
local fakeexec = require "support.fakeexec"
local ufw = require "phanes.res.ufw"
local F = require "phanes.file"

local PHANES = " comment=7068616e6573"
local function tuple(port, proto, comment)
  return ("### tuple ### allow %s %s 0.0.0.0/0 any 0.0.0.0/0 in%s\n"):format(proto, port, comment or "")
end

local function world(o)
  o = o or {}
  local w = fakeexec.world(o)
  w.run.paths.ufw_dir = w.path "/etc/ufw"
  w.run.paths.ufw_defaults = w.path "/etc/default/ufw"
  assert(F.mkdir(w.path "/etc/ufw", { parents = true }))
  assert(F.mkdir(w.path "/etc/default", { parents = true }))
  if o.rules then fakeexec.write(w.path "/etc/ufw/user.rules", o.rules) end
  if o.defaults then fakeexec.write(w.path "/etc/default/ufw", o.defaults) end
  if o.conf then fakeexec.write(w.path "/etc/ufw/ufw.conf", o.conf) end
  w.fake:on("ufw", { code = 0 })
  return w
end

describe("ufw.allow", function()
  local w
  after_each(function() if w then w.close() w = nil end end)

  it("adds the missing rules in the order given, with the comment", function()
    w = world { rules = tuple("80", "tcp", PHANES) }
    local r = w.ctx.ufw.allow { "2222/tcp", "80/tcp", "53", "60000:61000/udp", "2222/tcp" }
    assert.is_true(r.changed)
    assert.same({ "ufw allow 2222/tcp comment phanes", "ufw allow 53 comment phanes",
      "ufw allow 60000:61000/udp comment phanes" }, w.fake:lines "ufw")
    assert.equal("allowed 2222/tcp, 53, 60000:61000/udp", w.events[1].message)
  end)

  it("with exclusive, deletes only its own simple rules the list no longer has", function()
    w = world { rules = tuple("22", "tcp", PHANES) .. tuple("8080", "tcp", PHANES) .. tuple("9999", "tcp")
      .. "### tuple ### allow tcp 5432 10.0.0.0/8 any 0.0.0.0/0 in" .. PHANES .. "\n" }
    w.ctx.ufw.allow { "22/tcp", exclusive = true }
    -- the hand-made 9999 stays, and so does 5432 (not from anywhere)
    assert.same({ "ufw delete allow 8080/tcp" }, w.fake:lines "ufw")
    w.fake:reset()
    w.ctx.ufw.allow { "22/tcp" }
    assert.same({}, w.fake:lines "ufw")
  end)

  it("is ok when every rule is there, and spawns nothing in a dry run", function()
    w = world { rules = tuple("22", "tcp", PHANES) .. tuple("53", "any", PHANES) }
    assert.is_false(w.ctx.ufw.allow { "22/tcp", "53", exclusive = true }.changed)
    assert.equal("ok", w.events[1].status)
    w.close()
    w = world { dry_run = true }
    local r = w.ctx.ufw.allow { "443/tcp" }
    assert.is_true(r.changed)
    assert.equal("would change", w.events[1].status)
    assert.same({}, w.fake:lines "ufw")
  end)

  it("fails naming a bad port and the failing ufw command", function()
    w = world()
    local ok, err = pcall(w.ctx.ufw.allow, { "22/tcp", "http" })
    assert.is_false(ok)
    assert.matches("http: not a port", tostring(err))
    w.fake.answers = {}
    w.fake:on("ufw allow", { code = 1, stderr = "ERROR: Could not find a profile matching" })
    ok, err = pcall(w.ctx.ufw.allow, { "22/tcp" })
    assert.is_false(ok)
    assert.matches("ufw allow 22/tcp failed %(exit 1%)", tostring(err))
    assert.matches("Could not find", tostring(err))
  end)
end)

describe("ufw.enabled", function()
  local w
  after_each(function() if w then w.close() w = nil end end)

  it("sets the policies and enables, then is ok", function()
    w = world { defaults = 'IPV6=yes\nDEFAULT_INPUT_POLICY="ACCEPT"\nDEFAULT_OUTPUT_POLICY="ACCEPT"\n',
      conf = "ENABLED=no\n" }
    local r = w.ctx.ufw.enabled { incoming = "deny", outgoing = "allow" }
    assert.is_true(r.changed)
    assert.same({ "ufw default deny incoming", "ufw --force enable" }, w.fake:lines "ufw")
    assert.equal("incoming deny, enabled", w.events[1].message)
    w.close()
    w = world { defaults = 'DEFAULT_INPUT_POLICY="DROP"\nDEFAULT_OUTPUT_POLICY="ACCEPT"\n', conf = "ENABLED=yes\n" }
    assert.is_false(w.ctx.ufw.enabled {}.changed)
    assert.same({}, w.fake:lines "ufw")
  end)

  it("refuses a policy ufw does not have", function()
    w = world()
    assert.has_error(function() w.ctx.ufw.enabled { incoming = "drop" } end)
  end)
end)

describe("ufw parsers", function()
  it("reads ports, rules and settings", function()
    assert.same({ "80", "tcp" }, { ufw.parse_port "80/tcp" })
    assert.same({ "53" }, { ufw.parse_port(53) })
    assert.is_nil(ufw.parse_port "70000")
    assert.is_nil(ufw.parse_port "80/icmp")
    local rules = ufw.parse_rules(tuple("22", "tcp", PHANES) .. tuple("53", "any"))
    assert.same({ ["22/tcp"] = { comment = "phanes", simple = true }, ["53"] = { simple = true } }, rules)
    assert.equal("DROP", ufw.setting('# x\nDEFAULT_INPUT_POLICY="DROP"\n', "DEFAULT_INPUT_POLICY"))
    assert.equal("yes", ufw.setting("ENABLED=yes", "ENABLED"))
  end)
end)
