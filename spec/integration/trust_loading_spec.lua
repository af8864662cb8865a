-- What root loads, on a disposable Debian 12 test host: Lua planted in the
-- working directory, modules others can change, a world-writable --path
-- and a world-writable `phanes lua` script. The real binary runs as root
-- inside the host; each attack's payload would create /tmp/pwned, and the
-- host is checked for it afterwards.
--
-- Run as root:
--   PHANES_TEST_ID=fc build/phanes lua /usr/bin/busted spec/integration/trust_loading_spec.lua
local th = require "spec.support.testhost"
local runcli = require "spec.support.runcli"

local MARKER = "/tmp/pwned"
local PAYLOAD = "os.execute('touch " .. MARKER .. "')\n"

local on = require "spec.support.onhost"
local sh = on.sh

-- phanes ARGS as root in dir (env: "NAME=value ..." or nil) -> stdout, exit code, stderr
local function phanes(dir, args, env) return on.phanes(args, { dir = dir, env = env }) end

-- put(path, text[, owner, mode]): a file on the host (default root:root 0644)
local put = on.put

local function pwned() return on.yes("test -e " .. MARKER) and "yes" or "no" end

local function module(name, extra)
  return PAYLOAD .. "return { name = '" .. name .. "', description = 'planted', apply = function(ctx) "
    .. PAYLOAD:gsub("\n", " ") .. " end" .. (extra or "") .. " }\n"
end

describe("what root loads, on a test host", function()
  if not on.use() then return end -- a fresh host 1
  setup(function() assert(th.cp(1, runcli.binary(), "/usr/local/bin/phanes")) end)
  before_each(function() sh("rm -f " .. MARKER) end)

  it("never runs ./lua from the working directory, wherever root stands", function()
    -- alice plants an engine override in a directory of her own, under /tmp
    sh "su alice -c 'mkdir -p /tmp/evil/lua/phanes'"
    for _, f in ipairs { "output", "cli", "commands", "runner" } do
      put("/tmp/evil/lua/phanes/" .. f .. ".lua", PAYLOAD .. "return {}\n", "alice:alice")
    end
    -- and the same in a root-owned directory
    for _, f in ipairs { "output", "cli" } do put("/root/w1/lua/phanes/" .. f .. ".lua", PAYLOAD .. "return {}\n") end
    for _, dir in ipairs { "/tmp/evil", "/root/w1" } do
      local out, code, err = phanes(dir, "status")
      assert.equal(0, code, out .. err)
      assert.matches("nothing applied on this machine yet", out)
      out, code, err = phanes(dir, "list")
      assert.equal(0, code, out .. err)
      assert.matches("baseline%s+.-embedded", out)
      assert.not_matches("lua/phanes", out)
      assert.equal("no", pwned(), dir)
    end
    local out, code, err = phanes("/root/w1", "apply minimal --dry-run")
    assert.equal("no", pwned())
    assert.not_matches("not from the binary", out .. err)
    assert.is_true(code ~= 70, out .. err)
  end)

  it("refuses a module others can change, naming file and owner; nothing runs", function()
    -- owned by alice, in a root-owned directory
    put("/root/w2/modules/x.lua", module "x", "alice:alice")
    local out, code, err = phanes("/root/w2", "list")
    assert.equal(2, code, out .. err)
    assert.equal("", out)
    assert.matches("^phanes: refusing %./modules/x%.lua = /root/w2/modules/x%.lua %(owner alice %(uid %d+%), on the "
      .. "search path from the working directory%) as root: /root/w2/modules/x%.lua is owned by alice", err)
    out, code, err = phanes("/root/w2", "apply x")
    assert.equal(2, code, out .. err)
    out, code, err = phanes("/root/w2", "status")
    assert.equal(2, code, out .. err)
    assert.equal("no", pwned())
    -- SUDO_UID is the invoking user: alice running phanes through sudo may use her own module
    put("/root/w2/modules/x.lua", module("x"):gsub("os%.execute%b()", ""), "alice:alice")
    out, code, err = phanes("/root/w2", "list", "SUDO_UID=$(id -u alice)")
    assert.equal(0, code, out .. err)
    assert.matches("x%s+planted%s+%./modules/x%.lua", out)

    -- root-owned, in a world-writable (sticky) directory
    put("/root/w2b/modules/x.lua", module "x")
    sh "chmod 1777 /root/w2b/modules"
    out, code, err = phanes("/root/w2b", "apply x")
    assert.equal(2, code, out .. err)
    assert.matches("as root: /root/w2b/modules is world%-writable %(mode 1777, owner root %(uid 0%)%)", err)
    -- and in a group-writable one
    sh "chmod 0775 /root/w2b/modules"
    out, code, err = phanes("/root/w2b", "list")
    assert.equal(2, code, out .. err)
    assert.matches("/root/w2b/modules is group%-writable %(mode 0775", err)

    -- root-owned module and modules/, in a project directory alice owns
    sh "su alice -c 'mkdir -p /home/alice/proj'"
    put("/home/alice/proj/modules/x.lua", module "x")
    out, code, err = phanes("/home/alice/proj", "apply x")
    assert.equal(2, code, out .. err)
    assert.matches("%(owner root %(uid 0%), on the search path from the working directory%) as root: "
      .. "/home/alice/proj is owned by alice %(uid %d+%), not by root or the invoking user", err)
    -- a template alice can write is refused the same way
    put("/root/w2c/templates/x/a.conf", "x\n", "alice:alice")
    out, code, err = phanes("/root/w2c", "list")
    assert.equal(2, code, out .. err)
    assert.matches("refusing %./templates/x/a%.conf = .* %(owner alice", err)
    assert.equal("no", pwned())
  end)

  it("loads a root-owned module from ./modules and names its path in list and in the header", function()
    put("/root/w3/modules/hello3.lua", [[
return { name = "hello3", description = "a local module", apply = function(ctx)
  ctx.file.content { path = "/root/w3/out", content = "hi\n", mode = "0644" }
end }
]])
    put("/root/w3/templates/hello3/x.conf", "x\n")
    local out, code, err = phanes("/root/w3", "list")
    assert.equal(0, code, out .. err)
    assert.matches("hello3%s+a local module%s+%./modules/hello3%.lua", out)
    assert.matches("templates/hello3/x%.conf%s+%./templates/hello3/x%.conf", out)
    out, code, err = phanes("/root/w3", "list --json")
    assert.equal(0, code, out .. err)
    local list = require("phanes.json").decode(out)
    assert.same({ { name = "templates/hello3/x.conf", origin = "./templates/hello3/x.conf" } }, list.files)
    out, code, err = phanes("/root/w3", "apply hello3 --color=never")
    assert.equal(0, code, out .. err)
    assert.matches("applying hello3 %(1 module, %./modules/hello3%.lua%)\n  not from the binary: "
      .. "%./modules/hello3%.lua, %./templates/hello3/x%.conf\n", out)
    assert.equal("hi\n", sh "cat /root/w3/out")
  end)

  it("takes the engine from --path only, and refuses a --path others can write", function()
    -- a copy of the embedded output.lua, marked, on an explicit --path: used, and named
    local text = require("phanes.embedded").get "lua/phanes/engine/output.lua"
    put("/root/eng/lua/phanes/engine/output.lua", "io.stderr:write('engine from --path\\n')\n" .. text)
    local out, code, err = phanes("/root", "list --path /root/eng")
    assert.equal(0, code, out .. err)
    assert.matches("engine from %-%-path", err)
    assert.matches("lua/phanes/engine/output%.lua%s+/root/eng/lua/phanes/engine/output%.lua", out)
    out, code, err = phanes("/root", "list", "PHANES_PATH=/root/eng")
    assert.equal(0, code, out .. err)
    assert.matches("engine from %-%-path", err)

    -- world-writable --path: refused even before it holds anything
    sh "mkdir -p /root/ww && chmod 0777 /root/ww"
    out, code, err = phanes("/root", "list --path /root/ww")
    assert.equal(2, code, out .. err)
    assert.equal("phanes: refusing /root/ww (owner root (uid 0), on the search path from --path) as root: /root/ww is "
      .. "world-writable (mode 0777, owner root (uid 0)); if you trust it: chmod go-w /root/ww (as root, phanes "
      .. "loads only what nobody but root and the invoking user can change, in directories likewise, like OpenSSH's "
      .. "StrictModes)\n", err)
    -- and a planted engine in it never runs
    put("/root/ww/lua/phanes/cli.lua", PAYLOAD .. "return {}\n", "alice:alice")
    out, code, err = phanes("/root", "status", "PHANES_PATH=/root/ww")
    assert.equal(2, code, out .. err)
    out, code, err = phanes("/root", "status --path /tmp")
    assert.equal(2, code, out .. err)
    assert.matches("/tmp is world%-writable %(mode 1777", err)
    assert.equal("no", pwned())
  end)

  it("phanes lua and apply FILE refuse a file others can write, or one under /tmp", function()
    put("/tmp/x.lua", PAYLOAD, "root:root", "0666")
    local out, code, err = phanes("/root", "lua /tmp/x.lua")
    assert.equal(2, code, out .. err)
    assert.matches("^phanes lua: refusing /tmp/x%.lua %(owner root %(uid 0%)%) as root: /tmp/x%.lua is world%-writable", err)
    sh "chmod 0644 /tmp/x.lua"
    out, code, err = phanes("/root", "lua /tmp/x.lua")
    assert.equal(2, code, out .. err)
    assert.matches("as root: /tmp is world%-writable %(mode 1777, owner root %(uid 0%)%); move it", err)
    put("/root/alice.lua", PAYLOAD, "alice:alice")
    out, code, err = phanes("/root", "lua /root/alice.lua")
    assert.equal(2, code, out .. err)
    assert.matches("/root/alice%.lua is owned by alice", err)
    -- a profile or module file named on the command line: the same rule
    out, code, err = phanes("/root", "apply /tmp/x.lua --dry-run")
    assert.equal(2, code, out .. err)
    assert.matches("^phanes: refusing /tmp/x%.lua %(owner root %(uid 0%)%) as root: /tmp is world%-writable", err)
    out, code, err = phanes("/root", "apply /root/alice.lua --dry-run")
    assert.equal(2, code, out .. err)
    assert.matches("/root/alice%.lua is owned by alice", err)
    assert.equal("no", pwned())
    -- a root-owned script in a root-owned directory runs
    put("/root/ok.lua", "#!/usr/local/bin/phanes lua\nio.write(require('phanes.sys').geteuid(), ' ', ...)\n")
    out, code, err = phanes("/root", "lua /root/ok.lua arg1")
    assert.equal(0, code, out .. err)
    assert.equal("0 arg1", out)
  end)
end)
