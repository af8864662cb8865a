-- The lmstudio module's default path (method: script, LM Studio's install
-- script of its headless core) on a disposable Debian test host: the
-- stand-in install script (spec/fixtures/ai/lmstudio-script/install.sh,
-- its download pointed at the fixture server) refuses root and installs
-- the stand-in lms (spec/fixtures/ai/lmstudio/bin/lms) under the user's
-- ~/.lmstudio. The host is looked at: the script ran once as the lmstudio
-- user; lms, that user's file, is reached from root's PATH only through a
-- root-owned wrapper that runs it as that user (a CLI the user rewrote to
-- write /root runs, and cannot), and nothing on root's PATH is the user's
-- or leads into its home; the link of older versions gives way to the
-- wrapper; the oneshot unit serves /v1/models on localhost only from a
-- process of that user; a re-run asks the server nothing and restarts
-- nothing; a wrong script_sha256 runs nothing.
--
--   PHANES_TEST_ID=c7 spec/run build/phanes integration spec/integration/ai_lmstudio_script_spec.lua
local th = require "spec.support.testhost"
local runcli = require "spec.support.runcli"
local on = require "spec.support.onhost"
local fx = require "spec.support.fixtures"
local json = require "phanes.json"
local F = require "phanes.file"

local sh, trim, yes, phanes, local_sh = on.sh, on.trim, on.yes, on.phanes, on.local_sh

local q = th.quote
local APPLY = "apply lmstudio --only lmstudio --config config.yaml"
local LMS = "/var/lib/lmstudio/.lmstudio/bin/lms"
local ZERO = string.rep("0", 63) .. "1"
local PORT = 4321
local PATH_DIRS = "/usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin" -- root's PATH

describe("lmstudio's install script on a test host", function()
  local available, why = th.available()
  if not available then
    it("needs test hosts", function() pending(why) end)
    return
  end

  local dir, srv, base, script_sum = nil, nil, nil, nil

  local function requests() return srv.requests() end
  local function server_pid() return trim(sh("cat /var/lib/lmstudio/.lms-fixture.pid")) end

  setup(function()
    dir = require("lfs").currentdir() .. "/build/spec_tmp/ai_lmstudio_script"
    local_sh("rm -rf " .. q(dir) .. " && mkdir -p " .. q(dir .. "/www")
      .. " && cp spec/fixtures/ai/lmstudio/bin/lms " .. q(dir .. "/www/lms"))
    th.down(1)
    th.up(1)
    sh "apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3 >/dev/null" -- the stand-in lms is Python
    srv = fx.serve(dir)
    base = srv.base
    local text = F.read "spec/fixtures/ai/lmstudio-script/install.sh":gsub("@BASE@", base)
    runcli.write(dir .. "/www/install.sh", text)
    script_sum = F.sha256(text)
    local cfg = dir .. "/config.yaml"
    runcli.write(cfg, table.concat({
      "lmstudio:",
      "  script_url: " .. base .. "/install.sh",
      "  script_sha256: " .. script_sum,
      '  settings: \'{"contextLength": 4096}\'',
      "  server: true",
      "  port: " .. PORT,
      "",
    }, "\n"))
    assert(th.cp(1, runcli.binary(), "/usr/local/bin/phanes"))
    assert(th.cp(1, cfg, "/root/config.yaml"))
  end)
  teardown(function()
    if srv then srv.stop() end
    th.down()
    if dir then os.execute("rm -rf " .. q(dir)) end
  end)

  it("without script_sha256 says what to set and runs nothing", function()
    local out, code, err = phanes(APPLY .. " --set lmstudio.script_sha256=")
    assert.equal(1, code, out .. err)
    assert.matches("lmstudio.script_sha256 is not set: fetch " .. base .. "/install.sh", out .. err, 1, true)
    assert.is_false(yes "test -e /var/lib/lmstudio")
  end)

  it("a wrong script_sha256 runs nothing", function()
    local out, code, err = phanes(APPLY .. " --set lmstudio.script_sha256=" .. ZERO)
    assert.equal(1, code, out .. err)
    assert.matches("sha256 mismatch for " .. base .. "/install.sh: expected " .. ZERO .. ", got " .. script_sum,
      out .. err, 1, true)
    assert.is_false(yes("test -e " .. LMS))
    assert.is_false(yes "ls /var/cache/phanes/lmstudio/install-*.sh >/dev/null 2>&1")
  end)

  it("runs the checked script once as lmstudio; the server answers on localhost", function()
    local out, code, err = phanes(APPLY)
    assert.equal(0, code, out .. err)
    assert.matches("changed%s+cmd.run", out)
    assert.equal("lmstudio lmstudio 755", trim(sh("stat -c '%U %G %a' " .. LMS)))
    -- on root's PATH a wrapper of root's, not a link to the user's file
    assert.equal("regular file root root 755", trim(sh "stat -c '%F %U %G %a' /usr/local/bin/lms"))
    assert.is_false(yes "test -L /usr/local/bin/lms")
    assert.equal("lms 0.0.1-fixture", trim(sh "lms version"))
    assert.equal('{"contextLength": 4096}', sh "cat /var/lib/lmstudio/.lmstudio/settings.json")
    assert.equal("active", trim(sh "systemctl is-active lmstudio"))
    assert.equal("enabled", trim(sh "systemctl is-enabled lmstudio"))
    assert.equal("lmstudio", trim(sh("ps -o user= -p " .. server_pid())))
    assert.matches('"object": "list"', sh("curl -fsS http://127.0.0.1:" .. PORT .. "/v1/models"), 1, true)
    assert.equal("127.0.0.1:" .. PORT, trim(sh("ss -ltnH 'sport = :" .. PORT .. "' | awk '{print $4}'")))
    assert.equal("script " .. script_sum .. "\n", sh "cat /var/lib/phanes/sentinels/lmstudio.script")
    assert.equal("script " .. script_sum .. "\n", sh "cat /var/lib/phanes/sentinels/lmstudio.installed")
  end)

  it("nothing on root's PATH is the lmstudio user's or leads into its home", function()
    -- -H: /bin and /sbin are links to usr/ on Debian
    assert.equal("", sh("find -H " .. PATH_DIRS .. " -maxdepth 1 -user lmstudio"))
    assert.equal("", sh("find -H " .. PATH_DIRS .. " -maxdepth 1 -type l -exec readlink -f {} + | sort -u"
      .. " | grep -E '^/var/lib/lmstudio(/|$)' || true"))
    -- and what the wrapper is: only root can change it or its directory
    assert.equal("root 755 root 755", trim(sh "stat -c '%U %a' /usr/local/bin /usr/local/bin/lms | paste -sd' '"))
  end)

  it("root's lms runs the CLI as lmstudio, in a session of its own; the user runs it directly; others are told", function()
    assert.equal("lms 0.0.1-fixture", trim(sh "cd /root && lms version"))
    assert.equal("lms 0.0.1-fixture", trim(sh "cd /tmp && runuser -u lmstudio -- lms version"))
    local out, code = sh("runuser -u deploy -- lms version", true)
    assert.equal(1, code)
    assert.matches("lms: LM Studio's CLI belongs to the lmstudio user: run it as root (sudo lms ...), it then runs as "
      .. "lmstudio", out, 1, true)
  end)

  it("a CLI the lmstudio user rewrote runs as lmstudio when root types lms: it cannot write /root", function()
    sh("rm -f /root/pwned /tmp/lms-ran && runuser -u lmstudio -- cp -p " .. LMS .. " " .. LMS .. ".orig")
    -- the attack: whoever controls the lmstudio user (the server it runs) rewrites its lms
    sh("printf '%s\n' '#!/bin/sh' 'id -un > /tmp/lms-ran; echo \"$HOME $(pwd)\" >> /tmp/lms-ran'"
      .. " '(exec 3</dev/tty) 2>/dev/null && echo tty >> /tmp/lms-ran || echo no-tty >> /tmp/lms-ran'"
      .. " 'touch /root/pwned' | runuser -u lmstudio -- tee " .. LMS .. " >/dev/null")
    assert.equal("lmstudio", trim(sh("stat -c %U " .. LMS)))
    -- root types lms at a terminal (script gives it one), in root's home
    sh "cd /root && script -qec lms /dev/null >/dev/null 2>&1 || true"
    local ran = sh "cat /tmp/lms-ran"
    sh("runuser -u lmstudio -- mv " .. LMS .. ".orig " .. LMS)
    assert.is_false(yes "test -e /root/pwned")
    -- it ran, as lmstudio, from its home (root's is closed to it), without root's terminal
    assert.equal("lmstudio\n/var/lib/lmstudio /var/lib/lmstudio\nno-tty\n", ran)
    assert.equal("lms 0.0.1-fixture", trim(sh "lms version"))
  end)

  it("a host with the link of before gets the wrapper; a link phanes did not make is refused", function()
    local sum = sh("sha256sum " .. LMS)
    sh("rm /usr/local/bin/lms && ln -s " .. LMS .. " /usr/local/bin/lms")
    local out, code, err = phanes(APPLY)
    assert.equal(0, code, out .. err)
    assert.matches("changed%s+file.template%s+/usr/local/bin/lms", out)
    assert.matches("symlink -> " .. LMS .. " replaced by a file", out, 1, true)
    assert.equal("regular file root root 755", trim(sh "stat -c '%F %U %G %a' /usr/local/bin/lms"))
    assert.equal(sum, sh("sha256sum " .. LMS)) -- the user's file was not written through the link
    assert.equal("lmstudio", trim(sh("stat -c %U " .. LMS)))
    assert.equal("lms 0.0.1-fixture", trim(sh "lms version"))
    local wrapper = sh "sha256sum /usr/local/bin/lms"
    sh "rm /usr/local/bin/lms && ln -s /usr/bin/true /usr/local/bin/lms"
    out, code, err = phanes(APPLY)
    assert.equal(1, code, out .. err)
    assert.matches("is a symlink to /usr/bin/true, not a file", out .. err, 1, true)
    assert.equal("/usr/bin/true", trim(sh "readlink /usr/local/bin/lms"))
    sh "rm /usr/local/bin/lms"
    out, code, err = phanes(APPLY)
    assert.equal(0, code, out .. err)
    assert.equal(wrapper, sh "sha256sum /usr/local/bin/lms")
  end)

  it("a re-run changes nothing, asks the server nothing and restarts nothing", function()
    local pid, seen = server_pid(), requests()
    local out, code, err = phanes(APPLY .. " --json")
    assert.equal(0, code, out .. err)
    local r = assert(json.decode(out))
    for _, m in ipairs(r.modules) do
      for _, ev in ipairs(m.resources) do
        assert.equal("ok", ev.status, m.name .. " " .. ev.resource .. " " .. tostring(ev.target))
      end
    end
    assert.equal(seen, requests())
    assert.equal(pid, server_pid())
    assert.equal("active", trim(sh "systemctl is-active lmstudio"))
  end)

  it("stopping the unit stops the server", function()
    sh "systemctl stop lmstudio"
    assert.is_false(yes("curl -fsS -o /dev/null http://127.0.0.1:" .. PORT .. "/v1/models"))
    local out, code, err = phanes(APPLY)
    assert.equal(0, code, out .. err)
    assert.matches('"object": "list"', sh("curl -fsS http://127.0.0.1:" .. PORT .. "/v1/models"), 1, true)
  end)
end)
