-- The test-host harness itself: two hosts boot, answer ssh, are isolated
-- from this machine, and `down` leaves nothing behind.
-- Run as root:  busted spec/integration/hosts_spec.lua
local th = require "spec.support.testhost"

local function sh(cmd) return th.run(cmd) end

local function pid_alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return false end
  local stat = f:read("a"); f:close()
  local state = stat:match("%) (%a)")
  return state ~= "Z" and state ~= "X"
end

describe("test hosts", function()
  local avail, why = th.available()
  if not avail then
    pending("skipped: " .. why)
    return
  end

  local hosts
  setup(function() hosts = th.up(2) end)
  teardown(function() th.down() end)

  it("boots two hosts, each with its own address", function()
    assert.equal(2, #hosts)
    assert.equal("th1", hosts[1].name)
    assert.equal(th.ip(1), hosts[1].ip)
    assert.equal(th.ip(2), hosts[2].ip)
    assert.not_equal(hosts[1].ip, hosts[2].ip)
    for _, h in ipairs(th.ls()) do assert.equal("up", h.state) end
  end)

  it("answers ssh as root with the harness key", function()
    for i = 1, 2 do
      local ok, out = sh("ssh -i " .. th.quote(th.key()) ..
        " -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR root@" ..
        th.ip(i) .. " 'hostname; id -u' </dev/null")
      assert.is_true(ok, out)
      assert.equal("th" .. i .. "\n0\n", out)
    end
  end)

  it("runs systemd as PID 1, running or degraded", function()
    for i = 1, 2 do
      local _, out = th.exec(i, "systemctl is-system-running")
      assert.matches("^%s*(%a+)%s*$", out)
      local st = out:match("%a+")
      assert.is_true(st == "running" or st == "degraded", "host " .. i .. ": " .. out)
      local ok, comm = th.exec(i, "cat /proc/1/comm")
      assert.is_true(ok); assert.equal("systemd\n", comm)
    end
  end)

  it("gives each host its own ssh host key", function()
    local _, k1 = th.exec(1, "cat /etc/ssh/ssh_host_ed25519_key.pub")
    local _, k2 = th.exec(2, "cat /etc/ssh/ssh_host_ed25519_key.pub")
    assert.matches("^ssh%-ed25519 ", k1)
    assert.not_equal(k1:match("^%S+ %S+"), k2:match("^%S+ %S+"))
  end)

  it("returns the exit code of a command run inside", function()
    local ok, out, code = th.exec(1, "echo hi; exit 7")
    assert.is_false(ok); assert.equal(7, code); assert.equal("hi\n", out)
    ok, out, code = th.exec(1, { "printf", "%s|", "a b", "c" })
    assert.is_true(ok); assert.equal(0, code); assert.equal("a b|c|", out)
  end)

  it("runs apt-get update through the proxy, and has no other way out", function()
    local ok, out = th.exec(1, "apt-get update")
    assert.is_true(ok, out)
    assert.matches("deb%.debian%.org", out)
    local _, routes = th.exec(1, "ip -4 route")
    assert.not_matches("default", routes)
  end)

  it("has /proc/sys read-only (net.* stays per host)", function()
    local ok, out = th.exec(1, "echo 1 > /proc/sys/vm/swappiness")
    assert.is_false(ok)
    assert.matches("Read%-only file system", out)
    ok, out = th.exec(1, "swapon --show; echo 1 > /proc/sys/net/ipv4/conf/eth0/forwarding && cat /proc/sys/net/ipv4/conf/eth0/forwarding")
    assert.is_true(ok, out)
    -- the machine's own setting for the bridge was not touched
    local f = assert(io.open("/proc/sys/net/ipv4/conf/" .. th.bridge() .. "/forwarding"))
    local mine = f:read("l"); f:close()
    assert.equal("0", mine)
  end)

  it("keeps changes inside the host (files, links, firewall)", function()
    local marker = "/etc/phanes-test-marker-" .. os.time()
    assert.is_true((th.exec(1, "echo inside > " .. marker)))
    assert.is_nil(io.open(marker))
    local ok2 = th.exec(2, "test -e " .. marker)
    assert.is_false(ok2)
    -- a network interface made inside exists only there
    assert.is_true((th.exec(1, "ip link add phanesdummy0 type veth peer name phanesdummy1")))
    local _, links = sh("ip -o link show")
    assert.not_matches("phanesdummy0", links)
    -- ufw inside changes the host's firewall, not this machine's
    local ok, out = th.exec(1, "DEBIAN_FRONTEND=noninteractive apt-get install -y -q ufw")
    assert.is_true(ok, out)
    local merged = th.run_dir() .. "/hosts/1/merged"
    -- this machine's ruleset, read with the host's own iptables binary (no change made)
    local _, before = sh("chroot " .. th.quote(merged) .. " iptables-save")
    ok, out = th.exec(1, "ufw allow 22/tcp >/dev/null && ufw --force enable && ufw status")
    assert.is_true(ok, out)
    assert.matches("Status: active", out)
    local _, inside = th.exec(1, "iptables-save")
    assert.matches("ufw%-", inside)
    local _, after = sh("chroot " .. th.quote(merged) .. " iptables-save")
    assert.not_matches("ufw%-", after)
    assert.equal(before:gsub("#[^\n]*\n", ""), after:gsub("#[^\n]*\n", ""))
  end)

  it("has deploy with passwordless sudo and alice with password sudo", function()
    local ok, out = th.ssh(1, "sudo -n id -u", "deploy")
    assert.is_true(ok, out); assert.equal("0\n", out)
    ok, out = th.ssh(1, "sudo -n id -u", "alice")
    assert.is_false(ok); assert.matches("password is required", out)
    ok, out = th.ssh(1, "echo " .. th.quote(th.password()) .. " | sudo -S -p '' id -u", "alice")
    assert.is_true(ok, out); assert.equal("0\n", out)
    ok, out = th.ssh(1, "echo wrong | sudo -S -p '' id -u", "alice")
    assert.is_false(ok)
  end)

  it("copies files into a host", function()
    local tmp = os.tmpname()
    local f = assert(io.open(tmp, "w")); f:write("hello host\n"); f:close()
    os.execute("chmod 755 " .. tmp)
    assert.is_true(th.cp(2, tmp, "/usr/local/bin/hello"))
    os.remove(tmp)
    local ok, out = th.exec(2, "cat /usr/local/bin/hello; stat -c %a /usr/local/bin/hello")
    assert.is_true(ok, out); assert.equal("hello host\n755\n", out)
  end)

  it("tears everything down and leaves nothing behind", function()
    local env = th.env()
    local run_dir = env.RUN
    local pids = {}
    for _, h in ipairs(th.ls()) do pids[#pids + 1] = h.pid end
    local f = io.open(run_dir .. "/acng/pid")
    if f then pids[#pids + 1] = tonumber(f:read("a"):match("%d+")); f:close() end
    assert.equal(3, #pids)
    local port = env.PROXY:match(":(%d+)$")

    th.down()

    for _, pid in ipairs(pids) do assert.is_false(pid_alive(pid), "process " .. pid .. " still alive") end
    local function lit(x) return (x:gsub("%p", "%%%0")) end
    local _, mounts = sh("findmnt -rn -o TARGET")
    assert.not_matches(lit(run_dir), mounts)
    local _, netns = sh("ip netns list")
    assert.not_matches("^" .. lit(env.NETNS_PREFIX), netns)
    assert.not_matches("\n" .. lit(env.NETNS_PREFIX), netns)
    local _, links = sh("ip -o link show")
    assert.not_matches(": " .. lit(env.VETH_PREFIX) .. "%d", links)
    assert.not_matches(": " .. lit(env.BRIDGE) .. ":", links)
    local _, addrs = sh("ip -o -4 addr show")
    local netp = env.NET:match("^(%d+%.%d+%.%d+)%.")
    assert.not_matches(" " .. lit(netp) .. "%.", addrs)
    assert.is_nil(io.open(run_dir))
    local _, cg = sh("find /sys/fs/cgroup -maxdepth 6 -name " .. env.CGROUP)
    assert.equal("", cg)
    local _, listen = sh("ss -ltnH")
    assert.not_matches(lit(netp) .. "%.1:" .. port .. " ", listen)
  end)

  it("boots a host that failed to boot once more before giving up", function()
    local ok, out = th.run("PHANES_TEST_BREAK_BOOT=1 " .. th.quote(th.script) .. " up 1")
    assert.is_true(ok, out)
    assert.matches("host 1 failed to boot; removing it and booting it once more", out, 1, true)
    local _, state = th.exec(1, "systemctl is-system-running")
    th.down()
    assert.truthy(state:match "^running" or state:match "^degraded", state)
  end)
end)
