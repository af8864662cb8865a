-- Targets of another architecture and targets that cannot run phanes, on a
-- disposable test host: the probe's answers are planted on the host (a
-- uname and a login shell that say aarch64, a getconf that says glibc 2.31, apt-get hidden
-- and a dnf present), then we look at what phanes uploaded there.
local th = require "spec.support.testhost"
local fakeexec = require "spec.support.fakeexec"
local file = require "phanes.file"

local q = th.quote

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read "a"
  local _, _, code = p:close()
  return code, out
end

local ARM = require("lfs").currentdir() .. "/build/aarch64/phanes"

describe("remote binary per architecture", function()
  local ok_hosts, why = th.available()
  if not ok_hosts then
    pending(why)
    return
  end
  local key, h, bin
  -- phanes runs from a directory of its own (nothing beside it), HOME = h
  local function phanes(args)
    local words = {}
    for i, a in ipairs(args) do words[i] = q(a) end
    return sh("cd " .. q(h) .. " && HOME=" .. q(h) .. " SSH_AUTH_SOCK= " .. q(bin) .. " " .. table.concat(words, " ") .. " </dev/null")
  end
  local function plant(script)
    local ok, out = th.exec(1, script)
    assert.is_true(ok, out)
  end
  setup(function()
    th.up(1)
    key = th.key()
    h = fakeexec.tmpdir()
    assert(file.mkdir(h .. "/bin", { mode = tonumber("0755", 8) }))
    bin = h .. "/bin/phanes"
    if not file.stat(ARM, true) then -- `make dist` builds it; make test does not
      local code, out = sh("make --no-print-directory ARCH=aarch64")
      assert.equal(0, code, out)
    end
    local code, out = sh("cp " .. q(require("phanes.sys").exe()) .. " " .. q(bin))
    assert.equal(0, code, out)
  end)
  teardown(function()
    th.down()
    if h then fakeexec.rmtree(h) end
  end)
  -- the host as booted: nothing planted, nothing cached
  local function clean()
    th.exec(1, "rm -f /usr/local/bin/uname /usr/local/bin/getconf /usr/local/bin/dnf;"
      .. " sed -i '/^HOSTTYPE=aarch64$/d' /root/.bashrc;"
      .. " for f in apt-get dpkg; do [ ! -e /usr/bin/$f.off ] || mv /usr/bin/$f.off /usr/bin/$f; done;"
      .. " rm -rf /root/.cache/phanes /var/lib/phanes/bin")
  end
  before_each(clean)
  after_each(clean)

  local function target() return "root@" .. th.ip(1) end

  it("uploads the aarch64 binary to an aarch64 target, from ~/.cache/phanes/dist", function()
    plant("printf '#!/bin/sh\\n[ \"$1\" = -m ] && echo aarch64 && exit 0\\nexec /bin/uname \"$@\"\\n'"
      .. " > /usr/local/bin/uname && chmod 755 /usr/local/bin/uname")
    -- the run's prologue asks bash (HOSTTYPE), the probe of `host test` uname
    plant("{ echo HOSTTYPE=aarch64; cat /root/.bashrc; } > /root/.bashrc.new && mv /root/.bashrc.new /root/.bashrc")
    -- without it: the error names the architecture and make dist
    local code, out = phanes { "--remote", target(), "--key", key, "version" }
    assert.equal(3, code, out)
    assert.matches("no phanes binary for aarch64", out, 1, true)
    assert.matches("make dist", out, 1, true)
    local _, listing = th.exec(1, "ls -A /root/.cache/phanes")
    assert.is_nil(listing:find("phanes-", 1, true), listing)
    -- host test shows the architecture and the binary it would use
    local dist = h .. "/.cache/phanes/dist/phanes-aarch64"
    assert(file.mkdir(h .. "/.cache/phanes/dist", { parents = true }))
    assert.equal(0, (sh("cp " .. q(ARM) .. " " .. q(dist))))
    code, out = phanes { "host", "test", target(), "--key", key }
    assert.equal(0, code, out)
    assert.matches("aarch64 binary: " .. dist, out, 1, true)
    -- a run uploads it; this x86_64 host cannot execute it
    code, out = phanes { "--remote", target(), "--key", key, "version" }
    local sha = assert(file.sha256_file(dist))
    local ok, head = th.exec(1, "od -An -tx1 -j18 -N2 /root/.cache/phanes/phanes-" .. sha)
    assert.is_true(ok, head .. "\n" .. out)
    assert.equal("b7 00", head:match "%x%x %x%x", "the uploaded binary is aarch64")
    -- (with binfmt_misc and qemu here, the host's kernel tries to run it: no arm64 loader there)
    assert.truthy(code == 0 or out:find "Exec format error" or out:find "cannot execute"
      or out:find "ld%-linux%-aarch64", out)
  end)

  it("--binary PATH wins for targets of its architecture", function()
    plant("printf '#!/bin/sh\\n[ \"$1\" = -m ] && echo aarch64 && exit 0\\nexec /bin/uname \"$@\"\\n'"
      .. " > /usr/local/bin/uname && chmod 755 /usr/local/bin/uname")
    local code, out = phanes { "host", "test", target(), "--key", key, "--binary", ARM }
    assert.equal(0, code, out)
    assert.matches("aarch64 binary: " .. ARM, out, 1, true)
  end)

  it("refuses a target whose glibc is older than 2.34 before uploading anything", function()
    plant("printf '#!/bin/sh\\necho glibc 2.31\\n' > /usr/local/bin/getconf && chmod 755 /usr/local/bin/getconf")
    local code, out = phanes { "--remote", target(), "--key", key, "version" }
    assert.equal(3, code, out)
    assert.matches("has glibc 2.31: phanes needs glibc 2.34 or newer", out, 1, true)
    local _, listing = th.exec(1, "ls -A /root/.cache/phanes")
    assert.is_nil(listing:find("phanes-", 1, true), listing)
    assert.is_nil(listing:find("run.", 1, true), listing)
  end)

  it("says the modules need apt on a target with dnf and no apt", function()
    plant("printf '#!/bin/sh\\nexit 0\\n' > /usr/local/bin/dnf && chmod 755 /usr/local/bin/dnf && mv /usr/bin/apt-get /usr/bin/apt-get.off && mv /usr/bin/dpkg /usr/bin/dpkg.off")
    local code, out = phanes { "--remote", target(), "--key", key, "--modules", "baseline" }
    assert.equal(3, code, out)
    assert.matches("has dnf, not apt: phanes' modules need apt", out, 1, true)
    local _, state = th.exec(1, "ls /var/lib/phanes/state.json")
    assert.matches("No such file", state)
    -- facts still run there, with a warning
    code, out = phanes { "--remote", target(), "--key", key, "facts" }
    assert.equal(0, code, out)
    assert.matches("warning: .*modules need apt", out)
  end)
end)

-- The glibc check against real root file systems: Debian 11 (glibc 2.31)
-- from debootstrap, where the binary really does not start, and this
-- machine (Debian 12).
describe("glibc check on a real Debian 11 root", function()
  local binary = require "phanes.remote.binary"
  local run = require "phanes.remote.run"
  local root

  local function probe_in(dir)
    local cmd = "sh -c " .. q(binary.PROBE)
    if dir then cmd = "chroot " .. q(dir) .. " " .. cmd end
    local code, out = sh(cmd)
    assert.equal(0, code, out)
    return run.parse_probe(out)
  end

  setup(function()
    local code, out = sh("tools/oldroot bullseye")
    assert.equal(0, code, out)
    root = out:match "[^\n]+"
  end)

  it("refuses it, naming glibc 2.31 and the minimum, where the binary indeed cannot start", function()
    local p = probe_in(root)
    p.os = "Debian GNU/Linux 11 (bullseye)"
    local ok, err = binary.check_target(p, { "version" })
    assert.is_nil(ok)
    assert.equal("Debian GNU/Linux 11 (bullseye) has glibc 2.31: phanes needs glibc 2.34 or newer"
      .. " (Debian 12+, Ubuntu 22.04+, RHEL/Rocky 9+); upgrade the target", err)
    -- the check is right: the binary needs GLIBC_2.34 symbols
    local dst = root .. "/tmp/phanes-probe"
    assert.equal(0, (sh("cp " .. q(require("phanes.sys").exe()) .. " " .. q(dst))))
    local code, out = sh("chroot " .. q(root) .. " /tmp/phanes-probe version")
    os.remove(dst)
    assert.is_not.equal(0, code)
    assert.matches("GLIBC_2%.3[4-9]' not found", out)
  end)

  it("takes this machine's glibc", function()
    local p = probe_in(nil)
    assert.is_true((binary.check_target(p, { "version" })))
  end)
end)
