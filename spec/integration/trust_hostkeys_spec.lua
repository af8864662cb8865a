-- Host keys by OpenSSH's rules, against real sshd on a test host: one
-- sshd on 22 (every key type), one on 2222 offering only its ed25519 key,
-- one on 2223 offering only its ecdsa key. Each case plants a known_hosts
-- or ssh_config, runs phanes, and then looks at the files: what must stay
-- unchanged is compared byte for byte.
local th = require "spec.support.testhost"
local q = th.quote

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>/dev/null"))
  local out = p:read "a"
  p:close()
  return out
end

local runcli = require "spec.support.runcli"
local BIN = th.bin()

local read, write, phanes = th.read, runcli.write, runcli.at_home

local function lit(s) return (s:gsub("%p", "%%%0")) end

describe("host keys", function()
  local ok_hosts, why = th.available()
  if not ok_hosts then
    pending(why)
    return
  end
  local ip, key, fp, pub, homes = nil, nil, {}, {}, {}

  -- phanes ARGS with HOME = home; returns exit code, output (both streams)

  local function home()
    local h = sh("mktemp -d"):gsub("%s+$", "")
    homes[#homes + 1] = h
    assert(os.execute("mkdir -m 700 " .. q(h .. "/.ssh")))
    return h
  end

  -- a run over SSH: --remote TARGET --key KEY version, plus more words
  local function version(h, target, ...)
    local args = { "--remote", target, "--key", key, ... }
    args[#args + 1] = "version"
    return phanes(h, args)
  end

  local function fake_key()
    local d = home()
    assert(os.execute("ssh-keygen -q -t ed25519 -N '' -f " .. q(d .. "/k") .. " >/dev/null"))
    return (read(d .. "/k.pub"):match "^%S+ (%S+)")
  end

  setup(function()
    th.up(1)
    ip, key = th.ip(1), th.key()
    local ok, out = th.exec(1, "/usr/sbin/sshd -p 2222 -o HostKey=/etc/ssh/ssh_host_ed25519_key -o PidFile=/run/sshd-2222.pid"
      .. " && /usr/sbin/sshd -p 2223 -o HostKey=/etc/ssh/ssh_host_ecdsa_key -o PidFile=/run/sshd-2223.pid")
    assert(ok, out)
    for _, t in ipairs { "ed25519", "ecdsa" } do
      local _, text = th.exec(1, { "cat", "/etc/ssh/ssh_host_" .. t .. "_key.pub" })
      pub[t] = text:match "^(%S+ %S+)"
      local _, l = th.exec(1, { "ssh-keygen", "-lf", "/etc/ssh/ssh_host_" .. t .. "_key.pub" })
      fp[t] = l:match "(SHA256:%S+)"
      assert(pub[t] and fp[t], text .. l)
    end
  end)

  teardown(function()
    th.down()
    for _, h in ipairs(homes) do os.execute("rm -rf " .. q(h)) end
  end)

  it("records an unknown host once (accept-new), under [host]:port for another port", function()
    local h = home()
    local code, out = version(h, "root@" .. ip, "--port", "2222")
    assert.equal(0, code, out)
    assert.matches("recorded the host key of " .. lit(ip) .. ":2222 %(ssh%-ed25519 " .. lit(fp.ed25519) .. "%)", out)
    local kh = read(h .. "/.ssh/known_hosts")
    assert.equal("[" .. ip .. "]:2222 " .. pub.ed25519 .. "\n", kh)
    code, out = version(h, "root@" .. ip, "--port", "2222")
    assert.equal(0, code, out)
    assert.equal(kh, read(h .. "/.ssh/known_hosts"))
  end)

  it("refuses a host known only by its ecdsa key that offers only ed25519: both fingerprints, file:line, exit 3", function()
    local h = home()
    local kh = "# known\n[" .. ip .. "]:2222 " .. pub.ecdsa .. "\n"
    write(h .. "/.ssh/known_hosts", kh)
    local code, out = version(h, "root@" .. ip .. ":2222")
    assert.equal(3, code, out)
    assert.matches("REMOTE HOST IDENTIFICATION HAS CHANGED", out)
    assert.matches(lit(h .. "/.ssh/known_hosts:2") .. " records ecdsa%-sha2%-nistp256 " .. lit(fp.ecdsa), out)
    assert.matches("the server offers ssh%-ed25519 " .. lit(fp.ed25519), out)
    assert.equal(kh, read(h .. "/.ssh/known_hosts"))
    -- the same known_hosts on a port whose sshd also has the ecdsa key: it is asked for, and passes
    write(h .. "/.ssh/known_hosts", ip .. " " .. pub.ecdsa .. "\n")
    code, out = version(h, "root@" .. ip)
    assert.equal(0, code, out)
    assert.equal(ip .. " " .. pub.ecdsa .. "\n", read(h .. "/.ssh/known_hosts"))
  end)

  it("refuses another key of the same type, naming both fingerprints", function()
    local h = home()
    local kh = "[" .. ip .. "]:2222 ssh-ed25519 " .. fake_key() .. "\n"
    write(h .. "/.ssh/known_hosts", kh)
    local code, out = version(h, "root@" .. ip .. ":2222")
    assert.equal(3, code, out)
    assert.matches("host key has CHANGED: " .. lit(h .. "/.ssh/known_hosts:1") .. " records ssh%-ed25519 SHA256:%S+ for "
      .. lit("[" .. ip .. "]:2222") .. ", the server offers ssh%-ed25519 " .. lit(fp.ed25519), out)
    assert.equal(kh, read(h .. "/.ssh/known_hosts"))
  end)

  it("refuses a @revoked key even when a plain line knows it", function()
    local h = home()
    local kh = "[" .. ip .. "]:2222 " .. pub.ed25519 .. "\n@revoked * " .. pub.ed25519 .. "\n"
    write(h .. "/.ssh/known_hosts", kh)
    local code, out = version(h, "root@" .. ip .. ":2222")
    assert.equal(3, code, out)
    assert.matches("host key ssh%-ed25519 " .. lit(fp.ed25519) .. " is REVOKED %(@revoked at "
      .. lit(h .. "/.ssh/known_hosts:2") .. "%)", out)
    assert.equal(kh, read(h .. "/.ssh/known_hosts"))
  end)

  it("refuses a host known only through @cert-authority, saying how to add its key", function()
    local h = home()
    local kh = "@cert-authority [" .. ip .. "]:* ssh-ed25519 " .. fake_key() .. "\n"
    write(h .. "/.ssh/known_hosts", kh)
    local code, out = version(h, "root@" .. ip .. ":2222")
    assert.equal(3, code, out)
    assert.matches("known only through a @cert%-authority line %(" .. lit(h .. "/.ssh/known_hosts:1")
      .. "%), and phanes does not support host certificates", out)
    assert.matches("`ssh%-keyscan %-p 2222 %-t ssh%-ed25519 " .. lit(ip) .. " >> " .. lit(h .. "/.ssh/known_hosts") .. "`", out)
    assert.equal(kh, read(h .. "/.ssh/known_hosts"))
  end)

  it("matches names hashed by ssh-keygen -H", function()
    local h = home()
    write(h .. "/.ssh/known_hosts", "[" .. ip .. "]:2222 " .. pub.ed25519 .. "\n" .. ip .. " ssh-ed25519 " .. fake_key() .. "\n")
    assert(os.execute("ssh-keygen -q -H -f " .. q(h .. "/.ssh/known_hosts") .. " >/dev/null 2>&1"))
    local kh = read(h .. "/.ssh/known_hosts")
    assert.matches("^|1|", kh)
    local code, out = version(h, "root@" .. ip .. ":2222")
    assert.equal(0, code, out)
    assert.equal(kh, read(h .. "/.ssh/known_hosts"))
    code, out = version(h, "root@" .. ip)
    assert.equal(3, code, out)
    assert.matches("host key has CHANGED: " .. lit(h .. "/.ssh/known_hosts:2"), out)
    assert.equal(kh, read(h .. "/.ssh/known_hosts"))
  end)

  it("records a hashed name under HashKnownHosts yes, which OpenSSH's ssh-keygen -F finds", function()
    local h = home()
    write(h .. "/.ssh/config", "HashKnownHosts yes\n")
    local code, out = version(h, "root@" .. ip .. ":2222")
    assert.equal(0, code, out)
    local kh = read(h .. "/.ssh/known_hosts")
    assert.matches("^|1|[%w+/]+=*|[%w+/]+=* " .. lit(pub.ed25519) .. "\n$", kh)
    assert.is_nil(kh:find(ip, 1, true))
    assert.matches(lit(pub.ed25519), sh("ssh-keygen -F " .. q("[" .. ip .. "]:2222") .. " -f " .. q(h .. "/.ssh/known_hosts")))
    code, out = version(h, "root@" .. ip .. ":2222")
    assert.equal(0, code, out)
    assert.equal(kh, read(h .. "/.ssh/known_hosts"))
  end)

  it("reads the global known hosts (read-only): GlobalKnownHostsFile here, /etc/ssh/ssh_known_hosts on the host", function()
    local h = home()
    write(h .. "/global", "[" .. ip .. "]:2222 " .. pub.ed25519 .. "\n")
    write(h .. "/.ssh/config", "GlobalKnownHostsFile ~/global\n")
    local code, out = version(h, "root@" .. ip .. ":2222")
    assert.equal(0, code, out)
    assert.is_nil(read(h .. "/.ssh/known_hosts"))
    local global = "[" .. ip .. "]:2223 " .. pub.ed25519 .. "\n"
    write(h .. "/global", global)
    code, out = version(h, "root@" .. ip .. ":2223")
    assert.equal(3, code, out)
    assert.matches(lit(h .. "/global:1") .. " records ssh%-ed25519 " .. lit(fp.ed25519), out)
    assert.equal(global, read(h .. "/global"))
    assert.is_nil(read(h .. "/.ssh/known_hosts"))
    -- the default global file, on the test host itself (this machine's /etc is not ours)
    assert(th.cp(1, BIN, "/usr/local/bin/phanes"))
    assert(th.cp(1, key, "/root/test_key"))
    local ok, msg = th.exec(1, "chmod 600 /root/test_key; rm -f /root/.ssh/known_hosts /root/.ssh/known_hosts2;"
      .. " echo '[127.0.0.1]:2223 " .. pub.ed25519 .. "' > /etc/ssh/ssh_known_hosts")
    assert(ok, msg)
    local _, o2, c2 = th.exec(1, "HOME=/root SSH_AUTH_SOCK= phanes host test root@127.0.0.1:2223 --key /root/test_key")
    assert.equal(3, c2, o2)
    assert.matches(lit("/etc/ssh/ssh_known_hosts:1") .. " records ssh%-ed25519", o2)
    -- 2222 is new there: recorded in the user's file, never in the global one
    _, o2, c2 = th.exec(1, "HOME=/root SSH_AUTH_SOCK= phanes host test root@127.0.0.1:2222 --key /root/test_key")
    assert.equal(0, c2, o2)
    local _, files = th.exec(1, "cat /etc/ssh/ssh_known_hosts; echo --; cat /root/.ssh/known_hosts")
    assert.equal("[127.0.0.1]:2223 " .. pub.ed25519 .. "\n--\n[127.0.0.1]:2222 " .. pub.ed25519 .. "\n", files)
  end)

  it("honours StrictHostKeyChecking and UserKnownHostsFile from ~/.ssh/config", function()
    local h = home()
    write(h .. "/.ssh/config", "Host " .. ip .. "\n  StrictHostKeyChecking yes\n")
    local code, out = version(h, "root@" .. ip .. ":2222")
    assert.equal(3, code, out)
    assert.matches("host key not known %(ssh%-ed25519 " .. lit(fp.ed25519) .. "%)", out)
    assert.matches("StrictHostKeyChecking yes at " .. lit(h .. "/.ssh/config:2"), out)
    assert.is_nil(read(h .. "/.ssh/known_hosts"))
    -- ask: nobody to ask, so as yes
    write(h .. "/.ssh/config", "StrictHostKeyChecking ask\n")
    code, out = version(h, "root@" .. ip .. ":2222")
    assert.equal(3, code, out)
    assert.is_nil(read(h .. "/.ssh/known_hosts"))
    -- no: recorded (a changed key is still refused)
    write(h .. "/.ssh/config", "StrictHostKeyChecking no\n")
    code, out = version(h, "root@" .. ip .. ":2222")
    assert.equal(0, code, out)
    assert.equal("[" .. ip .. "]:2222 " .. pub.ed25519 .. "\n", read(h .. "/.ssh/known_hosts"))
    -- several files, ~ expanded: a key in the second passes, a new one goes to the first
    write(h .. "/.ssh/config", "UserKnownHostsFile ~/kh1 ~/kh2\n")
    write(h .. "/kh2", "[" .. ip .. "]:2223 " .. pub.ecdsa .. "\n")
    code, out = version(h, "root@" .. ip .. ":2223")
    assert.equal(0, code, out)
    assert.is_nil(read(h .. "/kh1"))
    code, out = version(h, "root@" .. ip .. ":2222")
    assert.equal(0, code, out)
    assert.equal("[" .. ip .. "]:2222 " .. pub.ed25519 .. "\n", read(h .. "/kh1"))
    assert.equal("[" .. ip .. "]:2223 " .. pub.ecdsa .. "\n", read(h .. "/kh2"))
    -- a bad value is a config error naming the line
    write(h .. "/.ssh/config", "\nStrictHostKeyChecking maybe\n")
    code, out = version(h, "root@" .. ip .. ":2222")
    assert.equal(2, code, out)
    assert.matches(lit(h .. "/.ssh/config:2") .. ": StrictHostKeyChecking: expected", out)
  end)

  it("asks on a terminal for StrictHostKeyChecking ask, and records only the key it showed", function()
    local h = home()
    write(h .. "/.ssh/config", "StrictHostKeyChecking ask\n")
    local function on_tty(answer)
      local cmd = runcli.at_home_command(h, { "--remote", "root@" .. ip, "--port", "2222", "--key", key, "version" })
      local p = assert(io.popen("printf '" .. answer .. "\\n' | script -qec " .. q(cmd) .. " /dev/null 2>&1"))
      local out = p:read "a"
      local _, _, code = p:close()
      return code, out
    end
    local code, out = on_tty("no")
    assert.equal(3, code, out)
    assert.matches("The authenticity of host '%[" .. lit(ip) .. "%]:2222' can't be established%.", out)
    assert.matches("ssh%-ed25519 key fingerprint is " .. lit(fp.ed25519), out)
    assert.matches("not accepted at the StrictHostKeyChecking ask question", out)
    assert.is_nil(read(h .. "/.ssh/known_hosts"))
    code, out = on_tty("yes")
    assert.equal(0, code, out)
    assert.equal("[" .. ip .. "]:2222 " .. pub.ed25519 .. "\n", read(h .. "/.ssh/known_hosts"))
  end)

  it("looks the key up under HostKeyAlias", function()
    local h = home()
    write(h .. "/.ssh/config", "Host th\n  HostName " .. ip .. "\n  Port 2222\n  HostKeyAlias the-box\n")
    write(h .. "/.ssh/known_hosts", "the-box " .. pub.ed25519 .. "\n")
    local code, out = version(h, "root@th")
    assert.equal(0, code, out)
    assert.equal("the-box " .. pub.ed25519 .. "\n", read(h .. "/.ssh/known_hosts"))
    local kh = "the-box " .. pub.ecdsa .. "\n"
    write(h .. "/.ssh/known_hosts", kh)
    code, out = version(h, "root@th")
    assert.equal(3, code, out)
    assert.matches("records ecdsa%-sha2%-nistp256 " .. lit(fp.ecdsa) .. " for the%-box, the server offers ssh%-ed25519", out)
    assert.equal(kh, read(h .. "/.ssh/known_hosts"))
  end)

  it("takes the port from --port, then the target, the inventory, ssh_config's Port, 22", function()
    local h = home()
    write(h .. "/.ssh/config", "Host th\n  HostName " .. ip .. "\n  Port 2223\n")
    local function port_used(target, ...)
      os.remove(h .. "/.ssh/known_hosts")
      local code, out = version(h, target, ...)
      assert.equal(0, code, out)
      local kh = read(h .. "/.ssh/known_hosts") or ""
      return kh:match "^%[[^%]]+%]:(%d+) " or (kh:match "^%S+ " and "22")
    end
    assert.equal("2223", port_used("root@th"))
    assert.equal("2222", port_used("root@th:2222"))
    assert.equal("22", port_used("root@th:2222", "--port", "22"))
    local code, out = phanes(h, { "host", "add", "box", "root@th:2222" })
    assert.equal(0, code, out)
    assert.equal("2222", port_used("box"))
    assert.equal("22", port_used("box:22"))
    assert.equal("2223", port_used("box", "--port", "2223"))
    assert.equal(2223, runcli.record(h, "box").port)
    -- host test takes the same options
    os.remove(h .. "/.ssh/known_hosts")
    code, out = phanes(h, { "host", "test", "box", "--key", key, "--port", "2223", "--known-hosts", h .. "/kh-test" })
    assert.equal(0, code, out)
    assert.matches("box: ok in .*:2223 ", out)
    assert.equal("[" .. ip .. "]:2223 " .. pub.ecdsa .. "\n", read(h .. "/kh-test"))
    assert.is_nil(read(h .. "/.ssh/known_hosts"))
    code, out = phanes(h, { "host", "test", "box", "--key", key, "--strict-host-keys" })
    assert.equal(3, code, out)
    assert.matches("host key not known", out)
    code, out = version(h, "box", "--port", "70000")
    assert.equal(2, code, out)
    assert.matches("%-%-port: expected a port number from 1 to 65535, got '70000'", out)
  end)

  it("refuses ProxyJump and ProxyCommand naming the file and line, and connects nowhere", function()
    local h = home()
    write(h .. "/.ssh/config", "Host th\n  HostName " .. ip .. "\n  ProxyJump root@" .. ip .. "\n")
    local code, out = version(h, "root@th")
    assert.equal(2, code, out)
    assert.matches(lit(h .. "/.ssh/config:3") .. ": ProxyJump root@" .. lit(ip) .. ": phanes connects directly", out)
    write(h .. "/.ssh/config", "Match all\n  ProxyCommand nc %h %p\nHost th\n  HostName " .. ip .. "\n")
    code, out = version(h, "root@th")
    assert.equal(2, code, out)
    assert.matches(lit(h .. "/.ssh/config:2") .. ": ProxyCommand nc %%h %%p %(in a Match block", out)
    assert.is_nil(read(h .. "/.ssh/known_hosts"))
  end)
end)
