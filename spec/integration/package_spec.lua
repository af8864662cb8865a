-- Installing phanes: `make install` into a DESTDIR (the binary, the man
-- page, the completions, nothing outside DESTDIR), and `make deb`, whose
-- package installs on a fresh Debian test host where `phanes version`
-- runs, and removes cleanly.
local th = require "spec.support.testhost"

local BIN = th.bin()
local B = BIN:match "^(.*)/phanes$"
local q = th.quote
local ROOT = assert(io.popen "pwd"):read "l"

-- sh(cmd) -> output (both streams), exit code: cmd on this machine
local sh = require("spec.support.runcli").shell

-- make in the tree, with the binary under test taken as built (-o)
local function make(args)
  return sh("make -s -C " .. q(ROOT) .. " -o " .. q(BIN) .. " B=" .. q(B) .. " " .. args)
end

local function version()
  return (sh(q(BIN) .. " version")):match "^phanes (%S+)"
end

describe("make install", function()
  local dest
  setup(function() dest = require("spec.support.fakeexec").tmpdir() end)
  teardown(function() if dest then require("spec.support.fakeexec").rmtree(dest) end end)

  it("puts the binary, the man page and the completions under DESTDIR/PREFIX, and nothing elsewhere", function()
    local F = require "phanes.file"
    assert.is_nil(F.stat "/opt/phanes-spec")
    local out, code = make("install PREFIX=/opt/phanes-spec DESTDIR=" .. q(dest))
    assert.equal(0, code, out)
    local p = dest .. "/opt/phanes-spec"
    local want = {
      ["bin/phanes"] = "0755", ["share/man/man1/phanes.1"] = "0644",
      ["share/bash-completion/completions/phanes"] = "0644", ["share/zsh/site-functions/_phanes"] = "0644",
      ["share/fish/vendor_completions.d/phanes.fish"] = "0644",
    }
    for rel, mode in pairs(want) do
      local st = F.stat(p .. "/" .. rel)
      assert.is_truthy(st, rel)
      assert.equal(tonumber(mode, 8), st.mode & 4095, rel)
    end
    assert.is_nil(F.stat "/opt/phanes-spec")
    -- what was installed works
    out, code = sh(q(p .. "/bin/phanes") .. " version")
    assert.equal(0, code, out)
    assert.equal("phanes " .. version() .. "\n", out)
    out, code = sh("bash -c " .. q("source " .. q(p .. "/share/bash-completion/completions/phanes") .. " && complete -p phanes"))
    assert.equal(0, code, out)
    assert.matches("phanes$", out:gsub("%s+$", ""))
    out, code = sh("MANWIDTH=80 man -l " .. q(p .. "/share/man/man1/phanes.1") .. " | head -5")
    assert.equal(0, code, out)
    assert.matches("phanes", out)
  end)
end)

describe("make deb", function()
  local ok_hosts, why = th.available()
  if not ok_hosts then
    pending(why)
    return
  end
  setup(function() th.up(1) end)
  teardown(function() th.down() end)

  it("builds a package that installs on a fresh Debian host, where phanes version runs", function()
    local out, code = make "deb"
    assert.equal(0, code, out)
    local arch = (sh "dpkg --print-architecture"):match "%S+"
    local deb = B .. "/phanes_" .. version() .. "_" .. arch .. ".deb"
    out, code = sh("dpkg-deb -f " .. q(deb) .. " Package Version Architecture Depends")
    assert.equal(0, code, out)
    assert.equal(table.concat({ "Package: phanes", "Version: " .. version(), "Architecture: " .. arch,
      "Depends: libc6 (>= 2.34)" }, "\n") .. "\n", out)
    -- the host has no phanes before
    local ok, hout = th.exec(1, "command -v phanes")
    assert.is_false(ok, hout)
    assert(th.cp(1, deb, "/tmp/phanes.deb"))
    ok, hout = th.exec(1, "dpkg -i /tmp/phanes.deb")
    assert.is_true(ok, hout)
    ok, hout = th.exec(1, "command -v phanes && phanes version && dpkg-query -W -f='${Status}\\n' phanes")
    assert.is_true(ok, hout)
    assert.equal("/usr/bin/phanes\nphanes " .. version() .. "\ninstall ok installed\n", hout)
    ok, hout = th.exec(1, "test -f /usr/share/man/man1/phanes.1 && test -f /usr/share/bash-completion/completions/phanes"
      .. " && bash -c '. /usr/share/bash-completion/completions/phanes && complete -p phanes'")
    assert.is_true(ok, hout)
    ok, hout = th.exec(1, "dpkg -r phanes && ! test -e /usr/bin/phanes")
    assert.is_true(ok, hout)
  end)
end)
