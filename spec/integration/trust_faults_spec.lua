-- Faults leave nothing behind, and root does not follow what others
-- planted, on a disposable test host: phanes is killed with SIGKILL mid-run
-- (its children must die, the lock must be free), two runs with different
-- --state meet the one machine lock, the swap module is killed at each of
-- its steps and the next run finishes the swap file, bad and hostile state
-- files are read, and a user plants symlinks and files where root writes
-- its state and lock. Each case is checked by looking at the host (ps,
-- blkid, sha256sum, ls), not at phanes' report.
--
--   PHANES_TEST_ID=fb spec/run build/phanes integration spec/integration/trust_faults_spec.lua
local th = require "spec.support.testhost"
local runcli = require "spec.support.runcli"

local FX = "/root/fx"

local on = require "spec.support.onhost"
local sh, trim = on.sh, on.trim

-- phanes ARGS in /root (env: "NAME=value ..." or nil) -> stdout, exit code, stderr
local function phanes(args, env) return on.phanes(args, { env = (env or "") .. " NO_COLOR=1" }) end

-- Start phanes ARGS in the background; returns its pid.
local function start(args, env)
  sh("rm -f /root/bg.pid; cd /root && (" .. (env or "") .. " NO_COLOR=1 sh -c 'echo $$ >/root/bg.pid; exec phanes "
    .. args .. "' >/root/bg.out 2>&1 </dev/null &)")
  for _ = 1, 100 do
    local pid = trim(sh("cat /root/bg.pid 2>/dev/null", true))
    if pid:match "^%d+$" then return pid end
    os.execute "sleep 0.1"
  end
  error("phanes did not start: " .. sh("cat /root/bg.out", true))
end

-- Wait until cmd succeeds on the host (up to 30 s).
local function wait_for(cmd, what)
  for _ = 1, 300 do
    local _, code = sh(cmd, true)
    if code == 0 then return true end
    os.execute "sleep 0.1"
  end
  error("timed out waiting for " .. what .. "\n" .. sh("cat /root/bg.out", true))
end

local function killed(pid)
  sh("kill -9 " .. pid)
  wait_for("! kill -0 " .. pid .. " 2>/dev/null", "phanes " .. pid .. " to die")
end

-- the processes running a command line matching pattern (ps, on the host)
local function procs(pattern)
  return trim(sh("ps -eo pid,ppid,args | grep -E " .. th.quote(pattern) .. " | grep -v grep", true))
end

describe("faults and planted files #faults", function()
  if not th.available() then pending("needs root + namespaces") return end
  setup(function()
    th.down(1)
    th.up(1)
    assert(th.cp(1, runcli.binary(), "/usr/local/bin/phanes"))
    assert(th.cp(1, "spec/fixtures/faults", FX))
  end)
  teardown(function() th.down() end)

  describe("SIGKILL mid-apply", function()
    it("leaves no child running, and the next apply gets the lock", function()
      local pid = start("apply --modules f_sleep --path " .. FX)
      wait_for("pgrep -f '^sleep 313$'", "the child command")
      assert.matches("sleep 313", procs "sleep 313")
      killed(pid)
      -- the child dies with phanes (PR_SET_PDEATHSIG), looked at with ps
      wait_for("! pgrep -f '^sleep 313$'", "the child to die")
      assert.equal("", procs "sleep 313")
      local out, code, err = phanes("apply --modules f_ok --path " .. FX)
      assert.equal(0, code, out .. err)
    end)

    it("a command's own children too: the lock waits until they are gone", function()
      local pid = start("apply --modules f_shell --path " .. FX)
      wait_for("pgrep -f '^sleep 314$'", "the grandchild command")
      assert.matches("sh %-c sleep 314; echo done", procs "sleep 314")
      killed(pid)
      wait_for("! pgrep -f '^(sh -c )?sleep 314'", "the command's group to die")
      assert.equal("", procs "sleep 314")
      local out, code, err = phanes("apply --modules f_ok --path " .. FX)
      assert.equal(0, code, out .. err)
    end)
  end)

  describe("one lock per machine", function()
    it("a second apply with another --state exits 75 naming the lock and its holder", function()
      local pid = start("apply --modules f_sleep --path " .. FX .. " --state /root/a.json")
      wait_for("pgrep -f '^sleep 313$'", "the first run's child")
      local out, code, err = phanes("apply --modules f_ok --path " .. FX .. " --state /root/b.json")
      assert.equal(75, code, out .. err)
      assert.matches("another phanes run holds /run/phanes.lock (pid " .. pid .. ")", err, 1, true)
      assert.is_false(on.yes "test -e /root/b.json")
      killed(pid)
      wait_for("! pgrep -f '^sleep 313$'", "the child to die")
    end)
  end)

  describe("swap resumes after a kill at each step", function()
    teardown(function() sh("swapoff /swapfile-t 2>/dev/null; rm -f /swapfile-t", true) end)
    local APPLY = "apply --modules f_swap --path " .. FX
    -- a fake STEP on PATH that notes it started, does `before`, then blocks
    local function fake(step, before)
      sh("mkdir -p /root/fake && printf '#!/bin/sh\\n%s\\necho started >/root/fake.started\\nexec sleep 300\\n' "
        .. th.quote(before or ":") .. " >/root/fake/" .. step .. " && chmod 0755 /root/fake/" .. step)
    end
    local function is_swap()
      return trim(sh("blkid -p -s TYPE -o value /swapfile-t", true))
    end

    for _, case in ipairs {
      { step = "fallocate", before = "truncate -s 1M /swapfile-t" }, -- killed half-way through
      { step = "chmod" },
      { step = "mkswap" },
      { step = "swapon" },
    } do
      it("killed in " .. case.step .. ": the next run completes the swap file", function()
        sh("swapoff /swapfile-t 2>/dev/null; rm -rf /swapfile-t /root/fake /root/fake.started")
        if case.step ~= "fallocate" then -- the steps before it ran for real
          sh "fallocate -l 64M /swapfile-t"
          if case.step ~= "chmod" then sh "chmod 0600 /swapfile-t" end
          if case.step == "swapon" then sh "mkswap /swapfile-t >/dev/null" end
        end
        fake(case.step, case.before)
        local pid = start(APPLY, "PATH=/root/fake:$PATH")
        wait_for("test -e /root/fake.started", "the fake " .. case.step)
        killed(pid)
        wait_for("! pgrep -f '^sleep 300$'", "the fake step to die")
        if case.step ~= "swapon" then assert.not_equal("swap", is_swap()) end
        sh "rm -rf /root/fake"
        local out, code, err = phanes(APPLY)
        assert.equal(0, code, out .. err)
        -- looked at on the host: a swap signature, the full size, mode 0600
        assert.equal("swap", is_swap())
        assert.equal(tostring(64 * 1024 * 1024), trim(sh "stat -c %s /swapfile-t"))
        assert.equal("600", trim(sh "stat -c %a /swapfile-t"))
        -- swapon fails on the host's overlay (EINVAL): said, not failed
        assert.equal("0", trim(sh("grep -c '^/swapfile-t ' /proc/swaps", true)))
        assert.matches("skipped: swapon /swapfile-t: Invalid argument", out, 1, true)
        -- and the next run does nothing again to the file
        out, code, err = phanes(APPLY)
        assert.equal(0, code, out .. err)
        assert.not_matches("changed cmd.run mkswap", out, 1, true)
        assert.not_matches("changed cmd.run allocate", out, 1, true)
      end)
    end
  end)

  describe("a restart owed by a killed run", function()
    local APPLY = "apply --modules f_svc --path " .. FX
    local function main_pid() return trim(sh "systemctl show -p ExecMainPID --value f-svc") end
    setup(function()
      sh "printf '[Service]\\nExecStart=/bin/sleep infinity\\n' >/etc/systemd/system/f-svc.service && systemctl daemon-reload"
    end)

    it("is done by the next run, though the config file no longer changes", function()
      local out, code, err = phanes(APPLY, "F_SVC=one")
      assert.equal(0, code, out .. err)
      local first = main_pid()
      assert.not_equal("0", first)
      -- killed while it restarts f-svc for the new config
      sh [[rm -rf /root/fake /root/fake.started && mkdir /root/fake && printf '#!/bin/sh\ncase " $* " in *" restart "*) echo started >/root/fake.started; exec sleep 300;; esac\nexec /usr/bin/systemctl "$@"\n' >/root/fake/systemctl && chmod 0755 /root/fake/systemctl]]
      local pid = start(APPLY, "F_SVC=two PATH=/root/fake:$PATH")
      wait_for("test -e /root/fake.started", "the restart")
      killed(pid)
      sh "rm -rf /root/fake"
      assert.equal("two", trim(sh "cat /etc/f-svc.conf"))
      assert.equal(first, main_pid()) -- the daemon still runs the old config
      out = phanes "status"
      assert.matches("f_svc%s+interrupted", out)
      -- the next run: nothing to write, but the restart it owed
      out, code, err = phanes(APPLY, "F_SVC=two")
      assert.equal(0, code, out .. err)
      assert.matches("changed service.running f-svc  (restarted)", out, 1, true)
      local second = main_pid()
      assert.not_equal(first, second)
      -- and then it owes nothing
      out, code, err = phanes(APPLY, "F_SVC=two")
      assert.equal(0, code, out .. err)
      assert.equal(second, main_pid())
      assert.not_matches("restarted", out, 1, true)
    end)
  end)

  describe("state files", function()
    it("a mistyped field: a clear error naming the file and field, exit 2 (was 70)", function()
      sh [[printf '{"format":1,"modules":{"redis":{"status":"failed","last_error":{"x":1}}}}' >/root/typo.json]]
      local out, code, err = phanes "status --state /root/typo.json"
      assert.equal(2, code, out .. err)
      assert.matches("/root/typo.json: corrupt state file: modules.redis.last_error must be a string, not table",
        err, 1, true)
      assert.not_matches("internal error", err, 1, true)
    end)

    it("escape sequences in the state file and a command's output do not reach the output raw", function()
      sh [[printf '{"format":1,"hostname":"h\u001b]0;pwned\u0007","modules":{"redis":{"status":"failed","last_error":"x\u001b[2J\u001b[8mhidden\u000d"}}}' >/root/esc.json]]
      local out, code, err = phanes "status --state /root/esc.json"
      assert.equal(0, code, out .. err)
      assert.is_nil((out .. err):find("[\27\7\r]"), out .. err)
      assert.matches("h\\x1b]0;pwned\\x07", out, 1, true)
      assert.matches("x\\x1b[2J\\x1b[8mhidden\\x0d", out, 1, true)
      out, code, err = phanes("apply --modules f_esc --path " .. FX .. " --state /root/esc-run.json")
      assert.equal(1, code, out .. err)
      assert.is_nil((out .. err):find("[\27\7]"), out .. err)
      assert.matches("\\x1b]0;pwned\\x07", out .. err, 1, true)
    end)

    it("two corrupt state files moved aside one after the other: both kept", function()
      sh "rm -rf /root/cs && mkdir /root/cs && echo '{ first' >/root/cs/state.json"
      local out, code, err = phanes("apply --modules f_ok --path " .. FX .. " --state /root/cs/state.json")
      assert.equal(0, code, out .. err)
      sh "echo '{ second' >/root/cs/state.json"
      out, code, err = phanes("apply --modules f_ok --path " .. FX .. " --state /root/cs/state.json")
      assert.equal(0, code, out .. err)
      local kept = sh "cat /root/cs/state.json.corrupt-* | sort"
      assert.equal("{ first\n{ second\n", kept)
      assert.equal("2", trim(sh "ls /root/cs | grep -c corrupt"))
    end)
  end)

  describe("planted by a user", function()
    setup(function()
      sh "id mallory >/dev/null 2>&1 || useradd -m mallory"
      sh "echo 'root secret' >/etc/phanes-target && chmod 0600 /etc/phanes-target"
      sh "cp /etc/phanes-target /root/target.orig"
    end)
    local function untouched()
      assert.equal("same root:600", trim(sh "cmp -s /etc/phanes-target /root/target.orig && echo same $(stat -c %U:%a /etc/phanes-target)"))
    end

    it("a symlinked state file in the user's directory is refused, its target untouched", function()
      sh "su mallory -c 'mkdir -p ~/st && ln -sfn /etc/phanes-target ~/st/state.json'"
      local out, code, err = phanes("apply --modules f_ok --path " .. FX .. " --state /home/mallory/st/state.json")
      assert.equal(2, code, out .. err)
      assert.matches("/home/mallory/st/state.json: refusing: a symlink owned by mallory", err, 1, true)
      untouched()
      assert.equal("/etc/phanes-target", trim(sh "readlink /home/mallory/st/state.json"))
      out, code, err = phanes "status --state /home/mallory/st/state.json"
      assert.equal(2, code, out .. err)
      assert.not_matches("root secret", out .. err, 1, true)
    end)

    it("a file of the user's as the state is refused, and so is a symlinked directory", function()
      sh "su mallory -c 'rm -f ~/st/state.json; echo {} >~/st/state.json'"
      local out, code, err = phanes("apply --modules f_ok --path " .. FX .. " --state /home/mallory/st/state.json")
      assert.equal(2, code, out .. err)
      assert.matches("refusing: a file owned by mallory", err, 1, true)
      assert.equal("{}", trim(sh "cat /home/mallory/st/state.json"))
      sh "su mallory -c 'ln -sfn /etc ~/etc'"
      out, code, err = phanes("apply --modules f_ok --path " .. FX .. " --state /home/mallory/etc/phanes-target")
      assert.equal(2, code, out .. err)
      assert.matches("/home/mallory/etc: refusing: a symlink owned by mallory", err, 1, true)
      untouched()
    end)

    it("a symlinked lock in a user-writable directory is refused, its target untouched", function()
      sh "su mallory -c 'ln -sfn /etc/phanes-target /tmp/phanes.lock'"
      local out, code, err = phanes("apply --modules f_ok --path " .. FX, "PHANES_LOCK=/tmp/phanes.lock")
      assert.equal(2, code, out .. err)
      assert.matches("/tmp/phanes.lock: refusing: a symlink owned by mallory", err, 1, true)
      untouched()
      assert.equal("/etc/phanes-target", trim(sh "readlink /tmp/phanes.lock"))
    end)
  end)
end)
