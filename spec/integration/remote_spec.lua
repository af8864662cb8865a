-- Remote execution end to end, on disposable test hosts: phanes run over
-- SSH as root, as a passwordless sudo user and as a password sudo user; the
-- binary cached after the first run; a fleet with one host gone; every
-- connection failure with its message and exit code. Checks look at the
-- hosts and at the controller's records, not only at phanes' own words.
local th = require "spec.support.testhost"
local runcli = require "spec.support.runcli"

local BIN = th.bin()

local read, write = th.read, runcli.write

local q = th.quote

-- phanes(home, args[, opts]) -> exit code, output (both streams, or stdout
-- and stderr apart with opts.stderr): phanes ARGS with HOME = home
local phanes = runcli.at_home

-- not under /tmp: as root, phanes refuses a --path under a world-writable directory
local new_home, record = runcli.tmpdir, runcli.record

describe("remote execution", function()
  local ok_hosts, why = th.available()
  if not ok_hosts then
    pending(why)
    return
  end
  local key, homes = nil, {}
  local function home()
    local h = new_home()
    homes[#homes + 1] = h
    return h
  end
  setup(function()
    th.up(5)
    key = th.key()
  end)
  teardown(function()
    th.down()
    for _, h in ipairs(homes) do os.execute("rm -rf " .. q(h)) end
  end)

  -- What the target runs: the baseline module (timezone, locale, apt cache,
  -- essential packages), which leaves a state file to compare and nothing
  -- that could lock the next test out.
  local function work(h)
    write(h .. "/config.yaml", "timezone: UTC\nlocale: C.UTF-8\n")
    return { "--modules", "baseline", "--config", h .. "/config.yaml" }
  end

  -- The target's state file, decoded; nil when there is none.
  local function target_state(i)
    local ok, out = th.exec(i, "cat /var/lib/phanes/state.json")
    if not ok then return nil end
    return assert(require("phanes.json").decode(out), "state file is not valid JSON:\n" .. out)
  end

  for _, user in ipairs { "root", "deploy", "alice" } do
    it("runs phanes on the target as " .. user .. ", uploading the binary once", function()
      local h = home()
      local target = user .. "@" .. th.ip(1)
      local pw = { env = "ALICE_PW=" .. q(th.password()) }
      local args = { "--remote", target, "--key", key, "--password-env", "ALICE_PW" }
      for _, a in ipairs(work(h)) do args[#args + 1] = a end
      local code, out = phanes(h, args, pw)
      assert.equal(0, code, out)
      assert.matches("recorded the host key of " .. th.ip(1):gsub("%.", "%%.") .. ":22", out)
      local rec = assert(record(h, target))
      assert.equal(0, rec.exit_code)
      assert.equal(user, rec.user)
      local first_upload = rec.upload.binary
      -- the second run finds the binary cached (by sha256) and sends nothing big
      code, out = phanes(h, args, pw)
      assert.equal(0, code, out)
      rec = assert(record(h, target))
      assert.is_false(rec.upload.binary)
      assert.is_boolean(first_upload)
      -- nothing left to change, and status --remote shows the target's state file
      assert.equal(0, rec.changed, out)
      assert.equal("ok", rec.status)
      local state = assert(target_state(1))
      assert.equal("installed", state.modules.baseline.status)
      local scode, sout = phanes(h, { "--remote", target, "--key", key, "--password-env", "ALICE_PW", "status", "--json" }, pw)
      assert.equal(0, scode, sout)
      local shown = assert(require("phanes.json").decode(sout:match "%b{}"))
      assert.same(state.modules, shown.state.modules)
      -- the cache is private to the login user, and no run directory is left
      local home_dir = user == "root" and "/root" or "/home/" .. user
      local ok, listing = th.exec(1, "stat -c '%a %U' " .. home_dir .. "/.cache/phanes; ls " .. home_dir .. "/.cache/phanes")
      assert.is_true(ok, listing)
      assert.matches("^700 " .. user .. "\n", listing)
      assert.matches("phanes%-%x+\n", listing)
      assert.is_nil(listing:find("run.", 1, true), listing)
    end)
  end

  it("sends the user's own files and runs them there (and stops cleanly when the connection drops)", function()
    local h = home()
    -- a user's override of the CLI, sent with the run: on the target it
    -- prints where it came from and then works for a while
    assert(os.execute("mkdir -p " .. q(h .. "/mine/lua/phanes")))
    write(h .. "/mine/lua/phanes/cli.lua", [[
local M = {}
function M.main(argv, p)
  if p and p.opts.remote then return require("phanes.remote").main(p) end
  io.stdout:write("override running\n")
  io.stdout:flush()
  for i = 1, 20 do io.stdout:write("tick ", i, "\n") io.stdout:flush() os.execute("sleep 0.5") end
  return 0
end
return M
]])
    local target = "root@" .. th.ip(2)
    local t0 = os.time()
    -- drop the SSH session mid-run: kill the session's sshd on the target
    local killer = io.popen("sleep 3; " .. q(th.script) .. " exec 2 sh -c " .. q("pkill -f 'sshd: root@notty'") .. " 2>&1")
    local code, out = phanes(h, { "--path", h .. "/mine", "--remote", target, "--key", key, "facts" })
    killer:close()
    assert.equal(3, code, out)
    assert.matches("override running\n", out)
    assert.matches("tick 1\n", out)
    assert.matches("connection lost", out)
    assert.is_true(os.time() - t0 < 10)
    local rec = assert(record(h, target))
    assert.equal("lost", rec.status)
    assert.equal(3, rec.exit_code)
    assert.matches("tick 1", read(rec.log))
  end)

  it("status --remote shows the target's state file, read as root, via sudo -n, and via sudo with a password", function()
    local state = {
      format = 1, phanes_version = "0.1.0", updated_at = "2026-01-02T03:04:05Z", hostname = "th4",
      modules = {
        baseline = { status = "installed", installed_at = "2026-01-02T03:00:00Z", updated_at = "2026-01-02T03:04:05Z", version = "1", config_hash = "ab" },
        docker = { status = "failed", updated_at = "2026-01-02T03:04:05Z", last_error = "apt-get install docker.io: exit 100" },
      },
    }
    local json = require "phanes.json"
    local text = json.encode(state, { pretty = true })
    local ok, msg = th.exec(4, "mkdir -p /var/lib/phanes && umask 077 && cat > /var/lib/phanes/state.json", { stdin = (function()
      local p = os.tmpname()
      write(p, text)
      return p
    end)() })
    assert.is_true(ok, msg)
    local h = home()
    for _, user in ipairs { "root", "deploy", "alice" } do
      local code, out = phanes(h, { "--remote", user .. "@" .. th.ip(4), "--key", key, "--password-env", "PW", "status", "--json" },
        { env = "PW=" .. q(th.password()) })
      assert.equal(0, code, out)
      local got = assert(json.decode(out:match "%b{}"), out)
      assert.same(state.modules, got.state.modules, user)
      assert.equal(state.updated_at, got.state.updated_at)
    end
    local code, out = phanes(h, { "--remote", "root@" .. th.ip(4), "--key", key, "status" })
    assert.equal(0, code, out)
    assert.matches("baseline%s+installed%s+2026%-01%-02T03:00:00Z", out)
    assert.matches("docker: apt%-get install docker%.io: exit 100", out)
    -- several hosts: one line each; a host without state says never
    code, out = phanes(h, { "--remote", "root@" .. th.ip(4) .. ",root@" .. th.ip(3) .. ",root@" .. th.ip(1) .. ":2222",
      "--key", key, "status" })
    assert.equal(3, code, out) -- a fleet: the worst host's code (3: one unreachable), as apply's
    assert.matches("root@" .. th.ip(4):gsub("%.", "%%.") .. "%s+yes%s+1%s+1%s+2026%-01%-02T03:04:05Z", out)
    assert.matches("root@" .. th.ip(3):gsub("%.", "%%.") .. "%s+yes%s+0%s+0%s+never", out)
    assert.matches(":2222%s+no%s", out)
  end)

  it("status --remote of a fleet reads the hosts in parallel; --json is one document on stdout", function()
    local json = require "phanes.json"
    local state = { format = 1, phanes_version = "0.1.0", updated_at = "2026-03-04T05:06:07Z",
      modules = { baseline = { status = "installed", installed_at = "2026-03-04T05:06:07Z" } } }
    local p = os.tmpname()
    write(p, json.encode(state))
    local ok, msg = th.exec(4, "mkdir -p /var/lib/phanes && cat > /var/lib/phanes/state.json", { stdin = p })
    os.remove(p)
    assert.is_true(ok, msg)
    local h = home()
    assert(os.execute("mkdir -p " .. q(h .. "/.config/phanes")))
    -- a port on this machine that takes connections and never says a word:
    -- each host there waits out exactly --timeout
    local listener = assert(io.popen([[exec perl -MIO::Socket::INET -e '
      my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 0, Listen => 16) or die "listen: $!";
      $| = 1; print $$, " ", $s->sockport, "\n"; my @held; while (1) { push @held, $s->accept }']]))
    local pid, port = listener:read("l"):match "^(%d+) (%d+)$"
    assert(pid, "the silent listener did not start")
    finally(function()
      os.execute("kill " .. pid)
      listener:close()
    end)
    -- up (one with state, one without), one address that is down, two that never answer
    local gone = th.ip(1):gsub("%d+$", "250")
    local hosts = { th4 = th.ip(4), th3 = th.ip(3), gone = gone, hung1 = "127.0.0.1", hung2 = "127.0.0.1" }
    local lines = { "default: th4", "hosts:" }
    for _, name in ipairs { "th4", "th3", "gone", "hung1", "hung2" } do
      lines[#lines + 1] = string.format("  %s: { address: %s, user: root, key: %s, groups: [st]%s }", name, hosts[name], key,
        name:match "^hung" and ", port: " .. port or "")
    end
    write(h .. "/.config/phanes/inventory.yaml", table.concat(lines, "\n") .. "\n")
    local TIMEOUT = 3
    local now = require("phanes.sys").now
    -- JSON: stdout alone is the document
    local t0 = now()
    local code, out, errs = phanes(h, { "--remote", "@st", "--timeout", tostring(TIMEOUT), "status", "--json" },
      { stderr = h .. "/stderr" })
    local took = now() - t0
    assert.equal(3, code, out .. errs) -- a host unreachable
    -- the silent hosts waited out their timeouts side by side, not one after the other
    assert.is_true(took >= TIMEOUT - 0.1 and took < 2 * TIMEOUT - 0.5, "took " .. took .. "s")
    local doc = assert(json.decode(out), out)
    assert.equal(3, doc.exit_code)
    assert.same(state.modules, doc.hosts.th4.modules)
    assert.equal(state.updated_at, doc.hosts.th4.updated_at)
    assert.is_true(doc.hosts.th3.missing)
    assert.equal(3, doc.hosts.gone.exit_code)
    assert.matches(gone:gsub("%.", "%%.") .. ":22: connect: ", doc.hosts.gone.error)
    for _, name in ipairs { "hung1", "hung2" } do
      assert.equal(3, doc.hosts[name].exit_code)
      assert.matches("SSH handshake timed out", doc.hosts[name].error)
    end
    local n = 0
    for _ in pairs(doc.hosts) do n = n + 1 end
    assert.equal(5, n)
    assert.matches("th4%s+| phanes: recorded the host key", errs)
    -- the table, one host at a time with --parallel 1: the timeouts add up
    t0 = now()
    code, out = phanes(h, { "--remote", "@st", "--timeout", tostring(TIMEOUT), "--parallel", "1", "status" })
    took = now() - t0
    assert.equal(3, code, out)
    assert.is_true(took >= 2 * TIMEOUT - 0.5, "took " .. took .. "s with --parallel 1")
    assert.matches("host%s+reachable%s+modules installed%s+failed%s+last apply", out)
    assert.matches("\nth4%s+yes%s+1%s+0%s+2026%-03%-04T05:06:07Z", out)
    assert.matches("\nth3%s+yes%s+0%s+0%s+never", out)
    assert.matches("\ngone%s+no%s+%-%s+%-%s+%-", out)
    assert.matches("\nhung2%s+no%s", out)
    assert.matches("gone: " .. gone:gsub("%.", "%%.") .. ":22: connect: ", out)
  end)

  it("phanes.ssh sessions: streamed exec, stdin, signals, timeouts, SFTP, callbacks that raise, close", function()
    local ssh = require "phanes.ssh"
    local h = home()
    local s = assert(ssh.connect { host = th.ip(1), user = "root", identities = { key }, agent = false,
      known_hosts = h .. "/known_hosts" })
    local info = s:info()
    assert.equal(h .. "/known_hosts", info.hostkey_added)
    assert.matches("^SHA256:", info.hostkey_fingerprint)
    assert.equal("publickey (" .. key .. ")", info.auth)
    -- stream order within each stream, both captured, exit code
    local seen = {}
    local res = assert(s:exec("for i in 1 2 3; do echo out$i; echo err$i >&2; done; exit 7", {
      stream = function(kind, chunk) seen[kind] = (seen[kind] or "") .. chunk end }))
    assert.is_number(res.duration)
    assert.same({ code = 7, stdout = "out1\nout2\nout3\n", stderr = "err1\nerr2\nerr3\n", timed_out = false, duration = res.duration }, res)
    assert.same({ stdout = res.stdout, stderr = res.stderr }, seen)
    -- a megabyte through stdin and back
    local big = string.rep("0123456789abcdef", 65536)
    res = assert(s:exec("cat", { stdin = big }))
    assert.equal(#big, #res.stdout)
    assert.equal(big, res.stdout)
    -- killed by a signal
    res = assert(s:exec("kill -TERM $$"))
    assert.same({ 15, "TERM" }, { res.signal, res.signal_name })
    -- a time limit
    local r2, err, kind = s:exec("sleep 5", { timeout = 1 })
    assert.is_nil(r2)
    assert.equal("timeout", kind, err)
    -- a callback that raises: the error comes through, the session still works
    local ok, e = pcall(s.exec, s, "echo hi", { stream = function() error("boom") end })
    assert.is_false(ok)
    assert.matches("boom", e)
    assert.equal("still\n", assert(s:exec("echo still")).stdout)
    -- SFTP: a file streamed up, read back, its hash checked there
    local f = io.open(BIN, "rb")
    local bin = f:read "a"
    f:close()
    assert(s:upload({ path = BIN }, "/tmp/phanes.up", tonumber("0700", 8)))
    assert.equal(bin, assert(s:download "/tmp/phanes.up"))
    res = assert(s:exec("stat -c %a /tmp/phanes.up; sha256sum < /tmp/phanes.up"))
    assert.equal("700\n" .. require("phanes.file").sha256(bin) .. "  -\n", res.stdout)
    assert(s:upload("small\n", "/tmp/small.txt"))
    assert.equal("small\n", s:download "/tmp/small.txt")
    local d, derr, dkind = s:download "/nonexistent/file"
    assert.is_nil(d)
    assert.equal("sftp", dkind)
    assert.matches("no such file", derr)
    assert.is_nil((s:upload("x", "/nonexistent/dir/file")))
    -- close is idempotent; a closed session refuses work
    s:close()
    s:close()
    assert.has_error(function() s:exec "true" end, "ssh session is closed")
    do
      local s2 <close> = assert(ssh.connect { host = th.ip(1), user = "deploy", identities = { key }, agent = false,
        known_hosts = h .. "/known_hosts" })
      assert.equal("deploy\n", assert(s2:exec "id -un").stdout)
      assert.is_nil(s2:info().hostkey_added)
    end
    collectgarbage()
  end)

  it("a connection dropped during an apply leaves the target's state file valid", function()
    local h = home()
    local target = "root@" .. th.ip(2)
    local args = { "--remote", target, "--key", key }
    for _, a in ipairs(work(h)) do args[#args + 1] = a end
    -- drop the session while the first apply works (apt-get update takes seconds)
    local killer = io.popen("sleep 4; " .. q(th.script) .. " exec 2 sh -c " .. q("pkill -f 'sshd: root@notty'") .. " 2>&1")
    local code, out = phanes(h, args)
    killer:close()
    assert.equal(3, code, out)
    assert.matches("connection lost", out)
    os.execute("sleep 2")
    target_state(2) -- absent, or valid JSON (asserted inside)
    -- a new run completes (after the interrupted one has let go of its lock)
    local deadline = os.time() + 120
    repeat
      code, out = phanes(h, args)
      local busy = code == 75 and os.time() < deadline -- 75: the lock is held
      if busy then os.execute("sleep 3") end
    until not busy
    assert.equal(0, code, out)
    assert.equal("installed", assert(target_state(2)).modules.baseline.status)
  end)

  it("refuses a wrong key, saying what was tried and what the server takes", function()
    local h = home()
    assert(os.execute("ssh-keygen -q -t ed25519 -N '' -f " .. q(h .. "/wrong") .. " >/dev/null"))
    local code, out = phanes(h, { "--remote", "root@" .. th.ip(1), "--key", h .. "/wrong", "version" })
    assert.equal(3, code, out)
    assert.matches("authentication failed; tried " .. (h .. "/wrong"):gsub("%p", "%%%0") .. " %(rejected%); the server accepts publickey,password", out)
  end)

  it("refuses a wrong password", function()
    local h = home()
    local code, out = phanes(h, { "--remote", "alice@" .. th.ip(1), "--password-env", "PW", "version" }, { env = "PW=not-it" })
    assert.equal(3, code, out)
    assert.matches("authentication failed; tried password %(rejected%)", out)
  end)

  it("says sudo refused the password, and runs nothing", function()
    local h = home()
    local code, out = phanes(h, { "--remote", "alice@" .. th.ip(1), "--key", key, "--password-env", "PW", "version" }, { env = "PW=not-it" })
    assert.equal(3, code, out)
    assert.matches("sudo on alice@" .. th.ip(1):gsub("%.", "%%.") .. " refused the password for alice", out)
    assert.is_nil(out:find("phanes 0", 1, true))
  end)

  it("refuses a changed host key, naming both fingerprints and the known_hosts line", function()
    local h = home()
    local target = "root@" .. th.ip(3)
    assert.equal(0, (phanes(h, { "--remote", target, "--key", key, "version" })))
    local ok, msg = th.exec(3, "rm -f /etc/ssh/ssh_host_*; ssh-keygen -A >/dev/null; systemctl restart ssh")
    assert.is_true(ok, msg)
    local code, out = phanes(h, { "--remote", target, "--key", key, "version" })
    assert.equal(3, code, out)
    assert.matches("host key has CHANGED: .*SHA256:%S+.* the server offers %S+ SHA256:%S+", out)
    assert.matches(h:gsub("%p", "%%%0") .. "/%.ssh/known_hosts:1", out)
    -- and strict mode refuses an unknown host
    local h2 = home()
    code, out = phanes(h2, { "--remote", target, "--key", key, "--strict-host-keys", "version" })
    assert.equal(3, code, out)
    assert.matches("host key not known", out)
  end)

  it("refuses a target of another architecture, naming both, and leaves nothing there", function()
    local ok, msg = th.exec(3, "printf '#!/bin/sh\\n[ \"$1\" = -m ] && echo riscv64 && exit 0\\nexec /bin/uname \"$@\"\\n'"
      .. " > /usr/local/bin/uname && chmod 755 /usr/local/bin/uname"
      -- the prologue asks bash first (HOSTTYPE), uname for what it does not know
      .. " && { echo HOSTTYPE=riscv64; cat /root/.bashrc; } > /root/.bashrc.new && mv /root/.bashrc.new /root/.bashrc")
    assert.is_true(ok, msg)
    local h = home()
    write(h .. "/config.yaml", "timezone: UTC\n")
    local code, out = phanes(h, { "--remote", "root@" .. th.ip(3), "--key", key, "--modules", "baseline", "--config", h .. "/config.yaml" })
    th.exec(3, "rm -f /usr/local/bin/uname; sed -i '/^HOSTTYPE=riscv64$/d' /root/.bashrc")
    assert.equal(3, code, out)
    local arch = require("phanes.sys").uname().machine
    assert.matches("the target is riscv64 and this phanes is " .. arch .. ": phanes is built for x86_64 and aarch64 only", out, 1, true)
    local _, listing = th.exec(3, "ls -A /root/.cache/phanes")
    assert.is_nil(listing:find("run.", 1, true), listing)
  end)

  it("says a closed port is refused", function()
    local code, out = phanes(home(), { "--remote", "root@" .. th.ip(1) .. ":2222", "--key", key, "version" })
    assert.equal(3, code, out)
    assert.matches(":2222: connect: Connection refused", out)
  end)

  it("gives up on an address that does not answer within --timeout", function()
    local addr = th.ip(1):gsub("%d+$", "250")
    local t0 = require("phanes.sys").now()
    local code, out = phanes(home(), { "--remote", "root@" .. addr, "--key", key, "--timeout", "2", "version" })
    local took = require("phanes.sys").now() - t0
    assert.equal(3, code, out)
    assert.matches(addr:gsub("%.", "%%.") .. ":22: connect: ", out)
    assert.is_true(took < 4, "took " .. took .. "s")
  end)

  it("answers an unknown inventory name with the known hosts", function()
    local h = home()
    local code = phanes(h, { "host", "add", "web1", "root@" .. th.ip(1) })
    if code ~= 0 then -- `phanes host` needs the runner's cli; the inventory file works the same
      assert(os.execute("mkdir -p " .. q(h .. "/.config/phanes")))
      write(h .. "/.config/phanes/inventory.yaml", "default: web1\nhosts:\n  web1: { address: " .. th.ip(1) .. ", user: root }\n")
    end
    local out
    code, out = phanes(h, { "--remote", "web9", "--key", key, "version" })
    assert.equal(2, code, out)
    assert.matches("unknown host 'web9'; known hosts: web1", out)
  end)

  it("runs a fleet in parallel: prefixed output, one host down fails alone, a summary", function()
    local h = home()
    assert(os.execute("mkdir -p " .. q(h .. "/.config/phanes")))
    local lines = { "default: th1", "hosts:" }
    for i = 1, 5 do
      lines[#lines + 1] = string.format("  th%d: { address: %s, user: root, key: %s, groups: [all] }", i, th.ip(i), key)
    end
    write(h .. "/.config/phanes/inventory.yaml", table.concat(lines, "\n") .. "\n")
    local ip5 = th.ip(5)
    th.down(5)
    local args = { "--remote", "@all", "--parallel", "5", "--timeout", "3" }
    for _, a in ipairs(work(h)) do args[#args + 1] = a end
    local code, out = phanes(h, args)
    assert.equal(3, code, out) -- th5 unreachable
    for i = 1, 4 do
      local result = out:match("\nth" .. i .. "%s+(%a+)%s+[%d%-]+%s+[%d%-]+%s")
      assert.is_truthy(result == "ok" or result == "changed", out)
    end
    assert.matches("th5 | phanes: th5: " .. ip5:gsub("%.", "%%.") .. ":22: connect: ", out)
    assert.matches("\nth5%s+unreachable%s", out)
    assert.matches("host%s+result%s+changed%s+failed%s+time", out)
    -- --json: the second (no-op) run is one document on stdout, the lines on stderr
    args[#args + 1] = "--json"
    local jcode, errs
    jcode, out, errs = phanes(h, args, { stderr = h .. "/stderr" })
    assert.equal(3, jcode, out .. errs)
    local doc = assert(require("phanes.json").decode(out), out .. errs)
    assert.equal(3, doc.exit_code)
    for i = 1, 4 do
      local report = doc.hosts["th" .. i]
      assert.equal("apply", report.command, out)
      assert.equal(0, report.exit_code)
      assert.equal("ok", report.status)
      assert.equal("baseline", report.modules[1].name)
    end
    assert.equal(3, doc.hosts.th5.exit_code)
    assert.matches(ip5:gsub("%.", "%%.") .. ":22: connect: ", doc.hosts.th5.error)
    assert.matches("th5 | phanes: th5: " .. ip5:gsub("%.", "%%.") .. ":22: connect: ", errs)
  end)
end)
