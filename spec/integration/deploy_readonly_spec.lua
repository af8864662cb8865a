-- phanes deploy on one disposable test host: --list and --rollback read
-- (on a fresh host they make neither the deploy user nor a directory), and
-- a deploy while another holds the site's lock stops with exit 75 and
-- changes nothing. Every check looks at the host.
local th = require "spec.support.testhost"

local runcli = require "spec.support.runcli"
local on = require "spec.support.onhost"

local q = th.quote
local write, host = runcli.write, on.host

local SITE = "/srv/phanes/sites/blog"

describe("phanes deploy, read-only and locked", function()
  local ok_hosts, why = th.available()
  if not ok_hosts then
    pending(why)
    return
  end
  local home, key, target, src, run
  -- what a deploy leaves on a host: the user, the directories, every file under /srv
  local function footprint()
    local _, out = host("getent passwd phanes-deploy; getent group phanes-deploy; "
      .. "find /srv -printf '%p %u %m %y\\n' 2>/dev/null | sort")
    return out
  end

  setup(function()
    th.up(1)
    key = th.key()
    target = "deploy@" .. th.ip(1)
    home = require("spec.support.fakeexec").tmpdir()
    -- run(words): `phanes deploy WORDS` to host 1 as deploy, site blog
    run = runcli.deployer(home, target, key, "blog")
    src = home .. "/site"
    assert(os.execute("mkdir -p " .. q(src)))
    write(src .. "/index.html", "<h1>v1</h1>\n")
  end)
  teardown(function()
    th.down()
    if home then os.execute("rm -rf " .. q(home)) end
  end)

  it("--list and --rollback on a fresh host make no user and no directory", function()
    local before = footprint()
    assert.is_nil(before:find("phanes-deploy", 1, true))
    local code, out = run { "--list" }
    assert.equal(0, code, out)
    assert.matches("site blog: no releases", out, 1, true)
    code, out = run { "--rollback" }
    assert.equal(4, code, out)
    assert.matches("site blog has no releases", out, 1, true)
    code, out = run { "--rollback", "--to", "20260102T030405Z-1a2b3c4d" }
    assert.equal(4, code, out)
    assert.equal(before, footprint())
    local ok = host("id phanes-deploy")
    assert.is_false(ok)
  end)

  it("a deploy while another holds the site's lock: exit 75, the message names the lock, nothing changed", function()
    local code, out = run { src }
    assert.equal(0, code, out)
    local _, first = host("readlink " .. SITE .. "/current")
    write(src .. "/index.html", "<h1>v2</h1>\n")
    -- another deploy, as the host sees it: the lock held by a process there
    assert(host("setsid runuser -u phanes-deploy -- flock " .. SITE .. "/.lock sleep 121 >/dev/null 2>&1 < /dev/null & "
      .. "for i in $(seq 50); do flock -n " .. SITE .. "/.lock true || break; sleep 0.1; done"))
    local before = footprint()
    local t0 = os.time()
    code, out = run { src }
    assert.equal(75, code, out)
    assert.matches("another deploy of site blog holds its lock " .. SITE .. "/.lock (waited 30s): try again when it is done",
      out, 1, true)
    assert.is_true(os.time() - t0 >= 29)
    assert.equal(before, footprint())
    local _, now = host("readlink " .. SITE .. "/current; cat " .. SITE .. "/current/index.html")
    assert.equal(first .. "\n<h1>v1</h1>", now)
    -- the lock gone, the same deploy goes through
    assert(host("pkill -f 'sleep 12[1]'; sleep 0.2; flock -n " .. SITE .. "/.lock true"))
    code, out = run { src }
    assert.equal(0, code, out)
    local _, served = host("cat " .. SITE .. "/current/index.html")
    assert.equal("<h1>v2</h1>", served)
  end)
end)
