-- remote/binary.lua: which binary a target gets, and which targets cannot
-- run phanes at all (judged from the remote probe's output).
local binary = require "phanes.remote.binary"
local fakeexec = require "spec.support.fakeexec"
local file = require "phanes.file"
local run = require "phanes.remote.run"

-- A file that starts like an ELF executable for `machine` (e_machine).
local function elf(path, machine)
  assert(file.mkdir(path:match "^(.*)/", { parents = true }))
  local head = "\127ELF\2\1\1" .. string.rep("\0", 9) .. string.pack("<I2I2", 2, machine)
  assert(file.write(path, head .. string.rep("\0", 64), { mode = tonumber("0755", 8) }))
  return path
end

describe("remote binary selection", function()
  local dir, home, exe
  before_each(function()
    dir = fakeexec.tmpdir()
    home = fakeexec.tmpdir()
    exe = elf(dir .. "/phanes", 0x3E)
  end)
  after_each(function()
    fakeexec.rmtree(dir)
    fakeexec.rmtree(home)
  end)

  it("reads the architecture from the ELF header", function()
    assert.equal("x86_64", binary.elf_arch(exe))
    assert.equal("aarch64", binary.elf_arch(elf(dir .. "/a", 0xB7)))
    assert.equal(require("phanes.sys").uname().machine, binary.elf_arch(require("phanes.sys").exe()))
    local none, why = binary.elf_arch(dir .. "/missing")
    assert.is_nil(none)
    assert.matches("missing", why)
    assert(file.write(dir .. "/script", "#!/bin/sh\n"))
    assert.matches("not an ELF binary", select(2, binary.elf_arch(dir .. "/script")))
    assert.matches("ELF machine 243", select(2, binary.elf_arch(elf(dir .. "/rv", 243))))
  end)

  it("gives a target of this architecture the running binary", function()
    assert.equal(exe, binary.select_binary("x86_64", { exe = exe, arch = "x86_64", home = home }))
  end)

  it("finds phanes-ARCH beside the running binary first, then in ~/.cache/phanes/dist", function()
    local opts = { exe = exe, arch = "x86_64", home = home }
    local cached = elf(home .. "/.cache/phanes/dist/phanes-aarch64", 0xB7)
    assert.equal(cached, binary.select_binary("aarch64", opts))
    local beside = elf(dir .. "/phanes-aarch64", 0xB7)
    assert.equal(beside, binary.select_binary("aarch64", opts))
  end)

  it("takes --binary PATH for targets of its architecture only", function()
    local mine = elf(dir .. "/my-arm-build", 0xB7)
    local cached = elf(home .. "/.cache/phanes/dist/phanes-aarch64", 0xB7)
    assert.equal(mine, binary.select_binary("aarch64", { exe = exe, arch = "x86_64", home = home, binary = mine }))
    -- an x86_64 target still gets the running binary; an arm64 --binary is not for it
    assert.equal(exe, binary.select_binary("x86_64", { exe = exe, arch = "x86_64", home = home, binary = mine }))
    local x86 = elf(dir .. "/other-x86", 0x3E)
    assert.equal(x86, binary.select_binary("x86_64", { exe = exe, arch = "x86_64", home = home, binary = x86 }))
    assert.equal(cached, binary.select_binary("aarch64", { exe = exe, arch = "x86_64", home = home, binary = x86 }))
  end)

  it("skips a phanes-ARCH built for another architecture", function()
    elf(dir .. "/phanes-aarch64", 0x3E)
    local path, err = binary.select_binary("aarch64", { exe = exe, arch = "x86_64", home = home })
    assert.is_nil(path)
    assert.matches(dir .. "/phanes%-aarch64 is built for x86_64", err)
  end)

  it("says which architecture is missing, where it looked and how to get the binary", function()
    local path, err = binary.select_binary("aarch64", { exe = exe, arch = "x86_64", home = home })
    assert.is_nil(path)
    assert.matches("the target is aarch64 and this phanes is x86_64: no phanes binary for aarch64", err, 1, true)
    assert.matches(dir .. "/phanes-aarch64", err, 1, true)
    assert.matches(home .. "/.cache/phanes/dist/phanes-aarch64", err, 1, true)
    assert.matches("make dist", err, 1, true)
    assert.matches("--binary PATH", err, 1, true)
  end)

  it("refuses an architecture phanes is not built for", function()
    local path, err = binary.select_binary("riscv64", { exe = exe, arch = "x86_64", home = home })
    assert.is_nil(path)
    assert.equal("the target is riscv64 and this phanes is x86_64: phanes is built for x86_64 and aarch64 only", err)
  end)
end)

describe("remote target check", function()
  local function probe(text) return run.parse_probe(text) end

  it("the probe reports the C library and the package managers", function()
    local script = run.probe_script(string.rep("a", 64), false)
    assert.truthy(script:find(binary.PROBE, 1, true))
    -- on this machine (Debian 12): run the probe lines for real
    local f = io.popen("sh -c " .. require("phanes.remote.util").shquote(binary.PROBE))
    local p = probe(f:read "a")
    f:close()
    local libc, v = binary.libc(p.libc)
    assert.equal("glibc", libc)
    assert.matches("^2%.%d+$", v)
    assert.matches("apt%-get", p.pkg)
    assert.is_true((binary.check_target(p, { "apply", "dev" })))
  end)

  it("reads glibc's version from getconf or ldd", function()
    assert.same({ "glibc", "2.36" }, { binary.libc "glibc 2.36" })
    assert.same({ "glibc", "2.31" }, { binary.libc "ldd (Debian GLIBC 2.31-13+deb11u11) 2.31" })
    assert.same({ "glibc", "2.35" }, { binary.libc "ldd (Ubuntu GLIBC 2.35-0ubuntu3.8) 2.35" })
    assert.equal("musl", binary.libc "musl libc (x86_64)")
    assert.is_nil(binary.libc "")
    assert.is_nil(binary.libc(nil))
  end)

  it("refuses a glibc older than 2.34, naming it and the minimum (Debian 11)", function()
    local ok, err = binary.check_target(probe "arch=x86_64\nos=Debian GNU/Linux 11 (bullseye)\nlibc=glibc 2.31\npkg=apt-get dpkg \n",
      { "version" })
    assert.is_nil(ok)
    assert.equal("Debian GNU/Linux 11 (bullseye) has glibc 2.31: phanes needs glibc 2.34 or newer"
      .. " (Debian 12+, Ubuntu 22.04+, RHEL/Rocky 9+); upgrade the target", err)
  end)

  it("refuses Ubuntu 20.04 from ldd's output when getconf has none", function()
    local ok, err = binary.check_target(probe "os=Ubuntu 20.04.6 LTS\nlibc=ldd (Ubuntu GLIBC 2.31-0ubuntu9.16) 2.31\npkg=apt-get dpkg \n")
    assert.is_nil(ok)
    assert.matches("Ubuntu 20.04.6 LTS has glibc 2.31: phanes needs glibc 2.34", err, 1, true)
  end)

  it("takes glibc 2.34 and newer (Ubuntu 22.04, Debian 13)", function()
    assert.is_true(binary.check_target(probe "libc=glibc 2.34\npkg=apt-get dpkg \n", { "apply", "dev" }))
    assert.is_true(binary.check_target(probe "libc=glibc 2.41\npkg=apt-get dpkg \n", { "apply", "dev" }))
    assert.is_true(binary.check_target(probe "libc=glibc 2.100\npkg=apt-get dpkg \n", { "apply", "dev" }))
  end)

  it("refuses musl (Alpine), saying phanes needs glibc", function()
    local ok, err = binary.check_target(probe "os=Alpine Linux v3.20\nlibc=musl libc (x86_64)\npkg=apk \n", { "facts" })
    assert.is_nil(ok)
    assert.matches("Alpine Linux v3.20 uses musl libc: phanes needs glibc 2.34 or newer", err, 1, true)
  end)

  it("says modules need apt on a dnf target: refuses apply, warns otherwise", function()
    local p = probe "os=Rocky Linux 9.4 (Blue Onyx)\nlibc=glibc 2.34\npkg=dnf yum \n"
    local ok, err = binary.check_target(p, { "--config", "c.yaml", "apply", "dev" })
    assert.is_nil(ok)
    assert.matches("Rocky Linux 9.4 (Blue Onyx) has dnf, not apt: phanes' modules need apt", err, 1, true)
    ok, err = binary.check_target(p, { "--modules", "baseline" })
    assert.is_nil(ok)
    local warn
    ok, warn = binary.check_target(p, { "facts" })
    assert.is_true(ok)
    assert.matches("modules need apt", warn)
  end)

  it("lets an older probe without these lines through", function()
    assert.is_true(binary.check_target(probe "arch=x86_64\n", { "apply" }))
  end)
end)
