-- Root must not follow what others planted: on a disposable test host, an
-- unprivileged user plants a link (or a file) where phanes, running as
-- root, writes; phanes must refuse naming the path and the owner, fail the
-- module, and leave the file behind the link as it was. Each case is
-- checked by looking at the host (stat, sha256sum), not at phanes' report.
--
-- Run as root (one test host):
--   PHANES_TEST_ID=fa spec/run build/phanes integration spec/integration/trust_files_spec.lua
local th = require "spec.support.testhost"
local runcli = require "spec.support.runcli"
local json = require "phanes.json"
local F = require "phanes.file"
local exec = require "phanes.exec"

local on = require "spec.support.onhost"
local sh, trim, yes = on.sh, on.trim, on.yes

-- cmd as an unprivileged user of the host
local function as(user, cmd) return sh("runuser -u " .. user .. " -- sh -c " .. th.quote(cmd)) end

-- phanes ARGS as root in /root of host 1 -> stdout .. stderr, exit code
local function phanes(args)
  local out, code, err = on.phanes(args)
  return out .. err, code
end

-- owner:group mode type sha256 of a path (the link itself for a link)
local function look(path)
  return trim((sh("stat -c '%U:%G %a %F' " .. path .. " && { test -L " .. path .. " || test -d " .. path
    .. " || sha256sum < " .. path .. " | cut -c1-64; }"):gsub("\n", " ")))
end

local function exists(path) return yes("test -e " .. path) end

local USER = "apply user --only user --config trust/config.yaml"

describe("planted links and files on a test host", function()
  if not on.use() then return end -- a fresh host 1
  local key

  setup(function()
    local tmp = assert(F.mkdtemp())
    local r = assert(exec.run { argv = { "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "trust@spec",
      "-f", tmp .. "/k" } })
    assert.equal(0, r.code, r.stderr)
    key = trim(assert(F.read(tmp .. "/k.pub")))
    sh "rm -rf /root/trust"
    assert(th.cp(1, runcli.binary(), "/usr/local/bin/phanes"))
    assert(th.cp(1, "spec/fixtures/trust", "/root/trust"))
    on.put("/root/trust/config.yaml", "username: deploy\nssh_public_key: \"" .. key .. "\"\n")
    assert(F.remove(tmp, true))
  end)

  it("authorized_keys linked to /etc/passwd: the user module fails naming it and deploy, /etc/passwd stays", function()
    local out, code = phanes(USER)
    assert.equal(0, code, out)
    assert.equal("deploy:deploy 600 regular file", look("/home/deploy/.ssh/authorized_keys"):match "^%S+ %S+ %S+ %S+")
    local passwd = look "/etc/passwd"
    assert.matches("^root:root 644 regular file %x+$", passwd)
    local sudoers = look "/etc/sudoers.d/deploy"
    as("deploy", "rm -f ~/.ssh/authorized_keys && ln -s /etc/passwd ~/.ssh/authorized_keys")
    for _, args in ipairs { USER .. " --dry-run", USER } do
      out, code = phanes(args)
      assert.equal(1, code, out)
      assert.matches("/home/deploy/.ssh/authorized_keys: a symlink owned by deploy, in /home/deploy/.ssh, "
        .. "a directory deploy can write", out, 1, true)
      assert.not_matches("root:x:0:0", out, 1, true) -- no diff of the file behind the link
      assert.equal(passwd, look "/etc/passwd")
      assert.equal(sudoers, look "/etc/sudoers.d/deploy") -- the module stopped there
      assert.equal("/etc/passwd", trim(sh "readlink /home/deploy/.ssh/authorized_keys"))
    end
    assert.equal("", trim(sh "ls -A /etc /home/deploy/.ssh | grep phanes || true")) -- no temp file left
    as("deploy", "rm ~/.ssh/authorized_keys")
  end)

  it("~/.ssh linked to /root/.ssh: refused naming it and deploy, /root/.ssh untouched", function()
    sh "mkdir -p /root/.ssh && chmod 700 /root/.ssh && touch /root/.ssh/authorized_keys"
    local dir, keys = look "/root/.ssh", look "/root/.ssh/authorized_keys"
    assert.equal("root:root 700 directory", dir)
    as("deploy", "rm -rf ~/.ssh && ln -s /root/.ssh ~/.ssh")
    local out, code = phanes(USER)
    assert.equal(1, code, out)
    assert.matches("/home/deploy/.ssh: a symlink owned by deploy, in /home/deploy, a directory deploy can write",
      out, 1, true)
    assert.equal(dir, look "/root/.ssh")
    assert.equal(keys, look "/root/.ssh/authorized_keys")
    assert.equal("", trim(sh "ls -A /root/.ssh | grep -v '^authorized_keys$' || true"))
    assert.is_nil(sh("cat /root/.ssh/authorized_keys"):find("trust@spec", 1, true))
    -- the link removed, the same run works again: the normal case
    as("deploy", "rm ~/.ssh")
    out, code = phanes(USER)
    assert.equal(0, code, out)
    assert.equal("deploy:deploy 700 directory", look "/home/deploy/.ssh")
    assert.matches("^deploy:deploy 600 regular file", look "/home/deploy/.ssh/authorized_keys")
    assert.matches("trust@spec", sh "cat /home/deploy/.ssh/authorized_keys", 1, true)
    local before = look "/home/deploy/.ssh/authorized_keys"
    out, code = phanes(USER)
    assert.equal(0, code, out)
    assert.equal(before, look "/home/deploy/.ssh/authorized_keys")
  end)

  it("a template target in a service user's conf.d linked to /etc/shadow: refused, /etc/shadow untouched", function()
    sh "id pgfa >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin pgfa"
    sh "mkdir -p /etc/pgfa/conf.d && chown pgfa:pgfa /etc/pgfa/conf.d && chmod 755 /etc/pgfa/conf.d"
    local shadow = look "/etc/shadow"
    assert.matches("^root:shadow 640 regular file %x+$", shadow)
    as("pgfa", "ln -s /etc/shadow /etc/pgfa/conf.d/phanes.conf && ln -s /etc/shadow /etc/pgfa/conf.d/other.conf")
    local out, code = phanes "apply trust_conf --path trust"
    assert.equal(1, code, out)
    assert.matches("/etc/pgfa/conf.d/phanes.conf: a symlink owned by pgfa, in /etc/pgfa/conf.d, "
      .. "a directory pgfa can write", out, 1, true)
    assert.is_false(exists "/root/trust-after-conf") -- the module stopped at the failure
    out, code = phanes "apply trust_content --path trust"
    assert.equal(1, code, out)
    assert.matches("/etc/pgfa/conf.d/other.conf: a symlink owned by pgfa", out, 1, true)
    assert.equal(shadow, look "/etc/shadow")
    -- a file of a third user there is not taken over either
    sh "rm /etc/pgfa/conf.d/other.conf && echo deploys > /etc/pgfa/conf.d/other.conf"
    sh "chown deploy:deploy /etc/pgfa/conf.d/other.conf"
    out, code = phanes "apply trust_content --path trust"
    assert.equal(1, code, out)
    assert.matches("/etc/pgfa/conf.d/other.conf: owned by deploy, in /etc/pgfa/conf.d, a directory pgfa can write",
      out, 1, true)
    assert.matches("^deploy:deploy 644 regular file", look "/etc/pgfa/conf.d/other.conf")
    assert.equal("deploys\n", sh "cat /etc/pgfa/conf.d/other.conf")
    assert.equal(shadow, look "/etc/shadow")
    -- what pgfa planted removed, both modules write their files
    sh "rm /etc/pgfa/conf.d/phanes.conf /etc/pgfa/conf.d/other.conf"
    out, code = phanes "apply trust_conf --path trust"
    assert.equal(0, code, out)
    out, code = phanes "apply trust_content --path trust"
    assert.equal(0, code, out)
    assert.matches("^pgfa:root 640 regular file", look "/etc/pgfa/conf.d/phanes.conf")
    assert.equal("# managed by phanes in /etc/pgfa/conf.d\nlog_min_messages = warning\n",
      sh "cat /etc/pgfa/conf.d/phanes.conf")
    assert.matches("^pgfa:pgfa 600 regular file", look "/etc/pgfa/conf.d/other.conf")
    assert.equal(shadow, look "/etc/shadow")
  end)

  it("--report to a link planted in a directory others can write: refused before anything runs", function()
    local hostname = look "/etc/hostname"
    assert.matches("^root:root %d+ regular file %x+$", hostname)
    as("deploy", "ln -s /etc/hostname /tmp/fa-report.json && ln -s /etc/hostname ~/report.json")
    local cases = {
      ["/tmp/fa-report.json"] = "/tmp/fa-report.json: a symlink owned by deploy, in /tmp, a directory every user can write",
      ["/home/deploy/report.json"] = "/home/deploy/report.json: a symlink owned by deploy, in /home/deploy, "
        .. "a directory deploy can write",
    }
    for path, msg in pairs(cases) do
      local out, code = phanes("apply trust_noop --path trust --report " .. path)
      assert.equal(2, code, out)
      assert.matches("cannot write the report: " .. msg, out, 1, true)
      assert.is_false(exists "/root/trust-marker") -- nothing ran
      assert.equal(hostname, look "/etc/hostname")
    end
    -- a report in root's own directory is written
    local out, code = phanes "apply trust_noop --path trust --report /root/fa-report.json"
    assert.equal(0, code, out)
    assert.is_true(exists "/root/trust-marker")
    local report = assert(json.decode(sh "cat /root/fa-report.json"))
    assert.equal(0, report.exit_code)
    assert.equal("root:root 644", look("/root/fa-report.json"):match "^%S+ %d+")
  end)

  it("root's own links in root's directories are still written through (/etc/resolv.conf style)", function()
    sh "echo old > /etc/fa-real.conf && ln -sfn fa-real.conf /etc/fa-link.conf"
    local out, code = phanes "apply trust_rootlink --path trust"
    assert.equal(0, code, out)
    assert.equal("fa-real.conf", trim(sh "readlink /etc/fa-link.conf"))
    assert.equal("through the link\n", sh "cat /etc/fa-real.conf")
  end)
end)
